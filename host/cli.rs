//! The command line, declared with clap's derive API: the doc comments are the help text.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::commands::{
    completions, engines, explain, filter, inspect, load, ls, plugin, run, save, verify,
};
use crate::global::GlobalArgs;

/// `imgkit --version`: imgkit's version, then jaq's and wasmtime's and the plugin contract's,
/// written by build.rs from Cargo.lock (nothing is initialised to print it).
const LONG_VERSION: &str = include_str!(concat!(env!("OUT_DIR"), "/long_version.txt"));

/// Move container images between engines and image archives — list, select with jq or a
/// sandboxed WASM filter, and stream save → load with progress and verification.
#[derive(Debug, Parser)]
#[command(
    name = "imgkit",
    version,
    long_version = LONG_VERSION,
    propagate_version = true,
    max_term_width = 100
)]
#[command(after_help = "Examples:
  imgkit filter -r -f default.jq < listing.jsonl   the guide's jq step, without jq
  imgkit completions bash > /etc/bash_completion.d/imgkit")]
pub(crate) struct Cli {
    #[command(flatten)]
    pub(crate) global: GlobalArgs,
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Run a jq program over JSON input, exactly as `jq` would (in-process, no jq needed).
    Filter(filter::Args),
    /// Move images: list the source, select with a jq filter, stream its save into the target's
    /// load (or an archive file), then check every image's ID in the target.
    ///
    /// SRC and DST are `docker`, `podman`, `ctr[:NAMESPACE]`, `nerdctl[:NAMESPACE]` or an archive
    /// path (write `./docker` for a file named like an engine). Every reference the filter prints
    /// must parse as an image reference and name an image of the source's listing, or nothing
    /// runs. Exit 1 when the filter selects nothing.
    #[command(after_help = "Examples:
  imgkit run --from docker --to podman                    the guide's default selection
  imgkit run --from docker --to ctr:k8s.io -f mine.jq     into Kubernetes' containerd namespace
  imgkit run --from docker --to podman --via images.tar   …and keep the archive
  imgkit run -f default.jq                                docker → ./images.tar (the guide's step 1)
  imgkit run --from podman --to docker --dry-run          show images, sizes and commands only")]
    Run(run::Args),
    /// Save images from an engine into an archive file (or stdout with `-o -`).
    #[command(after_help = "Examples:
  imgkit save -o images.tar                     the default selection (the one engine here)
  imgkit save --engine podman -o - seed/app:1.0 | gzip > app.tar.gz
  imgkit save --engine ctr -n k8s.io -f mine.jq -o k8s.tar")]
    Save(save::Args),
    /// Load an archive (docker-save or OCI; plain, gzip or zstd) into an engine.
    #[command(after_help = "Examples:
  imgkit load --engine podman -i images.tar
  zstd -dc images.tar.zst | imgkit load --engine ctr -n k8s.io
  imgkit load --engine ctr -n k8s.io --no-unpack -i app.tar   unpacked by kubelet, not now")]
    Load(load::Args),
    /// List an engine's images, select them with a jq program, print references or records.
    Ls(ls::Args),
    /// Show which container engines are installed and reachable here.
    Engines(engines::Args),
    /// Check WASM filter plugins: `imgkit plugin check FILE.wasm` validates one and runs it on a
    /// sample listing.
    Plugin(plugin::Args),
    /// Print a shell completion script.
    Completions(completions::Args),
    /// Check an image archive: every blob's sha256 and size, every manifest's references.
    Verify(verify::Args),
    /// Show what an image archive holds: images, names, platforms, layers, shared layers.
    Inspect(inspect::Args),
    /// Explain an error: `imgkit explain IK301` prints the cause and fix of the error whose
    /// `more:` line names IK301 (from docs/troubleshooting.md); no CODE lists them all.
    Explain(explain::Args),
}

impl Cli {
    /// Runs the parsed command line.
    pub(crate) fn run(self) -> anyhow::Result<ExitCode> {
        let global = &self.global;
        crate::engine_args::set_verbose(global.verbose > 0);
        match self.command {
            Command::Completions(args) => completions::run(
                &args,
                global,
                &mut <Self as clap::CommandFactory>::command(),
            ),
            Command::Filter(args) => filter::run(&args, global, filter_matches),
            Command::Save(args) => save::run(&args, global),
            Command::Load(args) => load::run(&args, global),
            Command::Run(args) => run::run(&args, global),
            Command::Verify(args) => verify::run(&args, global),
            Command::Inspect(args) => inspect::run(&args, global),
            Command::Ls(args) => ls::run(&args, global),
            Command::Engines(args) => engines::run(&args, global),
            Command::Explain(args) => explain::run(&args, global),
            Command::Plugin(args) => plugin::run(&args, global),
        }
    }
}

/// The `filter` subcommand's matches, parsed again from the process's arguments (for the
/// positions of `--args`, `--arg` and friends, which clap's derive API does not keep).
fn filter_matches() -> Option<clap::ArgMatches> {
    let cli = <Cli as clap::CommandFactory>::command();
    let m = cli.try_get_matches_from(std::env::args_os()).ok()?;
    m.subcommand_matches("filter").cloned()
}
