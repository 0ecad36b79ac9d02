//! `registry:HOST[:PORT][/PATH]` endpoints in `run` and `ls`, through `imgkit-registry` (a
//! blocking API; its async client stays inside that crate).
//!
//! - Push (`--to registry:…`): what `run` would write is written into a temporary archive (an
//!   engine's save stream is the only door it has), opened as an `imgkit_store::ArchiveSource`,
//!   each image named in the registry (`seed/app:1.0` → `HOST/seed/app:1.0`), and
//!   `imgkit_store::copy`'d into the registry, which is asked first and sent only what it lacks.
//! - Pull (`--from registry:…`) into a layout directory: the registry's records go through
//!   the filters as an engine's would, and the selected images are copied into it.
//! - Pull into an engine or an archive file: the registry is an image store of `run`'s stages
//!   (`stores::open_source` → [`open_source`]): listed, selected, skipped, then streamed
//!   (`stores::stream`: `write_tar` reading the registry's blobs as they arrive, digests
//!   checked) straight into the engine's load or the file, with renames, failed-load cleanup
//!   and verification as for any source. No temporary copy.
//! - Registry to registry: `copy` between the two.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::Context as _;
use imgkit_registry::{Compress, Options, PushStats, Registry, RegistrySource, RegistrySpec};
use imgkit_store::{Destination, LayoutDir, Source, StoredImage, copy};
use imgkit_types::{ImageRecord, ImageRef, humanize};
use serde_json::json;

use crate::commands::run::Args;
use crate::diagnostics::with_hint;
use crate::endpoint::EndpointSpec;
use crate::global::GlobalArgs;
use crate::pipeline::Pipeline;

/// How registries are reached (`run`, `ls`).
#[derive(Debug, Clone, Default, clap::Args)]
pub(crate) struct TransportArgs {
    /// A CA certificate (PEM) to trust for a registry's TLS, besides the system's roots.
    /// Repeatable.
    #[arg(long, value_name = "FILE")]
    pub(crate) ca_cert: Vec<PathBuf>,
    /// A registry (HOST[:PORT]) that may be spoken to over plain HTTP. Loopback hosts always
    /// may (as docker does). Repeatable.
    #[arg(long, value_name = "HOST")]
    pub(crate) insecure_registry: Vec<String>,
}

/// `run`'s registry options.
#[derive(Debug, Clone, Default, clap::Args)]
pub(crate) struct RegistryArgs {
    #[command(flatten)]
    pub(crate) transport: TransportArgs,
    /// How layers that arrive uncompressed (docker save) are compressed on their way into a
    /// registry: gzip (every client reads it), zstd or none.
    #[arg(long, value_name = "gzip|zstd|none", default_value = "gzip")]
    pub(crate) compress: Compress,
}

/// The registry an endpoint names (`registry:HOST[:PORT][/PATH]`), if it names one.
pub(crate) fn spec_of(spec: &EndpointSpec) -> Option<anyhow::Result<RegistrySpec>> {
    let EndpointSpec::Archive(p) = spec else {
        return None;
    };
    let text = p.to_str()?;
    text.starts_with(imgkit_registry::SCHEME).then(|| {
        RegistrySpec::parse(text).map_err(|e| {
            with_hint(
                e,
                "write registry:HOST[:PORT][/PATH], e.g. registry:localhost:5000 or registry:reg.example.com/mirror",
            )
        })
    })
}

/// The text of a path, when it names a registry.
pub(crate) fn spec_of_path(p: &Path) -> Option<anyhow::Result<RegistrySpec>> {
    spec_of(&EndpointSpec::Archive(p.to_owned()))
}

/// Opens a registry, with a hint for each way it can fail.
pub(crate) fn open(
    spec: &RegistrySpec,
    transport: &TransportArgs,
    compress: Compress,
) -> anyhow::Result<Registry> {
    let options = Options {
        client: imgkit_registry::ClientOptions {
            ca_certs: transport.ca_cert.clone(),
            insecure: transport.insecure_registry.clone(),
            docker_config: None,
        },
        compress,
        ..Options::default()
    };
    Registry::open(spec, options).map_err(|e| hinted(e, spec))
}

/// A registry error with what to try.
pub(crate) fn hinted(e: imgkit_registry::Error, spec: &RegistrySpec) -> anyhow::Error {
    use imgkit_registry::Error as E;
    let host = spec.host().to_owned();
    let hint = match &e {
        E::AuthRequired { .. } => Some(format!(
            "log in with `docker login {host}` (imgkit reads docker's config.json: DOCKER_CONFIG or ~/.docker)"
        )),
        E::AuthRefused { .. } => Some(format!(
            "log in again with `docker login {host}`, or fix the entry for {host} in docker's config.json"
        )),
        E::Tls { .. } => Some(format!(
            "pass the CA that signed {host}'s certificate: --ca-cert ca.pem"
        )),
        E::PlainHttp { .. } => Some(format!(
            "if {host} is meant to be reached without TLS, say so: --insecure-registry {host}"
        )),
        E::Connect { .. } => Some(format!("check that a registry listens on {host}")),
        E::NotFound { .. } => Some(format!(
            "list what {host} holds: imgkit ls --from registry:{host} --all"
        )),
        E::Push { .. } => {
            Some("run the same command again: blobs already pushed are not sent again".to_owned())
        }
        E::DigestMismatch { .. } => Some(format!(
            "the registry's copy is damaged: push the image to {host} again"
        )),
        _ => None,
    };
    match hint {
        Some(h) => with_hint(e, h),
        None => anyhow::Error::new(e),
    }
}

/// How registries are reached in this run: set by [`route`] from `--ca-cert` and
/// `--insecure-registry`, read when `run`'s stages open a registry ([`open_source`]).
static TRANSPORT: Mutex<Option<TransportArgs>> = Mutex::new(None);

/// Registries opened as sources in this run, each listed once: `run`'s stages open a source
/// to list, to read IDs (skip, verify) and to stream, and a listing is one request per tag.
static OPENED: Mutex<Vec<(RegistrySpec, Arc<Opened>)>> = Mutex::new(Vec::new());

/// A registry listed as a source, with the registry (its runtime) it reads through.
struct Opened {
    source: RegistrySource,
    registry: Registry,
}

fn opened(spec: &RegistrySpec) -> anyhow::Result<Arc<Opened>> {
    let mut all = OPENED.lock().expect("lock");
    if let Some((_, o)) = all.iter().find(|(s, _)| s == spec) {
        return Ok(o.clone());
    }
    let transport = TRANSPORT.lock().expect("lock").clone().unwrap_or_default();
    let registry = open(spec, &transport, Compress::default())?;
    let source = registry.source().map_err(|e| hinted(e, spec))?;
    let o = Arc::new(Opened { source, registry });
    all.push((spec.clone(), o.clone()));
    Ok(o)
}

/// A registry as `run`'s stages read it (`imgkit_store::Source`).
struct Shared(Arc<Opened>);

impl Source for Shared {
    fn describe(&self) -> String {
        self.0.source.describe()
    }
    fn records(&self) -> Vec<ImageRecord> {
        self.0.source.records()
    }
    /// What the listing left out (a tag without this platform).
    fn warnings(&self) -> Vec<String> {
        self.0.source.warnings().to_vec()
    }
    fn images(&self) -> imgkit_store::Result<Vec<StoredImage>> {
        self.0.source.images()
    }
    fn read_blobs(
        &self,
        wanted: &[imgkit_store::BlobInfo],
        f: &mut dyn FnMut(
            &imgkit_store::BlobInfo,
            &mut dyn std::io::Read,
        ) -> imgkit_store::Result<()>,
    ) -> imgkit_store::Result<()> {
        self.0.source.read_blobs(wanted, f)
    }
}

/// `IMGKIT_REGISTRY_VIA=stream` keeps a pull into podman on the stream route (`podman load`).
pub(crate) const VIA_ENV: &str = "IMGKIT_REGISTRY_VIA";

/// How many `podman pull`s run at once.
const PULLS: usize = 2;

/// Stage move from a registry into a local podman: podman pulls the selected images from the
/// registry itself (`podman pull`, the library `skopeo copy` uses, straight into its storage:
/// no archive, no temporary copy), a few at a time, reaching it as imgkit does (plain HTTP
/// only where imgkit speaks it, `--ca-cert`s as a `--cert-dir`, the `config.json` imgkit's
/// credential came from as `--authfile`, the wanted platform). The names are the registry's,
/// as the stream route loads them; renames and the image-ID check follow as after a load.
/// `None` when the route does not apply, and the images stream into `podman load` (`-v` says
/// which route and why).
pub(crate) fn pull_by_engine(
    plan: &crate::plan::Plan,
    args: &Args,
    source: &crate::plan::Endpoint,
    target: &crate::plan::Endpoint,
) -> Option<anyhow::Result<imgkit_transfer::Transferred>> {
    let crate::plan::Endpoint::Store(from, platforms) = source else {
        return None;
    };
    let spec = spec_of(from)?.ok()?;
    let engine = target.engine()?;
    if engine.kind() != imgkit_engine::EngineKind::Podman {
        return None;
    }
    let route = |why: &str| {
        if crate::engine_args::trace().is_some() {
            eprintln!("imgkit: {spec} → podman: streamed into podman load ({why})");
        }
    };
    if std::env::var(VIA_ENV).is_ok_and(|v| v == "stream") {
        route(&format!("{VIA_ENV}=stream"));
        return None;
    }
    if args.via.is_some() {
        route("--via keeps a copy of the stream");
        return None;
    }
    if plan
        .refs
        .iter()
        .any(|r| crate::plan::image_id_of(r).is_some() || r.tag().is_none())
    {
        route("an image selected by ID or digest has no tag to pull by");
        return None;
    }
    let access = match opened(&spec) {
        Ok(o) => o.registry.peer_access(),
        Err(e) => return Some(Err(e)),
    };
    let Some(access) = access else {
        route("the credential comes from credsStore, which podman does not read");
        return None;
    };
    if engine.is_remote() != Some(false) {
        route("podman is not local: the registry may not be reachable from where it runs");
        return None;
    }
    if crate::engine_args::trace().is_some() {
        eprintln!(
            "imgkit: {spec} → podman: podman pulls from the registry itself ({VIA_ENV}=stream streams into podman load instead)"
        );
    }
    Some(pull_with_podman(plan, args, engine, &access, platforms))
}

fn pull_with_podman(
    plan: &crate::plan::Plan,
    args: &Args,
    engine: &imgkit_engine::Engine,
    access: &imgkit_registry::PeerAccess,
    platforms: &[String],
) -> anyhow::Result<imgkit_transfer::Transferred> {
    use std::io::Read as _;
    let started = Instant::now();
    // The CAs imgkit trusts, as podman reads them: *.crt in a directory.
    let certs = tempfile::Builder::new()
        .prefix("imgkit-certs-")
        .tempdir()
        .context("cannot create a temporary directory")?;
    for (i, ca) in args.registry.transport.ca_cert.iter().enumerate() {
        std::fs::copy(ca, certs.path().join(format!("ca-{i}.crt")))
            .with_context(|| format!("cannot read --ca-cert {}", ca.display()))?;
    }
    let options = imgkit_engine::PullOptions {
        tls_verify: !access.plain_http,
        cert_dir: (!args.registry.transport.ca_cert.is_empty()).then(|| certs.path().to_owned()),
        authfile: access.authfile.clone(),
        platform: platforms.first().cloned(),
    };
    let mut refs: Vec<ImageRef> = Vec::new();
    for r in &plan.refs {
        if !refs.contains(r) {
            refs.push(r.clone());
        }
    }
    let mut failures: Vec<String> = Vec::new();
    for batch in refs.chunks(PULLS) {
        let mut running = Vec::new();
        for r in batch {
            let Some(mut cmd) = engine.pull_command(std::slice::from_ref(r), &options) else {
                anyhow::bail!("{} cannot pull by itself", engine.kind());
            };
            if let Some(trace) = crate::engine_args::trace() {
                trace(&imgkit_engine::display_argv(&cmd));
            }
            let child = cmd
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .with_context(|| format!("cannot run {}", engine.bin().display()))?;
            running.push((r, child));
        }
        for (r, mut child) in running {
            // Read stderr to its end (a child blocked on a full pipe would never exit), keeping
            // its last 64 KiB for the error.
            let mut err: Vec<u8> = Vec::new();
            if let Some(mut e) = child.stderr.take() {
                let mut block = [0u8; 8192];
                while let Ok(n @ 1..) = e.read(&mut block) {
                    err.extend_from_slice(&block[..n]);
                    if err.len() > 64 << 10 {
                        err.drain(..err.len() - (64 << 10));
                    }
                }
            }
            let status = child.wait().context("waiting for podman pull")?;
            if !status.success() {
                let err = String::from_utf8_lossy(&err);
                failures.push(format!("{r}: {status}: {}", err.trim()));
            }
        }
    }
    if !failures.is_empty() {
        anyhow::bail!(with_hint(
            anyhow::anyhow!(
                "podman could not pull from the registry: {}",
                failures.join("; ")
            ),
            format!("{VIA_ENV}=stream streams the images into podman load instead")
        ));
    }
    Ok(imgkit_transfer::Transferred {
        bytes: plan.expected_bytes.unwrap_or(0),
        elapsed: started.elapsed(),
        target_stdout: String::new(),
        target_stderr: String::new(),
        source_stderr: String::new(),
    })
}

/// `spec` as a source, when it names a registry (`stores::open_source`'s registry arm).
pub(crate) fn open_source(spec: &EndpointSpec) -> Option<anyhow::Result<Box<dyn Source>>> {
    let spec = spec_of(spec)?;
    Some(spec.and_then(|s| Ok(Box::new(Shared(opened(&s)?)) as Box<dyn Source>)))
}

/// `run` with a registry on either side: `None` when neither is one, or when `run`'s stages
/// read it (a pull into an engine or an archive file: the registry is a store there).
pub(crate) fn route(args: &Args, global: &GlobalArgs) -> Option<anyhow::Result<ExitCode>> {
    let from = spec_of(&args.from);
    let to = spec_of(&args.to);
    *TRANSPORT.lock().expect("lock") = Some(args.registry.transport.clone());
    Some(match (from, to) {
        (None, None) => return None,
        (Some(Err(e)), _) | (_, Some(Err(e))) => Err(e),
        (None, Some(Ok(to))) => push(args, global, &to),
        (Some(Ok(from)), None) => match crate::stores::layout_dir(&args.to) {
            Some(dir) => pull(args, global, &from, &dir),
            None => return None,
        },
        (Some(Ok(from)), Some(Ok(to))) => between(args, global, &from, &to),
    })
}

fn nothing(args: &Args, global: &GlobalArgs, code: ExitCode) -> ExitCode {
    if global.json {
        println!(
            "{}",
            json!({"from": args.from.to_string(), "to": args.to.to_string(), "images": 0, "blobs_uploaded": 0, "bytes_uploaded": 0, "blobs_skipped": 0, "bytes_skipped": 0, "copied": []})
        );
    } else if !global.quiet {
        eprintln!(
            "imgkit: the filter selected no image in {}; nothing to do",
            args.from
        );
    }
    code
}

/// The images named in the registry (images without a name are left out, said once).
fn named_in(spec: &RegistrySpec, images: Vec<StoredImage>) -> anyhow::Result<Vec<StoredImage>> {
    let mut out = Vec::new();
    for mut image in images {
        if image.names.is_empty() {
            eprintln!(
                "warning: image {} has no name, and a registry keeps images by name: left out",
                image.id()
            );
            continue;
        }
        let mut names: Vec<ImageRef> = Vec::new();
        for n in &image.names {
            let t = spec
                .target(n)
                .map_err(|e| hinted(e, spec))
                .with_context(|| format!("naming {n} in {spec}"))?;
            if !names.contains(&t) {
                names.push(t);
            }
        }
        image.names = names;
        out.push(image);
    }
    Ok(out)
}

/// `run --to registry:…`.
fn push(args: &Args, global: &GlobalArgs, spec: &RegistrySpec) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    let registry = open(spec, &args.registry.transport, args.registry.compress)?;
    // A layout directory or an archive file is read as it is (indexes kept whole).
    if !args.dry_run
        && let Some(source) = crate::stores::open_source(&args.from)?
    {
        let images = select(args, global, &*source, &[])?;
        if images.is_empty() {
            return Ok(nothing(args, global, ExitCode::from(1)));
        }
        let images = named_in(spec, images)?;
        let from = args.from.to_string();
        return push_images(
            &registry,
            &*source,
            &from,
            &images,
            args.no_verify,
            global,
            started,
        );
    }
    // Every selected image already there under its name, with its ID: nothing to save.
    if !args.force
        && !args.dry_run
        && let Some(names) = all_present(args, global, &registry)?
    {
        return Ok(print_all_present(args, global, spec, &names, started));
    }
    if !args.dry_run {
        return push_engine(args, global, &registry, started);
    }
    // A dry run shows the plan of the engine's save.
    let tmp = tempfile::Builder::new()
        .prefix("imgkit-push-")
        .tempdir()
        .context("cannot create a temporary directory")?;
    let incoming = tmp.path().join("incoming.tar");
    let inner_args = Args {
        to: EndpointSpec::Archive(incoming.clone()),
        ..args.clone()
    };
    let code = crate::commands::run::run(&inner_args, global)?;
    if !global.quiet && !global.json {
        match docker_files_root(args) {
            Some(root) => eprintln!(
                "imgkit: from docker no save runs (the lines above plan one into a stand-in file): the layers {spec} lacks are read from docker's own files at {}, compressed and pushed, and the manifests last",
                root.display()
            ),
            None => eprintln!(
                "imgkit: the save streams into {spec} (not into that file): the blobs it lacks are pushed, and the manifests last"
            ),
        }
    }
    Ok(code)
}

/// dockerd's data root when a push from `args.from` would read docker's own files instead of
/// its save (as `push_engine` decides; for `--dry-run`'s account).
fn docker_files_root(args: &Args) -> Option<std::path::PathBuf> {
    if args.via.is_some() {
        return None;
    }
    let source = crate::plan::open(&args.from).ok()?;
    let engine = source.engine()?;
    if engine.kind() != imgkit_engine::EngineKind::Docker
        || std::env::var_os("IMGKIT_DOCKER_READ").is_some_and(|v| v == "stream")
    {
        return None;
    }
    let (root, driver) = engine.storage()?;
    imgkit_docker_files::DockerFiles::open(&root, &driver)
        .ok()
        .map(|f| f.root().to_owned())
}

/// `run --from ENGINE --to registry:…`: the engine's save streamed through
/// `imgkit_store::ingest` into the registry in deferred mode (each blob spooled as it passes,
/// layers compressed in the background while the save goes on; at the end the images are
/// known, the registry is asked what it holds, and only the rest is uploaded, several at a
/// time, manifests last). No temporary archive.
fn push_engine(
    args: &Args,
    global: &GlobalArgs,
    registry: &Registry,
    started: Instant,
) -> anyhow::Result<ExitCode> {
    let spec = registry.spec();
    let source = crate::plan::open(&args.from)?;
    let pipeline = Pipeline::compile(&args.filter, &args.plugin, global)?;
    let mut printer = crate::progress::Printer::new(global);
    let Some(mut plan) = crate::plan::Plan::select(&source, &pipeline, &[], &mut printer)? else {
        return Ok(nothing(args, global, ExitCode::from(1)));
    };
    // `--rename` rules and the filter's new names (untrusted: checked here, before the save):
    // each image goes into the registry under its new names only.
    crate::rename::resolve(&mut plan, &args.rename)?;
    // From docker's own files when they can be read here: no save at all, and only the
    // layers the registry lacks are read (and compressed).
    if args.via.is_none()
        && let Some((files, ids)) = crate::dockerfiles::source(&plan, &source)
    {
        let images = named_in(
            spec,
            crate::stores::docker_files_images(&plan, &files, &ids)?,
        )?;
        if images.is_empty() {
            return Ok(nothing(args, global, ExitCode::from(1)));
        }
        let from = args.from.to_string();
        printer.stream(format!("{from} → {spec}"));
        let counted = crate::dockerfiles::Counted::new(&files, &mut printer, files.layer_bytes());
        let (held, stats, report) = push_copy(registry, &counted, &images, args.no_verify)
            .map_err(|e| crate::dockerfiles::damaged_in(&files, e))?;
        counted.finish();
        return finish_push(held, &stats, spec, &from, &images, &report, global, started);
    }
    let parts = save_parts(&plan, &source, args);
    let pushed: Vec<anyhow::Result<Option<Pushed>>> = match parts.as_slice() {
        [_, second] => {
            // docker's save writes every layer to a temporary directory before its first
            // byte: two saves of half the images each, at once, start streaming in half the
            // time (the second quietly: one progress line is the first's).
            let quiet = GlobalArgs {
                quiet: true,
                ..global.clone()
            };
            std::thread::scope(|scope| {
                let other = scope.spawn(|| {
                    let mut printer = crate::progress::Printer::new(&quiet);
                    push_part(args, registry, &source, second, &mut printer)
                });
                let first = push_part(args, registry, &source, &parts[0], &mut printer);
                let other = other
                    .join()
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("a push of the second save panicked")));
                vec![first, other]
            })
        }
        _ => vec![push_part(args, registry, &source, &plan, &mut printer)],
    };
    let mut images: Vec<StoredImage> = Vec::new();
    let mut stats = PushStats::default();
    let mut held: Option<Vec<imgkit_types::Digest>> = (!args.no_verify).then(Vec::new);
    for part in pushed {
        let Some(part) = part? else { continue };
        images.extend(part.images);
        stats.add(&part.stats);
        if let (Some(all), Some(ids)) = (held.as_mut(), part.held) {
            all.extend(ids);
        }
    }
    if images.is_empty() {
        return Ok(nothing(args, global, ExitCode::from(1)));
    }
    let report = imgkit_store::CopyReport {
        images: images.len(),
        blobs_written: stats.blobs_uploaded,
        bytes_written: stats.bytes_uploaded,
        blobs_skipped: stats.blobs_present,
        bytes_skipped: stats.bytes_present,
    };
    let from = args.from.to_string();
    finish_push(held, &stats, spec, &from, &images, &report, global, started)
}

/// What one save pushed: its images (named in the registry), the counts, and the image IDs
/// the registry's manifests name for them (`None` with `--no-verify`).
struct Pushed {
    images: Vec<StoredImage>,
    stats: PushStats,
    held: Option<Vec<imgkit_types::Digest>>,
}

/// A selection at least this big (as listed) is saved in two halves: below it, docker's
/// temporary directory costs little and one save sends a shared layer once.
const SPLIT_SAVE_AT: u64 = 256 << 20;

/// The saves a push from an engine runs: docker's selection in two halves (images that share
/// an ID stay together) when it has two or more images and lists at least [`SPLIT_SAVE_AT`],
/// else the plan whole. Not with `--via` (one archive of one save). `IMGKIT_PUSH_SAVES=1`
/// keeps one save, `=2` splits whatever the size. A layer both halves name may be sent by
/// both (each half asks the registry first, but they run at once).
fn save_parts(
    plan: &crate::plan::Plan,
    source: &crate::plan::Endpoint,
    args: &Args,
) -> Vec<crate::plan::Plan> {
    let docker = source
        .engine()
        .is_some_and(|e| e.kind() == imgkit_engine::EngineKind::Docker);
    let mut ids: Vec<&str> = Vec::new();
    for p in &plan.images {
        if !ids.contains(&p.id.as_str()) {
            ids.push(&p.id);
        }
    }
    let big = plan.expected_bytes.is_some_and(|b| b >= SPLIT_SAVE_AT);
    let split = match std::env::var("IMGKIT_PUSH_SAVES").as_deref() {
        Ok("1") => false,
        Ok("2") => true,
        _ => big,
    };
    if !docker || args.via.is_some() || ids.len() < 2 || !split {
        return vec![plan.clone()];
    }
    let first: Vec<&str> = ids[..ids.len().div_ceil(2)].to_vec();
    let (a, b): (Vec<_>, Vec<_>) = plan
        .images
        .iter()
        .cloned()
        .partition(|p| first.contains(&p.id.as_str()));
    [a, b]
        .into_iter()
        .filter_map(crate::skip::plan_of)
        .collect()
}

/// One save of `plan` streamed into the registry in deferred mode and committed; `None` when
/// none of its images has a name the registry can keep.
fn push_part(
    args: &Args,
    registry: &Registry,
    source: &crate::plan::Endpoint,
    plan: &crate::plan::Plan,
    printer: &mut crate::progress::Printer,
) -> anyhow::Result<Option<Pushed>> {
    let spec = registry.spec();
    let mut dest = registry.destination().map_err(|e| hinted(e, spec))?;
    dest.defer();
    // Which layers each image has, asked of the engine before its save: each is sent as soon
    // as it has streamed past (and is compressed), while the save goes on.
    if let Some(engine) = source.engine() {
        dest.expect_layers(&layers_of(engine, plan, spec));
    }
    let what = format!(
        "{} from {} to {spec}",
        plan.describe_with_names(),
        args.from
    );
    let ingested = crate::stores::ingest_with(
        plan,
        source,
        &mut dest,
        &spec.to_string(),
        args.via.as_deref(),
        printer,
        &what,
    );
    let ingested = match ingested {
        Ok((_, i)) => i,
        // The registry's side failed: its own error says more than the store's.
        Err(e)
            if e.chain()
                .any(<dyn std::error::Error>::is::<imgkit_store::Error>) =>
        {
            return Err(match dest.take_error() {
                Some(re) => hinted(re, spec),
                None => e,
            });
        }
        // The save failed (or was cancelled): what the destination saw is only its end.
        Err(e) => return Err(e),
    };
    let images = named_in(spec, ingested.images)?;
    if images.is_empty() {
        return Ok(None);
    }
    if let Err(e) = dest.commit(&images) {
        return Err(match dest.take_error() {
            Some(re) => hinted(re, spec),
            None => anyhow::Error::new(e).context(format!("pushing into {spec} failed")),
        });
    }
    let held = if args.no_verify {
        None
    } else {
        Some(dest.image_ids()?)
    };
    Ok(Some(Pushed {
        images,
        stats: dest.stats(),
        held,
    }))
}

/// Each planned image's names in the registry (its reference and the names the filter gives
/// it) and its diff IDs, as the engine tells them before its save (docker: its inspect); an
/// image the engine cannot tell them for is left out (its layers are sent at the commit).
fn layers_of(
    engine: &imgkit_engine::Engine,
    plan: &crate::plan::Plan,
    spec: &RegistrySpec,
) -> Vec<(Vec<ImageRef>, Vec<imgkit_types::Digest>)> {
    let refs: Vec<ImageRef> = plan.images.iter().map(|p| p.reference.clone()).collect();
    // One call for all; when some could not be told, one per image (to keep them apart).
    let mut all = engine.layer_diff_ids(&refs);
    if all.len() != refs.len() {
        all = refs
            .iter()
            .map(|r| {
                engine
                    .layer_diff_ids(std::slice::from_ref(r))
                    .pop()
                    .unwrap_or_default()
            })
            .collect();
    }
    plan.images
        .iter()
        .zip(all)
        .filter(|(_, diffs)| !diffs.is_empty())
        .map(|(p, diffs)| {
            let names = std::iter::once(p.reference.clone())
                .chain(p.rename.iter().filter_map(|n| ImageRef::parse(n).ok()))
                .filter_map(|n| spec.target(&n).ok())
                .collect();
            (names, diffs)
        })
        .collect()
}

/// The names in the registry of what the filters select in the source engine, when every one
/// of them is there already with the image ID the engine lists (so the engine's save, the
/// only door it has, need not run at all); `None` otherwise.
fn all_present(
    args: &Args,
    global: &GlobalArgs,
    registry: &Registry,
) -> anyhow::Result<Option<Vec<String>>> {
    let source = crate::plan::open(&args.from)?;
    // New names are looked up after the rename (the push route resolves them).
    if source.engine().is_none() || !args.rename.is_empty() {
        return Ok(None);
    }
    let pipeline = Pipeline::compile(&args.filter, &args.plugin, global)?;
    let listing = source.list()?;
    let selected = pipeline.select_from(&listing.records)?;
    if selected.is_empty() {
        return Ok(None);
    }
    let mut names = Vec::new();
    for s in &selected {
        let id = &listing.records[s.record].id;
        if !s.rename.is_empty() || crate::plan::image_id_of(&s.reference).is_some() {
            return Ok(None);
        }
        let target = registry.spec().target(&s.reference)?;
        match registry.config_digest(&target) {
            Ok(Some(d)) if crate::plan::same_id(&d, id) => names.push(target.to_string()),
            _ => return Ok(None),
        }
    }
    Ok(Some(names))
}

fn print_all_present(
    args: &Args,
    global: &GlobalArgs,
    spec: &RegistrySpec,
    names: &[String],
    started: Instant,
) -> ExitCode {
    let elapsed = started.elapsed();
    if global.json {
        println!(
            "{}",
            json!({
                "from": args.from.to_string(),
                "to": spec.to_string(),
                "images": 0,
                "blobs_uploaded": 0,
                "bytes_uploaded": 0,
                "blobs_mounted": 0,
                "blobs_skipped": 0,
                "bytes_skipped": 0,
                "skipped": names,
                "seconds": (elapsed.as_secs_f64() * 1000.0).round() / 1000.0,
                "verified": names.len(),
                "copied": [],
            })
        );
    } else if !global.quiet {
        eprintln!(
            "imgkit: nothing to push from {} to {spec}: 0 blobs uploaded (0B); skipped {} already there with the same ID: {} (--force pushes them)",
            args.from,
            names.len(),
            names.join(", ")
        );
    }
    ExitCode::SUCCESS
}

/// Copies `images` (named in the registry) from `source` into it and reports.
fn push_images(
    registry: &Registry,
    source: &dyn Source,
    from: &str,
    images: &[StoredImage],
    no_verify: bool,
    global: &GlobalArgs,
    started: Instant,
) -> anyhow::Result<ExitCode> {
    let (held, stats, report) = push_copy(registry, source, images, no_verify)?;
    finish_push(
        held,
        &stats,
        registry.spec(),
        from,
        images,
        &report,
        global,
        started,
    )
}

/// The copy of [`push_images`]: the image IDs the registry's manifests name (`None` with
/// `no_verify`), the push's counts, and the copy's (a blob read and compressed, then found in
/// every repository, counted as already there).
fn push_copy(
    registry: &Registry,
    source: &dyn Source,
    images: &[StoredImage],
    no_verify: bool,
) -> anyhow::Result<(
    Option<Vec<imgkit_types::Digest>>,
    PushStats,
    imgkit_store::CopyReport,
)> {
    let spec = registry.spec();
    let mut dest = registry.destination().map_err(|e| hinted(e, spec))?;
    dest.expect(images).map_err(|e| hinted(e, spec))?;
    let mut report = match copy(source, &mut dest, images) {
        Ok(r) => r,
        Err(e) => {
            return Err(match dest.take_error() {
                Some(re) => hinted(re, spec),
                None => anyhow::Error::new(e).context(format!("pushing into {spec} failed")),
            });
        }
    };
    let stats = dest.stats();
    report.blobs_written -= stats.blobs_present.min(report.blobs_written);
    report.bytes_written -= stats.bytes_present.min(report.bytes_written);
    report.blobs_skipped += stats.blobs_present;
    report.bytes_skipped += stats.bytes_present;
    let held = if no_verify {
        None
    } else {
        Some(dest.image_ids()?)
    };
    Ok((held, stats, report))
}

/// The push's summary, after each image ID was checked against what the registry's manifests
/// name (`held`; `None` with `--no-verify`).
#[allow(clippy::too_many_arguments)]
fn finish_push(
    held: Option<Vec<imgkit_types::Digest>>,
    stats: &PushStats,
    spec: &RegistrySpec,
    from: &str,
    images: &[StoredImage],
    report: &imgkit_store::CopyReport,
    global: &GlobalArgs,
    started: Instant,
) -> anyhow::Result<ExitCode> {
    let verified = if let Some(held) = held {
        if let Some(lost) = images.iter().find(|i| !held.contains(i.id())) {
            anyhow::bail!(
                "pushed into {spec}, and its manifests do not name image {} (config digest)",
                lost.id()
            );
        }
        Some(images.len())
    } else {
        None
    };
    let copied = names_of(images);
    let elapsed = started.elapsed();
    if global.json {
        println!(
            "{}",
            json!({
                "from": from,
                "to": spec.to_string(),
                "images": images.len(),
                "blobs_uploaded": stats.blobs_uploaded,
                "bytes_uploaded": stats.bytes_uploaded,
                "blobs_mounted": stats.blobs_mounted,
                "blobs_skipped": report.blobs_skipped,
                "bytes_skipped": report.bytes_skipped,
                "layers_compressed": stats.layers_compressed,
                "manifests_pushed": stats.manifests_pushed,
                "manifests_made": stats.manifests_made.iter().map(|(n, d)| json!({"name": n, "digest": d})).collect::<Vec<_>>(),
                "seconds": (elapsed.as_secs_f64() * 1000.0).round() / 1000.0,
                "verified": verified,
                "copied": copied,
            })
        );
    } else if !global.quiet {
        let verified = verified.map_or_else(String::new, |n| format!(", {n} verified by image ID"));
        eprintln!(
            "imgkit: pushed {} image{} from {from} to {spec}: {} blob{} uploaded ({}), {} mounted, {} already there ({}) in {:.1} s{verified}",
            images.len(),
            if images.len() == 1 { "" } else { "s" },
            stats.blobs_uploaded,
            if stats.blobs_uploaded == 1 { "" } else { "s" },
            humanize::size(stats.bytes_uploaded),
            stats.blobs_mounted,
            report.blobs_skipped,
            humanize::size(report.bytes_skipped),
            elapsed.as_secs_f64(),
        );
        // One note per manifest made, with every name it went under.
        let mut made: Vec<(&str, Vec<&str>)> = Vec::new();
        for (name, digest) in &stats.manifests_made {
            match made.iter_mut().find(|(d, _)| d == digest) {
                Some((_, names)) => names.push(name),
                None => made.push((digest, vec![name])),
            }
        }
        for (digest, names) in made {
            eprintln!(
                "imgkit: note: made manifest {digest} for {} (layers compressed on the way, or the source had no registry manifest)",
                names.join(", ")
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The registry's records through the filters: the images selected, named as selected.
fn select(
    args: &Args,
    global: &GlobalArgs,
    source: &dyn Source,
    warnings: &[String],
) -> anyhow::Result<Vec<StoredImage>> {
    let pipeline = Pipeline::compile(&args.filter, &args.plugin, global)?;
    if !global.quiet {
        for w in warnings {
            eprintln!("warning: {w}");
        }
    }
    let records: Vec<ImageRecord> = source.records();
    let selected = pipeline.select_from(&records)?;
    // These routes copy images under the names they have: a rename asked for is refused, not
    // dropped.
    let renamed = selected.iter().find(|s| !s.rename.is_empty());
    if !args.rename.is_empty() || renamed.is_some() {
        let by = renamed.map_or_else(String::new, |s| {
            format!(" (the filter renames {})", s.reference)
        });
        return Err(with_hint(
            anyhow::anyhow!(
                "--rename is not applied yet from {} to {}: archives, layout directories and registries copy images under the names they have{by}",
                args.from,
                args.to
            ),
            "rename on the way from or into an engine (imgkit run --from docker --to registry:… --rename …), or after the copy",
        ));
    }
    let images = source.images()?;
    let mut out: Vec<StoredImage> = Vec::new();
    for s in selected {
        let by_id = crate::plan::image_id_of(&s.reference);
        let Some(image) = images.iter().find(|i| match by_id {
            Some(id) => crate::plan::same_id(i.id(), id),
            None => i.matches(&s.reference),
        }) else {
            anyhow::bail!("{} is not an image of {}", s.reference, args.from);
        };
        // Selected by ID: the image goes under no name of its own.
        let name = by_id.is_none().then(|| {
            let key = crate::selection::key(&s.reference);
            image
                .names
                .iter()
                .find(|n| crate::selection::key(n) == key)
                .cloned()
                .unwrap_or_else(|| s.reference.clone())
        });
        if let Some(o) = out
            .iter_mut()
            .find(|o| o.manifest.digest == image.manifest.digest)
        {
            if let Some(name) = name
                && !o.names.contains(&name)
            {
                o.names.push(name);
            }
        } else {
            out.push(StoredImage {
                names: name.into_iter().collect(),
                ..image.clone()
            });
        }
    }
    Ok(out)
}

/// `run --from registry:… --to DIR/` (an OCI layout directory).
fn pull(
    args: &Args,
    global: &GlobalArgs,
    spec: &RegistrySpec,
    dir: &Path,
) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    let registry = open(spec, &args.registry.transport, args.registry.compress)?;
    let source = registry.source().map_err(|e| hinted(e, spec))?;
    let images = select(args, global, &source, source.warnings())?;
    if images.is_empty() {
        return Ok(nothing(args, global, ExitCode::from(1)));
    }
    if args.dry_run {
        if !global.quiet {
            for i in &images {
                for n in &i.names {
                    eprintln!("imgkit: would pull {n} ({}) into {}", i.id(), args.to);
                }
            }
        }
        return Ok(ExitCode::SUCCESS);
    }
    let mut layout = LayoutDir::create(dir)
        .with_context(|| format!("cannot use {} as an OCI layout directory", dir.display()))?;
    let report = copy(&source, &mut layout, &images)
        .map_err(|e| pull_error(e, spec))
        .with_context(|| format!("pulling from {spec} into {} failed", dir.display()))?;
    let held = layout.image_ids()?;
    if let Some(lost) = images.iter().find(|i| !held.contains(i.id())) {
        anyhow::bail!(
            "{} does not list image {} after the pull",
            dir.display(),
            lost.id()
        );
    }
    print_pull(
        args,
        global,
        &images,
        report.bytes_written,
        report.blobs_skipped,
        started,
    );
    Ok(ExitCode::SUCCESS)
}

/// A store error from a pull, with the registry's hint when it came from the registry.
fn pull_error(e: imgkit_store::Error, spec: &RegistrySpec) -> anyhow::Error {
    let text = e.to_string();
    if text.contains("arrived as") {
        return with_hint(
            e,
            format!(
                "the registry's copy is damaged: push the image to {} again",
                spec.host()
            ),
        );
    }
    anyhow::Error::new(e)
}

/// Every name of `images`, as the summaries list them (`copied`).
fn names_of(images: &[StoredImage]) -> Vec<String> {
    images
        .iter()
        .flat_map(|i| i.names.iter().map(ToString::to_string))
        .collect()
}

fn print_pull(
    args: &Args,
    global: &GlobalArgs,
    images: &[StoredImage],
    bytes: u64,
    skipped: usize,
    started: Instant,
) {
    let copied = names_of(images);
    let elapsed = started.elapsed();
    if global.json {
        println!(
            "{}",
            json!({
                "from": args.from.to_string(),
                "to": args.to.to_string(),
                "images": images.len(),
                "bytes_pulled": bytes,
                "blobs_skipped": skipped,
                "seconds": (elapsed.as_secs_f64() * 1000.0).round() / 1000.0,
                "verified": (!args.no_verify).then_some(images.len()),
                "copied": copied,
                "ids": images.iter().map(|i| i.id().to_string()).collect::<Vec<_>>(),
            })
        );
    } else if !global.quiet {
        eprintln!(
            "imgkit: pulled {} image{} from {} to {} ({}) in {:.1} s",
            images.len(),
            if images.len() == 1 { "" } else { "s" },
            args.from,
            args.to,
            humanize::size(bytes),
            elapsed.as_secs_f64(),
        );
    }
}

/// `run --from registry:A --to registry:B`.
fn between(
    args: &Args,
    global: &GlobalArgs,
    from: &RegistrySpec,
    to: &RegistrySpec,
) -> anyhow::Result<ExitCode> {
    if from == to {
        return Err(with_hint(
            anyhow::anyhow!("--from and --to are both {from}"),
            "name a different target, e.g. --to registry:other.example.com",
        ));
    }
    let started = Instant::now();
    let src_reg = open(from, &args.registry.transport, args.registry.compress)?;
    let dst_reg = open(to, &args.registry.transport, args.registry.compress)?;
    let source = src_reg.source().map_err(|e| hinted(e, from))?;
    let images = select(args, global, &source, source.warnings())?;
    if images.is_empty() {
        return Ok(nothing(args, global, ExitCode::from(1)));
    }
    let images = named_in(to, images)?;
    push_images(
        &dst_reg,
        &source,
        &from.to_string(),
        &images,
        args.no_verify,
        global,
        started,
    )
}

/// `ls --from registry:…`: the records and what the listing left out.
pub(crate) fn list(
    spec: &RegistrySpec,
    transport: &TransportArgs,
) -> anyhow::Result<(Vec<ImageRecord>, Vec<String>)> {
    let registry = open(spec, transport, Compress::default())?;
    let source = registry.source().map_err(|e| hinted(e, spec))?;
    Ok((source.records(), source.warnings().to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_specs_are_recognised_and_checked() {
        let spec = |s: &str| s.parse::<EndpointSpec>().unwrap();
        let r = spec_of(&spec("registry:localhost:5000/mirror"))
            .unwrap()
            .unwrap();
        assert_eq!((r.host(), r.prefix()), ("localhost:5000", Some("mirror")));
        assert!(spec_of(&spec("images.tar")).is_none());
        assert!(spec_of(&spec("docker")).is_none());
        assert!(spec_of(&spec("registry:")).unwrap().is_err());
        assert!(spec_of(&spec("registry:https://x")).unwrap().is_err());
    }
}
