//! What a plugin may use: resource limits (always on) and the sandbox's few openings.

use std::time::Duration;

/// Resource limits for one plugin run. Every limit is always on; [`Limits::default`] holds the
/// defaults imgkit documents in `--help`, and a caller loosens one only by setting it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// CPU budget (wasmtime fuel units) granted per input record. The run also gets a fixed
    /// start-up budget of [`FUEL_BASE_RECORDS`] times this, so a plugin that reads a small
    /// listing is not starved.
    pub fuel_per_record: u64,
    /// Wall-clock limit for the whole run (epoch interruption).
    pub timeout: Duration,
    /// Linear memory cap in bytes (summed over the plugin's memories).
    pub memory: u64,
    /// Cap on stdout in bytes; `None` = bounded by the input: input bytes + 64 KiB.
    pub max_output: Option<u64>,
    /// Bytes of stderr kept (and shown in errors: the first [`STDERR_SHOWN`] of them).
    pub max_stderr: u64,
    /// Largest module file accepted, in bytes.
    pub max_module: u64,
}

/// Default fuel per record (a serde_json filter uses ~20k units on a docker record).
pub const DEFAULT_FUEL_PER_RECORD: u64 = 200_000;
/// The fixed start-up budget is this many records' worth of fuel (50M units by default).
pub const FUEL_BASE_RECORDS: u64 = 250;
/// Default wall-clock limit.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// Default memory cap: 64 MiB.
pub const DEFAULT_MEMORY: u64 = 64 << 20;
/// Default stderr kept: 64 KiB.
pub const DEFAULT_MAX_STDERR: u64 = 64 << 10;
/// Default module size cap: 10 MiB.
pub const DEFAULT_MAX_MODULE: u64 = 10 << 20;
/// Slack on top of the input size for the default stdout cap.
pub const OUTPUT_SLACK: u64 = 64 << 10;
/// How much of stderr errors quote.
pub const STDERR_SHOWN: usize = 1024;

impl Default for Limits {
    fn default() -> Self {
        Self {
            fuel_per_record: DEFAULT_FUEL_PER_RECORD,
            timeout: DEFAULT_TIMEOUT,
            memory: DEFAULT_MEMORY,
            max_output: None,
            max_stderr: DEFAULT_MAX_STDERR,
            max_module: DEFAULT_MAX_MODULE,
        }
    }
}

impl Limits {
    /// The fuel granted before any input arrives.
    pub fn fuel_base(&self) -> u64 {
        self.fuel_per_record.saturating_mul(FUEL_BASE_RECORDS)
    }

    /// The total fuel for a run that has been fed `records` records.
    pub fn fuel_for(&self, records: u64) -> u64 {
        self.fuel_base()
            .saturating_add(self.fuel_per_record.saturating_mul(records))
    }

    /// The stdout cap once `input_bytes` bytes of input have been fed.
    pub fn output_cap(&self, input_bytes: u64) -> u64 {
        self.max_output
            .unwrap_or_else(|| input_bytes.saturating_add(OUTPUT_SLACK))
    }
}

/// Which clock the plugin sees.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Clock {
    /// A fixed instant (2026-01-01T00:00:00Z) and a monotonic clock that never moves: runs are
    /// reproducible and a plugin cannot time the host.
    #[default]
    Fixed,
    /// The host's real clocks.
    Real,
}

/// The sandbox's openings, all closed by default: argv is `[plugin file name]` plus `args`
/// as `K=V` strings; there is never an environment, a preopened directory or a socket.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Sandbox {
    /// Extra argv entries, passed as `K=V` in order.
    pub args: Vec<(String, String)>,
    /// The clock the plugin sees.
    pub clock: Clock,
}

/// Everything [`crate::Plugin::load_with`] needs besides the module path.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Resource limits.
    pub limits: Limits,
    /// Sandbox openings.
    pub sandbox: Sandbox,
    /// Directory of the compiled-module cache; `None` compiles every time.
    /// [`crate::default_cache_dir`] gives imgkit's.
    pub cache_dir: Option<std::path::PathBuf>,
}
