//! Write imgkit filter plugins in Rust.
//!
//! A plugin is an ordinary program: it reads image records, one JSON object per line, on
//! stdin and prints the references it selects, one per line, on stdout. Build it for
//! `wasm32-wasip1` and imgkit runs it sandboxed (`imgkit filter --plugin my.wasm`); build it
//! natively and it is a Unix filter you can test with a pipe:
//! `docker image ls --format '{{json .}}' | ./target/debug/my-filter`.
//!
//! ```no_run
//! use imgkit_plugin_sdk::{run, Record};
//!
//! fn main() -> std::process::ExitCode {
//!     // Keep everything from one registry, tagged.
//!     run(|r: Record| r.repository.starts_with("ghcr.io/").then(|| r.reference()).flatten())
//! }
//! ```
//!
//! On big listings, [`run_ref`] (records borrowed from the input line) and [`run_lines`] (parse
//! only the keys you need) do the same job with far less copying.
//!
//! This crate depends only on serde and serde_json, so it builds for any target.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::process::ExitCode;

/// The serde this crate uses, for `#[derive(Deserialize)]` in plugins without a serde
/// dependency of their own: add `#[serde(crate = "imgkit_plugin_sdk::serde")]`.
pub use serde;
use serde::{Deserialize, Serialize};
/// The serde_json this crate uses (for [`run_lines`]).
pub use serde_json;

/// The marker of a missing repository, tag or digest in a record.
pub const NONE: &str = "<none>";

/// One image record: the shape of `docker image ls --format '{{json .}}'`, all strings.
/// Missing keys read as empty strings; keys not listed here are ignored (use [`run_json`]
/// to see every key, e.g. nerdctl's `Platform`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct Record {
    pub containers: String,
    pub created_at: String,
    pub created_since: String,
    pub digest: String,
    #[serde(rename = "ID")]
    pub id: String,
    pub repository: String,
    pub shared_size: String,
    pub size: String,
    pub tag: String,
    pub unique_size: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub virtual_size: Option<String>,
}

impl Record {
    /// What imgkit's default filter (the guide's jq program) prints for this record:
    /// nothing for a `<none>` repository, the bare repository for a `<none>` tag, else
    /// `repository:tag`.
    pub fn reference(&self) -> Option<String> {
        reference(&self.repository, &self.tag)
    }

    /// The time in `CreatedAt` ("2026-11-28 06:34:53 +0000 UTC") as seconds since the Unix
    /// epoch, or `None` when it has another shape.
    pub fn created_unix(&self) -> Option<i64> {
        created_unix(&self.created_at)
    }
}

/// [`Record`] borrowed from the input line: the same keys, but no string is copied unless it
/// holds a JSON escape. What [`run_ref`] hands out; several times cheaper to read than a
/// [`Record`] on big listings. `.into_owned()` gives a [`Record`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct RecordRef<'a> {
    #[serde(borrow)]
    pub containers: Cow<'a, str>,
    #[serde(borrow)]
    pub created_at: Cow<'a, str>,
    #[serde(borrow)]
    pub created_since: Cow<'a, str>,
    #[serde(borrow)]
    pub digest: Cow<'a, str>,
    #[serde(borrow, rename = "ID")]
    pub id: Cow<'a, str>,
    #[serde(borrow)]
    pub repository: Cow<'a, str>,
    #[serde(borrow)]
    pub shared_size: Cow<'a, str>,
    #[serde(borrow)]
    pub size: Cow<'a, str>,
    #[serde(borrow)]
    pub tag: Cow<'a, str>,
    #[serde(borrow)]
    pub unique_size: Cow<'a, str>,
    #[serde(borrow)]
    pub virtual_size: Option<Cow<'a, str>>,
}

impl RecordRef<'_> {
    /// What imgkit's default filter prints for this record, as [`Record::reference`].
    pub fn reference(&self) -> Option<String> {
        reference(&self.repository, &self.tag)
    }

    /// `CreatedAt` as seconds since the Unix epoch, as [`Record::created_unix`].
    pub fn created_unix(&self) -> Option<i64> {
        created_unix(&self.created_at)
    }

    /// The same record with its own strings.
    pub fn into_owned(self) -> Record {
        Record {
            containers: self.containers.into_owned(),
            created_at: self.created_at.into_owned(),
            created_since: self.created_since.into_owned(),
            digest: self.digest.into_owned(),
            id: self.id.into_owned(),
            repository: self.repository.into_owned(),
            shared_size: self.shared_size.into_owned(),
            size: self.size.into_owned(),
            tag: self.tag.into_owned(),
            unique_size: self.unique_size.into_owned(),
            virtual_size: self.virtual_size.map(Cow::into_owned),
        }
    }
}

/// The default filter's output for a repository and tag: nothing for a `<none>` repository,
/// the bare repository for a `<none>` tag, else `repository:tag`.
pub fn reference(repository: &str, tag: &str) -> Option<String> {
    if repository == NONE {
        None
    } else if tag == NONE {
        Some(repository.to_owned())
    } else {
        let mut r = String::with_capacity(repository.len() + 1 + tag.len());
        r.push_str(repository);
        r.push(':');
        r.push_str(tag);
        Some(r)
    }
}

/// Parses docker's `CreatedAt` format to seconds since the Unix epoch.
pub fn created_unix(text: &str) -> Option<i64> {
    let mut parts = text.split(' ');
    let (date, time, offset) = (parts.next()?, parts.next()?, parts.next()?);
    let num = |s: &str| s.parse::<i64>().ok();
    let mut ymd = date.split('-').map(num);
    let (year, month, day) = (ymd.next()??, ymd.next()??, ymd.next()??);
    let mut hms = time.split(':').map(num);
    let (hh, mm, ss) = (hms.next()??, hms.next()??, hms.next()??);
    let (sign, off) = offset.split_at_checked(1)?;
    if off.len() != 4 {
        return None;
    }
    let off_min = num(&off[..2])? * 60 + num(&off[2..])?;
    let off_sec = match sign {
        "+" => off_min * 60,
        "-" => -off_min * 60,
        _ => return None,
    };
    Some(days_from_civil(year, month, day) * 86_400 + hh * 3600 + mm * 60 + ss - off_sec)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The plugin's `K=V` arguments (`imgkit … --plugin-arg K=V`), from argv after the name.
/// An argument without `=` maps to an empty value.
pub fn args() -> BTreeMap<String, String> {
    std::env::args()
        .skip(1)
        .map(|a| match a.split_once('=') {
            Some((k, v)) => (k.to_owned(), v.to_owned()),
            None => (a, String::new()),
        })
        .collect()
}

/// Why a filter stopped.
#[derive(Debug)]
pub enum Error {
    /// A line of input is not a JSON record (`line` counts from 1).
    BadRecord {
        line: usize,
        source: serde_json::Error,
    },
    /// A line of input is not UTF-8 (so not JSON; `line` counts from 1).
    NotUtf8 { line: usize },
    /// Reading stdin or writing stdout failed.
    Io(std::io::Error),
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::BadRecord { line, source } => write!(f, "line {line}: not a record: {source}"),
            Error::NotUtf8 { line } => write!(f, "line {line}: not a record: not UTF-8"),
            Error::Io(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for Error {}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        Error::Io(e)
    }
}

/// Bytes read from stdin at a time: one host call per chunk instead of one per 8 KiB.
const INPUT_BUFFER: usize = 1 << 20;
/// Bytes of output buffered before a write to stdout.
const OUTPUT_BUFFER: usize = 64 << 10;

/// Runs `select` on every record of stdin and prints what it returns; the whole plugin in one
/// call. Returns the exit code for `main`: 0, or 2 after printing the error to stderr.
pub fn run<F: FnMut(Record) -> Option<String>>(select: F) -> ExitCode {
    finish(filter(stdin(), std::io::stdout().lock(), select))
}

/// [`run`] with each record borrowed from its input line ([`RecordRef`]): the fast path for
/// plugins that look at a few fields of every record of a big listing.
pub fn run_ref<F: FnMut(RecordRef<'_>) -> Option<String>>(select: F) -> ExitCode {
    finish(filter_ref(stdin(), std::io::stdout().lock(), select))
}

/// [`run`] over raw input lines: `select` gets each non-blank line (without its newline) and
/// parses what it needs itself, typically into its own struct of borrowed fields with
/// [`serde_json::from_str`], e.g. only `Repository` and `Tag`. Unread keys are skipped
/// without checking their text, so this is the fastest loop on big listings (see
/// `filters/plugins/default`). A parse error stops the run, naming the line.
pub fn run_lines<F>(select: F) -> ExitCode
where
    F: FnMut(&str) -> Result<Option<String>, serde_json::Error>,
{
    finish(filter_lines(stdin(), std::io::stdout().lock(), select))
}

/// [`run`] with each record as raw JSON (every key, any value type).
pub fn run_json<F: FnMut(serde_json::Value) -> Option<String>>(select: F) -> ExitCode {
    finish(filter(stdin(), std::io::stdout().lock(), select))
}

/// Reads all records first, then prints the references `select` returns: for plugins that
/// look at the whole listing (e.g. keep the newest tag per repository).
pub fn run_all<F: FnOnce(Vec<Record>) -> Vec<String>>(select: F) -> ExitCode {
    let result = read_all(stdin()).and_then(|records| {
        let mut out = BufWriter::with_capacity(OUTPUT_BUFFER, std::io::stdout().lock());
        for r in select(records) {
            writeln!(out, "{r}")?;
        }
        out.flush().map_err(Error::from)
    });
    finish(result)
}

/// stdin with a big buffer (std's own is 8 KiB; reads this large bypass it).
fn stdin() -> BufReader<std::io::StdinLock<'static>> {
    BufReader::with_capacity(INPUT_BUFFER, std::io::stdin().lock())
}

/// The loop behind [`run`], over any reader and writer (for tests).
pub fn filter<T, R, W, F>(input: R, output: W, mut select: F) -> Result<(), Error>
where
    T: serde::de::DeserializeOwned,
    R: BufRead,
    W: Write,
    F: FnMut(T) -> Option<String>,
{
    let mut out = BufWriter::with_capacity(OUTPUT_BUFFER, output);
    for_each_line(input, |n, line| {
        let record =
            serde_json::from_str(line).map_err(|source| Error::BadRecord { line: n, source })?;
        write_selected(&mut out, select(record))
    })?;
    out.flush()?;
    Ok(())
}

/// The loop behind [`run_ref`], over any reader and writer (for tests).
pub fn filter_ref<R, W, F>(input: R, output: W, mut select: F) -> Result<(), Error>
where
    R: BufRead,
    W: Write,
    F: FnMut(RecordRef<'_>) -> Option<String>,
{
    let mut out = BufWriter::with_capacity(OUTPUT_BUFFER, output);
    for_each_line(input, |n, line| {
        let record: RecordRef<'_> =
            serde_json::from_str(line).map_err(|source| Error::BadRecord { line: n, source })?;
        write_selected(&mut out, select(record))
    })?;
    out.flush()?;
    Ok(())
}

/// The loop behind [`run_lines`], over any reader and writer (for tests).
pub fn filter_lines<R, W, F>(input: R, output: W, mut select: F) -> Result<(), Error>
where
    R: BufRead,
    W: Write,
    F: FnMut(&str) -> Result<Option<String>, serde_json::Error>,
{
    let mut out = BufWriter::with_capacity(OUTPUT_BUFFER, output);
    for_each_line(input, |n, line| {
        let selected = select(line).map_err(|source| Error::BadRecord { line: n, source })?;
        write_selected(&mut out, selected)
    })?;
    out.flush()?;
    Ok(())
}

fn write_selected<W: Write>(out: &mut W, selected: Option<String>) -> Result<(), Error> {
    if let Some(r) = selected {
        out.write_all(r.as_bytes())?;
        out.write_all(b"\n")?;
    }
    Ok(())
}

/// Reads every record of `input`.
pub fn read_all<T: serde::de::DeserializeOwned, R: BufRead>(input: R) -> Result<Vec<T>, Error> {
    let mut all = Vec::new();
    for_each_line(input, |n, line| {
        all.push(
            serde_json::from_str(line).map_err(|source| Error::BadRecord { line: n, source })?,
        );
        Ok(())
    })?;
    Ok(all)
}

/// Calls `each(line_number, line)` for every non-blank line of `input` (without its `\n`).
/// Lines are handed out straight from the reader's buffer; only a line cut by the buffer's end
/// is copied. Each line's UTF-8 is checked once here, so serde_json (`from_str`) need not check
/// every string it reads again.
fn for_each_line<R, F>(mut input: R, mut each: F) -> Result<(), Error>
where
    R: BufRead,
    F: FnMut(usize, &str) -> Result<(), Error>,
{
    let mut partial = Vec::new();
    let mut n = 0;
    let mut line = |n: &mut usize, line: &[u8]| {
        *n += 1;
        if line.iter().all(u8::is_ascii_whitespace) {
            return Ok(());
        }
        let text = std::str::from_utf8(line).map_err(|_| Error::NotUtf8 { line: *n })?;
        each(*n, text)
    };
    loop {
        let buf = match input.fill_buf() {
            Ok(buf) => buf,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e.into()),
        };
        if buf.is_empty() {
            if !partial.is_empty() {
                line(&mut n, &partial)?;
            }
            return Ok(());
        }
        let len = buf.len();
        let mut rest = buf;
        if !partial.is_empty() {
            let Some(end) = find_newline(rest) else {
                partial.extend_from_slice(rest);
                input.consume(len);
                continue;
            };
            partial.extend_from_slice(&rest[..end]);
            line(&mut n, &partial)?;
            partial.clear();
            rest = &rest[end + 1..];
        }
        while let Some(end) = find_newline(rest) {
            line(&mut n, &rest[..end])?;
            rest = &rest[end + 1..];
        }
        partial.extend_from_slice(rest);
        input.consume(len);
    }
}

/// The index of the first `\n` in `bytes`, eight bytes at a time (wasm32 has no SIMD here, and
/// a byte loop costs a fuel check per byte).
fn find_newline(bytes: &[u8]) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    const NEWLINES: u64 = ONES * b'\n' as u64;
    let mut start = 0;
    for chunk in bytes.chunks_exact(8) {
        let word = u64::from_le_bytes(chunk.try_into().expect("8 bytes")) ^ NEWLINES;
        // A zero byte in `word` (a newline in `chunk`) sets its high bit here.
        if word.wrapping_sub(ONES) & !word & HIGHS != 0 {
            break;
        }
        start += 8;
    }
    bytes[start..]
        .iter()
        .position(|&b| b == b'\n')
        .map(|i| start + i)
}

fn finish(result: Result<(), Error>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        // A closed stdout (`| head`) is not an error.
        Err(Error::Io(e)) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => {
            let name = std::env::args().next().unwrap_or_else(|| "plugin".into());
            eprintln!("{name}: {e}");
            ExitCode::from(2)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(input: &str) -> String {
        let mut out = Vec::new();
        filter(input.as_bytes(), &mut out, |r: Record| r.reference()).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn default_semantics() {
        let input = concat!(
            r#"{"Repository":"alpine","Tag":"3.20"}"#,
            "\n",
            r#"{"Repository":"<none>","Tag":"<none>"}"#,
            "\n",
            "\n",
            r#"{"Repository":"busybox","Tag":"<none>","Extra":1}"#,
            "\n",
        );
        assert_eq!(lines(input), "alpine:3.20\nbusybox\n");
    }

    #[test]
    fn borrowed_records_agree_with_owned_ones_across_buffer_edges() {
        let input = concat!(
            r#"{"Repository":"alpine","Tag":"3.20","Size":"7.8MB"}"#,
            "\n",
            r#"{"Repository":"<none>","Tag":"<none>"}"#,
            "\r\n  \n",
            r#"{"Repository":"b\u0075sybox","Tag":"<none>","Extra":[1,{"x":"y"}]}"#,
            "\n",
            r#"{"Repository":"ghcr.io/o/a","Tag":"v1"}"#,
        );
        for cap in [1, 2, 7, 64, 1 << 20] {
            let mut owned = Vec::new();
            filter(
                std::io::BufReader::with_capacity(cap, input.as_bytes()),
                &mut owned,
                |r: Record| r.reference(),
            )
            .unwrap();
            let mut borrowed = Vec::new();
            filter_ref(
                std::io::BufReader::with_capacity(cap, input.as_bytes()),
                &mut borrowed,
                |r| r.reference(),
            )
            .unwrap();
            assert_eq!(
                String::from_utf8(owned).unwrap(),
                "alpine:3.20\nbusybox\nghcr.io/o/a:v1\n",
                "buffer {cap}"
            );
            assert_eq!(
                String::from_utf8(borrowed).unwrap(),
                "alpine:3.20\nbusybox\nghcr.io/o/a:v1\n",
                "buffer {cap}"
            );
        }
    }

    #[test]
    fn raw_lines_with_own_fields() {
        #[derive(Deserialize)]
        #[serde(rename_all = "PascalCase")]
        struct Keys<'a> {
            #[serde(borrow, default)]
            repository: Cow<'a, str>,
            #[serde(borrow, default)]
            tag: Cow<'a, str>,
        }
        let input = "{\"Repository\":\"a\",\"Tag\":\"1\",\"X\":[\"\\u00e9\"]}\n\n{\"Repository\":\"<none>\"}\nnope\n";
        let mut out = Vec::new();
        let err = filter_lines(input.as_bytes(), &mut out, |line| {
            let k: Keys<'_> = serde_json::from_str(line)?;
            Ok(reference(&k.repository, &k.tag))
        })
        .unwrap_err();
        assert!(err.to_string().starts_with("line 4: not a record"), "{err}");
        assert_eq!(out, b"a:1\n");
    }

    #[test]
    fn newlines_are_found_at_every_offset() {
        for len in 0..40 {
            for at in 0..=len {
                let mut bytes = vec![b'x'; len];
                let want = (at < len).then(|| {
                    bytes[at] = b'\n';
                    at
                });
                if at + 3 < len {
                    bytes[at + 3] = b'\n';
                }
                assert_eq!(find_newline(&bytes), want, "len {len} at {at}");
            }
        }
        assert_eq!(find_newline("é\u{8a}\n".as_bytes()), Some(4));
    }

    #[test]
    fn record_ref_into_owned() {
        let line = r#"{"ID":"abc","Repository":"x","Tag":"y","VirtualSize":"1MB"}"#;
        let r: RecordRef<'_> = serde_json::from_str(line).unwrap();
        let owned: Record = serde_json::from_str(line).unwrap();
        assert_eq!(r.into_owned(), owned);
    }

    #[test]
    fn bad_utf8_names_its_line() {
        let err = filter(&b"{}\n{\"Tag\":\"\xff\"}\n"[..], Vec::new(), |r: Record| {
            r.reference()
        })
        .unwrap_err();
        assert_eq!(err.to_string(), "line 2: not a record: not UTF-8");
    }

    #[test]
    fn bad_record_names_its_line() {
        let err = filter("{}\nnot json\n".as_bytes(), Vec::new(), |r: Record| {
            r.reference()
        })
        .unwrap_err();
        assert!(err.to_string().starts_with("line 2: not a record"), "{err}");
    }

    #[test]
    fn created_at_parses() {
        assert_eq!(created_unix("1970-01-01 00:00:00 +0000 UTC"), Some(0));
        assert_eq!(
            created_unix("2026-11-28 06:34:53 +0000 UTC"),
            Some(1_795_847_693)
        );
        assert_eq!(
            created_unix("2026-11-28 07:34:53 +0100 CET"),
            Some(1_795_847_693)
        );
        assert_eq!(created_unix("yesterday"), None);
    }
}
