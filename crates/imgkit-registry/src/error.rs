//! What can go wrong talking to a registry, said so that a person can act on it.

use imgkit_types::Digest;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0:?} is not a registry: {1}")]
    Spec(String, &'static str),
    #[error("authentication required for {host}: `docker login {host}` ({tried})")]
    AuthRequired { host: String, tried: String },
    #[error("{host} refused the credentials from {tried}: {detail}")]
    AuthRefused {
        host: String,
        tried: String,
        detail: String,
    },
    #[error(
        "TLS with {host} failed: {detail}; if it uses a private CA, pass that CA with --ca-cert FILE"
    )]
    Tls { host: String, detail: String },
    #[error(
        "{host} speaks plain HTTP, and imgkit uses plain HTTP only for loopback hosts and hosts named with --insecure-registry"
    )]
    PlainHttp { host: String },
    #[error("cannot reach {host}: {detail}")]
    Connect { host: String, detail: String },
    #[error("repository {repository} is not in {host} ({what})")]
    NotFound {
        host: String,
        repository: String,
        what: String,
    },
    #[error("{host} answered {status} to {what}: {detail}")]
    Status {
        host: String,
        status: u16,
        what: String,
        detail: String,
    },
    #[error("{host} rejected the manifest of {name} ({media_type}): {detail}")]
    ManifestRejected {
        host: String,
        name: String,
        media_type: String,
        detail: String,
    },
    #[error("{what} from {host} is not what it should be: {detail}")]
    Invalid {
        host: String,
        what: String,
        detail: String,
    },
    #[error(
        "blob {expected} from {host}/{repository} arrived as {actual}: the registry holds damaged content; nothing of it was kept"
    )]
    DigestMismatch {
        host: String,
        repository: String,
        expected: Digest,
        actual: String,
    },
    #[error("pushing blob {digest} of {image} to {host}/{repository} failed: {source}")]
    Push {
        host: String,
        repository: String,
        image: String,
        digest: Digest,
        source: Box<Error>,
    },
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Config(String),
    #[error(transparent)]
    Store(#[from] imgkit_store::Error),
}

impl Error {
    pub(crate) fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
        let what = what.into();
        move |source| Error::Io { what, source }
    }

    /// Whether trying again may help (a dropped connection, a 5xx).
    pub(crate) fn transient(&self) -> bool {
        match self {
            Error::Connect { .. } => true,
            Error::Status { status, .. } => *status >= 500 || *status == 429,
            Error::Push { source, .. } => source.transient(),
            _ => false,
        }
    }
}

/// A registry error carried through `imgkit_store`'s error type (the store traits return it);
/// the destination keeps the original to return from its own API.
pub(crate) fn into_store(e: &Error, digest: Option<&Digest>) -> imgkit_store::Error {
    let source = std::io::Error::other(e.to_string());
    match digest {
        Some(d) => imgkit_store::Error::Read {
            digest: d.clone(),
            source,
        },
        None => imgkit_store::Error::Io {
            what: "registry",
            path: std::path::PathBuf::new(),
            source,
        },
    }
}
