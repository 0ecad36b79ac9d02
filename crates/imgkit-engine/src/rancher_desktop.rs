//! Rancher Desktop's places, used only when nothing else names an engine's binary or socket:
//! its CLIs in `~/.rd/bin` (`nerdctl` there is a wrapper that runs nerdctl inside Rancher
//! Desktop's VM; on Windows the app's `resources\resources\win32\bin`) and, on macOS and Linux,
//! its docker socket `~/.rd/docker.sock` when `/var/run/docker.sock` is absent (Rancher Desktop
//! without administrative access).

use std::env;
use std::path::{Path, PathBuf};

use crate::{EngineKind, EngineOptions, Error};

/// Where Rancher Desktop lives on this machine.
#[derive(Debug, Clone, Default)]
pub struct Places {
    /// Directories holding Rancher Desktop's CLIs, in search order.
    pub bin_dirs: Vec<PathBuf>,
    /// Its docker socket, when present and docker's default socket is not.
    pub docker_socket: Option<PathBuf>,
}

impl Places {
    /// Rancher Desktop's places for the current user (nothing when it is not installed).
    pub fn here() -> Self {
        let home = env::var_os(if cfg!(windows) { "USERPROFILE" } else { "HOME" })
            .filter(|h| !h.is_empty())
            .map(PathBuf::from);
        let mut bin_dirs = Vec::new();
        if let Some(home) = &home {
            bin_dirs.push(home.join(".rd").join("bin"));
        }
        if cfg!(windows)
            && let Some(local) = env::var_os("LOCALAPPDATA").filter(|v| !v.is_empty())
        {
            bin_dirs.push(
                [
                    Path::new(&local),
                    Path::new("Programs/Rancher Desktop/resources/resources/win32/bin"),
                ]
                .iter()
                .collect(),
            );
        }
        let docker_socket = home
            .filter(|_| cfg!(unix) && !Path::new("/var/run/docker.sock").exists())
            .map(|h| h.join(".rd").join("docker.sock"))
            .filter(|s| s.exists());
        Self {
            bin_dirs,
            docker_socket,
        }
    }

    /// `opts` completed with Rancher Desktop's binary and docker socket where the user named
    /// neither (no `--engine-bin`/`IMGKIT_<ENGINE>_BIN`, no engine on PATH; no `--host`,
    /// `--context`, `DOCKER_HOST` or `DOCKER_CONTEXT`).
    pub fn apply(&self, kind: EngineKind, mut opts: EngineOptions) -> EngineOptions {
        if opts.bin.is_none()
            && matches!(
                crate::Engine::new(kind, opts.clone()),
                Err(Error::BinaryNotFound { .. })
            )
        {
            opts.bin = self.binary(kind);
        }
        let docker_env_set = ["DOCKER_HOST", "DOCKER_CONTEXT"]
            .iter()
            .any(|k| env::var_os(k).is_some_and(|v| !v.is_empty()));
        if kind == EngineKind::Docker
            && opts.docker_host.is_none()
            && opts.docker_context.is_none()
            && !docker_env_set
            && let Some(socket) = &self.docker_socket
        {
            opts.docker_host = Some(format!("unix://{}", socket.display()));
        }
        opts
    }

    /// The engine's CLI in Rancher Desktop's directories (`docker.exe`, `nerdctl.exe` on
    /// Windows). Rancher Desktop ships no `ctr` or `podman`.
    pub fn binary(&self, kind: EngineKind) -> Option<PathBuf> {
        if !matches!(kind, EngineKind::Docker | EngineKind::Nerdctl) {
            return None;
        }
        let name = if cfg!(windows) {
            format!("{}.exe", kind.as_str())
        } else {
            kind.as_str().to_owned()
        };
        self.bin_dirs
            .iter()
            .map(|d| d.join(&name))
            .find(|p| p.is_file())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_nerdctl_wrapper_and_socket_in_rd() {
        let home = std::env::temp_dir().join(format!("imgkit-rd-{}", std::process::id()));
        let bin = home.join(".rd").join("bin");
        std::fs::create_dir_all(&bin).unwrap();
        let name = if cfg!(windows) {
            "nerdctl.exe"
        } else {
            "nerdctl"
        };
        std::fs::write(bin.join(name), "#!/bin/sh\n").unwrap();
        let places = Places {
            bin_dirs: vec![bin.clone()],
            docker_socket: Some(home.join(".rd").join("docker.sock")),
        };
        assert_eq!(places.binary(EngineKind::Nerdctl), Some(bin.join(name)));
        assert_eq!(places.binary(EngineKind::Docker), None);
        assert_eq!(places.binary(EngineKind::Ctr), None);
        // An explicit host always wins over Rancher Desktop's socket.
        let opts = places.apply(
            EngineKind::Docker,
            EngineOptions {
                docker_host: Some("unix:///elsewhere.sock".into()),
                ..EngineOptions::default()
            },
        );
        assert_eq!(opts.docker_host.as_deref(), Some("unix:///elsewhere.sock"));
        std::fs::remove_dir_all(&home).unwrap();
    }
}
