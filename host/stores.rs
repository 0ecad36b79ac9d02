//! Image stores as `run` endpoints: the one place that opens an endpoint as an
//! `imgkit_store::Source` or `Destination`, and the routes between a store and everything else.
//!
//! A store endpoint today is an OCI layout directory (`./dir/`, or a directory holding an
//! `oci-layout` file); an archive file is a store as a source only (it is written as a tar).
//! The next store (a registry, containerd's content store) adds one arm to [`open_source`],
//! [`open_destination`] and [`is_store`], and every route below works for it.
//!
//! Routes (chosen by `run`'s move stage):
//! - store or archive → store: [`copy_into`]: `imgkit_store::copy`, only the blobs the
//!   destination lacks, images committed last under their target names;
//! - engine → store: [`ingest_into`]: the engine's save stream read once by
//!   `imgkit_store::ingest_expecting` on a thread, fed by the pump (progress, `--via`, the
//!   save's errors as for any transfer), each blob put as it passes, no temporary archive;
//!   told docker's diff IDs first (`Engine::layer_diff_ids`), so a docker ≤24 `layer.tar`
//!   the store holds passes unread;
//! - store → engine or archive file: [`stream`]: the selected images written as one tar
//!   (`imgkit_store::write_tar`) into the pump, so the engine's load, the failed-load cleanup,
//!   renames and verification run as for any other source.

use std::io::Read;
use std::path::PathBuf;

use anyhow::Context;
use imgkit_archive::Compression;
use imgkit_store::{
    ArchiveSource, CopyReport, Destination, LayoutDir, Source, StoredImage, copy, ingest_expecting,
};
use imgkit_transfer::{Pump, Sink, Transferred};
use imgkit_types::{Digest, ImageRef};

use crate::diagnostics::with_hint;
use crate::endpoint::EndpointSpec;
use crate::plan::{Endpoint, Found, Plan, PlannedImage, image_id_of, same_id};
use crate::progress::Printer;
use crate::rename;
use crate::skip::Partition;
use crate::transfer::run_pump;

/// The directory an endpoint names when it is an OCI layout: a path written with a trailing
/// separator (`./dir/`), or an existing directory holding an `oci-layout` file.
pub(crate) fn layout_dir(spec: &EndpointSpec) -> Option<PathBuf> {
    let EndpointSpec::Archive(p) = spec else {
        return None;
    };
    let text = p.as_os_str().to_string_lossy();
    let trailing = text.ends_with('/') || text.ends_with(std::path::MAIN_SEPARATOR);
    (trailing || imgkit_store::is_layout_dir(p)).then(|| p.clone())
}

/// Whether `spec` is an image store, read and written through imgkit-store. A registry is
/// one as a source (`run --from registry:… --to ENGINE|FILE`); into a registry, `run` goes
/// through `registry::route` before its stages.
pub(crate) fn is_store(spec: &EndpointSpec) -> bool {
    layout_dir(spec).is_some()
        || crate::containerd::native(spec)
        || crate::registry::spec_of(spec).is_some()
}

/// `spec` as a source of blobs: a store, or an archive file. `None`: it is neither (an
/// engine, which is read through its save stream).
pub(crate) fn open_source(spec: &EndpointSpec) -> anyhow::Result<Option<Box<dyn Source>>> {
    if let Some(store) = crate::containerd::open(spec) {
        return Ok(Some(Box::new(store)));
    }
    if let Some(registry) = crate::registry::open_source(spec) {
        return registry.map(Some);
    }
    if let Some(dir) = layout_dir(spec) {
        if !imgkit_store::is_layout_dir(&dir) {
            return Err(with_hint(
                anyhow::anyhow!(
                    "{} is not an OCI image layout (no oci-layout file)",
                    dir.display()
                ),
                "name a directory written by imgkit run --to DIR/, skopeo copy … oci:DIR, or another OCI layout writer",
            ));
        }
        let src = ArchiveSource::open(&dir)
            .with_context(|| format!("could not read the OCI layout {}", dir.display()))?;
        return Ok(Some(Box::new(src)));
    }
    match spec {
        EndpointSpec::Archive(p) if p.exists() => {
            let src = ArchiveSource::open(p)
                .with_context(|| format!("could not read the archive {}", p.display()))?;
            Ok(Some(Box::new(src)))
        }
        _ => Ok(None),
    }
}

/// `spec` as a destination, created when missing. `None`: it is not a store.
pub(crate) fn open_destination(
    spec: &EndpointSpec,
) -> anyhow::Result<Option<Box<dyn Destination + Send>>> {
    if let Some(store) = crate::containerd::open(spec) {
        return Ok(Some(Box::new(store)));
    }
    if crate::registry::spec_of(spec).is_some() {
        return Err(with_hint(
            anyhow::anyhow!("{spec} is written by `imgkit run --to {spec}` only"),
            format!("imgkit run --from ENGINE --to {spec} -f FILTER"),
        ));
    }
    if let Some(dir) = layout_dir(spec) {
        let layout = LayoutDir::create(&dir).map_err(|e| {
            with_hint(
                anyhow::Error::new(e).context(format!(
                    "cannot use {} as an OCI layout directory",
                    dir.display()
                )),
                "name a new or empty directory, or one holding an OCI layout (an oci-layout file)",
            )
        })?;
        return Ok(Some(Box::new(layout)));
    }
    Ok(None)
}

/// A layout directory this run creates, removed again when the run fails before naming any
/// image in it (what it holds then is only blobs no image names).
struct Created(Option<PathBuf>);

impl Created {
    fn note(spec: &EndpointSpec) -> Self {
        Self(layout_dir(spec).filter(|d| !d.exists()))
    }

    /// The run named its images: the directory stays.
    fn keep(mut self) {
        self.0 = None;
    }
}

impl Drop for Created {
    fn drop(&mut self) {
        if let Some(dir) = &self.0 {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// The images a store holds (none when it does not exist yet: it is created by the first
/// write).
pub(crate) fn held(spec: &EndpointSpec) -> anyhow::Result<Vec<StoredImage>> {
    if let Some(dir) = layout_dir(spec)
        && !dir.join("index.json").is_file()
    {
        return Ok(Vec::new());
    }
    match open_source(spec)? {
        Some(src) => Ok(src.images()?),
        None => Ok(Vec::new()),
    }
}

/// The names a store holds with their image IDs (`Destination::names`; none when it does not
/// exist yet, and nothing is created to ask).
fn names_held(spec: &EndpointSpec) -> anyhow::Result<Vec<(ImageRef, Digest)>> {
    if let Some(dir) = layout_dir(spec)
        && !dir.join("index.json").is_file()
    {
        return Ok(Vec::new());
    }
    match open_destination(spec)? {
        Some(dst) => Ok(dst
            .names()?
            .into_iter()
            .map(|(n, id)| (n.normalized(), id))
            .collect()),
        None => Ok(Vec::new()),
    }
}

/// The image of `images` a reference names (an image ID: by config digest).
fn find<'a>(images: &'a [StoredImage], r: &ImageRef) -> Option<&'a StoredImage> {
    match image_id_of(r) {
        Some(id) => images.iter().find(|i| same_id(i.id(), id)),
        None => images.iter().find(|i| i.matches(r)),
    }
}

/// The image ID of each reference in the store `spec` (see `Endpoint::ids`).
pub(crate) fn ids(
    spec: &EndpointSpec,
    platforms: &[String],
    refs: &[ImageRef],
    by_id: Option<&[Option<Digest>]>,
) -> anyhow::Result<Vec<Found>> {
    let mut images = held(spec)?;
    if !platforms.is_empty() {
        // As an engine will hold them: each index by the platform it gives.
        for image in &mut images {
            if let Ok((kept, _)) = image.for_platforms(platforms) {
                *image = kept;
            }
        }
    }
    Ok(refs
        .iter()
        .enumerate()
        .map(|(i, r)| {
            if let Some(im) = find(&images, r) {
                return Found::Id(im.id().clone());
            }
            let digest_only = r.tag().is_none() && r.digest().is_some();
            match by_id.and_then(|w| w[i].as_ref()) {
                Some(w) if digest_only && images.iter().any(|im| im.id() == w) => {
                    Found::Id(w.clone())
                }
                _ => Found::Missing,
            }
        })
        .collect())
}

/// Each selected reference with the names its image gets in the target: its new names, or
/// the reference itself (an image selected by ID gets none but its new names).
fn target_naming(plan: &Plan) -> Vec<(ImageRef, Vec<ImageRef>)> {
    plan.images
        .iter()
        .map(|p| {
            let names = if image_id_of(&p.reference).is_some() {
                rename::names(p)
            } else {
                rename::target_names(p)
            };
            (p.reference.clone(), names)
        })
        .collect()
}

/// The source's images the references name, each under the names given (normalized). An
/// image named twice is written once with both names.
fn chosen(
    images: &[StoredImage],
    wanted: &[(ImageRef, Vec<ImageRef>)],
    from: &str,
) -> anyhow::Result<Vec<StoredImage>> {
    chosen_by_id(images, wanted, from, None)
}

/// [`chosen`], each reference's image found by its image ID when `ids` gives them (in the
/// order of `wanted`).
fn chosen_by_id(
    images: &[StoredImage],
    wanted: &[(ImageRef, Vec<ImageRef>)],
    from: &str,
    ids: Option<&[Digest]>,
) -> anyhow::Result<Vec<StoredImage>> {
    let mut out: Vec<StoredImage> = Vec::new();
    for (k, (r, names)) in wanted.iter().enumerate() {
        let image = match ids.and_then(|ids| ids.get(k)) {
            Some(id) => images.iter().find(|i| i.id() == id),
            None => find(images, r),
        }
        .ok_or_else(|| anyhow::anyhow!("{r} names no image in {from}"))?;
        let names: Vec<ImageRef> = names.iter().map(ImageRef::normalized).collect();
        match out
            .iter_mut()
            .find(|o| o.manifest.digest == image.manifest.digest)
        {
            Some(o) => {
                for n in names {
                    if !o.names.contains(&n) {
                        o.names.push(n);
                    }
                }
            }
            None => out.push(StoredImage {
                names,
                ..image.clone()
            }),
        }
    }
    Ok(out)
}

/// Stage plan, skip, for a store target: an image is left out when every name it gets there
/// already names an image with its ID.
pub(crate) fn partition(
    plan: &Plan,
    source: &Endpoint,
    target: &EndpointSpec,
) -> anyhow::Result<Partition> {
    let held = names_held(target)?;
    let refs: Vec<ImageRef> = plan.images.iter().map(|i| i.reference.clone()).collect();
    let want = source
        .ids(&refs, None)
        .context("could not read the source's image IDs")?;
    let present = |img: &PlannedImage, want: &Found| {
        let Found::Id(w) = want else {
            return false;
        };
        let names = rename::target_names(img);
        image_id_of(&img.reference).is_none()
            && names
                .iter()
                .all(|n| held.iter().any(|(m, id)| id == w && *m == n.normalized()))
    };
    let mut copy = Vec::new();
    let mut skipped = Vec::new();
    for (img, w) in plan.images.iter().zip(&want) {
        if present(img, w) {
            skipped.push(img.reference.clone());
        } else {
            copy.push(img.clone());
        }
    }
    Ok(Partition {
        copy: crate::skip::plan_of(copy),
        skipped,
    })
}

/// Route store (or archive) → store: the plan's images copied, only the blobs the target
/// lacks, and committed under their target names.
pub(crate) fn copy_into(
    plan: &Plan,
    from: &EndpointSpec,
    to: &EndpointSpec,
    printer: &mut Printer,
) -> anyhow::Result<CopyReport> {
    let src = open_source(from)?
        .ok_or_else(|| anyhow::anyhow!("{from} is not an image store or archive"))?;
    let images = chosen(&src.images()?, &target_naming(plan), &src.describe())?;
    let created = Created::note(to);
    let mut dst =
        open_destination(to)?.ok_or_else(|| anyhow::anyhow!("{to} is not an image store"))?;
    printer.step(
        "copy",
        &format!(
            "{} → {}: asking which of the blobs it already holds",
            src.describe(),
            dst.describe()
        ),
    );
    let report =
        copy(&*src, &mut *dst, &images).with_context(|| format!("writing into {to} failed"))?;
    created.keep();
    Ok(report)
}

/// Route engine → store: the engine's save stream, pumped as for any transfer (progress,
/// `--via`, the save's errors), read once on a thread that puts each blob into the store as
/// it passes; the images are committed under their target names when the stream is whole.
pub(crate) fn ingest_into(
    plan: &Plan,
    source: &Endpoint,
    to: &EndpointSpec,
    via: Option<&std::path::Path>,
    printer: &mut Printer,
    what: &str,
) -> anyhow::Result<(Transferred, CopyReport)> {
    if via.is_none()
        && let Some((files, ids)) = crate::dockerfiles::source(plan, source)
    {
        match copy_from_docker_files(plan, &files, &ids, source, to, printer) {
            // Nothing is named before the copy's end: the save can start over.
            Err(e) if files.was_denied() => printer.step(
                "copy",
                &format!("note: {e:#}; reading the images through docker save instead"),
            ),
            done => return done,
        }
    }
    let created = Created::note(to);
    // docker's diff IDs, known before its save: layers the store holds pass unread.
    let expected = match source {
        Endpoint::Engine { engine, .. } => engine.layer_diff_ids(&plan.refs),
        _ => Vec::new(),
    };
    let mut dst = match crate::containerd::open(to) {
        // containerd unpacks each layer as it arrives, while the save still streams.
        Some(store) => {
            store.unpack_as_layers_arrive(&expected).map_err(|e| {
                crate::containerd::error(e, Some(&format!("writing into {to} failed")))
            })?;
            Box::new(store) as Box<dyn Destination + Send>
        }
        None => {
            open_destination(to)?.ok_or_else(|| anyhow::anyhow!("{to} is not an image store"))?
        }
    };
    let (done, ingested) = ingest_expected(
        plan,
        source,
        &mut *dst,
        &to.to_string(),
        via,
        printer,
        what,
        &expected,
    )?;
    dst.commit(&ingested.images)
        .with_context(|| format!("writing into {to} failed"))?;
    created.keep();
    Ok((done, ingested.report))
}

/// The plan's images as docker's files describe them (each found by its ID, `ids` in the
/// plan's order), each under the names it gets in the target.
pub(crate) fn docker_files_images(
    plan: &Plan,
    files: &imgkit_docker_files::FileSource,
    ids: &[Digest],
) -> anyhow::Result<Vec<StoredImage>> {
    chosen_by_id(
        &files.images()?,
        &target_naming(plan),
        &files.describe(),
        Some(ids),
    )
}

/// Route docker → store without `docker save`: the plan's images read from dockerd's own
/// files (`crate::dockerfiles`), only the blobs the store lacks, as a copy between stores
/// (containerd unpacks each layer as it arrives), with a progress line over what is read.
fn copy_from_docker_files(
    plan: &Plan,
    files: &imgkit_docker_files::FileSource,
    ids: &[Digest],
    source: &Endpoint,
    to: &EndpointSpec,
    printer: &mut Printer,
) -> anyhow::Result<(Transferred, CopyReport)> {
    let started = std::time::Instant::now();
    let mut images = docker_files_images(plan, files, ids)?;
    let created = Created::note(to);
    let mut dst = match crate::containerd::open(to) {
        Some(store) => {
            store
                .unpack_as_layers_arrive(&files.diff_ids())
                .map_err(|e| {
                    crate::containerd::error(e, Some(&format!("writing into {to} failed")))
                })?;
            let named = crate::containerd::name_compressed_layers(&store, &mut images);
            if named > 0 {
                printer.step(
                    "copy",
                    &format!(
                        "{named} layer{} {to} holds compressed (pulled from a registry) named as they are there, not sent",
                        if named == 1 { "" } else { "s" }
                    ),
                );
            }
            Box::new(store) as Box<dyn Destination + Send>
        }
        None => {
            open_destination(to)?.ok_or_else(|| anyhow::anyhow!("{to} is not an image store"))?
        }
    };
    let expected = crate::dockerfiles::missing_bytes(&images, &*dst);
    printer.stream(format!("{} → {to}", source.name()));
    let counted = crate::dockerfiles::Counted::new(files, printer, expected);
    let report = copy(&counted, &mut *dst, &images).map_err(|e| {
        crate::dockerfiles::damaged(files, e).context(format!("writing into {to} failed"))
    })?;
    counted.finish();
    created.keep();
    let done = Transferred {
        bytes: report.bytes_written,
        elapsed: started.elapsed(),
        target_stdout: String::new(),
        target_stderr: String::new(),
        source_stderr: String::new(),
    };
    Ok((done, report))
}

/// The engine's save stream pumped into `dst` (see [`ingest_into`]), the images read from it
/// named as the plan names them in the target; not committed yet.
pub(crate) fn ingest_with(
    plan: &Plan,
    source: &Endpoint,
    dst: &mut (dyn Destination + Send),
    to: &str,
    via: Option<&std::path::Path>,
    printer: &mut Printer,
    what: &str,
) -> anyhow::Result<(Transferred, imgkit_store::Ingested)> {
    ingest_expected(plan, source, dst, to, via, printer, what, &[])
}

/// [`ingest_with`], told the diff IDs of the images the source saves
/// (`imgkit_store::ingest_expecting`): docker ≤24 layers `dst` holds pass unread.
#[allow(clippy::too_many_arguments)]
fn ingest_expected(
    plan: &Plan,
    source: &Endpoint,
    dst: &mut (dyn Destination + Send),
    to: &str,
    via: Option<&std::path::Path>,
    printer: &mut Printer,
    what: &str,
    expected: &[Vec<Digest>],
) -> anyhow::Result<(Transferred, imgkit_store::Ingested)> {
    let label = source.name();
    let (done, mut ingested) = ingest_stream(
        source.source(&plan.refs, Compression::None),
        plan.expected_bytes,
        &label,
        &format!("could not read the images {label} saved"),
        dst,
        to,
        via,
        printer,
        what,
        expected,
    )?;
    name_ingested(&mut ingested.images, plan);
    Ok((done, ingested))
}

/// A tar stream (an engine's save, an archive `imgkit load` reads) pumped into `dst` (see
/// [`ingest_into`]): read once on a thread by `imgkit_store::ingest_expecting`, each blob put
/// as it passes; the images read from it, under the names it gives, not committed yet.
/// `label` names the stream; `unreadable` is the error's context when the stream was whole
/// but is no image archive.
#[allow(clippy::too_many_arguments)]
pub(crate) fn ingest_stream(
    stream: imgkit_transfer::Source,
    expected_bytes: Option<u64>,
    label: &str,
    unreadable: &str,
    dst: &mut (dyn Destination + Send),
    to: &str,
    via: Option<&std::path::Path>,
    printer: &mut Printer,
    what: &str,
    expected: &[Vec<Digest>],
) -> anyhow::Result<(Transferred, imgkit_store::Ingested)> {
    // In-process, 1 MiB at a time (an OS pipe's 64 KiB wake-ups cost CPU the engine and the
    // store need).
    let (reader, writer) = chunk_pipe();
    std::thread::scope(|scope| {
        let reading = scope.spawn(|| ingest_expecting(reader, dst, label, expected));
        let mut pump = Pump::new(stream)
            .expected_bytes(expected_bytes)
            .sink(Sink::writer(to.to_owned(), writer));
        if let Some(via) = via {
            pump = pump.sink(Sink::file(via));
        }
        printer.stream(format!("{label} → {to}"));
        let pumped = run_pump(pump, printer, what);
        let ingested = reading
            .join()
            .map_err(|_| anyhow::anyhow!("the reader of {label}'s stream panicked"))?;
        match (pumped, ingested) {
            (Ok(done), Ok(i)) => Ok((done, i)),
            // The store stopped reading (a damaged blob, a full disk): the pump only saw its
            // pipe close, so the store's error is the one to tell.
            (Err(p), Err(e)) if stopped_reading(&p) => {
                Err(anyhow::Error::new(e).context(format!("writing into {to} failed")))
            }
            // The save failed or was cancelled: the store only saw its stream end early.
            (Err(e), _) => Err(e),
            (Ok(_), Err(e)) if !matches!(e, imgkit_store::Error::Archive(_)) => {
                Err(anyhow::Error::new(e).context(format!("writing into {to} failed")))
            }
            (Ok(_), Err(e)) => Err(anyhow::Error::new(e).context(unreadable.to_owned())),
        }
    })
}

/// Whether the pump failed writing into its sink (the store's reader went away), rather than
/// on its source or by a cancellation.
fn stopped_reading(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        matches!(
            c.downcast_ref::<imgkit_transfer::Error>(),
            Some(imgkit_transfer::Error::Write { .. })
        )
    })
}

/// Gives each image read from a save stream the names the plan gives it in the target.
fn name_ingested(images: &mut [StoredImage], plan: &Plan) {
    let found: Vec<Option<usize>> = plan
        .images
        .iter()
        .map(|p| {
            images
                .iter()
                .position(|i| i.matches(&p.reference))
                .or_else(|| {
                    // Saved by ID (untagged), or under a name the stream spells otherwise.
                    images.iter().position(|i| same_id(i.id(), &p.id))
                })
        })
        .collect();
    let mut names: Vec<Vec<ImageRef>> = vec![Vec::new(); images.len()];
    let mut named = vec![false; images.len()];
    for (p, slot) in plan.images.iter().zip(found) {
        let Some(slot) = slot else { continue };
        named[slot] = true;
        let given = if image_id_of(&p.reference).is_some() {
            rename::names(p)
        } else {
            rename::target_names(p)
        };
        for n in given {
            let n = n.normalized();
            if !names[slot].contains(&n) {
                names[slot].push(n);
            }
        }
    }
    for ((image, names), named) in images.iter_mut().zip(names).zip(named) {
        if named {
            image.names = names;
        }
    }
}

/// Into an engine: each image with only the platforms `wanted` names (the first found is
/// its primary), and notes naming what each multi-platform image leaves out. An image with
/// none of them is an error naming the platforms it has.
pub(crate) fn for_platforms(
    images: &[StoredImage],
    wanted: &[String],
) -> anyhow::Result<(Vec<StoredImage>, Vec<String>)> {
    let mut out = Vec::with_capacity(images.len());
    let mut notes = Vec::new();
    for image in images {
        let name = image
            .names
            .first()
            .map_or_else(|| image.manifest.digest.to_string(), ToString::to_string);
        match image.for_platforms(wanted) {
            Ok((kept, left)) => {
                if !left.is_empty() {
                    notes.push(format!(
                        "{name}: {} taken, {} left out",
                        kept.platforms
                            .iter()
                            .filter_map(|p| p.platform.clone())
                            .collect::<Vec<_>>()
                            .join(", "),
                        left.join(", ")
                    ));
                }
                out.push(kept);
            }
            Err(has) => {
                return Err(with_hint(
                    anyhow::anyhow!(
                        "{name} has no {} image: it has {}",
                        wanted.join(" or "),
                        has.join(", ")
                    ),
                    "choose one of its platforms with --platform OS/ARCH[/VARIANT]",
                ));
            }
        }
    }
    Ok((out, notes))
}

/// What a store's selected images leave out going into an engine (`--platform`, or the
/// host's): notes for the plan, or the error of an image with none of those platforms.
/// `explicit`: the platforms were asked for (`--platform`), so a single-platform image must
/// be one of them too (its config says which it is).
pub(crate) fn platform_notes(
    spec: &EndpointSpec,
    refs: &[ImageRef],
    wanted: &[String],
    explicit: bool,
) -> anyhow::Result<Vec<String>> {
    let src = open_source(spec)?.ok_or_else(|| anyhow::anyhow!("{spec} is not an image store"))?;
    let named: Vec<(ImageRef, Vec<ImageRef>)> =
        refs.iter().map(|r| (r.clone(), vec![r.clone()])).collect();
    let images = chosen(&src.images()?, &named, &src.describe())?;
    if explicit {
        for image in images.iter().filter(|i| !i.is_index()) {
            let Some(has) = config_platform(&*src, image)? else {
                continue;
            };
            if !wanted
                .iter()
                .any(|w| imgkit_types::platform::matches(w, &has))
            {
                let name = image
                    .names
                    .first()
                    .map_or_else(|| image.manifest.digest.to_string(), ToString::to_string);
                return Err(with_hint(
                    anyhow::anyhow!(
                        "{name} has no {} image: it has {has} only",
                        wanted.join(" or ")
                    ),
                    format!("choose --platform {has}, or leave --platform out"),
                ));
            }
        }
    }
    Ok(for_platforms(&images, wanted)?.1)
}

/// The platform (`os/arch[/variant]`) a single-platform image's config names, if it names one.
fn config_platform(src: &dyn Source, image: &StoredImage) -> anyhow::Result<Option<String>> {
    let mut bytes = Vec::new();
    src.read_blobs(std::slice::from_ref(&image.config), &mut |_, r| {
        std::io::Read::take(r, 1 << 20)
            .read_to_end(&mut bytes)
            .map(drop)
            .map_err(|source| imgkit_store::Error::Read {
                digest: image.config.digest.clone(),
                source,
            })
    })?;
    let config: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
    let field = |k: &str| {
        config
            .get(k)
            .and_then(|v| v.as_str())
            .filter(|s| !s.is_empty())
    };
    Ok(match (field("os"), field("architecture")) {
        (Some(os), Some(arch)) => Some(match field("variant") {
            Some(v) => format!("{os}/{arch}/{v}"),
            None => format!("{os}/{arch}"),
        }),
        _ => None,
    })
}

/// Route store → engine or archive file: the plan's images from the store `spec` as one tar
/// stream (written on a thread into a pipe; a failure of the writer becomes a read error at
/// the end of the stream), for the pump.
pub(crate) fn stream(
    spec: &EndpointSpec,
    refs: &[ImageRef],
    platforms: &[String],
    compression: Compression,
) -> imgkit_transfer::Source {
    let spec = spec.clone();
    let platforms = platforms.to_vec();
    // Loaded under the references selected (the target renames after the load).
    let wanted = load_names(refs);
    imgkit_transfer::Source::open_with(spec.to_string(), move || {
        let (reader, writer) = chunk_pipe();
        let writer_thread = std::thread::spawn(move || -> std::io::Result<()> {
            let write = || -> anyhow::Result<()> {
                let src = open_source(&spec)?
                    .ok_or_else(|| anyhow::anyhow!("{spec} is not an image store"))?;
                let images = chosen(&src.images()?, &wanted, &src.describe())?;
                let images = if platforms.is_empty() {
                    images
                } else {
                    for_platforms(&images, &platforms)?.0
                };
                imgkit_store::write_tar(&*src, &images, writer, compression)
                    .map_err(|e| crate::containerd::damaged(&spec, e))?;
                Ok(())
            };
            write().map_err(|e| std::io::Error::other(format!("{e:#}")))
        });
        Ok(Box::new(reader.joined(writer_thread)) as Box<dyn Read>)
    })
}

/// docker's images read from its own files (`crate::dockerfiles`) as one tar an engine's
/// load takes, as [`stream`] writes a store's: dockerd saves nothing, and the tar starts at
/// once. Each planned image found by its ID (`ids`, in the order of `refs`) and loaded under
/// its reference (the target names and renames after the load, as for any stream).
pub(crate) fn stream_docker_files(
    files: imgkit_docker_files::FileSource,
    ids: Vec<Digest>,
    refs: &[ImageRef],
    compression: Compression,
) -> imgkit_transfer::Source {
    let wanted = load_names(refs);
    imgkit_transfer::Source::open_with("docker", move || {
        let (reader, writer) = chunk_pipe();
        let writer_thread = std::thread::spawn(move || -> std::io::Result<()> {
            let write = || -> anyhow::Result<()> {
                let images =
                    chosen_by_id(&files.images()?, &wanted, &files.describe(), Some(&ids))?;
                imgkit_store::write_tar(&files, &images, writer, compression)
                    .map_err(|e| crate::dockerfiles::damaged(&files, e))?;
                Ok(())
            };
            write().map_err(|e| std::io::Error::other(format!("{e:#}")))
        });
        Ok(Box::new(reader.joined(writer_thread)) as Box<dyn Read>)
    })
}

/// Each reference with the names a stream loads it under: itself, none for an image ID.
fn load_names(refs: &[ImageRef]) -> Vec<(ImageRef, Vec<ImageRef>)> {
    refs.iter()
        .map(|r| {
            let names = if image_id_of(r).is_some() {
                Vec::new()
            } else {
                vec![r.clone()]
            };
            (r.clone(), names)
        })
        .collect()
}

/// Bytes per chunk of a [`chunk_pipe`].
const PIPE_CHUNK: usize = 1 << 20;
/// Whole chunks a [`chunk_pipe`] holds before its writer waits.
const PIPE_CHUNKS: usize = 8;

/// An in-process pipe between a thread writing a tar and the pump (or the pump and the thread
/// reading a save): an OS pipe moves 64 KiB per wake-up and copies every byte through the
/// kernel twice, which cost as much as writing the archive itself (ctr → archive at ~440
/// MiB/s). Bytes gather into 1 MiB chunks while the reader is busy; a reader that has caught
/// up takes what is there at once, however little (a save held open after its first layer
/// still delivers that layer).
fn chunk_pipe() -> (ChunkReader, ChunkWriter) {
    let shared = std::sync::Arc::new(PipeShared::default());
    (
        ChunkReader {
            shared: shared.clone(),
            chunk: Vec::new(),
            pos: 0,
            writer: None,
        },
        ChunkWriter { shared },
    )
}

#[derive(Default)]
struct PipeShared {
    state: std::sync::Mutex<PipeState>,
    changed: std::sync::Condvar,
}

#[derive(Default)]
struct PipeState {
    /// Whole chunks, oldest first; then the one being filled.
    full: std::collections::VecDeque<Vec<u8>>,
    filling: Vec<u8>,
    writer_gone: bool,
    reader_gone: bool,
}

impl PipeShared {
    fn lock(&self) -> std::sync::MutexGuard<'_, PipeState> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

struct ChunkWriter {
    shared: std::sync::Arc<PipeShared>,
}

impl std::io::Write for ChunkWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        let mut st = self.shared.lock();
        while st.full.len() >= PIPE_CHUNKS && !st.reader_gone {
            st = self
                .shared
                .changed
                .wait(st)
                .unwrap_or_else(std::sync::PoisonError::into_inner);
        }
        if st.reader_gone {
            return Err(std::io::Error::new(
                std::io::ErrorKind::BrokenPipe,
                "the reader of the stream stopped",
            ));
        }
        if st.filling.capacity() == 0 {
            st.filling.reserve_exact(PIPE_CHUNK);
        }
        let n = data.len().min(PIPE_CHUNK - st.filling.len());
        st.filling.extend_from_slice(&data[..n]);
        if st.filling.len() == PIPE_CHUNK {
            let whole = std::mem::take(&mut st.filling);
            st.full.push_back(whole);
        }
        drop(st);
        self.shared.changed.notify_all();
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for ChunkWriter {
    fn drop(&mut self) {
        self.shared.lock().writer_gone = true;
        self.shared.changed.notify_all();
    }
}

/// The read end of a [`chunk_pipe`]; at the end of the stream, how its writer thread ended.
struct ChunkReader {
    shared: std::sync::Arc<PipeShared>,
    chunk: Vec<u8>,
    pos: usize,
    writer: Option<std::thread::JoinHandle<std::io::Result<()>>>,
}

impl ChunkReader {
    fn joined(mut self, writer: std::thread::JoinHandle<std::io::Result<()>>) -> Self {
        self.writer = Some(writer);
        self
    }

    /// The next bytes, waiting for some; `None` at the end of the stream.
    fn next_chunk(&self) -> Option<Vec<u8>> {
        let mut st = self.shared.lock();
        loop {
            if let Some(c) = st.full.pop_front() {
                drop(st);
                self.shared.changed.notify_all();
                return Some(c);
            }
            if !st.filling.is_empty() {
                return Some(std::mem::take(&mut st.filling));
            }
            if st.writer_gone {
                return None;
            }
            st = self
                .shared
                .changed
                .wait(st)
                .unwrap_or_else(std::sync::PoisonError::into_inner);
        }
    }
}

impl Drop for ChunkReader {
    fn drop(&mut self) {
        self.shared.lock().reader_gone = true;
        self.shared.changed.notify_all();
    }
}

impl Read for ChunkReader {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        if out.is_empty() {
            return Ok(0);
        }
        while self.pos == self.chunk.len() {
            let Some(c) = self.next_chunk() else {
                // The writer is gone: the end, or its error.
                if let Some(w) = self.writer.take() {
                    match w.join() {
                        Ok(Ok(())) => {}
                        Ok(Err(e)) => return Err(e),
                        Err(_) => return Err(std::io::Error::other("the archive writer panicked")),
                    }
                }
                return Ok(0);
            };
            self.chunk = c;
            self.pos = 0;
        }
        let n = out.len().min(self.chunk.len() - self.pos);
        out[..n].copy_from_slice(&self.chunk[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_chunk_pipe_passes_every_byte_in_order_then_the_writers_error() {
        use std::io::Write as _;
        let data: Vec<u8> = (0..(3 * PIPE_CHUNK + 12345))
            .map(|i| (i % 251) as u8)
            .collect();
        let (reader, mut writer) = chunk_pipe();
        let sent = data.clone();
        let thread = std::thread::spawn(move || {
            for part in sent.chunks(70_000) {
                writer.write_all(part)?;
            }
            Ok(())
        });
        let mut back = Vec::new();
        reader.joined(thread).read_to_end(&mut back).unwrap();
        assert!(back == data);
        let (reader, mut writer) = chunk_pipe();
        let thread = std::thread::spawn(move || {
            writer.write_all(b"partial")?;
            Err(std::io::Error::other("the blob is damaged"))
        });
        let err = reader
            .joined(thread)
            .read_to_end(&mut Vec::new())
            .unwrap_err();
        assert_eq!(err.to_string(), "the blob is damaged");
        // A few bytes, the writer still open: the reader gets them without waiting for more.
        let (mut reader, mut writer) = chunk_pipe();
        writer.write_all(b"first layer").unwrap();
        let mut got = [0u8; 64];
        let n = reader.read(&mut got).unwrap();
        assert_eq!(&got[..n], b"first layer");
        drop(writer);
        assert_eq!(reader.read(&mut got).unwrap(), 0);
        // A reader that stops: the writer gets an error instead of blocking.
        let (reader, mut writer) = chunk_pipe();
        drop(reader);
        assert!(writer.write_all(&data).is_err());
    }

    #[test]
    fn a_trailing_slash_or_an_oci_layout_file_makes_a_store() {
        let spec = |s: &str| s.parse::<EndpointSpec>().unwrap();
        assert_eq!(layout_dir(&spec("./out/")), Some(PathBuf::from("./out/")));
        assert_eq!(layout_dir(&spec("images.tar")), None);
        assert_eq!(layout_dir(&spec("docker")), None);
        assert!(!is_store(&spec("images.tar")));
        let tmp = tempfile::tempdir().unwrap();
        assert_eq!(
            layout_dir(&EndpointSpec::Archive(tmp.path().to_owned())),
            None
        );
        std::fs::write(tmp.path().join("oci-layout"), "{}").unwrap();
        assert_eq!(
            layout_dir(&EndpointSpec::Archive(tmp.path().to_owned())),
            Some(tmp.path().to_owned())
        );
    }
}
