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
//! This crate depends only on serde and serde_json, so it builds for any target.

use std::collections::BTreeMap;
use std::io::{BufRead, BufWriter, Write};
use std::process::ExitCode;

use serde::{Deserialize, Serialize};

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
        if self.repository == NONE {
            None
        } else if self.tag == NONE {
            Some(self.repository.clone())
        } else {
            Some(format!("{}:{}", self.repository, self.tag))
        }
    }

    /// The time in `CreatedAt` ("2026-11-28 06:34:53 +0000 UTC") as seconds since the Unix
    /// epoch, or `None` when it has another shape.
    pub fn created_unix(&self) -> Option<i64> {
        created_unix(&self.created_at)
    }
}

/// Parses docker's `CreatedAt` format to seconds since the Unix epoch.
pub fn created_unix(s: &str) -> Option<i64> {
    let mut parts = s.split(' ');
    let (date, time, offset) = (parts.next()?, parts.next()?, parts.next()?);
    let num = |s: &str| s.parse::<i64>().ok();
    let mut d = date.split('-').map(num);
    let (y, m, day) = (d.next()??, d.next()??, d.next()??);
    let mut t = time.split(':').map(num);
    let (hh, mm, ss) = (t.next()??, t.next()??, t.next()??);
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
    Some(days_from_civil(y, m, day) * 86_400 + hh * 3600 + mm * 60 + ss - off_sec)
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
    /// Reading stdin or writing stdout failed.
    Io(std::io::Error),
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::BadRecord { line, source } => write!(f, "line {line}: not a record: {source}"),
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

/// Runs `select` on every record of stdin and prints what it returns; the whole plugin in one
/// call. Returns the exit code for `main`: 0, or 2 after printing the error to stderr.
pub fn run<F: FnMut(Record) -> Option<String>>(select: F) -> ExitCode {
    finish(filter(
        std::io::stdin().lock(),
        std::io::stdout().lock(),
        select,
    ))
}

/// [`run`] with each record as raw JSON (every key, any value type).
pub fn run_json<F: FnMut(serde_json::Value) -> Option<String>>(select: F) -> ExitCode {
    finish(filter(
        std::io::stdin().lock(),
        std::io::stdout().lock(),
        select,
    ))
}

/// Reads all records first, then prints the references `select` returns: for plugins that
/// look at the whole listing (e.g. keep the newest tag per repository).
pub fn run_all<F: FnOnce(Vec<Record>) -> Vec<String>>(select: F) -> ExitCode {
    let result = read_all(std::io::stdin().lock()).and_then(|records| {
        let mut out = BufWriter::new(std::io::stdout().lock());
        for r in select(records) {
            writeln!(out, "{r}")?;
        }
        out.flush().map_err(Error::from)
    });
    finish(result)
}

/// The loop behind [`run`], over any reader and writer (for tests).
pub fn filter<T, R, W, F>(input: R, output: W, mut select: F) -> Result<(), Error>
where
    T: serde::de::DeserializeOwned,
    R: BufRead,
    W: Write,
    F: FnMut(T) -> Option<String>,
{
    let mut out = BufWriter::with_capacity(64 << 10, output);
    for_each_record(input, |record| {
        if let Some(r) = select(record) {
            out.write_all(r.as_bytes())?;
            out.write_all(b"\n")?;
        }
        Ok(())
    })?;
    out.flush()?;
    Ok(())
}

/// Reads every record of `input`.
pub fn read_all<T: serde::de::DeserializeOwned, R: BufRead>(input: R) -> Result<Vec<T>, Error> {
    let mut all = Vec::new();
    for_each_record(input, |r| {
        all.push(r);
        Ok(())
    })?;
    Ok(all)
}

fn for_each_record<T, R, F>(mut input: R, mut each: F) -> Result<(), Error>
where
    T: serde::de::DeserializeOwned,
    R: BufRead,
    F: FnMut(T) -> Result<(), Error>,
{
    let mut line = Vec::with_capacity(1024);
    let mut n = 0;
    loop {
        line.clear();
        if input.read_until(b'\n', &mut line)? == 0 {
            return Ok(());
        }
        n += 1;
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let record =
            serde_json::from_slice(&line).map_err(|source| Error::BadRecord { line: n, source })?;
        each(record)?;
    }
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
