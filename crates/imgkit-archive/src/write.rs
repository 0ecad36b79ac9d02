//! Writing archives: a subset of an existing archive (just the selected images' configs and
//! layers, each blob once, streamed member by member), or new images from bytes. Every archive
//! written holds both docker's `manifest.json` and an OCI layout (`oci-layout`, `index.json`,
//! `blobs/sha256/…`), with full names in `io.containerd.image.name` and
//! `org.opencontainers.image.ref.name`, so docker, containerd and podman all load it by name.
//! Output is reproducible: fixed mtimes, owners and modes; members in a fixed order.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{self, Read, Write};

use imgkit_types::{Digest, ImageRef};
use serde::Serialize;
use sha2::{Digest as _, Sha256};

use crate::archive::Archive;
use crate::compress::{Compression, Encoder};
use crate::error::{Error, Result};
use crate::oci::{self, Descriptor, Platform};
use crate::path;
use crate::scan::hex;

/// What a write produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct WriteSummary {
    pub images: usize,
    pub names: usize,
    pub blobs: usize,
    /// Bytes of tar written (before compression).
    pub bytes: u64,
}

fn sha256_digest(bytes: &[u8]) -> Digest {
    Digest::sha256_hex(&hex(&Sha256::digest(bytes))).expect("sha256 hex")
}

/// A tar stream being written: ustar headers, fixed metadata.
struct TarOut<W: Write> {
    out: W,
    bytes: u64,
    buf: Vec<u8>,
}

impl<W: Write> TarOut<W> {
    fn new(out: W) -> Self {
        Self {
            out,
            bytes: 0,
            buf: vec![0; 1 << 20],
        }
    }

    fn header(&mut self, name: &str, size: u64, kind: tar::EntryType) -> Result<()> {
        let mut h = tar::Header::new_ustar();
        h.set_path(name).map_err(Error::Write)?;
        h.set_size(size);
        h.set_entry_type(kind);
        h.set_mode(if kind == tar::EntryType::Directory {
            0o755
        } else {
            0o644
        });
        h.set_mtime(0);
        h.set_uid(0);
        h.set_gid(0);
        h.set_cksum();
        self.raw(h.as_bytes())
    }

    fn raw(&mut self, bytes: &[u8]) -> Result<()> {
        self.out.write_all(bytes).map_err(Error::Write)?;
        self.bytes += bytes.len() as u64;
        Ok(())
    }

    fn pad(&mut self, size: u64) -> Result<()> {
        let rem = (size % 512) as usize;
        if rem != 0 {
            self.raw(&[0u8; 512][..512 - rem])?;
        }
        Ok(())
    }

    fn dir(&mut self, name: &str) -> Result<()> {
        self.header(name, 0, tar::EntryType::Directory)
    }

    fn file(&mut self, name: &str, data: &[u8]) -> Result<()> {
        self.header(name, data.len() as u64, tar::EntryType::Regular)?;
        self.raw(data)?;
        self.pad(data.len() as u64)
    }

    /// Copies exactly `size` bytes of a blob from `r`, checking its digest on the way when
    /// `expect` is given.
    fn stream(
        &mut self,
        name: &str,
        size: u64,
        r: &mut dyn Read,
        expect: Option<&Digest>,
    ) -> Result<()> {
        self.header(name, size, tar::EntryType::Regular)?;
        let mut hasher = expect.map(|_| Sha256::new());
        let mut left = size;
        while left > 0 {
            let want = left.min(self.buf.len() as u64) as usize;
            let n = match r.read(&mut self.buf[..want]) {
                Ok(0) => {
                    return Err(Error::Truncated {
                        member: name.to_owned(),
                    });
                }
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(crate::scan::map_io(e, name)),
            };
            if let Some(h) = hasher.as_mut() {
                h.update(&self.buf[..n]);
            }
            self.out.write_all(&self.buf[..n]).map_err(Error::Write)?;
            self.bytes += n as u64;
            left -= n as u64;
        }
        if let (Some(h), Some(want)) = (hasher, expect) {
            let got = hex(&h.finalize());
            if got != want.hex() {
                return Err(Error::DigestMismatch {
                    path: name.to_owned(),
                    expected: want.to_string(),
                    actual: format!("sha256:{got}"),
                });
            }
        }
        self.pad(size)
    }

    fn finish(mut self) -> Result<(W, u64)> {
        self.raw(&[0u8; 1024])?;
        Ok((self.out, self.bytes))
    }
}

/// One image as it will appear in the output's metadata.
struct OutImage {
    names: Vec<ImageRef>,
    /// What index.json points at (a manifest, or an index of several).
    top: Descriptor,
    /// The docker-shaped entry (one platform).
    config: Digest,
    layers: Vec<Digest>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct IndexOut<'a> {
    schema_version: u32,
    media_type: &'a str,
    manifests: Vec<Descriptor>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ManifestOut<'a> {
    schema_version: u32,
    media_type: &'a str,
    config: Descriptor,
    layers: Vec<Descriptor>,
}

fn desc(media_type: &str, digest: &Digest, size: u64, platform: Option<Platform>) -> Descriptor {
    Descriptor {
        media_type: media_type.to_owned(),
        digest: digest.to_string(),
        size: i64::try_from(size).unwrap_or(i64::MAX),
        platform,
        annotations: None,
    }
}

/// Ends an archive: its `index.json` and `manifest.json`, the tar trailer, and the compressor's
/// last frame. Returns the tar's size.
fn finish_archive<W: Write>(mut tar: TarOut<Encoder<W>>, images: &[OutImage]) -> Result<u64> {
    let (index, manifest) = metadata(images);
    tar.file("index.json", &index)?;
    tar.file("manifest.json", &manifest)?;
    let (enc, bytes) = tar.finish()?;
    enc.finish().map_err(Error::Write)?;
    Ok(bytes)
}

/// `index.json` and `manifest.json` for the output.
fn metadata(images: &[OutImage]) -> (Vec<u8>, Vec<u8>) {
    let mut manifests = Vec::new();
    let mut docker = Vec::new();
    for im in images {
        if im.names.is_empty() {
            manifests.push(im.top.clone());
        }
        for name in &im.names {
            let full = name.normalized();
            let full = match (full.tag(), full.digest()) {
                (Some(t), _) => format!("{}:{t}", full.normalized_name()),
                (None, Some(d)) => format!("{}@{d}", full.normalized_name()),
                (None, None) => unreachable!("normalized refs have a tag or digest"),
            };
            let mut d = im.top.clone();
            d.annotations = Some(BTreeMap::from([
                (oci::ANNOTATION_IMAGE_NAME.to_owned(), full.clone()),
                (oci::ANNOTATION_REF_NAME.to_owned(), full),
            ]));
            manifests.push(d);
        }
        let repo_tags: Vec<String> = im
            .names
            .iter()
            .filter_map(|n| {
                let n = n.normalized();
                // Full names: podman reads a short `name:tag` as `localhost/name:tag`
                // (podman#9590); docker normalizes either form to the same name.
                n.tag().map(|t| format!("{}:{t}", n.normalized_name()))
            })
            .collect();
        docker.push(oci::DockerEntry {
            config: path::blob_path(&im.config),
            repo_tags: Some(repo_tags),
            layers: im.layers.iter().map(path::blob_path).collect(),
        });
    }
    let index = IndexOut {
        schema_version: 2,
        media_type: oci::MEDIA_OCI_INDEX,
        manifests,
    };
    (
        serde_json::to_vec(&index).expect("index serializes"),
        serde_json::to_vec(&docker).expect("manifest.json serializes"),
    )
}

const OCI_LAYOUT: &[u8] = br#"{"imageLayoutVersion":"1.0.0"}"#;

/// Writes the selected images of an archive, and only them, as a new archive.
///
/// ```no_run
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use imgkit_archive::{Archive, Compression, SubsetWriter};
/// let archive = Archive::open("all.tar".as_ref())?;
/// let mut w = SubsetWriter::new(&archive);
/// w.select(&"alpine:3.20".parse()?)?.compression(Compression::Zstd);
/// w.write(std::fs::File::create("subset.tar.zst")?)?;
/// # Ok(()) }
/// ```
pub struct SubsetWriter<'a> {
    archive: &'a Archive,
    /// Selected image (index into `archive.images()`) → names to give it.
    selected: Vec<(usize, Vec<ImageRef>)>,
    compression: Compression,
    verify: bool,
}

impl<'a> SubsetWriter<'a> {
    /// Nothing selected yet; plain tar; digests checked while copying.
    pub fn new(archive: &'a Archive) -> Self {
        Self {
            archive,
            selected: Vec::new(),
            compression: Compression::None,
            verify: true,
        }
    }

    /// Selects the image `r` names, under that name (`:latest` when bare).
    pub fn select(&mut self, r: &ImageRef) -> Result<&mut Self> {
        let images = self.archive.images();
        let i = images
            .iter()
            .position(|im| im.matches(r))
            .ok_or_else(|| Error::NoSuchImage(r.to_string()))?;
        // `repo@digest` stays a digest reference: containerd keeps it as a name, docker's
        // manifest.json (tags only) leaves it out.
        let name = Some(r.normalized());
        match self.selected.iter_mut().find(|(j, _)| *j == i) {
            Some((_, names)) => names.extend(name.filter(|n| !names.contains(n))),
            None => self.selected.push((i, name.into_iter().collect())),
        }
        Ok(self)
    }

    /// Selects the image whose ID (config digest) is `id` — `sha256:…`, its hex, or a prefix of
    /// at least 12 hex digits, as listings show it — without adding a name (an image selected
    /// by ID is written as docker writes `docker save ID`: under no name).
    pub fn select_id(&mut self, id: &str) -> Result<&mut Self> {
        let hex = id.strip_prefix("sha256:").unwrap_or(id);
        let images = self.archive.images();
        let i = images
            .iter()
            .position(|im| hex.len() >= 12 && im.id().hex().starts_with(hex))
            .ok_or_else(|| Error::NoSuchImage(id.to_owned()))?;
        if !self.selected.iter().any(|(j, _)| *j == i) {
            self.selected.push((i, Vec::new()));
        }
        Ok(self)
    }

    /// Selects every image with all its names.
    pub fn select_all(&mut self) -> &mut Self {
        self.selected = self
            .archive
            .images()
            .iter()
            .enumerate()
            .map(|(i, im)| (i, im.names.clone()))
            .collect();
        self
    }

    /// Compresses the output.
    pub fn compression(&mut self, c: Compression) -> &mut Self {
        self.compression = c;
        self
    }

    /// Whether to check each copied blob's sha256 (on by default; off trades safety for
    /// speed when the source was just verified).
    pub fn verify_digests(&mut self, on: bool) -> &mut Self {
        self.verify = on;
        self
    }

    /// Streams the sub-archive into `out`. On error the output is incomplete: write to
    /// `X.partial` and rename on success.
    pub fn write<W: Write>(&self, out: W) -> Result<WriteSummary> {
        let images = self.archive.images();
        let mut blobs_from_source: Vec<(String, Digest, u64)> = Vec::new(); // member, digest, size
        let mut in_memory: Vec<(Digest, Vec<u8>)> = Vec::new();
        let mut seen: HashSet<Digest> = HashSet::new();
        let mut out_images = Vec::new();
        let mut names = 0;
        for (i, chosen) in &self.selected {
            let image = &images[*i];
            names += chosen.len();
            let mut add_source = |blob: &crate::model::Blob, seen: &mut HashSet<Digest>| {
                if seen.insert(blob.digest.clone()) {
                    blobs_from_source.push((blob.path.clone(), blob.digest.clone(), blob.size));
                }
            };
            let mut platform_descs = Vec::new();
            for p in &image.platforms {
                add_source(&p.config, &mut seen);
                for l in &p.layers {
                    add_source(l, &mut seen);
                }
                let manifest_desc = if let Some(m) = &p.manifest {
                    add_source(m, &mut seen);
                    let media = if m.media_type.is_empty() {
                        oci::MEDIA_OCI_MANIFEST
                    } else {
                        &m.media_type
                    };
                    desc(media, &m.digest, m.size, Some(p.platform.clone()))
                } else {
                    let manifest = ManifestOut {
                        schema_version: 2,
                        media_type: oci::MEDIA_OCI_MANIFEST,
                        config: desc(oci::MEDIA_OCI_CONFIG, &p.config.digest, p.config.size, None),
                        layers: p
                            .layers
                            .iter()
                            .map(|l| desc(&l.media_type, &l.digest, l.size, None))
                            .collect(),
                    };
                    let bytes = serde_json::to_vec(&manifest).expect("manifest serializes");
                    let d = sha256_digest(&bytes);
                    let descriptor = desc(
                        oci::MEDIA_OCI_MANIFEST,
                        &d,
                        bytes.len() as u64,
                        Some(p.platform.clone()),
                    );
                    if seen.insert(d.clone()) {
                        in_memory.push((d, bytes));
                    }
                    descriptor
                };
                platform_descs.push(manifest_desc);
            }
            let whole_index = image.target.as_ref().filter(|t| {
                image.missing_platforms.is_empty()
                    && platform_descs.iter().all(|d| d.digest != t.digest.as_str())
                    && self
                        .archive
                        .table
                        .json(&t.path)
                        .ok()
                        .flatten()
                        .map(index_children)
                        == Some(image.platforms.len())
            });
            let top = if let Some(t) = whole_index {
                // The source's own index, whole: its digest is kept.
                add_source(t, &mut seen);
                desc(&t.media_type, &t.digest, t.size, None)
            } else if platform_descs.len() == 1 {
                let mut d = platform_descs[0].clone();
                d.platform = None;
                d
            } else {
                Self::synth_index(&platform_descs, &mut in_memory, &mut seen)
            };
            let primary = image.primary();
            out_images.push(OutImage {
                names: chosen.clone(),
                top,
                config: primary.config.digest.clone(),
                layers: primary.layers.iter().map(|l| l.digest.clone()).collect(),
            });
        }

        let mut tar = TarOut::new(Encoder::new(out, self.compression).map_err(Error::Write)?);
        tar.file("oci-layout", OCI_LAYOUT)?;
        tar.dir("blobs/")?;
        tar.dir("blobs/sha256/")?;
        // Blobs from the source, in the source's order (one seek per blob on a plain file).
        let by_member: HashMap<&str, (&Digest, u64)> = blobs_from_source
            .iter()
            .map(|(p, d, s)| (p.as_str(), (d, *s)))
            .collect();
        let wanted: HashSet<String> = by_member.keys().map(|s| (*s).to_owned()).collect();
        let mut written: HashSet<&str> = HashSet::new();
        let verify = self.verify;
        self.archive
            .table
            .read_members(&wanted, &self.archive.limits, &mut |member, r| {
                let Some(&(digest, size)) = by_member.get(member.path.as_str()) else {
                    return Ok(());
                };
                if member.size != size {
                    return Err(Error::SizeMismatch {
                        path: member.path.clone(),
                        expected: size,
                        actual: member.size,
                    });
                }
                tar.stream(&path::blob_path(digest), size, r, verify.then_some(digest))?;
                written.insert(
                    by_member
                        .get_key_value(member.path.as_str())
                        .expect("present")
                        .0,
                );
                Ok(())
            })?;
        if let Some((p, d, _)) = blobs_from_source
            .iter()
            .find(|(p, _, _)| !written.contains(p.as_str()))
        {
            return Err(Error::MissingBlob {
                referrer: "the selected images".into(),
                digest: format!("{d} ({p})"),
            });
        }
        for (d, bytes) in &in_memory {
            tar.file(&path::blob_path(d), bytes)?;
        }
        let bytes = finish_archive(tar, &out_images)?;
        Ok(WriteSummary {
            images: out_images.len(),
            names,
            blobs: seen.len(),
            bytes,
        })
    }

    fn synth_index(
        platform_descs: &[Descriptor],
        in_memory: &mut Vec<(Digest, Vec<u8>)>,
        seen: &mut HashSet<Digest>,
    ) -> Descriptor {
        let index = IndexOut {
            schema_version: 2,
            media_type: oci::MEDIA_OCI_INDEX,
            manifests: platform_descs.to_vec(),
        };
        let bytes = serde_json::to_vec(&index).expect("index serializes");
        let d = sha256_digest(&bytes);
        let descriptor = desc(oci::MEDIA_OCI_INDEX, &d, bytes.len() as u64, None);
        if seen.insert(d.clone()) {
            in_memory.push((d, bytes));
        }
        descriptor
    }
}

/// Writes images given blob by blob as an archive every engine loads (the shape
/// [`SubsetWriter`] writes: an OCI layout with docker's `manifest.json`), for sources that are
/// not archives (an image store): blobs as they come (each digest checked as it streams),
/// then the images, then [`ImagesWriter::finish`].
pub struct ImagesWriter<W: Write> {
    tar: TarOut<Encoder<W>>,
    images: Vec<OutImage>,
    written: HashSet<Digest>,
}

impl<W: Write> ImagesWriter<W> {
    /// Starts the archive (its `oci-layout` and `blobs/` directories).
    pub fn new(out: W, compression: Compression) -> Result<Self> {
        let mut tar = TarOut::new(Encoder::new(out, compression).map_err(Error::Write)?);
        tar.file("oci-layout", OCI_LAYOUT)?;
        tar.dir("blobs/")?;
        tar.dir("blobs/sha256/")?;
        Ok(Self {
            tar,
            images: Vec::new(),
            written: HashSet::new(),
        })
    }

    /// Whether the blob was written already.
    pub fn has_blob(&self, digest: &Digest) -> bool {
        self.written.contains(digest)
    }

    /// Copies exactly `size` bytes of the blob `digest` from `r`, checking the digest on the
    /// way (a mismatch is an error, and the archive is then incomplete). A blob already
    /// written is not written again (`r` is left unread).
    pub fn blob(&mut self, digest: &Digest, size: u64, r: &mut dyn Read) -> Result<()> {
        if digest.algorithm() != "sha256" {
            return Err(Error::BadDigest {
                referrer: "a blob to write".into(),
                value: digest.to_string(),
                source: imgkit_types::DigestError::InvalidAlgorithm(digest.algorithm().to_owned()),
            });
        }
        if !self.written.insert(digest.clone()) {
            return Ok(());
        }
        self.tar
            .stream(&path::blob_path(digest), size, r, Some(digest))
    }

    /// Writes a small blob (a manifest or an index) from memory; its digest is checked.
    pub fn blob_bytes(&mut self, digest: &Digest, bytes: &[u8]) -> Result<()> {
        self.blob(digest, bytes.len() as u64, &mut &bytes[..])
    }

    /// Names an image: `top` (media type, digest, size) is what `index.json` points at (a
    /// manifest or an index); `config` and `layers` are one platform's, for docker's
    /// `manifest.json`. Every blob must be written before [`ImagesWriter::finish`].
    pub fn image(
        &mut self,
        names: Vec<ImageRef>,
        top: (&str, &Digest, u64),
        config: &Digest,
        layers: &[Digest],
    ) {
        self.images.push(OutImage {
            names,
            top: desc(top.0, top.1, top.2, None),
            config: config.clone(),
            layers: layers.to_vec(),
        });
    }

    /// Ends the archive (`index.json`, `manifest.json`, the trailer); the tar's size. An image
    /// whose blobs were not all written is an error.
    pub fn finish(self) -> Result<u64> {
        for im in &self.images {
            let top: Digest = im
                .top
                .digest
                .parse()
                .expect("descriptors written here hold digests");
            for d in std::iter::once(&top).chain([&im.config]).chain(&im.layers) {
                if !self.written.contains(d) {
                    return Err(Error::MissingBlob {
                        referrer: format!("image {top}"),
                        digest: d.to_string(),
                    });
                }
            }
        }
        finish_archive(self.tar, &self.images)
    }
}

fn index_children(bytes: &[u8]) -> usize {
    oci::parse_index(bytes).map_or(0, |i| {
        i.manifests
            .iter()
            .filter(|m| m.platform.as_ref().is_none_or(|p| p.os != "unknown"))
            .count()
    })
}

/// Writes the images of `archive` that `selected` name into `out` (see [`SubsetWriter`]).
pub fn write_subset(
    archive: &Archive,
    selected: &[ImageRef],
    out: impl Write,
    compression: Compression,
) -> Result<WriteSummary> {
    let mut w = SubsetWriter::new(archive);
    for r in selected {
        w.select(r)?;
    }
    w.compression(compression).write(out)
}

/// A new single-layer-per-entry image to write from bytes: for tests, samples and fixtures.
#[derive(Debug, Clone)]
pub struct NewImage {
    pub names: Vec<ImageRef>,
    /// RFC 3339 creation time.
    pub created: String,
    /// Uncompressed layer tars, bottom first.
    pub layers: Vec<Vec<u8>>,
    /// Extra `config` fields (`Cmd`, `Env`, …) as JSON.
    pub run_config: serde_json::Value,
}

impl NewImage {
    /// The image config this writer produces for it (linux/amd64).
    pub fn config_bytes(&self) -> Vec<u8> {
        let diff_ids: Vec<String> = self
            .layers
            .iter()
            .map(|l| sha256_digest(l).to_string())
            .collect();
        let history: Vec<serde_json::Value> = self
            .layers
            .iter()
            .map(|_| serde_json::json!({"created": self.created, "created_by": "imgkit"}))
            .collect();
        let config = serde_json::json!({
            "architecture": "amd64",
            "config": self.run_config,
            "created": self.created,
            "history": history,
            "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
        });
        serde_json::to_vec(&config).expect("config serializes")
    }
}

/// Writes new images (see [`NewImage`]) as an archive, byte-for-byte reproducibly.
pub fn write_images(
    images: &[NewImage],
    out: impl Write,
    compression: Compression,
) -> Result<WriteSummary> {
    let mut blobs: Vec<(Digest, Vec<u8>)> = Vec::new();
    let mut seen = HashSet::new();
    let mut out_images = Vec::new();
    let mut add = |bytes: Vec<u8>, blobs: &mut Vec<(Digest, Vec<u8>)>| {
        let d = sha256_digest(&bytes);
        let size = bytes.len() as u64;
        if seen.insert(d.clone()) {
            blobs.push((d.clone(), bytes));
        }
        (d, size)
    };
    for im in images {
        let layer_descs: Vec<(Digest, u64)> = im
            .layers
            .iter()
            .map(|l| add(l.clone(), &mut blobs))
            .collect();
        let (config, config_size) = add(im.config_bytes(), &mut blobs);
        let manifest = ManifestOut {
            schema_version: 2,
            media_type: oci::MEDIA_OCI_MANIFEST,
            config: desc(oci::MEDIA_OCI_CONFIG, &config, config_size, None),
            layers: layer_descs
                .iter()
                .map(|(d, s)| desc(oci::MEDIA_OCI_LAYER, d, *s, None))
                .collect(),
        };
        let (m, m_size) = add(
            serde_json::to_vec(&manifest).expect("manifest serializes"),
            &mut blobs,
        );
        out_images.push(OutImage {
            names: im.names.clone(),
            top: desc(oci::MEDIA_OCI_MANIFEST, &m, m_size, None),
            config,
            layers: layer_descs.into_iter().map(|(d, _)| d).collect(),
        });
    }
    let mut tar = TarOut::new(Encoder::new(out, compression).map_err(Error::Write)?);
    tar.file("oci-layout", OCI_LAYOUT)?;
    tar.dir("blobs/")?;
    tar.dir("blobs/sha256/")?;
    for (d, bytes) in &blobs {
        tar.file(&path::blob_path(d), bytes)?;
    }
    let bytes = finish_archive(tar, &out_images)?;
    Ok(WriteSummary {
        images: out_images.len(),
        names: images.iter().map(|i| i.names.len()).sum(),
        blobs: blobs.len(),
        bytes,
    })
}

/// A layer tar holding the given files (path, content), reproducibly: for tests and samples.
pub fn layer_tar(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut tar = TarOut::new(Vec::new());
    for (name, data) in files {
        tar.file(name, data).expect("writing to memory");
    }
    tar.finish().expect("writing to memory").0
}
