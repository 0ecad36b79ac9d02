//! Reading a stream of JSON values with flat memory: a buffer refilled from any `Read`, parsed by
//! serde_json straight into jaq values (object keys shared between records), with line and byte
//! offset for invalid input, as jq reports them.
//!
//! A value longer than the buffered input (one big document from a pipe arrives 64 KiB per
//! read) is not parsed again from its start after each read, which would cost quadratic time:
//! a scan that follows only strings and nesting ([`Scan`]) reads on until the value's end is
//! buffered, then the value is parsed once. Memory is the value's text and the value, as jq
//! holds the value; the buffer shrinks back after it.

use std::cell::RefCell;
use std::fmt;
use std::io::{self, BufRead, Read};

use jaq_json::{Map, Num, Rc, Val};
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

/// Nesting deeper than this is an input error (jq 1.7 has the same limit).
pub(crate) const MAX_DEPTH: usize = 10_000;
const BOM: &[u8] = b"\xEF\xBB\xBF";
const INITIAL_BUFFER: usize = 256 * 1024;

/// Where and why the input is not JSON.
#[derive(Debug)]
pub(crate) enum ReadError {
    /// Invalid JSON at 1-based `line`, 0-based byte `offset` from the start of the input.
    Syntax {
        line: u64,
        offset: u64,
        reason: String,
    },
    /// Reading failed.
    Io(io::Error),
}

impl fmt::Display for ReadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Syntax {
                line,
                offset,
                reason,
            } => {
                write!(f, "{reason} at line {line}, byte offset {offset}")
            }
            Self::Io(e) => write!(f, "cannot read input: {e}"),
        }
    }
}

/// JSON values from a byte stream, one after another (whitespace-separated, as jq reads them).
pub(crate) struct Values<R> {
    src: R,
    buf: Vec<u8>,
    /// Parsed up to here.
    start: usize,
    /// Valid bytes end here.
    end: usize,
    eof: bool,
    failed: bool,
    /// Bytes dropped from the front of `buf` so far.
    dropped: u64,
    /// Newlines in the dropped bytes.
    dropped_lines: u64,
    /// Newlines in `buf[..counted]` (counted once, incrementally).
    counted: usize,
    counted_lines: u64,
    /// Line on which the last value ended (1-based), for jq's `(at <stdin>:N)`.
    pub(crate) last_line: u64,
    /// Byte offset (from the input's start) at which the last value began.
    pub(crate) last_start: u64,
    /// How far the value at `start` has been scanned for its end.
    scan: Scan,
    /// `--seq`: record separators (0x1E) separate values like whitespace, and text before
    /// the first one is ignored (jq's parser waits for an RS).
    pub(crate) seq: bool,
    seen_rs: bool,
}

/// Finds where a JSON value ends without parsing it: follows strings (and their escapes) and
/// the nesting of `[`/`{`, incrementally as more input arrives. It only decides when to parse;
/// the parser still judges the text (invalid text ends the scan early or late, never wrongly).
#[derive(Debug, Default, Clone, Copy)]
struct Scan {
    /// Bytes of the value scanned so far (relative to the value's start).
    off: usize,
    depth: usize,
    in_str: bool,
    /// A scalar (number, `true`, …): ends at whitespace or punctuation.
    scalar: bool,
    /// The end was found (or the scan cannot tell): parse now.
    done: bool,
}

impl Scan {
    /// Scans `bytes` (the value's text so far, from its first byte) on from `self.off`.
    fn advance(&mut self, bytes: &[u8]) {
        let mut i = self.off;
        if i == 0 && !bytes.is_empty() {
            match bytes[0] {
                b'[' | b'{' => self.depth = 1,
                b'"' => self.in_str = true,
                _ => self.scalar = true,
            }
            i = 1;
        }
        while i < bytes.len() && !self.done {
            if self.scalar {
                match bytes[i..].iter().position(|c| {
                    c.is_ascii_whitespace()
                        || matches!(c, b'[' | b']' | b'{' | b'}' | b',' | b':' | b'"')
                }) {
                    Some(_) => self.done = true,
                    None => i = bytes.len(),
                }
            } else if self.in_str {
                match bytes[i..].iter().position(|&c| c == b'"' || c == b'\\') {
                    // The escaped byte may lie beyond the buffered bytes: `off` then points past it.
                    Some(j) if bytes[i + j] == b'\\' => i += j + 2,
                    Some(j) => {
                        i += j + 1;
                        self.in_str = false;
                        self.done = self.depth == 0;
                    }
                    None => i = bytes.len(),
                }
            } else {
                match bytes[i] {
                    b'"' => self.in_str = true,
                    b'[' | b'{' => self.depth += 1,
                    b']' | b'}' => {
                        self.depth = self.depth.saturating_sub(1);
                        self.done = self.depth == 0;
                    }
                    _ => {}
                }
                i += 1;
            }
        }
        self.off = i;
    }
}

impl<R: Read> Values<R> {
    pub(crate) fn new(src: R) -> Self {
        Self {
            src,
            buf: vec![0; INITIAL_BUFFER],
            start: 0,
            end: 0,
            eof: false,
            failed: false,
            dropped: 0,
            dropped_lines: 0,
            counted: 0,
            counted_lines: 0,
            last_line: 0,
            last_start: 0,
            scan: Scan::default(),
            seq: false,
            seen_rs: false,
        }
    }

    /// Makes room and reads more; sets `eof` when the source is exhausted.
    fn fill(&mut self) -> io::Result<()> {
        if self.start > 0 {
            self.dropped += self.start as u64;
            self.dropped_lines += self.lines_before(self.start);
            self.counted = 0;
            self.counted_lines = 0;
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
            // After a big value, give its buffer back.
            if self.buf.len() > 4 * INITIAL_BUFFER && self.end < INITIAL_BUFFER {
                self.buf.truncate(INITIAL_BUFFER);
                self.buf.shrink_to_fit();
            }
        }
        if self.end == self.buf.len() {
            self.buf.resize(self.buf.len() * 2, 0);
        }
        loop {
            match self.src.read(&mut self.buf[self.end..]) {
                Ok(0) => {
                    self.eof = true;
                    return Ok(());
                }
                Ok(n) => {
                    self.end += n;
                    return Ok(());
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// Newlines in `buf[..pos]`; positions asked for only grow between refills.
    fn lines_before(&mut self, pos: usize) -> u64 {
        if pos >= self.counted {
            self.counted_lines += count_lines(&self.buf[self.counted..pos]);
            self.counted = pos;
            self.counted_lines
        } else {
            count_lines(&self.buf[..pos])
        }
    }

    /// jq's `input_line_number` after the last value: jq reads its input a line at a time,
    /// so it has read the newline ending the line the value ended on (when that is buffered).
    pub(crate) fn newlines_read(&mut self) -> u64 {
        let pos = self.start.min(self.end);
        let upto = match self.buf[pos..self.end].iter().position(|&c| c == b'\n') {
            Some(i) => pos + i + 1,
            None => pos,
        };
        self.dropped_lines + self.lines_before(upto)
    }

    fn line_at(&mut self, pos: usize) -> u64 {
        self.dropped_lines + self.lines_before(pos) + 1
    }

    fn syntax(&mut self, err: &serde_json::Error) -> ReadError {
        self.failed = true;
        // serde_json counts lines (1-based) and columns (1-based bytes) within the slice.
        let slice = &self.buf[self.start..self.end];
        let mut pos = 0;
        for _ in 1..err.line() {
            match slice[pos..].iter().position(|&c| c == b'\n') {
                Some(i) => pos += i + 1,
                None => break,
            }
        }
        let pos = self.start + (pos + err.column().saturating_sub(1)).min(slice.len());
        let reason = match err.classify() {
            serde_json::error::Category::Eof => "unfinished JSON value at end of input".to_string(),
            _ => strip_position(&err.to_string()),
        };
        ReadError::Syntax {
            line: self.line_at(pos),
            offset: self.dropped + pos as u64,
            reason,
        }
    }
}

#[allow(
    clippy::naive_bytecount,
    reason = "auto-vectorised; not worth a dependency"
)]
fn count_lines(bytes: &[u8]) -> u64 {
    bytes.iter().filter(|&&c| c == b'\n').count() as u64
}

/// serde_json appends " at line L column C"; we say where ourselves.
fn strip_position(msg: &str) -> String {
    msg.rfind(" at line ")
        .map_or(msg, |i| &msg[..i])
        .to_string()
}

impl<R: Read> Values<R> {
    /// Parses the next value with `parse`, which gets the unparsed input (starting at a
    /// value) and returns what it made of the first value and the bytes that value used.
    /// `parse` may be called again on more input when the value was cut by the buffer's end,
    /// so it must not have side effects.
    pub(crate) fn next_with<T>(
        &mut self,
        mut parse: impl FnMut(&[u8]) -> Option<Result<(T, usize), serde_json::Error>>,
    ) -> Option<Result<T, ReadError>> {
        if self.failed {
            return None;
        }
        loop {
            // jq skips a UTF-8 byte order mark at the start of its input.
            if self.start == 0 && self.dropped == 0 && self.buf[..self.end].starts_with(BOM) {
                self.start = BOM.len();
            }
            while self.start < self.end
                && (self.buf[self.start].is_ascii_whitespace()
                    || (self.seq && (self.buf[self.start] == 0x1e || !self.seen_rs)))
            {
                self.seen_rs |= self.buf[self.start] == 0x1e;
                self.start += 1;
            }
            if self.start == self.end {
                if self.eof {
                    return None;
                }
                if let Err(e) = self.fill() {
                    self.failed = true;
                    return Some(Err(ReadError::Io(e)));
                }
                continue;
            }
            let len = self.end - self.start;
            match parse(&self.buf[self.start..self.end]) {
                // A value ending right at the buffer's end may continue (`12` of `123`), unless
                // its last byte closes it (`]`, `}`, `"`): then it is printed without waiting.
                Some(Ok((v, used)))
                    if used < len
                        || self.eof
                        || matches!(self.buf[self.start + used - 1], b']' | b'}' | b'"') =>
                {
                    self.last_start = self.dropped + self.start as u64;
                    self.start += used;
                    self.scan = Scan::default();
                    self.last_line = self.line_at(self.start);
                    return Some(Ok(v));
                }
                Some(Err(e)) if !e.is_eof() || self.eof => return Some(Err(self.syntax(&e))),
                // Incomplete: read on until the value's end is buffered, then parse again.
                _ => {
                    if let Err(e) = self.fill_value() {
                        self.failed = true;
                        return Some(Err(ReadError::Io(e)));
                    }
                }
            }
        }
    }

    /// Reads until the end of the value at `start` is buffered (or the input ends), so a value
    /// is parsed about once whatever the size of each read. When the scan already found the
    /// end and the parser still wants more, reads once more.
    fn fill_value(&mut self) -> io::Result<()> {
        if self.scan.done {
            return self.fill();
        }
        loop {
            let value_start = self.start;
            self.scan.advance(&self.buf[value_start..self.end]);
            if self.scan.done || self.eof {
                return Ok(());
            }
            // `fill` moves the value to the buffer's start; the scan is relative to it.
            self.fill()?;
        }
    }
}

impl<R: Read> Values<R> {
    /// `--seq`: after invalid text, goes on at the next record separator, as jq does ("ignoring
    /// parse error"). `false` when not reading a sequence.
    pub(crate) fn resync(&mut self) -> bool {
        if !self.seq {
            return false;
        }
        self.failed = false;
        self.scan = Scan::default();
        // The invalid text starts at `start`; the separator that ends it comes after.
        let mut from = self.start + 1;
        loop {
            if let Some(i) = self.buf[from.min(self.end)..self.end]
                .iter()
                .position(|&c| c == 0x1e)
            {
                self.start = from.min(self.end) + i;
                return true;
            }
            if self.eof {
                self.start = self.end;
                return true;
            }
            let searched = self.end.saturating_sub(self.start);
            if self.fill().is_err() {
                self.start = self.end;
                self.eof = true;
                return true;
            }
            from = self.start + searched;
        }
    }
}

/// One token of JSON text, for `--stream`: punctuation, or a whole scalar.
pub(crate) enum Token {
    /// `[` or `{`.
    Open(u8),
    /// `]` or `}`.
    Close(u8),
    Comma,
    Colon,
    Scalar(Val),
}

impl<R: Read> Values<R> {
    /// The next token, without building arrays or objects (`--stream`); `None` at the end.
    pub(crate) fn next_token(&mut self) -> Option<Result<Token, ReadError>> {
        if self.failed {
            return None;
        }
        loop {
            if self.start == 0 && self.dropped == 0 && self.buf[..self.end].starts_with(BOM) {
                self.start = BOM.len();
            }
            while self.start < self.end && self.buf[self.start].is_ascii_whitespace() {
                self.start += 1;
            }
            if self.start < self.end {
                break;
            }
            if self.eof {
                return None;
            }
            if let Err(e) = self.fill() {
                self.failed = true;
                return Some(Err(ReadError::Io(e)));
            }
        }
        let c = self.buf[self.start];
        let token = match c {
            b'[' | b'{' => Token::Open(c),
            b']' | b'}' => Token::Close(c),
            b',' => Token::Comma,
            b':' => Token::Colon,
            _ => return self.next_with(parse_val).map(|r| r.map(Token::Scalar)),
        };
        self.last_start = self.dropped + self.start as u64;
        self.start += 1;
        self.last_line = self.line_at(self.start);
        Some(Ok(token))
    }

    /// An error at the current position (`--stream`'s structural errors); ends the input.
    pub(crate) fn error_here(&mut self, reason: &str) -> ReadError {
        self.failed = true;
        let pos = self.start;
        ReadError::Syntax {
            line: self.line_at(pos),
            offset: self.dropped + pos as u64,
            reason: reason.to_string(),
        }
    }
}

/// Parses the first JSON value of `slice` into a jaq value; `None` at the end. Reads jq's
/// `nan` and `infinity` literals too (see `lenient`).
pub(crate) fn parse_val(slice: &[u8]) -> Option<Result<(Val, usize), serde_json::Error>> {
    FLOAT_SEEN.set(false);
    match parse_strict(slice)? {
        Err(e) if !e.is_eof() => Some(match crate::lenient::parse(slice) {
            crate::lenient::Lenient::Value(v, used) => Ok((v, used)),
            crate::lenient::Lenient::Incomplete => Err(eof_error()),
            _ => Err(e),
        }),
        // A number serde_json read as a double (`1.000`, `1e2`, beyond 64 bits): read the
        // value again keeping each literal's digits, as jq 1.7.1 does.
        Ok((_, used)) if FLOAT_SEEN.get() => Some(match crate::lenient::parse(&slice[..used]) {
            crate::lenient::Lenient::Value(v, _) => Ok((v, used)),
            _ => parse_strict(slice)?,
        }),
        other => Some(other),
    }
}

thread_local! {
    /// Set when serde_json hands a number over as a double: its literal was lost.
    static FLOAT_SEEN: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// [`parse_val`] for strict JSON only.
pub(crate) fn parse_strict(slice: &[u8]) -> Option<Result<(Val, usize), serde_json::Error>> {
    let mut de = serde_json::Deserializer::from_slice(slice);
    de.disable_recursion_limit();
    let mut stream = de.into_iter::<Doc>();
    let parsed = stream.next()?;
    Some(parsed.map(|Doc(v)| (v, stream.byte_offset())))
}

/// serde_json's error for text that ends inside a value (the reader then reads on).
fn eof_error() -> serde_json::Error {
    serde_json::from_slice::<serde::de::IgnoredAny>(b"[").expect_err("`[` is unfinished")
}

impl<R: Read> Iterator for Values<R> {
    type Item = Result<Val, ReadError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_with(parse_val)
    }
}

/// `-R`: each line of the input as a string (without its `\n`).
pub(crate) struct RawLines<R> {
    src: R,
    pub(crate) line: u64,
    /// Newlines read so far (jq's `input_line_number`).
    pub(crate) newlines: u64,
}

impl<R: BufRead> RawLines<R> {
    pub(crate) fn new(src: R) -> Self {
        Self {
            src,
            line: 0,
            newlines: 0,
        }
    }
}

impl<R: BufRead> Iterator for RawLines<R> {
    type Item = Result<Val, ReadError>;

    fn next(&mut self) -> Option<Self::Item> {
        let mut line = Vec::new();
        match self.src.read_until(b'\n', &mut line) {
            Ok(0) => None,
            Ok(_) => {
                if line.last() == Some(&b'\n') {
                    line.pop();
                    self.newlines += 1;
                }
                self.line += 1;
                Some(Ok(Val::utf8_str(line)))
            }
            Err(e) => Some(Err(ReadError::Io(e))),
        }
    }
}

/// One parsed document; deserialized with the thread's key cache.
struct Doc(Val);

thread_local! {
    static KEYS: RefCell<KeyCache> = RefCell::new(KeyCache::default());
}

impl<'de> serde::Deserialize<'de> for Doc {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        KEYS.with_borrow_mut(|keys| ValSeed { keys, depth: 0 }.deserialize(d))
            .map(Doc)
    }
}

/// Parses one JSON text completely (for `--argjson`).
pub(crate) fn parse_one(text: &str) -> Result<Val, String> {
    FLOAT_SEEN.set(false);
    let strict = parse_strict_one(text);
    if strict.is_ok() && FLOAT_SEEN.get() {
        // Keep the literals' digits (see `parse_val`).
        if let crate::lenient::Lenient::Value(v, _) = crate::lenient::parse(text.as_bytes()) {
            return Ok(v);
        }
    }
    strict.or_else(|e| {
        // jq's literals (`nan`, `Infinity`) and jq's words for a bad literal.
        match crate::lenient::parse(text.as_bytes()) {
            crate::lenient::Lenient::Value(v, used)
                if text.as_bytes()[used..].iter().all(u8::is_ascii_whitespace) =>
            {
                Ok(v)
            }
            crate::lenient::Lenient::Invalid(message) => Err(message),
            _ => Err(e),
        }
    })
}

fn parse_strict_one(text: &str) -> Result<Val, String> {
    let mut de = serde_json::Deserializer::from_str(text);
    de.disable_recursion_limit();
    let v = KEYS
        .with_borrow_mut(|keys| ValSeed { keys, depth: 0 }.deserialize(&mut de))
        .map_err(|e| e.to_string())?;
    de.end().map_err(|e| e.to_string())?;
    Ok(v)
}

/// Object keys seen recently: records repeat the same few keys, so share their bytes.
#[derive(Default)]
struct KeyCache {
    keys: Vec<(Box<[u8]>, Val)>,
}

impl KeyCache {
    const MAX: usize = 64;

    fn get(&mut self, key: &str) -> Val {
        if let Some((_, v)) = self.keys.iter().find(|(k, _)| **k == *key.as_bytes()) {
            return v.clone();
        }
        let v = Val::utf8_str(key.as_bytes().to_vec());
        if self.keys.len() < Self::MAX {
            self.keys.push((key.as_bytes().into(), v.clone()));
        }
        v
    }
}

struct ValSeed<'c> {
    keys: &'c mut KeyCache,
    depth: usize,
}

impl<'de> DeserializeSeed<'de> for ValSeed<'_> {
    type Value = Val;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Val, D::Error> {
        d.deserialize_any(self)
    }
}

struct KeySeed<'c>(&'c mut KeyCache);

impl<'de> DeserializeSeed<'de> for KeySeed<'_> {
    type Value = Val;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Val, D::Error> {
        d.deserialize_str(self)
    }
}

impl Visitor<'_> for KeySeed<'_> {
    type Value = Val;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string")
    }
    fn visit_str<E: de::Error>(self, s: &str) -> Result<Val, E> {
        Ok(self.0.get(s))
    }
}

impl<'de> Visitor<'de> for ValSeed<'_> {
    type Value = Val;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_unit<E>(self) -> Result<Val, E> {
        Ok(Val::Null)
    }
    fn visit_bool<E>(self, b: bool) -> Result<Val, E> {
        Ok(Val::Bool(b))
    }
    fn visit_i64<E>(self, i: i64) -> Result<Val, E> {
        Ok(Val::Num(Num::from_integral(i)))
    }
    fn visit_u64<E>(self, i: u64) -> Result<Val, E> {
        Ok(Val::Num(Num::from_integral(i)))
    }
    fn visit_f64<E>(self, f: f64) -> Result<Val, E> {
        FLOAT_SEEN.set(true);
        Ok(Val::Num(Num::Float(f)))
    }
    fn visit_str<E>(self, s: &str) -> Result<Val, E> {
        Ok(Val::utf8_str(s.as_bytes().to_vec()))
    }
    fn visit_string<E>(self, s: String) -> Result<Val, E> {
        Ok(Val::utf8_str(s.into_bytes()))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Val, A::Error> {
        let depth = self.depth + 1;
        if depth > MAX_DEPTH {
            return Err(de::Error::custom("Exceeds depth limit for parsing"));
        }
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0));
        while let Some(x) = seq.next_element_seed(ValSeed {
            keys: self.keys,
            depth,
        })? {
            items.push(x);
        }
        Ok(Val::Arr(Rc::new(items)))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Val, A::Error> {
        let depth = self.depth + 1;
        if depth > MAX_DEPTH {
            return Err(de::Error::custom("Exceeds depth limit for parsing"));
        }
        let mut obj = Map::default();
        while let Some(k) = map.next_key_seed(KeySeed(self.keys))? {
            let v = map.next_value_seed(ValSeed {
                keys: self.keys,
                depth,
            })?;
            obj.insert(k, v);
        }
        Ok(Val::obj(obj))
    }
}

/// Converts a serde_json value (no parsing involved).
pub(crate) fn from_serde(v: &serde_json::Value) -> Val {
    use serde_json::Value as J;
    match v {
        J::Null => Val::Null,
        J::Bool(b) => Val::Bool(*b),
        J::Number(n) => Val::Num(if let Some(i) = n.as_i64() {
            Num::from_integral(i)
        } else if let Some(u) = n.as_u64() {
            Num::from_integral(u)
        } else {
            Num::Float(n.as_f64().unwrap_or(f64::NAN))
        }),
        J::String(s) => Val::utf8_str(s.as_bytes().to_vec()),
        J::Array(a) => Val::Arr(Rc::new(a.iter().map(from_serde).collect())),
        J::Object(o) => Val::obj(
            o.iter()
                .map(|(k, v)| (Val::utf8_str(k.as_bytes().to_vec()), from_serde(v)))
                .collect(),
        ),
    }
}

/// Converts to a serde_json value: numbers as jq would print them, NaN as null.
pub(crate) fn to_serde(v: &Val) -> serde_json::Value {
    use serde_json::Value as J;
    match v {
        Val::Null => J::Null,
        Val::Bool(b) => J::Bool(*b),
        Val::Num(n) => match n {
            Num::Int(i) => J::from(*i as i64),
            other => {
                let mut text = Vec::new();
                crate::write::number(&mut text, other).expect("writing to a Vec cannot fail");
                serde_json::from_slice(&text).unwrap_or(J::Null)
            }
        },
        Val::TStr(s) | Val::BStr(s) => J::String(String::from_utf8_lossy(s).into_owned()),
        Val::Arr(a) => J::Array(a.iter().map(to_serde).collect()),
        Val::Obj(o) => J::Object(
            o.iter()
                .map(|(k, v)| {
                    let key = match k {
                        Val::TStr(s) | Val::BStr(s) => String::from_utf8_lossy(s).into_owned(),
                        other => {
                            String::from_utf8_lossy(&crate::write::to_json(other)).into_owned()
                        }
                    };
                    (key, to_serde(v))
                })
                .collect(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(input: &[u8], buf: usize) -> Vec<Result<String, String>> {
        let mut values = Values::new(input);
        values.buf = vec![0; buf];
        values
            .map(|r| {
                r.map(|v| String::from_utf8(crate::write::to_json(&v)).unwrap())
                    .map_err(|e| e.to_string())
            })
            .collect()
    }

    #[test]
    fn values_split_across_refills() {
        let input = b"123 {\"a\": [1, 2.5, \"x\"]}\r\n\"\xc3\xa9\" true\nnull 45";
        for buf in [1, 2, 3, 7, 64] {
            let got = read_all(input, buf);
            let want: Vec<Result<String, String>> =
                ["123", r#"{"a":[1,2.5,"x"]}"#, "\"é\"", "true", "null", "45"]
                    .iter()
                    .map(|s| Ok((*s).to_string()))
                    .collect();
            assert_eq!(got, want, "buffer {buf}");
        }
    }

    /// Hands out its bytes a few at a time, as a pipe does (sizes cycle through `sizes`).
    struct ShortReads<'a> {
        data: &'a [u8],
        sizes: &'a [usize],
        reads: usize,
    }

    impl Read for ShortReads<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = self.sizes[self.reads % self.sizes.len()]
                .min(buf.len())
                .min(self.data.len());
            buf[..n].copy_from_slice(&self.data[..n]);
            self.data = &self.data[n..];
            self.reads += 1;
            Ok(n)
        }
    }

    /// A document of about `n` bytes with what a scan for its end must get right: strings
    /// holding brackets, escaped quotes and backslashes, nesting, numbers and literals.
    fn big_document(n: usize) -> String {
        use std::fmt::Write as _;
        let mut doc = String::from("{\"items\": [");
        let mut i = 0;
        while doc.len() < n {
            if i > 0 {
                doc.push(',');
            }
            let _ = write!(
                doc,
                r#"{{"id": {i}, "name": "x\"]}}{{[\\", "t": [true, false, null, -1.5e3, "\u00e9\\"], "k{i}": {{}}}}"#
            );
            i += 1;
        }
        doc.push_str("], \"end\": \"}\"}");
        doc
    }

    #[test]
    fn documents_split_across_many_short_reads() {
        let big = big_document(INITIAL_BUFFER * 3);
        let input = format!("{big}\n1 [2] \"three\" {big}{big} 4.5\n{{}}\ntrue");
        // The whole input in one buffer, one read: the values as they are.
        let want: Vec<String> = read_all(input.as_bytes(), input.len() + 1)
            .into_iter()
            .map(Result::unwrap)
            .collect();
        assert_eq!(want.len(), 9);
        for sizes in [&[1, 2, 3, 5, 7][..], &[4096], &[65536, 1, 13]] {
            for buf in [1, 16, INITIAL_BUFFER] {
                let mut values = Values::new(ShortReads {
                    data: input.as_bytes(),
                    sizes,
                    reads: 0,
                });
                values.buf = vec![0; buf];
                let got: Vec<String> = values
                    .map(|v| String::from_utf8(crate::write::to_json(&v.unwrap())).unwrap())
                    .collect();
                let first_diff = got.iter().zip(&want).position(|(g, w)| g != w);
                assert!(
                    got == want,
                    "reads of {sizes:?} bytes, buffer {buf}: {} values, first difference at {first_diff:?}: {:?}",
                    got.len(),
                    first_diff.map(|i| got[i].chars().take(200).collect::<String>())
                );
            }
        }
    }

    #[test]
    fn a_big_document_from_a_pipe_is_parsed_about_once() {
        // 4 MiB arriving 4 KiB per read (a pipe gives 4 to 64 KiB): parsing it again after
        // each read, as before, made 1,000 attempts and quadratic time.
        let big = big_document(4 << 20);
        let mut values = Values::new(ShortReads {
            data: big.as_bytes(),
            sizes: &[4096],
            reads: 0,
        });
        let mut attempts = 0;
        let v = values
            .next_with(|slice| {
                attempts += 1;
                // Fail fast rather than run quadratic for minutes.
                assert!(attempts <= 3, "parsed from its start {attempts} times");
                parse_val(slice)
            })
            .expect("a value")
            .expect("valid");
        assert!(matches!(v, Val::Obj(_)));
        assert!(values.next().is_none());
        assert!(attempts <= 3, "{attempts} parse attempts");
        // The buffer is given back once the document is done.
        assert!(values.buf.len() <= INITIAL_BUFFER, "{}", values.buf.len());
    }

    #[test]
    fn invalid_json_names_line_and_offset() {
        let got = read_all(b"{\"a\":1}\n{\"a\":}\n", 4);
        assert_eq!(got[0], Ok(r#"{"a":1}"#.to_string()));
        let err = got[1].as_ref().unwrap_err();
        assert!(err.contains("line 2, byte offset 13"), "{err}");
        assert_eq!(got.len(), 2);
    }

    #[test]
    fn truncated_input_is_an_error() {
        let got = read_all(b"{\"a\":1", 64);
        let err = got[0].as_ref().unwrap_err();
        assert!(
            err.starts_with("unfinished JSON value at end of input at line 1"),
            "{err}"
        );
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_crash() {
        let deep = "[".repeat(MAX_DEPTH + 1);
        let got = std::thread::Builder::new()
            .stack_size(crate::STACK_SIZE)
            .spawn(move || read_all(deep.as_bytes(), 1 << 20))
            .unwrap()
            .join()
            .unwrap();
        assert!(
            got[0].as_ref().unwrap_err().contains("depth limit"),
            "{got:?}"
        );
    }
}
