//! Compression by magic bytes: plain, gzip or zstd, in both directions, with a bound on how
//! far compressed input may expand (a gzip/zstd bomb stops with an error, not a full disk).

use std::fmt;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// How an archive (or a layer) is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Compression {
    #[default]
    None,
    Gzip,
    Zstd,
}

impl Compression {
    /// The conventional file-name suffix (`""`, `".gz"`, `".zst"`).
    pub fn suffix(self) -> &'static str {
        match self {
            Self::None => "",
            Self::Gzip => ".gz",
            Self::Zstd => ".zst",
        }
    }

    /// Guesses the wanted output compression from a file name (`x.tar.gz`, `x.tgz`, `x.tar.zst`).
    pub fn from_file_name(name: &std::path::Path) -> Self {
        let ext = name
            .extension()
            .map(|e| e.to_string_lossy().to_ascii_lowercase());
        match ext.as_deref() {
            Some("gz" | "tgz") => Self::Gzip,
            Some("zst" | "zstd" | "tzst") => Self::Zstd,
            _ => Self::None,
        }
    }
}

impl fmt::Display for Compression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::None => "none",
            Self::Gzip => "gzip",
            Self::Zstd => "zstd",
        })
    }
}

/// Tells the compression from the first bytes of a stream (4 are enough).
///
/// ```
/// use imgkit_archive::{detect, Compression};
/// assert_eq!(detect(&[0x1f, 0x8b, 8, 0]), Compression::Gzip);
/// assert_eq!(detect(&[0x28, 0xb5, 0x2f, 0xfd]), Compression::Zstd);
/// assert_eq!(detect(b"manifest.json"), Compression::None);
/// ```
pub fn detect(magic: &[u8]) -> Compression {
    if magic.starts_with(&[0x1f, 0x8b]) {
        Compression::Gzip
    } else if magic.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Compression::Zstd
    } else {
        Compression::None
    }
}

/// Wraps `r` in the decompressor its magic bytes call for (plain streams pass through).
/// Expansion is not bounded here; [`decompress_bounded`] bounds it.
pub fn decompress<R: Read + 'static>(r: R) -> io::Result<Box<dyn Read>> {
    decompress_bounded(r, None).map(|(r, _)| r)
}

/// The decompression bound: past `floor` bytes out, output may not exceed `ratio` × input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExpansionLimit {
    pub floor: u64,
    pub ratio: u64,
}

/// What [`decompress_bounded`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Detected {
    pub compression: Compression,
}

/// Like [`decompress`], with an optional expansion bound; exceeding it fails the read with an
/// `io::Error` whose inner error is [`crate::Error::ExpansionLimit`].
pub fn decompress_bounded<R: Read + 'static>(
    r: R,
    limit: Option<ExpansionLimit>,
) -> io::Result<(Box<dyn Read>, Detected)> {
    let consumed = Arc::new(AtomicU64::new(0));
    let counted = CountingReader {
        inner: r,
        count: Arc::clone(&consumed),
    };
    let mut buf = BufReader::with_capacity(256 * 1024, counted);
    let compression = detect(buf.fill_buf()?);
    let inner: Box<dyn Read> = match compression {
        Compression::None => return Ok((Box::new(buf), Detected { compression })),
        Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(buf)),
        Compression::Zstd => {
            let mut d = zstd::stream::read::Decoder::with_buffer(buf)?;
            d.window_log_max(31)?;
            Box::new(d)
        }
    };
    let out: Box<dyn Read> = match limit {
        Some(limit) => Box::new(Bounded {
            inner,
            produced: 0,
            consumed,
            limit,
        }),
        None => inner,
    };
    Ok((out, Detected { compression }))
}

pub(crate) struct CountingReader<R> {
    pub(crate) inner: R,
    pub(crate) count: Arc<AtomicU64>,
}

impl<R: Read> Read for CountingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

struct Bounded {
    inner: Box<dyn Read>,
    produced: u64,
    consumed: Arc<AtomicU64>,
    limit: ExpansionLimit,
}

impl Read for Bounded {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.produced += n as u64;
        if self.produced > self.limit.floor {
            let input = self.consumed.load(Ordering::Relaxed).max(1);
            if self.produced / input > self.limit.ratio {
                return Err(io::Error::other(crate::Error::ExpansionLimit {
                    out: self.produced,
                    input,
                    limit_ratio: self.limit.ratio,
                }));
            }
        }
        Ok(n)
    }
}

/// A writer that compresses into `out`; call [`Encoder::finish`] to flush trailers.
pub struct Encoder<W: Write> {
    inner: EncoderInner<W>,
}

enum EncoderInner<W: Write> {
    Plain(W),
    Gzip(flate2::write::GzEncoder<W>),
    Zstd(zstd::stream::write::Encoder<'static, W>),
}

impl<W: Write> Encoder<W> {
    /// Starts compressing into `out` (gzip level 6, zstd level 3, as the CLIs default).
    pub fn new(out: W, compression: Compression) -> io::Result<Self> {
        let inner = match compression {
            Compression::None => EncoderInner::Plain(out),
            Compression::Gzip => EncoderInner::Gzip(
                flate2::GzBuilder::new()
                    .mtime(0)
                    .write(out, flate2::Compression::new(6)),
            ),
            Compression::Zstd => {
                let mut z = zstd::stream::write::Encoder::new(out, 3)?;
                // As the zstd CLI does: a reader can tell a damaged frame from a good one.
                z.include_checksum(true)?;
                EncoderInner::Zstd(z)
            }
        };
        Ok(Self { inner })
    }

    /// Writes trailers and returns the underlying writer.
    pub fn finish(self) -> io::Result<W> {
        match self.inner {
            EncoderInner::Plain(mut w) => {
                w.flush()?;
                Ok(w)
            }
            EncoderInner::Gzip(g) => g.finish(),
            EncoderInner::Zstd(z) => z.finish(),
        }
    }
}

impl<W: Write> Write for Encoder<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match &mut self.inner {
            EncoderInner::Plain(w) => w.write(buf),
            EncoderInner::Gzip(w) => w.write(buf),
            EncoderInner::Zstd(w) => w.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match &mut self.inner {
            EncoderInner::Plain(w) => w.flush(),
            EncoderInner::Gzip(w) => w.flush(),
            EncoderInner::Zstd(w) => w.flush(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip(c: Compression) {
        let data: Vec<u8> = (0..100_000u32).flat_map(u32::to_le_bytes).collect();
        let mut enc = Encoder::new(Vec::new(), c).unwrap();
        enc.write_all(&data).unwrap();
        let packed = enc.finish().unwrap();
        assert_eq!(detect(&packed), c);
        let mut out = Vec::new();
        decompress(io::Cursor::new(packed))
            .unwrap()
            .read_to_end(&mut out)
            .unwrap();
        assert_eq!(out, data);
    }

    #[test]
    fn round_trips_every_compression() {
        for c in [Compression::None, Compression::Gzip, Compression::Zstd] {
            roundtrip(c);
        }
    }

    #[test]
    fn bounds_expansion() {
        for c in [Compression::Gzip, Compression::Zstd] {
            let mut enc = Encoder::new(Vec::new(), c).unwrap();
            enc.write_all(&vec![0u8; 8 << 20]).unwrap();
            let packed = enc.finish().unwrap();
            let limit = ExpansionLimit {
                floor: 1 << 20,
                ratio: 100,
            };
            let (mut r, _) = decompress_bounded(io::Cursor::new(packed), Some(limit)).unwrap();
            let err = io::copy(&mut r, &mut io::sink()).unwrap_err();
            assert!(err.to_string().contains("decompression bomb"), "{err}");
        }
    }
}
