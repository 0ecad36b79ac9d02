//! `imgkit load`: stream an archive (a file or stdin; plain, gzip or zstd) into an engine's load.

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
}

pub(crate) fn run(args: &Args, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    let engine = args.engine.engine()?;
    let spec = EndpointSpec::of(&engine);
    let target = Endpoint::Engine {
        engine,
        spec: spec.clone(),
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
