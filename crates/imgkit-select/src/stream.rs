//! `--stream`: a value as jq's streaming parser reports it, one event per leaf (`[[path],
//! leaf]`, an empty array or object being a leaf) and one closing event per non-empty array or
//! object (`[[path to its last element]]`), in document order — what `tostream` makes.
//!
//! [`Events`] makes them while reading, token by token, as jq's streaming parser does: memory
//! stays that of one scalar and the path, whatever the document's size, and the events before
//! invalid text are printed before its error.

use std::collections::VecDeque;
use std::io::Read;

use jaq_json::{Num, Rc, Val};

use crate::read::{ReadError, Token, Values};

/// Nesting deeper than this is an input error, as for whole values.
const MAX_DEPTH: usize = 10_000;

#[derive(Clone, Copy, PartialEq, Eq)]
enum State {
    /// Just after `[` or `{`: a value (a key) or the closing bracket.
    First,
    /// A key (objects, after `,`).
    Key,
    /// `:` (objects).
    Colon,
    /// A value.
    Value,
    /// `,` or the closing bracket.
    After,
}

struct Frame {
    object: bool,
    /// The current index or key.
    key: Val,
    state: State,
    /// The event of the last leaf, printed once a `,` or the closing bracket follows it (as jq
    /// does: `[1 2]` prints nothing before its error).
    pending: Option<Val>,
}

/// The stream events of the JSON texts read from `R`.
pub(crate) struct Events<R> {
    values: Values<R>,
    stack: Vec<Frame>,
    ready: VecDeque<Val>,
    /// `--stream-errors`: an error is the event `["message", path]`, then the end.
    report_inline: bool,
    done: bool,
}

impl<R: Read> Events<R> {
    pub(crate) fn new(values: Values<R>, report_inline: bool) -> Self {
        Self {
            values,
            stack: Vec::new(),
            ready: VecDeque::new(),
            report_inline,
            done: false,
        }
    }

    /// Line on which the last token ended, for runtime errors' `(at <stdin>:N)`.
    pub(crate) fn last_line(&self) -> u64 {
        self.values.last_line
    }

    /// Byte offset at which the last token began.
    pub(crate) fn last_start(&self) -> u64 {
        self.values.last_start
    }

    fn path(&self) -> Vec<Val> {
        self.stack.iter().map(|f| f.key.clone()).collect()
    }

    /// After a value inside the innermost container (or a whole top-level value).
    fn after_value(&mut self) {
        if let Some(top) = self.stack.last_mut() {
            top.state = State::After;
        }
    }

    /// A leaf's event: at the top level at once, inside a container once it is followed by a
    /// separator or the closing bracket.
    fn leaf(&mut self, v: Val) {
        let event = arr(vec![arr(self.path()), v]);
        match self.stack.last_mut() {
            Some(top) => {
                top.pending = Some(event);
                top.state = State::After;
            }
            None => self.ready.push_back(event),
        }
    }

    fn open(&mut self, object: bool) -> Result<(), &'static str> {
        if self.stack.len() >= MAX_DEPTH {
            return Err("Exceeds depth limit for parsing");
        }
        self.stack.push(Frame {
            object,
            key: if object {
                Val::Null
            } else {
                Val::Num(Num::from_integral(0usize))
            },
            state: State::First,
            pending: None,
        });
        Ok(())
    }

    /// Takes one token; `Err` names what is wrong with it.
    fn step(&mut self, token: Token) -> Result<(), &'static str> {
        let Some(top) = self.stack.last_mut() else {
            return match token {
                Token::Open(c) => self.open(c == b'{'),
                Token::Scalar(v) => {
                    self.leaf(v);
                    Ok(())
                }
                _ => Err("unexpected punctuation outside a value"),
            };
        };
        match (top.state, token) {
            (State::First, Token::Close(c)) if (c == b'}') == top.object => {
                let empty = if top.object {
                    Val::obj(jaq_json::Map::default())
                } else {
                    arr(Vec::new())
                };
                self.stack.pop();
                self.leaf(empty);
            }
            (State::After, Token::Close(c)) if (c == b'}') == top.object => {
                if let Some(event) = top.pending.take() {
                    self.ready.push_back(event);
                }
                let closing = arr(vec![arr(self.path())]);
                self.ready.push_back(closing);
                self.stack.pop();
                self.after_value();
            }
            (State::First | State::Key, Token::Scalar(k)) if top.object => match k {
                Val::TStr(_) | Val::BStr(_) => {
                    top.key = k;
                    top.state = State::Colon;
                }
                _ => return Err("Object keys must be strings"),
            },
            (State::Colon, Token::Colon) => top.state = State::Value,
            (State::After, Token::Comma) => {
                if let Some(event) = top.pending.take() {
                    self.ready.push_back(event);
                }
                if top.object {
                    top.state = State::Key;
                } else {
                    let next = match &top.key {
                        Val::Num(Num::Int(i)) => *i + 1,
                        _ => 0,
                    };
                    top.key = Val::Num(Num::Int(next));
                    top.state = State::Value;
                }
            }
            (State::First | State::Value, Token::Scalar(v))
                if !top.object || top.state == State::Value =>
            {
                self.leaf(v);
            }
            (State::First | State::Value, Token::Open(c))
                if !top.object || top.state == State::Value =>
            {
                top.state = State::Value;
                self.open(c == b'{')?;
            }
            (State::After, _) => return Err("Expected separator between values"),
            (State::Colon, _) => return Err("Objects must consist of key:value pairs"),
            (_, Token::Close(_)) => return Err("Unmatched ']' or '}'"),
            _ => return Err("Expected value before ','"),
        }
        Ok(())
    }

    fn fail(&mut self, e: ReadError) -> Result<Val, ReadError> {
        self.done = true;
        if !self.report_inline {
            return Err(e);
        }
        let msg = match &e {
            ReadError::Syntax { .. } => e.to_string(),
            ReadError::Io(_) => return Err(e),
        };
        Ok(arr(vec![Val::utf8_str(msg.into_bytes()), arr(self.path())]))
    }
}

impl<R: Read> Iterator for Events<R> {
    type Item = Result<Val, ReadError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(event) = self.ready.pop_front() {
                return Some(Ok(event));
            }
            if self.done {
                return None;
            }
            match self.values.next_token() {
                None if self.stack.is_empty() => {
                    self.done = true;
                    return None;
                }
                None => {
                    let e = self
                        .values
                        .error_here("unfinished JSON value at end of input");
                    return Some(self.fail(e));
                }
                Some(Err(e)) => return Some(self.fail(e)),
                Some(Ok(token)) => {
                    if let Err(reason) = self.step(token) {
                        let e = self.values.error_here(reason);
                        return Some(self.fail(e));
                    }
                }
            }
        }
    }
}

/// The events of `v`, in order (from a whole value: the reference the streaming parser is
/// tested against).
#[cfg(test)]
fn events(v: &Val) -> Vec<Val> {
    let mut out = Vec::new();
    let mut path = Vec::new();
    walk(&mut path, v, &mut out);
    out
}

fn arr(items: Vec<Val>) -> Val {
    Val::Arr(Rc::new(items))
}

#[cfg(test)]
fn walk(path: &mut Vec<Val>, v: &Val, out: &mut Vec<Val>) {
    let last = match v {
        Val::Arr(a) if !a.is_empty() => {
            for (i, x) in a.iter().enumerate() {
                path.push(Val::Num(Num::from_integral(i)));
                walk(path, x, out);
                path.pop();
            }
            Val::Num(Num::from_integral(a.len() - 1))
        }
        Val::Obj(o) if !o.is_empty() => {
            let mut last = Val::Null;
            for (k, x) in o.iter() {
                path.push(k.clone());
                walk(path, x, out);
                path.pop();
                last = k.clone();
            }
            last
        }
        leaf => {
            out.push(arr(vec![arr(path.clone()), leaf.clone()]));
            return;
        }
    };
    let mut closing = path.clone();
    closing.push(last);
    out.push(arr(vec![arr(closing)]));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(events: &[Val]) -> Vec<String> {
        events
            .iter()
            .map(|e| String::from_utf8(crate::write::to_json(e)).unwrap())
            .collect()
    }

    #[test]
    fn events_as_jq_streams_them() {
        let v = crate::read::parse_one(r#"{"a":[1,{"b":2}],"c":[],"d":{}}"#).unwrap();
        assert_eq!(
            json(&events(&v)),
            [
                r#"[["a",0],1]"#,
                r#"[["a",1,"b"],2]"#,
                r#"[["a",1,"b"]]"#,
                r#"[["a",1]]"#,
                r#"[["c"],[]]"#,
                r#"[["d"],{}]"#,
                r#"[["d"]]"#,
            ]
        );
        let scalar = crate::read::parse_one("3").unwrap();
        assert_eq!(json(&events(&scalar)), ["[[],3]"]);
    }

    fn streamed(text: &str, errors: bool) -> Vec<String> {
        Events::new(Values::new(text.as_bytes()), errors)
            .map(|r| match r {
                Ok(v) => String::from_utf8(crate::write::to_json(&v)).unwrap(),
                Err(e) => format!("error: {e}"),
            })
            .collect()
    }

    #[test]
    fn streaming_makes_the_same_events_as_whole_values() {
        let text = r#"{"a":[1,{"b":2}],"c":[],"d":{},"e":"x"} 3 "y" [] {} [[[]],[{}]] [1,[2,[3]]]"#;
        let whole: Vec<String> = Values::new(text.as_bytes())
            .flat_map(|v| json(&events(&v.unwrap())))
            .collect();
        assert_eq!(streamed(text, false), whole);
    }

    #[test]
    fn streaming_prints_the_events_before_invalid_text() {
        // As jq: a leaf is printed once a separator or bracket follows it (not `4` here).
        let got = streamed("[1,[2,3]] [4", false);
        assert_eq!(
            &got[..5],
            ["[[0],1]", "[[1,0],2]", "[[1,1],3]", "[[1,1]]", "[[1]]"]
        );
        assert_eq!(got.len(), 6, "{got:?}");
        assert!(
            got[5].starts_with("error: unfinished JSON value"),
            "{got:?}"
        );
        let got = streamed("[1,[2,3]] [4", true);
        assert!(got[5].starts_with("[\"unfinished JSON value"), "{got:?}");
        assert!(got[5].ends_with(",[0]]"), "{got:?}");
        for bad in ["[1 2]", "{1:2}", "[1}", "{\"a\" 1}", "]", "[,1]"] {
            let got = streamed(bad, false);
            assert_eq!(got.len(), 1, "{bad}: {got:?}");
            assert!(got[0].starts_with("error: "), "{bad}: {got:?}");
        }
    }
}
