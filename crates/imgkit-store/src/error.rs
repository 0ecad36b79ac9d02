//! What can go wrong moving images between stores.

use std::path::PathBuf;

use imgkit_types::Digest;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Archive(#[from] imgkit_archive::Error),
    #[error("{what} {}: {source}", path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("reading {digest}: {source}")]
    Read {
        digest: Digest,
        source: std::io::Error,
    },
    #[error(
        "blob {expected} arrived as {actual} ({size} bytes): the source is damaged or changed while being read; nothing of it was kept"
    )]
    DigestMismatch {
        expected: Digest,
        actual: String,
        size: u64,
    },
    #[error(
        "blob {digest} is {actual} bytes, and its descriptor says {expected}; nothing of it was kept"
    )]
    SizeMismatch {
        digest: Digest,
        expected: u64,
        actual: u64,
    },
    #[error("{source_name} did not hand out blob {digest} it listed")]
    MissingBlob { source_name: String, digest: Digest },
    #[error("cannot commit image {image}: blob {digest} is not in {destination}")]
    Incomplete {
        image: Digest,
        digest: Digest,
        destination: String,
    },
    #[error("{} is not an OCI image layout: {why}", path.display())]
    NotLayout { path: PathBuf, why: String },
    #[error("{what}: {source}")]
    Json {
        what: String,
        source: serde_json::Error,
    },
    #[error("only sha256 digests are supported, got {0}")]
    Algorithm(Digest),
    #[error("{store} cannot {what} images")]
    Unsupported { store: String, what: &'static str },
    #[error("{store} has no image {image}")]
    NoSuchImage { store: String, image: String },
    #[error(
        "layer {path} of the stream hashes to {actual}, and its image's config says {expected}: the stream is damaged; nothing was named"
    )]
    LayerMismatch {
        path: String,
        expected: Digest,
        actual: Digest,
    },
    #[error("cannot spool a blob to a temporary file: {0}")]
    Spool(std::io::Error),
}

/// An error and its sources, joined with `: ` (a source whose text is already there is left
/// out): what the network clients of stores (a registry's HTTP, containerd's gRPC) say when
/// their top-level message says little.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let t = c.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        cur = c.source();
    }
    s
}
