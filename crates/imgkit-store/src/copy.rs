//! The copy between a source and a destination: ask first, send only what is missing, check
//! every digest moved, name the images last.

use std::collections::HashSet;

use imgkit_types::Digest;

use crate::error::{Error, Result};
use crate::{BlobInfo, Destination, Source, StoredImage};

/// What a copy moved and what it found already there.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct CopyReport {
    pub images: usize,
    /// Blobs (manifests, configs, layers) written, and their bytes.
    pub blobs_written: usize,
    pub bytes_written: u64,
    /// Blobs the destination already held, and their bytes.
    pub blobs_skipped: usize,
    pub bytes_skipped: u64,
}

/// Copies `images` (as `src` describes them) into `dst`: each blob the destination lacks is
/// read once from the source and checked as it streams; the images are committed at the end,
/// so a failure before that leaves the destination's names as they were.
pub fn copy(
    src: &dyn Source,
    dst: &mut dyn Destination,
    images: &[StoredImage],
) -> Result<CopyReport> {
    let mut report = CopyReport {
        images: images.len(),
        ..CopyReport::default()
    };
    let mut seen: HashSet<&Digest> = HashSet::new();
    // Manifests go through `put_manifests`, after every blob.
    let mut missing: Vec<BlobInfo> = Vec::new();
    for image in images {
        for b in image.blobs() {
            if !seen.insert(&b.digest) {
                continue;
            }
            if dst.has_blob(&b.digest) {
                report.blobs_skipped += 1;
                report.bytes_skipped += b.size;
            } else {
                missing.push(b.clone());
            }
        }
    }
    let mut received: HashSet<Digest> = HashSet::new();
    if !missing.is_empty() {
        src.read_blobs(&missing, &mut |b, r| {
            if !received.insert(b.digest.clone()) {
                return Ok(());
            }
            dst.put_blob(b, r)?;
            report.blobs_written += 1;
            report.bytes_written += b.size;
            Ok(())
        })?;
    }
    if let Some(b) = missing.iter().find(|b| !received.contains(&b.digest)) {
        return Err(Error::MissingBlob {
            source_name: src.describe(),
            digest: b.digest.clone(),
        });
    }
    put_manifests(dst, images, &mut HashSet::new(), &mut report)?;
    dst.commit(images)?;
    Ok(report)
}

/// Puts the manifests of `images` the destination lacks (each platform's, then the top one:
/// an index after the manifests it lists), counting them in `report`. Manifests are small
/// and carried in the images' descriptions.
pub fn put_manifests<S: std::hash::BuildHasher>(
    dst: &mut dyn Destination,
    images: &[StoredImage],
    seen: &mut HashSet<Digest, S>,
    report: &mut CopyReport,
) -> Result<()> {
    for image in images {
        for (m, bytes) in image.manifests() {
            if !seen.insert(m.digest.clone()) {
                continue;
            }
            if dst.has_blob(&m.digest) {
                report.blobs_skipped += 1;
                report.bytes_skipped += m.size;
            } else {
                dst.put_blob(m, &mut &bytes[..])?;
                report.blobs_written += 1;
                report.bytes_written += m.size;
            }
        }
    }
    Ok(())
}
