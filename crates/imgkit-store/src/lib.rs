//! Image stores as endpoints, in imgkit's terms (after containers/image's `ImageSource` and
//! `ImageDestination`).
//!
//! A [`Source`] lists its images as docker-shaped records and describes each one (manifest,
//! config, layers, names); it hands out blobs by digest as readers, never a whole layer in
//! memory. A [`Destination`] says which blobs it already holds, takes blobs (checking each
//! digest as it streams) and commits images under their names last, so an interruption leaves
//! no half-committed image. [`copy`] asks the destination first and sends only what it lacks.
//!
//! Endpoints here: archive files and OCI layout directories as sources ([`ArchiveSource`],
//! through `imgkit-archive`), OCI layout directories as destinations ([`LayoutDir`]). Engines
//! are adapters outside this crate: their save stream becomes an archive source, and a source's
//! images become a tar (`imgkit_archive::SubsetWriter`) for their load.
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
mod layout;
mod verify;

use std::io::Read;

use imgkit_types::{Digest, ImageRecord, ImageRef};

pub use archive::ArchiveSource;
pub use copy::{CopyReport, copy};
pub use error::{Error, Result};
pub use layout::{LayoutDir, is_layout_dir};
pub use verify::DigestWriter;

/// A content-addressed blob: a manifest, a config or a layer.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BlobInfo {
    pub digest: Digest,
    pub size: u64,
    pub media_type: String,
}

/// One image as a store holds it: a manifest (its bytes: manifests are small), the config it
/// names, its layers, and the names it goes by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredImage {
    pub names: Vec<ImageRef>,
    pub manifest: BlobInfo,
    pub manifest_bytes: Vec<u8>,
    pub config: BlobInfo,
    pub layers: Vec<BlobInfo>,
}

impl StoredImage {
    /// The image ID engines show: the config's digest.
    pub fn id(&self) -> &Digest {
        &self.config.digest
    }

    /// Config first, then the layers (each once).
    pub fn blobs(&self) -> Vec<&BlobInfo> {
        let mut out: Vec<&BlobInfo> = Vec::with_capacity(self.layers.len() + 1);
        for b in std::iter::once(&self.config).chain(&self.layers) {
            if !out.iter().any(|o| o.digest == b.digest) {
                out.push(b);
            }
        }
        out
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
}

/// Where images go.
pub trait Destination {
    /// What to call it in messages.
    fn describe(&self) -> String;
    /// Whether it already holds this blob (complete and verified).
    fn has_blob(&self, digest: &Digest) -> bool;
    /// Takes a blob, checking its size and digest as it streams; nothing is kept on a mismatch.
    fn put_blob(&mut self, blob: &BlobInfo, content: &mut dyn Read) -> Result<()>;
    /// Names the images, all at once and last; every blob they reference must be there.
    fn commit(&mut self, images: &[StoredImage]) -> Result<()>;
    /// The IDs (config digests) of the images it holds.
    fn image_ids(&self) -> Result<Vec<Digest>>;
}
