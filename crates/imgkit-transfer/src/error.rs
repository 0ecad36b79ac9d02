//! The pump's one error type: which side failed (source or target), at which step (save, read,
//! load, write), how it ended, and the tail of what it printed on stderr.

use std::fmt;
use std::io;
use std::path::PathBuf;
use std::process::ExitStatus;

/// Which end of the stream failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// Where the bytes come from (an engine's save, an input file).
    Source,
    /// Where the bytes go (an engine's load, an output file, stdout).
    Target,
}

impl fmt::Display for Side {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Side::Source => "source",
            Side::Target => "target",
        })
    }
}

/// What the failing side was doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// A child writing an archive to its stdout (`docker save`).
    Save,
    /// Reading an archive from a file or stream.
    Read,
    /// A child reading an archive from its stdin (`podman load`, `ctr images import -`).
    Load,
    /// Writing an archive to a file or stream.
    Write,
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Step::Save => "save",
            Step::Read => "read",
            Step::Load => "load",
            Step::Write => "write",
        })
    }
}

/// The last lines a failed child printed on stderr; shown as the cause of its failure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StderrTail(pub String);

impl fmt::Display for StderrTail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The last 20 lines are what a person reads; the whole tail stays in the field.
        let lines: Vec<&str> = self.0.lines().collect();
        let start = lines.len().saturating_sub(20);
        f.write_str(&lines[start..].join("\n"))
    }
}

impl std::error::Error for StderrTail {}

/// Why a transfer failed. Every variant names its [`Side`] and [`Step`] (see [`Error::side`]).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A child could not be started (binary missing, not executable).
    #[error("could not start the {side} {step} `{label}`")]
    Spawn {
        side: Side,
        step: Step,
        label: String,
        #[source]
        source: io::Error,
    },
    /// A child exited unsuccessfully (or was killed by a signal it did not get from us).
    #[error("the {side} {step} failed: `{label}` exited with {}", describe(*.status))]
    ChildFailed {
        side: Side,
        step: Step,
        label: String,
        status: ExitStatus,
        bytes: u64,
        #[source]
        stderr: Option<StderrTail>,
    },
    /// The output path cannot take an archive (a directory, a missing or read-only directory).
    #[error("cannot write an archive to {}: {problem}", .path.display())]
    Output {
        path: PathBuf,
        problem: crate::OutputProblem,
    },
    /// The output file (its temporary) could not be created.
    #[error("could not create {}", .path.display())]
    Create {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// Writing to a file or stream sink failed (disk full, closed pipe).
    #[error("could not write to {label} after {bytes} bytes")]
    Write {
        label: String,
        bytes: u64,
        #[source]
        source: io::Error,
    },
    /// A target that is not a child (an engine's load over its API) refused the stream; its
    /// own message is the source.
    #[error("the target load failed: {label} refused the stream after {bytes} bytes")]
    TargetRefused {
        label: String,
        bytes: u64,
        #[source]
        source: io::Error,
    },
    /// Reading the source stream failed.
    #[error("could not read from {label} after {bytes} bytes")]
    Read {
        label: String,
        bytes: u64,
        #[source]
        source: io::Error,
    },
    /// The complete output could not be flushed to disk or renamed into place.
    #[error("could not finish {}", .path.display())]
    Finish {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The transfer was cancelled (Ctrl-C); both sides were stopped and partial output removed.
    #[error("cancelled after {bytes} bytes; both sides were stopped and partial output removed")]
    Cancelled { bytes: u64 },
}

impl Error {
    /// The side that failed (`None` for a cancellation).
    pub fn side(&self) -> Option<Side> {
        match self {
            Error::Spawn { side, .. } | Error::ChildFailed { side, .. } => Some(*side),
            Error::TargetRefused { .. }
            | Error::Create { .. }
            | Error::Output { .. }
            | Error::Write { .. }
            | Error::Finish { .. } => Some(Side::Target),
            Error::Read { .. } => Some(Side::Source),
            Error::Cancelled { .. } => None,
        }
    }

    /// The step that failed (`None` for a cancellation).
    pub fn step(&self) -> Option<Step> {
        match self {
            Error::Spawn { step, .. } | Error::ChildFailed { step, .. } => Some(*step),
            Error::TargetRefused { .. } => Some(Step::Load),
            Error::Create { .. }
            | Error::Output { .. }
            | Error::Write { .. }
            | Error::Finish { .. } => Some(Step::Write),
            Error::Read { .. } => Some(Step::Read),
            Error::Cancelled { .. } => None,
        }
    }

    /// What the failed child printed on stderr (its tail), if a child failed.
    pub fn stderr(&self) -> Option<&str> {
        match self {
            Error::ChildFailed {
                stderr: Some(t), ..
            } => Some(&t.0),
            _ => None,
        }
    }

    /// Whether this is a cancellation rather than a failure.
    pub fn is_cancelled(&self) -> bool {
        matches!(self, Error::Cancelled { .. })
    }
}

/// "status 1" or "signal 9".
fn describe(status: ExitStatus) -> String {
    if let Some(code) = status.code() {
        return format!("status {code}");
    }
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        if let Some(sig) = status.signal() {
            return format!("signal {sig}");
        }
    }
    status.to_string()
}
