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

/// Wraps a docker-save tar stream, qualifying the names in its `manifest.json` and
/// `repositories`. A stream that is not a tar passes through unchanged up to where it stops
/// looking like one.
pub struct QualifyNames<R> {
    inner: R,
    /// Bytes ready to hand out.
    out: Vec<u8>,
    pos: usize,
    /// Content bytes of the current member still to pass through (plus padding).
    passthrough: u64,
    /// Once the stream stops parsing as a tar, everything passes through.
    raw: bool,
    eof: bool,
}

impl<R: Read> QualifyNames<R> {
    /// Wraps `inner`.
    pub fn new(inner: R) -> Self {
        Self {
            inner,
            out: Vec::new(),
            pos: 0,
            passthrough: 0,
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
        let Some((name, size)) = parse_header(&header) else {
            // An end-of-archive block, or not a tar: stop interpreting.
            self.out.extend_from_slice(&header);
            self.raw = true;
            return Ok(());
        };
        let padded = size.div_ceil(BLOCK as u64) * BLOCK as u64;
        let regular = header[156] == b'0' || header[156] == 0;
        if regular && matches!(name.as_str(), "manifest.json" | "repositories") && size <= MAX_META
        {
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
            let rewritten = if name == "manifest.json" {
                qualify_manifest(body)
            } else {
                qualify_repositories(body)
            };
            match rewritten {
                Some(new) => {
                    let mut h = header;
                    set_size(&mut h, new.len() as u64);
                    self.out.extend_from_slice(&h);
                    self.out.extend_from_slice(&new);
                    let pad = (BLOCK - new.len() % BLOCK) % BLOCK;
                    self.out.resize(self.out.len() + pad, 0);
                }
                None => {
                    self.out.extend_from_slice(&header);
                    self.out.extend_from_slice(&content);
                }
            }
            return Ok(());
        }
        self.out.extend_from_slice(&header);
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

/// The member name and size of a ustar/GNU header with a valid checksum.
fn parse_header(h: &[u8; BLOCK]) -> Option<(String, u64)> {
    if h.iter().all(|&b| b == 0) {
        return None;
    }
    let stored = parse_octal(&h[148..156])?;
    let sum: u64 = h
        .iter()
        .enumerate()
        .map(|(i, &b)| {
            if (148..156).contains(&i) {
                32
            } else {
                u64::from(b)
            }
        })
        .sum();
    if stored != sum {
        return None;
    }
    let end = h[..100].iter().position(|&b| b == 0).unwrap_or(100);
    let name = String::from_utf8_lossy(&h[..end]).into_owned();
    let size = parse_octal(&h[124..136])?;
    Some((name.trim_start_matches("./").to_owned(), size))
}

fn parse_octal(field: &[u8]) -> Option<u64> {
    let s = std::str::from_utf8(field)
        .ok()?
        .trim_matches(|c: char| c == '\0' || c == ' ');
    if s.is_empty() {
        return Some(0);
    }
    u64::from_str_radix(s, 8).ok()
}

/// Writes `size` into the header and recomputes its checksum.
fn set_size(h: &mut [u8; BLOCK], size: u64) {
    let field = format!("{size:011o}\0");
    h[124..136].copy_from_slice(field.as_bytes());
    h[148..156].fill(b' ');
    let sum: u64 = h.iter().map(|&b| u64::from(b)).sum();
    let field = format!("{sum:06o}\0 ");
    h[148..156].copy_from_slice(field.as_bytes());
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
            let Some((name, size)) = parse_header(&h) else {
                break;
            };
            let start = at + BLOCK;
            out.push((name, tar[start..start + size as usize].to_vec()));
            at = start + (size as usize).div_ceil(BLOCK) * BLOCK;
        }
        out
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
