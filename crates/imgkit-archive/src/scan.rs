//! One pass over an archive's members: names checked, links resolved inside the archive,
//! small JSON members kept (under a size cap), everything else skipped — or hashed, when the
//! caller verifies. Works on seekable files (members found by offset), streams and OCI layout
//! directories.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{self, BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use imgkit_types::Digest;
use sha2::{Digest as _, Sha256};

use crate::compress::{Compression, ExpansionLimit, decompress_bounded};
use crate::error::{Error, Result};
use crate::path;

/// Bounds on what an archive may make imgkit do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest metadata member (manifest.json, index.json, a config or manifest blob) read
    /// into memory.
    pub max_json: u64,
    /// Decompression bound for gzip/zstd archives.
    pub expansion: ExpansionLimit,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_json: 32 << 20,
            expansion: ExpansionLimit {
                floor: 256 << 20,
                ratio: 1024,
            },
        }
    }
}

/// Member names whose size is capped as soon as their header is seen.
const METADATA: [&str; 4] = ["manifest.json", "index.json", "oci-layout", "repositories"];

const CHUNK: usize = 1 << 20;

/// Called with each regular member of a stream as it passes (name, size, a reader of its
/// content): see [`crate::Archive::from_reader_visiting`].
pub type Visitor<'v> = dyn FnMut(&str, u64, &mut dyn Read) -> Result<()> + 'v;

/// A regular file inside the archive.
#[derive(Debug, Clone)]
pub(crate) struct Member {
    pub(crate) path: String,
    pub(crate) size: u64,
    /// Offset of the data in an uncompressed archive file.
    pub(crate) offset: Option<u64>,
    /// Compression of the member's own content (a layer's), from its first bytes.
    pub(crate) compression: Compression,
    /// sha256 of the content, when the scan hashed.
    pub(crate) sha256: Option<Digest>,
}

#[derive(Debug, Clone)]
enum Node {
    File(Member),
    /// A symlink or hardlink, already resolved to a member name inside the archive.
    Link(String),
    Dir,
}

/// Where an archive's bytes come from.
#[derive(Debug, Clone)]
pub(crate) enum Source {
    /// A tar file; `compression` of the whole file.
    File {
        path: PathBuf,
        compression: Compression,
    },
    /// An OCI image layout directory.
    Dir(PathBuf),
    /// A one-pass stream: members can't be read again.
    Stream,
}

/// The member table of an archive.
#[derive(Debug, Clone)]
pub(crate) struct Table {
    nodes: BTreeMap<String, Node>,
    json: HashMap<String, Vec<u8>>,
    pub(crate) source: Source,
    pub(crate) max_json: u64,
}

impl Table {
    /// The regular file at `name`, following links (at most 16).
    pub(crate) fn file(&self, name: &str) -> Result<Option<&Member>> {
        let mut name = name.to_owned();
        for _ in 0..16 {
            match self.nodes.get(&name) {
                None | Some(Node::Dir) => return Ok(None),
                Some(Node::File(m)) => return Ok(Some(m)),
                Some(Node::Link(t)) => name.clone_from(t),
            }
        }
        Err(Error::LinkLoop { path: name })
    }

    /// The kept content of a small JSON member (after links).
    pub(crate) fn json(&self, name: &str) -> Result<Option<&[u8]>> {
        Ok(self
            .file(name)?
            .and_then(|m| self.json.get(&m.path))
            .map(Vec::as_slice))
    }

    pub(crate) fn contains(&self, name: &str) -> bool {
        matches!(self.file(name), Ok(Some(_)))
    }

    /// Every regular file, in name order.
    pub(crate) fn files(&self) -> impl Iterator<Item = &Member> {
        self.nodes.values().filter_map(|n| match n {
            Node::File(m) => Some(m),
            _ => None,
        })
    }

    /// Reads members again, calling `f` for each wanted one (by resolved name) with a reader of
    /// exactly its content. Order: the archive's. Streams can't be read twice.
    pub(crate) fn read_members(
        &self,
        wanted: &std::collections::HashSet<String>,
        limits: &Limits,
        f: &mut dyn FnMut(&Member, &mut dyn Read) -> Result<()>,
    ) -> Result<()> {
        match &self.source {
            Source::Stream => Err(Error::NeedsSeekable("reading members again")),
            Source::Dir(root) => {
                let mut members: Vec<&Member> =
                    self.files().filter(|m| wanted.contains(&m.path)).collect();
                members.sort_by(|a, b| a.path.cmp(&b.path));
                for m in members {
                    let full = root.join(Path::new(&m.path));
                    let file = File::open(&full).map_err(|source| Error::Open {
                        path: full.clone(),
                        source,
                    })?;
                    let mut r = file.take(m.size);
                    f(m, &mut r)?;
                }
                Ok(())
            }
            Source::File {
                path,
                compression: Compression::None,
            } => {
                let mut members: Vec<&Member> =
                    self.files().filter(|m| wanted.contains(&m.path)).collect();
                members.sort_by_key(|m| m.offset);
                let mut file = File::open(path).map_err(|source| Error::Open {
                    path: path.clone(),
                    source,
                })?;
                for m in members {
                    let offset = m.offset.expect("plain tar members have offsets");
                    file.seek(SeekFrom::Start(offset)).map_err(Error::Read)?;
                    let mut r = (&mut file).take(m.size);
                    f(m, &mut r)?;
                }
                Ok(())
            }
            Source::File { path, .. } => {
                let file = File::open(path).map_err(|source| Error::Open {
                    path: path.clone(),
                    source,
                })?;
                let (reader, _) =
                    decompress_bounded(file, Some(limits.expansion)).map_err(Error::Read)?;
                let mut ar = tar::Archive::new(reader);
                let mut last = String::new();
                for entry in ar.entries().map_err(|e| map_io(e, &last))? {
                    let mut entry = entry.map_err(|e| map_io(e, &last))?;
                    let name = path::normalize(&entry.path_bytes())?;
                    last.clone_from(&name);
                    if !wanted.contains(&name) {
                        continue;
                    }
                    if let Some(Node::File(m)) = self.nodes.get(&name) {
                        f(m, &mut entry)?;
                    }
                }
                Ok(())
            }
        }
    }
}

/// Turns an I/O error met while reading member `member` into the crate's error.
pub(crate) fn map_io(e: io::Error, member: &str) -> Error {
    // A decompression bound deep inside the tar reader's error chain (an `io::Error`'s
    // payload is not its `source()`, so look at both).
    fn find<'a>(c: &'a (dyn std::error::Error + 'static), depth: usize) -> Option<&'a Error> {
        if depth > 8 {
            return None;
        }
        if let Some(e) = c.downcast_ref::<Error>() {
            return Some(e);
        }
        if let Some(inner) = c.downcast_ref::<io::Error>().and_then(io::Error::get_ref)
            && let Some(e) = find(inner, depth + 1)
        {
            return Some(e);
        }
        c.source().and_then(|s| find(s, depth + 1))
    }
    if let Some(Error::ExpansionLimit {
        out,
        input,
        limit_ratio,
    }) = find(&e, 0)
    {
        return Error::ExpansionLimit {
            out: *out,
            input: *input,
            limit_ratio: *limit_ratio,
        };
    }
    let text = e.to_string();
    // The tar reader's header errors quote the header's bytes (a text file's first line, a
    // password file's entries): never pass them on, say what the file is not.
    if text.contains("checksum mismatch")
        || text.contains("numeric field")
        || text.contains("when getting")
    {
        return Error::NotATar {
            after: (!member.is_empty()).then(|| member.to_owned()),
        };
    }
    if e.kind() == io::ErrorKind::UnexpectedEof
        || text.contains("unexpected EOF")
        || text.contains("failed to read entire block")
    {
        return Error::Truncated {
            member: if member.is_empty() {
                "the first header".into()
            } else {
                member.to_owned()
            },
        };
    }
    Error::Read(e)
}

/// Scans a tar archive at `path` (plain, gzip or zstd) or an OCI layout directory.
pub(crate) fn scan_path(path: &Path, hash: bool, limits: &Limits) -> Result<Table> {
    let open_err = |source| Error::Open {
        path: path.to_owned(),
        source,
    };
    let meta = std::fs::metadata(path).map_err(open_err)?;
    if meta.is_dir() {
        return scan_dir(path, hash, limits);
    }
    let mut file = File::open(path).map_err(open_err)?;
    if !meta.is_file() {
        // A pipe, a device, `/dev/stdin`, `<(…)`: one pass, no seeking.
        return scan_reader(Box::new(file), hash, limits);
    }
    let mut magic = [0u8; 4];
    let n = read_up_to(&mut file, &mut magic).map_err(Error::Read)?;
    let compression = crate::compress::detect(&magic[..n]);
    file.seek(SeekFrom::Start(0)).map_err(Error::Read)?;
    let source = Source::File {
        path: path.to_owned(),
        compression,
    };
    if compression == Compression::None {
        let len = meta.len();
        let mut ar = tar::Archive::new(BufReader::with_capacity(CHUNK, file));
        let entries = ar.entries_with_seek().map_err(|e| map_io(e, ""))?;
        scan_entries(
            entries,
            hash,
            limits,
            Some(len),
            &AtomicU64::new(0),
            source,
            None,
        )
    } else {
        let (reader, detected) =
            decompress_bounded(file, Some(limits.expansion)).map_err(Error::Read)?;
        scan_stream(reader, detected.compression, hash, limits, source)
    }
}

/// Scans a tar stream (plain, gzip or zstd) in one pass.
pub(crate) fn scan_reader(r: Box<dyn Read>, hash: bool, limits: &Limits) -> Result<Table> {
    scan_reader_visiting(r, hash, limits, None)
}

/// [`scan_reader`], handing each regular member to `visit` as it passes.
pub(crate) fn scan_reader_visiting(
    r: Box<dyn Read>,
    hash: bool,
    limits: &Limits,
    visit: Option<&mut Visitor<'_>>,
) -> Result<Table> {
    let (reader, detected) = decompress_bounded(r, Some(limits.expansion)).map_err(Error::Read)?;
    scan_stream_visiting(
        reader,
        detected.compression,
        hash,
        limits,
        Source::Stream,
        visit,
    )
}

pub(crate) fn scan_stream(
    reader: Box<dyn Read>,
    compression: Compression,
    hash: bool,
    limits: &Limits,
    source: Source,
) -> Result<Table> {
    scan_stream_visiting(reader, compression, hash, limits, source, None)
}

fn scan_stream_visiting(
    reader: Box<dyn Read>,
    compression: Compression,
    hash: bool,
    limits: &Limits,
    source: Source,
    visit: Option<&mut Visitor<'_>>,
) -> Result<Table> {
    let consumed = Arc::new(AtomicU64::new(0));
    let counted = crate::compress::CountingReader {
        inner: reader,
        count: Arc::clone(&consumed),
    };
    let mut ar = tar::Archive::new(counted);
    let entries = ar.entries().map_err(|e| map_io(e, ""))?;
    let table = scan_entries(entries, hash, limits, None, &consumed, source, visit)?;
    if hash && compression != Compression::None {
        // The tar ends before its compression does: the gzip trailer (CRC-32 and length) and
        // the end of the zstd frame (and its checksum) are only checked when read.
        drain_trailer(ar.into_inner(), compression)?;
    }
    Ok(table)
}

/// Reads a decompressed stream to its end, so that the decompressor checks its trailer and
/// checksum; a cut or damaged trailer is [`Error::BadCompression`].
fn drain_trailer(mut r: impl Read, compression: Compression) -> Result<()> {
    let mut buf = [0u8; 8192];
    loop {
        match r.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                let reason = if e.kind() == io::ErrorKind::UnexpectedEof {
                    format!("the file is cut before the end of its {compression} trailer ({e})")
                } else {
                    e.to_string()
                };
                return Err(Error::BadCompression {
                    compression,
                    reason,
                });
            }
        }
    }
}

fn read_up_to(r: &mut (impl Read + ?Sized), buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

fn scan_entries<R: Read>(
    entries: tar::Entries<'_, R>,
    hash: bool,
    limits: &Limits,
    file_len: Option<u64>,
    consumed: &AtomicU64,
    source: Source,
    mut visit: Option<&mut Visitor<'_>>,
) -> Result<Table> {
    let mut nodes = BTreeMap::new();
    let mut json = HashMap::new();
    let mut buf = vec![0u8; CHUNK];
    let mut last = String::new();
    let mut last_end = 0u64;
    for entry in entries {
        let mut entry = entry.map_err(|e| map_io(e, &last))?;
        let name = path::normalize(&entry.path_bytes())?;
        last.clone_from(&name);
        let kind = entry.header().entry_type();
        let node = match kind {
            tar::EntryType::Directory => Node::Dir,
            tar::EntryType::Symlink | tar::EntryType::Link => {
                let target = entry.link_name_bytes().ok_or_else(|| Error::UnsafePath {
                    path: name.clone(),
                    reason: "link without a target",
                })?;
                let resolved = if kind == tar::EntryType::Symlink {
                    path::resolve_symlink(&name, &target)?
                } else {
                    path::resolve_hardlink(&name, &target)?
                };
                Node::Link(resolved)
            }
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                let size = entry.size();
                let position = entry.raw_file_position();
                if METADATA.contains(&name.as_str()) && size > limits.max_json {
                    return Err(Error::MetadataTooLarge {
                        path: name,
                        size,
                        limit: limits.max_json,
                    });
                }
                if file_len.is_some_and(|len| position.saturating_add(size) > len) {
                    return Err(Error::Truncated { member: name });
                }
                last_end = position + size.div_ceil(512) * 512;
                let offset = file_len.map(|_| position);
                let (compression, sha256, body) = match visit.as_deref_mut() {
                    Some(v) => visit_member(&mut entry, &name, size, hash, limits, &mut buf, v)?,
                    None => read_member(&mut entry, &name, size, hash, limits, &mut buf)?,
                };
                if let Some(body) = body {
                    json.insert(name.clone(), body);
                }
                Node::File(Member {
                    path: name.clone(),
                    size,
                    offset,
                    compression,
                    sha256,
                })
            }
            // PAX/GNU extension headers are consumed by the tar reader; anything else (devices,
            // fifos) has no place in an image archive and is ignored like docker does.
            _ => continue,
        };
        if let Some(old) = nodes.get(&name)
            && !(matches!(old, Node::Dir) && matches!(node, Node::Dir))
        {
            return Err(Error::DuplicateEntry { path: name });
        }
        nodes.insert(name, node);
    }
    // A tar ends with zero blocks; without one the file was cut at a member boundary.
    let consumed = file_len.unwrap_or_else(|| consumed.load(Ordering::Relaxed));
    if !nodes.is_empty() && consumed < last_end + 512 {
        return Err(Error::Truncated { member: last });
    }
    Ok(Table {
        nodes,
        json,
        source,
        max_json: limits.max_json,
    })
}

/// Reads (or skips) one member: its content compression, its sha256 when hashing, its bytes
/// when it is small JSON.
fn read_member(
    r: &mut dyn Read,
    name: &str,
    size: u64,
    hash: bool,
    limits: &Limits,
    buf: &mut [u8],
) -> Result<(Compression, Option<Digest>, Option<Vec<u8>>)> {
    let is_metadata = METADATA.contains(&name);
    if is_metadata && size > limits.max_json {
        return Err(Error::MetadataTooLarge {
            path: name.to_owned(),
            size,
            limit: limits.max_json,
        });
    }
    let truncated = || Error::Truncated {
        member: name.to_owned(),
    };
    let first_len = size.min(4096) as usize;
    let got = read_up_to(r, &mut buf[..first_len]).map_err(|e| map_io(e, name))?;
    if got < first_len {
        return Err(truncated());
    }
    let head = &buf[..got];
    let compression = crate::compress::detect(head);
    let looks_json = matches!(
        head.iter().find(|b| !b.is_ascii_whitespace()),
        Some(b'{' | b'[')
    );
    let keep = (is_metadata || looks_json) && size <= limits.max_json;
    let mut body = keep.then(|| Vec::with_capacity(size as usize));
    let mut hasher = hash.then(Sha256::new);
    let mut seen = got as u64;
    let mut chunk_len = got;
    loop {
        let chunk = &buf[..chunk_len];
        if let Some(h) = hasher.as_mut() {
            h.update(chunk);
        }
        if let Some(b) = body.as_mut() {
            b.extend_from_slice(chunk);
        }
        if seen == size || (hasher.is_none() && body.is_none()) {
            break;
        }
        let want = ((size - seen).min(buf.len() as u64)) as usize;
        chunk_len = read_up_to(r, &mut buf[..want]).map_err(|e| map_io(e, name))?;
        if chunk_len < want {
            return Err(truncated());
        }
        seen += chunk_len as u64;
    }
    let sha256 =
        hasher.map(|h| Digest::sha256_hex(&hex(&h.finalize())).expect("sha256 hex is a digest"));
    Ok((compression, sha256, body))
}

/// Like [`read_member`], and hands the content to `visit` as it passes (the kept JSON and the
/// hash are taken from the same bytes; what `visit` leaves unread is read here).
fn visit_member(
    r: &mut dyn Read,
    name: &str,
    size: u64,
    hash: bool,
    limits: &Limits,
    buf: &mut [u8],
    visit: &mut Visitor<'_>,
) -> Result<(Compression, Option<Digest>, Option<Vec<u8>>)> {
    let is_metadata = METADATA.contains(&name);
    if is_metadata && size > limits.max_json {
        return Err(Error::MetadataTooLarge {
            path: name.to_owned(),
            size,
            limit: limits.max_json,
        });
    }
    let first_len = size.min(4096) as usize;
    let got = read_up_to(r, &mut buf[..first_len]).map_err(|e| map_io(e, name))?;
    if got < first_len {
        return Err(Error::Truncated {
            member: name.to_owned(),
        });
    }
    let head = buf[..got].to_vec();
    let compression = crate::compress::detect(&head);
    let looks_json = matches!(
        head.iter().find(|b| !b.is_ascii_whitespace()),
        Some(b'{' | b'[')
    );
    let keep = (is_metadata || looks_json) && size <= limits.max_json;
    let mut tee = Tee {
        head: io::Cursor::new(head),
        rest: r,
        left: size - got as u64,
        body: keep.then(|| Vec::with_capacity(size as usize)),
        hasher: hash.then(Sha256::new),
        seen: 0,
        failed: false,
    };
    visit(name, size, &mut tee)?;
    // What the visitor left unread.
    io::copy(&mut tee, &mut io::sink()).map_err(|e| map_io(e, name))?;
    if tee.seen != size {
        return Err(Error::Truncated {
            member: name.to_owned(),
        });
    }
    let sha256 = tee
        .hasher
        .map(|h| Digest::sha256_hex(&hex(&h.finalize())).expect("sha256 hex is a digest"));
    Ok((compression, sha256, tee.body))
}

/// A member's content (its first bytes already read, then the rest), kept and hashed as read.
struct Tee<'r> {
    head: io::Cursor<Vec<u8>>,
    rest: &'r mut dyn Read,
    left: u64,
    body: Option<Vec<u8>>,
    hasher: Option<Sha256>,
    seen: u64,
    failed: bool,
}

impl Read for Tee<'_> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if self.failed {
            return Err(io::Error::other("the member could not be read"));
        }
        let mut n = self.head.read(out)?;
        if n == 0 && self.left > 0 {
            let want = (self.left.min(out.len() as u64)) as usize;
            n = match self.rest.read(&mut out[..want]) {
                Ok(0) => {
                    self.failed = true;
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the stream ended inside a member",
                    ));
                }
                Ok(n) => n,
                Err(e) => {
                    if e.kind() != io::ErrorKind::Interrupted {
                        self.failed = true;
                    }
                    return Err(e);
                }
            };
            self.left -= n as u64;
        }
        if let Some(b) = self.body.as_mut() {
            b.extend_from_slice(&out[..n]);
        }
        if let Some(h) = self.hasher.as_mut() {
            h.update(&out[..n]);
        }
        self.seen += n as u64;
        Ok(n)
    }
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// Scans an OCI image layout directory: every file below it, symlinks kept inside.
fn scan_dir(root: &Path, hash: bool, limits: &Limits) -> Result<Table> {
    let mut nodes = BTreeMap::new();
    let mut json = HashMap::new();
    let mut buf = vec![0u8; CHUNK];
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let dir = root.join(&rel);
        let read = std::fs::read_dir(&dir).map_err(|source| Error::Open {
            path: dir.clone(),
            source,
        })?;
        for item in read {
            let item = item.map_err(|source| Error::Open {
                path: dir.clone(),
                source,
            })?;
            let rel_child = rel.join(item.file_name());
            let name_os = rel_child
                .to_string_lossy()
                .replace(std::path::MAIN_SEPARATOR, "/");
            let name = path::normalize(name_os.as_bytes())?;
            let ft = item.file_type().map_err(|source| Error::Open {
                path: item.path(),
                source,
            })?;
            if ft.is_dir() {
                nodes.insert(name, Node::Dir);
                stack.push(rel_child);
            } else if ft.is_symlink() {
                let target = std::fs::read_link(item.path()).map_err(|source| Error::Open {
                    path: item.path(),
                    source,
                })?;
                let t = target
                    .to_string_lossy()
                    .replace(std::path::MAIN_SEPARATOR, "/");
                nodes.insert(
                    name.clone(),
                    Node::Link(path::resolve_symlink(&name, t.as_bytes())?),
                );
            } else if ft.is_file() {
                let full = item.path();
                let mut file = File::open(&full).map_err(|source| Error::Open {
                    path: full.clone(),
                    source,
                })?;
                let size = file
                    .metadata()
                    .map_err(|source| Error::Open {
                        path: full.clone(),
                        source,
                    })?
                    .len();
                let (compression, sha256, body) =
                    read_member(&mut file, &name, size, hash, limits, &mut buf)?;
                if let Some(body) = body {
                    json.insert(name.clone(), body);
                }
                nodes.insert(
                    name.clone(),
                    Node::File(Member {
                        path: name,
                        size,
                        offset: None,
                        compression,
                        sha256,
                    }),
                );
            }
        }
    }
    Ok(Table {
        nodes,
        json,
        source: Source::Dir(root.to_owned()),
        max_json: limits.max_json,
    })
}
