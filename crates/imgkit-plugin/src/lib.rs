//! imgkit's WASM filter plugins: runs a WASI preview1 command module as the selection step,
//! in a deny-by-default sandbox with every resource limit on.
//!
//! The contract (v1): stdin carries the records, one compact JSON object per line; the plugin
//! prints one image reference per line on stdout; stderr is for diagnostics; exit 0 means
//! success. argv is `[plugin file name, K=V…]`; there is no environment, no file system, no
//! network, and (unless asked) a clock that stands still. The wall-clock limit covers host
//! calls too: every `wasi_snapshot_preview1` import either returns at once, returns an errno, or
//! waits at most until the deadline (the table is in `imports.rs` and docs/plugins.md).
//!
//! ```no_run
//! use imgkit_plugin::{Limits, Plugin};
//! let plugin = Plugin::load("filters/plugins/default.wasm".as_ref(), Limits::default())?;
//! let refs = plugin.run(&mut std::io::stdin().lock())?;
//! # Ok::<(), imgkit_plugin::Error>(())
//! ```

mod cache;
mod error;
mod imports;
mod limits;
mod plugin;
mod run;
mod stdio;

pub use cache::{CacheOutcome, default_cache_dir};
pub use error::Error;
pub use limits::{
    Clock, DEFAULT_FUEL_PER_RECORD, DEFAULT_MAX_MODULE, DEFAULT_MAX_STDERR, DEFAULT_MEMORY,
    DEFAULT_TIMEOUT, FUEL_BASE_RECORDS, Limits, OUTPUT_SLACK, Options, STDERR_SHOWN, Sandbox,
};
pub use plugin::Plugin;
pub use run::Outcome;
