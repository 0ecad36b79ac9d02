//! Which engine: an enum, never a string compared in many places.

use std::fmt;
use std::str::FromStr;

/// A container engine imgkit can list, save from and load into.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EngineKind {
    /// dockerd (moby), through the `docker` CLI.
    Docker,
    /// containerd, through the `nerdctl` CLI.
    Nerdctl,
    /// containerd, through its own `ctr` CLI.
    Ctr,
    /// podman (no daemon).
    Podman,
}

impl EngineKind {
    /// Every kind, in the order `imgkit engines` shows them.
    pub const ALL: [Self; 4] = [Self::Docker, Self::Podman, Self::Ctr, Self::Nerdctl];

    /// The lowercase name (`docker`), also the default program name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Docker => "docker",
            Self::Nerdctl => "nerdctl",
            Self::Ctr => "ctr",
            Self::Podman => "podman",
        }
    }

    /// The environment variable that overrides the binary: `IMGKIT_DOCKER_BIN`, …
    pub fn bin_env(self) -> &'static str {
        match self {
            Self::Docker => "IMGKIT_DOCKER_BIN",
            Self::Nerdctl => "IMGKIT_NERDCTL_BIN",
            Self::Ctr => "IMGKIT_CTR_BIN",
            Self::Podman => "IMGKIT_PODMAN_BIN",
        }
    }

    /// Whether images live in containerd (namespaces, `--address`).
    pub fn is_containerd(self) -> bool {
        matches!(self, Self::Nerdctl | Self::Ctr)
    }

    /// Whether the engine needs a daemon to answer.
    pub fn has_daemon(self) -> bool {
        !matches!(self, Self::Podman)
    }
}

impl fmt::Display for EngineKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A name that is not an engine.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown engine {0:?} (docker, nerdctl, ctr, podman)")]
pub struct UnknownEngine(pub String);

impl FromStr for EngineKind {
    type Err = UnknownEngine;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| UnknownEngine(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for k in EngineKind::ALL {
            assert_eq!(k.to_string().parse::<EngineKind>().unwrap(), k);
        }
        assert!("Docker".parse::<EngineKind>().is_err());
    }
}
