//! `imgkit verify FILE`: every blob's sha256 and size against its descriptor, every manifest's
//! references, missing platforms; exit 2 naming the first bad blob.

use std::path::PathBuf;
use std::process::ExitCode;

use imgkit_archive::{Error, VerifyReport};

use crate::diagnostics::with_hint;
use crate::global::GlobalArgs;

#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  imgkit verify images.tar              check a docker-save, OCI or imgkit archive
  imgkit verify --json subset.tar.zst   the report as one JSON object
  docker save app:1 | imgkit verify -   check a stream in one pass")]
pub(crate) struct Args {
    /// The archive: a tar file (plain, gzip or zstd), an OCI layout directory, or `-` for stdin.
    file: PathBuf,
}

pub(crate) fn run(args: &Args, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    let shown = args.file.display().to_string();
    let result = if args.file.as_os_str() == "-" {
        refuse_terminal()?;
        imgkit_archive::verify_reader(std::io::stdin(), imgkit_archive::Limits::default())
    } else {
        imgkit_archive::verify(&args.file)
    };
    let report = result.map_err(|e| advise(e, format!("{shown} failed verification")))?;
    print_report(&report, &shown, global)?;
    Ok(ExitCode::SUCCESS)
}

fn print_report(report: &VerifyReport, shown: &str, global: &GlobalArgs) -> anyhow::Result<()> {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    if global.json {
        let mut v = serde_json::to_value(report)?;
        v["file"] = serde_json::Value::String(shown.to_owned());
        v["ok"] = serde_json::Value::Bool(true);
        writeln!(out, "{v}")?;
        return Ok(());
    }
    if !global.quiet {
        writeln!(
            out,
            "{shown}: ok — {} images, {} names, {} blobs checked, {} hashed",
            report.images,
            report.names,
            report.blobs_checked,
            imgkit_types::humanize::size(report.bytes)
        )?;
    }
    if global.quiet {
        return Ok(());
    }
    for w in &report.warnings {
        eprintln!("warning: {shown}: {w}");
    }
    for m in &report.missing_platforms {
        let platform = m
            .platform
            .as_ref()
            .map_or_else(|| "unknown platform".to_owned(), ToString::to_string);
        eprintln!(
            "warning: {shown}: platform {platform} ({}) is named by an index but not in the archive",
            m.digest
        );
    }
    Ok(())
}

/// Wraps an archive error with what the user can do about it.
pub(crate) fn advise(e: Error, context: String) -> anyhow::Error {
    let hint = match &e {
        Error::DigestMismatch { .. } | Error::SizeMismatch { .. } => Some(
            "the archive is corrupt or was altered after it was written: save it again from its source",
        ),
        Error::BadCompression { .. } => Some(
            "the compressed file is cut or damaged (`gzip -t`/`zstd -t` agree): download or compress it again",
        ),
        Error::Truncated { .. } => Some(
            "the file is incomplete: was the save interrupted or the disk full? save or download it again",
        ),
        Error::MissingBlob { .. } | Error::MissingMember { .. } => Some(
            "the archive lacks content its manifests name: save it again, without skipping layers or platforms",
        ),
        Error::NotAnImageArchive(_) | Error::NotATar { .. } => Some(
            "pass a file written by `docker save`, `podman save`, `ctr images export` or imgkit",
        ),
        Error::UnsafePath { .. } | Error::DuplicateEntry { .. } | Error::LinkLoop { .. } => {
            Some("the archive is malformed or hostile: do not load it into an engine")
        }
        Error::MetadataTooLarge { .. } | Error::ExpansionLimit { .. } => {
            Some("image archives' metadata is small; this file is probably hostile")
        }
        _ => None,
    };
    let e = anyhow::Error::new(e).context(context);
    match hint {
        Some(h) => with_hint(e, h),
        None => e,
    }
}

/// Reading an archive from stdin when stdin is a terminal would wait forever: say so instead.
pub(crate) fn refuse_terminal() -> anyhow::Result<()> {
    use std::io::IsTerminal as _;
    if std::io::stdin().is_terminal() {
        return Err(with_hint(
            anyhow::anyhow!("refusing to read an archive from a terminal"),
            "pipe one in (`docker save IMAGE | imgkit verify -`) or name a file",
        ));
    }
    Ok(())
}
