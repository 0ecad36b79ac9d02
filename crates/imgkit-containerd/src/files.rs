//! The local fast path: committed blobs read straight from the content store's files.
//!
//! containerd's content plugin (`io.containerd.content.v1.content`) says where its store is
//! (its `root` export, `ctr plugins ls -d`); a committed blob is the file
//! `ROOT/blobs/sha256/HEX`, never changed once committed (an open file stays readable if a
//! collection unlinks it). When containerd is on this machine and that directory can be read,
//! blobs are read from it instead of being served over gRPC: no copy through containerd's
//! process, no HTTP/2 framing. The API stays the path for everything else (no root given, a
//! containerd in a VM or on another machine, another user's store, a blob whose file is not
//! there), per run, and per blob when a file cannot be opened.
//!
//! Nothing here checks a digest: as for every [`imgkit_store::Source`], the receiver does (the
//! archive writer, the destination), once per blob; a damaged file is caught there, naming the
//! blob.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};

use containerd_client::services::v1::PluginsRequest;
use containerd_client::services::v1::introspection_client::IntrospectionClient;
use imgkit_store::BlobInfo;

use crate::client::Ctx;

/// The content plugin's type and ID (containerd 1.x).
const CONTENT_PLUGIN: (&str, &str) = ("io.containerd.content.v1", "content");

/// Where containerd's content store is, if it says (its content plugin's `root` export).
pub(crate) async fn content_root(ctx: &Ctx) -> Result<PathBuf, String> {
    let mut c = IntrospectionClient::new(ctx.channel.clone());
    let r = c
        .plugins(ctx.req(PluginsRequest {
            filters: vec![format!("type=={}", CONTENT_PLUGIN.0)],
        }))
        .await
        .map_err(|s| format!("asking containerd for its plugins: {}", s.message()))?;
    r.into_inner()
        .plugins
        .into_iter()
        .find(|p| p.r#type == CONTENT_PLUGIN.0 && p.id == CONTENT_PLUGIN.1)
        .and_then(|p| p.exports.get("root").cloned())
        .filter(|r| !r.is_empty())
        .map(PathBuf::from)
        .ok_or_else(|| "containerd does not say where its content store is".to_owned())
}

/// Whether the blob files under `root` can be read from here: the directory of sha256 blobs
/// is there and can be listed (a containerd in a VM or on another machine names a root that
/// is not here, or not its own; another user's cannot be read).
pub(crate) fn usable(root: &Path) -> Result<(), String> {
    let dir = root.join("blobs").join("sha256");
    match std::fs::read_dir(&dir) {
        Ok(_) => Ok(()),
        Err(e) => Err(format!("{}: {e}", dir.display())),
    }
}

/// The committed file of `blob` under `root`, opened, with the size its descriptor says. The
/// path is built only from a checked sha256 hex digest.
pub(crate) fn open(root: &Path, blob: &BlobInfo) -> io::Result<File> {
    let hex = blob.digest.hex();
    if blob.digest.algorithm() != "sha256"
        || hex.len() != 64
        || !hex
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return Err(io::Error::new(
            io::ErrorKind::Unsupported,
            format!("{}: not a sha256 digest", blob.digest),
        ));
    }
    let path = root.join("blobs").join("sha256").join(hex);
    let file = File::open(&path)?;
    let meta = file.metadata()?;
    if !meta.is_file() || meta.len() != blob.size {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "{}: {} bytes, {} expected",
                path.display(),
                meta.len(),
                blob.size
            ),
        ));
    }
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blob(digest: &str, size: u64) -> BlobInfo {
        BlobInfo {
            digest: digest.parse().unwrap(),
            size,
            media_type: String::new(),
        }
    }

    #[test]
    fn a_blob_file_opens_only_by_a_sha256_hex_digest_and_at_its_size() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("blobs/sha256");
        std::fs::create_dir_all(&dir).unwrap();
        let hex = "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824";
        std::fs::write(dir.join(hex), b"hello").unwrap();
        assert!(usable(tmp.path()).is_ok());
        assert!(open(tmp.path(), &blob(&format!("sha256:{hex}"), 5)).is_ok());
        let e = open(tmp.path(), &blob(&format!("sha256:{hex}"), 6)).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
        let other = format!("sha512:{}", "ab".repeat(64));
        let e = open(tmp.path(), &blob(&other, 5)).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::Unsupported);
        let absent = format!("sha256:{}", "0".repeat(64));
        let e = open(tmp.path(), &blob(&absent, 5)).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
        assert!(usable(&tmp.path().join("nowhere")).is_err());
    }
}
