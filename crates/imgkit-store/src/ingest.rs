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
    let mut report = CopyReport::default();
    // Blobs put or found, by digest; member → digest for what was hashed on the way.
    let mut present: HashSet<Digest> = HashSet::new();
    let mut hashed: HashMap<String, Digest> = HashMap::new();
    let mut failed: Option<Error> = None;
    let mut visit = |name: &str, size: u64, r: &mut dyn Read| -> imgkit_archive::Result<()> {
        let res = (|| -> Result<()> {
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
                let blob = BlobInfo {
                    digest: digest.clone(),
                    size,
                    media_type: "application/octet-stream".to_owned(),
                };
                dst.put_blob(&blob, r)?;
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
            let (info, written) = dst.put_blob_hashed(size, "application/octet-stream", r)?;
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
