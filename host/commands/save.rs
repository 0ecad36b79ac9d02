//! `imgkit save`: write images of one engine to an archive file (or stdout), streaming; from
//! containerd over its API (`--engine ctr` when `run --from ctr:NAMESPACE` would be native),
//! read from its content store as `run` reads them.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;

use imgkit_transfer::{Pump, Sink};

use crate::diagnostics::with_hint;
use crate::endpoint::EndpointSpec;
use crate::engine_args::EngineArgs;
use crate::global::GlobalArgs;
use crate::pipeline::Pipeline;
use crate::plan::{Endpoint, Plan};
use crate::plugin_args::PluginArgs;
use crate::progress::Printer;
use crate::transfer::{Summary, SyncReport, run_pump};

#[derive(Debug, Clone, clap::Args)]
pub(crate) struct Args {
    #[command(flatten)]
    pub(crate) engine: EngineArgs,
    /// jq program choosing the images when no REF is given: a file or a preset name
    /// [default: default]. Repeat for a pipeline: records that pass one filter go into the
    /// next; the last prints references. A `.wasm` file as the last filter
    /// runs that WASM plugin in the sandbox (see the plugin flags).
    #[arg(long, short = 'f', value_name = "FILTER", conflicts_with = "refs")]
    pub(crate) filter: Vec<PathBuf>,
    #[command(flatten)]
    pub(crate) plugin: PluginArgs,
    /// The archive to write (to a temporary file beside it, renamed when complete); `-` for
    /// stdout; `DIR/` for an OCI layout directory.
    #[arg(long, short = 'o', value_name = "FILE")]
    pub(crate) output: PathBuf,
    /// Images to save; each must be in the engine's listing. None: the filter's selection.
    #[arg(value_name = "REF")]
    pub(crate) refs: Vec<String>,
}

pub(crate) fn run(args: &Args, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    // An OCI layout directory is an image store: the save stream goes into it blob by blob.
    let store = EndpointSpec::Archive(args.output.clone());
    let store = crate::stores::is_store(&store).then_some(store);
    let to_stdout = args.output.as_os_str() == "-";
    if to_stdout && std::io::stdout().is_terminal() {
        return Err(with_hint(
            anyhow::anyhow!("refusing to write an archive to a terminal"),
            "redirect it (-o - > images.tar), pipe it, or name a file with -o FILE",
        ));
    }
    if !to_stdout && store.is_none() {
        crate::transfer::check_output(&args.output)?;
    }
    let pipeline = Pipeline::compile(&args.filter, &args.plugin, global)?;
    // `--engine ctr` over containerd's API when `run --from ctr:NAMESPACE` would be: the
    // images read from its content store (`stores::stream`, `stores::copy_into`).
    let (source, spec) = if let Some(spec) = crate::containerd::for_engine(&args.engine, None) {
        (Endpoint::Store(spec.clone(), Vec::new()), spec)
    } else {
        let engine = args.engine.engine()?;
        let spec = EndpointSpec::of(&engine);
        (
            Endpoint::Engine {
                engine,
                spec: spec.clone(),
            },
            spec,
        )
    };
    let mut printer = Printer::new(global);
    let Some(mut plan) = Plan::select(&source, &pipeline, &args.refs, &mut printer)? else {
        if global.json {
            // Still one document: the summary of nothing saved.
            Summary {
                images: 0,
                bytes: 0,
                elapsed: std::time::Duration::ZERO,
                from: spec.to_string(),
                to: if to_stdout {
                    "stdout".to_owned()
                } else {
                    args.output.display().to_string()
                },
                verified: None,
                sync: store.as_ref().map(|_| SyncReport {
                    blobs: Some(imgkit_store::CopyReport::default()),
                    ..SyncReport::default()
                }),
            }
            .print(global, to_stdout);
        } else if !global.quiet {
            eprintln!("imgkit: the filter selected no image in {spec}; nothing to save");
        }
        return Ok(ExitCode::from(1));
    };
    // New names from the filter (`{"ref", "as"}`) are untrusted: checked before anything
    // runs. A layout directory takes them; an archive keeps the names the engine saves.
    let renames = crate::rename::resolve(&mut plan, &[])?;
    if renames > 0 && store.is_none() {
        return Err(with_hint(
            anyhow::anyhow!(
                "renames are applied by the target engine, and {} is an archive",
                args.output.display()
            ),
            "save into a layout directory (-o DIR/), load into an engine with `imgkit run --to`, or rename after loading the archive",
        ));
    }
    if let Some(store) = &store {
        return save_into_store(&plan, &source, store, global, &mut printer);
    }
    let sink = if to_stdout {
        Sink::writer("stdout", std::io::stdout())
    } else {
        Sink::file(&args.output)
    };
    let to = if to_stdout {
        "stdout".to_owned()
    } else {
        args.output.display().to_string()
    };
    let pump = Pump::new(source.source(&plan.refs, imgkit_archive::Compression::None))
        .sink(sink)
        .expected_bytes(plan.expected_bytes);
    printer.stream(format!("{spec} → {to}"));
    let done = run_pump(
        pump,
        &mut printer,
        &format!("{} from {spec} to {to}", plan.describe_with_names()),
    )
    .map_err(|e| if to_stdout { closed_stdout(e) } else { e })?;
    Summary {
        images: plan.refs.len(),
        bytes: done.bytes,
        elapsed: done.elapsed,
        from: spec.to_string(),
        to,
        verified: None,
        sync: None,
    }
    .print(global, to_stdout);
    Ok(ExitCode::SUCCESS)
}

/// `save -o DIR/`: the engine's save stream into the store, each blob put as it passes
/// (`stores::ingest_into`), or from containerd's store only the blobs the directory lacks
/// (`stores::copy_into`), then each image's ID checked there.
fn save_into_store(
    plan: &Plan,
    source: &Endpoint,
    store: &EndpointSpec,
    global: &GlobalArgs,
    printer: &mut Printer,
) -> anyhow::Result<ExitCode> {
    let what = format!(
        "{} from {} to {store}",
        plan.describe_with_names(),
        source.name()
    );
    let (done, blobs) = match source {
        Endpoint::Store(from, ..) => {
            let started = std::time::Instant::now();
            let blobs = crate::stores::copy_into(plan, from, store, printer)?;
            let done = imgkit_transfer::Transferred {
                bytes: blobs.bytes_written,
                elapsed: started.elapsed(),
                target_stdout: String::new(),
                target_stderr: String::new(),
                source_stderr: String::new(),
            };
            (done, blobs)
        }
        _ => crate::stores::ingest_into(plan, source, store, None, printer, &what)?,
    };
    let target = Endpoint::Store(store.clone(), Vec::new());
    printer.step(
        "verify",
        &format!("checking {} image IDs in {store}", plan.refs.len()),
    );
    // Renamed images are checked under their new names.
    let (checked, notes) = crate::rename::verify_all(plan, source, &target)
        .with_context(|| format!("saved {what}, but the store does not match"))?;
    for note in &notes {
        printer.step("verify", &format!("note: {note}"));
    }
    Summary {
        images: plan.refs.len(),
        bytes: done.bytes,
        elapsed: done.elapsed,
        from: source.name(),
        to: store.to_string(),
        verified: Some(checked),
        sync: Some(SyncReport {
            copied: plan.refs.iter().map(ToString::to_string).collect(),
            blobs: Some(blobs),
            ..SyncReport::default()
        }),
    }
    .print(global, false);
    Ok(ExitCode::SUCCESS)
}

/// A closed stdout during a save is a truncated archive in whatever read it, not the quiet end
/// of a listing piped into `head`: an error (exit 2) whose chain holds no broken pipe (which
/// the renderer would take for a quiet exit).
fn closed_stdout(e: anyhow::Error) -> anyhow::Error {
    let broken = e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    });
    if !broken {
        return e;
    }
    let bytes = e
        .chain()
        .find_map(|c| match c.downcast_ref::<imgkit_transfer::Error>() {
            Some(imgkit_transfer::Error::Write { bytes, .. }) => Some(*bytes),
            _ => None,
        });
    with_hint(
        anyhow::anyhow!(
            "stdout was closed before the archive was complete{}: whatever read it has a truncated archive",
            bytes.map_or_else(String::new, |b| format!(" (after {b} bytes)"))
        ),
        "let the reader take the whole stream (not `head`), or write a file with -o FILE",
    )
}
