//! `imgkit inspect FILE`: what an archive holds — images, names, platforms, layers and their
//! sizes, and which layers images share — without reading the layers.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use imgkit_archive::{Archive, Image};
use imgkit_types::humanize;
use serde_json::json;

use crate::commands::verify::{advise, refuse_terminal};
use crate::global::GlobalArgs;

#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  imgkit inspect images.tar            images, tags, platforms, layers, shared layers
  imgkit inspect --json images.tar     the same as one JSON object
  imgkit inspect ./oci-layout-dir      an OCI image layout directory")]
pub(crate) struct Args {
    /// The archive: a tar file (plain, gzip or zstd), an OCI layout directory, or `-` for stdin.
    file: PathBuf,
}

pub(crate) fn run(args: &Args, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    let shown = args.file.display().to_string();
    let opened = if args.file.as_os_str() == "-" {
        refuse_terminal()?;
        Archive::from_reader(std::io::stdin(), imgkit_archive::Limits::default())
    } else {
        Archive::open(&args.file)
    };
    let archive = opened.map_err(|e| advise(e, format!("cannot read {shown}")))?;
    // Which images use each layer.
    let mut users: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, im) in archive.images().iter().enumerate() {
        for p in &im.platforms {
            for l in &p.layers {
                let v = users.entry(l.digest.as_str()).or_default();
                if !v.contains(&i) {
                    v.push(i);
                }
            }
        }
    }
    let shared: Vec<&str> = users
        .iter()
        .filter(|(_, u)| u.len() > 1)
        .map(|(d, _)| *d)
        .collect();
    let mut out = std::io::stdout().lock();
    if global.json {
        let images: Vec<_> = archive.images().iter().map(image_json).collect();
        let shared_json: Vec<_> = shared
            .iter()
            .map(|d| json!({"digest": d, "images": users[d]}))
            .collect();
        let v = json!({
            "file": shown,
            "compression": archive.compression().to_string(),
            "images": images,
            "shared_layers": shared_json,
        });
        writeln!(out, "{v}")?;
        return Ok(ExitCode::SUCCESS);
    }
    writeln!(
        out,
        "{shown}: {} images, compression {}",
        archive.images().len(),
        archive.compression()
    )?;
    for (i, im) in archive.images().iter().enumerate() {
        let names: Vec<String> = im.names.iter().map(|n| n.familiar().to_string()).collect();
        let names = if names.is_empty() {
            "<none>".to_owned()
        } else {
            names.join(", ")
        };
        writeln!(out, "\n[{i}] {names}")?;
        writeln!(out, "    id       {}", im.id())?;
        if let Some(t) = &im.target {
            writeln!(out, "    target   {} ({})", t.digest, t.media_type)?;
        }
        for p in &im.platforms {
            let created = p.created.as_deref().unwrap_or("unknown");
            writeln!(out, "    platform {}  created {created}", p.platform)?;
            for l in &p.layers {
                let mark = if shared.contains(&l.digest.as_str()) {
                    "  (shared)"
                } else {
                    ""
                };
                writeln!(
                    out,
                    "      layer {} {:>8}{mark}",
                    l.digest,
                    humanize::size(l.size)
                )?;
            }
        }
        for m in &im.missing_platforms {
            let platform = m
                .platform
                .as_ref()
                .map_or_else(|| "unknown".to_owned(), ToString::to_string);
            writeln!(
                out,
                "    missing  {platform} ({}): not in the archive",
                m.digest
            )?;
        }
    }
    if !shared.is_empty() {
        writeln!(out, "\nshared layers: {}", shared.len())?;
    }
    Ok(ExitCode::SUCCESS)
}

fn image_json(im: &Image) -> serde_json::Value {
    json!({
        "names": im.names.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "id": im.id().to_string(),
        "size": im.size(),
        "target": im.target,
        "platforms": im.platforms,
        "missing_platforms": im.missing_platforms,
        "ref_names": im.ref_names,
    })
}
