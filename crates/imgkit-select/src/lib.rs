//! Selecting image records with jq programs, run in-process by jaq, printing exactly what
//! `jq` 1.7 prints.
//!
//! This is the only crate of imgkit that names jaq types. A program is compiled once
//! ([`Filter::compile`]) with jq's standard library and then either applied to one record at a
//! time ([`Filter::select`]) or run over a stream of JSON text the way the `jq` command does
//! ([`Filter::run`]): streaming input with flat memory, outputs as jq prints them, runtime
//! errors reported per input.
//!
//! ```
//! use imgkit_select::Filter;
//!
//! let filter = Filter::compile(r#"select(.Tag != "<none>") | .Repository + ":" + .Tag"#, "<program>")?;
//! let record = serde_json::json!({"Repository": "alpine", "Tag": "3.20"});
//! assert_eq!(filter.select(&record)?, vec![serde_json::json!("alpine:3.20")]);
//! # Ok::<(), imgkit_select::Error>(())
//! ```

mod aliases;
mod compile;
mod desugar;
mod fast;
mod lenient;
mod modmeta;
mod natives;
mod read;
mod run;
mod stream;
mod value;
mod write;

use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use jaq_json::{Map, Val};
use jaq_std::input::RcIter;

pub use compile::{CompileReport, Diagnostic};
pub use run::{InputNames, Outcome, RunOptions};
pub use write::{Indent, Palette, Style};

/// Stack size of the thread [`Filter::run`] evaluates on: deep nesting (10,000 levels, jq's
/// parsing limit) is an error message, not a crash.
pub const STACK_SIZE: usize = 1 << 30;

/// Built-in presets, embedded from `filters/*.jq`.
const PRESETS: &[(&str, &str)] = &[
    ("default", include_str!("../../../filters/default.jq")),
    ("all", include_str!("../../../filters/all.jq")),
    ("dangling", include_str!("../../../filters/dangling.jq")),
    (
        "exclude-k8s-system",
        include_str!("../../../filters/exclude-k8s-system.jq"),
    ),
];

/// Everything that can go wrong compiling or running a jq program.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The program does not parse or names something undefined.
    #[error("{}", .0.summary())]
    Compile(CompileReport),
    /// `--filter SPEC` is neither an existing file nor a preset name.
    #[error("no filter file {spec} and no built-in preset of that name (presets: {})", .presets.join(", "))]
    FilterNotFound {
        spec: PathBuf,
        presets: Vec<&'static str>,
    },
    /// The filter file exists but can't be read.
    #[error("cannot read filter file {path}")]
    ReadFilter {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// `--argjson NAME TEXT` with invalid JSON text.
    #[error("invalid JSON text for --argjson {name}: {reason}")]
    InvalidArgJson { name: String, reason: String },
    /// A `--jsonargs` text is not JSON.
    #[error("invalid JSON text passed to --jsonargs: {reason}")]
    InvalidPositional { reason: String },
    /// The input is not a sequence of JSON texts.
    #[error("invalid JSON input at line {line}, byte offset {offset}: {reason}")]
    InvalidInput {
        line: u64,
        offset: u64,
        reason: String,
    },
    /// Reading the input failed.
    #[error("cannot read input")]
    ReadInput(#[source] io::Error),
    /// Writing the output failed (a closed pipe included).
    #[error("cannot write output")]
    WriteOutput(#[source] io::Error),
    /// The program failed on a record (jq's runtime error, e.g. `error("…")`).
    #[error("jq program failed: {message}")]
    Runtime { message: String },
    /// The program called `halt` or `halt_error`.
    #[error("jq program halted with exit code {code}")]
    Halted { code: i32 },
}

/// The value of a named argument, as `--arg` and `--argjson` give it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Arg {
    /// `--arg NAME VALUE` (and `--rawfile`, `--args`): a string.
    String(String),
    /// `--argjson NAME TEXT` (and `--jsonargs`): a JSON text, parsed as jq parses input
    /// (numbers kept exact).
    Json(String),
    /// `--slurpfile NAME FILE`: the JSON texts of a file, bound as an array of them.
    Texts(String),
}

impl Arg {
    /// The value, or why the text is not JSON.
    fn value(&self) -> Result<Val, String> {
        match self {
            Arg::String(v) => Ok(Val::utf8_str(v.as_bytes().to_vec())),
            Arg::Json(text) => read::parse_one(text),
            Arg::Texts(text) => read::Values::new(text.as_bytes())
                .collect::<Result<Vec<Val>, _>>()
                .map(|all| all.into_iter().collect())
                .map_err(|e| e.to_string()),
        }
    }
}

/// A compiled jq program. `Send + Sync`: compile once, use from any thread.
pub struct Filter {
    inner: jaq_core::Filter<compile::Kind>,
    args: Vec<(String, Arg)>,
    /// `$ARGS.positional` (`--args`, `--jsonargs`).
    positional: Vec<Arg>,
    /// The data modules the program imports (`import "x" as $x;`), bound after the globals.
    data: Vec<Arg>,
    /// The module search path (`modulemeta` reads it while the program runs).
    search: Vec<PathBuf>,
    /// The program in the fast subset, when it is (see `fast`).
    fast: Option<fast::Expr>,
    /// Which built-in globals the program mentions (the others are bound to `null`).
    uses_env: bool,
    uses_loc: bool,
    uses_args: bool,
}

impl std::fmt::Debug for Filter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Filter")
            .field("args", &self.args)
            .finish_non_exhaustive()
    }
}

const _: () = {
    const fn send_sync<T: Send + Sync>() {}
    send_sync::<Filter>();
};

impl Filter {
    /// Compiles `program`; `origin` names it in errors (a file path or `"<program>"`).
    pub fn compile(program: &str, origin: &str) -> Result<Filter, Error> {
        Self::compile_with_args(program, origin, &[])
    }

    /// Compiles `program` with named arguments (`$name` in the program; also `$ARGS.named`).
    pub fn compile_with_args(
        program: &str,
        origin: &str,
        args: &[(String, Arg)],
    ) -> Result<Filter, Error> {
        Self::build(program, origin, args, &[], false)
    }

    /// Compiles `program` as the `jq` command does: named arguments, modules (`import`,
    /// `include`) looked for in `lib_dirs` (jq's `-L`; when empty, jq's default `~/.jq`,
    /// `$ORIGIN/../lib/jq`, `$ORIGIN/../lib`), and the definitions of a file `~/.jq`.
    pub fn compile_with_libraries(
        program: &str,
        origin: &str,
        args: &[(String, Arg)],
        lib_dirs: &[PathBuf],
    ) -> Result<Filter, Error> {
        Self::build(program, origin, args, lib_dirs, true)
    }

    fn build(
        program: &str,
        origin: &str,
        args: &[(String, Arg)],
        lib_dirs: &[PathBuf],
        home_file: bool,
    ) -> Result<Filter, Error> {
        for (name, arg) in args {
            arg.value().map_err(|reason| Error::InvalidArgJson {
                name: name.clone(),
                reason,
            })?;
        }
        let names: Vec<String> = args.iter().map(|(n, _)| n.clone()).collect();
        let (inner, data) = compile::compile(program, origin, &names, lib_dirs, home_file)
            .map_err(Error::Compile)?;
        Ok(Filter {
            inner,
            data,
            // Only `modulemeta` reads it while the program runs.
            search: if program.contains("modulemeta") {
                compile::search_paths(lib_dirs)
            } else {
                Vec::new()
            },
            args: args.to_vec(),
            positional: Vec::new(),
            fast: fast::parse(program),
            uses_env: program.contains("$ENV"),
            uses_loc: program.contains("$__loc__"),
            uses_args: program.contains("$ARGS"),
        })
    }

    /// Sets `$ARGS.positional` (`--args` strings, `--jsonargs` JSON texts).
    pub fn set_positional(&mut self, args: Vec<Arg>) -> Result<(), Error> {
        for a in &args {
            a.value()
                .map_err(|reason| Error::InvalidPositional { reason })?;
        }
        self.positional = args;
        Ok(())
    }

    /// Global variable values, in the order `compile` declared them. Also makes the search
    /// path the running program's (`modulemeta`).
    fn globals(&self) -> Result<Vec<value::V>, Error> {
        if !self.search.is_empty() {
            modmeta::SEARCH.set(self.search.clone());
        }
        let s = |s: &str| Val::utf8_str(s.as_bytes().to_vec());
        let env = if self.uses_env {
            Val::obj(
                std::env::vars_os()
                    .map(|(k, v)| (s(&k.to_string_lossy()), s(&v.to_string_lossy())))
                    .collect(),
            )
        } else {
            Val::Null
        };
        let loc = if self.uses_loc {
            let mut m = Map::default();
            m.insert(s("file"), s("<top-level>"));
            m.insert(s("line"), Val::from(1usize));
            Val::obj(m)
        } else {
            Val::Null
        };
        let mut values = Vec::with_capacity(self.args.len());
        for (name, arg) in &self.args {
            values.push(arg.value().map_err(|reason| Error::InvalidArgJson {
                name: name.clone(),
                reason,
            })?);
        }
        let args = if self.uses_args {
            let named = self
                .args
                .iter()
                .zip(&values)
                .map(|((n, _), v)| (s(n), v.clone()));
            let positional = self
                .positional
                .iter()
                .map(|a| {
                    a.value()
                        .map_err(|reason| Error::InvalidPositional { reason })
                })
                .collect::<Result<Vec<Val>, Error>>()?;
            let mut m = Map::default();
            m.insert(s("positional"), positional.into_iter().collect());
            m.insert(s("named"), Val::obj(named.collect()));
            Val::obj(m)
        } else {
            Val::Null
        };
        for d in &self.data {
            values.push(
                d.value()
                    .map_err(|reason| Error::Runtime { message: reason })?,
            );
        }
        Ok([env, loc, args]
            .into_iter()
            .chain(values)
            .map(value::V)
            .collect())
    }

    /// Runs the program on one record and returns its outputs (jq semantics; `input` and
    /// `inputs` see no further input). The first runtime error ends the evaluation.
    pub fn select(&self, record: &serde_json::Value) -> Result<Vec<serde_json::Value>, Error> {
        let no_inputs = RcIter::new(std::iter::empty::<Result<value::V, String>>());
        let data = compile::Data {
            lut: &self.inner.lut,
            inputs: &no_inputs,
        };
        let ctx = jaq_core::Ctx::<compile::Kind>::new(&data, jaq_core::Vars::new(self.globals()?));
        let mut outputs = Vec::new();
        for y in self.inner.id.run((ctx, value::V(read::from_serde(record)))) {
            match y {
                Ok(v) => outputs.push(read::to_serde(&v.0)),
                Err(exn) => {
                    return Err(match exn.get_err() {
                        Ok(e) => Error::Runtime {
                            message: run::error_message(e).0,
                        },
                        Err(exn) => Error::Halted {
                            code: exn.get_halt().unwrap_or(5),
                        },
                    });
                }
            }
        }
        Ok(outputs)
    }

    /// Runs the program over a stream of JSON texts (or lines with `-R`) read from `input`,
    /// printing outputs to `output` as `jq` does and runtime errors to `diagnostics`.
    ///
    /// Memory stays flat whatever the input's length. Evaluation runs on a thread with a
    /// [`STACK_SIZE`] stack. Invalid input ends the run with [`Error::InvalidInput`] after the
    /// outputs of the values before it.
    pub fn run<R, W>(
        &self,
        input: R,
        output: W,
        opts: &RunOptions,
        diagnostics: &mut (dyn Write + Send),
    ) -> Result<Outcome, Error>
    where
        R: Read + Send,
        W: Write + Send,
    {
        std::thread::scope(|scope| {
            std::thread::Builder::new()
                .name("jq".into())
                .stack_size(STACK_SIZE)
                .spawn_scoped(scope, || self.run_here(input, output, opts, diagnostics))
                .map_err(Error::ReadInput)?
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        })
    }
}

/// Built-in presets, embedded from `filters/*.jq`: `("default", source)`, …
pub fn presets() -> &'static [(&'static str, &'static str)] {
    PRESETS
}

/// Resolves `--filter SPEC`: an existing path wins; else a preset name with or without `.jq`.
/// Returns the program text and its origin (the path, or `default.jq (built-in)`).
pub fn load_filter(spec: &Path) -> Result<(String, String), Error> {
    if spec.is_file() {
        let source = std::fs::read_to_string(spec).map_err(|source| Error::ReadFilter {
            path: spec.to_path_buf(),
            source,
        })?;
        return Ok((source, spec.display().to_string()));
    }
    if spec.exists() {
        let source = io::Error::other("not a regular file");
        return Err(Error::ReadFilter {
            path: spec.to_path_buf(),
            source,
        });
    }
    let name = spec.to_str().map(|s| s.strip_suffix(".jq").unwrap_or(s));
    if let Some((name, source)) = PRESETS.iter().find(|(n, _)| Some(*n) == name) {
        return Ok(((*source).to_string(), format!("{name}.jq (built-in)")));
    }
    Err(Error::FilterNotFound {
        spec: spec.to_path_buf(),
        presets: PRESETS.iter().map(|(n, _)| *n).collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_preset_is_the_guides_program() {
        let (source, origin) = load_filter(Path::new("default.jq")).unwrap();
        assert_eq!(
            source,
            "select(.Repository!=\"<none>\") | if (.Tag==\"<none>\") then .Repository else (.Repository+\":\"+.Tag) end\n"
        );
        assert_eq!(origin, "default.jq (built-in)");
        assert_eq!(load_filter(Path::new("default")).unwrap().0, source);
    }

    #[test]
    fn missing_filter_lists_presets() {
        let err = load_filter(Path::new("no-such.jq")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "no filter file no-such.jq and no built-in preset of that name (presets: default, all, dangling, exclude-k8s-system)"
        );
    }

    #[test]
    fn syntax_error_points_at_line_and_column() {
        let Err(Error::Compile(report)) = Filter::compile(".a |\n  select(.b == )", "<program>")
        else {
            panic!("expected a compile error")
        };
        let d = &report.diagnostics[0];
        assert_eq!((d.line, d.column), (2, 16), "{report}");
        assert!(
            report
                .to_string()
                .contains("2 |   select(.b == )\n  |                ^"),
            "{report}"
        );
    }

    #[test]
    fn select_runs_the_default_program() {
        let (source, origin) = load_filter(Path::new("default.jq")).unwrap();
        let f = Filter::compile(&source, &origin).unwrap();
        let rec = |r: &str, t: &str| serde_json::json!({"Repository": r, "Tag": t});
        assert_eq!(
            f.select(&rec("alpine", "3.20")).unwrap(),
            vec![serde_json::json!("alpine:3.20")]
        );
        assert_eq!(
            f.select(&rec("alpine", "<none>")).unwrap(),
            vec![serde_json::json!("alpine")]
        );
        assert!(f.select(&rec("<none>", "<none>")).unwrap().is_empty());
    }

    #[test]
    fn select_reports_runtime_errors() {
        let f = Filter::compile(r#"error("boom")"#, "<program>").unwrap();
        let err = f.select(&serde_json::json!(1)).unwrap_err();
        assert_eq!(err.to_string(), "jq program failed: boom");
    }

    #[test]
    fn numbers_print_as_jq_17() {
        let f = Filter::compile(
            "[1.0, 3/1, 1E2, 100000000000000000, 0.5] | tojson, tostring",
            "<p>",
        )
        .unwrap();
        let out = f.select(&serde_json::Value::Null).unwrap();
        // As jq 1.7.1's manual: a literal keeps its digits until arithmetic touches it
        // (decNumber's spelling: `1E2` → `1E+2`).
        assert_eq!(
            out[0],
            serde_json::json!("[1.0,3,1E+2,100000000000000000,0.5]")
        );
        assert_eq!(out[1], out[0]);
    }
}
