//! Image archives as imgkit reads and writes them: docker-save tars of Docker ≤24
//! (`manifest.json`, `<id>.json`, layer directories) and ≥25 / nerdctl / ctr (an OCI layout
//! with `manifest.json`), OCI archives and OCI layout directories; plain, gzip or zstd.
//!
//! Reading streams: a layer is never held in memory. Seekable files are scanned by header and
//! members read by offset; streams are read in one pass. Member names are checked (no `..`,
//! no absolute paths, links stay inside), metadata is size-capped and decompression is
//! bounded. Nothing is ever extracted to disk.
//!
//! ```no_run
//! # fn main() -> Result<(), imgkit_archive::Error> {
//! for record in imgkit_archive::list("images.tar".as_ref())? {
//!     println!("{}", record.to_json_line());
//! }
//! # Ok(()) }
//! ```

mod archive;
mod compress;
mod error;
mod model;
pub mod oci;
mod path;
pub mod sample;
mod scan;
mod verify;
mod write;

pub use archive::{Archive, list};
pub use compress::{
    Compression, Detected, Encoder, ExpansionLimit, decompress, decompress_bounded, detect,
};
pub use error::{Error, Result};
pub use model::{Blob, Image, MissingPlatform, PlatformImage};
pub use scan::{Limits, Visitor};
pub use verify::{VerifyReport, VerifyingReader, verify, verify_reader, verify_with};
pub use write::{
    ImagesWriter, NewImage, SubsetWriter, WriteSummary, layer_tar, write_images, write_subset,
};
