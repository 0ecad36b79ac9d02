//! Turning jq program text into a jaq filter: jq's standard library (jaq's definitions plus
//! our jq-compatibility layer in `compat.jq`), native functions, global variables, and
//! parse/compile errors pointing into the program text with line, column and a caret.

use std::fmt;
use std::path::{Path, PathBuf};

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

fn load_diagnostics<P>(errs: load::Errors<&str, P>) -> Vec<Diagnostic> {
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

fn compile_diagnostics<P>(errs: jaq_core::compile::Errors<&str, P>) -> Vec<Diagnostic> {
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
    ("sort", 0, "_jaq_sort"),
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

/// jq names a data import `$d` also `$d::d`; jaq knows only `$d`. Rewrites `$x::x` to `$x`
/// outside strings and comments (borrowed when there is none).
pub(crate) fn data_names(code: &str) -> std::borrow::Cow<'_, str> {
    if !code.contains("::") {
        return code.into();
    }
    let b = code.as_bytes();
    let ident = |mut j: usize| {
        while j < b.len() && (b[j].is_ascii_alphanumeric() || b[j] == b'_') {
            j += 1;
        }
        j
    };
    let mut out = String::with_capacity(code.len());
    let (mut i, mut copied) = (0, 0);
    let (mut in_str, mut in_comment) = (false, false);
    while i < b.len() {
        let c = b[i];
        if in_comment {
            in_comment = c != b'\n';
        } else if in_str {
            match c {
                b'\\' => i += 1,
                b'"' => in_str = false,
                _ => {}
            }
        } else if c == b'#' {
            in_comment = true;
        } else if c == b'"' {
            in_str = true;
        } else if c == b'$' {
            let end = ident(i + 1);
            let name = &code[i + 1..end];
            if !name.is_empty() && code[end..].starts_with("::") {
                let end2 = ident(end + 2);
                if &code[end + 2..end2] == name {
                    out.push_str(&code[copied..end]);
                    copied = end2;
                    i = end2;
                    continue;
                }
            }
        }
        i += 1;
    }
    if copied == 0 {
        return code.into();
    }
    out.push_str(&code[copied..]);
    out.into()
}

/// Where `import`/`include` look for modules (jq's `-L`); jq's default when empty:
/// `~/.jq`, `$ORIGIN/../lib/jq`, `$ORIGIN/../lib`.
pub(crate) fn search_paths(lib_dirs: &[PathBuf]) -> Vec<PathBuf> {
    if lib_dirs.is_empty() {
        ["~/.jq", "$ORIGIN/../lib/jq", "$ORIGIN/../lib"]
            .iter()
            .map(PathBuf::from)
            .collect()
    } else {
        lib_dirs.to_vec()
    }
}

/// `~/…` and `$ORIGIN/…` as jq expands them in search paths.
fn expand(path: &Path) -> PathBuf {
    let home = || std::env::var_os(if cfg!(windows) { "USERPROFILE" } else { "HOME" });
    if let Ok(rest) = path.strip_prefix("~")
        && let Some(home) = home()
    {
        return PathBuf::from(home).join(rest);
    }
    if let Ok(rest) = path.strip_prefix("$ORIGIN")
        && let Some(dir) = std::env::current_exe()
            .ok()
            .and_then(|e| e.parent().map(Path::to_path_buf))
    {
        return dir.join(rest);
    }
    path.to_path_buf()
}

/// Finds module `rel` (`"a"`, `"c/d"`) with extension `ext` as jq does: in the import's
/// `search` paths (relative to the importing file's folder), then in the library paths; in
/// each, `rel.ext`, then `rel/<last part>.ext`, then (for jq modules) `rel/jq/main.jq`.
fn find_module(
    import: &load::Import<'_, &str, PathBuf>,
    paths: &[PathBuf],
    ext: &str,
) -> Result<PathBuf, String> {
    if let Some(meta) = import.meta
        && !matches!(meta, load::parse::Term::Obj(_))
    {
        return Err("Module metadata must be an object".into());
    }
    let parent = import.parent.parent().unwrap_or(Path::new("."));
    let meta_dirs: Vec<PathBuf> = import
        .meta
        .as_ref()
        .map(|meta| {
            meta_search(meta)
                .into_iter()
                .map(|p| parent.join(expand(&p)))
                .collect()
        })
        .unwrap_or_default();
    find_in(import.path, &meta_dirs, paths, ext)
}

/// Finds module `rel` with extension `ext` in `meta_dirs` (already resolved), then in the
/// library `paths` (`~` and `$ORIGIN` expanded).
pub(crate) fn find_in(
    rel: &str,
    meta_dirs: &[PathBuf],
    paths: &[PathBuf],
    ext: &str,
) -> Result<PathBuf, String> {
    let rel_path = Path::new(rel);
    if !rel_path.is_relative() {
        return Err(format!("module path must be relative: {rel}"));
    }
    let mut dirs: Vec<PathBuf> = meta_dirs.to_vec();
    dirs.extend(paths.iter().map(|p| expand(p)));
    let last = rel_path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    for dir in &dirs {
        let mut candidates = vec![
            dir.join(format!("{rel}.{ext}")),
            dir.join(rel_path).join(format!("{last}.{ext}")),
        ];
        if ext == "jq" {
            candidates.push(dir.join(rel_path).join("jq").join("main.jq"));
        }
        if let Some(found) = candidates.into_iter().find(|c| c.is_file()) {
            return Ok(found.canonicalize().unwrap_or(found));
        }
    }
    Err(format!("module not found: {rel}"))
}

/// A plain string literal's text.
fn as_str<'a>(t: &load::parse::Term<&'a str>) -> Option<&'a str> {
    match t {
        load::parse::Term::Str(None, parts) => match &parts[..] {
            [load::lex::StrPart::Str(s)] => Some(s),
            _ => None,
        },
        _ => None,
    }
}

/// The `search` entry of an import's metadata: a string or an array of strings.
fn meta_search(meta: &load::parse::Term<&str>) -> Vec<PathBuf> {
    use load::parse::Term;
    let Term::Obj(entries) = meta else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (k, v) in entries {
        if as_str(k) == Some("search") {
            let mut push = |t: &Term<&str>| {
                if let Some(s) = as_str(t) {
                    out.push(PathBuf::from(s));
                }
            };
            match v {
                Some(Term::Arr(Some(items))) => {
                    let mut stack = vec![&**items];
                    while let Some(t) = stack.pop() {
                        match t {
                            Term::BinOp(l, load::parse::BinaryOp::Comma, r) => {
                                stack.push(r);
                                stack.push(l);
                            }
                            other => push(other),
                        }
                    }
                }
                Some(other) => push(other),
                None => {}
            }
        }
    }
    out
}

/// A compiled program and the texts of its data imports (`import "x" as $x;`, each bound to
/// the array of the file's JSON values), in the order the program's variables expect them
/// after the global ones.
pub(crate) type Compiled = (jaq_core::Filter<Kind>, Vec<crate::Arg>);

/// Compiles `code`; `vars` are the user's global variable names without `$`; modules are
/// looked for in `lib_dirs` (jq's default search path when empty); with `home_file`, the
/// definitions of a file `~/.jq` come with it, as the `jq` command includes them.
pub(crate) fn compile(
    code: &str,
    origin: &str,
    vars: &[String],
    lib_dirs: &[PathBuf],
    home_file: bool,
) -> Result<Compiled, CompileReport> {
    let report = |diagnostics| CompileReport {
        origin: origin.to_string(),
        diagnostics,
    };
    let code = &*data_names(code);
    let code = &*crate::desugar::rewrite(code, origin)?;
    let arena = Arena::default();
    let paths = search_paths(lib_dirs);
    // What a module defines, for several imports under one alias (`aliases`).
    let defines = |rel: &str| {
        let path = find_in(rel, &[], &paths, "jq").ok()?;
        let text = std::fs::read_to_string(path).ok()?;
        Some(crate::aliases::defined(&text))
    };
    let code = &*crate::aliases::merge(code, &defines);
    // jq's `get_search_list`: the -L folders as real paths, else the default list as written.
    let listed: Vec<String> = if lib_dirs.is_empty() {
        paths.iter().map(|p| p.display().to_string()).collect()
    } else {
        paths
            .iter()
            .map(|p| {
                p.canonicalize()
                    .unwrap_or_else(|_| p.clone())
                    .display()
                    .to_string()
            })
            .collect()
    };
    let search_list = format!(
        "def get_search_list: {};",
        serde_json::to_string(&listed).unwrap_or_else(|_| "[]".into())
    );
    let search_def = load::parse(&search_list, |p| p.defs()).unwrap_or_default();
    // As jq: a file `$HOME/.jq` is included in every program (a folder is a search path).
    let home_file = std::env::var_os(if cfg!(windows) { "USERPROFILE" } else { "HOME" })
        .map(|home| PathBuf::from(home).join(".jq"))
        .filter(|p| home_file && p.is_file());
    let home_code = match &home_file {
        Some(path) => {
            let code = std::fs::read_to_string(path).unwrap_or_default();
            let code = data_names(&code).into_owned();
            crate::desugar::rewrite(&code, &path.display().to_string())?.into_owned()
        }
        None => String::new(),
    };
    let Some(home_defs) = load::parse(&home_code, |p| p.defs()) else {
        let path = home_file.unwrap_or_default().display().to_string();
        let d = diagnostic(
            code,
            "",
            format!("syntax error in {path}, which jq includes in every program"),
            "fix or move that file",
        );
        return Err(report(vec![d]));
    };
    let main_path = std::env::current_dir()
        .unwrap_or_default()
        .join("<top-level>");
    // `Def` is covariant in its strings: the static definitions live as long as ours.
    #[allow(clippy::map_identity, reason = "shortens the definitions' lifetime")]
    let prelude = defs()
        .map(|d| -> load::parse::Def<&str> { d })
        .chain(search_def)
        .chain(home_defs);
    let loader = Loader::new(prelude).with_read(|import: load::Import<'_, &str, PathBuf>| {
        let path = find_module(&import, &paths, "jq")?;
        let code = std::fs::read_to_string(&path)
            .map_err(|e| format!("cannot read module {}: {e}", path.display()))?;
        let code = data_names(&code);
        let code =
            crate::desugar::rewrite(&code, &path.display().to_string()).map_err(|r| r.summary())?;
        Ok(File {
            code: crate::aliases::merge(&code, &defines).into_owned(),
            path,
        })
    });
    let modules = loader
        .load(
            &arena,
            File {
                path: main_path,
                code,
            },
        )
        .map_err(|e| report(load_diagnostics(e)))?;
    let mut data = Vec::new();
    load::import(&modules, |import| {
        let path = find_module(&import, &paths, "json")?;
        let text = std::fs::read(&path)
            .map_err(|e| format!("cannot read data module {}: {e}", path.display()))?;
        let text = crate::Arg::Texts(String::from_utf8_lossy(&text).into_owned());
        text.value()
            .map_err(|e| format!("invalid JSON in data module {}: {e}", path.display()))?;
        data.push(text);
        Ok(())
    })
    .map_err(|e| report(load_diagnostics(e)))?;
    let globals: Vec<String> = BUILTIN_VARS
        .iter()
        .map(ToString::to_string)
        .chain(vars.iter().map(|v| format!("${v}")))
        .collect();
    let filter = Compiler::default()
        .with_funs(funs())
        .with_global_vars(globals.iter().map(String::as_str))
        .compile(modules)
        .map_err(|e| report(compile_diagnostics(e)))?;
    Ok((filter, data))
}

/// A native filter with a run pointer over our data kind.
pub(crate) type NativeRun = native::Filter<RunPtr<Kind>>;
