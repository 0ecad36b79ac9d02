//! The crate's one error type: each variant names a cause a person can act on.

use std::io;
use std::path::PathBuf;

/// Everything that can go wrong reading, writing or verifying an archive.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read {path}")]
    Open {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("reading the archive failed")]
    Read(#[source] io::Error),
    #[error("writing the archive failed")]
    Write(#[source] io::Error),
    #[error("the archive ends early inside {member:?} (truncated file or interrupted download)")]
    Truncated { member: String },
    #[error("the {compression} compression of the file is damaged: {reason}")]
    BadCompression {
        compression: crate::Compression,
        reason: String,
    },
    #[error("archive member {path:?} is unsafe: {reason}")]
    UnsafePath { path: String, reason: &'static str },
    #[error("archive member {path:?} appears twice")]
    DuplicateEntry { path: String },
    #[error("archive member {path:?} is {size} bytes, over the {limit}-byte limit for metadata")]
    MetadataTooLarge { path: String, size: u64, limit: u64 },
    #[error(
        "decompressed data grew past {limit_ratio}× its compressed size ({out} bytes from {input}): a decompression bomb?"
    )]
    ExpansionLimit {
        out: u64,
        input: u64,
        limit_ratio: u64,
    },
    #[error("archive member {path:?} is not valid JSON")]
    BadJson {
        path: String,
        #[source]
        source: serde_json::Error,
    },
    /// A block where a tar header should be is not one (the file is not a tar, or is damaged).
    #[error("{}", match after {
        None => "not an image archive: no tar header at byte 0".to_owned(),
        Some(m) => format!("the archive is damaged: the block after member {m:?} is not a tar header"),
    })]
    NotATar { after: Option<String> },
    #[error("{0} is not an image archive: no manifest.json, index.json or repositories")]
    NotAnImageArchive(String),
    #[error("{referrer} names {member:?}, which the archive does not hold")]
    MissingMember { referrer: String, member: String },
    #[error("{referrer} names blob {digest}, which the archive does not hold")]
    MissingBlob { referrer: String, digest: String },
    #[error("blob {path:?} has sha256 {actual}, but {expected} was expected")]
    DigestMismatch {
        path: String,
        expected: String,
        actual: String,
    },
    #[error("blob {path:?} is {actual} bytes, but its descriptor says {expected}")]
    SizeMismatch {
        path: String,
        expected: u64,
        actual: u64,
    },
    #[error("invalid digest {value:?} in {referrer}")]
    BadDigest {
        referrer: String,
        value: String,
        #[source]
        source: imgkit_types::DigestError,
    },
    #[error("image {image}: config names {diff_ids} layers but its manifest {layers}")]
    LayerCountMismatch {
        image: String,
        diff_ids: usize,
        layers: usize,
    },
    #[error("cannot tell the digest of layer {path:?} (compressed, outside blobs/)")]
    UnknownLayerDigest { path: String },
    #[error("no image in the archive is named {0}")]
    NoSuchImage(String),
    #[error("{0} can only be done on a file or directory, not a stream")]
    NeedsSeekable(&'static str),
    #[error("the symlink chain at {path:?} is too long or loops")]
    LinkLoop { path: String },
}

/// Results of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
