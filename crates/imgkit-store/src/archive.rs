//! Archive files (docker-save, OCI archives; plain, gzip or zstd) and OCI layout directories as
//! sources, read through `imgkit-archive`.

use std::collections::{HashMap, HashSet};
use std::io::Read;
use std::path::Path;

use imgkit_archive::{Archive, Blob};
use imgkit_types::{Digest, ImageRecord};

use crate::error::{Error, Result};
use crate::verify::sha256_of;
use crate::{BlobInfo, Source, StoredImage};

/// The OCI image manifest media type (what a manifest made up for a docker ≤24 archive gets).
pub(crate) const MEDIA_OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

/// An archive file or an OCI layout directory, scanned.
#[derive(Debug)]
pub struct ArchiveSource {
    archive: Archive,
    name: String,
    /// Member path of each blob, by digest.
    paths: HashMap<Digest, String>,
}

impl ArchiveSource {
    /// Opens a tar file (plain, gzip or zstd) or an OCI layout directory.
    pub fn open(path: &Path) -> Result<Self> {
        Ok(Self::new(Archive::open(path)?, path.display().to_string()))
    }

    /// A scanned archive (not one read from a stream: its blobs are gone).
    pub fn new(archive: Archive, name: String) -> Self {
        let mut paths = HashMap::new();
        for image in archive.images() {
            for p in &image.platforms {
                for b in p.manifest.iter().chain([&p.config]).chain(&p.layers) {
                    paths.insert(b.digest.clone(), b.path.clone());
                }
            }
        }
        Self {
            archive,
            name,
            paths,
        }
    }

    /// The archive as `imgkit-archive` sees it.
    pub fn archive(&self) -> &Archive {
        &self.archive
    }
}

fn info(b: &Blob) -> BlobInfo {
    BlobInfo {
        digest: b.digest.clone(),
        size: b.size,
        media_type: b.media_type.clone(),
    }
}

/// A manifest for an image the archive holds without one (docker ≤24 saves).
fn made_up_manifest(config: &BlobInfo, layers: &[BlobInfo]) -> Vec<u8> {
    let desc = |b: &BlobInfo| serde_json::json!({"mediaType": b.media_type, "digest": b.digest.to_string(), "size": b.size});
    let m = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": MEDIA_OCI_MANIFEST,
        "config": desc(config),
        "layers": layers.iter().map(desc).collect::<Vec<_>>(),
    });
    serde_json::to_vec(&m).expect("a JSON value serializes")
}

impl Source for ArchiveSource {
    fn describe(&self) -> String {
        self.name.clone()
    }

    fn records(&self) -> Vec<ImageRecord> {
        self.archive.records()
    }

    fn images(&self) -> Result<Vec<StoredImage>> {
        // The manifests the archive holds, read in one pass.
        let wanted: HashSet<String> = self
            .archive
            .images()
            .iter()
            .filter_map(|im| im.primary().manifest.as_ref().map(|m| m.path.clone()))
            .collect();
        let mut bytes: HashMap<String, Vec<u8>> = HashMap::new();
        if !wanted.is_empty() {
            self.archive.read_members(&wanted, &mut |path, r| {
                let mut buf = Vec::new();
                r.read_to_end(&mut buf)
                    .map_err(imgkit_archive::Error::Read)?;
                bytes.insert(path.to_owned(), buf);
                Ok(())
            })?;
        }
        let mut out = Vec::new();
        for image in self.archive.images() {
            let p = image.primary();
            let config = info(&p.config);
            let layers: Vec<BlobInfo> = p.layers.iter().map(info).collect();
            let (manifest, manifest_bytes) = if let Some(m) = &p.manifest {
                let b = bytes.remove(&m.path).ok_or_else(|| Error::MissingBlob {
                    source_name: self.name.clone(),
                    digest: m.digest.clone(),
                })?;
                (info(m), b)
            } else {
                let b = made_up_manifest(&config, &layers);
                let m = BlobInfo {
                    digest: sha256_of(&b),
                    size: b.len() as u64,
                    media_type: MEDIA_OCI_MANIFEST.to_owned(),
                };
                (m, b)
            };
            out.push(StoredImage {
                names: image.names.clone(),
                manifest,
                manifest_bytes,
                config,
                layers,
            });
        }
        Ok(out)
    }

    fn read_blobs(
        &self,
        wanted: &[BlobInfo],
        f: &mut dyn FnMut(&BlobInfo, &mut dyn Read) -> Result<()>,
    ) -> Result<()> {
        let mut by_path: HashMap<&str, &BlobInfo> = HashMap::new();
        for b in wanted {
            let path = self
                .paths
                .get(&b.digest)
                .ok_or_else(|| Error::MissingBlob {
                    source_name: self.name.clone(),
                    digest: b.digest.clone(),
                })?;
            by_path.insert(path.as_str(), b);
        }
        let paths: HashSet<String> = by_path.keys().map(|p| (*p).to_owned()).collect();
        // The callback's own errors travel through imgkit-archive's error type and back.
        let mut failed: Option<Error> = None;
        let res = self.archive.read_members(&paths, &mut |path, r| {
            let Some(b) = by_path.get(path) else {
                return Ok(());
            };
            match f(b, r) {
                Ok(()) => Ok(()),
                Err(e) => {
                    failed = Some(e);
                    Err(imgkit_archive::Error::Read(std::io::Error::other(
                        "stopped by the destination",
                    )))
                }
            }
        });
        if let Some(e) = failed {
            return Err(e);
        }
        res?;
        Ok(())
    }
}
