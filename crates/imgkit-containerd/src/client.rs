//! The connection: a tokio runtime of its own and a tonic channel to containerd's socket, behind
//! blocking calls. Every request carries the namespace (`containerd-namespace` metadata) and,
//! where resources are made, the lease (`containerd-lease`).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use containerd_client::services::v1::content_client::ContentClient;
use containerd_client::services::v1::version_client::VersionClient;
use containerd_client::services::v1::{
    InfoRequest, ListContentRequest, ReadContentRequest, UpdateRequest,
};
use containerd_client::services::v1::{ListNamespacesRequest, namespaces_client::NamespacesClient};
use containerd_client::tonic::metadata::MetadataValue;
use containerd_client::tonic::transport::Channel;
use containerd_client::tonic::{Request, Status};
use imgkit_store::error_chain;
use imgkit_types::Digest;

use crate::address::Address;
use crate::error::{Error, Result};

/// How long connecting may take before containerd counts as unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A connection to containerd in one namespace. Cheap to clone; [`Client::with_namespace`]
/// shares the connection.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
    pub(crate) ctx: Ctx,
}

struct Inner {
    rt: tokio::runtime::Runtime,
    /// The content store's root when its blob files can be read from here (decided on the
    /// first read of blobs, once per connection).
    files: OnceLock<Option<PathBuf>>,
    /// Blobs only over the API ([`Client::read_over_api_only`], or a file that could not be
    /// opened for want of permission).
    api_only: AtomicBool,
    /// Where notes on the path taken go (`-v`).
    notes: Mutex<Option<Notes>>,
}

type Notes = Arc<dyn Fn(&str) + Send + Sync>;

/// What every request needs, cloneable into tasks.
#[derive(Clone)]
pub(crate) struct Ctx {
    pub(crate) channel: Channel,
    pub(crate) namespace: String,
    pub(crate) address: String,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("address", &self.ctx.address)
            .field("namespace", &self.ctx.namespace)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// Connects to containerd at `address`, in `namespace`. The socket is tried first with a
    /// plain connect, so a missing socket, a permission denied and a dead daemon each get
    /// their own error.
    pub fn connect(address: &Address, namespace: &str) -> Result<Self> {
        check_namespace(namespace)?;
        let path = address.path.clone();
        precheck(&path)?;
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("imgkit-containerd")
            .enable_all()
            .build()
            .map_err(|e| Error::Unreachable {
                address: path.clone(),
                why: format!("cannot start the client's runtime: {e}"),
            })?;
        let channel = rt
            .block_on(async {
                tokio::time::timeout(CONNECT_TIMEOUT, connect_channel(path.clone())).await
            })
            .map_err(|_| Error::Unreachable {
                address: path.clone(),
                why: format!("no answer within {} s", CONNECT_TIMEOUT.as_secs()),
            })?
            .map_err(|e| Error::Unreachable {
                address: path.clone(),
                why: error_chain(&e),
            })?;
        let client = Self {
            inner: Arc::new(Inner {
                rt,
                files: OnceLock::new(),
                api_only: AtomicBool::new(false),
                notes: Mutex::new(None),
            }),
            ctx: Ctx {
                channel,
                namespace: namespace.to_owned(),
                address: path,
            },
        };
        // A socket that accepts and a server that is not containerd (or not answering) fail here.
        client.version()?;
        Ok(client)
    }

    /// The same connection in another namespace.
    pub fn with_namespace(&self, namespace: &str) -> Result<Self> {
        check_namespace(namespace)?;
        let mut c = self.clone();
        namespace.clone_into(&mut c.ctx.namespace);
        Ok(c)
    }

    /// The namespace every call carries.
    pub fn namespace(&self) -> &str {
        &self.ctx.namespace
    }

    /// The socket.
    pub fn address(&self) -> &str {
        &self.ctx.address
    }

    /// Runs a future on the client's runtime, blocking the calling thread (never a runtime
    /// thread: this crate's API is only called from outside).
    pub(crate) fn block_on<F: std::future::Future>(&self, f: F) -> F::Output {
        self.inner.rt.block_on(f)
    }

    /// Spawns a task on the client's runtime.
    pub(crate) fn spawn<F>(&self, f: F) -> tokio::task::JoinHandle<F::Output>
    where
        F: std::future::Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.inner.rt.spawn(f)
    }

    /// Sends notes on the path taken (blobs read from files or over the API; once per run) to
    /// `f`.
    pub fn on_note(&self, f: impl Fn(&str) + Send + Sync + 'static) {
        *self.inner.notes.lock().expect("notes") = Some(Arc::new(f));
    }

    pub(crate) fn note(&self, msg: &str) {
        let f = self.inner.notes.lock().expect("notes").clone();
        if let Some(f) = f {
            f(msg);
        }
    }

    /// Reads blobs over the API only, never from the content store's files.
    pub fn read_over_api_only(&self) {
        self.inner.api_only.store(true, Ordering::Relaxed);
    }

    /// The content store's root when blob files are read from it: asked of containerd (its
    /// content plugin's `root`) and checked once per connection, the path taken noted.
    pub(crate) fn blob_files(&self) -> Option<PathBuf> {
        if self.inner.api_only.load(Ordering::Relaxed) {
            if self.inner.files.set(None).is_ok() {
                self.note("blobs read over containerd's API (asked to)");
            }
            return None;
        }
        self.inner
            .files
            .get_or_init(|| {
                let ctx = self.ctx.clone();
                let root = self
                    .block_on(async move { crate::files::content_root(&ctx).await })
                    .and_then(|root| crate::files::usable(&root).map(|()| root));
                match &root {
                    Ok(root) => self.note(&format!(
                        "blobs read from containerd's content files under {} (committed content, checked by digest as it is written)",
                        root.display()
                    )),
                    Err(why) => self.note(&format!(
                        "blobs read over containerd's API: its content files cannot be read from here ({why})"
                    )),
                }
                root.ok()
            })
            .clone()
            .filter(|_| !self.inner.api_only.load(Ordering::Relaxed))
    }

    /// Blob files cannot be opened (permission denied): the rest over the API, said once.
    pub(crate) fn files_refused(&self, why: &std::io::Error) {
        if !self.inner.api_only.swap(true, Ordering::Relaxed) {
            self.note(&format!(
                "blobs read over containerd's API from here on: {why}"
            ));
        }
    }

    /// containerd's version (`1.6.20~ds1`).
    pub fn version(&self) -> Result<String> {
        let ctx = self.ctx.clone();
        self.block_on(async move {
            let mut c = VersionClient::new(ctx.channel.clone());
            let r = c
                .version(ctx.req(()))
                .await
                .map_err(|s| ctx.status("version", &s))?;
            Ok(r.into_inner().version)
        })
    }

    /// The namespaces containerd has, sorted.
    pub fn namespaces(&self) -> Result<Vec<String>> {
        let ctx = self.ctx.clone();
        self.block_on(async move {
            let mut c = NamespacesClient::new(ctx.channel.clone());
            let r = c
                .list(Request::new(ListNamespacesRequest::default()))
                .await
                .map_err(|s| ctx.status("listing namespaces", &s))?;
            let mut names: Vec<String> = r
                .into_inner()
                .namespaces
                .into_iter()
                .map(|n| n.name)
                .collect();
            names.sort();
            Ok(names)
        })
    }

    /// An error unless the namespace exists (containerd makes one on first write, so only a
    /// source must exist).
    pub fn check_namespace_exists(&self) -> Result<()> {
        let known = self.namespaces()?;
        if known.iter().any(|n| n == &self.ctx.namespace) {
            return Ok(());
        }
        Err(Error::UnknownNamespace {
            address: self.ctx.address.clone(),
            namespace: self.ctx.namespace.clone(),
            known: if known.is_empty() {
                "none".to_owned()
            } else {
                known.join(", ")
            },
        })
    }
}

impl Ctx {
    /// A request in this namespace.
    pub(crate) fn req<T>(&self, msg: T) -> Request<T> {
        let mut r = Request::new(msg);
        r.metadata_mut().insert(
            "containerd-namespace",
            MetadataValue::try_from(self.namespace.as_str()).expect("checked namespace"),
        );
        r
    }

    /// A request in this namespace under `lease`.
    pub(crate) fn leased<T>(&self, msg: T, lease: &str) -> Request<T> {
        let mut r = self.req(msg);
        if let Ok(v) = MetadataValue::try_from(lease) {
            r.metadata_mut().insert("containerd-lease", v);
        }
        r
    }

    pub(crate) fn status(&self, what: &str, s: &Status) -> Error {
        Error::Call {
            address: self.address.clone(),
            what: what.to_owned(),
            code: s.code().into(),
            message: s.message().to_owned(),
        }
    }

    pub(crate) fn content_error(&self, what: impl Into<String>, why: impl Into<String>) -> Error {
        Error::Content {
            address: self.address.clone(),
            what: what.into(),
            why: why.into(),
        }
    }

    pub(crate) fn content(&self) -> ContentClient<Channel> {
        ContentClient::new(self.channel.clone())
            .max_decoding_message_size(64 << 20)
            .max_encoding_message_size(64 << 20)
    }

    /// The content store's record of a blob: `None` when it does not hold it.
    pub(crate) async fn info(
        &self,
        digest: &Digest,
    ) -> Result<Option<containerd_client::services::v1::Info>> {
        match self
            .content()
            .info(self.req(InfoRequest {
                digest: digest.to_string(),
            }))
            .await
        {
            Ok(r) => Ok(r.into_inner().info),
            Err(s) if s.code() == containerd_client::tonic::Code::NotFound => Ok(None),
            Err(s) => Err(self.status(&format!("content info {digest}"), &s)),
        }
    }

    /// The blobs the content store holds whose `containerd.io/uncompressed` label names
    /// `diff_id` (layers containerd pulled compressed and unpacked: its unpacker labels them),
    /// with their sizes.
    pub(crate) async fn compressed_of(&self, diff_id: &Digest) -> Result<Vec<(Digest, u64)>> {
        let what = format!("listing the blobs that uncompress to {diff_id}");
        let mut stream = self
            .content()
            .list(self.req(ListContentRequest {
                filters: vec![format!(
                    "labels.\"containerd.io/uncompressed\"==\"{diff_id}\""
                )],
            }))
            .await
            .map_err(|s| self.status(&what, &s))?
            .into_inner();
        let mut out = Vec::new();
        while let Some(m) = stream.message().await.map_err(|s| self.status(&what, &s))? {
            for info in m.info {
                if let Ok(d) = info.digest.parse::<Digest>() {
                    out.push((d, u64::try_from(info.size).unwrap_or(0)));
                }
            }
        }
        Ok(out)
    }

    /// The first bytes of a blob (up to `n`).
    pub(crate) async fn read_head(&self, digest: &Digest, n: usize) -> Result<Vec<u8>> {
        let what = format!("reading {digest}");
        let mut stream = self
            .content()
            .read(self.req(ReadContentRequest {
                digest: digest.to_string(),
                offset: 0,
                size: i64::try_from(n).unwrap_or(i64::MAX),
            }))
            .await
            .map_err(|s| self.status(&what, &s))?
            .into_inner();
        let mut out = Vec::new();
        while let Some(m) = stream.message().await.map_err(|s| self.status(&what, &s))? {
            out.extend_from_slice(&m.data);
            if out.len() >= n {
                break;
            }
        }
        out.truncate(n);
        Ok(out)
    }

    /// A small blob (a manifest, an index, a config) whole, its digest checked.
    pub(crate) async fn read_small(&self, digest: &Digest) -> Result<Vec<u8>> {
        const MAX: usize = 16 << 20;
        let what = format!("reading {digest}");
        let mut stream = self
            .content()
            .read(self.req(ReadContentRequest {
                digest: digest.to_string(),
                offset: 0,
                size: 0,
            }))
            .await
            .map_err(|s| self.status(&what, &s))?
            .into_inner();
        let mut out = Vec::new();
        while let Some(m) = stream.message().await.map_err(|s| self.status(&what, &s))? {
            out.extend_from_slice(&m.data);
            if out.len() > MAX {
                return Err(
                    self.content_error(what, "larger than 16 MiB: not a manifest or config")
                );
            }
        }
        let actual = crate::sha256_hex(&out);
        if actual != digest.hex() {
            return Err(self.content_error(
                what,
                format!("its content hashes to sha256:{actual}: the content store is damaged"),
            ));
        }
        Ok(out)
    }

    /// Sets `labels` on a blob (only those keys; other labels stay).
    pub(crate) async fn set_labels(
        &self,
        digest: &Digest,
        labels: HashMap<String, String>,
    ) -> Result<()> {
        if labels.is_empty() {
            return Ok(());
        }
        let paths = labels.keys().map(|k| format!("labels.{k}")).collect();
        self.content()
            .update(self.req(UpdateRequest {
                info: Some(containerd_client::services::v1::Info {
                    digest: digest.to_string(),
                    labels,
                    ..Default::default()
                }),
                update_mask: Some(prost_types::FieldMask { paths }),
            }))
            .await
            .map_err(|s| self.status(&format!("labelling {digest}"), &s))?;
        Ok(())
    }
}

/// HTTP/2 flow-control windows: h2's default (64 KiB per stream) costs a round trip per 64 KiB
/// of a blob; containerd sends 1 MiB messages.
const STREAM_WINDOW: u32 = 16 << 20;
const CONNECTION_WINDOW: u32 = 64 << 20;

/// A channel over the socket (the URI is a placeholder: the connector dials the path).
async fn connect_channel(
    path: String,
) -> Result<Channel, containerd_client::tonic::transport::Error> {
    containerd_client::tonic::transport::Endpoint::from_static("http://[::]")
        .initial_stream_window_size(Some(STREAM_WINDOW))
        .initial_connection_window_size(Some(CONNECTION_WINDOW))
        .connect_with_connector(tower::service_fn(move |_| {
            let path = path.clone();
            async move { dial(&path).await.map(hyper_util::rt::TokioIo::new) }
        }))
        .await
}

#[cfg(unix)]
async fn dial(path: &str) -> std::io::Result<tokio::net::UnixStream> {
    tokio::net::UnixStream::connect(path).await
}

#[cfg(windows)]
async fn dial(path: &str) -> std::io::Result<tokio::net::windows::named_pipe::NamedPipeClient> {
    tokio::net::windows::named_pipe::ClientOptions::new().open(path)
}

#[cfg(not(any(unix, windows)))]
async fn dial(path: &str) -> std::io::Result<tokio::io::DuplexStream> {
    Err(std::io::Error::other(format!(
        "{path}: containerd's API needs a unix socket or a named pipe"
    )))
}

/// containerd's namespace rule (`[a-zA-Z0-9]([a-zA-Z0-9_.-]*)`, dot-separated parts).
fn check_namespace(ns: &str) -> Result<()> {
    let ok = ns.split('.').all(|part| {
        let mut chars = part.chars();
        chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    }) && ns.len() <= 76;
    if ok {
        Ok(())
    } else {
        Err(Error::BadNamespace(ns.to_owned()))
    }
}

/// A plain connect to the socket, for an error that says which of "missing", "permission
/// denied" and "nobody listening" it is.
#[cfg(unix)]
fn precheck(path: &str) -> Result<()> {
    use std::io::ErrorKind;
    if !path.starts_with('/') && !path.starts_with('.') {
        return Err(Error::Unsupported {
            address: path.to_owned(),
        });
    }
    match std::os::unix::net::UnixStream::connect(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == ErrorKind::NotFound => Err(Error::NoSocket {
            address: path.to_owned(),
        }),
        Err(e) if e.kind() == ErrorKind::PermissionDenied => Err(Error::PermissionDenied {
            address: path.to_owned(),
            why: e.to_string(),
        }),
        Err(e) => Err(Error::Unreachable {
            address: path.to_owned(),
            why: e.to_string(),
        }),
    }
}

/// Named pipes on Windows (`\\.\pipe\containerd-containerd`); the connect itself says the rest.
#[cfg(windows)]
fn precheck(path: &str) -> Result<()> {
    if path.starts_with(r"\\.\pipe\") {
        Ok(())
    } else {
        Err(Error::Unsupported {
            address: path.to_owned(),
        })
    }
}

#[cfg(not(any(unix, windows)))]
fn precheck(path: &str) -> Result<()> {
    Err(Error::Unsupported {
        address: path.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespaces_follow_containerds_rule() {
        for ok in ["default", "k8s.io", "moby", "a-b_c.d"] {
            assert!(check_namespace(ok).is_ok(), "{ok}");
        }
        for bad in ["", "all ns", ".x", "x.", "-x", "ns/1", "a\nb"] {
            assert!(check_namespace(bad).is_err(), "{bad:?}");
        }
    }
}
