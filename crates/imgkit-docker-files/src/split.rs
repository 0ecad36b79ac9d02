//! tar-split: how dockerd keeps a layer's tar stream without keeping the tar. When a layer is
//! registered, every tar header and padding byte is recorded as a *segment* (its raw bytes) and
//! every file's content as a *file* entry (its name, size and CRC-64); the files themselves
//! are extracted into the layer's directory. `docker save` rebuilds the exact tar from the two,
//! which is why the layer's diff ID (the sha256 of the tar) stays true. This module does the
//! same rebuild, streaming: [`Assembled`] reads as the layer's tar.
//!
//! The record is gzip'd JSON, one entry per line (vbatts/tar-split `storage.Entry`):
//! `{"type":2,"payload":"<base64>","position":0}` for a segment,
//! `{"type":1,"name":"etc/hosts","size":12,"payload":"<crc64 base64>","position":1}` for a file
//! (`name_raw` in base64 when the name is not UTF-8). A file entry of size 0 has no content
//! to read (directories, links, whiteouts): only its segments carry it.

use std::collections::HashSet;
use std::ffi::OsString;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::{Component, Path, PathBuf};

use base64::Engine as _;
use serde::Deserialize;

/// One line of the record.
#[derive(Debug, Deserialize)]
struct Entry {
    #[serde(rename = "type")]
    kind: u8,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    name_raw: Option<String>,
    #[serde(default)]
    size: i64,
    #[serde(default)]
    payload: Option<String>,
}

const FILE: u8 = 1;
const SEGMENT: u8 = 2;

/// What a line of the record asks for.
enum Step {
    Bytes(Vec<u8>),
    File { name: OsString, size: u64 },
}

fn bad(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

fn b64(text: &str) -> io::Result<Vec<u8>> {
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .map_err(|e| bad(format!("a payload is not base64: {e}")))
}

/// A file entry's name as a path piece (bytes as recorded where the name is not UTF-8).
fn name_of(e: &Entry) -> io::Result<OsString> {
    match (&e.name_raw, &e.name) {
        (Some(raw), _) if !raw.is_empty() => os_name(b64(raw)?),
        (_, Some(n)) => Ok(OsString::from(n)),
        _ => Err(bad("a file entry has no name")),
    }
}

#[cfg(unix)]
#[allow(clippy::unnecessary_wraps)]
fn os_name(bytes: Vec<u8>) -> io::Result<OsString> {
    use std::os::unix::ffi::OsStringExt;
    Ok(OsString::from_vec(bytes))
}

#[cfg(not(unix))]
fn os_name(bytes: Vec<u8>) -> io::Result<OsString> {
    String::from_utf8(bytes)
        .map(OsString::from)
        .map_err(|_| bad("a file name is not UTF-8"))
}

/// The record's lines, one step at a time.
struct Steps {
    lines: BufReader<Box<dyn Read + Send>>,
    line: String,
}

impl Steps {
    fn open(record: &Path) -> io::Result<Self> {
        let file = File::open(record)?;
        let gz: Box<dyn Read + Send> = Box::new(flate2::read::GzDecoder::new(file));
        Ok(Self {
            lines: BufReader::with_capacity(256 * 1024, gz),
            line: String::new(),
        })
    }

    fn next(&mut self) -> io::Result<Option<Step>> {
        loop {
            self.line.clear();
            if self.lines.read_line(&mut self.line)? == 0 {
                return Ok(None);
            }
            let text = self.line.trim();
            if text.is_empty() {
                continue;
            }
            let e: Entry = serde_json::from_str(text)
                .map_err(|err| bad(format!("a line of the record is not an entry: {err}")))?;
            return match e.kind {
                SEGMENT => Ok(Some(Step::Bytes(match &e.payload {
                    Some(p) => b64(p)?,
                    None => Vec::new(),
                }))),
                FILE => {
                    let size = u64::try_from(e.size)
                        .map_err(|_| bad(format!("a file entry has size {}", e.size)))?;
                    Ok(Some(Step::File {
                        name: name_of(&e)?,
                        size,
                    }))
                }
                k => Err(bad(format!("an entry has unknown type {k}"))),
            };
        }
    }
}

/// The length of the tar `record` rebuilds (segments and file contents), read from the
/// record alone.
pub(crate) fn tar_size(record: &Path) -> io::Result<u64> {
    let mut steps = Steps::open(record)?;
    let mut total = 0u64;
    while let Some(step) = steps.next()? {
        total += match step {
            Step::Bytes(b) => b.len() as u64,
            Step::File { size, .. } => size,
        };
    }
    Ok(total)
}

/// Opens (and closes) every file the record names under `dir`, as a rebuild would, without
/// reading them: a file missing, of another size or not readable here fails now rather than
/// in the middle of a stream.
pub(crate) fn check_files(record: &Path, dir: &Path) -> io::Result<()> {
    let mut steps = Steps::open(record)?;
    let mut files = Files::new(dir);
    while let Some(step) = steps.next()? {
        if let Step::File { name, size } = step
            && size > 0
        {
            files.open(&name, size)?;
        }
    }
    Ok(())
}

/// The layer's tar, rebuilt from its record and the files under `dir` as it is read.
pub struct Assembled {
    steps: Steps,
    files: Files,
    /// The bytes of the segment being read, and how far.
    segment: Vec<u8>,
    at: usize,
    /// The file being read, and how much of it is left.
    file: Option<(io::Take<File>, PathBuf)>,
    done: bool,
}

impl Assembled {
    pub(crate) fn open(record: &Path, dir: &Path) -> io::Result<Self> {
        Ok(Self {
            steps: Steps::open(record)?,
            files: Files::new(dir),
            segment: Vec::new(),
            at: 0,
            file: None,
            done: false,
        })
    }
}

impl Read for Assembled {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            if self.at < self.segment.len() {
                let n = buf.len().min(self.segment.len() - self.at);
                buf[..n].copy_from_slice(&self.segment[self.at..self.at + n]);
                self.at += n;
                return Ok(n);
            }
            if let Some((f, path)) = &mut self.file {
                if f.limit() > 0 {
                    let n = f.read(buf)?;
                    if n == 0 {
                        return Err(bad(format!(
                            "{} ended {} bytes before the size docker recorded for it",
                            path.display(),
                            f.limit()
                        )));
                    }
                    return Ok(n);
                }
                self.file = None;
            }
            if self.done {
                return Ok(0);
            }
            match self.steps.next()? {
                None => self.done = true,
                Some(Step::Bytes(b)) => {
                    self.segment = b;
                    self.at = 0;
                }
                Some(Step::File { size: 0, .. }) => {}
                Some(Step::File { name, size }) => {
                    let (file, path) = self.files.open(&name, size)?;
                    self.file = Some((file.take(size), path));
                }
            }
        }
    }
}

/// The files of one layer directory, opened only beneath it: a name with `..` is refused, and
/// so is any symlink on the way (a layer's own symlink must never lead out of its directory).
struct Files {
    dir: PathBuf,
    /// Directories under `dir` already seen to be real directories.
    checked: HashSet<PathBuf>,
}

impl Files {
    fn new(dir: &Path) -> Self {
        Self {
            dir: dir.to_owned(),
            checked: HashSet::new(),
        }
    }

    fn open(&mut self, name: &std::ffi::OsStr, size: u64) -> io::Result<(File, PathBuf)> {
        let mut path = self.dir.clone();
        let mut parts = Vec::new();
        for c in Path::new(name).components() {
            match c {
                Component::Normal(p) => parts.push(p),
                Component::CurDir | Component::RootDir => {}
                Component::ParentDir | Component::Prefix(_) => {
                    return Err(bad(format!(
                        "the record names {} outside the layer",
                        Path::new(name).display()
                    )));
                }
            }
        }
        let Some((last, dirs)) = parts.split_last() else {
            return Err(bad("a file entry names no file"));
        };
        for d in dirs {
            path.push(d);
            if self.checked.contains(&path) {
                continue;
            }
            let meta = std::fs::symlink_metadata(&path)?;
            if !meta.is_dir() {
                return Err(bad(format!(
                    "{} is not a directory (a symlink is never followed out of a layer)",
                    path.display()
                )));
            }
            self.checked.insert(path.clone());
        }
        path.push(last);
        let meta = std::fs::symlink_metadata(&path).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("{}: {e} (the layer's files changed)", path.display()),
            )
        })?;
        if !meta.is_file() {
            return Err(bad(format!("{} is not a regular file", path.display())));
        }
        let file = File::open(&path)?;
        let len = file.metadata()?.len();
        if len != size {
            return Err(bad(format!(
                "{} is {len} bytes, and docker recorded {size} (the layer's files changed)",
                path.display()
            )));
        }
        Ok((file, path))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::io::Write;

    /// A tar of `files` (name, content) and a directory `d/`, as bytes.
    pub(crate) fn tar_of(files: &[(&str, &[u8])]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Directory);
        h.set_mode(0o755);
        h.set_size(0);
        b.append_data(&mut h, "d/", std::io::empty()).unwrap();
        for (name, content) in files {
            let mut h = tar::Header::new_gnu();
            h.set_mode(0o644);
            h.set_size(content.len() as u64);
            b.append_data(&mut h, name, *content).unwrap();
        }
        b.into_inner().unwrap()
    }

    /// What dockerd records when it registers `tar`: segments for every byte that is not a
    /// file's content, a file entry for every member (size 0 for directories), gzip'd JSON
    /// lines; and the files extracted under `dir`.
    pub(crate) fn split_into(tar_bytes: &[u8], record: &Path, dir: &Path) {
        let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
        let mut lines = Vec::new();
        let mut at = 0usize;
        let mut archive = tar::Archive::new(tar_bytes);
        for entry in archive.entries().unwrap() {
            let mut entry = entry.unwrap();
            let start = entry.raw_file_position() as usize;
            let size = entry.size() as usize;
            lines.push(serde_json::json!({"type": 2, "payload": b64(&tar_bytes[at..start])}));
            let name = entry.path().unwrap().to_string_lossy().into_owned();
            lines.push(serde_json::json!({"type": 1, "name": name, "size": size, "payload": null}));
            if entry.header().entry_type().is_file() {
                let path = dir.join(&name);
                std::fs::create_dir_all(path.parent().unwrap()).unwrap();
                let mut content = Vec::new();
                entry.read_to_end(&mut content).unwrap();
                std::fs::write(path, content).unwrap();
            } else {
                std::fs::create_dir_all(dir.join(&name)).unwrap();
            }
            at = start + size;
        }
        lines.push(serde_json::json!({"type": 2, "payload": b64(&tar_bytes[at..])}));
        let mut gz = flate2::write::GzEncoder::new(
            std::fs::File::create(record).unwrap(),
            flate2::Compression::fast(),
        );
        for l in lines {
            writeln!(gz, "{l}").unwrap();
        }
        gz.finish().unwrap();
    }

    fn read_all(record: &Path, dir: &Path) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        Assembled::open(record, dir)?.read_to_end(&mut out)?;
        Ok(out)
    }

    #[test]
    fn a_layer_is_rebuilt_byte_for_byte_and_its_size_read_from_the_record() {
        let tmp = tempfile::tempdir().unwrap();
        let big: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let tar = tar_of(&[("d/a", b"hello\n"), ("d/big", &big), ("empty", b"")]);
        let (record, dir) = (tmp.path().join("r.json.gz"), tmp.path().join("files"));
        split_into(&tar, &record, &dir);
        assert_eq!(read_all(&record, &dir).unwrap(), tar);
        assert_eq!(tar_size(&record).unwrap(), tar.len() as u64);
        // Small reads give the same bytes.
        let mut r = Assembled::open(&record, &dir).unwrap();
        let mut out = Vec::new();
        let mut buf = [0u8; 7];
        loop {
            let n = r.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            out.extend_from_slice(&buf[..n]);
        }
        assert_eq!(out, tar);
    }

    #[test]
    fn a_check_opens_every_file_and_finds_one_changed() {
        let tmp = tempfile::tempdir().unwrap();
        let tar = tar_of(&[("d/a", b"hello\n"), ("d/b", b"")]);
        let (record, dir) = (tmp.path().join("r.json.gz"), tmp.path().join("files"));
        split_into(&tar, &record, &dir);
        check_files(&record, &dir).unwrap();
        std::fs::write(dir.join("d/a"), b"hi\n").unwrap();
        let e = check_files(&record, &dir).unwrap_err().to_string();
        assert!(e.contains("d/a is 3 bytes, and docker recorded 6"), "{e}");
    }

    #[test]
    fn a_file_of_another_size_or_a_missing_one_fails_naming_it() {
        let tmp = tempfile::tempdir().unwrap();
        let tar = tar_of(&[("d/a", b"hello\n")]);
        let (record, dir) = (tmp.path().join("r.json.gz"), tmp.path().join("files"));
        split_into(&tar, &record, &dir);
        std::fs::write(dir.join("d/a"), b"hello, longer\n").unwrap();
        let e = read_all(&record, &dir).unwrap_err().to_string();
        assert!(e.contains("d/a is 14 bytes, and docker recorded 6"), "{e}");
        std::fs::remove_file(dir.join("d/a")).unwrap();
        let e = read_all(&record, &dir).unwrap_err().to_string();
        assert!(e.contains("the layer's files changed"), "{e}");
    }

    #[cfg(unix)]
    #[test]
    fn a_name_never_leads_out_of_the_layer() {
        let tmp = tempfile::tempdir().unwrap();
        let outside = tmp.path().join("outside");
        std::fs::create_dir_all(&outside).unwrap();
        std::fs::write(outside.join("secret"), b"secret").unwrap();
        let tar = tar_of(&[("d/secret", b"secret")]);
        let (record, dir) = (tmp.path().join("r.json.gz"), tmp.path().join("files"));
        split_into(&tar, &record, &dir);
        // The layer's `d` turned into a symlink to a directory outside it.
        std::fs::remove_dir_all(dir.join("d")).unwrap();
        std::os::unix::fs::symlink(&outside, dir.join("d")).unwrap();
        let e = read_all(&record, &dir).unwrap_err().to_string();
        assert!(e.contains("is not a directory (a symlink"), "{e}");
        // A final symlink is not followed either.
        std::fs::remove_file(dir.join("d")).unwrap();
        std::fs::create_dir_all(dir.join("d")).unwrap();
        std::os::unix::fs::symlink(outside.join("secret"), dir.join("d/secret")).unwrap();
        let e = read_all(&record, &dir).unwrap_err().to_string();
        assert!(e.contains("is not a regular file"), "{e}");
    }

    #[test]
    fn a_record_naming_a_parent_or_damaged_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("files");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(tmp.path().join("x"), b"xx").unwrap();
        let record = tmp.path().join("r.json.gz");
        let write = |text: &str| {
            let mut gz = flate2::write::GzEncoder::new(
                std::fs::File::create(&record).unwrap(),
                flate2::Compression::fast(),
            );
            gz.write_all(text.as_bytes()).unwrap();
            gz.finish().unwrap();
        };
        write("{\"type\":1,\"name\":\"../x\",\"size\":2,\"payload\":null}\n");
        let e = read_all(&record, &dir).unwrap_err().to_string();
        assert!(e.contains("outside the layer"), "{e}");
        write("{\"type\":9,\"payload\":null}\n");
        assert!(read_all(&record, &dir).is_err());
        write("{\"type\":2,\"payload\":\"not base64!\"}\n");
        assert!(tar_size(&record).is_err());
        std::fs::write(&record, b"not gzip").unwrap();
        assert!(tar_size(&record).is_err());
    }
}
