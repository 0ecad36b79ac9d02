//! Why a plugin could not be loaded or did not produce a selection.

use std::path::PathBuf;
use std::time::Duration;

/// A plugin failure. Every variant names the plugin file; those that ran the plugin carry the
/// head of its stderr (see [`Error::stderr`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The module file could not be read.
    #[error("cannot read plugin {}", plugin.display())]
    Read {
        plugin: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The module file is larger than [`crate::Limits::max_module`].
    #[error("plugin {} is {size} bytes, over the module size limit of {limit} bytes", plugin.display())]
    ModuleTooLarge {
        plugin: PathBuf,
        size: u64,
        limit: u64,
    },
    /// The file is not a WebAssembly binary.
    #[error("plugin {} is not a WebAssembly module (it does not start with \\0asm)", plugin.display())]
    NotWasm { plugin: PathBuf },
    /// The file is a WebAssembly component (WASI preview 2), which imgkit does not run yet.
    #[error("plugin {} is a WebAssembly component; imgkit runs WASI preview1 command modules", plugin.display())]
    Component { plugin: PathBuf },
    /// wasmtime rejected the module (malformed, or uses unsupported proposals).
    #[error("plugin {} is not a valid WebAssembly module: {reason}", plugin.display())]
    InvalidModule { plugin: PathBuf, reason: String },
    /// The module imports something outside WASI preview1.
    #[error("plugin {} imports `{module}::{name}`, which the sandbox does not provide (only the wasi_snapshot_preview1 functions)", plugin.display())]
    UnsupportedImport {
        plugin: PathBuf,
        module: String,
        name: String,
    },
    /// The module has no `_start` export: it is a library/reactor, not a command.
    #[error("plugin {} has no `_start` function: it must be a WASI command (a program with a main)", plugin.display())]
    NoStart { plugin: PathBuf },
    /// The plugin exited with a non-zero code.
    #[error("plugin {} exited with code {code}", plugin.display())]
    Exit {
        plugin: PathBuf,
        code: i32,
        stderr: String,
    },
    /// The plugin trapped (a panic shows as `unreachable`).
    #[error("plugin {} crashed: {kind}", plugin.display())]
    Trap {
        plugin: PathBuf,
        kind: String,
        stderr: String,
    },
    /// The plugin used all of its fuel.
    #[error("plugin {} used its CPU budget of {budget} units on {records} records", plugin.display())]
    OutOfFuel {
        plugin: PathBuf,
        budget: u64,
        records: u64,
        stderr: String,
    },
    /// The plugin ran past the wall-clock limit: in its own code, or waiting in a host call
    /// (`blocked_in` names the import, e.g. `poll_oneoff`).
    #[error("plugin {} ran past its time limit of {}{}", plugin.display(), format_duration(*timeout), blocked_suffix(blocked_in.as_deref()))]
    Deadline {
        plugin: PathBuf,
        timeout: Duration,
        blocked_in: Option<String>,
        stderr: String,
    },
    /// The plugin asked for more memory than the cap.
    #[error("plugin {} asked for {requested} bytes of memory, over the limit of {limit} bytes", plugin.display())]
    MemoryLimit {
        plugin: PathBuf,
        requested: u64,
        limit: u64,
        stderr: String,
    },
    /// The plugin printed more than the stdout cap.
    #[error("plugin {} printed more than {limit} bytes", plugin.display())]
    OutputTooLarge {
        plugin: PathBuf,
        limit: u64,
        stderr: String,
    },
    /// A line of the plugin's stdout is not an image reference.
    #[error("plugin {} printed {text:?} on line {line}, which is not an image reference: {reason}", plugin.display())]
    InvalidOutput {
        plugin: PathBuf,
        line: usize,
        text: String,
        reason: String,
    },
    /// Reading the records to feed the plugin failed.
    #[error("cannot read the records for plugin {}", plugin.display())]
    Input {
        plugin: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// wasmtime failed in a way that is not the plugin's doing (e.g. no memory for the engine).
    #[error("cannot run plugin {}: {reason}", plugin.display())]
    Runtime { plugin: PathBuf, reason: String },
}

impl Error {
    /// The head (first KiB) of the plugin's stderr, when it ran and wrote some.
    pub fn stderr(&self) -> Option<&str> {
        match self {
            Error::Exit { stderr, .. }
            | Error::Trap { stderr, .. }
            | Error::OutOfFuel { stderr, .. }
            | Error::Deadline { stderr, .. }
            | Error::MemoryLimit { stderr, .. }
            | Error::OutputTooLarge { stderr, .. } => {
                Some(stderr.as_str()).filter(|s| !s.is_empty())
            }
            _ => None,
        }
    }

    /// What to try, for the limit errors and a few others (the CLI shows it as `hint:`).
    pub fn hint(&self) -> Option<String> {
        Some(match self {
            Error::OutOfFuel { .. } => "raise with --plugin-fuel (units per record)".into(),
            Error::Deadline { .. } => "raise with --plugin-timeout".into(),
            Error::MemoryLimit { .. } => "raise with --plugin-memory".into(),
            Error::OutputTooLarge { .. } => "raise with --plugin-max-output".into(),
            Error::ModuleTooLarge { .. } => "raise with --plugin-max-module".into(),
            Error::NoStart { .. } | Error::Component { .. } => {
                "build a command module, e.g. `cargo build --target wasm32-wasip1` of a bin crate"
                    .into()
            }
            Error::UnsupportedImport { .. } => {
                "build for wasm32-wasip1 (Rust) or --target=wasm32-wasi (clang)".into()
            }
            Error::Trap { kind, .. } if kind.contains("stack") => {
                "the plugin recursed too deeply (or overflowed its own stack)".into()
            }
            _ => return None,
        })
    }
}

fn blocked_suffix(import: Option<&str>) -> String {
    import.map_or_else(String::new, |i| {
        format!(" while blocked in the host call `{i}`")
    })
}

pub(crate) fn format_duration(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}
