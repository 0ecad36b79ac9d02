//! JSON as jq 1.7 reads it where serde_json refuses it: the literals `nan` and `infinity`
//! (any case, `NaN`, `-Infinity`, `inf`, as jq's `strtod` takes them), and jq's messages for
//! the bare words it rejects (`Invalid numeric literal`, `Invalid literal`, a single-quoted
//! string).
//!
//! Used after serde_json has failed, and to read a value again when serde_json turned one of
//! its numbers into a double (the literal's digits are kept here): text without such numbers
//! never comes here.

use jaq_json::{Map, Val};

/// What the lenient parser made of the text.
pub(crate) enum Lenient {
    /// A value and the bytes it used.
    Value(Val, usize),
    /// The text ends inside a value: more input may complete it.
    Incomplete,
    /// jq's message for a bare word it rejects, with jq's line and column.
    Invalid(String),
    /// Something else is wrong: leave the message to serde_json.
    Other,
}

use crate::read::MAX_DEPTH;

struct Parser<'a> {
    text: &'a [u8],
    pos: usize,
}

enum Fail {
    Incomplete,
    Invalid(String),
    Other,
}

/// Parses the first JSON value of `text`, jq's literals included.
pub(crate) fn parse(text: &[u8]) -> Lenient {
    let mut p = Parser { text, pos: 0 };
    p.skip_ws();
    match p.value(0) {
        Ok(v) => Lenient::Value(v, p.pos),
        Err(Fail::Incomplete) => Lenient::Incomplete,
        Err(Fail::Invalid(m)) => Lenient::Invalid(m),
        Err(Fail::Other) => Lenient::Other,
    }
}

fn is_delimiter(c: u8) -> bool {
    c.is_ascii_whitespace() || matches!(c, b'[' | b']' | b'{' | b'}' | b',' | b':' | b'"')
}

impl Parser<'_> {
    fn skip_ws(&mut self) {
        while self.pos < self.text.len() && self.text[self.pos].is_ascii_whitespace() {
            self.pos += 1;
        }
    }

    fn peek(&self) -> Result<u8, Fail> {
        self.text.get(self.pos).copied().ok_or(Fail::Incomplete)
    }

    /// jq's line and column of byte `pos` (lines 1-based; the column counts the bytes of the
    /// line up to `pos`, as jq's parser reports it).
    fn at(&self, pos: usize) -> (usize, usize) {
        let before = &self.text[..pos];
        let line = before.split(|&c| c == b'\n').count();
        let col = before.iter().rev().take_while(|&&c| c != b'\n').count();
        (line, col)
    }

    fn value(&mut self, depth: usize) -> Result<Val, Fail> {
        let c = self.peek()?;
        // As the strict reader: the container past the limit is an error (serde_json's message).
        if matches!(c, b'[' | b'{') && depth >= MAX_DEPTH {
            return Err(Fail::Other);
        }
        match c {
            b'[' => {
                self.pos += 1;
                let mut items = Vec::new();
                self.skip_ws();
                if self.peek()? == b']' {
                    self.pos += 1;
                    return Ok(Val::Arr(items.into()));
                }
                loop {
                    self.skip_ws();
                    items.push(self.value(depth + 1)?);
                    self.skip_ws();
                    match self.peek()? {
                        b',' => self.pos += 1,
                        b']' => {
                            self.pos += 1;
                            return Ok(Val::Arr(items.into()));
                        }
                        _ => return Err(Fail::Other),
                    }
                }
            }
            b'{' => {
                self.pos += 1;
                let mut map = Map::default();
                self.skip_ws();
                if self.peek()? == b'}' {
                    self.pos += 1;
                    return Ok(Val::obj(map));
                }
                loop {
                    self.skip_ws();
                    let key = self.value(depth + 1)?;
                    if !matches!(key, Val::TStr(_) | Val::BStr(_)) {
                        return Err(Fail::Other);
                    }
                    self.skip_ws();
                    if self.peek()? != b':' {
                        return Err(Fail::Other);
                    }
                    self.pos += 1;
                    self.skip_ws();
                    let v = self.value(depth + 1)?;
                    map.insert(key, v);
                    self.skip_ws();
                    match self.peek()? {
                        b',' => self.pos += 1,
                        b'}' => {
                            self.pos += 1;
                            return Ok(Val::obj(map));
                        }
                        _ => return Err(Fail::Other),
                    }
                }
            }
            b'"' => self.string(),
            b']' | b'}' | b',' | b':' => Err(Fail::Other),
            _ => self.word(),
        }
    }

    /// A string: its end found here, its text judged by serde_json.
    fn string(&mut self) -> Result<Val, Fail> {
        let start = self.pos;
        let mut i = start + 1;
        loop {
            match self.text.get(i) {
                None => return Err(Fail::Incomplete),
                Some(b'\\') => i += 2,
                Some(b'"') => break,
                Some(_) => i += 1,
            }
        }
        let end = i + 1;
        let inner = &self.text[start + 1..i];
        // Text without escapes (nor control characters, which jq refuses too) is taken as it
        // is; bytes that are not UTF-8 become U+FFFD, as jq reads them (serde_json refuses them).
        if !inner.iter().any(|&c| c == b'\\' || c < 0x20) {
            self.pos = end;
            return Ok(Val::utf8_str(
                String::from_utf8_lossy(inner).into_owned().into_bytes(),
            ));
        }
        match crate::read::parse_strict(&self.text[start..end]) {
            Some(Ok((v @ (Val::TStr(_) | Val::BStr(_)), used))) if used == end - start => {
                self.pos = end;
                Ok(v)
            }
            _ => Err(Fail::Other),
        }
    }

    /// A bare word: `true`, `false`, `null`, a number, or one of jq's `nan`/`infinity`.
    fn word(&mut self) -> Result<Val, Fail> {
        let start = self.pos;
        let len = self.text[start..]
            .iter()
            .position(|&c| is_delimiter(c))
            .unwrap_or(self.text.len() - start);
        let end = start + len;
        let at_eof = end == self.text.len();
        let word = &self.text[start..end];
        let invalid = |p: &Self, what: &str| {
            let (line, col) = p.at(end);
            if at_eof {
                Fail::Invalid(format!("{what} at EOF at line {line}, column {col}"))
            } else {
                Fail::Invalid(format!("{what} at line {line}, column {}", col + 1))
            }
        };
        let v = match word {
            b"true" => Val::Bool(true),
            b"false" => Val::Bool(false),
            b"null" => Val::Null,
            b"nan" => Val::from(f64::NAN),
            [b't' | b'f' | b'n', ..] => return Err(invalid(self, "Invalid literal")),
            [b'\'', ..] => {
                return Err(invalid(
                    self,
                    "Invalid string literal; expected \", but got '",
                ));
            }
            _ => match special(word) {
                Some(f) => Val::from(f),
                // The literal's digits kept (`1.000`, big integers), as jq 1.7.1 keeps them.
                None => match std::str::from_utf8(word) {
                    Ok(text) if is_json_number(word) => {
                        <Val as jaq_core::ValT>::from_num(text).map_err(|_| Fail::Other)?
                    }
                    _ => return Err(invalid(self, "Invalid numeric literal")),
                },
            },
        };
        self.pos = end;
        Ok(v)
    }
}

/// JSON's number grammar: `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`.
fn is_json_number(w: &[u8]) -> bool {
    let digits = |i: usize| w[i..].iter().take_while(|c| c.is_ascii_digit()).count();
    let mut i = usize::from(w.first() == Some(&b'-'));
    match w.get(i) {
        Some(b'0') => i += 1,
        Some(b'1'..=b'9') => i += digits(i),
        _ => return false,
    }
    if w.get(i) == Some(&b'.') {
        let n = digits(i + 1);
        if n == 0 {
            return false;
        }
        i += 1 + n;
    }
    if matches!(w.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(w.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        let n = digits(i);
        if n == 0 {
            return false;
        }
        i += n;
    }
    i == w.len()
}

/// jq's `strtod` words: an optional sign, then `nan`, `inf` or `infinity` in any case.
fn special(word: &[u8]) -> Option<f64> {
    let (neg, rest) = match word.strip_prefix(b"-") {
        Some(rest) => (true, rest),
        None => (false, word.strip_prefix(b"+").unwrap_or(word)),
    };
    let lower = rest.to_ascii_lowercase();
    let f = match &lower[..] {
        b"nan" => f64::NAN,
        b"inf" | b"infinity" => f64::INFINITY,
        _ => return None,
    };
    Some(if neg { -f } else { f })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(text: &str) -> String {
        match parse(text.as_bytes()) {
            Lenient::Value(v, used) => format!(
                "{} {used}",
                String::from_utf8_lossy(&crate::write::to_json(&v))
            ),
            Lenient::Incomplete => "incomplete".into(),
            Lenient::Invalid(m) => m,
            Lenient::Other => "other".into(),
        }
    }

    #[test]
    fn jq_literals() {
        assert_eq!(
            value("[1,null,Infinity,-Infinity,NaN,-NaN]"),
            "[1,null,1.7976931348623157e+308,-1.7976931348623157e+308,null,null] 36"
        );
        assert_eq!(value("{\"a\":nan} 2"), "{\"a\":null} 9");
        assert_eq!(value("[1, nan"), "incomplete");
        assert_eq!(value("[1 2]"), "other");
        assert_eq!(value("\"a\u{1}\""), "other");
        let Lenient::Value(v, 4) = parse(b"\"a\xff\"") else {
            panic!("bytes that are not UTF-8 are read")
        };
        assert_eq!(crate::write::to_json(&v), "\"a\u{fffd}\"".as_bytes());
        assert_eq!(value("nul"), "Invalid literal at EOF at line 1, column 3");
    }

    #[test]
    fn json_numbers() {
        for ok in [
            "0",
            "-0",
            "12",
            "1.5",
            "1e5",
            "1E+5",
            "-0.25e-3",
            "100000000000000000000001",
        ] {
            assert!(is_json_number(ok.as_bytes()), "{ok}");
        }
        for bad in ["", "-", "01", "1.", ".5", "1e", "1e+", "+1", "1x", "--1"] {
            assert!(!is_json_number(bad.as_bytes()), "{bad}");
        }
        assert_eq!(
            value("[\"a\\nb\", \"é\", 1.50]"),
            "[\"a\\nb\",\"é\",1.50] 20"
        );
    }

    #[test]
    fn jq_messages() {
        assert_eq!(
            value("NaN1"),
            "Invalid numeric literal at EOF at line 1, column 4"
        );
        assert_eq!(
            value("{'a': 123}"),
            "Invalid string literal; expected \", but got ' at line 1, column 5"
        );
    }
}
