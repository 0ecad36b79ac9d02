//! A stream transform for docker-save tars: rewrite the short names in `manifest.json`
//! (`RepoTags`) and `repositories` to fully qualified ones (`seed/app:1.0` →
//! `docker.io/seed/app:1.0`), passing every other member through untouched.
//!
//! docker means `docker.io/…` by a short name, but podman files a short name from an archive
//! under `localhost/`. With the names qualified in the stream, podman keeps what docker meant,
//! and docker and containerd read the archive as before. Both files are small and come last in
//! a docker-save stream, so the rewrite buffers only them (at most [`MAX_META`] bytes each).

use std::io::{self, Read};

use imgkit_types::ImageRef;
use serde_json::Value;

/// The largest `manifest.json`/`repositories` rewritten; larger ones pass through unchanged.
pub const MAX_META: u64 = 16 * 1024 * 1024;

const BLOCK: usize = 512;

/// The largest PAX extended header or GNU long-name member read to learn the next member's real
/// name and size; a larger one stops interpretation (everything after passes through).
const MAX_EXT: u64 = 1024 * 1024;

/// Wraps a docker-save tar stream, qualifying the names in its `manifest.json` and
/// `repositories`. A stream that is not a tar passes through unchanged up to where it stops
/// looking like one.
///
/// Headers are read with the `tar` crate's header code: sizes in octal or GNU base-256, names
/// with their ustar prefix, and a member's real size and path from a preceding PAX extended
/// header (`x`) or GNU long name (`L`). So a member whose size lives only in PAX (Go writes
/// those for members over 8 GiB) is skipped whole, and a `manifest.json` inside a layer is
/// never taken for the archive's own. Every byte not rewritten passes through unchanged.
pub struct QualifyNames<R> {
    inner: R,
    /// Bytes ready to hand out.
    out: Vec<u8>,
    pos: usize,
    /// Content bytes of the current member still to pass through (plus padding).
    passthrough: u64,
    /// What a PAX extended header or GNU long name said about the next member.
    pending: Pending,
    /// Once the stream stops parsing as a tar, everything passes through.
    raw: bool,
    eof: bool,
}

/// Overrides for the next member's header, from PAX `x` records or a GNU `L` member.
#[derive(Default)]
struct Pending {
    path: Option<String>,
    size: Option<u64>,
}

impl<R: Read> QualifyNames<R> {
    /// Wraps `inner`.
    pub fn new(inner: R) -> Self {
        Self {
            inner,
            out: Vec::new(),
            pos: 0,
            passthrough: 0,
            pending: Pending::default(),
            raw: false,
            eof: false,
        }
    }

    /// Fills `out` with the next piece of the stream.
    fn refill(&mut self) -> io::Result<()> {
        self.out.clear();
        self.pos = 0;
        if self.raw || self.passthrough > 0 {
            let want = if self.raw {
                256 * 1024
            } else {
                self.passthrough.min(256 * 1024) as usize
            };
            self.out.resize(want, 0);
            let n = read_some(&mut self.inner, &mut self.out)?;
            self.out.truncate(n);
            if n == 0 {
                self.eof = true;
            }
            if !self.raw {
                self.passthrough -= n as u64;
            }
            return Ok(());
        }
        let mut header = [0u8; BLOCK];
        let got = read_full(&mut self.inner, &mut header)?;
        if got < BLOCK {
            self.out.extend_from_slice(&header[..got]);
            self.eof = got == 0;
            self.raw = true;
            return Ok(());
        }
        let Some(member) = parse_header(&header) else {
            // An end-of-archive block, or not a tar: stop interpreting.
            self.out.extend_from_slice(&header);
            self.raw = true;
            return Ok(());
        };
        let pending = std::mem::take(&mut self.pending);
        let size = pending.size.unwrap_or(member.size);
        let name = pending.path.clone().unwrap_or(member.name);
        let name = name.trim_start_matches("./");
        let padded = size.div_ceil(BLOCK as u64) * BLOCK as u64;
        self.out.extend_from_slice(&header);

        // Extension members describe the next one: read them (they are small), keep them as
        // they are, and remember what they say.
        if matches!(member.kind, b'x' | b'L') {
            if size > MAX_EXT {
                self.raw = true;
                return Ok(());
            }
            let mut content = vec![0u8; padded as usize];
            let n = read_full(&mut self.inner, &mut content)?;
            self.out.extend_from_slice(&content[..n]);
            if n < content.len() {
                self.raw = true;
                return Ok(());
            }
            let body = &content[..size as usize];
            self.pending = pending;
            if member.kind == b'L' {
                let end = body.iter().position(|&b| b == 0).unwrap_or(body.len());
                self.pending.path = Some(String::from_utf8_lossy(&body[..end]).into_owned());
            } else {
                for ext in tar::PaxExtensions::new(body) {
                    let Ok(ext) = ext else {
                        // Records we cannot read: the sizes that follow cannot be trusted.
                        self.raw = true;
                        return Ok(());
                    };
                    match ext.key() {
                        Ok("size") => {
                            let Some(v) = ext.value().ok().and_then(|v| v.parse().ok()) else {
                                self.raw = true;
                                return Ok(());
                            };
                            self.pending.size = Some(v);
                        }
                        Ok("path") => {
                            self.pending.path =
                                Some(String::from_utf8_lossy(ext.value_bytes()).into_owned());
                        }
                        _ => {}
                    }
                }
            }
            return Ok(());
        }

        let regular = member.kind == b'0' || member.kind == 0;
        // A size from PAX would have to be rewritten in the PAX header already handed out:
        // leave such a member as it is (docker's metadata files never need one).
        let rewritable = regular && pending.size.is_none() && size <= MAX_META;
        if rewritable && matches!(name, "manifest.json" | "repositories") {
            let is_manifest = name == "manifest.json";
            self.out.clear();
            let mut content = vec![0u8; padded as usize];
            let n = read_full(&mut self.inner, &mut content)?;
            if n < content.len() {
                // Truncated: hand out what came, unchanged; the consumer sees the truncation.
                self.out.extend_from_slice(&header);
                self.out.extend_from_slice(&content[..n]);
                self.raw = true;
                return Ok(());
            }
            let body = &content[..size as usize];
            let rewritten = if is_manifest {
                qualify_manifest(body)
            } else {
                qualify_repositories(body)
            };
            if let Some(new) = rewritten {
                let mut h = header;
                set_size(&mut h, new.len() as u64);
                self.out.extend_from_slice(&h);
                self.out.extend_from_slice(&new);
                let pad = (BLOCK - new.len() % BLOCK) % BLOCK;
                self.out.resize(self.out.len() + pad, 0);
            } else {
                self.out.extend_from_slice(&header);
                self.out.extend_from_slice(&content);
            }
            return Ok(());
        }
        self.passthrough = padded;
        Ok(())
    }
}

impl<R: Read> Read for QualifyNames<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.out.len() {
            if self.eof {
                return Ok(0);
            }
            self.refill()?;
        }
        let n = buf.len().min(self.out.len() - self.pos);
        buf[..n].copy_from_slice(&self.out[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

fn read_some(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        match r.read(buf) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            other => return other,
        }
    }
}

fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        let n = read_some(r, &mut buf[filled..])?;
        if n == 0 {
            break;
        }
        filled += n;
    }
    Ok(filled)
}

/// One header as the `tar` crate reads it.
struct Member {
    /// The path with its ustar prefix (GNU/PAX overrides are applied by the caller).
    name: String,
    /// The size field: octal, or GNU base-256.
    size: u64,
    /// The type flag byte.
    kind: u8,
}

/// The member a header block describes, when it is a tar header with a valid checksum.
fn parse_header(block: &[u8; BLOCK]) -> Option<Member> {
    if block.iter().all(|&b| b == 0) {
        return None;
    }
    let h = tar::Header::from_byte_slice(block);
    let stored = h.cksum().ok()?;
    let mut check = h.clone();
    check.set_cksum();
    if check.cksum().ok()? != stored {
        return None;
    }
    let size = h.entry_size().ok()?;
    let name = String::from_utf8_lossy(&h.path_bytes()).into_owned();
    Some(Member {
        name,
        size,
        kind: block[156],
    })
}

/// Writes `size` into the header and recomputes its checksum.
fn set_size(h: &mut [u8; BLOCK], size: u64) {
    let header = tar::Header::from_byte_slice(h).clone();
    let mut header = header;
    header.set_size(size);
    header.set_cksum();
    h.copy_from_slice(header.as_bytes());
}

/// `seed/app:1.0` → `docker.io/seed/app:1.0`; names with a domain, and anything that does not
/// parse, stay as they are.
fn qualify(name: &str) -> String {
    match ImageRef::parse(name) {
        Ok(r) if r.domain().is_none() && r.tag().is_none() && r.digest().is_none() => {
            r.normalized_name()
        }
        Ok(r) if r.domain().is_none() => r.normalized().to_string(),
        _ => name.to_owned(),
    }
}

/// `None` when nothing changes (or the JSON is not docker's shape).
fn qualify_manifest(body: &[u8]) -> Option<Vec<u8>> {
    let mut v: Value = serde_json::from_slice(body).ok()?;
    let mut changed = false;
    for entry in v.as_array_mut()? {
        if let Some(tags) = entry.get_mut("RepoTags").and_then(Value::as_array_mut) {
            for t in tags.iter_mut() {
                if let Some(s) = t.as_str() {
                    let q = qualify(s);
                    if q != s {
                        *t = Value::String(q);
                        changed = true;
                    }
                }
            }
        }
    }
    changed.then(|| serde_json::to_vec(&v).expect("JSON values serialize"))
}

fn qualify_repositories(body: &[u8]) -> Option<Vec<u8>> {
    let v: Value = serde_json::from_slice(body).ok()?;
    let map = v.as_object()?;
    let mut out = serde_json::Map::new();
    let mut changed = false;
    for (repo, tags) in map {
        let q = qualify(repo);
        changed |= q != *repo;
        out.insert(q, tags.clone());
    }
    changed.then(|| serde_json::to_vec(&Value::Object(out)).expect("JSON values serialize"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal ustar member.
    fn member(name: &str, data: &[u8]) -> Vec<u8> {
        let mut h = [0u8; BLOCK];
        h[..name.len()].copy_from_slice(name.as_bytes());
        h[100..108].copy_from_slice(b"0000644\0");
        h[108..116].copy_from_slice(b"0000000\0");
        h[116..124].copy_from_slice(b"0000000\0");
        h[136..148].copy_from_slice(b"00000000000\0");
        h[156] = b'0';
        h[257..263].copy_from_slice(b"ustar\0");
        h[263..265].copy_from_slice(b"00");
        set_size(&mut h, data.len() as u64);
        let mut out = h.to_vec();
        out.extend_from_slice(data);
        out.resize(out.len() + (BLOCK - data.len() % BLOCK) % BLOCK, 0);
        out
    }

    fn members(tar: &[u8]) -> Vec<(String, Vec<u8>)> {
        let mut out = Vec::new();
        let mut at = 0;
        while at + BLOCK <= tar.len() {
            let h: [u8; BLOCK] = tar[at..at + BLOCK].try_into().unwrap();
            let Some(m) = parse_header(&h) else {
                break;
            };
            let start = at + BLOCK;
            out.push((m.name, tar[start..start + m.size as usize].to_vec()));
            at = start + (m.size as usize).div_ceil(BLOCK) * BLOCK;
        }
        out
    }

    /// A member whose header is built by `f` from a ustar header named `name`; `data` follows.
    fn member_with(name: &str, data: &[u8], f: impl FnOnce(&mut tar::Header)) -> Vec<u8> {
        let mut h = tar::Header::new_ustar();
        h.set_path(name).unwrap();
        h.set_mode(0o644);
        h.set_size(data.len() as u64);
        h.set_entry_type(tar::EntryType::Regular);
        f(&mut h);
        h.set_cksum();
        let mut out = h.as_bytes().to_vec();
        out.extend_from_slice(data);
        out.resize(out.len() + (BLOCK - data.len() % BLOCK) % BLOCK, 0);
        out
    }

    /// A layer (itself a tar) holding a `manifest.json` with short names, as an image of a
    /// tool that works with image archives could.
    fn layer_with_a_manifest() -> Vec<u8> {
        let mut layer = member(
            "manifest.json",
            br#"[{"Config":"c.json","RepoTags":["inner/app:1"],"Layers":[]}]"#,
        );
        layer.extend(member("repositories", br#"{"inner/app":{"1":"c"}}"#));
        layer.extend([0u8; 1024]);
        layer
    }

    /// The top-level manifest of the tests' archives.
    const MANIFEST: &[u8] =
        br#"[{"Config":"abc.json","RepoTags":["seed/app:1.0"],"Layers":["l/layer.tar"]}]"#;

    /// Runs the rewriter; checks the layer came through byte for byte and the archive's own
    /// manifest was qualified.
    fn check_layer_untouched_and_manifest_qualified(tar: &[u8], layer: &[u8]) {
        let mut out = Vec::new();
        QualifyNames::new(tar).read_to_end(&mut out).unwrap();
        let at = out
            .windows(layer.len())
            .position(|w| w == layer)
            .expect("the layer's bytes pass through unchanged");
        assert!(at > 0);
        let tail = &out[at + layer.len()..];
        let top = members(&tail[(BLOCK - layer.len() % BLOCK) % BLOCK..]);
        assert_eq!(top[0].0, "manifest.json");
        let m: Value = serde_json::from_slice(&top[0].1).unwrap();
        assert_eq!(
            m[0]["RepoTags"],
            serde_json::json!(["docker.io/seed/app:1.0"])
        );
    }

    #[test]
    fn a_member_sized_only_in_pax_is_skipped_whole() {
        // As Go's archive/tar writes a member over 8 GiB: the ustar size field says 0 and a PAX
        // extended header carries the real size.
        let layer = layer_with_a_manifest();
        let record = format!("size={}\n", layer.len());
        let record = format!(
            "{} {record}",
            record.len() + 1 + (record.len() + 1).to_string().len()
        );
        let mut pax = tar::Header::new_ustar();
        pax.set_path("PaxHeaders/layer.tar").unwrap();
        pax.set_size(record.len() as u64);
        pax.set_entry_type(tar::EntryType::XHeader);
        pax.set_cksum();
        let mut tar = pax.as_bytes().to_vec();
        tar.extend_from_slice(record.as_bytes());
        tar.resize(tar.len() + (BLOCK - record.len() % BLOCK) % BLOCK, 0);
        tar.extend(member_with("l/layer.tar", &[], |_| {}));
        tar.extend_from_slice(&layer);
        tar.resize(tar.len() + (BLOCK - layer.len() % BLOCK) % BLOCK, 0);
        tar.extend(member("manifest.json", MANIFEST));
        tar.extend([0u8; 1024]);
        check_layer_untouched_and_manifest_qualified(&tar, &layer);
    }

    #[test]
    fn a_gnu_base256_size_is_read() {
        let layer = layer_with_a_manifest();
        let mut tar = member_with("l/layer.tar", &layer, |h| {
            let field = &mut h.as_old_mut().size;
            field.fill(0);
            field[0] = 0x80;
            field[4..].copy_from_slice(&(layer.len() as u64).to_be_bytes());
        });
        tar.extend(member("manifest.json", MANIFEST));
        tar.extend([0u8; 1024]);
        check_layer_untouched_and_manifest_qualified(&tar, &layer);
    }

    #[test]
    fn a_gnu_long_name_is_applied() {
        // An `L` member names the next member; that one is not the archive's manifest.json.
        let inner = br#"[{"Config":"c.json","RepoTags":["inner/app:1"],"Layers":[]}]"#;
        let long = format!("{}/manifest.json\0", "d".repeat(120));
        let mut tar = member_with("././@LongLink", long.as_bytes(), |h| {
            h.set_entry_type(tar::EntryType::GNULongName);
        });
        tar.extend(member("manifest.json", inner));
        tar.extend([0u8; 1024]);
        let mut out = Vec::new();
        QualifyNames::new(&tar[..]).read_to_end(&mut out).unwrap();
        assert_eq!(out, tar);
    }

    #[test]
    fn a_ustar_prefix_is_part_of_the_name() {
        let inner = br#"[{"Config":"c.json","RepoTags":["inner/app:1"],"Layers":[]}]"#;
        let name = format!("{}/manifest.json", "p".repeat(110));
        let mut tar = member_with(&name, inner, |_| {});
        tar.extend([0u8; 1024]);
        assert_eq!(
            &tar[..13],
            b"manifest.json",
            "the name field holds the base name"
        );
        let mut out = Vec::new();
        QualifyNames::new(&tar[..]).read_to_end(&mut out).unwrap();
        assert_eq!(out, tar);
    }

    #[test]
    fn qualifies_short_names_and_passes_the_rest_through() {
        let layer = vec![7u8; 3000];
        let manifest = br#"[{"Config":"abc.json","RepoTags":["seed/app:1.0","alpine:3","localhost:5000/x:1"],"Layers":["l/layer.tar"]}]"#;
        let repos = br#"{"seed/app":{"1.0":"abc"},"quay.io/a/b":{"v":"abc"}}"#;
        let mut tar = member("l/layer.tar", &layer);
        tar.extend(member("manifest.json", manifest));
        tar.extend(member("repositories", repos));
        tar.extend([0u8; 1024]);

        let mut out = Vec::new();
        QualifyNames::new(&tar[..]).read_to_end(&mut out).unwrap();
        let got = members(&out);
        assert_eq!(got[0], ("l/layer.tar".to_owned(), layer));
        let m: Value = serde_json::from_slice(&got[1].1).unwrap();
        assert_eq!(
            m[0]["RepoTags"],
            serde_json::json!([
                "docker.io/seed/app:1.0",
                "docker.io/library/alpine:3",
                "localhost:5000/x:1"
            ])
        );
        assert_eq!(m[0]["Layers"], serde_json::json!(["l/layer.tar"]));
        let r: Value = serde_json::from_slice(&got[2].1).unwrap();
        assert_eq!(
            r,
            serde_json::json!({"docker.io/seed/app": {"1.0": "abc"}, "quay.io/a/b": {"v": "abc"}})
        );
        assert_eq!(out.len() % BLOCK, 0);
        assert!(out.ends_with(&[0u8; 1024]));
    }

    #[test]
    fn leaves_qualified_streams_and_non_tars_byte_for_byte() {
        let manifest =
            br#"[{"Config":"abc.json","RepoTags":["docker.io/seed/app:1.0"],"Layers":[]}]"#;
        let mut tar = member("manifest.json", manifest);
        tar.extend([0u8; 1024]);
        let mut out = Vec::new();
        QualifyNames::new(&tar[..]).read_to_end(&mut out).unwrap();
        assert_eq!(out, tar);

        let junk: Vec<u8> = (0..5000u32).map(|i| (i * 7 % 251) as u8).collect();
        let mut out = Vec::new();
        QualifyNames::new(&junk[..]).read_to_end(&mut out).unwrap();
        assert_eq!(out, junk);
    }
}
