//! Endpoints of a transfer: an engine (`docker`, `podman`, `ctr:k8s.io`, `nerdctl:k8s.io`) or an
//! archive file. `run --from/--to` take these specs; anything that is not an engine name is a
//! path (write `./docker` for a file called `docker`).

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use imgkit_engine::{Engine, EngineKind, EngineOptions};

/// A parsed `--from`/`--to` value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum EndpointSpec {
    /// An engine, with a containerd namespace for `ctr`/`nerdctl`.
    Engine {
        kind: EngineKind,
        namespace: Option<String>,
    },
    /// An archive file (docker-save or OCI tar; plain, gzip or zstd when reading).
    Archive(PathBuf),
}

/// Why an endpoint spec is not usable.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub(crate) enum SpecError {
    #[error("empty endpoint")]
    Empty,
    #[error("{0} has no namespaces (only ctr and nerdctl take `:NAMESPACE`)")]
    NamespaceNotSupported(EngineKind),
    #[error("empty namespace after `{0}:`")]
    EmptyNamespace(EngineKind),
}

impl FromStr for EndpointSpec {
    type Err = SpecError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.is_empty() {
            return Err(SpecError::Empty);
        }
        let (head, namespace) = match s.split_once(':') {
            Some((h, ns)) => (h, Some(ns)),
            None => (s, None),
        };
        let Ok(kind) = head.parse::<EngineKind>() else {
            return Ok(EndpointSpec::Archive(PathBuf::from(s)));
        };
        match namespace {
            None => Ok(EndpointSpec::Engine {
                kind,
                namespace: None,
            }),
            Some("") => Err(SpecError::EmptyNamespace(kind)),
            Some(_) if !matches!(kind, EngineKind::Ctr | EngineKind::Nerdctl) => {
                Err(SpecError::NamespaceNotSupported(kind))
            }
            Some(ns) => Ok(EndpointSpec::Engine {
                kind,
                namespace: Some(ns.to_owned()),
            }),
        }
    }
}

impl fmt::Display for EndpointSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EndpointSpec::Engine {
                kind,
                namespace: Some(ns),
            } => write!(f, "{kind}:{ns}"),
            EndpointSpec::Engine {
                kind,
                namespace: None,
            } => write!(f, "{kind}"),
            EndpointSpec::Archive(p) => write!(f, "{}", p.display()),
        }
    }
}

impl EndpointSpec {
    /// The engine options naming this endpoint for `save`/`load`/`ls`: `--engine ctr -n k8s.io`.
    pub(crate) fn engine_flags(&self) -> String {
        match self {
            EndpointSpec::Engine {
                kind,
                namespace: Some(ns),
            } => format!("--engine {kind} -n {ns}"),
            EndpointSpec::Engine {
                kind,
                namespace: None,
            } => format!("--engine {kind}"),
            EndpointSpec::Archive(p) => format!("-i {}", p.display()),
        }
    }

    /// The spec naming an opened engine (`ctr:k8s.io`; the default namespace is left out).
    pub(crate) fn of(engine: &Engine) -> Self {
        let ns = engine.namespace();
        let namespace = (engine.kind().is_containerd() && ns != imgkit_engine::DEFAULT_NAMESPACE)
            .then(|| ns.to_owned());
        EndpointSpec::Engine {
            kind: engine.kind(),
            namespace,
        }
    }
}

/// Opens an engine endpoint (resolves its binary; honours IMGKIT_<ENGINE>_BIN, DOCKER_HOST, …).
pub(crate) fn open_engine(kind: EngineKind, namespace: Option<String>) -> anyhow::Result<Engine> {
    let opts = EngineOptions {
        namespace,
        trace: crate::engine_args::trace(),
        // The ctr CLI (the fallback of native `ctr:`) talks to the containerd `--address` or
        // discovery names (k3s' socket).
        address: (kind == EngineKind::Ctr)
            .then(crate::containerd::cli_address)
            .flatten(),
        ..EngineOptions::default()
    };
    let opts = imgkit_engine::rancher_desktop::Places::here().apply(kind, opts);
    Ok(Engine::new(kind, opts)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_engines_namespaces_and_paths() {
        let e = |s: &str| s.parse::<EndpointSpec>();
        assert_eq!(
            e("docker"),
            Ok(EndpointSpec::Engine {
                kind: EngineKind::Docker,
                namespace: None
            })
        );
        assert_eq!(
            e("podman"),
            Ok(EndpointSpec::Engine {
                kind: EngineKind::Podman,
                namespace: None
            })
        );
        assert_eq!(
            e("ctr:k8s.io"),
            Ok(EndpointSpec::Engine {
                kind: EngineKind::Ctr,
                namespace: Some("k8s.io".into())
            })
        );
        assert_eq!(
            e("nerdctl:k8s.io"),
            Ok(EndpointSpec::Engine {
                kind: EngineKind::Nerdctl,
                namespace: Some("k8s.io".into())
            })
        );
        assert_eq!(
            e("images.tar"),
            Ok(EndpointSpec::Archive("images.tar".into()))
        );
        assert_eq!(e("./docker"), Ok(EndpointSpec::Archive("./docker".into())));
        assert_eq!(
            e("C:\\x\\images.tar"),
            Ok(EndpointSpec::Archive("C:\\x\\images.tar".into()))
        );
        assert_eq!(
            e("docker:k8s.io"),
            Err(SpecError::NamespaceNotSupported(EngineKind::Docker))
        );
        assert_eq!(e("ctr:"), Err(SpecError::EmptyNamespace(EngineKind::Ctr)));
        assert_eq!(e(""), Err(SpecError::Empty));
        assert_eq!(e("ctr:k8s.io").unwrap().to_string(), "ctr:k8s.io");
    }
}
