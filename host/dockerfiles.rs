//! docker's images read from its own files (`crates/imgkit-docker-files`) instead of its save
//! stream: when dockerd is reached over its API, its data root (`/info`'s `DockerRootDir`) can
//! be read here and its storage driver keeps layers as directories. Only the layers the
//! destination lacks are rebuilt and read; dockerd does no work at all. Anything else keeps
//! `docker save`; `IMGKIT_DOCKER_READ=stream` keeps it always. `-v` says which and why.

use std::cell::{Cell, RefCell};
use std::io::Read;
use std::time::{Duration, Instant};

use imgkit_docker_files::{DockerFiles, FileSource};
use imgkit_engine::EngineKind;
use imgkit_store::{BlobInfo, Destination, Source, StoredImage};
use imgkit_transfer::{Progress, Reporter};
use imgkit_types::{Digest, ImageRecord, ImageRef};

use crate::engine_args;
use crate::plan::{Endpoint, Found, Plan, image_id_of};
use crate::progress::Printer;

fn say(msg: &str) {
    if engine_args::trace().is_some() {
        eprintln!("imgkit: {msg}");
    }
}

/// The plan's images as a source read from docker's files, with each planned image's ID (in
/// the plan's order); `None` (with the reason under `-v`) when the save stream is the way.
pub(crate) fn source(plan: &Plan, source: &Endpoint) -> Option<(FileSource, Vec<Digest>)> {
    let engine = source.engine()?;
    if engine.kind() != EngineKind::Docker {
        return None;
    }
    if std::env::var_os("IMGKIT_DOCKER_READ").is_some_and(|v| v == "stream") {
        say("docker: reading images through docker save (IMGKIT_DOCKER_READ=stream)");
        return None;
    }
    let Some((root, driver)) = engine.storage() else {
        say(
            "docker: reading images through docker save (dockerd's data root is known over its API only)",
        );
        return None;
    };
    let files = match DockerFiles::open(&root, &driver) {
        Ok(f) => f,
        Err(e) => {
            say(&format!("docker: reading images through docker save ({e})"));
            return None;
        }
    };
    let refs: Vec<ImageRef> = plan.images.iter().map(|i| i.reference.clone()).collect();
    let ids = match source.ids(&refs, None) {
        Ok(ids) => ids,
        Err(e) => {
            say(&format!(
                "docker: reading images through docker save (their IDs: {e:#})"
            ));
            return None;
        }
    };
    let mut wanted: Vec<(Digest, Vec<ImageRef>)> = Vec::with_capacity(refs.len());
    for (r, found) in refs.iter().zip(ids) {
        let Found::Id(id) = found else {
            say(&format!(
                "docker: reading images through docker save ({r} has no image ID)"
            ));
            return None;
        };
        // The route names them (by ID): these are the names the source's records show.
        let names = if image_id_of(r).is_some() || r.tag().is_none() {
            Vec::new()
        } else {
            vec![r.normalized()]
        };
        wanted.push((id, names));
    }
    match files.source(&wanted) {
        Ok(src) => {
            say(&format!(
                "docker: reading the layers from docker's files at {} (no docker save)",
                files.root().display()
            ));
            Some((src, wanted.into_iter().map(|(id, _)| id).collect()))
        }
        Err(e) => {
            say(&format!("docker: reading images through docker save ({e})"));
            None
        }
    }
}

/// Where a run of `plan` would read docker's images from, instead of `docker save`, as
/// `run --dry-run` shows it: dockerd's data root when its files serve (into an engine's load
/// only when every file opens, as the run checks before it streams).
pub(crate) fn would_read(
    plan: &Plan,
    source: &Endpoint,
    into_engine: bool,
) -> Option<std::path::PathBuf> {
    let (files, _) = self::source(plan, source)?;
    (!into_engine || readable(&files)).then(|| files.root().to_owned())
}

/// Whether every file of `files`' layers can be opened here (`FileSource::check_readable`):
/// a stream into an engine's load cannot go back to `docker save` once it has started, so it
/// checks first; `-v` says why not.
pub(crate) fn readable(files: &FileSource) -> bool {
    match files.check_readable() {
        Ok(()) => true,
        Err(e) => {
            say(&format!("docker: reading images through docker save ({e})"));
            false
        }
    }
}

/// A copy from docker's files that failed: a layer that does not hash to its diff ID is
/// docker's store damaged (its files changed behind dockerd's back), said so with what to do;
/// anything else as it is.
pub(crate) fn damaged(files: &FileSource, e: imgkit_store::Error) -> anyhow::Error {
    damaged_in(files, anyhow::Error::new(e))
}

/// [`damaged`] for an error already on its way up: a layer's digest mismatch anywhere in
/// its chain is said as docker's store damaged.
pub(crate) fn damaged_in(files: &FileSource, e: anyhow::Error) -> anyhow::Error {
    let layer = e
        .chain()
        .find_map(|c| match c.downcast_ref::<imgkit_store::Error>() {
            Some(imgkit_store::Error::DigestMismatch { expected, .. }) => Some(expected.clone()),
            Some(imgkit_store::Error::Archive(imgkit_archive::Error::DigestMismatch {
                expected,
                ..
            })) => expected.parse::<Digest>().ok(),
            _ => None,
        });
    match layer.filter(|d| files.is_layer(d)) {
        Some(digest) => crate::diagnostics::with_hint(
            e.context(format!(
                "docker's store at {} is damaged: layer {digest}, rebuilt from its tar-split record and its files, does not hash to its diff ID (its files changed behind dockerd's back; docker save fails on it too)",
                files.root().display()
            )),
            "remove the images using that layer (docker rmi) and pull or load them again",
        ),
        None => e,
    }
}

/// The bytes of the blobs of `images` that `dst` lacks, each counted once: what the copy
/// will read.
pub(crate) fn missing_bytes(images: &[StoredImage], dst: &dyn Destination) -> u64 {
    let mut seen = std::collections::HashSet::new();
    images
        .iter()
        .flat_map(StoredImage::blobs)
        .filter(|b| seen.insert(b.digest.clone()) && !dst.has_blob(&b.digest))
        .map(|b| b.size)
        .sum()
}

/// A source whose reads drive the progress line, as a pump's stream does.
pub(crate) struct Counted<'a> {
    src: &'a dyn Source,
    printer: RefCell<&'a mut Printer>,
    started: Instant,
    expected: u64,
    bytes: Cell<u64>,
    shown: Cell<Instant>,
}

impl<'a> Counted<'a> {
    pub(crate) fn new(src: &'a dyn Source, printer: &'a mut Printer, expected: u64) -> Self {
        printer.started(Some(expected));
        let now = Instant::now();
        Self {
            src,
            printer: RefCell::new(printer),
            started: now,
            expected,
            bytes: Cell::new(0),
            shown: Cell::new(now),
        }
    }

    fn progress(&self) -> Progress {
        Progress {
            bytes: self.bytes.get(),
            elapsed: self.started.elapsed(),
            expected: Some(self.expected),
        }
    }

    fn add(&self, n: usize) {
        self.bytes.set(self.bytes.get() + n as u64);
        if self.shown.get().elapsed() >= Duration::from_millis(100) {
            self.shown.set(Instant::now());
            let p = self.progress();
            self.printer.borrow_mut().progress(&p);
        }
    }

    /// The stream is done: the progress line ends.
    pub(crate) fn finish(self) {
        let p = self.progress();
        self.printer.into_inner().finished(&p);
    }
}

struct CountingReader<'r, 'a> {
    inner: &'r mut dyn Read,
    owner: &'r Counted<'a>,
}

impl Read for CountingReader<'_, '_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.owner.add(n);
        Ok(n)
    }
}

impl Source for Counted<'_> {
    fn describe(&self) -> String {
        self.src.describe()
    }

    fn records(&self) -> Vec<ImageRecord> {
        self.src.records()
    }

    fn images(&self) -> imgkit_store::Result<Vec<StoredImage>> {
        self.src.images()
    }

    fn read_blobs(
        &self,
        wanted: &[BlobInfo],
        f: &mut dyn FnMut(&BlobInfo, &mut dyn Read) -> imgkit_store::Result<()>,
    ) -> imgkit_store::Result<()> {
        self.src.read_blobs(wanted, &mut |b, r| {
            let mut counted = CountingReader {
                inner: r,
                owner: self,
            };
            f(b, &mut counted)
        })
    }
}
