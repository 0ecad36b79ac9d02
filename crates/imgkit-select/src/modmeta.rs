//! jq's `modulemeta`: a module's metadata, its imports and includes (`deps`) and the names of
//! its definitions (`defs`), read from the module file found in the search path.

use std::cell::RefCell;
use std::path::PathBuf;

use jaq_core::load::lex::{StrPart, Tok, Token};
use jaq_core::load::{self, Lexer};
use jaq_json::{Map, Val};

thread_local! {
    /// The search path of the running program (`-L`, or jq's default), for `modulemeta`.
    pub(crate) static SEARCH: RefCell<Vec<PathBuf>> = const { RefCell::new(Vec::new()) };
}

fn s(text: &str) -> Val {
    Val::utf8_str(text.as_bytes().to_vec())
}

/// Byte range of `part` (a slice of `code`) within `code`.
fn span(code: &str, part: &str) -> (usize, usize) {
    let start = (part.as_ptr() as usize).saturating_sub(code.as_ptr() as usize);
    (start, start + part.len())
}

/// The constant value of a metadata term (`{search: "./"}`), keys in written order: evaluated
/// as a jq program to its JSON text, read back (serde_json's map would sort the keys).
fn constant(text: &str) -> Result<Val, String> {
    let filter = crate::Filter::compile(&format!("({text}) | tojson"), "<metadata>")
        .map_err(|e| e.to_string())?;
    match filter.select(&serde_json::Value::Null) {
        Ok(out) => match out.into_iter().next() {
            Some(serde_json::Value::String(json)) => crate::read::parse_one(&json),
            _ => Err("Module metadata must be constant".into()),
        },
        Err(e) => Err(e.to_string()),
    }
}

/// The metadata of module `name` as jq's `modulemeta` gives it.
pub(crate) fn modulemeta(name: &Val) -> Result<Val, String> {
    let (Val::TStr(bytes) | Val::BStr(bytes)) = name else {
        return Err("modulemeta input module name must be a string".into());
    };
    let name = String::from_utf8_lossy(bytes).into_owned();
    let paths = SEARCH.with_borrow(Clone::clone);
    let path = crate::compile::find_in(&name, &[], &paths, "jq")?;
    let code = std::fs::read_to_string(&path)
        .map_err(|e| format!("cannot read module {}: {e}", path.display()))?;
    let tokens = Lexer::new(&code)
        .lex()
        .map_err(|_| format!("syntax error in module {}", path.display()))?;

    let mut out = Map::default();
    let mut deps = Vec::new();
    let mut i = 0;
    // The statement's tokens up to its `;`.
    let statement = |i: usize| -> (usize, usize) {
        let end = (i..tokens.len())
            .find(|&j| matches!(&tokens[j], Token(";", Tok::Sym)))
            .unwrap_or(tokens.len());
        (i, end)
    };
    let meta_text = |from: usize, to: usize| -> Option<&str> {
        (from < to).then(|| {
            let (a, _) = span(&code, tokens[from].0);
            let (_, b) = span(&code, tokens[to - 1].0);
            &code[a..b]
        })
    };
    let mut rest_at = 0;
    while i < tokens.len() {
        match &tokens[i] {
            Token("module", Tok::Word) => {
                let (from, to) = statement(i + 1);
                if let Some(text) = meta_text(from, to)
                    && let Val::Obj(meta) = constant(text)?
                {
                    for (k, v) in meta.iter() {
                        out.insert(k.clone(), v.clone());
                    }
                }
                i = to + 1;
            }
            Token(word @ ("import" | "include"), Tok::Word) => {
                let Some(Token(_, Tok::Str(parts))) = tokens.get(i + 1) else {
                    break;
                };
                let relpath: String = parts
                    .iter()
                    .map(|p| match p {
                        StrPart::Str(s) => (*s).to_string(),
                        StrPart::Char(c) => c.to_string(),
                        StrPart::Term(_) => String::new(),
                    })
                    .collect();
                let mut j = i + 2;
                let mut alias = None;
                if *word == "import" {
                    if let Some(Token("as", Tok::Word)) = tokens.get(j)
                        && let Some(Token(name, _)) = tokens.get(j + 1)
                    {
                        alias = Some(*name);
                    }
                    j += 2;
                }
                let (from, to) = statement(j);
                let mut dep = Map::default();
                if let Some(text) = meta_text(from, to)
                    && let Val::Obj(meta) = constant(text)?
                {
                    for (k, v) in meta.iter() {
                        dep.insert(k.clone(), v.clone());
                    }
                }
                let is_data = alias.is_some_and(|a| a.starts_with('$'));
                if let Some(a) = alias {
                    dep.insert(s("as"), s(a.trim_start_matches('$')));
                }
                dep.insert(s("is_data"), Val::Bool(is_data));
                dep.insert(s("relpath"), s(&relpath));
                deps.push(Val::obj(dep));
                i = to + 1;
            }
            first => {
                rest_at = span(&code, first.0).0;
                break;
            }
        }
        rest_at = code.len();
    }
    // The definitions as the loader reads them (`$d::d` and jq-only syntax rewritten).
    let body = crate::compile::data_names(&code[rest_at..]).into_owned();
    let body = crate::desugar::rewrite(&body, "<module>")
        .map(std::borrow::Cow::into_owned)
        .unwrap_or(body);
    let defs = load::parse(&body, |p| p.defs()).unwrap_or_default();
    let defs: Vec<Val> = defs
        .iter()
        .map(|d| s(&format!("{}/{}", d.name, d.args.len())))
        .collect();
    out.insert(s("deps"), deps.into_iter().collect());
    out.insert(s("defs"), defs.into_iter().collect());
    Ok(Val::obj(out))
}
