//! OCI image layout directories as `run --to` endpoints (`--to ./dir/`, or an existing
//! directory with an `oci-layout` file), written through the `imgkit-store` interface alone.
//!
//! The source is whatever `run` already reads (an engine, an archive, another layout): `run`
//! moves the selection into a temporary archive inside the directory (an engine's save stream
//! is the only door it has), that archive becomes an `imgkit_store::ArchiveSource`, and
//! `imgkit_store::copy` writes into the layout only the blobs it lacks, then names the images
//! in `index.json` last. Reading a layout (`--from ./dir/`, `ls --from ./dir/`) needs nothing
//! here: `imgkit-archive` reads layout directories as it reads archives.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context;
use imgkit_store::{ArchiveSource, Destination, LayoutDir, Source, copy};
use imgkit_types::humanize;
use serde_json::json;

use crate::commands::run::Args;
use crate::diagnostics::with_hint;
use crate::endpoint::EndpointSpec;
use crate::global::GlobalArgs;

/// The directory an endpoint names when it is an OCI layout: a path written with a trailing
/// separator (`./dir/`), or an existing directory holding an `oci-layout` file.
pub(crate) fn dir_of(spec: &EndpointSpec) -> Option<PathBuf> {
    let EndpointSpec::Archive(p) = spec else {
        return None;
    };
    let text = p.as_os_str().to_string_lossy();
    let trailing = text.ends_with('/') || text.ends_with(std::path::MAIN_SEPARATOR);
    (trailing || imgkit_store::is_layout_dir(p)).then(|| p.clone())
}

/// Removes the temporary archive however the run ends.
struct Incoming(PathBuf);

impl Drop for Incoming {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// `run --to DIR/`: the selection through a temporary archive into the layout at `dir`.
pub(crate) fn run_into(args: &Args, global: &GlobalArgs, dir: &Path) -> anyhow::Result<ExitCode> {
    if let Some(from) = dir_of(&args.from)
        && std::fs::canonicalize(&from).ok() == std::fs::canonicalize(dir).ok()
    {
        return Err(with_hint(
            anyhow::anyhow!("--from and --to are both {}", dir.display()),
            "name a different target directory, e.g. --to ./copy/",
        ));
    }
    if !args.rename.is_empty() {
        return Err(with_hint(
            anyhow::anyhow!(
                "renames are applied by the target engine, and {} is a directory",
                dir.display()
            ),
            "load into an engine with --to, or rename after loading",
        ));
    }
    if args.dry_run {
        // The plan, and nothing created: not even the directory.
        let inner_args = Args {
            to: EndpointSpec::Archive(
                std::env::temp_dir().join(format!("imgkit-dry-run-{}.tar", std::process::id())),
            ),
            ..args.clone()
        };
        let code = crate::commands::run::run(&inner_args, global)?;
        if !global.quiet && !global.json {
            eprintln!(
                "imgkit: then the blobs {} lacks are copied from that archive into it, and index.json names the images",
                dir.display()
            );
        }
        return Ok(code);
    }
    let inner = |tmp: &Path, quiet: &GlobalArgs| {
        let inner_args = Args {
            to: EndpointSpec::Archive(tmp.to_owned()),
            ..args.clone()
        };
        crate::commands::run::run(&inner_args, quiet)
    };
    write_through(dir, &args.from.to_string(), args.no_verify, global, inner)
}

/// `save -o DIR/`: the images `save` would write, into the layout at `dir`.
pub(crate) fn save_into(
    args: &crate::commands::save::Args,
    global: &GlobalArgs,
    dir: &Path,
) -> anyhow::Result<ExitCode> {
    let from = args.engine.engine()?;
    let from = EndpointSpec::of(&from).to_string();
    let inner = |tmp: &Path, quiet: &GlobalArgs| {
        let inner_args = crate::commands::save::Args {
            output: tmp.to_owned(),
            ..args.clone()
        };
        crate::commands::save::run(&inner_args, quiet)
    };
    write_through(dir, &from, false, global, inner)
}

/// Writes into the layout at `dir` what `inner` writes into the temporary archive it is given
/// (run with `--quiet`, no `--json`), through imgkit-store, and prints the summary.
fn write_through(
    dir: &Path,
    from: &str,
    no_verify: bool,
    global: &GlobalArgs,
    inner: impl FnOnce(&Path, &GlobalArgs) -> anyhow::Result<ExitCode>,
) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    // A directory this run created is removed again when nothing is written into it.
    let created = !dir.exists();
    let mut layout = LayoutDir::create(dir).map_err(|e| {
        with_hint(
            anyhow::Error::new(e).context(format!(
                "cannot use {} as an OCI layout directory",
                dir.display()
            )),
            "name a new or empty directory, or one holding an OCI layout (an oci-layout file)",
        )
    })?;
    let incoming = Incoming(dir.join(format!(".imgkit-incoming-{}.tar", std::process::id())));
    // The summary here speaks for the whole run.
    let quiet = GlobalArgs {
        json: false,
        quiet: true,
        ..global.clone()
    };
    let code = match inner(&incoming.0, &quiet) {
        Ok(code) => code,
        Err(e) => {
            drop(incoming);
            if created {
                let _ = std::fs::remove_dir_all(dir);
            }
            return Err(e);
        }
    };
    if code != ExitCode::SUCCESS || !incoming.0.exists() {
        drop(incoming);
        if created {
            let _ = std::fs::remove_dir_all(dir);
        }
        if global.json {
            println!(
                "{}",
                json!({"from": from, "to": dir.display().to_string(), "images": 0, "blobs_written": 0, "bytes_written": 0, "blobs_skipped": 0, "bytes_skipped": 0, "copied": []})
            );
        } else if !global.quiet {
            eprintln!("imgkit: the filter selected no image in {from}; nothing to do");
        }
        return Ok(code);
    }
    let source = ArchiveSource::open(&incoming.0)
        .with_context(|| format!("cannot read the images saved from {from}"))?;
    let images = source.images()?;
    let report = copy(&source, &mut layout, &images)
        .with_context(|| format!("writing into {} failed", dir.display()))?;
    drop(incoming);
    let verified = if no_verify {
        None
    } else {
        let held = layout.image_ids()?;
        if let Some(lost) = images.iter().find(|i| !held.contains(i.id())) {
            anyhow::bail!(
                "wrote {} into {}, and its index.json does not list image {}",
                source.describe(),
                dir.display(),
                lost.id()
            );
        }
        Some(images.len())
    };
    let copied: Vec<String> = images
        .iter()
        .flat_map(|i| i.names.iter().map(|n| n.familiar().to_string()))
        .collect();
    let elapsed = started.elapsed();
    if global.json {
        println!(
            "{}",
            json!({
                "from": from,
                "to": dir.display().to_string(),
                "images": report.images,
                "blobs_written": report.blobs_written,
                "bytes_written": report.bytes_written,
                "blobs_skipped": report.blobs_skipped,
                "bytes_skipped": report.bytes_skipped,
                "seconds": (elapsed.as_secs_f64() * 1000.0).round() / 1000.0,
                "verified": verified,
                "copied": copied,
            })
        );
    } else if !global.quiet {
        let verified = verified.map_or_else(String::new, |n| format!(", {n} verified by image ID"));
        eprintln!(
            "imgkit: wrote {} image{} from {} to {}: {} blob{} written ({}), {} already there ({}) in {:.1} s{verified}",
            report.images,
            if report.images == 1 { "" } else { "s" },
            from,
            dir.display(),
            report.blobs_written,
            if report.blobs_written == 1 { "" } else { "s" },
            humanize::size(report.bytes_written),
            report.blobs_skipped,
            humanize::size(report.bytes_skipped),
            elapsed.as_secs_f64(),
        );
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_trailing_slash_or_an_oci_layout_file_makes_a_directory_endpoint() {
        let spec = |s: &str| s.parse::<EndpointSpec>().unwrap();
        assert_eq!(dir_of(&spec("./out/")), Some(PathBuf::from("./out/")));
        assert_eq!(dir_of(&spec("images.tar")), None);
        assert_eq!(dir_of(&spec("docker")), None);
        let tmp = tempfile::tempdir().unwrap();
        assert_eq!(dir_of(&EndpointSpec::Archive(tmp.path().to_owned())), None);
        std::fs::write(tmp.path().join("oci-layout"), "{}").unwrap();
        assert_eq!(
            dir_of(&EndpointSpec::Archive(tmp.path().to_owned())),
            Some(tmp.path().to_owned())
        );
    }
}
