//! Digest checking as bytes stream.

use std::io::{self, Write};

use imgkit_types::Digest;
use sha2::{Digest as _, Sha256};

use crate::error::{Error, Result};

/// A writer that hashes and counts what passes through it to `inner`.
pub struct DigestWriter<W> {
    inner: W,
    hasher: Sha256,
    written: u64,
}

impl<W: Write> DigestWriter<W> {
    pub fn new(inner: W) -> Self {
        Self {
            inner,
            hasher: Sha256::new(),
            written: 0,
        }
    }

    /// The sha256 of what was written so far.
    pub fn digest(&self) -> Digest {
        Digest::sha256_hex(&hex(&self.hasher.clone().finalize())).expect("sha256 hex")
    }

    /// Bytes written so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// Checks what was written against `digest` and `size`; gives back the inner writer.
    pub fn finish(self, digest: &Digest, size: u64) -> Result<W> {
        if digest.algorithm() != "sha256" {
            return Err(Error::Algorithm(digest.clone()));
        }
        let actual = hex(&self.hasher.finalize());
        if actual != digest.hex() {
            return Err(Error::DigestMismatch {
                expected: digest.clone(),
                actual: format!("sha256:{actual}"),
                size: self.written,
            });
        }
        if self.written != size {
            return Err(Error::SizeMismatch {
                digest: digest.clone(),
                expected: size,
                actual: self.written,
            });
        }
        Ok(self.inner)
    }
}

impl<W: Write> Write for DigestWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Copies `r` to its end into `w` in 1 MiB reads (a layer is large: `io::copy`'s 8 KiB
/// steps cost more calls than the bytes need); the bytes copied.
pub(crate) fn copy_big(r: &mut dyn io::Read, w: &mut impl Write) -> io::Result<u64> {
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    loop {
        let n = match r.read(&mut buf) {
            Ok(0) => return Ok(total),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        w.write_all(&buf[..n])?;
        total += n as u64;
    }
}

/// A blob spooled to a temporary file (removed when dropped), read from its start.
pub(crate) struct Spooled {
    file: std::fs::File,
    path: std::path::PathBuf,
}

impl io::Read for Spooled {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.file.read(buf)
    }
}

impl Drop for Spooled {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Copies `content` into a temporary file, hashing it; the file (rewound) and the blob's
/// descriptor. `size` is checked when it is not `u64::MAX`.
pub(crate) fn spool(
    content: &mut dyn io::Read,
    size: u64,
    media_type: &str,
) -> Result<(Spooled, crate::BlobInfo)> {
    use std::io::Seek as _;
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let path = std::env::temp_dir().join(format!(".imgkit-spool-{}-{n}", std::process::id()));
    let file = std::fs::File::create(&path).map_err(Error::Spool)?;
    let mut spooled = Spooled { file, path };
    let mut w = DigestWriter::new(io::BufWriter::with_capacity(1 << 20, &spooled.file));
    copy_big(content, &mut w).map_err(Error::Spool)?;
    let written = w.written();
    if size != u64::MAX && written != size {
        return Err(Error::Spool(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!("{written} bytes arrived, {size} were announced"),
        )));
    }
    let digest = Digest::sha256_hex(&hex(&w.hasher.clone().finalize())).expect("sha256 hex");
    w.inner.flush().map_err(Error::Spool)?;
    drop(w);
    spooled
        .file
        .seek(io::SeekFrom::Start(0))
        .map_err(Error::Spool)?;
    Ok((
        spooled,
        crate::BlobInfo {
            digest,
            size: written,
            media_type: media_type.to_owned(),
        },
    ))
}

/// The sha256 digest of `bytes`.
pub(crate) fn sha256_of(bytes: &[u8]) -> Digest {
    Digest::sha256_hex(&hex(&Sha256::digest(bytes))).expect("sha256 hex is a digest")
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wrong_digest_or_size_is_refused() {
        let d = sha256_of(b"hello");
        let mut w = DigestWriter::new(Vec::new());
        w.write_all(b"hello").unwrap();
        assert_eq!(w.finish(&d, 5).unwrap(), b"hello");
        let mut w = DigestWriter::new(Vec::new());
        w.write_all(b"hellO").unwrap();
        assert!(matches!(w.finish(&d, 5), Err(Error::DigestMismatch { .. })));
        let mut w = DigestWriter::new(Vec::new());
        w.write_all(b"hello").unwrap();
        assert!(matches!(w.finish(&d, 6), Err(Error::SizeMismatch { .. })));
    }
}
