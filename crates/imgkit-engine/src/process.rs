//! Running an engine command to completion: stdout collected, stderr drained on its own thread
//! (reading one pipe then the other deadlocks once a pipe fills). Both are bounded: stdout to
//! [`MAX_OUTPUT`] bytes in lines of at most [`MAX_LINE`] bytes of UTF-8 text (else the command
//! is stopped and the run fails), stderr to its last [`STDERR_KEEP`] bytes.

use std::io::Read;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread;

use crate::Error;

/// The most an engine command may print on stdout (a whole listing: ~250 bytes per image, so
/// this is over 100 000 images).
pub const MAX_OUTPUT: usize = 32 * 1024 * 1024;
/// The longest line an engine command may print on stdout (one listing record).
pub const MAX_LINE: usize = 1024 * 1024;
/// How much of an engine command's stderr is kept (its tail) for error messages.
pub const STDERR_KEEP: usize = 64 * 1024;

/// What a finished command printed.
pub(crate) struct Finished {
    pub(crate) status: ExitStatus,
    pub(crate) stdout: Vec<u8>,
    pub(crate) stderr: String,
}

/// Why a command's output was refused (the command was stopped).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refused {
    /// More than [`MAX_OUTPUT`] bytes in all.
    TooMuch,
    /// A line (1-based) longer than [`MAX_LINE`] bytes.
    LineTooLong(usize),
    /// A line (1-based) that is not UTF-8.
    NotUtf8(usize),
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refused::TooMuch => write!(f, "it printed more than {} MiB", MAX_OUTPUT >> 20),
            Refused::LineTooLong(n) => {
                write!(f, "line {n} is longer than {} MiB", MAX_LINE >> 20)
            }
            Refused::NotUtf8(n) => write!(f, "line {n} is not UTF-8 text"),
        }
    }
}

/// How a run ended.
pub(crate) enum Outcome {
    Finished(Finished),
    /// The output broke a bound; the command was killed; `stderr` is what it said until then.
    Refused(Refused),
}

/// Runs `cmd` with no stdin and both outputs captured, within the bounds above.
pub(crate) fn run(cmd: Command) -> Result<Outcome, Error> {
    run_bounded(cmd, MAX_OUTPUT, MAX_LINE)
}

fn run_bounded(mut cmd: Command, max_output: usize, max_line: usize) -> Result<Outcome, Error> {
    let program = std::path::PathBuf::from(cmd.get_program());
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| Error::Spawn {
            program: program.clone(),
            source,
        })?;
    let stderr_pipe = child.stderr.take().expect("stderr is piped");
    let stderr_thread = thread::spawn(move || tail(stderr_pipe, STDERR_KEEP));
    let mut stdout_pipe = child.stdout.take().expect("stdout is piped");
    let read = read_lines(&mut stdout_pipe, max_output, max_line);
    let (stdout, refused) = match read {
        Ok(Ok(out)) => (out, None),
        Ok(Err(r)) => (Vec::new(), Some(r)),
        Err(source) => {
            stop(&mut child);
            return Err(Error::Read { program, source });
        }
    };
    if let Some(r) = refused {
        // Stop it; its stderr thread ends with it (or stays with a grandchild holding the pipe:
        // not waited for).
        drop(stdout_pipe);
        stop(&mut child);
        return Ok(Outcome::Refused(r));
    }
    let status = child.wait();
    let stderr = stderr_thread.join().unwrap_or_default();
    let status = status.map_err(|source| Error::Read { program, source })?;
    Ok(Outcome::Finished(Finished {
        status,
        stdout,
        stderr: String::from_utf8_lossy(&stderr).into_owned(),
    }))
}

fn stop(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// Reads `r` to the end: all of it when within the bounds, else why not (stopping at once).
///
/// Memory stays flat whatever the command prints: the current line is kept on its own (at most
/// `max_line` bytes and one read), and finished lines go into fixed blocks that are never
/// reallocated, so a flood up to `max_output` costs `max_output` bytes and no copies of it.
/// Only output that is accepted is joined into one buffer, of exactly its length.
fn read_lines(
    r: &mut impl Read,
    max_output: usize,
    max_line: usize,
) -> std::io::Result<Result<Vec<u8>, Refused>> {
    let mut blocks = Blocks::default();
    let mut line: Vec<u8> = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut total = 0usize;
    let mut line_no = 1;
    loop {
        let n = match r.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if total + n > max_output {
            return Ok(Err(Refused::TooMuch));
        }
        total += n;
        let mut rest = &buf[..n];
        while let Some(nl) = rest.iter().position(|&b| b == b'\n') {
            line.extend_from_slice(&rest[..nl]);
            if line.len() > max_line {
                return Ok(Err(Refused::LineTooLong(line_no)));
            }
            if std::str::from_utf8(&line).is_err() {
                return Ok(Err(Refused::NotUtf8(line_no)));
            }
            blocks.push(&line);
            blocks.push(b"\n");
            line.clear();
            line_no += 1;
            rest = &rest[nl + 1..];
        }
        line.extend_from_slice(rest);
        if line.len() > max_line {
            return Ok(Err(Refused::LineTooLong(line_no)));
        }
    }
    if std::str::from_utf8(&line).is_err() {
        return Ok(Err(Refused::NotUtf8(line_no)));
    }
    blocks.push(&line);
    Ok(Ok(blocks.join(total)))
}

/// Bytes kept in blocks of [`Blocks::SIZE`] that are filled, never grown.
#[derive(Default)]
struct Blocks {
    full: Vec<Vec<u8>>,
    current: Vec<u8>,
}

impl Blocks {
    const SIZE: usize = 1024 * 1024;

    fn push(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            if self.current.len() == self.current.capacity() {
                let full = std::mem::replace(&mut self.current, Vec::with_capacity(Self::SIZE));
                if !full.is_empty() {
                    self.full.push(full);
                }
            }
            let take = (self.current.capacity() - self.current.len()).min(data.len());
            self.current.extend_from_slice(&data[..take]);
            data = &data[take..];
        }
    }

    /// One buffer of exactly `len` bytes (all that was pushed).
    fn join(self, len: usize) -> Vec<u8> {
        if self.full.is_empty() {
            let mut only = self.current;
            only.shrink_to_fit();
            return only;
        }
        let mut out = Vec::with_capacity(len);
        for block in self.full {
            out.extend_from_slice(&block);
        }
        out.extend_from_slice(&self.current);
        out
    }
}

/// Reads `r` to the end, keeping its last `keep` bytes.
fn tail(mut r: impl Read, keep: usize) -> Vec<u8> {
    let mut tail: Vec<u8> = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match r.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                tail.extend_from_slice(&buf[..n]);
                if tail.len() > keep * 2 {
                    tail.drain(..tail.len() - keep);
                }
            }
        }
    }
    if tail.len() > keep {
        tail.drain(..tail.len() - keep);
    }
    tail
}

/// `argv` as one line a person can paste back into a shell: POSIX quoting on Unix, PowerShell
/// quoting on Windows (display only: imgkit itself never runs a shell).
pub fn display_argv(cmd: &Command) -> String {
    let argv = std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|a| a.to_string_lossy().into_owned());
    if cfg!(windows) {
        powershell_line(argv)
    } else {
        posix_line(argv)
    }
}

/// Words joined for a POSIX shell: anything beyond a safe set in single quotes.
pub fn posix_line(argv: impl IntoIterator<Item = String>) -> String {
    argv.into_iter()
        .map(|a| posix_quote(&a))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Words joined for PowerShell: `& 'program' 'arg' …` when the program needs quoting.
pub fn powershell_line(argv: impl IntoIterator<Item = String>) -> String {
    let mut words: Vec<String> = argv.into_iter().map(|a| powershell_quote(&a)).collect();
    if words.first().is_some_and(|p| p.starts_with('\'')) {
        words.insert(0, "&".to_owned());
    }
    words.join(" ")
}

fn posix_quote(a: &str) -> String {
    let plain = !a.is_empty()
        && a.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:@=,+%".contains(c));
    if plain {
        a.to_owned()
    } else {
        format!("'{}'", a.replace('\'', r"'\''"))
    }
}

fn powershell_quote(a: &str) -> String {
    let plain = !a.is_empty()
        && !a.starts_with(['-', '@'])
        && a.chars()
            .all(|c| c.is_ascii_alphanumeric() || "_./:\\".contains(c));
    if plain {
        a.to_owned()
    } else {
        // Inside single quotes only a single quote is special (also its typographic forms).
        let mut q = String::from("'");
        for c in a.chars() {
            if matches!(c, '\'' | '\u{2018}' | '\u{2019}' | '\u{201a}' | '\u{201b}') {
                q.push(c);
            }
            q.push(c);
        }
        q.push('\'');
        q
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(data: &[u8], max_output: usize, max_line: usize) -> Result<Vec<u8>, Refused> {
        read_lines(&mut &data[..], max_output, max_line).unwrap()
    }

    #[test]
    fn bounds_lines_output_and_text() {
        assert_eq!(lines(b"a\nbb\n", 100, 2).unwrap(), b"a\nbb\n");
        assert_eq!(lines(b"a\nbbb\n", 100, 2), Err(Refused::LineTooLong(2)));
        assert_eq!(lines(b"a\nbbb", 100, 2), Err(Refused::LineTooLong(2)));
        assert_eq!(lines(b"a\nb\n\xff\n", 100, 10), Err(Refused::NotUtf8(3)));
        assert_eq!(lines(b"a\n\xc3", 100, 10), Err(Refused::NotUtf8(2)));
        assert_eq!(lines(&[b'x'; 50], 40, 100), Err(Refused::TooMuch));
        assert_eq!(lines("é\n".as_bytes(), 100, 10).unwrap(), "é\n".as_bytes());
    }

    #[test]
    fn output_longer_than_a_block_comes_back_whole() {
        // 3.5 blocks of lines of varying length, read in pieces that split lines.
        let data: Vec<u8> = (0..200_000u32)
            .flat_map(|i| format!("{{\"n\":{i}}}{}\n", "x".repeat((i % 7) as usize)).into_bytes())
            .take(Blocks::SIZE * 7 / 2)
            .collect();
        let mut reader = std::io::BufReader::with_capacity(1000, &data[..]);
        let got = read_lines(&mut reader, data.len(), 100).unwrap().unwrap();
        assert_eq!(got.len(), data.len());
        assert!(got == data);
        assert_eq!(got.capacity(), data.len());
        assert_eq!(
            read_lines(&mut &data[..], data.len() - 1, 100).unwrap(),
            Err(Refused::TooMuch)
        );
    }

    #[test]
    fn keeps_the_tail_of_stderr() {
        let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        assert_eq!(tail(&data[..], 1000), &data[data.len() - 1000..]);
    }

    #[test]
    fn quotes_for_posix_shells() {
        let line = posix_line(
            [
                "docker", "save", "--", "a;b", "x&y", "p|q", "<in>", "*?", "it's", "", "ok:1",
            ]
            .map(String::from),
        );
        assert_eq!(
            line,
            r"docker save -- 'a;b' 'x&y' 'p|q' '<in>' '*?' 'it'\''s' '' ok:1"
        );
    }

    #[test]
    fn quotes_for_powershell() {
        let line = powershell_line(
            [
                r"C:\Program Files\Docker\docker.exe",
                "save",
                "--",
                "a;b",
                "it's",
                "$x",
                "`e",
                "ok:1",
            ]
            .map(String::from),
        );
        assert_eq!(
            line,
            r"& 'C:\Program Files\Docker\docker.exe' save '--' 'a;b' 'it''s' '$x' '`e' ok:1"
        );
    }

    /// The POSIX line, split by an independent POSIX-shell word splitter (shlex), gives back
    /// the same words: no shell is started, in tests either.
    #[test]
    fn a_posix_shell_reads_the_words_back() {
        let words: Vec<String> = [
            "printf",
            "%s\\n",
            "a;b",
            "x&y",
            "p|q",
            "<in>",
            "*?",
            "it's",
            "",
            "$HOME",
            "`id`",
            "a\nb",
            "{{json .}}",
            "back\\slash",
            "\"dq\"",
        ]
        .map(String::from)
        .to_vec();
        let line = posix_line(words.clone());
        assert_eq!(shlex::split(&line), Some(words), "{line}");
    }
}
