//! Archive files (docker-save, OCI archives; plain, gzip or zstd) and OCI layout directories as
//! sources, read through `imgkit-archive`.

use std::collections::{HashMap, HashSet};
use std::io::Read;
use std::path::Path;

use imgkit_archive::{Archive, Blob};
use imgkit_types::{Digest, ImageRecord, ImageRef};

use crate::error::{Error, Result};
use crate::verify::sha256_of;
use crate::{BlobInfo, PlatformManifest, Source, StoredImage};

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

/// An image held without a manifest (a docker ≤24 save, dockerd's own store): described by
/// the OCI manifest made up for its config and layers, the same bytes whichever way it was
/// read, so its manifest digest is the same too.
pub fn made_up_image(names: Vec<ImageRef>, config: BlobInfo, layers: Vec<BlobInfo>) -> StoredImage {
    let bytes = made_up_manifest(&config, &layers);
    let manifest = BlobInfo {
        digest: sha256_of(&bytes),
        size: bytes.len() as u64,
        media_type: MEDIA_OCI_MANIFEST.to_owned(),
    };
    StoredImage::single(names, manifest, bytes, config, layers)
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

/// A descriptor of the archive model's as the store's.
fn desc_info(d: &imgkit_archive::oci::Descriptor) -> Option<BlobInfo> {
    Some(BlobInfo {
        digest: d.digest.parse().ok()?,
        size: u64::try_from(d.size).ok()?,
        media_type: d.media_type.clone(),
    })
}

/// Every platform manifest of the index `bytes` lists, when the archive holds each of them and
/// everything they name; `None` otherwise (the image is then its present platform's manifest).
fn whole_index(archive: &Archive, bytes: &[u8]) -> Option<Vec<PlatformManifest>> {
    let index = imgkit_archive::oci::parse_index(bytes).ok()?;
    if index.manifests.is_empty() {
        return None;
    }
    let mut out = Vec::with_capacity(index.manifests.len());
    for child in &index.manifests {
        let manifest = desc_info(child)?;
        let manifest_bytes = archive.json_blob(&manifest.digest)?.to_vec();
        let m = imgkit_archive::oci::parse_manifest(&manifest_bytes).ok()?;
        let config = desc_info(&m.config)?;
        let layers = m.layers.iter().map(desc_info).collect::<Option<Vec<_>>>()?;
        if !std::iter::once(&config)
            .chain(&layers)
            .all(|b| archive.has_blob(&b.digest))
        {
            return None;
        }
        out.push(PlatformManifest {
            platform: child.platform.as_ref().map(ToString::to_string),
            manifest,
            manifest_bytes,
            config,
            layers,
        });
    }
    Some(out)
}

/// The images of a scanned archive as the store describes them: an index kept whole when the
/// archive holds all it lists, else the present platform's manifest (made up for a docker ≤24
/// image, which has none).
pub(crate) fn describe_images(archive: &Archive, name: &str) -> Result<Vec<StoredImage>> {
    let mut out = Vec::new();
    for image in archive.images() {
        let p = image.primary();
        let config = info(&p.config);
        let layers: Vec<BlobInfo> = p.layers.iter().map(info).collect();
        if let Some(t) = &image.target
            && image.missing_platforms.is_empty()
            && p.manifest.as_ref().is_some_and(|m| m.digest != t.digest)
            && let Some(bytes) = archive.json_blob(&t.digest)
            && let Some(platforms) = whole_index(archive, bytes)
        {
            out.push(StoredImage {
                names: image.names.clone(),
                manifest: info(t),
                manifest_bytes: bytes.to_vec(),
                config,
                layers,
                platforms,
            });
            continue;
        }
        let (manifest, manifest_bytes) = if let Some(m) = &p.manifest {
            let b = archive
                .json_blob(&m.digest)
                .or_else(|| archive.json_member(&m.path))
                .ok_or_else(|| Error::MissingBlob {
                    source_name: name.to_owned(),
                    digest: m.digest.clone(),
                })?;
            (info(m), b.to_vec())
        } else {
            out.push(made_up_image(image.names.clone(), config, layers));
            continue;
        };
        out.push(StoredImage::single(
            image.names.clone(),
            manifest,
            manifest_bytes,
            config,
            layers,
        ));
    }
    Ok(out)
}

impl Source for ArchiveSource {
    fn describe(&self) -> String {
        self.name.clone()
    }

    fn records(&self) -> Vec<ImageRecord> {
        self.archive.records()
    }

    fn warnings(&self) -> Vec<String> {
        self.archive.warnings()
    }

    fn images(&self) -> Result<Vec<StoredImage>> {
        describe_images(&self.archive, &self.name)
    }

    fn read_blobs(
        &self,
        wanted: &[BlobInfo],
        f: &mut dyn FnMut(&BlobInfo, &mut dyn Read) -> Result<()>,
    ) -> Result<()> {
        let mut by_path: HashMap<String, &BlobInfo> = HashMap::new();
        for b in wanted {
            let path = match self.paths.get(&b.digest) {
                Some(p) => p.clone(),
                None if self.archive.has_blob(&b.digest) => Archive::blob_path(&b.digest),
                None => {
                    return Err(Error::MissingBlob {
                        source_name: self.name.clone(),
                        digest: b.digest.clone(),
                    });
                }
            };
            by_path.insert(path, b);
        }
        let paths: HashSet<String> = by_path.keys().cloned().collect();
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
