//! `imgkit plugin check FILE`: load a WASM filter plugin the way `filter`/`ls`/`run` would, run
//! it on a sample listing, and say what it selected — the quick test for plugin authors.

use std::collections::HashSet;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use imgkit_plugin::CacheOutcome;
use imgkit_types::{ImageRef, NONE};

use crate::global::GlobalArgs;
use crate::plugin_args::{PluginArgs, run_plugin};

/// The listing `plugin check` feeds when no `--sample` is given.
const SAMPLE: &str = include_str!("../../examples/listing.jsonl");

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    #[command(subcommand)]
    command: Sub,
}

#[derive(Debug, clap::Subcommand)]
enum Sub {
    /// Validate a plugin (WASM format, WASI preview1 imports only, a `_start`), run it on a sample
    /// listing under the same sandbox and limits as a real run, and print what it selected.
    #[command(after_help = "Examples:
  imgkit plugin check my-filter.wasm
  imgkit plugin check my-filter.wasm --sample listing.jsonl --plugin-arg keep=ghcr.io/
  docker image ls --format '{{json .}}' > listing.jsonl && imgkit plugin check f.wasm --sample listing.jsonl

Exit codes: 0 the plugin works, 1 it works but selected nothing, 2 it failed.")]
    Check(CheckArgs),
}

#[derive(Debug, clap::Args)]
struct CheckArgs {
    /// The plugin: a .wasm WASI preview1 command module.
    #[arg(value_name = "FILE.wasm")]
    file: PathBuf,
    /// Records to feed (JSON lines) instead of imgkit's built-in sample listing.
    #[arg(long, value_name = "FILE")]
    sample: Option<PathBuf>,
    #[command(flatten)]
    plugin: PluginArgs,
}

pub(crate) fn run(args: &Args, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    match &args.command {
        Sub::Check(check) => run_check(check, global),
    }
}

fn run_check(args: &CheckArgs, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    let plugin = args.plugin.load(&args.file)?;
    let sample = match &args.sample {
        Some(path) => std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("cannot read sample {}: {e}", path.display()))?,
        None => SAMPLE.to_owned(),
    };
    let started = Instant::now();
    let outcome = run_plugin(&plugin, &mut sample.as_bytes(), global)?;
    let ran = started.elapsed();

    // A reference the listing does not name is an error in a real run; flag it here.
    let listed = listed_names(&sample);
    let unlisted: Vec<&String> = outcome
        .references
        .iter()
        .filter(|r| !names_listed_image(r, &listed))
        .collect();

    let cache = match plugin.cache_outcome() {
        CacheOutcome::Hit => "loaded from the cache",
        CacheOutcome::Compiled => "compiled and cached",
        CacheOutcome::Replaced => "compiled (a bad cache file was replaced)",
        CacheOutcome::CompiledUncached => "compiled (no cache)",
    };
    let mut out = std::io::stdout().lock();
    if global.json {
        let obj = serde_json::json!({
            "plugin": args.file.display().to_string(),
            "ok": unlisted.is_empty(),
            "cache": cache,
            "load_ms": plugin.load_time().as_secs_f64() * 1e3,
            "run_ms": ran.as_secs_f64() * 1e3,
            "records": outcome.records,
            "fuel_used": outcome.fuel_used,
            "selected": outcome.references,
            "not_in_listing": unlisted,
        });
        writeln!(out, "{obj}")?;
    } else if !global.quiet {
        writeln!(
            out,
            "{}: a WASI preview1 command; {cache} in {:.1} ms",
            args.file.display(),
            plugin.load_time().as_secs_f64() * 1e3
        )?;
        writeln!(
            out,
            "ran on {} records in {:.1} ms using {} fuel units; selected {}:",
            outcome.records,
            ran.as_secs_f64() * 1e3,
            outcome.fuel_used,
            outcome.references.len()
        )?;
        for r in &outcome.references {
            writeln!(out, "  {r}")?;
        }
    }
    if !unlisted.is_empty() {
        let list: Vec<&str> = unlisted.iter().map(|s| s.as_str()).collect();
        anyhow::bail!(
            "plugin {} selected references that name no image of the listing: {}",
            args.file.display(),
            list.join(", ")
        );
    }
    Ok(if outcome.references.is_empty() {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// `(repository, tag or None)` of every listed record, normalized, for membership checks.
fn listed_names(listing: &str) -> HashSet<(String, Option<String>)> {
    let mut set = HashSet::new();
    for line in listing.lines().filter(|l| !l.trim().is_empty()) {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        let field = |k: &str| v.get(k).and_then(|x| x.as_str()).unwrap_or(NONE).to_owned();
        let (repo, tag) = (field("Repository"), field("Tag"));
        if repo == NONE {
            continue;
        }
        let Ok(name) = ImageRef::parse(&repo) else {
            continue;
        };
        set.insert((name.normalized_name(), None));
        if tag != NONE {
            set.insert((name.normalized_name(), Some(tag)));
        }
    }
    set
}

fn names_listed_image(reference: &str, listed: &HashSet<(String, Option<String>)>) -> bool {
    let Ok(r) = ImageRef::parse(reference) else {
        return false;
    };
    listed.contains(&(r.normalized_name(), r.tag().map(str::to_owned)))
}
