//! An image tar stream (an engine's save: docker ≤24's legacy layout, docker ≥25's and ctr's
//! OCI layout with `manifest.json`, podman's docker-archive, an OCI archive) into a
//! [`Destination`] in one pass: each blob goes into the store as it passes, never a whole
//! layer in memory and no temporary archive.
//!
//! A member named `blobs/sha256/<hex>` carries its digest: the destination is asked first
//! (`has_blob`), and only what it lacks is put (checked as it streams). Any other member that
//! is not metadata (docker ≤24's `<id>/layer.tar`, podman's `<hex>.tar`) is hashed as it
//! streams into the store ([`Destination::put_blob_hashed`]) and checked at the end against
//! the diff ID its image's config gives. Small JSON members (configs, manifests, indexes,
//! `manifest.json`) are kept as the scan reads them; at the end the images are described as
//! [`crate::ArchiveSource`] describes an archive, their manifests put, and the images handed
//! back for the caller to [`Destination::commit`] (under the names it chooses).

use std::collections::{HashMap, HashSet};
use std::io::Read;

use imgkit_archive::{Archive, Limits};
use imgkit_types::Digest;

use crate::archive::describe_images;
use crate::copy::{CopyReport, put_manifests};
use crate::error::{Error, Result};
use crate::{BlobInfo, Destination, StoredImage};

/// What [`ingest`] read: the images (not yet committed) and what it wrote.
#[derive(Debug, Clone)]
pub struct Ingested {
    pub images: Vec<StoredImage>,
    pub report: CopyReport,
}

/// Members that are never blobs.
const METADATA: [&str; 4] = ["manifest.json", "index.json", "oci-layout", "repositories"];

/// An uncompressed layer (docker ≤24's `layer.tar`).
const MEDIA_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";

/// Whether a blob's first bytes are JSON's (a config, a manifest, an index).
fn looks_json(head: &[u8]) -> bool {
    matches!(
        head.iter().find(|b| !b.is_ascii_whitespace()),
        Some(b'{' | b'[')
    )
}

/// A layer's media type by its first bytes.
fn layer_media_type(head: &[u8]) -> &'static str {
    match imgkit_archive::detect(head) {
        imgkit_archive::Compression::Gzip => "application/vnd.oci.image.layer.v1.tar+gzip",
        imgkit_archive::Compression::Zstd => "application/vnd.oci.image.layer.v1.tar+zstd",
        imgkit_archive::Compression::None => MEDIA_LAYER,
    }
}

/// Reads up to `buf.len()` bytes (fewer only at the end of `r`).
fn read_head(r: &mut dyn Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// Whether a member is docker ≤24's per-layer metadata (`<id>/json`, `<id>/VERSION`).
fn legacy_metadata(name: &str) -> bool {
    name.ends_with("/json") || name.ends_with("/VERSION")
}

/// Reads the image tar `stream` (plain, gzip or zstd) once, putting each blob `dst` lacks;
/// then puts the manifests it lacks and returns the images to commit. `label` names the
/// stream in errors.
pub fn ingest(
    stream: impl Read + 'static,
    dst: &mut dyn Destination,
    label: &str,
) -> Result<Ingested> {
    ingest_expecting(stream, dst, label, &[])
}

/// Like [`ingest`], told beforehand the diff IDs of the images in the stream (each image's
/// `rootfs.diff_ids`, in order: an engine's inspect gives them before its save starts). A
/// docker ≤24 `<id>/layer.tar` is named by position, not digest, but its `<id>/json` comes
/// just before it and names its parent: from the chain of parents seen so far, the layer's
/// depth, and so the diff IDs it can be. When `dst` holds every one of them, the layer is
/// passed over unread (not hashed, not sent); at the end its config's diff ID for it must be
/// one `dst` holds, or the ingest fails before anything is named.
pub fn ingest_expecting(
    stream: impl Read + 'static,
    dst: &mut dyn Destination,
    label: &str,
    expected: &[Vec<Digest>],
) -> Result<Ingested> {
    let mut report = CopyReport::default();
    // Legacy layer directories → their parent's (`None`: a first layer); members passed over
    // unread → the diff IDs they could be.
    let mut parents: HashMap<String, Option<String>> = HashMap::new();
    let mut passed: HashMap<String, Vec<Digest>> = HashMap::new();
    // What `dst` was asked about candidates, so a layer of unknown depth (any diff ID of any
    // image) does not ask again per layer.
    let mut held: HashMap<Digest, bool> = HashMap::new();
    // Blobs put or found, by digest; member → digest for what was hashed on the way.
    let mut present: HashSet<Digest> = HashSet::new();
    let mut hashed: HashMap<String, Digest> = HashMap::new();
    let mut failed: Option<Error> = None;
    let mut visit = |name: &str, size: u64, r: &mut dyn Read| -> imgkit_archive::Result<()> {
        let res = (|| -> Result<()> {
            if !expected.is_empty()
                && let Some(dir) = name.strip_suffix("/json")
            {
                parents.insert(dir.to_owned(), legacy_parent(r));
                return Ok(());
            }
            if METADATA.contains(&name) || legacy_metadata(name) {
                return Ok(());
            }
            if let Some(digest) = Archive::blob_digest(name) {
                if present.contains(&digest) || dst.has_blob(&digest) {
                    if present.insert(digest) {
                        report.blobs_skipped += 1;
                        report.bytes_skipped += size;
                    }
                    return Ok(());
                }
                let mut head = [0u8; 512];
                let got = read_head(r, &mut head[..size.min(512) as usize]).map_err(|source| {
                    Error::Read {
                        digest: digest.clone(),
                        source,
                    }
                })?;
                let head = &head[..got];
                // A config, manifest or index: the scan keeps it, and it is put at the end
                // with the media type its descriptor gives (a registry takes manifests apart
                // from blobs, and after what they name).
                if looks_json(head) && size <= Limits::default().max_json {
                    return Ok(());
                }
                let blob = BlobInfo {
                    digest: digest.clone(),
                    size,
                    media_type: layer_media_type(head).to_owned(),
                };
                dst.put_blob(&blob, &mut std::io::Cursor::new(head).chain(r))?;
                present.insert(digest);
                report.blobs_written += 1;
                report.bytes_written += size;
                return Ok(());
            }
            // A docker ≤24 config (`<hex>.json`) names its digest too; small JSON stays in
            // the scan's memory either way and is put from there at the end.
            if std::path::Path::new(name)
                .extension()
                .is_some_and(|e| e.eq_ignore_ascii_case("json"))
            {
                return Ok(());
            }
            if let Some(dir) = name.strip_suffix("/layer.tar") {
                let could_be = candidates(dir, expected, &parents, &hashed, &passed);
                if !could_be.is_empty()
                    && could_be.iter().all(|d| {
                        present.contains(d)
                            || *held.entry(d.clone()).or_insert_with(|| dst.has_blob(d))
                    })
                {
                    passed.insert(name.to_owned(), could_be);
                    return Ok(());
                }
                // Only one diff ID it can be: put under it, the destination checks the digest
                // as it takes it (not hashed here as well).
                if let [digest] = could_be.as_slice()
                    && !present.contains(digest)
                {
                    let blob = BlobInfo {
                        digest: digest.clone(),
                        size,
                        media_type: MEDIA_LAYER.to_owned(),
                    };
                    dst.put_blob(&blob, r)?;
                    present.insert(digest.clone());
                    report.blobs_written += 1;
                    report.bytes_written += size;
                    hashed.insert(name.to_owned(), digest.clone());
                    return Ok(());
                }
            }
            let (info, written) = dst.put_blob_hashed(size, MEDIA_LAYER, r)?;
            if present.insert(info.digest.clone()) {
                if written {
                    report.blobs_written += 1;
                    report.bytes_written += size;
                } else {
                    report.blobs_skipped += 1;
                    report.bytes_skipped += size;
                }
            }
            hashed.insert(name.to_owned(), info.digest);
            Ok(())
        })();
        match res {
            Ok(()) => Ok(()),
            Err(e) => {
                failed = Some(e);
                Err(imgkit_archive::Error::Read(std::io::Error::other(
                    "stopped by the destination",
                )))
            }
        }
    };
    let scanned = Archive::from_reader_visiting(stream, Limits::default(), &mut visit);
    if let Some(e) = failed {
        return Err(e);
    }
    let archive = scanned?;
    let images = describe_images(&archive, label)?;
    // Layers hashed on the way must be the ones the configs name.
    for image in archive.images() {
        for p in &image.platforms {
            for l in &p.layers {
                if let Some(actual) = hashed.get(&l.path)
                    && *actual != l.digest
                {
                    return Err(Error::LayerMismatch {
                        path: l.path.clone(),
                        expected: l.digest.clone(),
                        actual: actual.clone(),
                    });
                }
                // Passed over unread: the layer its config names must be one the store has.
                if passed.contains_key(&l.path) && !present.contains(&l.digest) {
                    if !dst.has_blob(&l.digest) {
                        return Err(Error::Incomplete {
                            image: p.config.digest.clone(),
                            digest: l.digest.clone(),
                            destination: dst.describe(),
                        });
                    }
                    present.insert(l.digest.clone());
                    report.blobs_skipped += 1;
                    report.bytes_skipped += l.size;
                }
            }
        }
    }
    // Configs (and any small blob) the scan kept in memory rather than streamed.
    let mut seen: HashSet<Digest> = HashSet::new();
    for image in &images {
        for b in image.blobs() {
            if present.contains(&b.digest) || !seen.insert(b.digest.clone()) {
                continue;
            }
            if dst.has_blob(&b.digest) {
                report.blobs_skipped += 1;
                report.bytes_skipped += b.size;
                continue;
            }
            let bytes = kept_bytes(&archive, image, b).ok_or_else(|| Error::MissingBlob {
                source_name: label.to_owned(),
                digest: b.digest.clone(),
            })?;
            dst.put_blob(b, &mut &bytes[..])?;
            report.blobs_written += 1;
            report.bytes_written += b.size;
        }
    }
    // Manifests that passed in the stream are counted already.
    put_manifests(dst, &images, &mut present, &mut report)?;
    report.images = images.len();
    Ok(Ingested { images, report })
}

/// The `parent` a docker ≤24 `<id>/json` names (`None`: a first layer, or unreadable).
fn legacy_parent(r: &mut dyn Read) -> Option<String> {
    let mut text = Vec::new();
    r.take(1 << 20).read_to_end(&mut text).ok()?;
    let v: serde_json::Value = serde_json::from_slice(&text).ok()?;
    v.get("parent")?.as_str().map(str::to_owned)
}

/// The diff IDs the layer of legacy directory `dir` can be: its depth from the chain of
/// parents seen so far, and of each expected image deep enough (and agreeing with what its
/// ancestors were found to be) the diff ID at that depth. When the chain does not reach a
/// first layer yet (a parent later in the stream), any diff ID of any expected image.
fn candidates(
    dir: &str,
    expected: &[Vec<Digest>],
    parents: &HashMap<String, Option<String>>,
    hashed: &HashMap<String, Digest>,
    passed: &HashMap<String, Vec<Digest>>,
) -> Vec<Digest> {
    let mut chain = vec![dir.to_owned()];
    loop {
        match parents.get(chain.last().expect("not empty")) {
            Some(Some(p)) if !chain.contains(p) && chain.len() <= 1024 => chain.push(p.clone()),
            Some(None) => break,
            _ => {
                let mut all: Vec<Digest> = expected.iter().flatten().cloned().collect();
                all.sort_by(|a, b| a.as_str().cmp(b.as_str()));
                all.dedup();
                return all;
            }
        }
    }
    chain.reverse();
    let depth = chain.len() - 1;
    let mut out: Vec<Digest> = Vec::new();
    for diffs in expected.iter().filter(|d| d.len() > depth) {
        let agrees = chain[..depth].iter().enumerate().all(|(k, a)| {
            let member = format!("{a}/layer.tar");
            match (hashed.get(&member), passed.get(&member)) {
                (Some(h), _) => *h == diffs[k],
                (None, Some(could)) => could.contains(&diffs[k]),
                (None, None) => true,
            }
        });
        if agrees && !out.contains(&diffs[depth]) {
            out.push(diffs[depth].clone());
        }
    }
    out
}

/// The bytes the scan kept of a small blob: by its blob path, or (docker ≤24's config) by the
/// member the archive model names for it.
fn kept_bytes<'a>(archive: &'a Archive, _image: &StoredImage, b: &BlobInfo) -> Option<&'a [u8]> {
    if let Some(bytes) = archive.json_blob(&b.digest) {
        return Some(bytes);
    }
    archive.images().iter().find_map(|im| {
        im.platforms.iter().find_map(|p| {
            (p.config.digest == b.digest)
                .then(|| archive.json_member(&p.config.path))
                .flatten()
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(c: char) -> Digest {
        format!("sha256:{}", c.to_string().repeat(64))
            .parse()
            .unwrap()
    }

    #[test]
    fn a_layers_depth_comes_from_its_parents_and_names_what_it_can_be() {
        // Two images on one base `a`: a|b and a|c|e.
        let expected = vec![vec![d('a'), d('b')], vec![d('a'), d('c'), d('e')]];
        let mut parents = HashMap::new();
        let hashed = HashMap::new();
        let passed = HashMap::new();
        parents.insert("root".to_owned(), None);
        assert_eq!(
            candidates("root", &expected, &parents, &hashed, &passed),
            vec![d('a')]
        );
        parents.insert("mid".to_owned(), Some("root".to_owned()));
        assert_eq!(
            candidates("mid", &expected, &parents, &hashed, &passed),
            vec![d('b'), d('c')]
        );
        // What the middle layer was found to be narrows its child's.
        parents.insert("top".to_owned(), Some("mid".to_owned()));
        let hashed = HashMap::from([("mid/layer.tar".to_owned(), d('c'))]);
        assert_eq!(
            candidates("top", &expected, &parents, &hashed, &passed),
            vec![d('e')]
        );
        let hashed = HashMap::from([("mid/layer.tar".to_owned(), d('b'))]);
        assert!(candidates("top", &expected, &parents, &hashed, &passed).is_empty());
        // A parent not seen yet: any layer of any image.
        parents.insert("orphan".to_owned(), Some("later".to_owned()));
        assert_eq!(
            candidates("orphan", &expected, &parents, &HashMap::new(), &passed),
            vec![d('a'), d('b'), d('c'), d('e')]
        );
        // A loop in the parents (a damaged stream) is not followed forever.
        parents.insert("x".to_owned(), Some("y".to_owned()));
        parents.insert("y".to_owned(), Some("x".to_owned()));
        assert_eq!(
            candidates("x", &expected, &parents, &HashMap::new(), &passed).len(),
            4
        );
    }

    #[test]
    fn the_parent_of_a_legacy_layer_json() {
        let p = |s: &str| legacy_parent(&mut s.as_bytes());
        assert_eq!(p(r#"{"id":"b","parent":"a"}"#).as_deref(), Some("a"));
        assert_eq!(p(r#"{"id":"a","created":"1970-01-01T00:00:00Z"}"#), None);
        assert_eq!(p("not json"), None);
    }
}
