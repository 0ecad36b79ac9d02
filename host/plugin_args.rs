//! The WASM plugin flags shared by every command that selects (`filter --plugin`, and `ls`/`run`
//! with `--filter x.wasm`): sandbox openings and resource limits, each shown by `--help` with its
//! default, plus loading and error rendering for the binary.

use std::io::Read;
use std::path::Path;
use std::time::Duration;

use clap::ValueEnum;
use imgkit_plugin::{Clock, Limits, Options, Outcome, Plugin, Sandbox};

use crate::diagnostics::with_hint;
use crate::global::GlobalArgs;

/// Sandbox and limit flags for WASM filter plugins. Every limit is always on; naming a flag is
/// the only way to loosen one.
#[derive(Debug, Clone, Default, clap::Args)]
#[command(next_help_heading = "Plugin sandbox (WASM filters)")]
// The field names are the flag names (`--plugin-fuel`, …): the shared prefix is the point.
#[allow(clippy::struct_field_names)]
pub(crate) struct PluginArgs {
    /// Pass K=V to the plugin as a command-line argument (repeatable). Plugins get no other
    /// arguments, no environment, no files and no network.
    #[arg(long = "plugin-arg", value_name = "K=V", value_parser = parse_kv)]
    pub(crate) plugin_args: Vec<(String, String)>,
    /// The clock the plugin sees: `fixed` (2026-01-01, monotonic time stands still) or `real`.
    #[arg(long, value_enum, value_name = "CLOCK", default_value_t = ClockArg::Fixed)]
    pub(crate) plugin_clock: ClockArg,
    /// CPU budget in fuel units per input record; a run gets 250 records' worth up front.
    #[arg(long, value_name = "UNITS", default_value_t = imgkit_plugin::DEFAULT_FUEL_PER_RECORD)]
    pub(crate) plugin_fuel: u64,
    /// Wall-clock limit for one run, e.g. 10s, 500ms, 2m.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_duration)]
    pub(crate) plugin_timeout: Duration,
    /// Memory cap, e.g. 64MiB, 1GiB.
    #[arg(long, value_name = "SIZE", default_value = "64MiB", value_parser = size_arg)]
    pub(crate) plugin_memory: u64,
    /// Stdout cap [default: the input's size + 64KiB].
    #[arg(long, value_name = "SIZE", value_parser = size_arg)]
    pub(crate) plugin_max_output: Option<u64>,
    /// Stderr kept (errors quote the first KiB).
    #[arg(long, value_name = "SIZE", default_value = "64KiB", value_parser = size_arg)]
    pub(crate) plugin_max_stderr: u64,
    /// Largest module accepted.
    #[arg(long, value_name = "SIZE", default_value = "10MiB", value_parser = size_arg)]
    pub(crate) plugin_max_module: u64,
}

/// `--plugin-clock` values.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
pub(crate) enum ClockArg {
    /// 2026-01-01T00:00:00Z, and monotonic time that does not move.
    #[default]
    Fixed,
    /// The host's clocks.
    Real,
}

impl PluginArgs {
    /// The library options these flags describe (imgkit's cache directory included).
    pub(crate) fn options(&self) -> Options {
        Options {
            limits: Limits {
                fuel_per_record: self.plugin_fuel,
                timeout: self.plugin_timeout,
                memory: self.plugin_memory,
                max_output: self.plugin_max_output,
                max_stderr: self.plugin_max_stderr,
                max_module: self.plugin_max_module,
            },
            sandbox: Sandbox {
                args: self.plugin_args.clone(),
                clock: match self.plugin_clock {
                    ClockArg::Fixed => Clock::Fixed,
                    ClockArg::Real => Clock::Real,
                },
            },
            cache_dir: imgkit_plugin::default_cache_dir(),
        }
    }

    /// Loads (compiles or takes from the cache) and checks the plugin at `path`.
    pub(crate) fn load(&self, path: &Path) -> Result<Plugin, anyhow::Error> {
        Plugin::load_with(path, self.options()).map_err(hinted)
    }
}

/// Runs `plugin` on `input`; shows its stderr (unless `--quiet`), and renders failures with the
/// head of its stderr and a hint.
pub(crate) fn run_plugin(
    plugin: &Plugin,
    input: &mut dyn Read,
    global: &GlobalArgs,
) -> Result<Outcome, anyhow::Error> {
    let outcome = plugin.execute(input).map_err(|e| plugin_error(e, global))?;
    if !global.quiet && !outcome.stderr.is_empty() {
        show_stderr(plugin.path(), &outcome.stderr);
    }
    Ok(outcome)
}

/// As [`run_plugin`], for an input that may stall (stdin): the run still ends at the plugin's
/// time limit while a read of the input waits.
pub(crate) fn run_plugin_owned(
    plugin: &Plugin,
    input: Box<dyn Read + Send>,
    global: &GlobalArgs,
) -> Result<Outcome, anyhow::Error> {
    let outcome = plugin
        .execute_owned(input)
        .map_err(|e| plugin_error(e, global))?;
    if !global.quiet && !outcome.stderr.is_empty() {
        show_stderr(plugin.path(), &outcome.stderr);
    }
    Ok(outcome)
}

/// A plugin error for the renderer: the stderr head printed first, then the error with its hint.
pub(crate) fn plugin_error(e: imgkit_plugin::Error, global: &GlobalArgs) -> anyhow::Error {
    if let Some(stderr) = e.stderr()
        && !global.quiet
        && !global.json
    {
        show_stderr(Path::new(""), stderr);
    }
    hinted(e)
}

fn hinted(e: imgkit_plugin::Error) -> anyhow::Error {
    match e.hint() {
        Some(hint) => with_hint(e, hint),
        None => e.into(),
    }
}

fn show_stderr(plugin: &Path, stderr: &str) {
    use std::io::Write;
    let mut err = std::io::stderr().lock();
    let name = plugin.file_name().map(|n| n.to_string_lossy().into_owned());
    let _ = writeln!(err, "{} stderr:", name.as_deref().unwrap_or("plugin"));
    for line in stderr.lines() {
        let _ = writeln!(err, "  | {line}");
    }
}

fn parse_kv(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
        _ => Err(format!("expected K=V, got {s:?}")),
    }
}

/// `10s`, `500ms`, `2m`, `1h`, or plain seconds.
pub(crate) fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| format!("expected a duration like 10s or 500ms, got {s:?}"))?;
    let secs = match unit.trim() {
        "" | "s" => n,
        "ms" => n / 1000.0,
        "m" | "min" => n * 60.0,
        "h" => n * 3600.0,
        other => {
            return Err(format!(
                "unknown duration unit {other:?} (use ms, s, m or h)"
            ));
        }
    };
    if !secs.is_finite() || secs <= 0.0 {
        return Err(format!("the duration must be positive, got {s:?}"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// `64MiB`, `1GiB`, `100k`, `512KB`, or plain bytes. K/M/G alone and KiB/MiB/GiB are powers of
/// 1024; KB/MB/GB are powers of 1000.
pub(crate) fn size_arg(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("expected a size like 64MiB, got {s:?}"))?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kib" => 1 << 10,
        "m" | "mib" => 1 << 20,
        "g" | "gib" => 1 << 30,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        other => return Err(format!("unknown size unit {other:?} (use KiB, MiB, GiB)")),
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("size {s:?} is too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(size_arg("64MiB"), Ok(64 << 20));
        assert_eq!(size_arg("100k"), Ok(102_400));
        assert_eq!(size_arg("1GB"), Ok(1_000_000_000));
        assert_eq!(size_arg("123"), Ok(123));
        assert!(size_arg("12 parsecs").is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_mins(2)));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("soon").is_err());
    }

    #[test]
    fn kv() {
        assert_eq!(parse_kv("a=b=c"), Ok(("a".into(), "b=c".into())));
        assert!(parse_kv("=x").is_err());
        assert!(parse_kv("novalue").is_err());
    }
}
