//! `imgkit run --from SRC --to DST`: list → select → stream the source's save into the target's
//! load (or an archive file) → verify each image's ID in the target → summary.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context;
use imgkit_archive::Compression;
use imgkit_transfer::{Pump, QualifyNames, Sink};
use serde_json::json;

use crate::diagnostics::with_hint;
use crate::endpoint::EndpointSpec;
use crate::global::GlobalArgs;
use crate::guard::{self, Snapshot};
use crate::pipeline::Pipeline;
use crate::plan::{self, Endpoint, Plan};
use crate::plugin_args::PluginArgs;
use crate::progress::Printer;
use crate::rename::{self, Rule};
use crate::skip::{self, Partition};
use crate::stores;
use crate::transfer::{Summary, SyncReport, run_pump};

/// Exit code when the selection is empty (like grep finding nothing).
const EXIT_NOTHING: u8 = 1;

#[derive(Debug, Clone, clap::Args)]
pub(crate) struct Args {
    /// Where the images are: docker, podman, ctr[:NAMESPACE], nerdctl[:NAMESPACE], an archive
    /// file (plain, gzip or zstd), an OCI layout directory, or registry:HOST[:PORT][/PATH].
    /// `ctr:all` reads every containerd namespace, one run each (filters see each record's
    /// `Namespace`).
    #[arg(long, value_name = "SRC", default_value = "docker")]
    pub(crate) from: EndpointSpec,
    /// Where they go: an engine as for --from, an archive file to write (written to a
    /// temporary file beside it and renamed when complete), `DIR/`, an OCI layout directory,
    /// or registry:HOST[:PORT][/PATH] (each image under its repository path there).
    #[arg(long, value_name = "DST", default_value = "images.tar")]
    pub(crate) to: EndpointSpec,
    /// jq program choosing the images: a file, or a preset name [default: default]. Repeat for
    /// a pipeline: records that pass one filter go into the next; the last prints references. A
    /// `.wasm` file as the last filter runs that WASM plugin in the sandbox (see the plugin flags).
    #[arg(long, short = 'f', value_name = "FILTER")]
    pub(crate) filter: Vec<PathBuf>,
    #[command(flatten)]
    pub(crate) plugin: PluginArgs,
    /// Also keep the stream as an archive file while loading it into the target (a tee). It
    /// may not be the --from or --to file, and holds the stream as it is: a plain tar from an
    /// engine (a .gz/.zst name is refused), --to's compression between archives.
    #[arg(long, value_name = "FILE")]
    pub(crate) via: Option<PathBuf>,
    /// Print the plan (images, sizes, commands) and touch nothing.
    #[arg(long)]
    pub(crate) dry_run: bool,
    /// Skip checking the image IDs in the target after loading.
    #[arg(long)]
    pub(crate) no_verify: bool,
    /// Copy every selected image, even those the target already has with the same image ID
    /// (by default they are skipped).
    #[arg(long)]
    pub(crate) force: bool,
    /// Rename on the way: a reference matching REGEX (whole, fully qualified as
    /// docker.io/library/alpine:3 or as docker shows it) gets REPLACEMENT ($1, ${name}) as its
    /// name in the target instead. Repeatable; the first matching rule wins. A filter may
    /// also print {"ref": "…", "as": ["new/name:tag", …]}.
    #[arg(long, value_name = "REGEX=REPLACEMENT")]
    pub(crate) rename: Vec<Rule>,
    /// Into an engine, the platform a multi-platform image (an index in a layout directory, a
    /// registry or containerd) is taken for: OS/ARCH[/VARIANT]. Repeatable (the first found is
    /// the one its image ID names) [default: linux/ and this machine's architecture]. Archives,
    /// layout directories and registries keep every platform.
    #[arg(long, value_name = "OS/ARCH[/VARIANT]", value_parser = parse_platform)]
    pub(crate) platform: Vec<String>,
    #[command(flatten)]
    pub(crate) registry: crate::registry::RegistryArgs,
    #[command(flatten)]
    pub(crate) containerd: crate::engine_args::ContainerdArgs,
}

pub(crate) fn run(args: &Args, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    crate::engine_args::set_containerd(&args.containerd);
    if !args.platform.is_empty() && crate::registry::spec_of(&args.to).is_some() {
        return Err(not_into_an_engine(args));
    }
    // A registry on either side goes through imgkit-registry (host/registry.rs).
    if let Some(done) = crate::registry::route(args, global) {
        return done;
    }
    for (flag, spec) in [("--from", &args.from), ("--to", &args.to)] {
        if let EndpointSpec::Archive(p) = spec
            && let Some(hint) = crate::diagnostics::engine_typo(p)
        {
            return Err(with_hint(
                anyhow::anyhow!(
                    "{flag} {} is neither an engine nor an existing file",
                    p.display()
                ),
                hint,
            ));
        }
    }
    if same_endpoint(&args.from, &args.to) {
        return Err(with_hint(
            anyhow::anyhow!("--from and --to are both {}", args.from),
            "name a different target, e.g. --to podman or --to images.tar",
        ));
    }
    check_via(args)?;
    // An output path that cannot take an archive fails before anything runs.
    if let EndpointSpec::Archive(to) = &args.to
        && !stores::is_store(&args.to)
    {
        crate::transfer::check_output(to)?;
    }
    if let Some(via) = &args.via {
        crate::transfer::check_output(via)?;
    }
    if let EndpointSpec::Engine {
        kind,
        namespace: Some(ns),
    } = &args.from
        && kind.is_containerd()
        && ns == ALL_NAMESPACES
    {
        return run_every_namespace(*kind, args, global);
    }
    let outcome = run_one(args, global)?;
    if global.json {
        println!("{}", outcome.json);
    } else if let Some(summary) = &outcome.summary {
        summary.print_human(global);
    }
    Ok(outcome.code)
}

/// How one run ended: its exit code, its `--json` document, and the summary a person reads
/// (`None` when the run printed its own result, `--dry-run`).
struct Outcome {
    code: ExitCode,
    json: serde_json::Value,
    summary: Option<Summary>,
}

impl Outcome {
    fn of(summary: Summary, code: ExitCode) -> Self {
        Self {
            code,
            json: summary.to_json(),
            summary: Some(summary),
        }
    }
}

/// One source (one containerd namespace) into the target; prints progress, not the result.
/// A straight line of stages: open → list, select and resolve → plan (names, then what the
/// target already has) → move → verify → report.
fn run_one(args: &Args, global: &GlobalArgs) -> anyhow::Result<Outcome> {
    // Compile (and load a plugin) before any engine runs: a typo should not wait for a listing.
    let pipeline = Pipeline::compile(&args.filter, &args.plugin, global)?;
    let mut printer = Printer::new(global);
    let (source, target, compression) = open(args)?;
    let started = Instant::now();
    let Some(plan) = Plan::select(&source, &pipeline, &[], &mut printer)? else {
        return Ok(nothing_selected(args, global, started));
    };
    let plan = plan_names(plan, args, &source, &target, &mut printer)?;
    let load = target.load_command().ok();
    // One run at a time writes into one store, from what it already has to the verification.
    let _store =
        (!args.dry_run).then(|| guard::lock_store(&target, |msg| printer.step("wait", msg)));
    let (plan, skipped) = skip_present(plan, args, &source, &target, &mut printer)?;
    if args.dry_run {
        let json = print_plan(
            plan.as_ref(),
            &skipped,
            args,
            &source,
            load.as_ref(),
            global,
        );
        return Ok(Outcome {
            code: ExitCode::SUCCESS,
            json,
            summary: None,
        });
    }
    let Some(plan) = plan else {
        return Ok(report(args, None, None, None, skipped, started));
    };
    let moved = move_images(
        &plan,
        args,
        &source,
        &target,
        load,
        compression,
        &mut printer,
    )?;
    let verified = verify(&plan, args, &source, &target, &moved.what, &mut printer)?;
    Ok(report(
        args,
        Some(&plan),
        Some(&moved),
        verified,
        skipped,
        started,
    ))
}

/// Stage open: both endpoints (nothing runs yet), and how an archive target is compressed.
fn open(args: &Args) -> anyhow::Result<(Endpoint, Endpoint, Compression)> {
    let mut source = plan::open(&args.from)?;
    let target = plan::open(&args.to)?;
    let kept = platforms_kept(args, &source, &target);
    if let Endpoint::Store(_, platforms) = &mut source {
        *platforms = kept;
    }
    // An archive is rewritten by imgkit (and can be compressed); an engine's stream is copied;
    // a store takes blobs, not a stream.
    let compression = match (&source, &target, &args.to) {
        (_, Endpoint::Store(..), _) => Compression::None,
        (Endpoint::Archive(_) | Endpoint::Store(..), _, EndpointSpec::Archive(to)) => {
            Compression::from_file_name(to)
        }
        (Endpoint::Engine { .. }, _, EndpointSpec::Archive(to))
            if Compression::from_file_name(to) != Compression::None =>
        {
            return Err(with_hint(
                anyhow::anyhow!(
                    "{} asks for compression, and engines write plain tars",
                    to.display()
                ),
                format!(
                    "write a plain .tar, or compress the stream: imgkit save {} -o - … | zstd > {}",
                    args.from.engine_flags(),
                    to.display()
                ),
            ));
        }
        _ => Compression::None,
    };
    Ok((source, target, compression))
}

/// The filter selected nothing: exit 1, saying so.
fn nothing_selected(args: &Args, global: &GlobalArgs, started: Instant) -> Outcome {
    if !global.quiet && !global.json {
        eprintln!(
            "imgkit: the filter selected no image in {}; nothing to do",
            args.from
        );
    }
    let nothing = Summary {
        images: 0,
        bytes: 0,
        elapsed: started.elapsed(),
        from: args.from.to_string(),
        to: args.to.to_string(),
        verified: None,
        sync: Some(SyncReport::default()),
    };
    Outcome {
        code: ExitCode::from(EXIT_NOTHING),
        json: nothing.to_json(),
        summary: None,
    }
}

/// `--platform` with a target that keeps every platform.
fn not_into_an_engine(args: &Args) -> anyhow::Error {
    with_hint(
        anyhow::anyhow!(
            "--platform chooses what goes into an engine, and {} is not one",
            args.to
        ),
        "archives, layout directories and registries keep every platform of an image: drop --platform",
    )
}

fn parse_platform(s: &str) -> Result<String, String> {
    imgkit_types::platform::check(s).map(|()| s.to_owned())
}

/// The platforms multi-platform images keep on their way from `source` to `target`: into an
/// engine from an image store, `--platform` or the host's; elsewhere all (empty).
fn platforms_kept(args: &Args, source: &Endpoint, target: &Endpoint) -> Vec<String> {
    match (source, target) {
        (Endpoint::Store(..), Endpoint::Engine { .. }) if args.platform.is_empty() => {
            vec![imgkit_types::platform::host_platform()]
        }
        (Endpoint::Store(..), Endpoint::Engine { .. }) => args.platform.clone(),
        _ => Vec::new(),
    }
}

/// Stage plan, names: notes on what the target will get, and each image's new names checked.
fn plan_names(
    mut plan: Plan,
    args: &Args,
    source: &Endpoint,
    target: &Endpoint,
    printer: &mut Printer,
) -> anyhow::Result<Plan> {
    if !args.platform.is_empty() && target.engine().is_none() {
        return Err(not_into_an_engine(args));
    }
    if !args.platform.is_empty() && !matches!(source, Endpoint::Store(..)) {
        printer.step(
            "plan",
            &format!(
                "note: --platform chooses among the platforms of an image store's images (a layout directory, a registry, containerd's store); {} saves the platform it holds",
                args.from
            ),
        );
    }
    if let Endpoint::Store(spec, kept) = source
        && !kept.is_empty()
    {
        let explicit = !args.platform.is_empty();
        for note in crate::stores::platform_notes(spec, &plan.refs, kept, explicit)? {
            printer.step("plan", &format!("note: {note}"));
        }
    }
    let multi = plan.multi_platform();
    if !multi.is_empty() {
        printer.step(
            "plan",
            &format!(
                "note: {} list several platforms; only the platform present here (the host's) is exported, nothing is pulled: {}",
                multi.len(),
                multi.join(", ")
            ),
        );
    }
    if let Some(note) = k8s_note(&args.to) {
        printer.step("plan", &note);
    }
    let renames = rename::resolve(&mut plan, &args.rename)?;
    // Engines rename after the load; a store commits the new names itself.
    if renames > 0 && matches!(target, Endpoint::Archive(_)) {
        return Err(with_hint(
            anyhow::anyhow!(
                "renames are applied by the target engine, and {} is an archive",
                args.to
            ),
            "load into an engine with --to, or rename after loading the archive",
        ));
    }
    Ok(plan)
}

/// Stage plan, skip: what the target already holds with the same image ID stays out (unless
/// `--force`). The plan left to move (`None`: nothing), and the references skipped.
fn skip_present(
    plan: Plan,
    args: &Args,
    source: &Endpoint,
    target: &Endpoint,
    printer: &mut Printer,
) -> anyhow::Result<(Option<Plan>, Vec<String>)> {
    let Partition {
        copy: plan,
        skipped,
    } = if args.force {
        skip::partition_none(plan)
    } else if let Endpoint::Store(to, ..) = target {
        stores::partition(&plan, source, to)?
    } else {
        if target.engine().is_some() {
            printer.step(
                "skip",
                &format!(
                    "checking which of {} images {} already has",
                    plan.refs.len(),
                    args.to
                ),
            );
        }
        skip::partition(plan, source, target)?
    };
    let skipped: Vec<String> = skipped.iter().map(ToString::to_string).collect();
    if !skipped.is_empty() {
        printer.step(
            "skip",
            &format!(
                "{} already in {} with the same image ID, not moved (--force moves them)",
                skipped.len(),
                args.to
            ),
        );
    }
    Ok((plan, skipped))
}

/// What stage move did: the transfer, and how to name it in messages.
struct Moved {
    done: imgkit_transfer::Transferred,
    what: String,
    /// Blobs written and found already there, when the target is an image store.
    blobs: Option<imgkit_store::CopyReport>,
}

/// After a failed load: the names moved aside put back, the load's leftovers removed (what
/// was done is said as context of `e`).
fn undo_failed_load(
    target: &Endpoint,
    before: Option<&Snapshot>,
    kept: &rename::Kept,
    e: anyhow::Error,
) -> anyhow::Error {
    let notes = rename::restore_kept(target, kept);
    let e = match before {
        Some(b) => guard::after_failed_load(target, b, e),
        None => e,
    };
    notes.into_iter().fold(e, anyhow::Error::context)
}

/// Stage move: the source's stream into the target (and `--via`), then the names: what the
/// engine filed wrongly is renamed, new names given, and on a failed load the target is put
/// back as it was (see [`guard`] and [`rename`]).
fn move_images(
    plan: &Plan,
    args: &Args,
    source: &Endpoint,
    target: &Endpoint,
    load: Option<std::process::Command>,
    compression: Compression,
    printer: &mut Printer,
) -> anyhow::Result<Moved> {
    if let Endpoint::Store(to, ..) = target {
        return move_into_store(plan, args, source, to, printer);
    }
    // What the target held: a failed load's leftovers are removed, names it moved put back.
    let before = match Snapshot::take(target) {
        Ok(s) => Some(s),
        Err(e) if plan.images.iter().any(|i| !i.rename.is_empty()) => return Err(e),
        Err(_) => None,
    };
    let kept = match &before {
        Some(b) => rename::keep(target, plan, b)?,
        None => rename::Kept::default(),
    };
    // A registry into a local podman: podman pulls from the registry itself.
    if let Some(pulled) = crate::registry::pull_by_engine(plan, args, source, target) {
        let what = format!(
            "{} from {} to {}",
            plan.describe_with_names(),
            args.from,
            args.to
        );
        let done = pulled.map_err(|e| undo_failed_load(target, before.as_ref(), &kept, e))?;
        let notes = rename::apply(target, plan, &before.unwrap_or_default(), &kept)
            .with_context(|| format!("moved {what}, but renaming them failed"))?;
        for note in &notes {
            printer.step("rename", &format!("note: {note}"));
        }
        return Ok(Moved {
            done,
            what,
            blobs: None,
        });
    }
    // From docker into an engine's load: the tar written from dockerd's own files when they
    // can be read here (no `docker save`), else the save stream.
    let stream = match (target, &args.via) {
        (Endpoint::Engine { .. }, None) => crate::dockerfiles::source(plan, source)
            .filter(|(files, _)| crate::dockerfiles::readable(files))
            .map(|(files, ids)| stores::stream_docker_files(files, ids, &plan.refs, compression)),
        _ => None,
    };
    let mut pump = Pump::new(stream.unwrap_or_else(|| source.source(&plan.refs, compression)))
        .expected_bytes(plan.expected_bytes);
    pump = match (load, &args.to) {
        (Some(load), _) => pump.sink(target.load_sink(load)?),
        (None, EndpointSpec::Archive(path)) => pump.sink(Sink::file(path)),
        (None, EndpointSpec::Engine { .. }) => unreachable!("an engine has a load command"),
    };
    if plan::names_short_names_localhost(target) {
        pump = pump.transform(|r| Box::new(QualifyNames::new(r)));
    }
    if let Some(via) = &args.via {
        pump = pump.sink(Sink::file(via));
    }
    printer.stream(format!("{} → {}", args.from, args.to));
    let what = format!(
        "{} from {} to {}",
        plan.describe_with_names(),
        args.from,
        args.to
    );
    let done = run_pump(pump, printer, &what)
        .map_err(|e| undo_failed_load(target, before.as_ref(), &kept, e))?;
    plan::after_load(target, &done.target_stdout, plan)
        .with_context(|| format!("moved {what}, but naming them failed"))?;
    let notes = rename::apply(target, plan, &before.unwrap_or_default(), &kept)
        .with_context(|| format!("moved {what}, but renaming them failed"))?;
    for note in &notes {
        printer.step("rename", &format!("note: {note}"));
    }
    Ok(Moved {
        done,
        what,
        blobs: None,
    })
}

/// Stage move into an image store: blobs, not a stream. From an engine its save stream is
/// read once, each blob put as it passes (`stores::ingest_into`); from a store or an archive
/// only the blobs the target lacks are copied (`stores::copy_into`). Names are committed last
/// (new names included: a store names images itself).
fn move_into_store(
    plan: &Plan,
    args: &Args,
    source: &Endpoint,
    to: &EndpointSpec,
    printer: &mut Printer,
) -> anyhow::Result<Moved> {
    let what = format!(
        "{} from {} to {}",
        plan.describe_with_names(),
        args.from,
        args.to
    );
    if source.engine().is_some() {
        let (done, blobs) =
            stores::ingest_into(plan, source, to, args.via.as_deref(), printer, &what)?;
        return Ok(Moved {
            done,
            what,
            blobs: Some(blobs),
        });
    }
    if let Some(via) = &args.via {
        return Err(with_hint(
            anyhow::anyhow!(
                "--via {} keeps a stream, and {} → {} copies blobs, not a stream",
                via.display(),
                args.from,
                args.to
            ),
            "leave out --via, or write an archive: --to FILE.tar",
        ));
    }
    let started = Instant::now();
    let blobs = stores::copy_into(plan, &args.from, to, printer)?;
    let done = imgkit_transfer::Transferred {
        bytes: blobs.bytes_written,
        elapsed: started.elapsed(),
        target_stdout: String::new(),
        target_stderr: String::new(),
        source_stderr: String::new(),
    };
    Ok(Moved {
        done,
        what,
        blobs: Some(blobs),
    })
}

/// Stage verify: each moved image's ID in the target (new names for renamed ones); the number
/// checked, `None` when not checked (`--no-verify`, or a device written in place).
fn verify(
    plan: &Plan,
    args: &Args,
    source: &Endpoint,
    target: &Endpoint,
    what: &str,
    printer: &mut Printer,
) -> anyhow::Result<Option<usize>> {
    // A device or FIFO was written in place and cannot be read back.
    let in_place =
        matches!(&args.to, EndpointSpec::Archive(p) if crate::transfer::written_in_place(p));
    if args.no_verify || in_place {
        return Ok(None);
    }
    printer.step(
        "verify",
        &format!("checking {} image IDs in {}", plan.refs.len(), args.to),
    );
    let (checked, notes) = rename::verify_all(plan, source, target)
        .with_context(|| format!("moved {what}, but the target does not match"))?;
    for note in &notes {
        printer.step("verify", &format!("note: {note}"));
    }
    Ok(Some(checked))
}

/// Stage report: the summary of a run that moved `plan` (`None`: everything was skipped).
fn report(
    args: &Args,
    plan: Option<&Plan>,
    moved: Option<&Moved>,
    verified: Option<usize>,
    skipped: Vec<String>,
    started: Instant,
) -> Outcome {
    let done = moved.map(|m| &m.done);
    Outcome::of(
        Summary {
            images: plan.map_or(0, |p| p.refs.len()),
            bytes: done.map_or(0, |d| d.bytes),
            elapsed: done.map_or_else(|| started.elapsed(), |d| d.elapsed),
            from: args.from.to_string(),
            to: args.to.to_string(),
            verified,
            sync: Some(SyncReport {
                copied: plan
                    .map(|p| p.refs.iter().map(ToString::to_string).collect())
                    .unwrap_or_default(),
                skipped,
                renamed: plan.map(renamed_of).unwrap_or_default(),
                blobs: moved
                    .and_then(|m| m.blobs.clone())
                    .or_else(|| stores::is_store(&args.to).then(imgkit_store::CopyReport::default)),
            }),
        },
        ExitCode::SUCCESS,
    )
}

/// `--from ctr:all`: one run per containerd namespace, in the order containerd lists them
/// (each skips what an earlier one moved). Exit 0 when any namespace selected something.
fn run_every_namespace(
    kind: imgkit_engine::EngineKind,
    args: &Args,
    global: &GlobalArgs,
) -> anyhow::Result<ExitCode> {
    // A store takes each namespace's images in turn; an archive would be rewritten by each.
    if let EndpointSpec::Archive(to) = &args.to
        && !stores::is_store(&args.to)
    {
        return Err(with_hint(
            anyhow::anyhow!(
                "--from {kind}:all runs once per namespace, and each run would rewrite {}",
                to.display()
            ),
            format!("load into an engine, or save one namespace: --from {kind}:NAMESPACE"),
        ));
    }
    if args.via.is_some() {
        return Err(with_hint(
            anyhow::anyhow!(
                "--via keeps one archive, and --from {kind}:all runs once per namespace"
            ),
            format!("leave out --via, or run one namespace: --from {kind}:NAMESPACE"),
        ));
    }
    let engine = crate::endpoint::open_engine(kind, None)?;
    let namespaces = engine
        .namespaces()
        .map_err(|e| plan::engine_error(e, "could not list containerd's namespaces"))?;
    let mut selected_any = false;
    let mut docs = Vec::new();
    for ns in namespaces {
        let from = EndpointSpec::Engine {
            kind,
            namespace: Some(ns.clone()),
        };
        if from == args.to {
            if !global.quiet && !global.json {
                eprintln!("imgkit: {from} is the target; not reading it");
            }
            docs.push(json!({"namespace": ns, "skipped": "it is the target"}));
            continue;
        }
        let one = Args {
            from,
            ..args.clone()
        };
        let outcome = run_one(&one, global)?;
        if outcome.code == ExitCode::SUCCESS {
            selected_any = true;
        }
        if let Some(summary) = &outcome.summary
            && !global.json
        {
            summary.print_human(global);
        }
        let mut doc = outcome.json;
        doc["namespace"] = json!(ns);
        docs.push(doc);
    }
    if global.json {
        // One document for the whole run: one entry per namespace.
        println!(
            "{}",
            json!({"from": format!("{kind}:{ALL_NAMESPACES}"), "to": args.to.to_string(), "namespaces": docs})
        );
    }
    Ok(if selected_any {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_NOTHING)
    })
}

/// Whether two endpoints are the same engine (and namespace) or the same file, comparing
/// archive paths resolved (`./a.tar`, `a.tar` and a symlink to it are one file).
fn same_endpoint(a: &EndpointSpec, b: &EndpointSpec) -> bool {
    match (a, b) {
        (EndpointSpec::Archive(x), EndpointSpec::Archive(y)) => same_file(x, y),
        _ => a == b,
    }
}

fn same_file(a: &Path, b: &Path) -> bool {
    resolved(a) == resolved(b)
}

/// `p` made absolute with symlinks resolved; for a file that does not exist yet, its parent
/// resolved and its name appended.
fn resolved(p: &Path) -> PathBuf {
    if let Ok(c) = std::fs::canonicalize(p) {
        return c;
    }
    let abs = std::path::absolute(p).unwrap_or_else(|_| p.to_owned());
    match (abs.parent(), abs.file_name()) {
        (Some(parent), Some(name)) => {
            std::fs::canonicalize(parent).map_or_else(|_| abs.clone(), |d| d.join(name))
        }
        _ => abs,
    }
}

/// `--via FILE` is written while the stream flows: it may not be the file read (`--from`) or
/// the file written (`--to`), and it gets the stream's own compression (refused before anything
/// runs when its name asks for another).
fn check_via(args: &Args) -> anyhow::Result<()> {
    let Some(via) = &args.via else {
        return Ok(());
    };
    for (flag, end) in [("--from", &args.from), ("--to", &args.to)] {
        if let EndpointSpec::Archive(p) = end
            && same_file(via, p)
        {
            return Err(with_hint(
                anyhow::anyhow!(
                    "--via {} is the same file as {flag} {}; refusing to run any engine",
                    via.display(),
                    p.display()
                ),
                "keep the stream in another file: --via a different path",
            ));
        }
    }
    // The tee carries the stream as it goes to the target: compressed only when the target is
    // an archive compressed by imgkit (archive → archive).
    let stream = match (&args.from, &args.to) {
        (EndpointSpec::Archive(_), EndpointSpec::Archive(to)) => Compression::from_file_name(to),
        _ => Compression::None,
    };
    let wanted = Compression::from_file_name(via);
    if wanted != stream {
        return Err(with_hint(
            anyhow::anyhow!(
                "--via {} asks for {wanted} compression, and the stream it copies is {}",
                via.display(),
                match stream {
                    Compression::None => "a plain tar".to_owned(),
                    c => format!("{c}-compressed"),
                }
            ),
            format!(
                "name the copy for what it holds (e.g. --via {}{}), and compress it afterwards if you need to",
                if wanted == Compression::None {
                    via.clone()
                } else {
                    via.with_extension("")
                }
                .display(),
                stream.suffix()
            ),
        ));
    }
    Ok(())
}

/// `--from ctr:all`: every containerd namespace.
const ALL_NAMESPACES: &str = "all";

/// A note when the target is a containerd namespace Kubernetes does not read (CRI reads
/// `k8s.io` only).
fn k8s_note(to: &EndpointSpec) -> Option<String> {
    let EndpointSpec::Engine { kind, namespace } = to else {
        return None;
    };
    if !kind.is_containerd() {
        return None;
    }
    let ns = namespace
        .as_deref()
        .unwrap_or(imgkit_engine::DEFAULT_NAMESPACE);
    (ns != "k8s.io").then(|| {
        format!(
            "note: loading into containerd namespace {ns}; Kubernetes (CRI, k3s) only sees images in k8s.io (--to {kind}:k8s.io)"
        )
    })
}

/// Each renamed image with its new names.
fn renamed_of(plan: &Plan) -> Vec<(String, Vec<String>)> {
    plan.images
        .iter()
        .filter(|i| !i.rename.is_empty())
        .map(|i| (i.reference.to_string(), i.rename.clone()))
        .collect()
}

fn print_plan(
    plan: Option<&Plan>,
    skipped: &[String],
    args: &Args,
    source: &Endpoint,
    load: Option<&std::process::Command>,
    global: &GlobalArgs,
) -> serde_json::Value {
    // docker's own files instead of its save, where the run would read them (not for `--via`
    // or an archive file, which keep docker's save).
    let files = plan
        .filter(|_| args.via.is_none() && (load.is_some() || stores::is_store(&args.to)))
        .and_then(|p| crate::dockerfiles::would_read(p, source, load.is_some()));
    let save = plan
        .filter(|_| files.is_none())
        .and_then(|p| source.save_command(&p.refs));
    if global.json {
        let obj = json!({
            "from": args.from.to_string(),
            "to": args.to.to_string(),
            "via": args.via,
            "images": plan.map(|p| p.images.iter().map(|i| json!({"ref": i.reference.to_string(), "id": i.id, "size": i.size, "as": i.rename})).collect::<Vec<_>>()).unwrap_or_default(),
            "skipped": skipped,
            "expected_bytes": plan.and_then(|p| p.expected_bytes),
            "save": save.as_ref().map(plan::argv),
            "read_files": files.as_ref().map(|root| root.display().to_string()),
            "load": plan.and(load).map(plan::argv),
        });
        return obj;
    }
    for s in skipped {
        println!("skip {s} (already in {} with the same image ID)", args.to);
    }
    let Some(plan) = plan else {
        println!("nothing to move from {} to {}", args.from, args.to);
        return serde_json::Value::Null;
    };
    println!(
        "would move {} from {} to {}:",
        plan.describe(),
        args.from,
        args.to
    );
    let width = plan
        .images
        .iter()
        .map(|i| i.reference.to_string().len())
        .max()
        .unwrap_or(0);
    for i in &plan.images {
        let renamed = if i.rename.is_empty() {
            String::new()
        } else {
            format!("  → {}", i.rename.join(", "))
        };
        println!(
            "  {:width$}  {}  {}{renamed}",
            i.reference.to_string(),
            i.id,
            i.size
        );
    }
    match (&save, &files) {
        (Some(s), _) => println!("save: {}", plan::display_argv(s)),
        (None, Some(root)) if load.is_some() => println!(
            "read: docker's own files at {} (no docker save), written as one tar into the load below",
            root.display()
        ),
        (None, Some(root)) => println!(
            "read: docker's own files at {} (no docker save; only the layers {} lacks)",
            root.display(),
            args.to
        ),
        (None, None) => println!("read: {} (only the selected images' blobs)", args.from),
    }
    match load {
        Some(l) => println!("load: {}", plan::display_argv(l)),
        None if stores::is_store(&args.to) => {
            println!("write: {} (only the blobs it lacks)", args.to);
            if !global.quiet {
                eprintln!(
                    "imgkit: the blobs {} lacks are written into it as they pass, then index.json names the images",
                    args.to
                );
            }
        }
        None => println!("write: {}", args.to),
    }
    if let Some(via) = &args.via {
        println!("also write: {}", via.display());
    }
    serde_json::Value::Null
}
