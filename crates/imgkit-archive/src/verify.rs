//! `verify`: read every byte once, hashing every member; then check every blob against its
//! name and descriptor, every manifest's references, and docker-style layers against the
//! config's diff_ids. The first bad blob is the error.

use std::io::Read;
use std::path::Path;

use serde::Serialize;

use crate::error::{Error, Result};
use crate::model::{self, Blob, Image, MissingPlatform};
use crate::path;
use crate::scan::{self, Limits, Table};

/// What a successful verification covered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VerifyReport {
    pub images: usize,
    pub names: usize,
    /// Members whose sha256 was checked against a digest.
    pub blobs_checked: usize,
    /// Bytes hashed.
    pub bytes: u64,
    /// Platforms an index names that the archive does not hold (not an error: saves of
    /// multi-platform images commonly keep one platform).
    pub missing_platforms: Vec<MissingPlatform>,
    /// Names that are not image references, and names given to several images.
    pub warnings: Vec<String>,
}

/// Verifies the archive at `path` (a file or an OCI layout directory).
pub fn verify(path: &Path) -> Result<VerifyReport> {
    verify_with(path, Limits::default())
}

/// [`verify`] with explicit limits.
pub fn verify_with(path: &Path, limits: Limits) -> Result<VerifyReport> {
    let table = scan::scan_path(path, true, &limits)?;
    check(&table, &path.display().to_string())
}

/// Verifies an archive read from a stream, in one pass.
pub fn verify_reader(r: impl Read + 'static, limits: Limits) -> Result<VerifyReport> {
    let table = scan::scan_reader(Box::new(r), true, &limits)?;
    check(&table, "the input stream")
}

fn check(table: &Table, what: &str) -> Result<VerifyReport> {
    let mut checked = 0;
    let mut bytes = 0;
    // Every content-addressed member must hash to its name.
    for m in table.files() {
        bytes += m.size;
        if let Some(want) = path::blob_digest(&m.path)
            && want.algorithm() == "sha256"
        {
            {
                let got = m.sha256.as_ref().expect("verify scans hash");
                if got != &want {
                    return Err(Error::DigestMismatch {
                        path: m.path.clone(),
                        expected: want.to_string(),
                        actual: got.to_string(),
                    });
                }
                checked += 1;
            }
        }
    }
    let images = model::build(table, what)?;
    for image in &images {
        check_image(table, image, &mut checked)?;
    }
    Ok(VerifyReport {
        images: images.len(),
        names: images.iter().map(|i| i.names.len()).sum(),
        blobs_checked: checked,
        bytes,
        missing_platforms: images
            .iter()
            .flat_map(|i| i.missing_platforms.iter().cloned())
            .collect(),
        warnings: model::name_warnings(&images),
    })
}

fn check_blob(table: &Table, blob: &Blob, checked: &mut usize) -> Result<()> {
    let m = table
        .file(&blob.path)?
        .ok_or_else(|| Error::MissingMember {
            referrer: "a manifest".into(),
            member: blob.path.clone(),
        })?;
    if m.size != blob.size {
        return Err(Error::SizeMismatch {
            path: m.path.clone(),
            expected: blob.size,
            actual: m.size,
        });
    }
    let got = m.sha256.as_ref().expect("verify scans hash");
    if got != &blob.digest {
        return Err(Error::DigestMismatch {
            path: m.path.clone(),
            expected: blob.digest.to_string(),
            actual: got.to_string(),
        });
    }
    if path::blob_digest(&m.path).is_none() {
        *checked += 1;
    }
    Ok(())
}

fn check_image(table: &Table, image: &Image, checked: &mut usize) -> Result<()> {
    if let Some(t) = &image.target {
        check_blob(table, t, checked)?;
    }
    for p in &image.platforms {
        if let Some(m) = &p.manifest {
            check_blob(table, m, checked)?;
        }
        check_blob(table, &p.config, checked)?;
        if p.diff_ids.len() != p.layers.len() {
            return Err(Error::LayerCountMismatch {
                image: p.config.digest.to_string(),
                diff_ids: p.diff_ids.len(),
                layers: p.layers.len(),
            });
        }
        for (layer, diff_id) in p.layers.iter().zip(&p.diff_ids) {
            check_blob(table, layer, checked)?;
            // An uncompressed layer's digest is its diff_id.
            let uncompressed = table
                .file(&layer.path)?
                .is_some_and(|m| m.compression == crate::Compression::None);
            if uncompressed && &layer.digest != diff_id {
                return Err(Error::DigestMismatch {
                    path: layer.path.clone(),
                    expected: diff_id.to_string(),
                    actual: layer.digest.to_string(),
                });
            }
        }
    }
    Ok(())
}

/// Bytes a [`VerifyingReader`] keeps back until the whole archive has verified: the end of
/// the tar (its last members and end blocks) never reaches a reader of a bad archive.
const HOLD_BACK: usize = 1 << 20;
const CHUNK: usize = 256 * 1024;

/// Passes an (uncompressed) archive through unchanged while [`verify_reader`] checks it on
/// another thread: every blob against its digest and descriptor, every layer against its
/// config. The last [`HOLD_BACK`] bytes (and the end of the stream) are released only after
/// the verification passed; a bad archive ends in a read error instead, so a consumer such as
/// an engine's `load` never sees a complete stream of it.
pub struct VerifyingReader {
    inner: Box<dyn Read>,
    tx: Option<std::sync::mpsc::SyncSender<Vec<u8>>>,
    verifier: Option<std::thread::JoinHandle<Result<VerifyReport>>>,
    pending: std::collections::VecDeque<u8>,
    chunk: Vec<u8>,
    report: Option<VerifyReport>,
}

impl VerifyingReader {
    /// Starts verifying what is read from `inner`.
    pub fn new(inner: impl Read + 'static, limits: Limits) -> Self {
        let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<u8>>(8);
        let verifier = std::thread::spawn(move || {
            let channel = std::rc::Rc::new(std::cell::RefCell::new(ChannelReader {
                rx,
                current: std::io::Cursor::new(Vec::new()),
            }));
            // Read as a plain tar (no read-ahead buffer): the check below sees every byte
            // after the tar's end.
            let table = scan::scan_stream(
                Box::new(Shared(std::rc::Rc::clone(&channel))),
                crate::Compression::None,
                true,
                &limits,
                scan::Source::Stream,
            )?;
            let report = check(&table, "the input stream")?;
            // Past the end of the tar only padding may follow: nothing another tar reader
            // could take for more members.
            let mut rest = [0u8; 8192];
            loop {
                let n = channel.borrow_mut().read(&mut rest).map_err(Error::Read)?;
                if n == 0 {
                    return Ok(report);
                }
                if rest[..n].iter().any(|&b| b != 0) {
                    return Err(Error::Read(std::io::Error::other(
                        "the stream goes on after the end of the archive",
                    )));
                }
            }
        });
        Self {
            inner: Box::new(inner),
            tx: Some(tx),
            verifier: Some(verifier),
            pending: std::collections::VecDeque::new(),
            chunk: vec![0; CHUNK],
            report: None,
        }
    }

    /// The verification's report, once the whole stream has been read and passed.
    pub fn report(&self) -> Option<&VerifyReport> {
        self.report.as_ref()
    }

    /// Waits for the verifier and keeps its verdict.
    fn finish(&mut self) -> std::io::Result<()> {
        self.tx = None;
        let Some(v) = self.verifier.take() else {
            return Ok(());
        };
        match v.join() {
            Ok(Ok(report)) => {
                self.report = Some(report);
                Ok(())
            }
            Ok(Err(e)) => Err(std::io::Error::other(e)),
            Err(_) => Err(std::io::Error::other("the archive verifier panicked")),
        }
    }
}

impl Read for VerifyingReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        loop {
            let releasable = if self.report.is_some() {
                self.pending.len()
            } else {
                self.pending.len().saturating_sub(HOLD_BACK)
            };
            if releasable > 0 {
                let n = releasable.min(buf.len());
                return self.pending.read(&mut buf[..n]);
            }
            if self.report.is_some() {
                return Ok(0);
            }
            let n = match self.inner.read(&mut self.chunk) {
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    // Stop the verifier; the read error is the one to report.
                    self.tx = None;
                    return Err(e);
                }
            };
            if n == 0 {
                self.finish()?;
                continue;
            }
            let sent = self
                .tx
                .as_ref()
                .is_some_and(|tx| tx.send(self.chunk[..n].to_vec()).is_ok());
            if !sent {
                // The verifier reads to the end of the stream; it stopped early, so it failed.
                self.finish()?;
                return Err(std::io::Error::other(
                    "the archive verifier stopped before the end of the stream",
                ));
            }
            self.pending.extend(&self.chunk[..n]);
        }
    }
}

/// The verifier's side of the channel: chunks in order, the end when the sender is dropped.
struct ChannelReader {
    rx: std::sync::mpsc::Receiver<Vec<u8>>,
    current: std::io::Cursor<Vec<u8>>,
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        loop {
            let n = self.current.read(buf)?;
            if n > 0 || buf.is_empty() {
                return Ok(n);
            }
            match self.rx.recv() {
                Ok(chunk) => self.current = std::io::Cursor::new(chunk),
                Err(_) => return Ok(0),
            }
        }
    }
}

/// The channel reader, shared between [`verify_reader`] and the check of what follows the tar.
struct Shared(std::rc::Rc<std::cell::RefCell<ChannelReader>>);

impl Read for Shared {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.0.borrow_mut().read(buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<u8> {
        let mut out = Vec::new();
        crate::write_images(&crate::sample::images(), &mut out, crate::Compression::None).unwrap();
        out
    }

    /// Reads `bytes` through a verifying reader: what came out, and how it ended.
    fn through(bytes: Vec<u8>) -> (Vec<u8>, std::io::Result<()>) {
        let mut r = VerifyingReader::new(std::io::Cursor::new(bytes), Limits::default());
        let mut out = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            match r.read(&mut buf) {
                Ok(0) => return (out, Ok(())),
                Ok(n) => out.extend_from_slice(&buf[..n]),
                Err(e) => return (out, Err(e)),
            }
        }
    }

    /// An error with its causes, as a person reads them.
    fn chain(e: &std::io::Error) -> String {
        let mut text = e.to_string();
        let mut cause: Option<&(dyn std::error::Error + 'static)> = e
            .get_ref()
            .map(|inner| inner as &(dyn std::error::Error + 'static));
        while let Some(c) = cause {
            text.push_str(": ");
            text.push_str(&c.to_string());
            cause = c.source();
        }
        text
    }

    #[test]
    fn a_good_archive_passes_unchanged() {
        let good = sample();
        let (out, end) = through(good.clone());
        end.unwrap();
        assert_eq!(out, good);
    }

    #[test]
    fn a_flipped_byte_ends_in_an_error_before_the_end_of_the_stream() {
        let mut bad = sample();
        // A byte of a layer's content (a file inside the sample's "hello" layer).
        let needle = b"hello from imgkit";
        let at = bad.windows(needle.len()).position(|w| w == needle).unwrap();
        bad[at] ^= 0x20;
        let len = bad.len();
        let (out, end) = through(bad);
        let e = chain(&end.unwrap_err());
        assert!(out.len() < len, "the whole stream came through");
        assert!(e.contains("sha256"), "{e}");
    }

    #[test]
    fn data_after_the_end_of_the_tar_is_an_error() {
        let mut bytes = sample();
        bytes.extend_from_slice(b"more members?");
        let (_, end) = through(bytes);
        let e = chain(&end.unwrap_err());
        assert!(e.contains("after the end"), "{e}");
    }
}
