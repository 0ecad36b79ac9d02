//! `imgkit load`: stream an archive (a file or stdin; plain, gzip or zstd) into an engine's load,
//! or, into containerd over its API (`--engine ctr` when `run --to ctr:NAMESPACE` would be
//! native), read once into its content store, unpacked, and named last.

use std::fs::File;
use std::io::{IsTerminal, Read};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use imgkit_transfer::{Pump, QualifyNames, Source};

use crate::diagnostics::with_hint;
use crate::endpoint::EndpointSpec;
use crate::engine_args::EngineArgs;
use crate::global::GlobalArgs;
use crate::guard;
use crate::plan::{self, Endpoint};
use crate::progress::Printer;
use crate::transfer::{Summary, run_pump};

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    #[command(flatten)]
    pub(crate) engine: EngineArgs,
    /// The archive to read; stdin when absent or `-`. Every blob is checked against its
    /// digest as it streams: a bad archive stops the load before the engine sees its end.
    #[arg(long, short = 'i', value_name = "FILE")]
    pub(crate) input: Option<PathBuf>,
    /// containerd (`--engine ctr`, over its API): the snapshotter the images are unpacked into
    /// (the one the CRI uses).
    #[arg(long, value_name = "NAME", default_value = "overlayfs")]
    pub(crate) snapshotter: String,
    /// containerd (`--engine ctr`, over its API): do not unpack the images (kubelet unpacks on
    /// a pod's first start).
    #[arg(long)]
    pub(crate) no_unpack: bool,
}

pub(crate) fn run(args: &Args, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    let native = crate::containerd::for_engine(
        &args.engine,
        Some(crate::containerd::Unpack {
            snapshotter: &args.snapshotter,
            no_unpack: args.no_unpack,
        }),
    );
    let engine = if native.is_some() {
        None
    } else {
        let engine = args.engine.engine()?;
        check_unpack_flags(args, &engine)?;
        Some(engine)
    };
    let mut printer = Printer::new(global);
    let input = args.input.as_ref().filter(|p| p.as_os_str() != "-");
    if input.is_none() && std::io::stdin().is_terminal() {
        return Err(with_hint(
            anyhow::anyhow!("no archive to load: stdin is a terminal"),
            "name one with -i FILE, or pipe one in: imgkit save -o - … | imgkit load …",
        ));
    }
    let (source, from) = match input {
        Some(path) => {
            let file =
                File::open(path).with_context(|| format!("could not open {}", path.display()))?;
            let expected = file.metadata().ok().map(|m| m.len());
            (
                Source::open_with(path.display().to_string(), move || decompressed(file)),
                (path.display().to_string(), expected),
            )
        }
        None => (
            Source::open_with("stdin", || decompressed(std::io::stdin())),
            ("stdin".to_owned(), None),
        ),
    };
    let (from, expected) = from;
    let Some(engine) = engine else {
        let spec = native.expect("native when there is no engine");
        return load_natively(args, global, &spec, source, &from, expected, &mut printer);
    };
    let spec = EndpointSpec::of(&engine);
    let target = Endpoint::Engine {
        engine,
        spec: spec.clone(),
    };
    // One run at a time writes into one store; what it held, to remove what a failed load leaves.
    let _store = guard::lock_store(&target, |msg| printer.step("wait", msg));
    let before = guard::Snapshot::take(&target).ok();
    let load = target.load_command()?;
    let mut pump = Pump::new(source)
        .sink(target.load_sink(load)?)
        .expected_bytes(expected);
    if plan::names_short_names_localhost(&target) {
        pump = pump.transform(|r| Box::new(QualifyNames::new(r)));
    }
    printer.stream(format!("{from} → {spec}"));
    let done =
        run_pump(pump, &mut printer, &format!("{from} into {spec}")).map_err(
            |e| match &before {
                Some(b) => guard::after_failed_load(&target, b, e),
                None => e,
            },
        )?;
    let loaded: Vec<&str> = done
        .target_stdout
        .lines()
        .filter(|l| !l.trim().is_empty())
        .collect();
    if !global.json && !global.quiet {
        for line in &loaded {
            println!("{line}");
        }
    }
    Summary {
        images: loaded.len(),
        bytes: done.bytes,
        elapsed: done.elapsed,
        from,
        to: spec.to_string(),
        verified: None,
        sync: None,
    }
    .print(global, false);
    Ok(ExitCode::SUCCESS)
}

/// `--snapshotter` and `--no-unpack` are containerd's over its API: refused where the load
/// goes through an engine's CLI, which would not do what they ask.
fn check_unpack_flags(args: &Args, engine: &imgkit_engine::Engine) -> anyhow::Result<()> {
    let flag = if args.no_unpack {
        "--no-unpack"
    } else if args.snapshotter != "overlayfs" {
        "--snapshotter"
    } else {
        return Ok(());
    };
    Err(with_hint(
        anyhow::anyhow!(
            "{flag} applies to a load into containerd over its API, and this load goes through {}'s CLI",
            engine.kind()
        ),
        if engine.kind() == imgkit_engine::EngineKind::Ctr {
            "leave out --engine-bin and IMGKIT_CTR_BIN, and check that containerd's socket answers (`imgkit -v load …` says why the CLI was taken); or drop the flag"
        } else {
            "drop the flag: only containerd (--engine ctr) has snapshotters to unpack into"
        },
    ))
}

/// `load --engine ctr` over containerd's API: the archive (decompressed, every blob checked
/// as it passes) read once into the namespace's store (`stores::ingest_stream`, as `run`
/// puts an engine's save there), the blobs under the store's lease, unpacked, and the names
/// the archive gives written last (`Destination::commit`). Under the store's lock; a load
/// that fails or is interrupted names nothing, and the lease lets go of what it wrote.
fn load_natively(
    args: &Args,
    global: &GlobalArgs,
    spec: &EndpointSpec,
    source: Source,
    from: &str,
    expected: Option<u64>,
    printer: &mut Printer,
) -> anyhow::Result<ExitCode> {
    let target = Endpoint::Store(spec.clone(), Vec::new());
    let _store = guard::lock_store(&target, |msg| printer.step("wait", msg));
    let started = std::time::Instant::now();
    let mut store = crate::containerd::open(spec)
        .ok_or_else(|| anyhow::anyhow!("{spec} is not reachable over containerd's API"))?;
    let failed = |e: anyhow::Error| {
        e.context(format!(
            "the load into {spec} did not complete; {spec} kept nothing from it (no image is named before all of it is in)"
        ))
    };
    let (done, ingested) = crate::stores::ingest_stream(
        source,
        expected,
        from,
        &format!("{from} is not an image archive"),
        &mut store,
        &spec.to_string(),
        None,
        printer,
        &format!("{from} into {spec}"),
        &[],
    )
    .map_err(failed)?;
    let (images, unnamed): (Vec<_>, Vec<_>) = ingested
        .images
        .into_iter()
        .partition(|i| !i.names.is_empty());
    for image in &unnamed {
        printer.step(
            "commit",
            &format!(
                "note: image {} has no name in {from}; containerd keeps no unnamed image, so it is not loaded",
                image.id()
            ),
        );
    }
    imgkit_store::Destination::commit(&mut store, &images)
        .with_context(|| format!("writing into {spec} failed"))
        .map_err(failed)?;
    // What `ctr images import` prints, one line per name.
    let loaded: Vec<String> = images
        .iter()
        .flat_map(|image| {
            image.names.iter().map(|n| {
                let name = imgkit_containerd::native_name(n);
                if args.no_unpack {
                    format!("imported {name} ({})", image.manifest.digest)
                } else {
                    format!("unpacking {name} ({})...done", image.manifest.digest)
                }
            })
        })
        .collect();
    if !global.json && !global.quiet {
        for line in &loaded {
            println!("{line}");
        }
    }
    Summary {
        images: loaded.len(),
        bytes: done.bytes,
        // The unpack and the names too, as the ctr CLI's import is timed whole.
        elapsed: started.elapsed(),
        from: from.to_owned(),
        to: spec.to_string(),
        verified: None,
        sync: None,
    }
    .print(global, false);
    Ok(ExitCode::SUCCESS)
}

/// The archive's bytes, decompressed in-process when they start with gzip or zstd magic, and
/// verified as they pass (every blob against its digest, every layer against its config): the
/// end of a bad archive never reaches the engine, which is stopped instead.
fn decompressed(r: impl Read + 'static) -> std::io::Result<Box<dyn Read>> {
    let plain = imgkit_archive::decompress(r)?;
    Ok(Box::new(imgkit_archive::VerifyingReader::new(
        plain,
        imgkit_archive::Limits::default(),
    )))
}
