//! Turning jq program text into a jaq filter: jq's standard library (jaq's definitions plus
//! our jq-compatibility layer in `compat.jq`), native functions, global variables, and
//! parse/compile errors pointing into the program text with line, column and a caret.

use std::fmt;

use jaq_core::load::{self, Arena, File, Loader};
use jaq_core::native::{self, Fun};
use jaq_core::{Compiler, DataT, Lut, RunPtr};
use jaq_std::input::{HasInputs, Inputs};

use crate::natives;
use crate::value::V;

/// The data kind our filters run on: jaq's JSON values with jq's semantics, plus the
/// program's global data.
pub(crate) struct Kind;

impl DataT for Kind {
    type V<'a> = V;
    type Data<'a> = &'a Data<'a>;
}

/// Global data of one run: the look-up table and the shared input stream (`input`, `inputs`).
pub(crate) struct Data<'a> {
    pub(crate) lut: &'a Lut<Kind>,
    pub(crate) inputs: Inputs<'a, V>,
}

impl<'a> jaq_core::data::HasLut<'a, Kind> for &'a Data<'a> {
    fn lut(&self) -> &'a Lut<Kind> {
        self.lut
    }
}

impl<'a> HasInputs<'a, V> for &'a Data<'a> {
    fn inputs(&self) -> Inputs<'a, V> {
        self.inputs
    }
}

/// Global variables every program sees, in this order, before the user's `--arg`s.
pub(crate) const BUILTIN_VARS: [&str; 3] = ["$ENV", "$__loc__", "$ARGS"];

/// Definitions in jq syntax that make jaq behave like jq 1.7 (loaded after jaq's, so they win).
const COMPAT: &str = include_str!("compat.jq");

/// One problem in the program text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// What is wrong, e.g. `expected term` or `undefined filter`.
    pub message: String,
    /// What was found there, e.g. `unexpected token`.
    pub label: String,
    /// 1-based line in the program text.
    pub line: usize,
    /// 1-based column (in characters) of the first offending character.
    pub column: usize,
    /// Width of the offending text in characters (at least 1).
    pub width: usize,
    /// The program line, for the caret display.
    pub source_line: String,
}

/// Parse or compile errors of a program, rendered like a compiler would: position, the
/// program line, and a caret under the offending text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompileReport {
    /// Names the program: a file path or `<program>`.
    pub origin: String,
    /// At least one.
    pub diagnostics: Vec<Diagnostic>,
}

impl fmt::Display for CompileReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.diagnostics.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            let gutter = d.line.to_string().len();
            writeln!(f, "{}:{}:{}: {}", self.origin, d.line, d.column, d.message)?;
            writeln!(f, "{:gutter$} |", "")?;
            writeln!(f, "{} | {}", d.line, d.source_line.replace('\t', " "))?;
            write!(
                f,
                "{:gutter$} | {}{} {}",
                "",
                " ".repeat(d.column - 1),
                "^".repeat(d.width),
                d.label
            )?;
        }
        Ok(())
    }
}

impl CompileReport {
    /// The first problem as one line: `origin:line:column: message`.
    pub fn summary(&self) -> String {
        self.diagnostics.first().map_or_else(
            || format!("{}: invalid program", self.origin),
            |d| format!("{}:{}:{}: {}", self.origin, d.line, d.column, d.message),
        )
    }
}

pub(crate) fn diagnostic(code: &str, found: &str, message: String, label: &str) -> Diagnostic {
    // `found` is a slice of `code`; anything else points at the end.
    let offset = (found.as_ptr() as usize).checked_sub(code.as_ptr() as usize);
    let start = offset.filter(|o| *o <= code.len()).unwrap_or(code.len());
    let range = start..start + found.len();
    let line_start = code[..start].rfind('\n').map_or(0, |i| i + 1);
    let line_end = code[start..].find('\n').map_or(code.len(), |i| start + i);
    let line = code[..start].matches('\n').count() + 1;
    let column = code[line_start..start].chars().count() + 1;
    let end = range.end.clamp(start, line_end);
    let width = code[start..end].chars().count().max(1);
    Diagnostic {
        message,
        label: label.to_string(),
        line,
        column,
        width,
        source_line: code[line_start..line_end]
            .trim_end_matches('\r')
            .to_string(),
    }
}

fn load_diagnostics(errs: load::Errors<&str, ()>) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    for (file, err) in errs {
        let code = file.code;
        match err {
            load::Error::Io(errs) => {
                for (path, e) in errs {
                    out.push(diagnostic(
                        code,
                        path,
                        format!("cannot load module {path}"),
                        &e,
                    ));
                }
            }
            load::Error::Lex(errs) => {
                for (expected, found) in errs {
                    // Point at the first character only.
                    let end = found.char_indices().nth(1).map_or(found.len(), |(i, _)| i);
                    let found = &found[..end];
                    let label = if found.is_empty() {
                        "unexpected end of program".to_string()
                    } else {
                        format!("unexpected character {found:?}")
                    };
                    let message = format!("syntax error: expected {}", expected.as_str());
                    out.push(diagnostic(code, found, message, &label));
                }
            }
            load::Error::Parse(errs) => {
                for (expected, found) in errs {
                    let label = if found.is_empty() {
                        "unexpected end of program"
                    } else {
                        "unexpected token"
                    };
                    let message = format!("syntax error: expected {}", expected.as_str());
                    out.push(diagnostic(code, found, message, label));
                }
            }
        }
    }
    out
}

fn compile_diagnostics(errs: jaq_core::compile::Errors<&str, ()>) -> Vec<Diagnostic> {
    use jaq_core::compile::Undefined;
    let mut out = Vec::new();
    for (file, errs) in errs {
        for (found, undefined) in errs {
            let message = match (found, &undefined) {
                ("reduce", Undefined::Filter(arity)) => {
                    format!("reduce takes 2 arguments, found {arity}")
                }
                ("foreach", Undefined::Filter(arity)) => {
                    format!("foreach takes 2 or 3 arguments, found {arity}")
                }
                (name, Undefined::Filter(arity)) => format!("{name}/{arity} is not defined"),
                (name, other) => format!("{} {name} is not defined", other.as_str()),
            };
            out.push(diagnostic(file.code, found, message, "not defined"));
        }
    }
    out
}

/// Definitions of jaq's core, std and json libraries, then ours.
fn defs() -> impl Iterator<Item = load::parse::Def<&'static str>> {
    let compat = load::parse(COMPAT, |p| p.defs()).expect("compat.jq parses");
    jaq_core::defs()
        .chain(jaq_std::defs())
        .chain(jaq_json::defs())
        .chain(compat)
}

/// jaq natives that `compat.jq` wraps: (name, arity, the name the wrapper calls).
const ALIASES: &[(&str, usize, &str)] = &[
    ("limit", 2, "_jaq_limit"),
    ("skip", 2, "_jaq_skip"),
    ("trim", 0, "_jaq_trim"),
    ("ltrim", 0, "_jaq_ltrim"),
    ("rtrim", 0, "_jaq_rtrim"),
    ("utf8bytelength", 0, "_jaq_utf8bytelength"),
    ("implode", 0, "_jaq_implode"),
    ("strftime", 1, "_jaq_strftime"),
    ("strflocaltime", 1, "_jaq_strflocaltime"),
    ("mktime", 0, "_jaq_mktime"),
];

fn jaq_funs() -> impl Iterator<Item = Fun<Kind>> {
    let input = jaq_std::input::funs::<Kind>()
        .into_vec()
        .into_iter()
        .map(native::run::<Kind>);
    // jaq_json's natives are written for its own value type; ours (natives.rs) replace them.
    jaq_core::funs::<Kind>().chain(jaq_std::funs()).chain(input)
}

/// Natives: jaq's, with ours replacing those jq behaves differently in, and aliases of jaq's
/// that `compat.jq` wraps.
fn funs() -> impl Iterator<Item = Fun<Kind>> {
    let ours: Vec<Fun<Kind>> = natives::funs()
        .into_vec()
        .into_iter()
        .map(native::run::<Kind>)
        .collect();
    let replaced: Vec<(&str, usize)> = ours
        .iter()
        .map(|(name, args, _)| (*name, args.len()))
        .collect();
    let theirs = jaq_funs().filter(move |f| !replaced.contains(&(f.0, f.1.len())));
    let aliases = jaq_funs().filter_map(|(name, args, f)| {
        ALIASES
            .iter()
            .find(|(n, arity, _)| *n == name && *arity == args.len())
            .map(|(_, _, alias)| (*alias, args, f))
    });
    theirs
        .collect::<Vec<_>>()
        .into_iter()
        .chain(aliases)
        .chain(ours)
}

/// Compiles `code`; `vars` are the user's global variable names without `$`.
pub(crate) fn compile(
    code: &str,
    origin: &str,
    vars: &[String],
) -> Result<jaq_core::Filter<Kind>, CompileReport> {
    let report = |diagnostics| CompileReport {
        origin: origin.to_string(),
        diagnostics,
    };
    let code = &*crate::desugar::rewrite(code, origin)?;
    let arena = Arena::default();
    let loader = Loader::new(defs());
    let modules = loader
        .load(&arena, File { path: (), code })
        .map_err(|e| report(load_diagnostics(e)))?;
    let modules = load::import(&modules, |_path| Err("modules are not supported".into()))
        .map(|()| modules)
        .map_err(|e| report(load_diagnostics(e)))?;
    let globals: Vec<String> = BUILTIN_VARS
        .iter()
        .map(ToString::to_string)
        .chain(vars.iter().map(|v| format!("${v}")))
        .collect();
    Compiler::default()
        .with_funs(funs())
        .with_global_vars(globals.iter().map(String::as_str))
        .compile(modules)
        .map_err(|e| report(compile_diagnostics(e)))
}

/// A native filter with a run pointer over our data kind.
pub(crate) type NativeRun = native::Filter<RunPtr<Kind>>;
