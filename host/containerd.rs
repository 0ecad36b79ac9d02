//! `ctr:NAMESPACE` over containerd's gRPC API (`crates/imgkit-containerd`): opened here when
//! the socket answers; the `ctr` CLI (`imgkit-engine`'s ctr seam) stays the fallback, and is
//! used whenever a ctr binary is named (`IMGKIT_CTR_BIN`, `--engine-bin`). `-v` says which path
//! was taken and why.

use imgkit_containerd::{Client, ImportOptions, Store, discover};
use imgkit_types::ImageRecord;

use crate::diagnostics::with_hint;
use crate::engine_args;

/// containerd over its API, or why not.
pub(crate) enum Reach {
    Native(Box<Store>),
    /// Through the `ctr` CLI; the reason (for `-v`).
    Cli(String),
}

fn say(msg: &str) {
    if engine_args::trace().is_some() {
        eprintln!("imgkit: {msg}");
    }
}

/// The socket `ctr:` endpoints use: `--address`, `CONTAINERD_ADDRESS`, or the first of the usual
/// places that exists (so the CLI fallback talks to the same containerd).
pub(crate) fn address() -> imgkit_containerd::Address {
    discover(engine_args::containerd().address.as_deref())
}

/// Opens `ctr:namespace`: natively when containerd answers on its socket and no ctr binary is
/// named, else the CLI (with the reason, also printed under `-v`).
pub(crate) fn reach(namespace: &str) -> Reach {
    let named = std::env::var_os("IMGKIT_CTR_BIN").filter(|v| !v.is_empty());
    let spec = format!("ctr:{namespace}");
    if let Some(bin) = named {
        let why = format!(
            "{spec}: through the ctr CLI ({}, from IMGKIT_CTR_BIN)",
            std::path::Path::new(&bin).display()
        );
        say(&why);
        return Reach::Cli(why);
    }
    let args = engine_args::containerd();
    let addr = address();
    match Client::connect(&addr, namespace) {
        Ok(client) => {
            say(&format!(
                "{spec}: through containerd's API at {} ({}; {})",
                addr.path,
                match addr.how {
                    "found" => "found there",
                    "default" => "the default socket",
                    how => how,
                },
                if args.no_unpack {
                    "no unpack".to_owned()
                } else {
                    format!("unpacking into {}", args.snapshotter)
                }
            ));
            Reach::Native(Box::new(Store::new(
                client,
                ImportOptions {
                    snapshotter: args.snapshotter.clone(),
                    unpack: !args.no_unpack,
                },
            )))
        }
        Err(e) => {
            let why = format!("{spec}: containerd's API: {e}; falling back to the ctr CLI");
            say(&why);
            Reach::Cli(why)
        }
    }
}

/// The namespace's records (with `Namespace`, as the CLI listing gets them in `plan.rs`), and
/// warnings: names left out, platforms whose content is not here.
pub(crate) fn list(store: &Store) -> anyhow::Result<(Vec<ImageRecord>, Vec<String>)> {
    let (mut records, mut warnings) = store.list().map_err(|e| error(e, None))?;
    for rec in &mut records {
        rec.extra.insert(
            "Namespace".to_owned(),
            serde_json::Value::String(store.client().namespace().to_owned()),
        );
    }
    warnings.extend(store.notes().into_iter().map(|n| format!("note: {n}")));
    Ok((records, warnings))
}

/// An error of the API with its hint, under `context`.
pub(crate) fn error(e: imgkit_containerd::Error, context: Option<&str>) -> anyhow::Error {
    let hint = e.hint();
    let mut err = anyhow::Error::new(e);
    if let Some(c) = context {
        err = err.context(c.to_owned());
    }
    match hint {
        Some(h) => with_hint(err, h),
        None => err,
    }
}
