//! `imgkit engines`: which engines are installed and reachable here, their versions, sockets,
//! and images (per namespace for containerd).

use std::io::{self, Write};
use std::process::ExitCode;

use imgkit_engine::probe::Probe;

use crate::engine_args::{EngineArgs, probe_all};
use crate::global::GlobalArgs;

#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  imgkit engines
  imgkit engines --json | jq -r '.[] | select(.reachable) | .engine'
  DOCKER_HOST=unix:///run/user/1000/docker.sock imgkit engines

Exit codes: 0 at least one engine is reachable, 1 none is.")]
pub(crate) struct Args {
    #[command(flatten)]
    engine: EngineArgs,
}

pub(crate) fn run(args: &Args, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    let mut probes = probe_all(&EngineArgs {
        trace: global.verbose > 0,
        ..args.engine.clone()
    });
    if let Some(kind) = args.engine.engine {
        probes.retain(|p| p.engine == kind);
    }
    if !global.quiet && !global.json {
        for w in probes.iter().flat_map(|p| &p.warnings) {
            eprintln!("warning: {w}");
        }
    }
    let mut out = io::BufWriter::new(io::stdout().lock());
    if global.json {
        writeln!(out, "{}", serde_json::to_string(&probes)?)?;
    } else {
        print_table(&mut out, &probes)?;
    }
    out.flush()?;
    Ok(if probes.iter().any(|p| p.reachable) {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn status(p: &Probe) -> &'static str {
    match (&p.bin, p.reachable) {
        (None, _) => "not installed",
        (Some(_), true) => "reachable",
        (Some(_), false) => "unreachable",
    }
}

fn images(p: &Probe) -> String {
    if !p.namespaces.is_empty() {
        return p
            .namespaces
            .iter()
            .map(|n| format!("{}: {}", n.name, n.images))
            .collect::<Vec<_>>()
            .join(", ");
    }
    p.images.map_or_else(|| "-".to_owned(), |n| n.to_string())
}

fn print_table(out: &mut impl Write, probes: &[Probe]) -> io::Result<()> {
    let head = ["ENGINE", "STATUS", "VERSION", "ENDPOINT", "IMAGES"].map(str::to_owned);
    let rows: Vec<[String; 5]> = probes
        .iter()
        .map(|p| {
            [
                p.engine.to_string(),
                status(p).to_owned(),
                p.version.clone().unwrap_or_else(|| "-".to_owned()),
                if p.endpoint.is_empty() {
                    "-".to_owned()
                } else {
                    p.endpoint.clone()
                },
                images(p),
            ]
        })
        .collect();
    crate::table::write(out, &head, &rows)?;
    // A reachable engine can fail too (a namespace that cannot be listed): say so.
    for p in probes
        .iter()
        .filter(|p| p.bin.is_some() && (!p.reachable || p.error.is_some()))
    {
        if let Some(e) = &p.error {
            writeln!(out, "{}: {e}", p.engine)?;
        }
        if let Some(h) = &p.hint {
            writeln!(out, "  hint: {h}")?;
        }
    }
    Ok(())
}
