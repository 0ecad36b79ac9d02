//! `imgkit ls`: list an engine's images as records, select them (the guide's program by
//! default), print references, records or a table.

use std::io::{self, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use imgkit_select::Filter;
use imgkit_types::ImageRecord;

use crate::diagnostics::with_hint;
use crate::engine_args::{EngineArgs, engine_error};
use crate::global::GlobalArgs;
use crate::pipeline::Pipeline;
use crate::plugin_args::PluginArgs;
use crate::selection::{self, Selected};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Format {
    /// One image reference per line, as the guide's `… | jq -r` pipeline prints them.
    Refs,
    /// The selected records, one JSON object per line (docker's `{{json .}}` shape).
    Json,
    /// A table for people.
    Table,
}

#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  imgkit ls --engine docker                       the guide's docker image ls | jq pipeline
  imgkit ls --engine ctr -n k8s.io --format table Kubernetes' images in containerd
  imgkit ls --engine podman -e 'select(.Repository | startswith(\"seed/\")) | .Repository + \":\" + .Tag'
  imgkit ls --engine docker --all --format json   every record, unselected
  imgkit ls --from examples/images.tar --format table   an archive, read natively
  imgkit ls --engine ctr -n all --format json     every containerd namespace (records carry Namespace)
  imgkit ls --engine ctr -n k8s.io -f exclude-k8s-system -f my.jq   a pipeline of two filters

Every output of the program must name an image of the listing; a bare repository printed for a
digest-only row (Tag <none>) selects that image by digest. Exit codes: 0 selected something,
1 nothing selected, 2 error.")]
pub(crate) struct Args {
    #[command(flatten)]
    engine: EngineArgs,
    /// List an image archive (docker-save or OCI; plain, gzip or zstd) instead of an engine.
    /// Or `registry:HOST[:PORT][/PATH]`: a registry's catalog and tags.
    #[arg(long, value_name = "ARCHIVE", conflicts_with = "engine")]
    from: Option<PathBuf>,
    #[command(flatten)]
    registry: crate::registry::TransportArgs,
    /// Select with this jq program file or built-in preset [default: default.jq, the guide's].
    /// Repeat for a pipeline: records that pass one filter go into the next; the last one
    /// prints the references. A `.wasm` file as the last filter runs that WASM plugin.
    #[arg(short = 'f', long, value_name = "FILE", conflicts_with_all = ["expression", "all"])]
    filter: Vec<PathBuf>,
    #[command(flatten)]
    plugin: PluginArgs,
    /// Select with this jq program.
    #[arg(
        short = 'e',
        long = "expression",
        value_name = "PROGRAM",
        conflicts_with = "all"
    )]
    expression: Option<String>,
    /// Select every record (no program).
    #[arg(short = 'a', long)]
    all: bool,
    /// What to print.
    #[arg(long, value_enum, default_value = "refs")]
    format: Format,
}

pub(crate) fn run(args: &Args, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    let format = if global.json {
        Format::Json
    } else {
        args.format
    };
    // Compile before listing: a typo should not wait for the engine.
    let filter = if args.all {
        None
    } else {
        Some(compile(args, global)?)
    };
    let mut warnings = Vec::new();
    let registry = args.from.as_deref().and_then(crate::registry::spec_of_path);
    let records = if let Some(spec) = registry {
        let (records, w) = crate::registry::list(&spec?, &args.registry)?;
        warnings = w;
        records
    } else if let Some(path) = &args.from {
        let archive = imgkit_archive::Archive::open(path)
            .map_err(|e| with_hint(e, "--from takes an image archive (docker save, podman save, ctr images export or imgkit; plain, gzip or zstd); `imgkit verify ARCHIVE` checks one"))?;
        warnings = archive.warnings();
        archive.records()
    } else if args.engine.namespace == ALL_NAMESPACES
        && let Some(namespaces) = crate::containerd::every_namespace(&args.engine)
    {
        list_natively(&namespaces?, true, &mut warnings)?
    } else if let Some(spec) = crate::containerd::for_engine(&args.engine, None) {
        list_natively(&[spec], false, &mut warnings)?
    } else {
        let engine = EngineArgs {
            trace: global.verbose > 0,
            ..args.engine.clone()
        }
        .engine()?;
        if engine.kind().is_containerd() && engine.namespace() == ALL_NAMESPACES {
            list_every_namespace(&engine, &mut warnings)?
        } else {
            let (records, w) = engine.list_noting().map_err(engine_error)?;
            warnings = w;
            records
        }
    };
    if !global.quiet {
        for w in &warnings {
            // containerd's notes (platforms whose content is not here) say so themselves.
            if w.starts_with("note: ") {
                eprintln!("{w}");
            } else {
                eprintln!("warning: {w}");
            }
        }
    }
    let selected = match &filter {
        None => selection::select_all(&records),
        Some(f) => f.select_from(&records)?,
    };
    print(&records, &selected, format)?;
    Ok(if selected.is_empty() {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// `-n all` for containerd: this namespace name lists every namespace.
const ALL_NAMESPACES: &str = "all";

/// Every containerd namespace's records, each with a `Namespace` key for filters.
fn list_every_namespace(
    engine: &imgkit_engine::Engine,
    warnings: &mut Vec<String>,
) -> anyhow::Result<Vec<ImageRecord>> {
    let mut records = Vec::new();
    for ns in engine.namespaces().map_err(engine_error)? {
        let (listed, w) = engine
            .with_namespace(&ns)
            .list_noting()
            .map_err(engine_error)?;
        warnings.extend(w);
        for mut rec in listed {
            rec.extra.insert(
                "Namespace".to_owned(),
                serde_json::Value::String(ns.clone()),
            );
            records.push(rec);
        }
    }
    Ok(records)
}

/// containerd's namespaces over its API (`crate::containerd`): each namespace's records as
/// `run --from ctr:NAMESPACE` lists them (sizes from the manifests, the config's creation
/// time, the platforms present), and its warnings and notes. `Namespace` is kept with `-n all`
/// (`every`) and dropped for one namespace, as the ctr CLI's records have it.
fn list_natively(
    namespaces: &[crate::endpoint::EndpointSpec],
    every: bool,
    warnings: &mut Vec<String>,
) -> anyhow::Result<Vec<ImageRecord>> {
    let mut records = Vec::new();
    for spec in namespaces {
        let listing = crate::containerd::listing(spec)?
            .ok_or_else(|| anyhow::anyhow!("{spec} is not reachable over containerd's API"))?;
        warnings.extend(listing.warnings);
        records.extend(listing.records.into_iter().map(|mut rec| {
            if !every {
                rec.extra.remove("Namespace");
            }
            rec
        }));
    }
    Ok(records)
}

fn compile(args: &Args, global: &GlobalArgs) -> anyhow::Result<Pipeline> {
    match &args.expression {
        Some(p) => Filter::compile(p, "<program>")
            .map(|f| Pipeline::one(f, "<program>".to_owned()))
            .map_err(|e| with_hint(e, "check the jq program with `imgkit filter`")),
        None => Pipeline::compile(&args.filter, &args.plugin, global),
    }
}

fn print(records: &[ImageRecord], selected: &[Selected], format: Format) -> anyhow::Result<()> {
    let mut out = io::BufWriter::new(io::stdout().lock());
    match format {
        Format::Refs => {
            for s in selected {
                writeln!(out, "{}", s.reference)?;
            }
        }
        Format::Json => {
            let mut shown = std::collections::HashSet::new();
            for s in selected.iter().filter(|s| shown.insert(s.record)) {
                writeln!(out, "{}", records[s.record].to_json_line())?;
            }
        }
        Format::Table => {
            let rows: Vec<[String; 5]> = selected
                .iter()
                .map(|s| {
                    let r = &records[s.record];
                    [
                        s.reference.to_string(),
                        r.id.clone(),
                        r.created_since.clone(),
                        r.size.clone(),
                        platform(r),
                    ]
                })
                .collect();
            let head = ["IMAGE", "ID", "CREATED", "SIZE", "PLATFORM"].map(str::to_owned);
            crate::table::write(&mut out, &head, &rows)?;
        }
    }
    out.flush()?;
    Ok(())
}

fn platform(r: &ImageRecord) -> String {
    r.extra
        .get("Platform")
        .and_then(|v| v.as_str())
        .filter(|s| !s.is_empty())
        .unwrap_or("-")
        .to_owned()
}
