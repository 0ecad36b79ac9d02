//! The engine crate's one error type, named after causes. `hint` says what to try.

use std::io;
use std::path::PathBuf;

use crate::EngineKind;

/// Why talking to an engine failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The engine's program is not on PATH.
    #[error("{kind} is not installed here: no `{program}` on PATH")]
    BinaryNotFound { kind: EngineKind, program: String },
    /// An explicit binary override points at nothing runnable.
    #[error("{kind} binary {} (from {origin}) does not exist or is not executable", path.display())]
    BinaryMissing {
        kind: EngineKind,
        path: PathBuf,
        origin: String,
    },
    /// The program could not be started.
    #[error("could not start {}", program.display())]
    Spawn { program: PathBuf, source: io::Error },
    /// Reading the program's output failed.
    #[error("could not read the output of {}", program.display())]
    Read { program: PathBuf, source: io::Error },
    /// The daemon's socket does not answer.
    #[error("cannot reach the {kind} daemon at {endpoint}")]
    DaemonUnreachable {
        kind: EngineKind,
        endpoint: String,
        stderr: String,
    },
    /// The socket exists but this user may not use it.
    #[error("permission denied on the {kind} socket {endpoint}")]
    PermissionDenied {
        kind: EngineKind,
        endpoint: String,
        stderr: String,
    },
    /// The containerd namespace does not exist.
    #[error("containerd namespace {namespace:?} does not exist (namespaces here: {})", if known.is_empty() { "none".to_owned() } else { known.join(", ") })]
    UnknownNamespace {
        namespace: String,
        known: Vec<String>,
    },
    /// The engine ran and failed.
    #[error("`{argv}` failed ({status}){}", stderr_suffix(stderr))]
    EngineFailed {
        kind: EngineKind,
        argv: String,
        status: String,
        stderr: String,
    },
    /// The engine's output broke a bound (too long, a line too long, not text); it was stopped.
    #[error("stopped `{argv}`: {why}, which no {kind} listing does")]
    OutputRefused {
        kind: EngineKind,
        argv: String,
        why: String,
    },
    /// dockerd's Engine API answered with an error (or the conversation broke).
    #[error("docker API at {endpoint}: {detail}")]
    Api {
        endpoint: String,
        /// The HTTP status, when the daemon answered one.
        status: Option<u16>,
        detail: String,
    },
    /// dockerd speaks an API older than imgkit's client accepts.
    #[error("the docker daemon at {endpoint} speaks Engine API {server}, older than {min}")]
    ApiTooOld {
        endpoint: String,
        server: String,
        min: String,
    },
    /// The engine printed something imgkit cannot read.
    #[error("cannot read {kind}'s output of `{argv}` at line {line_no} ({reason}): {line}")]
    Unparseable {
        kind: EngineKind,
        argv: String,
        line_no: usize,
        line: String,
        reason: String,
    },
}

fn stderr_suffix(stderr: &str) -> String {
    let s = stderr.trim();
    if s.is_empty() {
        String::new()
    } else {
        format!(": {}", first_chars(s, 1024))
    }
}

pub(crate) fn first_chars(s: &str, n: usize) -> String {
    let cut: String = s.chars().take(n).collect();
    if cut.len() < s.len() {
        format!("{cut}…")
    } else {
        cut
    }
}

impl Error {
    /// What the user can try, when imgkit knows.
    pub fn hint(&self) -> Option<String> {
        match self {
            Self::BinaryNotFound { kind, .. } => Some(format!(
                "install {kind}, point {} or --engine-bin at its binary, or pick another engine (`imgkit engines` shows what is here)",
                kind.bin_env()
            )),
            Self::BinaryMissing { .. } => Some("fix the path, or unset it to search PATH".to_owned()),
            Self::DaemonUnreachable { kind, .. } => Some(match kind {
                EngineKind::Docker => "start dockerd (`sudo systemctl start docker`), or point --host/DOCKER_HOST/--context at a running one; try --engine podman, which needs no daemon".to_owned(),
                _ => "start containerd (`sudo systemctl start containerd`), or point --address/CONTAINERD_ADDRESS at its socket; try --engine podman, which needs no daemon".to_owned(),
            }),
            Self::PermissionDenied { kind, .. } => Some(match kind {
                EngineKind::Docker => "run as root (sudo), or add yourself to the socket's group (`sudo usermod -aG docker $USER`, then log in again)".to_owned(),
                EngineKind::Podman => "run podman as the user that owns its storage, or as root".to_owned(),
                _ => "run as root (sudo): containerd's socket is root-only by default".to_owned(),
            }),
            Self::UnknownNamespace { known, .. } if !known.is_empty() => {
                Some(format!("pick one with -n/--namespace: {}", known.join(", ")))
            }
            Self::OutputRefused { kind, .. } => Some(format!(
                "check that {} (or --engine-bin) names the real {kind} CLI, and run the command above by hand to see what it prints",
                kind.bin_env()
            )),
            Self::Api { status: Some(404), .. } => Some(
                "the daemon has no such image: `imgkit ls --engine docker` lists what it has".to_owned(),
            ),
            Self::Api { .. } => Some(format!(
                "the daemon's message says why; to compare with the docker CLI, run again with {}=cli",
                crate::VIA_ENV
            )),
            Self::ApiTooOld { .. } => Some(format!(
                "upgrade dockerd, or use the docker CLI that matches it: {}=cli",
                crate::VIA_ENV
            )),
            Self::Unparseable { kind, .. } => Some(format!(
                "this {kind} version may print a format imgkit does not know; please report it with `{kind} version`"
            )),
            _ => None,
        }
    }
}
