//! `ctr:NAMESPACE` over containerd's gRPC API (`crates/imgkit-containerd`): opened here when
//! the socket answers; the `ctr` CLI (`imgkit-engine`'s ctr seam) stays the fallback, and is
//! used whenever a ctr binary is named (`IMGKIT_CTR_BIN`, `--engine-bin`). `-v` says which path
//! was taken and why, and how blobs are read: from the content store's files when containerd is
//! on this machine and they can be read, else over the API (`IMGKIT_CONTAINERD_READ=api`
//! forces the API).

use std::collections::BTreeMap;
use std::sync::Mutex;

use imgkit_containerd::{Client, ImportOptions, Store, discover};
use imgkit_engine::EngineKind;
use imgkit_types::ImageRecord;

use crate::endpoint::EndpointSpec;

use crate::diagnostics::with_hint;
use crate::engine_args::{self, ContainerdArgs, EngineArgs};

/// containerd over its API, or why not.
enum Reach {
    Native(Client),
    /// Through the `ctr` CLI; the reason (for `-v`).
    Cli,
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

/// The namespace of a `ctr:NAMESPACE` spec (`default` when none is named); `None` for anything
/// else: nerdctl stays on its CLI, and `ctr:all` is every namespace, one run each.
fn namespace_of(spec: &EndpointSpec) -> Option<&str> {
    match spec {
        EndpointSpec::Engine {
            kind: EngineKind::Ctr,
            namespace,
        } => {
            let ns = namespace
                .as_deref()
                .unwrap_or(imgkit_engine::DEFAULT_NAMESPACE);
            (ns != "all").then_some(ns)
        }
        _ => None,
    }
}

/// Decided once per namespace and process (a run opens its endpoints several times).
static REACHED: Mutex<BTreeMap<String, Option<Client>>> = Mutex::new(BTreeMap::new());

/// `ctr:namespace` natively when containerd answers on its socket and no ctr binary is named,
/// else the CLI; `-v` says which and why.
fn reach(namespace: &str) -> Reach {
    let mut reached = REACHED.lock().expect("reached");
    if let Some(c) = reached.get(namespace) {
        return c.clone().map_or(Reach::Cli, Reach::Native);
    }
    let spec = format!("ctr:{namespace}");
    let named = std::env::var_os("IMGKIT_CTR_BIN").filter(|v| !v.is_empty());
    let client = if let Some(bin) = NAMED_BIN.lock().expect("named bin").clone() {
        say(&format!(
            "{spec}: through the ctr CLI ({}, from --engine-bin)",
            bin.display()
        ));
        None
    } else if let Some(bin) = named {
        say(&format!(
            "{spec}: through the ctr CLI ({}, from IMGKIT_CTR_BIN)",
            std::path::Path::new(&bin).display()
        ));
        None
    } else {
        let args = engine_args::containerd();
        let addr = address();
        match Client::connect(&addr, namespace) {
            Ok(client) => {
                let noted = spec.clone();
                client.on_note(move |m| say(&format!("{noted}: {m}")));
                if std::env::var_os("IMGKIT_CONTAINERD_READ").is_some_and(|v| v == "api") {
                    client.read_over_api_only();
                }
                say(&format!(
                    "{spec}: through containerd's API at {} ({}; {})",
                    addr.path,
                    match addr.how {
                        "found" => "found there",
                        "default" => "the default socket",
                        how => how,
                    },
                    if args.no_unpack {
                        "no unpacking".to_owned()
                    } else {
                        format!("unpacking into {}", args.snapshotter)
                    }
                ));
                Some(client)
            }
            Err(e) => {
                say(&format!(
                    "{spec}: containerd's API: {e}; falling back to the ctr CLI"
                ));
                None
            }
        }
    };
    reached.insert(namespace.to_owned(), client.clone());
    client.map_or(Reach::Cli, Reach::Native)
}

/// Whether `spec` is `ctr:NAMESPACE` reached over containerd's API (an image store).
pub(crate) fn native(spec: &EndpointSpec) -> bool {
    namespace_of(spec).is_some_and(|ns| matches!(reach(ns), Reach::Native(_)))
}

/// `spec` as a store over containerd's API; `None` when it is not one.
pub(crate) fn open(spec: &EndpointSpec) -> Option<Store> {
    let Reach::Native(client) = reach(namespace_of(spec)?) else {
        return None;
    };
    let args = engine_args::containerd();
    Some(Store::new(
        client,
        ImportOptions {
            snapshotter: args.snapshotter.clone(),
            unpack: !args.no_unpack,
        },
    ))
}

/// The listing of a native `ctr:` source, with its warnings and notes (platforms whose content
/// is not here); `None` when `spec` is not one.
pub(crate) fn listing(spec: &EndpointSpec) -> anyhow::Result<Option<crate::selection::Listing>> {
    let Some(store) = open(spec) else {
        return Ok(None);
    };
    let (records, warnings) =
        list(&store).map_err(|e| e.context(format!("could not list the images in {spec}")))?;
    Ok(Some(crate::selection::Listing { records, warnings }))
}

/// The key runs into one store take turns by: the same as the ctr CLI's for that containerd
/// and namespace, so native and CLI runs wait for each other.
pub(crate) fn store_key(spec: &EndpointSpec) -> Option<String> {
    let ns = namespace_of(spec)?;
    native(spec).then(|| format!("containerd {} {ns}", address().path))
}

/// The engine options' `--address` for the ctr CLI: what `--address` names or discovery
/// found (k3s' socket); `CONTAINERD_ADDRESS` reaches the CLI through the environment.
pub(crate) fn cli_address() -> Option<String> {
    let a = address();
    matches!(a.how, "--address" | "found").then_some(a.path)
}

/// The namespace's records (with `Namespace`, as the CLI listing gets them in `plan.rs`), and
/// warnings: names left out, platforms whose content is not here.
fn list(store: &Store) -> anyhow::Result<(Vec<ImageRecord>, Vec<String>)> {
    let (records, mut warnings) = store.list().map_err(|e| error(e, None))?;
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

/// A blob read from a native `ctr:` source that does not hash to its name: containerd's own
/// store is damaged (its file changed behind containerd's back), said so with what to do.
pub(crate) fn damaged(spec: &EndpointSpec, e: imgkit_store::Error) -> anyhow::Error {
    let digest = match &e {
        imgkit_store::Error::Archive(imgkit_archive::Error::DigestMismatch {
            expected, ..
        }) => expected.clone(),
        imgkit_store::Error::DigestMismatch { expected, .. } => expected.to_string(),
        _ => return e.into(),
    };
    match namespace_of(spec).filter(|_| native(spec)) {
        Some(ns) => anyhow::Error::new(e).context(format!(
            "containerd's content store at {} is damaged: its blob {digest} does not hash to its name; remove it (ctr -n {ns} content rm {digest}) and pull or import the image again",
            address().path
        )),
        None => e.into(),
    }
}

/// Each layer of `images` that containerd lacks uncompressed but holds compressed (a base it
/// pulled from a registry) named in the image's manifest as the compressed blob it holds, so
/// it is not sent (`Store::compressed_layer`); the image's config, and so its ID, stays. The
/// manifests change (made up anew for the new layers); the number of layers so named.
pub(crate) fn name_compressed_layers(
    store: &Store,
    images: &mut [imgkit_store::StoredImage],
) -> usize {
    use imgkit_store::Destination as _;
    let mut found: BTreeMap<imgkit_types::Digest, Option<imgkit_store::BlobInfo>> = BTreeMap::new();
    let mut named = 0;
    for image in images.iter_mut() {
        if image.is_index() {
            continue;
        }
        let mut layers = image.layers.clone();
        for layer in &mut layers {
            let held = found.entry(layer.digest.clone()).or_insert_with(|| {
                if store.has_blob(&layer.digest) {
                    None
                } else {
                    store.compressed_layer(&layer.digest)
                }
            });
            if let Some(c) = held {
                *layer = c.clone();
            }
        }
        let changed = layers
            .iter()
            .zip(&image.layers)
            .filter(|(a, b)| a != b)
            .count();
        if changed > 0 {
            named += changed;
            *image = imgkit_store::made_up_image(image.names.clone(), image.config.clone(), layers);
        }
    }
    named
}

/// A ctr binary named by `--engine-bin` (`ls`, `save`, `load --engine ctr`): the CLI, as with
/// `IMGKIT_CTR_BIN`.
static NAMED_BIN: Mutex<Option<std::path::PathBuf>> = Mutex::new(None);

/// What `load --engine ctr` does after a native import: `--snapshotter`, `--no-unpack`.
pub(crate) struct Unpack<'a> {
    pub(crate) snapshotter: &'a str,
    pub(crate) no_unpack: bool,
}

/// `ls`, `save` and `load --engine ctr`: takes their engine options as `run`'s containerd
/// options (`--address`; for `load`, how to unpack) and a ctr binary they name as the CLI.
/// `false` for any other engine.
fn prepare(args: &EngineArgs, unpack: Option<Unpack<'_>>) -> bool {
    if args.engine != Some(EngineKind::Ctr) {
        return false;
    }
    let defaults = engine_args::containerd();
    engine_args::set_containerd(&ContainerdArgs {
        address: args.address.clone(),
        snapshotter: unpack
            .as_ref()
            .map_or(defaults.snapshotter, |u| u.snapshotter.to_owned()),
        no_unpack: unpack.is_some_and(|u| u.no_unpack),
    });
    if let Some(bin) = &args.engine_bin {
        *NAMED_BIN.lock().expect("named bin") = Some(bin.clone());
    }
    true
}

/// `ls`, `save` and `load --engine ctr -n NAMESPACE`: the namespace as a `ctr:` store when
/// `run` would reach it over containerd's API (the same decision: containerd answers and no
/// ctr binary is named by `--engine-bin` or `IMGKIT_CTR_BIN`; `-v` says which and why), else
/// `None`: the ctr CLI (and any other engine). `-n all` is [`every_namespace`]'s.
pub(crate) fn for_engine(args: &EngineArgs, unpack: Option<Unpack<'_>>) -> Option<EndpointSpec> {
    if !prepare(args, unpack) {
        return None;
    }
    let spec = EndpointSpec::Engine {
        kind: EngineKind::Ctr,
        namespace: (args.namespace != imgkit_engine::DEFAULT_NAMESPACE)
            .then(|| args.namespace.clone()),
    };
    native(&spec).then_some(spec)
}

/// `ls --engine ctr -n all` over containerd's API: every namespace containerd has, or `None`
/// when `ctr:` goes through the CLI (decided as for `ctr:default`).
pub(crate) fn every_namespace(args: &EngineArgs) -> Option<anyhow::Result<Vec<EndpointSpec>>> {
    if !prepare(args, None) {
        return None;
    }
    let Reach::Native(client) = reach(imgkit_engine::DEFAULT_NAMESPACE) else {
        return None;
    };
    Some(
        client
            .namespaces()
            .map(|names| {
                names
                    .into_iter()
                    .map(|ns| EndpointSpec::Engine {
                        kind: EngineKind::Ctr,
                        namespace: Some(ns),
                    })
                    .collect()
            })
            .map_err(|e| error(e, Some("could not list containerd's namespaces"))),
    )
}
