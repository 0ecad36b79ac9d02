//! A fast path for the programs people run over listings, like the guide's:
//! `select(.Repository!="<none>") | if (.Tag=="<none>") then .Repository else … end`.
//!
//! Programs made only of `.`, `.field` paths, plain string literals, `true`/`false`/`null`,
//! `|`, `==`, `!=`, `+`, `and`, `or`, `not`, `select(…)`, `if … then … elif … else … end`
//! and parentheses are evaluated directly on a record parsed with borrowed strings, without
//! building jaq values. Every such construct yields at most one output, so there are no
//! streams. Whenever a record leaves the cases handled here exactly as jq would (a number, a
//! nested value, a type error), the record is handed to jaq instead: the fast path never
//! decides anything it is not sure of.

use std::borrow::Cow;
use std::fmt;

use serde::de::{Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

/// A program in the fast subset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Expr {
    Identity,
    Field(Box<Expr>, String),
    Str(String),
    Bool(bool),
    Null,
    Pipe(Box<Expr>, Box<Expr>),
    Eq(Box<Expr>, Box<Expr>, bool),
    Add(Box<Expr>, Box<Expr>),
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
    Not,
    Select(Box<Expr>),
    If(Box<Expr>, Box<Expr>, Box<Expr>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok<'a> {
    Dot,
    Field(&'a str),
    Str(&'a str),
    Word(&'a str),
    Sym(&'a str),
}

fn lex(code: &str) -> Option<Vec<Tok<'_>>> {
    let b = code.as_bytes();
    let mut toks = Vec::new();
    let mut i = 0;
    let ident = |i: usize| {
        let mut j = i;
        while j < b.len() && (b[j].is_ascii_alphanumeric() || b[j] == b'_') {
            j += 1;
        }
        j
    };
    while i < b.len() {
        match b[i] {
            c if c.is_ascii_whitespace() => i += 1,
            b'.' => {
                let j = ident(i + 1);
                if j > i + 1 && !b[i + 1].is_ascii_digit() {
                    toks.push(Tok::Field(&code[i + 1..j]));
                } else {
                    toks.push(Tok::Dot);
                }
                i = j.max(i + 1);
            }
            b'"' => {
                let j = i + 1 + b[i + 1..].iter().position(|&c| c == b'"')?;
                let s = &code[i + 1..j];
                if s.contains('\\') {
                    return None;
                }
                toks.push(Tok::Str(s));
                i = j + 1;
            }
            b'=' | b'!' if b.get(i + 1) == Some(&b'=') => {
                toks.push(Tok::Sym(&code[i..i + 2]));
                i += 2;
            }
            b'(' | b')' | b'|' | b'+' => {
                toks.push(Tok::Sym(&code[i..=i]));
                i += 1;
            }
            c if c.is_ascii_alphabetic() || c == b'_' => {
                let j = ident(i);
                toks.push(Tok::Word(&code[i..j]));
                i = j;
            }
            _ => return None,
        }
    }
    Some(toks)
}

struct Parser<'a> {
    toks: Vec<Tok<'a>>,
    pos: usize,
}

impl<'a> Parser<'a> {
    fn peek(&self) -> Option<&Tok<'a>> {
        self.toks.get(self.pos)
    }
    fn eat(&mut self, t: &Tok<'_>) -> bool {
        if self.peek() == Some(t) {
            self.pos += 1;
            true
        } else {
            false
        }
    }
    fn expect(&mut self, t: &Tok<'_>) -> Option<()> {
        self.eat(t).then_some(())
    }
    fn pipe(&mut self) -> Option<Expr> {
        let mut e = self.or()?;
        while self.eat(&Tok::Sym("|")) {
            e = Expr::Pipe(Box::new(e), Box::new(self.or()?));
        }
        Some(e)
    }
    fn or(&mut self) -> Option<Expr> {
        let mut e = self.and()?;
        while self.eat(&Tok::Word("or")) {
            e = Expr::Or(Box::new(e), Box::new(self.and()?));
        }
        Some(e)
    }
    fn and(&mut self) -> Option<Expr> {
        let mut e = self.cmp()?;
        while self.eat(&Tok::Word("and")) {
            e = Expr::And(Box::new(e), Box::new(self.cmp()?));
        }
        Some(e)
    }
    fn cmp(&mut self) -> Option<Expr> {
        let l = self.add()?;
        for (sym, eq) in [("==", true), ("!=", false)] {
            if self.eat(&Tok::Sym(sym)) {
                let r = self.add()?;
                return Some(Expr::Eq(Box::new(l), Box::new(r), eq));
            }
        }
        Some(l)
    }
    fn add(&mut self) -> Option<Expr> {
        let mut e = self.postfix()?;
        while self.eat(&Tok::Sym("+")) {
            e = Expr::Add(Box::new(e), Box::new(self.postfix()?));
        }
        Some(e)
    }
    fn postfix(&mut self) -> Option<Expr> {
        let mut e = self.atom()?;
        while let Some(Tok::Field(f)) = self.peek() {
            e = Expr::Field(Box::new(e), (*f).to_string());
            self.pos += 1;
        }
        Some(e)
    }
    fn atom(&mut self) -> Option<Expr> {
        let tok = self.peek()?.clone();
        self.pos += 1;
        Some(match tok {
            Tok::Dot => Expr::Identity,
            Tok::Field(f) => Expr::Field(Box::new(Expr::Identity), f.to_string()),
            Tok::Str(s) => Expr::Str(s.to_string()),
            Tok::Sym("(") => {
                let e = self.pipe()?;
                self.expect(&Tok::Sym(")"))?;
                e
            }
            Tok::Word("true") => Expr::Bool(true),
            Tok::Word("false") => Expr::Bool(false),
            Tok::Word("null") => Expr::Null,
            Tok::Word("not") => Expr::Not,
            Tok::Word("select") => {
                self.expect(&Tok::Sym("("))?;
                let e = self.pipe()?;
                self.expect(&Tok::Sym(")"))?;
                Expr::Select(Box::new(e))
            }
            Tok::Word("if") => self.if_rest()?,
            _ => return None,
        })
    }
    /// After `if` / `elif`: `cond then a (elif …)* (else b)? end`.
    fn if_rest(&mut self) -> Option<Expr> {
        let cond = self.pipe()?;
        self.expect(&Tok::Word("then"))?;
        let then = self.pipe()?;
        let otherwise = if self.eat(&Tok::Word("elif")) {
            return Some(Expr::If(
                Box::new(cond),
                Box::new(then),
                Box::new(self.if_rest()?),
            ));
        } else if self.eat(&Tok::Word("else")) {
            let e = self.pipe()?;
            self.expect(&Tok::Word("end"))?;
            e
        } else {
            self.expect(&Tok::Word("end"))?;
            Expr::Identity
        };
        Some(Expr::If(
            Box::new(cond),
            Box::new(then),
            Box::new(otherwise),
        ))
    }
}

/// The program as a fast-path expression, if it is in the subset.
pub(crate) fn parse(code: &str) -> Option<Expr> {
    let mut p = Parser {
        toks: lex(code)?,
        pos: 0,
    };
    let e = p.pipe()?;
    (p.pos == p.toks.len()).then_some(e)
}

/// A value during fast evaluation.
#[derive(Debug, Clone)]
pub(crate) enum V<'r, 'a> {
    Null,
    Bool(bool),
    Str(Cow<'a, str>),
    /// The record itself.
    Record(&'r Record<'a>),
}

/// A top-level JSON object with its string, boolean and null members; anything else is
/// `Other` (only its presence is known).
#[derive(Debug, Default)]
pub(crate) struct Record<'a> {
    fields: Vec<(Cow<'a, str>, Field<'a>)>,
    /// The value was not an object.
    not_object: bool,
}

#[derive(Debug)]
enum Field<'a> {
    Null,
    Bool(bool),
    Str(Cow<'a, str>),
    Other,
}

/// The evaluation left the subset: let jaq do this record.
pub(crate) struct Fallback;

type Out<'r, 'a> = Result<Option<V<'r, 'a>>, Fallback>;

impl Expr {
    /// Evaluates on `input`: `Ok(None)` = no output, `Ok(Some(v))` = one output.
    #[allow(
        clippy::many_single_char_names,
        reason = "a, b, x, y read like the grammar"
    )]
    pub(crate) fn eval<'r, 'a>(&self, input: V<'r, 'a>) -> Out<'r, 'a> {
        Ok(Some(match self {
            Expr::Identity => input,
            Expr::Str(s) => V::Str(Cow::Owned(s.clone())),
            Expr::Bool(b) => V::Bool(*b),
            Expr::Null => V::Null,
            Expr::Field(of, name) => match of.eval(input)? {
                None => return Ok(None),
                Some(V::Null) => V::Null,
                Some(V::Record(r)) => r.get(name)?,
                Some(_) => return Err(Fallback),
            },
            Expr::Pipe(a, b) => match a.eval(input)? {
                None => return Ok(None),
                Some(v) => return b.eval(v),
            },
            Expr::Eq(a, b, want) => {
                let (Some(x), Some(y)) = (a.eval(input.clone())?, b.eval(input)?) else {
                    return Ok(None);
                };
                V::Bool(equal(&x, &y)? == *want)
            }
            Expr::Add(a, b) => {
                let (Some(x), Some(y)) = (a.eval(input.clone())?, b.eval(input)?) else {
                    return Ok(None);
                };
                match (x, y) {
                    (V::Null, v) | (v, V::Null) => v,
                    (V::Str(x), V::Str(y)) => V::Str(Cow::Owned(x.into_owned() + &y)),
                    _ => return Err(Fallback),
                }
            }
            Expr::And(a, b) => match a.eval(input.clone())? {
                None => return Ok(None),
                Some(x) if !truthy(&x) => V::Bool(false),
                Some(_) => match b.eval(input)? {
                    None => return Ok(None),
                    Some(y) => V::Bool(truthy(&y)),
                },
            },
            Expr::Or(a, b) => match a.eval(input.clone())? {
                None => return Ok(None),
                Some(x) if truthy(&x) => V::Bool(true),
                Some(_) => match b.eval(input)? {
                    None => return Ok(None),
                    Some(y) => V::Bool(truthy(&y)),
                },
            },
            Expr::Not => V::Bool(!truthy(&input)),
            Expr::Select(cond) => match cond.eval(input.clone())? {
                Some(c) if truthy(&c) => input,
                _ => return Ok(None),
            },
            Expr::If(cond, then, otherwise) => match cond.eval(input.clone())? {
                None => return Ok(None),
                Some(c) if truthy(&c) => return then.eval(input),
                Some(_) => return otherwise.eval(input),
            },
        }))
    }
}

fn truthy(v: &V<'_, '_>) -> bool {
    !matches!(v, V::Null | V::Bool(false))
}

fn equal(x: &V<'_, '_>, y: &V<'_, '_>) -> Result<bool, Fallback> {
    Ok(match (x, y) {
        (V::Null, V::Null) => true,
        (V::Bool(a), V::Bool(b)) => a == b,
        (V::Str(a), V::Str(b)) => a == b,
        (V::Record(_), _) | (_, V::Record(_)) => return Err(Fallback),
        _ => false,
    })
}

impl<'a> Record<'a> {
    fn get<'r>(&'r self, name: &str) -> Result<V<'r, 'a>, Fallback> {
        if self.not_object {
            return Err(Fallback);
        }
        // jq keeps the last of duplicate keys.
        Ok(match self.fields.iter().rev().find(|(k, _)| k == name) {
            None | Some((_, Field::Null)) => V::Null,
            Some((_, Field::Bool(b))) => V::Bool(*b),
            Some((_, Field::Str(s))) => V::Str(s.clone()),
            Some((_, Field::Other)) => return Err(Fallback),
        })
    }

    pub(crate) fn root(&self) -> Result<V<'_, 'a>, Fallback> {
        if self.not_object {
            Err(Fallback)
        } else {
            Ok(V::Record(self))
        }
    }
}

/// Parses the first JSON value of `slice` as a [`Record`]; `None` at the end.
pub(crate) fn parse_record(slice: &[u8]) -> Option<Result<(Record<'_>, usize), serde_json::Error>> {
    let mut stream = serde_json::Deserializer::from_slice(slice).into_iter::<Record<'_>>();
    let parsed = stream.next()?;
    Some(parsed.map(|r| (r, stream.byte_offset())))
}

impl<'de> serde::Deserialize<'de> for Record<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(RecordVisitor)
    }
}

struct RecordVisitor;

impl<'de> Visitor<'de> for RecordVisitor {
    type Value = Record<'de>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Record<'de>, A::Error> {
        let mut fields = Vec::with_capacity(12);
        while let Some(k) = map.next_key::<CowStr<'de>>()? {
            fields.push((k.0, map.next_value::<FieldDe<'de>>()?.0));
        }
        Ok(Record {
            fields,
            not_object: false,
        })
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Record<'de>, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Record {
            fields: Vec::new(),
            not_object: true,
        })
    }
    fn visit_unit<E>(self) -> Result<Record<'de>, E> {
        Ok(Record {
            fields: Vec::new(),
            not_object: true,
        })
    }
    fn visit_bool<E>(self, _: bool) -> Result<Record<'de>, E> {
        Ok(Record {
            fields: Vec::new(),
            not_object: true,
        })
    }
    fn visit_i64<E>(self, _: i64) -> Result<Record<'de>, E> {
        Ok(Record {
            fields: Vec::new(),
            not_object: true,
        })
    }
    fn visit_u64<E>(self, _: u64) -> Result<Record<'de>, E> {
        Ok(Record {
            fields: Vec::new(),
            not_object: true,
        })
    }
    fn visit_f64<E>(self, _: f64) -> Result<Record<'de>, E> {
        Ok(Record {
            fields: Vec::new(),
            not_object: true,
        })
    }
    fn visit_str<E>(self, _: &str) -> Result<Record<'de>, E> {
        Ok(Record {
            fields: Vec::new(),
            not_object: true,
        })
    }
}

struct CowStr<'a>(Cow<'a, str>);

impl<'de> serde::Deserialize<'de> for CowStr<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Vis;
        impl<'de> Visitor<'de> for Vis {
            type Value = CowStr<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, s: &'de str) -> Result<CowStr<'de>, E> {
                Ok(CowStr(Cow::Borrowed(s)))
            }
            fn visit_str<E>(self, s: &str) -> Result<CowStr<'de>, E> {
                Ok(CowStr(Cow::Owned(s.to_string())))
            }
        }
        d.deserialize_str(Vis)
    }
}

struct FieldDe<'a>(Field<'a>);

impl<'de> serde::Deserialize<'de> for FieldDe<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Vis;
        impl<'de> Visitor<'de> for Vis {
            type Value = FieldDe<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON value")
            }
            fn visit_borrowed_str<E>(self, s: &'de str) -> Result<FieldDe<'de>, E> {
                Ok(FieldDe(Field::Str(Cow::Borrowed(s))))
            }
            fn visit_str<E>(self, s: &str) -> Result<FieldDe<'de>, E> {
                Ok(FieldDe(Field::Str(Cow::Owned(s.to_string()))))
            }
            fn visit_unit<E>(self) -> Result<FieldDe<'de>, E> {
                Ok(FieldDe(Field::Null))
            }
            fn visit_bool<E>(self, b: bool) -> Result<FieldDe<'de>, E> {
                Ok(FieldDe(Field::Bool(b)))
            }
            fn visit_i64<E>(self, _: i64) -> Result<FieldDe<'de>, E> {
                Ok(FieldDe(Field::Other))
            }
            fn visit_u64<E>(self, _: u64) -> Result<FieldDe<'de>, E> {
                Ok(FieldDe(Field::Other))
            }
            fn visit_f64<E>(self, _: f64) -> Result<FieldDe<'de>, E> {
                Ok(FieldDe(Field::Other))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<FieldDe<'de>, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(FieldDe(Field::Other))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<FieldDe<'de>, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(FieldDe(Field::Other))
            }
        }
        d.deserialize_any(Vis)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_guides_program() {
        let e = parse(
            r#"select(.Repository!="<none>") | if (.Tag=="<none>") then .Repository else (.Repository+":"+.Tag) end"#,
        );
        assert!(e.is_some());
        for not_fast in [
            ".[]",
            ".a // .b",
            "map(.a)",
            r#""\(.a)""#,
            ".a, .b",
            "1 + 1",
            ".a | length",
            "def f: .; f",
        ] {
            assert_eq!(parse(not_fast), None, "{not_fast}");
        }
    }

    fn run(program: &str, input: &str) -> Result<Option<String>, ()> {
        let e = parse(program).unwrap();
        let (rec, _) = parse_record(input.as_bytes()).unwrap().unwrap();
        let root = rec.root().map_err(|_| ())?;
        match e.eval(root) {
            Ok(Some(V::Str(s))) => Ok(Some(s.into_owned())),
            Ok(Some(V::Bool(b))) => Ok(Some(b.to_string())),
            Ok(Some(V::Null)) => Ok(Some("null".into())),
            Ok(Some(V::Record(_))) => Ok(Some("{record}".into())),
            Ok(None) => Ok(None),
            Err(Fallback) => Err(()),
        }
    }

    #[test]
    fn evaluates_like_jq_or_falls_back() {
        let rec = r#"{"Repository":"alpine","Tag":"\u003cnone\u003e","Size":12,"n":null,"b":true}"#;
        assert_eq!(
            run(r#".Repository + ":" + .Tag"#, rec),
            Ok(Some("alpine:<none>".into()))
        );
        assert_eq!(
            run(r#"select(.Tag == "<none>") | .Repository"#, rec),
            Ok(Some("alpine".into()))
        );
        assert_eq!(run(r#"select(.Tag != "<none>")"#, rec), Ok(None));
        assert_eq!(run(".Missing", rec), Ok(Some("null".into())));
        assert_eq!(run(".n + .Repository", rec), Ok(Some("alpine".into())));
        assert_eq!(run(".b and (.n | not)", rec), Ok(Some("true".into())));
        assert_eq!(
            run(r#"if .n then "x" end"#, rec),
            Ok(Some("{record}".into()))
        );
        assert_eq!(run(".Size", rec), Err(()));
        assert_eq!(run(".Repository.x", rec), Err(()));
        assert_eq!(run(".Repository + .b", rec), Err(()));
        assert_eq!(run(".Tag", "[1]"), Err(()));
    }
}
