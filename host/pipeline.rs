//! `--filter a --filter b …`: filters compose as a pipeline, like `a | b` in a shell. Each record
//! goes through the steps in order; the last step's outputs are the selection (references).
//!
//! A record passes an earlier step when the step yields something for it other than `null` or
//! `false`: a reference (what presets print), `true`, or the record itself (`select(…)`). An
//! object output goes on in place of the record, so a step may also reshape records; any other
//! output passes the record on unchanged.

use std::path::PathBuf;

use anyhow::Context;
use imgkit_select::Filter;
use serde_json::Value;

/// Compiled steps, each with its origin for errors; never empty.
pub(crate) struct Pipeline {
    steps: Vec<(Filter, String)>,
}

impl Pipeline {
    /// Loads and compiles `specs` (files or preset names); none means the `default` preset.
    pub(crate) fn compile(specs: &[PathBuf]) -> anyhow::Result<Pipeline> {
        let default = [PathBuf::from("default")];
        let specs: &[PathBuf] = if specs.is_empty() { &default } else { specs };
        let steps = specs
            .iter()
            .map(|spec| {
                let (program, origin) = imgkit_select::load_filter(spec)?;
                let filter = Filter::compile(&program, &origin)?;
                Ok((filter, origin))
            })
            .collect::<anyhow::Result<_>>()?;
        Ok(Pipeline { steps })
    }

    /// A pipeline of one compiled program.
    pub(crate) fn one(filter: Filter, origin: String) -> Pipeline {
        Pipeline {
            steps: vec![(filter, origin)],
        }
    }

    /// The last step's outputs for `record`.
    pub(crate) fn select(&self, record: &Value) -> anyhow::Result<Vec<Value>> {
        let (last, init) = self.steps.split_last().expect("a pipeline has a step");
        let mut current = vec![record.clone()];
        for (filter, origin) in init {
            let mut next: Vec<Value> = Vec::new();
            for value in &current {
                for out in filter
                    .select(value)
                    .with_context(|| format!("filter {origin} failed"))?
                {
                    let passed = match out {
                        Value::Null | Value::Bool(false) => continue,
                        Value::Object(_) => out,
                        _ => value.clone(),
                    };
                    if !next.contains(&passed) {
                        next.push(passed);
                    }
                }
            }
            current = next;
            if current.is_empty() {
                return Ok(Vec::new());
            }
        }
        let (filter, origin) = last;
        let mut outputs = Vec::new();
        for value in &current {
            outputs.extend(
                filter
                    .select(value)
                    .with_context(|| format!("filter {origin} failed"))?,
            );
        }
        Ok(outputs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pipeline(programs: &[&str]) -> Pipeline {
        Pipeline {
            steps: programs
                .iter()
                .map(|p| (Filter::compile(p, "<program>").unwrap(), (*p).to_owned()))
                .collect(),
        }
    }

    fn rec(repo: &str, tag: &str) -> Value {
        json!({"Repository": repo, "Tag": tag})
    }

    #[test]
    fn records_that_pass_a_step_go_into_the_next() {
        let p = pipeline(&[
            r#"select(.Repository | startswith("seed/")) | .Repository"#,
            r#".Repository + ":" + .Tag"#,
        ]);
        assert_eq!(
            p.select(&rec("seed/app", "1.0")).unwrap(),
            [json!("seed/app:1.0")]
        );
        assert!(p.select(&rec("other/app", "1.0")).unwrap().is_empty());
    }

    #[test]
    fn false_and_null_drop_the_record_and_objects_replace_it() {
        let p = pipeline(&[r#".Tag == "1.0""#, ".Repository"]);
        assert_eq!(p.select(&rec("a", "1.0")).unwrap(), [json!("a")]);
        assert!(p.select(&rec("a", "2.0")).unwrap().is_empty());
        let p = pipeline(&["null", ".Repository"]);
        assert!(p.select(&rec("a", "1.0")).unwrap().is_empty());
        let p = pipeline(&[r#".Repository = "b""#, ".Repository"]);
        assert_eq!(p.select(&rec("a", "1.0")).unwrap(), [json!("b")]);
        // a step printing two things for one record passes it on once
        let p = pipeline(&[r#""x", "y""#, ".Repository"]);
        assert_eq!(p.select(&rec("a", "1.0")).unwrap(), [json!("a")]);
    }

    #[test]
    fn presets_compose() {
        let p = Pipeline::compile(&[
            PathBuf::from("exclude-k8s-system"),
            PathBuf::from("default"),
        ])
        .unwrap();
        assert_eq!(
            p.select(&rec("seed/app", "1.0")).unwrap(),
            [json!("seed/app:1.0")]
        );
        assert!(
            p.select(&rec("registry.k8s.io/pause", "3.9"))
                .unwrap()
                .is_empty()
        );
    }
}
