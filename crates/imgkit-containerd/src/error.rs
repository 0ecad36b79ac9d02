//! What can go wrong talking to containerd.

use std::fmt;

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A failed conversation with containerd: how it was reached, and what it said.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot reach the containerd daemon at {address}: the socket does not exist")]
    NoSocket { address: String },
    #[error("permission denied on the containerd socket {address} ({why})")]
    PermissionDenied { address: String, why: String },
    #[error("cannot reach the containerd daemon at {address}: {why}")]
    Unreachable { address: String, why: String },
    #[error(
        "containerd's API is spoken over a unix socket or a named pipe, and {address} is neither here"
    )]
    Unsupported { address: String },
    #[error(
        "invalid containerd namespace {0:?} (letters, digits, `_`, `.`, `-`; a letter or digit first)"
    )]
    BadNamespace(String),
    #[error("containerd {what}: {message} ({code})")]
    Call {
        address: String,
        what: String,
        code: Code,
        message: String,
    },
    #[error("containerd {what}: {why}")]
    Content {
        address: String,
        what: String,
        why: String,
    },
    #[error("containerd namespace {namespace:?} does not exist (namespaces here: {known})")]
    UnknownNamespace {
        address: String,
        namespace: String,
        known: String,
    },
}

impl Error {
    /// Whether containerd said "not found".
    pub fn is_not_found(&self) -> bool {
        matches!(
            self,
            Error::Call {
                code: Code::NotFound,
                ..
            }
        )
    }

    /// Whether this says the socket cannot be used at all (so the `ctr` CLI may be tried).
    pub fn is_connection(&self) -> bool {
        matches!(
            self,
            Error::NoSocket { .. }
                | Error::PermissionDenied { .. }
                | Error::Unreachable { .. }
                | Error::Unsupported { .. }
        )
    }

    /// What a person can do about it.
    pub fn hint(&self) -> Option<String> {
        match self {
            Error::NoSocket { .. } => Some(
                "start containerd, or name its socket: --address PATH or CONTAINERD_ADDRESS (k3s and RKE2: /run/k3s/containerd/containerd.sock)".to_owned(),
            ),
            Error::PermissionDenied { .. } => Some(
                "containerd's socket is root's: run imgkit with sudo (or as a user the socket's group admits)".to_owned(),
            ),
            Error::Unreachable { .. } => Some(
                "is containerd running? `ctr version` with the same --address says; a socket file left by a stopped containerd answers nothing".to_owned(),
            ),
            Error::UnknownNamespace { .. } => {
                Some("name one of the namespaces it has (`ctr namespaces ls`)".to_owned())
            }
            _ => None,
        }
    }
}

/// A gRPC status code, as containerd returns it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    NotFound,
    AlreadyExists,
    FailedPrecondition,
    Unavailable,
    PermissionDenied,
    Other(i32),
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Code::NotFound => f.write_str("not found"),
            Code::AlreadyExists => f.write_str("already exists"),
            Code::FailedPrecondition => f.write_str("failed precondition"),
            Code::Unavailable => f.write_str("unavailable"),
            Code::PermissionDenied => f.write_str("permission denied"),
            Code::Other(c) => write!(f, "gRPC code {c}"),
        }
    }
}

impl From<containerd_client::tonic::Code> for Code {
    fn from(c: containerd_client::tonic::Code) -> Self {
        use containerd_client::tonic::Code as T;
        match c {
            T::NotFound => Code::NotFound,
            T::AlreadyExists => Code::AlreadyExists,
            T::FailedPrecondition => Code::FailedPrecondition,
            T::Unavailable => Code::Unavailable,
            T::PermissionDenied => Code::PermissionDenied,
            other => Code::Other(other as i32),
        }
    }
}

/// This crate's error as a store error (the `Source`/`Destination` traits speak those): the
/// original rides inside, so a caller can find it again (`std::error::Error::source`).
pub(crate) fn to_store(e: Error, address: &str) -> imgkit_store::Error {
    imgkit_store::Error::Io {
        what: "containerd at",
        path: address.into(),
        source: std::io::Error::other(e),
    }
}
