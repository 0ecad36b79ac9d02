//! A source's images as one tar stream an engine's load takes (docker 20.10's `load`,
//! podman's `load`, `ctr images import`): the shape `imgkit-archive` writes (an OCI layout
//! with docker's `manifest.json`, full names in both), each blob once, digests checked as they
//! stream.

use std::collections::HashSet;
use std::io::Write;

use imgkit_archive::{Compression, ImagesWriter};
use imgkit_types::Digest;

use crate::error::{Error, Result};
use crate::{BlobInfo, Source, StoredImage};

/// Writes `images` (as `src` describes them, under their `names`) into `out` as one archive,
/// compressed as asked; the tar's size. Blobs come from `src` in the order it reads best;
/// manifests from the descriptions. An index is written whole (docker's `manifest.json` names
/// the primary platform).
pub fn write_tar(
    src: &dyn Source,
    images: &[StoredImage],
    out: impl Write,
    compression: Compression,
) -> Result<u64> {
    let mut w = ImagesWriter::new(out, compression)?;
    let mut seen: HashSet<&Digest> = HashSet::new();
    let wanted: Vec<BlobInfo> = images
        .iter()
        .flat_map(StoredImage::blobs)
        .filter(|b| seen.insert(&b.digest))
        .cloned()
        .collect();
    let mut failed: Option<imgkit_archive::Error> = None;
    src.read_blobs(&wanted, &mut |b, r| {
        w.blob(&b.digest, b.size, r).map_err(|e| {
            let text = e.to_string();
            failed = Some(e);
            Error::Read {
                digest: b.digest.clone(),
                source: std::io::Error::other(text),
            }
        })
    })
    .map_err(|e| failed.take().map_or(e, Error::Archive))?;
    for image in images {
        for (m, bytes) in image.manifests() {
            w.blob_bytes(&m.digest, bytes)?;
        }
        let layers: Vec<Digest> = image.layers.iter().map(|l| l.digest.clone()).collect();
        w.image(
            image.names.clone(),
            (
                image.manifest.media_type.as_str(),
                &image.manifest.digest,
                image.manifest.size,
            ),
            &image.config.digest,
            &layers,
        );
    }
    Ok(w.finish()?)
}
