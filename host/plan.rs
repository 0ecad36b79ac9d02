//! From an endpoint to a checked plan: open the endpoint, list its images, run the filters,
//! resolve every output to an image of the listing (each parsed as an [`ImageRef`] first), and,
//! after a transfer, verify the target holds each image with the same ID.
//!
//! Nothing here starts a save or a load: a plan is complete — every reference validated —
//! before any engine is asked to move a byte.

use std::collections::{BTreeMap, HashSet};
use std::io::Read;
use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context, bail};
use imgkit_engine::Engine;
use imgkit_store::TarEndpoint;
use imgkit_types::{Digest, ImageRef};

use imgkit_archive::{Archive, Compression, SubsetWriter};
use imgkit_transfer::Source;

use crate::diagnostics::with_hint;
use crate::endpoint::{EndpointSpec, open_engine};
use crate::pipeline::Pipeline;
use crate::progress::Printer;
use crate::selection::Listing;
use crate::transfer::listed_bytes;

/// An opened endpoint.
pub(crate) enum Endpoint {
    Engine {
        engine: Engine,
        spec: EndpointSpec,
    },
    Archive(PathBuf),
    /// An image store (an OCI layout directory, containerd's store), read and written through
    /// imgkit-store (`host/stores.rs`), and as a source the platforms its multi-platform images
    /// keep (empty: every platform; set when the target is an engine, see
    /// `imgkit_store::StoredImage::for_platforms`).
    Store(EndpointSpec, Vec<String>),
}

/// Opens `spec`: resolves an engine's binary (nothing runs yet).
pub(crate) fn open(spec: &EndpointSpec) -> anyhow::Result<Endpoint> {
    if crate::stores::is_store(spec) {
        return Ok(Endpoint::Store(spec.clone(), Vec::new()));
    }
    match spec {
        EndpointSpec::Engine { kind, namespace } => Ok(Endpoint::Engine {
            engine: open_engine(*kind, namespace.clone())?,
            spec: spec.clone(),
        }),
        EndpointSpec::Archive(p) => Ok(Endpoint::Archive(p.clone())),
    }
}

impl Endpoint {
    pub(crate) fn engine(&self) -> Option<&Engine> {
        match self {
            Endpoint::Engine { engine, .. } => Some(engine),
            Endpoint::Archive(_) | Endpoint::Store(..) => None,
        }
    }

    pub(crate) fn name(&self) -> String {
        match self {
            Endpoint::Engine { spec, .. } | Endpoint::Store(spec, ..) => spec.to_string(),
            Endpoint::Archive(p) => p.display().to_string(),
        }
    }

    /// The source's listing, in docker's record shape, and warnings about what it left out.
    pub(crate) fn list(&self) -> anyhow::Result<Listing> {
        match self {
            Endpoint::Engine { engine, spec } => {
                let (mut records, warnings) = TarEndpoint::records(engine).map_err(|e| {
                    engine_error(e, &format!("could not list the images in {spec}"))
                })?;
                // Filters may choose by containerd namespace (`run --from ctr:all`).
                if engine.kind().is_containerd() {
                    for rec in &mut records {
                        rec.extra.insert(
                            "Namespace".to_owned(),
                            serde_json::Value::String(engine.namespace().to_owned()),
                        );
                    }
                }
                Ok(Listing { records, warnings })
            }
            Endpoint::Archive(p) => {
                let archive = Archive::open(p)
                    .with_context(|| format!("could not read the archive {}", p.display()))?;
                Ok(Listing {
                    records: archive.records(),
                    warnings: archive.warnings(),
                })
            }
            Endpoint::Store(spec, ..) => {
                if let Some(listing) = crate::containerd::listing(spec)? {
                    return Ok(listing);
                }
                let source = crate::stores::open_source(spec)?
                    .ok_or_else(|| anyhow::anyhow!("{spec} is not an image store"))?;
                Ok(Listing {
                    records: source.records(),
                    warnings: source.warnings(),
                })
            }
        }
    }

    /// The command that writes `refs` as a tar to stdout (engines only).
    pub(crate) fn save_command(&self, refs: &[ImageRef]) -> Option<Command> {
        match self {
            Endpoint::Engine { engine, .. } => Some(engine.save_command(refs)),
            Endpoint::Archive(_) | Endpoint::Store(..) => None,
        }
    }

    /// The pump's source for `refs`: the engine's save, or a sub-archive of just those images
    /// (each shared blob once) streamed from an archive file, compressed as `compression`.
    pub(crate) fn source(&self, refs: &[ImageRef], compression: Compression) -> Source {
        match self {
            Endpoint::Engine { engine, .. } if engine.speaks_api() => {
                let label = engine.api_save_label().unwrap_or_default();
                let (engine, refs) = (engine.clone(), engine.native_refs(refs));
                Source::open_with(label, move || match engine.save_stream(&refs) {
                    Some(Ok(body)) => Ok(Box::new(body) as Box<dyn Read>),
                    Some(Err(e)) => Err(std::io::Error::other(e)),
                    None => Err(std::io::Error::other("docker lost its Engine API")),
                })
            }
            Endpoint::Engine { engine, .. } => {
                // Errors name the command line that ran, as a person could paste it.
                let cmd = traced(engine.save_command(refs));
                Source::command(display_argv(&cmd), cmd)
            }
            Endpoint::Archive(path) => subset_source(path.clone(), refs.to_vec(), compression),
            Endpoint::Store(spec, platforms) => {
                crate::stores::stream(spec, refs, platforms, compression)
            }
        }
    }

    /// The command that loads a tar from stdin.
    pub(crate) fn load_command(&self) -> anyhow::Result<Command> {
        match self {
            // Over the Engine API the load is `load_sink`'s, and no command runs.
            Endpoint::Engine { engine, .. } if engine.speaks_api() => {
                Ok(TarEndpoint::load_command(engine))
            }
            Endpoint::Engine { engine, .. } => Ok(traced(TarEndpoint::load_command(engine))),
            Endpoint::Archive(p) => {
                bail!("{} is an archive, not an engine to load into", p.display())
            }
            Endpoint::Store(spec, ..) => {
                bail!("{spec} is an image store, written through imgkit-store, not loaded")
            }
        }
    }
}

impl Endpoint {
    /// The pump's sink loading into this endpoint: docker's load over its Engine API, else
    /// `load` (the engine's CLI).
    pub(crate) fn load_sink(&self, load: Command) -> anyhow::Result<imgkit_transfer::Sink> {
        if let Endpoint::Engine { engine, spec } = self
            && let Some(started) = engine.load_stream()
        {
            let started = started
                .map_err(|e| engine_error(e, &format!("could not start the load into {spec}")))?;
            let label = engine.api_load_label().unwrap_or_default();
            return Ok(imgkit_transfer::Sink::finishing(
                label,
                Box::new(ApiLoad(started)),
            ));
        }
        Ok(imgkit_transfer::Sink::command(display_argv(&load), load))
    }
}

/// docker's load over its Engine API as the pump's finishing sink.
struct ApiLoad(imgkit_engine::Load);

impl std::io::Write for ApiLoad {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.write(buf)
    }

    fn write_all(&mut self, buf: &[u8]) -> std::io::Result<()> {
        self.0.write_all(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

impl imgkit_transfer::Finish for ApiLoad {
    fn finish(self: Box<Self>) -> std::io::Result<String> {
        self.0.finish().map_err(std::io::Error::other)
    }
}

/// The image ID a reference stands for, when it is one: what a listing gives for an untagged
/// image (`4a2be5982e10`), a bare name of 12 or 64 lowercase hex digits, no tag, no digest —
/// engines read it as an ID too (`docker save 4a2be5982e10`).
pub(crate) fn image_id_of(r: &ImageRef) -> Option<&str> {
    if r.tag().is_some() || r.digest().is_some() || r.domain().is_some() {
        return None;
    }
    let name = r.path();
    let hex = name.len() == 12 || name.len() == 64;
    (hex && name
        .bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)))
    .then_some(name)
}

/// Whether the image ID `id` (short or `sha256:…`) is the image `digest`.
pub(crate) fn same_id(digest: &Digest, id: &str) -> bool {
    let id = id.strip_prefix("sha256:").unwrap_or(id);
    id.len() >= 12 && digest.hex().starts_with(id)
}

/// `cmd`, printed first as `+ argv` when `-v` is on (the transfer's save and load run outside
/// the engine's own tracing).
fn traced(cmd: Command) -> Command {
    if let Some(print) = crate::engine_args::trace() {
        print(&display_argv(&cmd));
    }
    cmd
}

pub(crate) fn engine_error(e: imgkit_engine::Error, context: &str) -> anyhow::Error {
    let hint = e.hint();
    let err = anyhow::Error::new(e).context(context.to_owned());
    match hint {
        Some(h) => with_hint(err, h),
        None => err,
    }
}

/// One image of a plan.
#[derive(Debug, Clone)]
pub(crate) struct PlannedImage {
    /// The reference handed to the engine (validated, named in the listing).
    pub(crate) reference: ImageRef,
    /// The listing's ID (short config digest; manifest digest for containerd).
    pub(crate) id: String,
    /// The listing's size text.
    pub(crate) size: String,
    /// The platforms a containerd listing names for it (nerdctl's `Platform`, comma-joined).
    pub(crate) platforms: Option<String>,
    /// New names the filter asked for (`{"ref": …, "as": […]}`), unchecked.
    pub(crate) rename: Vec<String>,
}

/// The images to move, every reference checked.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    pub(crate) images: Vec<PlannedImage>,
    pub(crate) refs: Vec<ImageRef>,
    /// Sum of the listed sizes of the distinct images (an estimate of the stream's size).
    pub(crate) expected_bytes: Option<u64>,
}

impl Plan {
    /// Lists `source`, runs `pipeline`, resolves outputs against the listing. `given` refs (from
    /// the command line) replace the pipeline. `None` when nothing was selected.
    pub(crate) fn select(
        source: &Endpoint,
        pipeline: &Pipeline,
        given: &[String],
        printer: &mut Printer,
    ) -> anyhow::Result<Option<Plan>> {
        // Refs from the command line are checked before anything runs.
        let given: Vec<ImageRef> = given
            .iter()
            .map(|s| ImageRef::parse(s))
            .collect::<Result<_, _>>()
            .context("refusing to run any engine")?;

        printer.step("list", &format!("listing images in {}", source.name()));
        let listing = source.list()?;
        for w in &listing.warnings {
            printer.step("list", &format!("warning: {w}"));
        }
        let records = &listing.records;

        let mut chosen: Vec<(ImageRef, usize, Vec<String>)> = Vec::new();
        if given.is_empty() {
            printer.step(
                "select",
                &format!("selecting from {} records", records.len()),
            );
            let selected = pipeline
                .select_from(records)
                .context("refusing to run any engine")?;
            chosen.extend(
                selected
                    .into_iter()
                    .map(|s| (s.reference, s.record, s.rename)),
            );
        } else {
            for r in given {
                let (r, i) = listing.resolve(&r).ok_or_else(|| not_listed(&r, source))?;
                chosen.push((r, i, Vec::new()));
            }
        }

        let mut seen = HashSet::new();
        let mut images = Vec::new();
        for (reference, i, rename) in chosen {
            if seen.insert(reference.to_string()) {
                let rec = &records[i];
                let platforms = rec
                    .extra
                    .get("Platform")
                    .and_then(|p| p.as_str())
                    .map(str::to_owned);
                images.push(PlannedImage {
                    reference,
                    id: rec.id.clone(),
                    size: rec.size.clone(),
                    platforms,
                    rename,
                });
            }
        }
        if images.is_empty() {
            return Ok(None);
        }
        let mut sizes: BTreeMap<&str, u64> = BTreeMap::new();
        for img in &images {
            if let Some(s) = listed_bytes(&img.size) {
                sizes.insert(&img.id, s);
            }
        }
        let expected_bytes = (!sizes.is_empty()).then(|| sizes.values().sum());
        let refs = images.iter().map(|i| i.reference.clone()).collect();
        Ok(Some(Plan {
            images,
            refs,
            expected_bytes,
        }))
    }

    /// Images whose listing names several platforms: their saves export only what the engine
    /// holds (ctr and nerdctl: the host's platform), and nothing is pulled.
    pub(crate) fn multi_platform(&self) -> Vec<String> {
        self.images
            .iter()
            .filter_map(|i| {
                i.platforms
                    .as_deref()
                    .filter(|p| p.contains(','))
                    .map(|p| format!("{} ({p})", i.reference))
            })
            .collect()
    }

    /// "2 images (~786 kB: seed/app:1.0, seed/base:1.0)", naming at most five, for errors.
    pub(crate) fn describe_with_names(&self) -> String {
        let mut names: Vec<String> = self.refs.iter().take(5).map(ToString::to_string).collect();
        if self.refs.len() > 5 {
            names.push(format!("and {} more", self.refs.len() - 5));
        }
        format!("{} [{}]", self.describe(), names.join(", "))
    }

    /// "3 images (~1.2 MB)".
    pub(crate) fn describe(&self) -> String {
        let n = self.images.len();
        let size = self
            .expected_bytes
            .map(|b| format!(" (~{})", indicatif::HumanBytes(b)))
            .unwrap_or_default();
        format!("{n} image{}{size}", if n == 1 { "" } else { "s" })
    }

    /// Checks that each reference resolves in `target` to the same image ID (config digest) as
    /// in `source`. A digest-only reference has no name to load under (a digest belongs to a
    /// registry), so it is found in the target by its ID.
    pub(crate) fn verify(&self, source: &Endpoint, target: &Endpoint) -> anyhow::Result<Verified> {
        let want: Vec<Option<Digest>> = source
            .ids(&self.refs, None)
            .context("could not read the source's image IDs")?
            .into_iter()
            .map(|f| match f {
                Found::Id(d) => Some(d),
                Found::Missing | Found::Unnamed => None,
            })
            .collect();
        let got = target
            .ids(&self.refs, Some(&want))
            .context("could not read the target's image IDs")?;
        let mut problems = Vec::new();
        let mut notes = Vec::new();
        let mut checked = 0;
        for ((r, want), got) in self.refs.iter().zip(&want).zip(got) {
            match (want, got) {
                (Some(w), Found::Id(g)) if *w == g => checked += 1,
                (w, Found::Id(g)) => problems.push(format!(
                    "{r}: ID {g} in the target, {} in the source",
                    show(w.as_ref())
                )),
                (w, Found::Missing) => problems.push(format!(
                    "{r}: missing in the target (source ID {})",
                    show(w.as_ref())
                )),
                (_, Found::Unnamed) => notes.push(format!(
                    "{r}: loaded without a name ({}); {} keeps no unnamed image",
                    if image_id_of(r).is_some() {
                        "an untagged image"
                    } else {
                        "a digest reference needs a registry"
                    },
                    target.name()
                )),
            }
        }
        if problems.is_empty() {
            Ok(Verified { checked, notes })
        } else {
            Err(anyhow::anyhow!(
                "{} of {} images differ:\n  {}",
                problems.len(),
                want.len(),
                problems.join("\n  ")
            ))
        }
    }
}

/// The outcome of [`Plan::verify`].
#[derive(Debug, Clone, Default)]
pub(crate) struct Verified {
    pub(crate) checked: usize,
    /// Images that could not be checked, and why.
    pub(crate) notes: Vec<String>,
}

/// What the target holds for one reference.
pub(crate) enum Found {
    Id(Digest),
    Missing,
    /// A digest-only reference in an engine that keeps no unnamed images (containerd).
    Unnamed,
}

impl Endpoint {
    /// The image ID of each reference here. With `by_id` (the source's IDs), digest-only
    /// references are looked up by ID instead.
    pub(crate) fn ids(
        &self,
        refs: &[ImageRef],
        by_id: Option<&[Option<Digest>]>,
    ) -> anyhow::Result<Vec<Found>> {
        // No name to look up in a target: a digest-only reference, or an image ID.
        let digest_only =
            |r: &ImageRef| (r.tag().is_none() && r.digest().is_some()) || image_id_of(r).is_some();
        match self {
            Endpoint::Engine { engine, .. } => {
                let named: Vec<ImageRef> = refs
                    .iter()
                    .filter(|r| by_id.is_none() || !digest_only(r))
                    .cloned()
                    .collect();
                let mut ids = TarEndpoint::image_ids(engine, &named)
                    .map_err(|e| engine_error(e, "could not inspect the images"))?
                    .into_iter();
                let mut out = Vec::new();
                for (i, r) in refs.iter().enumerate() {
                    if by_id.is_some() && digest_only(r) {
                        let want = by_id.and_then(|w| w[i].clone());
                        out.push(match want {
                            Some(id) => match engine.has_image_id(&id) {
                                Some(true) => Found::Id(id),
                                Some(false) => Found::Missing,
                                None => Found::Unnamed,
                            },
                            _ => Found::Unnamed,
                        });
                    } else {
                        out.push(ids.next().flatten().map_or(Found::Missing, Found::Id));
                    }
                }
                Ok(out)
            }
            Endpoint::Archive(path) => {
                let archive = Archive::open(path)
                    .with_context(|| format!("could not read {}", path.display()))?;
                Ok(refs
                    .iter()
                    .enumerate()
                    .map(|(i, r)| {
                        let by_name = match image_id_of(r) {
                            Some(id) => archive
                                .images()
                                .iter()
                                .find(|im| same_id(im.id(), id))
                                .map(|im| im.id().clone()),
                            None => archive.find(r).map(|im| im.id().clone()),
                        };
                        let wanted = by_id.and_then(|w| w[i].as_ref());
                        let by_digest = wanted
                            .filter(|w| archive.images().iter().any(|im| im.id() == *w))
                            .cloned();
                        by_name
                            .or(if digest_only(r) { by_digest } else { None })
                            .map_or(Found::Missing, Found::Id)
                    })
                    .collect())
            }
            Endpoint::Store(spec, platforms) => crate::stores::ids(spec, platforms, refs, by_id),
        }
    }
}

fn show(d: Option<&Digest>) -> String {
    d.map_or_else(|| "unknown".to_owned(), ToString::to_string)
}

fn not_listed(r: &ImageRef, source: &Endpoint) -> anyhow::Error {
    with_hint(
        anyhow::anyhow!(
            "{r} names no image in {}; refusing to run any engine",
            source.name()
        ),
        match source {
            Endpoint::Engine { spec, .. } => {
                format!("see what is there with: imgkit ls {}", spec.engine_flags())
            }
            Endpoint::Archive(p) => {
                format!("see what is there with: imgkit inspect {}", p.display())
            }
            Endpoint::Store(spec, ..) => format!("see what is there with: imgkit ls --from {spec}"),
        },
    )
}

/// The argv of `cmd`, program first, for plans and `-v`.
pub(crate) fn argv(cmd: &Command) -> Vec<String> {
    std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|a| a.to_string_lossy().into_owned())
        .collect()
}

/// The argv of `cmd` as one line a person can paste into their shell (POSIX on Unix,
/// PowerShell on Windows; display only: imgkit itself never runs a shell).
pub(crate) fn display_argv(cmd: &Command) -> String {
    imgkit_engine::display_argv(cmd)
}

/// Streams a sub-archive of `refs` from the archive at `path`: written on a thread into a pipe;
/// a failure of the writer becomes a read error at the end of the stream.
fn subset_source(path: PathBuf, refs: Vec<ImageRef>, compression: Compression) -> Source {
    Source::open_with(path.display().to_string(), move || {
        let (reader, writer) = std::io::pipe()?;
        let writer_thread = std::thread::spawn(move || -> std::io::Result<()> {
            let write = || -> Result<(), imgkit_archive::Error> {
                let archive = Archive::open(&path)?;
                let mut w = SubsetWriter::new(&archive);
                for r in &refs {
                    match image_id_of(r) {
                        Some(id) => w.select_id(id)?,
                        None => w.select(r)?,
                    };
                }
                w.compression(compression).write(writer)?;
                Ok(())
            };
            write().map_err(std::io::Error::other)
        });
        Ok(Box::new(JoinedReader::new(reader, writer_thread)) as Box<dyn Read>)
    })
}

/// A pipe's read end that, at end of stream, reports how its writer thread ended.
pub(crate) struct JoinedReader {
    reader: std::io::PipeReader,
    writer: Option<std::thread::JoinHandle<std::io::Result<()>>>,
}

impl JoinedReader {
    pub(crate) fn new(
        reader: std::io::PipeReader,
        writer: std::thread::JoinHandle<std::io::Result<()>>,
    ) -> Self {
        Self {
            reader,
            writer: Some(writer),
        }
    }
}

impl Read for JoinedReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.reader.read(buf)?;
        if n == 0
            && let Some(w) = self.writer.take()
        {
            match w.join() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => return Err(e),
                Err(_) => return Err(std::io::Error::other("the archive writer panicked")),
            }
        }
        Ok(n)
    }
}

/// Whether `target` files the short names of a docker archive where docker does not mean them
/// (podman, under `localhost/`): the stream's names are then qualified on the way
/// ([`imgkit_transfer::QualifyNames`]).
pub(crate) fn names_short_names_localhost(target: &Endpoint) -> bool {
    target.engine().is_some_and(Engine::misfiles_short_names)
}

/// After a load, for names the stream rewrite could not reach: the engine renames what it
/// filed where docker does not mean it (podman: `localhost/seed/app:1.0` →
/// `docker.io/seed/app:1.0`), as a pull would have named them.
pub(crate) fn after_load(target: &Endpoint, loaded: &str, plan: &Plan) -> anyhow::Result<()> {
    let Some(engine) = target.engine() else {
        return Ok(());
    };
    let images: Vec<(&ImageRef, &str)> = plan
        .images
        .iter()
        .map(|i| (&i.reference, i.id.as_str()))
        .collect();
    engine
        .fix_misfiled_names(loaded, &images)
        .map_err(|e| engine_error(e, "could not rename the loaded images"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";

    #[test]
    fn an_image_id_is_a_bare_12_or_64_hex_name() {
        let id = |s: &str| image_id_of(&ImageRef::parse(s).unwrap()).map(str::to_owned);
        assert_eq!(id("4a2be5982e10").as_deref(), Some("4a2be5982e10"));
        assert_eq!(id(&"a".repeat(64)).map(|s| s.len()), Some(64));
        assert_eq!(id("4a2be5982e10:latest"), None, "a tag makes it a name");
        assert_eq!(id("seed/4a2be5982e10"), None);
        assert_eq!(id("4a2be5982e1"), None, "11 digits");
        assert_eq!(id("4a2be5982e1g"), None, "not hex");
        let d: Digest = D.parse().unwrap();
        assert!(same_id(&d, "111111111111"));
        assert!(same_id(&d, D));
        assert!(!same_id(&d, "11111"), "too short to name an image");
    }
}
