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
