//! OCI registries as imgkit image stores (`registry:HOST[:PORT][/PATH]`).
//!
//! A blocking API over an async HTTP client kept inside this crate: [`Registry::open`] starts
//! a small tokio runtime of its own, and nothing async leaves the crate, so the selection,
//! plugin and archive crates stay synchronous (and wasmtime's sync stdio never runs inside a
//! runtime: the runtime's threads only ever run this crate's HTTP work).
//!
//! - As a source ([`RegistrySource`], an `imgkit_store::Source`): the catalog and each
//!   repository's tags as docker-shaped records (Repository, Tag, Digest = the manifest or
//!   index digest, ID = the config digest, CreatedAt from the config, Size, Platform),
//!   fetched concurrently (bounded); blobs streamed, each digest checked as it is read.
//! - As a destination ([`RegistryDestination`], an `imgkit_store::Destination`): HEAD first,
//!   cross-repository mounts, streamed uploads in parallel (bounded), layers that arrive
//!   uncompressed compressed on the way, manifests pushed byte for byte and last.
//! - Credentials from docker's `config.json` (`credHelpers`, `credsStore`, `auths`); TLS with
//!   the system's roots and `--ca-cert`; plain HTTP only for loopback hosts and hosts named as
//!   insecure; retries with backoff on dropped connections and 5xx.
//!
//! The protocol is spoken over `reqwest` directly rather than through `oci-client`: see
//! docs/registry.md ("Why not oci-client") for the reasons.

mod auth;
mod cache;
mod client;
mod dest;
mod error;
mod proto;
mod source;
mod spec;

use std::sync::Arc;

pub use client::ClientOptions;
pub use dest::{Compress, PushStats, RegistryDestination, target_names};
pub use error::{Error, Result};
pub use source::{RegistrySource, host_platform};
pub use spec::{RegistrySpec, SCHEME};

/// How a push or pull is done.
#[derive(Debug, Clone)]
pub struct Options {
    pub client: ClientOptions,
    /// How uncompressed layers are sent.
    pub compress: Compress,
    /// Blobs uploaded at once.
    pub jobs: usize,
    /// The platform chosen from an index when listing (`linux/amd64`).
    pub platform: String,
    /// Where facts learned by pushes are kept (default: `$IMGKIT_CACHE_DIR`,
    /// `$XDG_CACHE_HOME/imgkit`, `~/.cache/imgkit`).
    pub cache_dir: Option<std::path::PathBuf>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            client: ClientOptions::default(),
            compress: Compress::Gzip,
            jobs: 4,
            platform: host_platform(),
            cache_dir: None,
        }
    }
}

/// How another client reaches a registry as imgkit does ([`Registry::peer_access`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerAccess {
    /// Plain HTTP (a loopback host, or one named with `--insecure-registry`) rather than TLS.
    pub plain_http: bool,
    /// The docker `config.json` the credential came from, when there was one.
    pub authfile: Option<std::path::PathBuf>,
}

/// An opened registry: its client and the runtime it runs on.
pub struct Registry {
    rt: tokio::runtime::Runtime,
    client: Arc<client::Client>,
    spec: RegistrySpec,
    options: Options,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("spec", &self.spec)
            .finish_non_exhaustive()
    }
}

impl Registry {
    /// Connects (`GET /v2/`): TLS, or plain HTTP where allowed; reads the credentials.
    pub fn open(spec: &RegistrySpec, options: Options) -> Result<Self> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("imgkit-registry")
            .enable_all()
            .build()
            .map_err(Error::io("cannot start the registry client's runtime"))?;
        let client = rt.block_on(client::Client::connect(spec, &options.client))?;
        Ok(Self {
            rt,
            client: Arc::new(client),
            spec: spec.clone(),
            options,
        })
    }

    pub fn spec(&self) -> &RegistrySpec {
        &self.spec
    }

    /// Where the credentials were looked for (said in messages).
    pub fn credentials_tried(&self) -> &str {
        self.client.tried()
    }

    /// How another client on this machine (podman pulling by itself) can reach this registry
    /// as imgkit does: over plain HTTP or TLS, and the docker `config.json` imgkit's
    /// credential came from (its `auths` or `credHelpers`, which podman reads too). `None`
    /// when the credential came from `credsStore`, which podman does not read.
    pub fn peer_access(&self) -> Option<PeerAccess> {
        let (authfile, field) = match self.client.credential_source() {
            Some((path, field)) => (Some(path.to_owned()), Some(field)),
            None => (None, None),
        };
        if field == Some("credsStore") {
            return None;
        }
        Some(PeerAccess {
            plain_http: self.client.is_plain_http(),
            authfile,
        })
    }

    /// Lists the registry (every repository under the spec's path) as a source.
    pub fn source(&self) -> Result<RegistrySource> {
        RegistrySource::list(
            self.client.clone(),
            self.rt.handle().clone(),
            self.spec.clone(),
            None,
            self.options.platform.clone(),
        )
    }

    /// Lists only `repositories` (no catalog request).
    pub fn source_of(&self, repositories: Vec<String>) -> Result<RegistrySource> {
        RegistrySource::list(
            self.client.clone(),
            self.rt.handle().clone(),
            self.spec.clone(),
            Some(repositories),
            self.options.platform.clone(),
        )
    }

    /// The image ID (config digest; of this platform's manifest for an index) a name of this
    /// registry points at, `None` when the registry does not have that tag.
    pub fn config_digest(
        &self,
        name: &imgkit_types::ImageRef,
    ) -> Result<Option<imgkit_types::Digest>> {
        let Some(repo) = self.spec.repository_of(name) else {
            return Ok(None);
        };
        let Some(reference) = name
            .tag()
            .map(str::to_owned)
            .or_else(|| name.digest().map(ToString::to_string))
        else {
            return Ok(None);
        };
        let c = self.client.clone();
        let platform = self.options.platform.clone();
        self.rt.block_on(async move {
            let host = c.host.clone();
            let top = match proto::get_manifest(&c, &repo, &reference).await {
                Ok(m) => m,
                Err(Error::NotFound { .. }) => return Ok(None),
                Err(e) => return Err(e),
            };
            let mut m = top.parse(&host)?;
            if m.config.is_none() {
                let Some(child) = m.manifests.iter().find(|d| {
                    d.platform
                        .as_ref()
                        .is_some_and(|p| format!("{}/{}", p.os, p.architecture) == platform)
                }) else {
                    return Ok(None);
                };
                m = proto::get_manifest(&c, &repo, &child.digest)
                    .await?
                    .parse(&host)?;
            }
            match m.config {
                Some(cfg) => Ok(cfg.digest.parse().ok()),
                None => Ok(None),
            }
        })
    }

    /// The registry as a destination.
    pub fn destination(&self) -> Result<RegistryDestination> {
        RegistryDestination::new(
            self.client.clone(),
            self.rt.handle().clone(),
            self.spec.clone(),
            self.options.compress,
            self.options.jobs,
            self.options.cache_dir.as_deref(),
        )
    }
}
