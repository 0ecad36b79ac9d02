//! `--filter a --filter b …`: filters compose as a pipeline, like `a | b` in a shell. Each record
//! goes through the steps in order; the last step's outputs are the selection (references).
//!
//! A record passes an earlier step when the step yields something for it other than `null` or
//! `false`: a reference (what presets print), `true`, or the record itself (`select(…)`). An
//! object output goes on in place of the record, so a step may also reshape records; any other
//! output passes the record on unchanged.
//!
//! A WASM plugin (`--filter x.wasm`) may be the last step: it reads every record that passed the
//! jq steps before it, as JSON lines, and prints references for the whole listing at once.

use std::path::{Path, PathBuf};

use anyhow::Context;
use imgkit_plugin::Plugin;
use imgkit_select::Filter;
use imgkit_types::ImageRecord;
use serde_json::Value;

use crate::global::GlobalArgs;
use crate::plugin_args::{PluginArgs, run_plugin};
use crate::selection::{self, Selected};

/// Compiled steps, each with its origin for errors, and an optional plugin as the last step;
/// never empty.
pub(crate) struct Pipeline {
    steps: Vec<(Filter, String)>,
    plugin: Option<(Plugin, GlobalArgs)>,
}

/// Whether `spec` names a WASM plugin rather than a jq program: a `.wasm` (or WebAssembly
/// text, `.wat`) file name.
fn is_plugin(spec: &Path) -> bool {
    spec.extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("wasm") || e.eq_ignore_ascii_case("wat"))
}

impl Pipeline {
    /// Loads and compiles `specs` (jq files, preset names, or a `.wasm` plugin as the last
    /// step); none means the `default` preset.
    pub(crate) fn compile(
        specs: &[PathBuf],
        plugins: &PluginArgs,
        global: &GlobalArgs,
    ) -> anyhow::Result<Pipeline> {
        let default = [PathBuf::from("default")];
        let specs: &[PathBuf] = if specs.is_empty() { &default } else { specs };
        let (jq, plugin) = match specs.split_last() {
            Some((last, init)) if is_plugin(last) => (init, Some(last)),
            _ => (specs, None),
        };
        if let Some(p) = jq.iter().find(|s| is_plugin(s)) {
            return Err(crate::diagnostics::with_hint(
                anyhow::anyhow!("plugin {} is not the last --filter", p.display()),
                "a WASM plugin prints references, so it must come last: --filter a.jq --filter p.wasm",
            ));
        }
        let steps = jq
            .iter()
            .map(|spec| {
                let (program, origin) = imgkit_select::load_filter(spec)?;
                let filter = Filter::compile(&program, &origin).map_err(|e| {
                    crate::diagnostics::with_hint(e, "check the jq program with `imgkit filter`")
                })?;
                Ok((filter, origin))
            })
            .collect::<anyhow::Result<_>>()?;
        let plugin = match plugin {
            Some(path) => Some((plugins.load(path)?, global.clone())),
            None => None,
        };
        Ok(Pipeline { steps, plugin })
    }

    /// A pipeline of one compiled program.
    pub(crate) fn one(filter: Filter, origin: String) -> Pipeline {
        Pipeline {
            steps: vec![(filter, origin)],
            plugin: None,
        }
    }

    /// Selects from a whole listing, resolving every output to a listed image.
    pub(crate) fn select_from(&self, records: &[ImageRecord]) -> anyhow::Result<Vec<Selected>> {
        let Some((plugin, global)) = &self.plugin else {
            return selection::select(records, |value| self.select(value));
        };
        // Records that pass every jq step go to the plugin, in listing order.
        let mut input = Vec::new();
        for rec in records {
            let value = serde_json::to_value(rec)?;
            for passed in self.passing(&value)? {
                // The record itself as the listing prints it; a reshaped one as jq would.
                let line = if passed == value {
                    rec.to_json_line()
                } else {
                    serde_json::to_string(&passed)?
                };
                input.extend_from_slice(line.as_bytes());
                input.push(b'\n');
            }
        }
        let outcome = run_plugin(plugin, &mut input.as_slice(), global)?;
        selection::select_outputs(records, &outcome.references)
            .with_context(|| format!("plugin {}", plugin.path().display()))
    }

    /// What of `record` passes every jq step (the steps before a plugin): the record, or what
    /// a step reshaped it into.
    fn passing(&self, record: &Value) -> anyhow::Result<Vec<Value>> {
        let mut current = vec![record.clone()];
        for (filter, origin) in &self.steps {
            current = Self::step(filter, origin, &current)?;
            if current.is_empty() {
                break;
            }
        }
        Ok(current)
    }

    /// One step over `current`: the values that pass it (see the module docs).
    fn step(filter: &Filter, origin: &str, current: &[Value]) -> anyhow::Result<Vec<Value>> {
        let mut next: Vec<Value> = Vec::new();
        for value in current {
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
        Ok(next)
    }

    /// The last step's outputs for `record`.
    pub(crate) fn select(&self, record: &Value) -> anyhow::Result<Vec<Value>> {
        let (last, init) = self.steps.split_last().expect("a pipeline has a step");
        let mut current = vec![record.clone()];
        for (filter, origin) in init {
            current = Self::step(filter, origin, &current)?;
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
            plugin: None,
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
        let p = Pipeline::compile(
            &[
                PathBuf::from("exclude-k8s-system"),
                PathBuf::from("default"),
            ],
            &PluginArgs::default(),
            &GlobalArgs::default(),
        )
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
