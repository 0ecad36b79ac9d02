//! Member paths: every name in an archive is checked and normalized before anything uses it,
//! and links resolve only to members inside the archive.

use crate::error::{Error, Result};

/// Normalizes a member name (`./a//b/` → `a/b`), rejecting absolute paths, `..`, NUL and
/// backslashes (a Windows-style separator could smuggle `..\`).
pub(crate) fn normalize(raw: &[u8]) -> Result<String> {
    let unsafe_path = |reason| Error::UnsafePath {
        path: String::from_utf8_lossy(raw).into_owned(),
        reason,
    };
    let text = std::str::from_utf8(raw).map_err(|_| unsafe_path("not UTF-8"))?;
    if text.starts_with('/') {
        return Err(unsafe_path("absolute path"));
    }
    if text.contains('\0') {
        return Err(unsafe_path("NUL byte in name"));
    }
    if text.contains('\\') {
        return Err(unsafe_path("backslash in name"));
    }
    if text.len() > 1 && text.as_bytes()[1] == b':' && text.as_bytes()[0].is_ascii_alphabetic() {
        return Err(unsafe_path("drive-letter path"));
    }
    let mut parts = Vec::new();
    for part in text.split('/') {
        match part {
            "" | "." => {}
            ".." => return Err(unsafe_path("`..` component")),
            p => parts.push(p),
        }
    }
    Ok(parts.join("/"))
}

/// Resolves a symlink target relative to the directory holding `link`; the result must stay
/// inside the archive.
pub(crate) fn resolve_symlink(link: &str, target: &[u8]) -> Result<String> {
    let unsafe_path = |reason| Error::UnsafePath {
        path: link.to_owned(),
        reason,
    };
    let target = std::str::from_utf8(target).map_err(|_| unsafe_path("link target not UTF-8"))?;
    if target.starts_with('/') || target.contains('\\') || target.contains('\0') {
        return Err(unsafe_path("link points outside the archive"));
    }
    let mut parts: Vec<&str> = link.split('/').collect();
    parts.pop();
    for part in target.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if parts.pop().is_none() {
                    return Err(unsafe_path("link points outside the archive"));
                }
            }
            p => parts.push(p),
        }
    }
    Ok(parts.join("/"))
}

/// Resolves a hardlink target: a member name relative to the archive root.
pub(crate) fn resolve_hardlink(link: &str, target: &[u8]) -> Result<String> {
    normalize(target).map_err(|_| Error::UnsafePath {
        path: link.to_owned(),
        reason: "hard link points outside the archive",
    })
}

/// `blobs/<alg>/<hex>` → `<alg>:<hex>`.
pub(crate) fn blob_digest(path: &str) -> Option<imgkit_types::Digest> {
    let rest = path.strip_prefix("blobs/")?;
    let (alg, hex) = rest.split_once('/')?;
    format!("{alg}:{hex}").parse().ok()
}

/// The member name of a blob.
pub(crate) fn blob_path(d: &imgkit_types::Digest) -> String {
    format!("blobs/{}/{}", d.algorithm(), d.hex())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_and_rejects() {
        assert_eq!(normalize(b"./a//b/").unwrap(), "a/b");
        assert_eq!(normalize(b"manifest.json").unwrap(), "manifest.json");
        for bad in [
            &b"/etc/passwd"[..],
            b"../x",
            b"a/../../x",
            b"a/..",
            b"a\\..\\b",
            b"C:x",
            b"a\0b",
        ] {
            assert!(
                normalize(bad).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn symlinks_stay_inside() {
        assert_eq!(
            resolve_symlink("a/layer.tar", b"../b/layer.tar").unwrap(),
            "b/layer.tar"
        );
        assert!(resolve_symlink("a/layer.tar", b"../../etc/passwd").is_err());
        assert!(resolve_symlink("layer.tar", b"/etc/passwd").is_err());
        assert!(resolve_hardlink("x", b"../y").is_err());
    }
}
