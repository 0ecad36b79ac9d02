//! Finding an engine's binary: `--engine-bin`, else `IMGKIT_<ENGINE>_BIN`, else the engine's
//! name on PATH (Rancher Desktop's own folders are tried by [`crate::rancher_desktop`] when
//! none of these finds one).

use std::env;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};

use crate::{EngineKind, Error};

/// The binary for `kind`: the explicit path, else `IMGKIT_<ENGINE>_BIN`, else PATH.
pub(crate) fn resolve_bin(kind: EngineKind, explicit: Option<&Path>) -> Result<PathBuf, Error> {
    let (path, origin) = match explicit {
        Some(p) => (Some(p.to_path_buf()), "--engine-bin".to_owned()),
        None => (
            env::var_os(kind.bin_env())
                .filter(|v| !v.is_empty())
                .map(PathBuf::from),
            kind.bin_env().to_owned(),
        ),
    };
    if let Some(path) = path {
        // A bare name is looked up on PATH like the default.
        if path.components().count() == 1 && !path.is_absolute() {
            return find_on_path(path.as_os_str()).ok_or_else(|| Error::BinaryMissing {
                kind,
                path: path.clone(),
                origin,
            });
        }
        if is_executable(&path) {
            return Ok(path);
        }
        return Err(Error::BinaryMissing { kind, path, origin });
    }
    find_on_path(OsStr::new(kind.as_str())).ok_or_else(|| Error::BinaryNotFound {
        kind,
        program: kind.as_str().to_owned(),
    })
}

pub(crate) fn find_on_path(name: &OsStr) -> Option<PathBuf> {
    let path = env::var_os("PATH")?;
    for dir in env::split_paths(&path) {
        let candidate = dir.join(name);
        if is_executable(&candidate) {
            return Some(candidate);
        }
        if cfg!(windows) {
            let exe = candidate.with_extension("exe");
            if is_executable(&exe) {
                return Some(exe);
            }
        }
    }
    None
}

#[cfg(unix)]
pub(crate) fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    p.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(not(unix))]
pub(crate) fn is_executable(p: &Path) -> bool {
    p.is_file()
}
