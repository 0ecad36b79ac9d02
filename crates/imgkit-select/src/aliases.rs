//! Several modules imported under one alias (`import "a" as t; import "b" as t;`): jq looks
//! `t::f` up in the last of them that defines `f`; jaq looks only in the last one. Before jaq
//! loads the program, each import but the last of an alias gets an alias of its own, and each
//! `t::f` names the import jq would take `f` from.

use std::borrow::Cow;

use jaq_core::load::lex::{Lexer, StrPart, Tok, Token};

type Tk<'a> = Token<&'a str>;

/// Rewrites `code` when it imports several modules under one alias; `defines(path)` lists the
/// names a module defines (`None` when it cannot be read: jaq then reports it).
pub(crate) fn merge<'a>(
    code: &'a str,
    defines: &dyn Fn(&str) -> Option<Vec<String>>,
) -> Cow<'a, str> {
    if code.matches("import").count() < 2 {
        return Cow::Borrowed(code);
    }
    let Ok(tokens) = Lexer::new(code).lex() else {
        return Cow::Borrowed(code);
    };
    let imports = imports(&tokens);
    let mut edits: Vec<(usize, usize, String)> = Vec::new();
    // alias → the imports under it, in order: (new alias, module path).
    let mut groups: Vec<(&str, Vec<(String, &str)>)> = Vec::new();
    for (alias, path, _) in &imports {
        match groups.iter_mut().find(|(a, _)| a == alias) {
            Some((_, list)) => list.push((String::new(), path)),
            None => groups.push((alias, vec![(String::new(), path)])),
        }
    }
    groups.retain(|(_, list)| list.len() > 1);
    if groups.is_empty() {
        return Cow::Borrowed(code);
    }
    let mut seen: Vec<(&str, usize)> = Vec::new();
    for (alias, _, token) in &imports {
        let Some((_, list)) = groups.iter_mut().find(|(a, _)| a == alias) else {
            continue;
        };
        let n = if let Some((_, n)) = seen.iter_mut().find(|(a, _)| a == alias) {
            *n += 1;
            *n
        } else {
            seen.push((alias, 0));
            0
        };
        if n + 1 < list.len() {
            let renamed = format!("{alias}__imgkit_alias{n}");
            let at = offset(code, token);
            edits.push((at, at + token.len(), renamed.clone()));
            list[n].0 = renamed;
        }
    }
    let names: Vec<Vec<Option<Vec<String>>>> = groups
        .iter()
        .map(|(_, list)| list.iter().map(|(_, path)| defines(path)).collect())
        .collect();
    each_word(&tokens, &mut |word| {
        let Some((alias, name)) = word.split_once("::") else {
            return;
        };
        let Some(g) = groups.iter().position(|(a, _)| *a == alias) else {
            return;
        };
        let list = &groups[g].1;
        // The last import defining `name`, as jq looks it up; else the last (jaq's error).
        let k = (0..list.len())
            .rev()
            .find(|&k| {
                names[g][k]
                    .as_ref()
                    .is_some_and(|defs| defs.iter().any(|d| d == name))
            })
            .unwrap_or(list.len() - 1);
        if k + 1 < list.len() {
            let at = offset(code, word);
            edits.push((at, at + alias.len(), list[k].0.clone()));
        }
    });
    edits.sort_by_key(|(at, _, _)| *at);
    let mut out = String::with_capacity(code.len() + 32 * edits.len());
    let mut last = 0;
    for (from, to, text) in edits {
        out.push_str(&code[last..from]);
        out.push_str(&text);
        last = to;
    }
    out.push_str(&code[last..]);
    Cow::Owned(out)
}

/// Byte offset of `s`, a slice of `code`, in `code`.
fn offset(code: &str, s: &str) -> usize {
    (s.as_ptr() as usize).saturating_sub(code.as_ptr() as usize)
}

/// The module imports at the head of a program: (alias, path, the alias token's text).
fn imports<'a>(tokens: &[Tk<'a>]) -> Vec<(&'a str, &'a str, &'a str)> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < tokens.len() {
        let Token(word, Tok::Word) = &tokens[i] else {
            break;
        };
        if !matches!(*word, "import" | "include" | "module") {
            break;
        }
        let end = tokens[i..]
            .iter()
            .position(|t| matches!(t, Token(";", Tok::Sym)))
            .map_or(tokens.len(), |j| i + j);
        if let [
            Token(_, Tok::Word),
            Token(_, Tok::Str(parts)),
            Token("as", Tok::Word),
            Token(alias, Tok::Word),
            ..,
        ] = &tokens[i..end]
            && *word == "import"
            && let [StrPart::Str(path)] = &parts[..]
        {
            out.push((*alias, *path, *alias));
        }
        i = end + 1;
    }
    out
}

/// Every word token (`f`, `t::f`), in blocks and string interpolations too.
fn each_word<'a>(tokens: &[Tk<'a>], f: &mut dyn FnMut(&'a str)) {
    for t in tokens {
        match &t.1 {
            Tok::Word => f(t.0),
            Tok::Block(inner) => each_word(inner, f),
            Tok::Str(parts) => {
                for p in parts {
                    if let StrPart::Term(t) = p {
                        each_word(std::slice::from_ref(t), f);
                    }
                }
            }
            _ => {}
        }
    }
}

/// The names a module's text defines (`def name`), at any depth.
pub(crate) fn defined(code: &str) -> Vec<String> {
    let Ok(tokens) = Lexer::new(code).lex() else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let mut after_def = false;
    each_word(&tokens, &mut |w| {
        if after_def {
            out.push(w.to_string());
        }
        after_def = w == "def";
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_name_from_the_last_import_defining_it() {
        let code = "import \"a\" as t;\nimport \"b\" as t;\nimport \"c\" as t; [t::x, t::y, t::z]";
        let defs = |path: &str| {
            Some(match path {
                "a" => vec!["x".to_string()],
                "b" => vec!["x".into(), "y".into()],
                _ => vec!["y".into(), "z".into()],
            })
        };
        assert_eq!(
            merge(code, &defs),
            "import \"a\" as t__imgkit_alias0;\nimport \"b\" as t__imgkit_alias1;\nimport \"c\" as t; [t__imgkit_alias1::x, t::y, t::z]"
        );
        let single = "import \"a\" as t; import \"b\" as u; t::x";
        assert!(matches!(merge(single, &defs), Cow::Borrowed(_)));
    }
}
