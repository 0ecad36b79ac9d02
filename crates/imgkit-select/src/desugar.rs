//! jq syntax that jaq's parser does not accept, rewritten into jq that it does, before jaq
//! parses the program (we extend jaq from outside, without forking it).
//!
//! * `E as P1 ?// P2 ?// P3 | BODY` (destructuring alternatives) becomes
//!   `E as $a | . as $d | null as $x | null as $y | (def body(x; y): x as $x | y as $y | BODY;
//!   try ($a as P1 | body($x; $y)) catch ($d | try ($a as P2 | body($x; $y)) catch ($d |
//!   $a as P3 | body($x; $y))))`, where `$x`, `$y` are all variables of all patterns (null when
//!   the pattern that matched lacks them): for each output of `E`, an error binding a pattern or
//!   in BODY moves on to the next pattern (outputs already produced stay); the last pattern's
//!   errors propagate. A `break` out of BODY is not an error and is not caught (jq 1.6–1.8 catch
//!   it: jqlang/jq#3592). The names introduced start with `__imgkit_`.
//! * `$name: pattern` in object patterns becomes `$name, "name": pattern`.
//! * `reduce`/`foreach` over a source that is not a single term (`reduce .[] / .[] as $x …`)
//!   get the source parenthesised.
//! * Numbers without a leading zero (`.5`) get one.
//! * Errors jq reports when compiling and jaq does not: constant non-string object keys
//!   (`{(0): 1}`, `. as {(true): $x} | …`) and module metadata that is not a constant object.
//!
//! Programs without these constructs are returned as they are, borrowed, after a cheap scan of
//! the text, so their error positions are jaq's. Rewritten programs keep every line where it
//! was: BODY stays in place (once), text is inserted on the lines it belongs to, and the patterns
//! moved after BODY are written on its last line.

use std::borrow::Cow;
use std::fmt::Write as _;

use jaq_core::load::lex::{Lexer, StrPart, Tok, Token};

use crate::compile::CompileReport;

type Tk<'a> = Token<&'a str>;

/// Prefix of the names (variables, a definition and its parameters) the rewrite introduces;
/// jq programs do not name theirs like this.
const PREFIX: &str = "__imgkit_";

/// Rewrites jq syntax jaq does not parse; `Err` for programs jq rejects when compiling and jaq
/// would accept. Anything else that does not lex or parse is returned unchanged, for jaq to
/// report.
pub(crate) fn rewrite<'a>(code: &'a str, origin: &str) -> Result<Cow<'a, str>, CompileReport> {
    if !worth_lexing(code) {
        return Ok(Cow::Borrowed(code));
    }
    rewrite_lexed(code, origin)
}

/// [`rewrite`] without the cheap scan.
fn rewrite_lexed<'a>(code: &'a str, origin: &str) -> Result<Cow<'a, str>, CompileReport> {
    let Ok(tokens) = Lexer::new(code).lex() else {
        return Ok(Cow::Borrowed(code));
    };
    if let Some((found, message, label)) = constant_error(code, &tokens) {
        return Err(report(origin, code, found, message, label));
    }
    let count = match alternatives_supported(code, &tokens) {
        Ok(count) => count,
        Err(Some(found)) => {
            let message = "destructuring alternatives `?//` are supported in `… as P1 ?// P2 | body` only, not in reduce or foreach".to_string();
            return Err(report(origin, code, found, message, "not supported here"));
        }
        // Leave the syntax error to jaq, at its position in the original text.
        Err(None) => return Ok(Cow::Borrowed(code)),
    };
    let mut inserts = Vec::new();
    let mut replaces = Vec::new();
    each_seq(&tokens, Ctx::Top, &mut |seq, _| {
        local_edits(code, seq, &mut inserts);
        delete_edits(code, seq, &mut replaces);
    });
    let mut text = Cow::Borrowed(code);
    if !inserts.is_empty() || !replaces.is_empty() {
        // (offset, text, offset the original text goes on from): an insertion goes on at its
        // offset, a replacement after the text it replaces.
        let mut edits: Vec<(usize, String, usize)> = inserts
            .into_iter()
            .map(|(at, s)| (at, s, at))
            .chain(replaces)
            .collect();
        edits.sort_by_key(|(at, _, _)| *at);
        let mut out = String::with_capacity(code.len() + 16 * edits.len());
        let mut last = 0;
        for (at, s, resume) in edits {
            out.push_str(&code[last.min(at)..at]);
            out.push_str(&s);
            last = resume.max(at);
        }
        out.push_str(&code[last..]);
        text = Cow::Owned(out);
    }
    // Each round rewrites one group and adds none: `count` rounds at most.
    for n in 0..count {
        let Some(next) = rewrite_last_alternative(&text, n) else {
            break;
        };
        text = Cow::Owned(next);
    }
    Ok(text)
}

/// Whether the program may contain anything [`rewrite`] changes: `?//`, `reduce`/`foreach`,
/// `module`, `):` (a parenthesised object key), `$name:` (an object pattern entry) or `.5`.
fn worth_lexing(code: &str) -> bool {
    let bytes = code.as_bytes();
    let colon_after = |mut i: usize| {
        while bytes.get(i).is_some_and(u8::is_ascii_whitespace) {
            i += 1;
        }
        bytes.get(i) == Some(&b':')
    };
    let ident = |b: &u8| b.is_ascii_alphanumeric() || *b == b'_';
    let key_like = bytes.iter().enumerate().any(|(i, b)| match b {
        b')' => colon_after(i + 1),
        // `.5`, not `1.5`
        b'.' => {
            bytes.get(i + 1).is_some_and(u8::is_ascii_digit)
                && !(i > 0 && bytes[i - 1].is_ascii_digit())
        }
        b'$' => {
            let mut j = i + 1;
            while bytes.get(j).is_some_and(ident) {
                j += 1;
            }
            j > i + 1 && colon_after(j)
        }
        _ => false,
    });
    key_like
        || (code.contains("|=") && code.contains("empty"))
        || code.contains("?//")
        || code.contains("reduce")
        || code.contains("foreach")
        || code.contains("module")
}

/// What kind of token sequence: the program, or the inside of a block.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Ctx {
    Top,
    Paren,
    Bracket,
    Brace,
}

/// Calls `f` on the program's token sequence and on the inside of every block and string
/// interpolation (with the closing delimiter as last token).
fn each_seq<'a>(seq: &[Tk<'a>], ctx: Ctx, f: &mut dyn FnMut(&[Tk<'a>], Ctx)) {
    f(seq, ctx);
    for Token(s, tok) in seq {
        match tok {
            Tok::Block(inner) => {
                let ctx = match s.as_bytes().first() {
                    Some(b'[') => Ctx::Bracket,
                    Some(b'{') => Ctx::Brace,
                    _ => Ctx::Paren,
                };
                each_seq(inner, ctx, f);
            }
            Tok::Str(parts) => {
                for part in parts {
                    if let StrPart::Term(Token(_, Tok::Block(inner))) = part {
                        each_seq(inner, Ctx::Paren, f);
                    }
                }
            }
            _ => {}
        }
    }
}

/// Byte offset of `s`, a slice of `code`, in `code`.
fn offset(code: &str, s: &str) -> usize {
    (s.as_ptr() as usize)
        .checked_sub(code.as_ptr() as usize)
        .filter(|o| *o <= code.len())
        .unwrap_or(code.len())
}

fn is_sym(t: &Tk<'_>, s: &str) -> bool {
    matches!(t, Token(x, Tok::Sym) if *x == s)
}

fn is_word(t: &Tk<'_>, s: &str) -> bool {
    matches!(t, Token(x, Tok::Word) if *x == s)
}

/// The tokens of a block without its closing delimiter.
fn inner<'t, 'a>(t: &'t Tk<'a>) -> Option<&'t [Tk<'a>]> {
    match &t.1 {
        Tok::Block(tokens) => Some(tokens.split_last().map_or(&[][..], |(_, init)| init)),
        _ => None,
    }
}

fn opens(t: &Tk<'_>, c: u8) -> bool {
    matches!(t.1, Tok::Block(_)) && t.0.as_bytes().first() == Some(&c)
}

/// Splits a sequence at `sep` symbols (blocks are single tokens, so only their level counts).
fn split<'t, 'a>(seq: &'t [Tk<'a>], sep: &str) -> impl Iterator<Item = &'t [Tk<'a>]> {
    seq.split(move |t| is_sym(t, sep))
}

/// A pattern: `$x`, `[…]` or `{…}`.
fn is_pattern(t: &Tk<'_>) -> bool {
    matches!(t.1, Tok::Var) || opens(t, b'[') || opens(t, b'{')
}

// ---------------------------------------------------------------------------------------------
// Compile-time errors.

/// A literal jq evaluates when compiling: a number, string without interpolation, `true`,
/// `false`, `null`, arrays and objects of those; its jq type name.
fn constant(seq: &[Tk<'_>]) -> Option<&'static str> {
    match seq {
        [Token(_, Tok::Num)] | [Token("-", Tok::Sym), Token(_, Tok::Num)] => Some("number"),
        [Token(_, Tok::Str(parts))] => parts
            .iter()
            .all(|p| !matches!(p, StrPart::Term(_)))
            .then_some("string"),
        [Token("true" | "false", Tok::Word)] => Some("boolean"),
        [Token("null", Tok::Word)] => Some("null"),
        [t] if opens(t, b'[') => {
            let items = inner(t)?;
            (items.is_empty() || split(items, ",").all(|x| constant(x).is_some()))
                .then_some("array")
        }
        [t] if opens(t, b'{') => {
            let items = inner(t)?;
            let entry = |e: &[Tk<'_>]| match e {
                [Token(k, Tok::Word), Token(":", Tok::Sym), v @ ..] => {
                    !k.contains("::") && constant(v).is_some()
                }
                [k @ Token(_, Tok::Str(_)), Token(":", Tok::Sym), v @ ..] => {
                    constant(std::slice::from_ref(k)) == Some("string") && constant(v).is_some()
                }
                _ => false,
            };
            (items.is_empty() || split(items, ",").all(entry)).then_some("object")
        }
        [t] if opens(t, b'(') => constant(inner(t)?),
        _ => None,
    }
}

/// The first compile-time error jq reports that jaq does not: (offending text, message).
fn constant_error<'a>(code: &'a str, tokens: &[Tk<'a>]) -> Option<(&'a str, String, &'static str)> {
    if let [module, rest @ ..] = tokens
        && is_word(module, "module")
        && let Some(end) = rest.iter().position(|t| is_sym(t, ";"))
        && let (Some(first), Some(last)) = (rest[..end].first(), rest[..end].last())
    {
        let message = match constant(&rest[..end]) {
            None => Some("module metadata must be constant"),
            Some("object") => None,
            Some(_) => Some("module metadata must be an object"),
        };
        if let Some(message) = message {
            let start = offset(code, first.0);
            let end = (offset(code, last.0) + last.0.len()).clamp(start, code.len());
            let label = "not a constant object";
            return Some((&code[start..end], message.to_string(), label));
        }
    }
    let mut found = None;
    each_seq(tokens, Ctx::Top, &mut |seq, ctx| {
        if ctx != Ctx::Brace || found.is_some() {
            return;
        }
        let Some((_, entries)) = seq.split_last() else {
            return;
        };
        for entry in split(entries, ",") {
            let [key, colon, ..] = entry else { continue };
            if !opens(key, b'(') || !is_sym(colon, ":") {
                continue;
            }
            let Some(key) = inner(key) else { continue };
            if let [Token(text, Tok::Num | Tok::Word | Tok::Block(_))] = key
                && let Some(kind) = constant(key).filter(|k| *k != "string")
            {
                let message = format!("cannot use {kind} ({text}) as object key");
                found = Some((*text, message, "not a string"));
                return;
            }
        }
    });
    found
}

// ---------------------------------------------------------------------------------------------
// Local rewrites: `$name: pattern` and `reduce`/`foreach` sources.

/// Indices of the patterns after the `as` at `i`: `P1 ?// P2 …`, and the index after them.
fn patterns_after(seq: &[Tk<'_>], i: usize) -> (Vec<usize>, usize) {
    let mut found = Vec::new();
    if !seq.get(i + 1).is_some_and(is_pattern) {
        return (found, i + 1);
    }
    found.push(i + 1);
    let mut j = i + 2;
    while let (Some(q), Some(alt), Some(p)) = (seq.get(j), seq.get(j + 1), seq.get(j + 2)) {
        let adjacent = q.0.as_ptr() as usize + q.0.len() == alt.0.as_ptr() as usize;
        if !(is_sym(q, "?") && is_sym(alt, "//") && adjacent && is_pattern(p)) {
            break;
        }
        found.push(j + 2);
        j += 3;
    }
    (found, j)
}

/// Calls `f` on every object pattern inside pattern `t`, `t` included.
fn each_object_pattern<'a>(t: &Tk<'a>, f: &mut dyn FnMut(&[Tk<'a>])) {
    let Some(items) = inner(t) else { return };
    if opens(t, b'[') {
        for item in split(items, ",") {
            if let [p] = item {
                each_object_pattern(p, f);
            }
        }
    } else if opens(t, b'{') {
        f(items);
        for entry in split(items, ",") {
            if let Some(colon) = entry.iter().position(|t| is_sym(t, ":"))
                && let [p] = &entry[colon + 1..]
            {
                each_object_pattern(p, f);
            }
        }
    }
}

/// Variables a pattern binds, in order, without repetitions.
fn pattern_vars<'a>(t: &Tk<'a>, out: &mut Vec<&'a str>) {
    if let Tok::Var = t.1 {
        if !out.contains(&t.0) {
            out.push(t.0);
        }
        return;
    }
    let Some(items) = inner(t) else { return };
    let object = opens(t, b'{');
    for item in split(items, ",") {
        if !object {
            if let [p] = item {
                pattern_vars(p, out);
            }
            continue;
        }
        // `$name`, `$name: pattern`, `key: pattern`
        if let Some(v @ Token(_, Tok::Var)) = item.first() {
            pattern_vars(v, out);
        }
        if let Some(colon) = item.iter().position(|t| is_sym(t, ":"))
            && let [p] = &item[colon + 1..]
        {
            pattern_vars(p, out);
        }
    }
}

const BINARY: &[&str] = &[
    "|", ",", "+", "-", "*", "/", "%", "=", "|=", "+=", "-=", "*=", "/=", "%=", "<", ">", "<=",
    ">=", "==", "!=", "//", "//=",
];

fn is_binary(t: &Tk<'_>) -> bool {
    match t {
        Token(s, Tok::Sym) => BINARY.contains(s),
        Token(s, Tok::Word) => matches!(*s, "and" | "or"),
        _ => false,
    }
}

/// Whether `source` (of a reduce/foreach) has a binary operator outside blocks, so that jaq,
/// which takes a single term there, needs it parenthesised.
fn has_binary(source: &[Tk<'_>]) -> bool {
    source.iter().enumerate().skip(1).any(|(k, t)| {
        // `-` after an operator (or first) is a negation.
        is_binary(t) && !(is_sym(t, "-") && is_binary(&source[k - 1]))
    })
}

/// Insertions (offset, text) for `$name: pattern` entries, `reduce`/`foreach` sources and
/// numbers without a leading zero (`.5`) in one token sequence.
fn local_edits(code: &str, seq: &[Tk<'_>], inserts: &mut Vec<(usize, String)>) {
    for (i, t) in seq.iter().enumerate() {
        if let (Token(".", Tok::Sym), Some(Token(n, Tok::Num))) = (t, seq.get(i + 1))
            && t.0.as_ptr() as usize + 1 == n.as_ptr() as usize
        {
            inserts.push((offset(code, t.0), "0".to_string()));
        }
        if is_word(t, "as") {
            for p in patterns_after(seq, i).0 {
                each_object_pattern(&seq[p], &mut |items| {
                    for entry in split(items, ",") {
                        if let [Token(v, Tok::Var), colon, ..] = entry
                            && is_sym(colon, ":")
                        {
                            let at = offset(code, v) + v.len();
                            inserts.push((at, format!(", \"{}\"", &v[1..])));
                        }
                    }
                });
            }
        }
        if is_word(t, "reduce") || is_word(t, "foreach") {
            let mut nested = 0usize;
            let mut end = None;
            for (k, t) in seq.iter().enumerate().skip(i + 1) {
                if is_word(t, "reduce") || is_word(t, "foreach") {
                    nested += 1;
                } else if is_word(t, "as") {
                    if nested == 0 {
                        end = Some(k);
                        break;
                    }
                    nested -= 1;
                }
            }
            let Some(end) = end else { continue };
            let source = &seq[i + 1..end];
            if let (Some(first), Some(last), true) =
                (source.first(), source.last(), has_binary(source))
            {
                inserts.push((offset(code, first.0), "(".to_string()));
                inserts.push((offset(code, last.0) + last.0.len(), ")".to_string()));
            }
        }
    }
}

/// `PATHS |= empty` deletes every path PATHS gives at once, as jq 1.7.1's `_modify` collects
/// them and ends with `delpaths` (jaq deletes one after another, so `.[1,2] |= empty` would
/// delete indices 1 and 3): rewritten to `delpaths([path(PATHS)])`. Edits are
/// (offset, text, offset the original text goes on from).
fn delete_edits(code: &str, seq: &[Tk<'_>], edits: &mut Vec<(usize, String, usize)>) {
    for (i, t) in seq.iter().enumerate() {
        if !(is_sym(t, "|=") && seq.get(i + 1).is_some_and(|e| is_word(e, "empty"))) {
            continue;
        }
        let after_ok = match seq.get(i + 2) {
            None => true,
            Some(Token(s, Tok::Sym)) => matches!(*s, "|" | "," | ";" | ")" | "]" | "}" | "//"),
            Some(Token(w, Tok::Word)) => matches!(*w, "end" | "else" | "elif" | "catch"),
            Some(_) => false,
        };
        // The left side: back to the nearest operator that binds less tightly than `|=`.
        let start = seq[..i]
            .iter()
            .rposition(|t| match t {
                Token(s, Tok::Sym) => matches!(
                    *s,
                    "|" | ","
                        | "//"
                        | "="
                        | "|="
                        | "+="
                        | "-="
                        | "*="
                        | "/="
                        | "%="
                        | "//="
                        | ";"
                        | ":"
                ),
                Token(w, Tok::Word) => matches!(
                    *w,
                    "if" | "then"
                        | "elif"
                        | "else"
                        | "try"
                        | "catch"
                        | "as"
                        | "def"
                        | "label"
                        | "reduce"
                        | "foreach"
                ),
                _ => false,
            })
            .map_or(0, |k| k + 1);
        if !after_ok || start >= i {
            continue;
        }
        let lhs = offset(code, seq[start].0);
        let op = offset(code, t.0);
        let end = offset(code, seq[i + 1].0) + "empty".len();
        edits.push((lhs, "delpaths([path(".to_string(), lhs));
        edits.push((op, ")])".to_string(), end));
    }
}

// ---------------------------------------------------------------------------------------------
// Destructuring alternatives `?//`.

/// Index of the token that ends the BODY of `… as P | BODY` starting at `start`: the end of
/// the enclosing block or program, or a `;`, `:`, `then`, `elif`, `else`, `end`, `catch` that
/// belongs to a construct around it (or `,` between object entries).
fn body_end(seq: &[Tk<'_>], start: usize, ctx: Ctx) -> usize {
    let (mut ifs, mut tries, mut def_colons, mut def_semis) = (0usize, 0usize, 0usize, 0usize);
    for (k, t) in seq.iter().enumerate().skip(start) {
        match t {
            Token(s, Tok::Sym) => match *s {
                ")" | "]" | "}" if k + 1 == seq.len() && ctx != Ctx::Top => return k,
                ";" if def_semis == 0 => return k,
                ";" => def_semis -= 1,
                ":" if def_colons == 0 => return k,
                ":" => def_colons -= 1,
                "," if ctx == Ctx::Brace && ifs == 0 && def_semis == 0 => return k,
                _ => {}
            },
            Token(s, Tok::Word) => match *s {
                "def" => {
                    def_colons += 1;
                    def_semis += 1;
                }
                "if" => ifs += 1,
                "then" | "elif" | "else" | "end" if ifs == 0 => return k,
                "end" => ifs -= 1,
                "try" => tries += 1,
                "catch" if tries == 0 => return k,
                "catch" => tries -= 1,
                _ => {}
            },
            _ => {}
        }
    }
    seq.len()
}

/// A token written on one line, tokens separated by spaces (jaq parses tokens, so this means
/// the same): comments and line breaks between tokens are dropped.
fn flatten(t: &Tk<'_>, out: &mut String) {
    match &t.1 {
        Tok::Block(tokens) => {
            out.push_str(t.0.get(..1).unwrap_or_default());
            for x in tokens {
                out.push(' ');
                flatten(x, out);
            }
        }
        _ => out.push_str(t.0),
    }
}

fn flatten_all(tokens: &[Tk<'_>]) -> String {
    let mut out = String::new();
    for (k, t) in tokens.iter().enumerate() {
        if k > 0 {
            out.push(' ');
        }
        flatten(t, &mut out);
    }
    out
}

/// One `E as P1 ?// P2 … | BODY`, by byte offsets into the program.
struct Alternatives<'a> {
    /// The `as`: the last one in the text has no other alternatives in its BODY.
    at: usize,
    /// Where `P1` starts.
    start: usize,
    /// `P1`, `P2` … flattened.
    patterns: Vec<String>,
    /// Variables of all patterns.
    vars: Vec<&'a str>,
    body_start: usize,
    body_end: usize,
}

/// The `?//` groups of a token sequence; `Err` for one we do not rewrite, with the `?//` to
/// point at when it is in a `reduce`/`foreach`.
fn groups_in<'a>(
    code: &'a str,
    seq: &[Tk<'a>],
    ctx: Ctx,
    out: &mut Vec<Result<Alternatives<'a>, Option<&'a str>>>,
) {
    for (i, t) in seq.iter().enumerate() {
        if !is_word(t, "as") {
            continue;
        }
        let (patterns, next) = patterns_after(seq, i);
        if patterns.len() < 2 {
            continue;
        }
        if !seq.get(next).is_some_and(|t| is_sym(t, "|")) {
            let in_fold = seq.get(next).is_some_and(|t| opens(t, b'('));
            let q = &seq[patterns[0] + 1].0;
            let start = offset(code, q);
            let end = (start + 3).min(code.len());
            out.push(Err(in_fold.then(|| code.get(start..end).unwrap_or(q))));
            continue;
        }
        let end = body_end(seq, next + 1, ctx);
        let body = &seq[next + 1..end];
        let (Some(first_tok), Some(last_tok)) = (body.first(), body.last()) else {
            out.push(Err(None));
            continue;
        };
        let mut vars = Vec::new();
        for p in &patterns {
            pattern_vars(&seq[*p], &mut vars);
        }
        out.push(Ok(Alternatives {
            at: offset(code, t.0),
            start: offset(code, seq[patterns[0]].0),
            patterns: patterns
                .iter()
                .map(|p| flatten_all(std::slice::from_ref(&seq[*p])))
                .collect(),
            vars,
            body_start: offset(code, first_tok.0),
            body_end: offset(code, last_tok.0) + last_tok.0.len(),
        }));
    }
}

fn groups<'a>(code: &'a str, tokens: &[Tk<'a>]) -> Vec<Result<Alternatives<'a>, Option<&'a str>>> {
    let mut out = Vec::new();
    each_seq(tokens, Ctx::Top, &mut |seq, ctx| {
        groups_in(code, seq, ctx, &mut out);
    });
    out
}

/// How many `?//` groups there are; `Err(Some(at))` for `?//` in a reduce/foreach,
/// `Err(None)` for other `?//` we cannot rewrite (jaq reports the syntax error).
fn alternatives_supported<'a>(code: &'a str, tokens: &[Tk<'a>]) -> Result<usize, Option<&'a str>> {
    let groups = groups(code, tokens);
    let count = groups.len();
    groups.into_iter().try_for_each(|g| g.map(|_| ()))?;
    Ok(count)
}

/// `text` with its last `?//` group rewritten (see the module documentation), or `None`
/// when there is none. `n` numbers the names introduced.
fn rewrite_last_alternative(text: &str, n: usize) -> Option<String> {
    let tokens = Lexer::new(text).lex().ok()?;
    let g = groups(text, &tokens)
        .into_iter()
        .filter_map(Result::ok)
        .max_by_key(|g| g.at)?;
    let alt = format!("${PREFIX}alt{n}");
    let dot = format!("${PREFIX}dot{n}");
    let body = format!("{PREFIX}body{n}");
    let params: Vec<String> = (0..g.vars.len())
        .map(|k| format!("{PREFIX}arg{n}_{k}"))
        .collect();
    let call = if g.vars.is_empty() {
        body.clone()
    } else {
        format!("{body}({})", g.vars.join("; "))
    };
    let start = g.start;
    let breaks = text[start..g.body_start].matches('\n').count();
    let mut out = String::with_capacity(text.len() + 256);
    out.push_str(&text[..start]);
    let _ = write!(out, "{alt} | . as {dot} | ");
    for v in &g.vars {
        let _ = write!(out, "null as {v} | ");
    }
    let _ = write!(out, "(def {body}");
    if !params.is_empty() {
        let _ = write!(out, "({})", params.join("; "));
    }
    out.push_str(": ");
    for (p, v) in params.iter().zip(&g.vars) {
        let _ = write!(out, "{p} as {v} | ");
    }
    // BODY stays where it was, on its lines.
    out.push_str(&"\n".repeat(breaks));
    out.push_str(&text[g.body_start..g.body_end]);
    let (first, rest) = g.patterns.split_first()?;
    let _ = write!(out, "; try ({alt} as {first} | {call})");
    for (k, p) in rest.iter().enumerate() {
        let last = k + 1 == rest.len();
        let _ = write!(out, " catch ({dot} | ");
        if !last {
            out.push_str("try (");
        }
        let _ = write!(out, "{alt} as {p} | {call}");
        if !last {
            out.push(')');
        }
    }
    out.push_str(&")".repeat(rest.len() + 1));
    out.push_str(&text[g.body_end..]);
    Some(out)
}

// ---------------------------------------------------------------------------------------------
// Reports.

/// A compile report pointing at `found`, a slice of `code` (anything else points at its end),
/// in the style of the compiler's own reports.
fn report(origin: &str, code: &str, found: &str, message: String, label: &str) -> CompileReport {
    CompileReport {
        origin: origin.to_string(),
        diagnostics: vec![crate::compile::diagnostic(code, found, message, label)],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Diagnostic, Error, Filter};
    use serde_json::{Value, json};

    fn rewritten(code: &str) -> String {
        rewrite(code, "<program>").unwrap().into_owned()
    }

    /// Outputs of `program` on `input`, or the runtime error's text.
    fn run(program: &str, input: &Value) -> Result<Vec<Value>, String> {
        let filter = Filter::compile(program, "<program>").unwrap_or_else(|e| {
            panic!("{program}\n{}\n{e}", rewritten(program));
        });
        filter.select(input).map_err(|e| e.to_string())
    }

    fn compile_error(program: &str) -> Diagnostic {
        match Filter::compile(program, "<program>") {
            Err(Error::Compile(report)) => report.diagnostics[0].clone(),
            Err(e) => panic!("{program}: {e}"),
            Ok(_) => panic!("{program} compiled"),
        }
    }

    #[test]
    fn programs_without_the_constructs_stay_borrowed() {
        let mut programs: Vec<&str> = crate::presets().iter().map(|(_, s)| *s).collect();
        // The presets are not even lexed.
        for p in &programs {
            assert!(!worth_lexing(p), "{p}");
        }
        programs.extend([
            ".",
            "reduce .[] as $x (0; . + $x)",
            "[foreach .[] as {a: $a} (0; . + $a; -.)]",
            "[-reduce -.[] as $x (0; . + $x)]",
            ". as {$a, b: [$c]} | $a",
            r#"{("a"): 1, (.b): 2}"#,
            r#"module {a: 1, "b": [1, -2, null]}; 0"#,
            r#""?//" | .a? // 1"#,
            "# module reduce ?// $a: (0):\n.",
        ]);
        for p in programs {
            assert!(
                matches!(rewrite(p, "<program>"), Ok(Cow::Borrowed(s)) if std::ptr::eq(s, p)),
                "{p}"
            );
        }
    }

    #[test]
    fn alternatives_become_try_catch() {
        assert_eq!(
            rewritten(". as [$a] ?// $a | $a"),
            ". as $__imgkit_alt0 | . as $__imgkit_dot0 | null as $a | \
             (def __imgkit_body0(__imgkit_arg0_0): __imgkit_arg0_0 as $a | $a; \
             try ($__imgkit_alt0 as [ $a ] | __imgkit_body0($a)) \
             catch ($__imgkit_dot0 | $__imgkit_alt0 as $a | __imgkit_body0($a)))"
        );
        assert_eq!(
            rewritten("(.[] as [$a] ?// {$b} ?// $a | [$a, $b]), 1"),
            "(.[] as $__imgkit_alt0 | . as $__imgkit_dot0 | null as $a | null as $b | \
             (def __imgkit_body0(__imgkit_arg0_0; __imgkit_arg0_1): \
             __imgkit_arg0_0 as $a | __imgkit_arg0_1 as $b | [$a, $b]; \
             try ($__imgkit_alt0 as [ $a ] | __imgkit_body0($a; $b)) \
             catch ($__imgkit_dot0 | try ($__imgkit_alt0 as { $b } | __imgkit_body0($a; $b)) \
             catch ($__imgkit_dot0 | $__imgkit_alt0 as $a | __imgkit_body0($a; $b))))), 1"
        );
    }

    #[test]
    fn rewritten_programs_keep_their_lines() {
        let program = ". as [$a] # first\n  ?// $a # second\n  | $a\n  | [.]\n| nosuch";
        let out = rewritten(program);
        assert_eq!(out.lines().count(), program.lines().count(), "{out}");
        // BODY is written once, where it was: an error in it is reported once, in place.
        assert!(
            out.lines().nth(4).unwrap().starts_with("| nosuch; try"),
            "{out}"
        );
        let Err(Error::Compile(report)) = Filter::compile(program, "<program>") else {
            panic!("{program} compiled");
        };
        let d = &report.diagnostics;
        assert_eq!(d.len(), 1, "{report}");
        assert_eq!(
            (d[0].line, d[0].column, d[0].message.as_str()),
            (5, 3, "nosuch/0 is not defined")
        );
    }

    #[test]
    fn alternatives_run_as_in_jq() {
        // Expected outputs are gojq's.
        let input = json!([[1], "s", 3]);
        let cases = [
            ("[.[] as {$a} ?// [$a] ?// $a | $a]", json!([1, "s", 3])),
            (
                "[label $out | .[] as [$a] ?// $a | if $a == 3 then break $out else $a end]",
                json!([1, "s"]),
            ),
            (
                "[.[] as [$a] ?// $a | . as {$a} ?// $b | [$a, $b]]",
                json!([[null, input], [null, input], [null, input]]),
            ),
            (
                "[.[] as [$a] ?// $a | . as [$b] ?// $b | [$a, $b]]",
                json!([[1, [1]], ["s", [1]], [3, [1]]]),
            ),
            (
                "[.[] | {x: (. as [$a] ?// $a | $a), y: 1}]",
                json!([{"x": 1, "y": 1}, {"x": "s", "y": 1}, {"x": 3, "y": 1}]),
            ),
            (
                r#"[.[] | if . as [$a] ?// $a | $a == 1 then "one" else "other" end]"#,
                json!(["one", "other", "other"]),
            ),
            ("def f: .[] as [$a] ?// $a | $a; [f]", json!([1, "s", 3])),
            (
                r#"[.[] | "\(. as [$a] ?// $a | $a)"]"#,
                json!(["1", "s", "3"]),
            ),
            (
                "[.[] as [$a] ?// $a | def g: [$a]; g]",
                json!([[1], ["s"], [3]]),
            ),
            ("[.[] as [$a] ?// $a | $a, 0]", json!([1, 0, "s", 0, 3, 0])),
            (
                r#"[.[] as [$a] ?// $a | try error("x") catch $a]"#,
                json!([1, "s", 3]),
            ),
            (
                "[.[] as {$a:[$b]} ?// $a | [$a, $b]]",
                json!([[[1], null], ["s", null], [3, null]]),
            ),
            (". as [$a, [$b]] ?// [$a] | [$a, $b]", json!([[1], null])),
            // Outputs produced before an error stay; the next pattern runs after them.
            (
                r#"[limit(2; .[0] as [$a] ?// $a | $a, error("x"))]"#,
                json!([1, [1]]),
            ),
            ("[.[0] | . as [$a] ?// $b | [$a, $b]]", json!([[1, null]])),
            (
                "def f(g): .[] as [$a] ?// $a | [$a, g]; [f(1)]",
                json!([[1, 1], ["s", 1], [3, 1]]),
            ),
            (
                r#"def f: .[] as [$a] ?// $a | if ($a|type) == "array" then $a|f else $a end; [f]"#,
                json!([1, "s", 3]),
            ),
            (
                "[.[] as [$a] ?// $a | . as {$b} ?// [$b] ?// $b | $b | length]",
                json!([1, 1, 1]),
            ),
            (
                "[[.[] | . as [$a] ?// $a | $a] as [$x] ?// $x | $x]",
                json!([1]),
            ),
        ];
        for (program, want) in cases {
            assert_eq!(run(program, &input), Ok(vec![want]), "{program}");
        }
        // The last pattern's error propagates, after the outputs of the others.
        assert!(run(r#"[.[0] as [$a] ?// $a | $a, error("x")]"#, &input).is_err());
    }

    #[test]
    fn object_patterns_bind_and_destructure_a_named_key() {
        assert_eq!(
            rewritten(". as {$a, $b:[$c, $d]}| [$a, $b, $c, $d]"),
            r#". as {$a, $b, "b":[$c, $d]}| [$a, $b, $c, $d]"#
        );
        let input = json!({"a": 1, "b": [2, {"d": 3}]});
        assert_eq!(
            run(". as {$a, $b:[$c, {$d}]} | [$a, $b, $c, $d]", &input),
            Ok(vec![json!([1, [2, {"d": 3}], 2, 3])])
        );
        assert_eq!(
            run(
                ". as {$b: {$d}} ?// {$b: [$c, {$d}]} | [$b, $c, $d]",
                &input
            ),
            Ok(vec![json!([[2, {"d": 3}], 2, 3])])
        );
    }

    #[test]
    fn reduce_and_foreach_sources_are_parenthesised() {
        assert_eq!(
            rewritten("[reduce .[] / .[] as $i (0; . + $i)]"),
            "[reduce (.[] / .[]) as $i (0; . + $i)]"
        );
        assert_eq!(
            rewritten("reduce reduce .[] as $x (0; . + $x) + 1 as $y (0; . + $y)"),
            "reduce (reduce .[] as $x (0; . + $x) + 1) as $y (0; . + $y)"
        );
        let input = json!([1, 2]);
        assert_eq!(
            run("[reduce .[] / .[] as $i (0; . + $i)]", &input),
            Ok(vec![json!([4.5])])
        );
        assert_eq!(
            run("[foreach .[] * 2 - 1 as $i (0; . + $i)]", &input),
            Ok(vec![json!([1, 4])])
        );
        assert_eq!(
            run("[-reduce -.[] as $x (0; . + $x)]", &input),
            Ok(vec![json!([3])])
        );
    }

    #[test]
    fn numbers_without_a_leading_zero_get_one() {
        assert_eq!(rewritten("select(.>.00005)"), "select(.>0.00005)");
        assert_eq!(
            run("[.5, .5e1, 1 - .25, (.|.5), .a]", &json!({"a": 1.5})),
            Ok(vec![json!([0.5, 5, 0.75, 0.5, 1.5])])
        );
        for program in [".a.b", "1.5", "[.[0].a]", "..|numbers", ". 5"] {
            assert!(
                matches!(rewrite(program, "<program>"), Ok(Cow::Borrowed(_))),
                "{program}"
            );
        }
    }

    #[test]
    fn constant_keys_and_module_metadata_are_compile_errors() {
        let cases = [
            ("{(0):1}", (1, 3, 1), "cannot use number (0) as object key"),
            (
                "{non_const:., (0):1}",
                (1, 16, 1),
                "cannot use number (0) as object key",
            ),
            (
                "1 |\n . as {(true):$foo} | $foo",
                (2, 9, 4),
                "cannot use boolean (true) as object key",
            ),
            (
                "{([1, 2]): 1}",
                (1, 3, 6),
                "cannot use array ([1, 2]) as object key",
            ),
            (
                "{({}): 1}",
                (1, 3, 2),
                "cannot use object ({}) as object key",
            ),
            (
                "{a: {(null): 1}}",
                (1, 7, 4),
                "cannot use null (null) as object key",
            ),
            (
                "module (.+1); 0",
                (1, 8, 5),
                "module metadata must be constant",
            ),
            (
                "module {a: .}; 0",
                (1, 8, 6),
                "module metadata must be constant",
            ),
            (
                "module []; 0",
                (1, 8, 2),
                "module metadata must be an object",
            ),
            (
                "reduce .[] as [$a] ?// $a (0; .)",
                (1, 20, 3),
                "destructuring alternatives `?//` are supported in `… as P1 ?// P2 | body` only, not in reduce or foreach",
            ),
        ];
        for (program, (line, column, width), message) in cases {
            let d = compile_error(program);
            assert_eq!(
                (d.line, d.column, d.width, d.message.as_str()),
                (line, column, width, message),
                "{program}"
            );
        }
        for program in [
            r#"{("a"): 1, (.k): 2, (-1): 3} | keys"#,
            r#"module {a: 1, "b": [1, -2, {c: null}]}; 0"#,
        ] {
            assert!(rewrite(program, "<program>").is_ok(), "{program}");
        }
    }

    /// jq's own test programs (when present) and tricky fragments, whole and cut at every
    /// character: the rewrite never panics, and what it rewrites lexes again.
    #[test]
    fn never_panics_on_jq_test_programs_and_their_prefixes() {
        let mut programs: Vec<String> = [
            ". as [$a] ?// $a | $a",
            "(.[] as {$a, $b:[$c]} ?// [$a] ?// $c | [$a, $b, $c]), 1",
            "{x: . as [$a] ?// $a | if $a then def f: 1; f else 2 end, y: \"\\(. as $b ?// [$b] | $b)\"}",
            "reduce .[] as [$a] ?// $a (0; .)",
            "foreach .[] / .[] as $x (0; .; .)",
            "module {a: [1, {b: (2)}]}; {(0): 1, ([]): 2}",
            ". as [$a] ?// $a | try . catch . | label $l | break $l | . as $x ?// [$x] | $x",
            "?// ?// | ) ] } as as $ reduce foreach module ; :",
            "\"\\(\" ?// \")",
        ]
        .iter()
        .map(ToString::to_string)
        .collect();
        // As tests/jqtest.rs finds them: `$IMGKIT_JQTEST_DIR`, else `../shared/jqtest` beside
        // the clone (or beside the folder of worktrees).
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let dirs: Vec<std::path::PathBuf> = match std::env::var_os("IMGKIT_JQTEST_DIR") {
            Some(dir) => vec![dir.into()],
            None => vec![
                root.join("../shared/jqtest"),
                root.join("../../shared/jqtest"),
            ],
        };
        for file in ["jq.test", "man.test"] {
            let text = dirs
                .iter()
                .find_map(|d| std::fs::read_to_string(d.join(file)).ok());
            if let Some(text) = text {
                programs.extend(
                    text.lines()
                        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
                        .map(ToString::to_string),
                );
            }
        }
        for program in &programs {
            let cuts = program
                .char_indices()
                .map(|(i, _)| i)
                .chain([program.len()]);
            for cut in cuts {
                for text in [&program[..cut], &program[cut..]] {
                    if let Ok(out) = rewrite_lexed(text, "<program>")
                        && matches!(out, Cow::Owned(_))
                    {
                        assert!(Lexer::new(&out).lex().is_ok(), "{text}\n{out}");
                    }
                }
            }
        }
    }
}
