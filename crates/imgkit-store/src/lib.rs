//! Image stores as endpoints, in imgkit's terms (after containers/image's `ImageSource` and
//! `ImageDestination`).
//!
//! A [`Source`] lists its images as docker-shaped records and describes each one
//! ([`StoredImage`]: manifest or index, configs, layers, names); it hands out blobs by digest
//! as readers, never a whole layer in memory. A [`Destination`] says which blobs it already
//! holds, takes blobs (checking each digest as it streams; manifests and indexes too, after
//! what they name) and commits images under their names last, so an interruption leaves no
//! half-committed image. [`copy`] asks the destination first and sends only what it lacks.
//!
//! Multi-platform images: a [`StoredImage`] whose `manifest` is an OCI index (or a docker
//! manifest list) carries every platform manifest it lists in `platforms` (each with its
//! config and layers); `config` and `layers` repeat the primary platform's (the host's), so
//! `id()` is the image ID engines show. [`copy`] moves every platform and puts the index after
//! its manifests, so the index digest is the same in the destination. A source holding an
//! index without all the manifests it lists (an engine that saved the host's platform only)
//! describes the image by its present platform's manifest.
//!
//! Endpoints here: archive files and OCI layout directories as sources ([`ArchiveSource`],
//! through `imgkit-archive`), OCI layout directories as destinations ([`LayoutDir`]). Engines
//! are [`TarEndpoint`]s (implemented in `imgkit-engine`): one tar stream each way, names by
//! tag and untag, IDs by name; two functions bridge them to blob stores: [`ingest`] reads an engine's
//! save stream once into a destination (each blob put as it passes, no temporary archive), and
//! [`write_tar`] writes a source's images as one tar an engine's load takes.
//!
//! ```no_run
//! # fn main() -> Result<(), imgkit_store::Error> {
//! use imgkit_store::{ArchiveSource, LayoutDir, Source, copy};
//! let from = ArchiveSource::open("images.tar".as_ref())?;
//! let mut to = LayoutDir::create("oci-dir".as_ref())?;
//! let report = copy(&from, &mut to, &from.images()?)?;
//! println!("{} blobs written, {} already there", report.blobs_written, report.blobs_skipped);
//! # Ok(()) }
//! ```

mod archive;
mod copy;
mod error;
mod ingest;
mod layout;
mod tar;
mod tar_endpoint;
mod verify;

use std::io::Read;

use imgkit_types::{Digest, ImageRecord, ImageRef};

pub use archive::{ArchiveSource, made_up_image};
pub use copy::{CopyReport, copy, put_manifests};
pub use error::{Error, Result, error_chain};
pub use ingest::{Ingested, ingest, ingest_expecting};
pub use layout::{LayoutDir, is_layout_dir};
pub use tar::write_tar;
pub use tar_endpoint::TarEndpoint;
pub use verify::DigestWriter;

/// A content-addressed blob: a manifest, a config or a layer.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BlobInfo {
    pub digest: Digest,
    pub size: u64,
    pub media_type: String,
}

/// One platform's manifest of a multi-platform image: the manifest (descriptor and bytes), the
/// config and layers it names, and the platform its index entry gives (`os/arch[/variant]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlatformManifest {
    pub platform: Option<String>,
    pub manifest: BlobInfo,
    pub manifest_bytes: Vec<u8>,
    pub config: BlobInfo,
    pub layers: Vec<BlobInfo>,
}

/// One image as a store holds it, and the names it goes by.
///
/// `manifest` is what a name points at: an image manifest (one platform) or an image index
/// (several). For a manifest, `platforms` is empty and `config` and `layers` are the ones it
/// names. For an index, `platforms` holds every manifest the index lists, in its order
/// (attestation manifests included, so the index is kept byte for byte and its digest stays
/// the same), and `config`/`layers` repeat the primary platform's (the host's when present):
/// `id()` is its config digest, the image ID engines show. A store holding an index but not
/// every manifest it lists describes the image by its present platform's manifest instead
/// (an index naming blobs that are not there would be a broken image).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredImage {
    pub names: Vec<ImageRef>,
    pub manifest: BlobInfo,
    pub manifest_bytes: Vec<u8>,
    pub config: BlobInfo,
    pub layers: Vec<BlobInfo>,
    /// The platform manifests of an index (empty for a single manifest).
    pub platforms: Vec<PlatformManifest>,
}

impl StoredImage {
    /// A single-platform image: a manifest and what it names.
    pub fn single(
        names: Vec<ImageRef>,
        manifest: BlobInfo,
        manifest_bytes: Vec<u8>,
        config: BlobInfo,
        layers: Vec<BlobInfo>,
    ) -> Self {
        Self {
            names,
            manifest,
            manifest_bytes,
            config,
            layers,
            platforms: Vec::new(),
        }
    }

    /// The image ID engines show: the (primary platform's) config digest.
    pub fn id(&self) -> &Digest {
        &self.config.digest
    }

    /// What of this image goes into an engine that keeps one platform per image (or the
    /// platforms `wanted` names): an index keeps its bytes (its digest stays), but only the
    /// wanted platforms' manifests, configs and layers come along, and the first of them is
    /// the primary (its config is the image ID). Returns the image and the platforms left
    /// out; a single manifest comes back as it is. `Err` lists the platforms it has when none
    /// is wanted.
    pub fn for_platforms(
        &self,
        wanted: &[String],
    ) -> std::result::Result<(StoredImage, Vec<String>), Vec<String>> {
        if !self.is_index() {
            return Ok((self.clone(), Vec::new()));
        }
        let named = |p: &PlatformManifest| p.platform.clone().unwrap_or_else(|| "unknown".into());
        let mut kept: Vec<PlatformManifest> = Vec::new();
        for w in wanted {
            for p in &self.platforms {
                let hit = p
                    .platform
                    .as_deref()
                    .is_some_and(|h| imgkit_types::platform::matches(w, h));
                if hit && !kept.iter().any(|k| k.manifest.digest == p.manifest.digest) {
                    kept.push(p.clone());
                }
            }
        }
        let Some(primary) = kept.first() else {
            return Err(self.platforms.iter().map(named).collect());
        };
        let left: Vec<String> = self
            .platforms
            .iter()
            .filter(|p| !kept.iter().any(|k| k.manifest.digest == p.manifest.digest))
            .map(named)
            .collect();
        let image = StoredImage {
            names: self.names.clone(),
            manifest: self.manifest.clone(),
            manifest_bytes: self.manifest_bytes.clone(),
            config: primary.config.clone(),
            layers: primary.layers.clone(),
            platforms: kept,
        };
        Ok((image, left))
    }

    /// Whether `manifest` is an index of several platform manifests.
    pub fn is_index(&self) -> bool {
        !self.platforms.is_empty()
    }

    /// Every config and layer (of every platform), each once: the blobs that are not
    /// manifests.
    pub fn blobs(&self) -> Vec<&BlobInfo> {
        let mut out: Vec<&BlobInfo> = Vec::with_capacity(self.layers.len() + 1);
        let all = std::iter::once(&self.config).chain(&self.layers).chain(
            self.platforms
                .iter()
                .flat_map(|p| std::iter::once(&p.config).chain(&p.layers)),
        );
        for b in all {
            if !out.iter().any(|o| o.digest == b.digest) {
                out.push(b);
            }
        }
        out
    }

    /// The manifests with their bytes, in the order a store takes them: each platform's
    /// manifest, then the top one (`manifest`: the index, or the only manifest).
    pub fn manifests(&self) -> Vec<(&BlobInfo, &[u8])> {
        let mut out: Vec<(&BlobInfo, &[u8])> = Vec::with_capacity(self.platforms.len() + 1);
        for p in &self.platforms {
            if !out.iter().any(|(o, _)| o.digest == p.manifest.digest) {
                out.push((&p.manifest, &p.manifest_bytes));
            }
        }
        out.push((&self.manifest, &self.manifest_bytes));
        out
    }

    /// Whether `r` names this image: one of its names (a bare name means `:latest`), or its
    /// manifest, index or config digest.
    pub fn matches(&self, r: &ImageRef) -> bool {
        let r = r.normalized();
        if let Some(d) = r.digest()
            && r.tag().is_none()
        {
            return &self.manifest.digest == d
                || &self.config.digest == d
                || self.platforms.iter().any(|p| &p.manifest.digest == d);
        }
        self.names.iter().any(|n| n.normalized() == r)
    }
}

/// Where images come from.
pub trait Source {
    /// What to call it in messages (`./dir/`, `images.tar`).
    fn describe(&self) -> String;
    /// Docker-shaped records (`{{json .}}` of `docker images`), one per name.
    fn records(&self) -> Vec<ImageRecord>;
    /// Every image it holds.
    fn images(&self) -> Result<Vec<StoredImage>>;
    /// Calls `f` once per wanted blob with a reader of exactly its content, in whatever order
    /// the source reads best (a stream: its own order). Digests are checked by the receiver.
    fn read_blobs(
        &self,
        wanted: &[BlobInfo],
        f: &mut dyn FnMut(&BlobInfo, &mut dyn Read) -> Result<()>,
    ) -> Result<()>;
    /// The IDs (config digests) of the images it holds.
    fn image_ids(&self) -> Result<Vec<Digest>> {
        Ok(self.images()?.iter().map(|i| i.id().clone()).collect())
    }
    /// What a person should know about its listing: names left out (not image references),
    /// a name given to several images. None by default.
    fn warnings(&self) -> Vec<String> {
        Vec::new()
    }
}

/// Where images go.
///
/// A store that can hold names without images being copied again (a layout directory, a
/// registry) implements `tag` and `untag`; the defaults say it cannot.
pub trait Destination {
    /// What to call it in messages.
    fn describe(&self) -> String;
    /// Whether it already holds this blob (complete and verified).
    fn has_blob(&self, digest: &Digest) -> bool;
    /// Takes a blob, checking its size and digest as it streams; nothing is kept on a mismatch.
    /// Manifests and indexes come through here too (after every blob they name), told apart
    /// by `blob.media_type`.
    fn put_blob(&mut self, blob: &BlobInfo, content: &mut dyn Read) -> Result<()>;
    /// Names the images, all at once and last; every blob they reference must be there.
    fn commit(&mut self, images: &[StoredImage]) -> Result<()>;
    /// The IDs (config digests) of the images it holds.
    fn image_ids(&self) -> Result<Vec<Digest>>;

    /// Takes a blob whose digest is not known before it is read (a docker ≤24 save's
    /// `layer.tar`): hashed as it streams, then kept under its digest; its descriptor is
    /// returned (`media_type` as given), and whether it was new (`false`: the store held it
    /// already, and kept what it had). `size` is exact when the stream says it. The default
    /// spools it to a temporary file and hands that to [`Destination::put_blob`]; a store that
    /// can name a blob after receiving it (a layout directory, a registry upload) does better.
    fn put_blob_hashed(
        &mut self,
        size: u64,
        media_type: &str,
        content: &mut dyn Read,
    ) -> Result<(BlobInfo, bool)> {
        let (mut file, info) = verify::spool(content, size, media_type)?;
        if self.has_blob(&info.digest) {
            return Ok((info, false));
        }
        self.put_blob(&info, &mut file)?;
        Ok((info, true))
    }

    /// The names it holds, each with its image ID (config digest): what a run compares to
    /// skip images already there and to verify what it wrote. The default knows none (so
    /// nothing is skipped and the verification falls back to [`Destination::image_ids`]).
    fn names(&self) -> Result<Vec<(ImageRef, Digest)>> {
        Ok(Vec::new())
    }

    /// Gives the image it holds under the (top) manifest digest `image` one more name.
    fn tag(&mut self, image: &Digest, name: &ImageRef) -> Result<()> {
        let _ = (image, name);
        Err(Error::Unsupported {
            store: self.describe(),
            what: "tag",
        })
    }

    /// Removes one name (the image stays while it has others, or as an unnamed image).
    fn untag(&mut self, name: &ImageRef) -> Result<()> {
        let _ = name;
        Err(Error::Unsupported {
            store: self.describe(),
            what: "untag",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blob(n: u8, media_type: &str) -> BlobInfo {
        BlobInfo {
            digest: format!("sha256:{}", format!("{n:02x}").repeat(32))
                .parse()
                .unwrap(),
            size: u64::from(n),
            media_type: media_type.to_owned(),
        }
    }

    fn platform(p: &str, n: u8) -> PlatformManifest {
        PlatformManifest {
            platform: Some(p.to_owned()),
            manifest: blob(n, "application/vnd.oci.image.manifest.v1+json"),
            manifest_bytes: vec![n],
            config: blob(n + 1, "application/vnd.oci.image.config.v1+json"),
            layers: vec![blob(n + 2, "application/vnd.oci.image.layer.v1.tar+gzip")],
        }
    }

    fn two_platforms() -> StoredImage {
        let amd = platform("linux/amd64", 10);
        let arm = platform("linux/arm64/v8", 20);
        StoredImage {
            names: vec!["seed/multi:1.0".parse().unwrap()],
            manifest: blob(1, "application/vnd.oci.image.index.v1+json"),
            manifest_bytes: vec![1],
            config: amd.config.clone(),
            layers: amd.layers.clone(),
            platforms: vec![amd, arm],
        }
    }

    #[test]
    fn an_index_keeps_only_the_wanted_platforms_and_its_digest() {
        let image = two_platforms();
        let (arm, left) = image.for_platforms(&["linux/arm64".to_owned()]).unwrap();
        assert_eq!(left, ["linux/amd64"]);
        assert_eq!(arm.manifest, image.manifest);
        assert_eq!(arm.id(), &image.platforms[1].config.digest);
        let blobs: Vec<u8> = arm.blobs().iter().map(|b| b.size as u8).collect();
        assert_eq!(blobs, [21, 22]);
        assert_eq!(arm.manifests().len(), 2);

        let (both, left) = image
            .for_platforms(&["linux/amd64".to_owned(), "linux/arm64/v8".to_owned()])
            .unwrap();
        assert!(left.is_empty());
        assert_eq!(both.id(), image.id());
        assert_eq!(both.blobs().len(), 4);

        let missing = image
            .for_platforms(&["linux/s390x".to_owned()])
            .unwrap_err();
        assert_eq!(missing, ["linux/amd64", "linux/arm64/v8"]);
    }
}
