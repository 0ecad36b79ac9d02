//! A registry as a destination. Before the copy, [`RegistryDestination::expect`] learns which
//! repositories each blob must reach, asks the registry what they hold (`HEAD`, concurrent and
//! bounded) and mounts what one repository of the registry holds into the others. The copy
//! then sends only the rest: each blob is spooled to a temporary file while its digest is
//! checked (nothing unchecked is ever sent), compressed when it arrived uncompressed, and
//! uploaded in the background, several at a time; repositories after the first get it by
//! mount (an upload when the registry declines). The commit waits for every upload, then pushes
//! the manifests, byte for byte as the source holds them (or rebuilt when layers were
//! compressed on the way, which the report says), under each tag: manifests last.

use std::collections::{HashMap, HashSet};
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use futures_util::StreamExt as _;
use imgkit_store::{BlobInfo, Destination, StoredImage};
use imgkit_types::{Digest, ImageRef};
use serde::Serialize;
use serde_json::Value;
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;

use crate::cache::BlobCache;
use crate::client::Client;
use crate::error::{Error, Result, into_store};
use crate::proto;
use crate::spec::RegistrySpec;

/// How layers that arrive uncompressed are sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Compress {
    /// gzip (level 1): every client reads it.
    #[default]
    Gzip,
    Zstd,
    /// As they are (an uncompressed OCI layer is valid; it is bigger on the wire).
    None,
}

impl Compress {
    pub fn name(self) -> &'static str {
        match self {
            Compress::Gzip => "gzip",
            Compress::Zstd => "zstd",
            Compress::None => "none",
        }
    }
}

impl std::str::FromStr for Compress {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "gzip" => Ok(Compress::Gzip),
            "zstd" => Ok(Compress::Zstd),
            "none" => Ok(Compress::None),
            _ => Err(format!("{s:?} is not gzip, zstd or none")),
        }
    }
}

const MEDIA_OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";
const MEDIA_DOCKER_LAYER: &str = "application/vnd.docker.image.rootfs.diff.tar";
const MEDIA_OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";

fn uncompressed_layer(media_type: &str) -> bool {
    matches!(media_type, MEDIA_OCI_LAYER | MEDIA_DOCKER_LAYER)
}

/// What a push did, over the wire.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PushStats {
    /// Blobs uploaded and the bytes sent (compressed sizes where compressed on the way).
    pub blobs_uploaded: usize,
    pub bytes_uploaded: u64,
    /// Blobs put into a repository by cross-repository mount (no bytes sent).
    pub blobs_mounted: usize,
    /// Deferred mode: blobs received that every repository needing them held already, and
    /// their bytes (as received).
    pub blobs_present: usize,
    pub bytes_present: u64,
    /// Layers compressed on the way.
    pub layers_compressed: usize,
    /// Manifests pushed (one per repository and tag).
    pub manifests_pushed: usize,
    /// Manifests imgkit built (the source had none, or layers were compressed): name, digest.
    pub manifests_made: Vec<(String, String)>,
}

impl PushStats {
    /// Adds what another push into the same registry did (a push in several saves).
    pub fn add(&mut self, other: &PushStats) {
        self.blobs_uploaded += other.blobs_uploaded;
        self.bytes_uploaded += other.bytes_uploaded;
        self.blobs_mounted += other.blobs_mounted;
        self.blobs_present += other.blobs_present;
        self.bytes_present += other.bytes_present;
        self.layers_compressed += other.layers_compressed;
        self.manifests_pushed += other.manifests_pushed;
        self.manifests_made
            .extend(other.manifests_made.iter().cloned());
    }
}

/// A blob as the registry holds it (compressed, when it was compressed on the way).
#[derive(Debug, Clone)]
struct Sent {
    info: BlobInfo,
    /// Whether it was uploaded or mounted anywhere (not: every repository held it already).
    moved: bool,
}

/// A blob received in deferred mode: its spool (as received) and, for an uncompressed layer
/// or a layer whose repositories are known already, the work under way in the background.
struct Prepared {
    raw: tempfile::TempPath,
    work: Option<JoinHandle<Result<Worked>>>,
    /// The work, once it finished (and was found to).
    done: Option<Worked>,
}

/// What the background work on a received blob did: the compressed file and its descriptor
/// (for an uncompressed layer), and the early send into the repositories known to need it
/// ([`RegistryDestination::expect_layers`]).
struct Worked {
    compressed: Option<(tempfile::TempPath, BlobInfo)>,
    sent: Option<Sent>,
}

/// A registry, opened for pushing.
pub struct RegistryDestination {
    client: Arc<Client>,
    rt: tokio::runtime::Handle,
    spec: RegistrySpec,
    compress: Compress,
    sem: Arc<Semaphore>,
    cache: Arc<BlobCache>,
    tmp: tempfile::TempDir,
    images: Vec<StoredImage>,
    /// Each blob's repositories (in order), by its digest in the source.
    needs: HashMap<Digest, Vec<String>>,
    /// Repositories that hold each blob, by its digest in the registry.
    present: Arc<Mutex<HashMap<Digest, HashSet<String>>>>,
    /// Layers compressed on the way: source digest → what the registry holds.
    compressed: Arc<Mutex<HashMap<Digest, BlobInfo>>>,
    /// Manifests the images' repositories all hold already.
    manifests_present: HashSet<Digest>,
    /// Blobs of multi-platform images: sent as they are (their manifests are kept byte for
    /// byte, so their layers are never recompressed).
    index_blobs: HashSet<Digest>,
    /// Manifest bytes put by the copy.
    manifests: HashMap<Digest, Vec<u8>>,
    running: Vec<(Digest, JoinHandle<Result<Sent>>)>,
    /// Deferred mode ([`RegistryDestination::defer`]): the images are learnt at the commit.
    deferred: bool,
    /// Deferred mode: each blob received, spooled (digest checked) and, for an uncompressed
    /// layer, compressed in the background; sent at the commit to what needs it.
    prepared: HashMap<Digest, Prepared>,
    /// Deferred mode: the repositories each layer goes to, by its diff ID, known before the
    /// stream starts ([`RegistryDestination::expect_layers`]): such a layer is sent as soon as
    /// it is received (and compressed), while the stream goes on.
    early: HashMap<Digest, Vec<String>>,
    /// Deferred mode: the first image named for each layer of `early` (for messages).
    early_image: HashMap<Digest, String>,
    /// Uploads (the early sends and the commit's), several at a time.
    upload_sem: Arc<Semaphore>,
    stats: Arc<Mutex<PushStats>>,
    /// The registry error behind the last store error returned (the traits carry store errors).
    failed: Option<Error>,
}

impl std::fmt::Debug for RegistryDestination {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistryDestination")
            .field("spec", &self.spec)
            .finish_non_exhaustive()
    }
}

fn repo_key(digest: &Digest, repo: &str) -> String {
    format!("{repo}@{digest}")
}

impl RegistryDestination {
    pub(crate) fn new(
        client: Arc<Client>,
        rt: tokio::runtime::Handle,
        spec: RegistrySpec,
        compress: Compress,
        jobs: usize,
        cache_dir: Option<&Path>,
    ) -> Result<Self> {
        let tmp = tempfile::Builder::new()
            .prefix("imgkit-push-")
            .tempdir()
            .map_err(Error::io("cannot create a temporary directory"))?;
        Ok(Self {
            client,
            rt,
            spec,
            compress,
            sem: Arc::new(Semaphore::new(jobs.max(1))),
            cache: Arc::new(BlobCache::open(cache_dir)),
            tmp,
            images: Vec::new(),
            needs: HashMap::new(),
            present: Arc::default(),
            compressed: Arc::default(),
            manifests_present: HashSet::new(),
            index_blobs: HashSet::new(),
            manifests: HashMap::new(),
            running: Vec::new(),
            deferred: false,
            prepared: HashMap::new(),
            early: HashMap::new(),
            early_image: HashMap::new(),
            upload_sem: Arc::new(Semaphore::new(jobs.max(1))),
            stats: Arc::default(),
            failed: None,
        })
    }

    /// What the push sent, mounted and made.
    pub fn stats(&self) -> PushStats {
        self.stats.lock().expect("lock").clone()
    }

    /// The registry error behind a failed copy (the store traits carry only their own).
    pub fn take_error(&mut self) -> Option<Error> {
        self.failed.take()
    }

    fn fail(&mut self, e: Error, digest: Option<&Digest>) -> imgkit_store::Error {
        let s = into_store(&e, digest);
        self.failed = Some(e);
        s
    }

    fn should_compress(&self, b: &BlobInfo) -> bool {
        self.compress != Compress::None
            && uncompressed_layer(&b.media_type)
            && !self.index_blobs.contains(&b.digest)
    }

    /// The digest the registry holds (or will hold) a source blob under, when known.
    fn registry_digest(&self, b: &BlobInfo) -> Option<Digest> {
        if !self.should_compress(b) {
            return Some(b.digest.clone());
        }
        if let Some(c) = self.compressed.lock().expect("lock").get(&b.digest) {
            return Some(c.digest.clone());
        }
        None
    }

    /// The repository of each name of `image` in this registry.
    fn repos_of(&self, image: &StoredImage) -> Result<Vec<String>> {
        let mut out: Vec<String> = Vec::new();
        for n in &image.names {
            let repo = self.spec.repository_of(n).ok_or_else(|| {
                Error::Config(format!(
                    "{n} is not a name in {} (names are made with RegistrySpec::target)",
                    self.spec
                ))
            })?;
            if !out.contains(&repo) {
                out.push(repo);
            }
        }
        if out.is_empty() {
            return Err(Error::Config(format!(
                "image {} has no name to push it under",
                image.id()
            )));
        }
        Ok(out)
    }

    /// Learns the images about to be copied (named in this registry: see
    /// [`RegistrySpec::target`]), asks the registry which of their blobs and manifests each
    /// repository holds, and mounts into a repository what another one holds.
    pub fn expect(&mut self, images: &[StoredImage]) -> Result<()> {
        self.images = images.to_vec();
        self.index_blobs = images
            .iter()
            .filter(|i| i.is_index())
            .flat_map(|i| i.blobs().into_iter().map(|b| b.digest.clone()))
            .collect();
        let mut needs: HashMap<Digest, Vec<String>> = HashMap::new();
        for image in images {
            let repos = self.repos_of(image)?;
            for b in image.blobs() {
                let e = needs.entry(b.digest.clone()).or_default();
                for r in &repos {
                    if !e.contains(r) {
                        e.push(r.clone());
                    }
                }
            }
        }
        // Compressions made by earlier runs (checked by HEAD below, like everything else).
        for image in images {
            for b in image.blobs() {
                if self.should_compress(b)
                    && let Some(c) = self.cache.compressed(&b.digest, self.compress.name())
                {
                    // What this push compressed itself wins over an older run's fact.
                    self.compressed
                        .lock()
                        .expect("lock")
                        .entry(b.digest.clone())
                        .or_insert(c);
                }
            }
        }
        // What early sends put there already is not asked again.
        let mut present: HashMap<Digest, HashSet<String>> =
            self.present.lock().expect("lock").clone();
        let mut pairs: Vec<(Digest, String)> = Vec::new();
        let mut seen = HashSet::new();
        for image in images {
            for b in image.blobs() {
                let Some(d) = self.registry_digest(b) else {
                    continue;
                };
                for r in &needs[&b.digest] {
                    if present.get(&d).is_some_and(|s| s.contains(r)) {
                        continue;
                    }
                    if seen.insert(repo_key(&d, r)) {
                        pairs.push((d.clone(), r.clone()));
                    }
                }
            }
        }
        let c = self.client.clone();
        let heads: Vec<Result<(Digest, String, bool)>> = self.rt.block_on(
            futures_util::stream::iter(pairs)
                .map(|(d, r)| {
                    let c = c.clone();
                    async move {
                        let has = proto::has_blob(&c, &r, &d).await?;
                        Ok((d, r, has))
                    }
                })
                .buffer_unordered(16)
                .collect(),
        );
        let mut missing: Vec<(Digest, String)> = Vec::new();
        for h in heads {
            let (d, r, has) = h?;
            if has {
                present.entry(d).or_default().insert(r);
            } else {
                missing.push((d, r));
            }
        }
        // Mount what one repository holds into those that lack it: from this push's repos,
        // then from repositories earlier pushes to this registry put it in.
        let mounts: Vec<(Digest, String, Vec<String>)> = missing
            .into_iter()
            .filter_map(|(d, r)| {
                let mut from: Vec<String> = present
                    .get(&d)
                    .map(|s| s.iter().cloned().collect())
                    .unwrap_or_default();
                for known in self.cache.repositories(self.spec.host(), &d) {
                    if known != r && !from.contains(&known) {
                        from.push(known);
                    }
                }
                from.truncate(3);
                (!from.is_empty()).then_some((d, r, from))
            })
            .collect();
        let mounted: Vec<(Digest, String, bool)> = self.rt.block_on(
            futures_util::stream::iter(mounts)
                .map(|(d, r, from)| {
                    let c = c.clone();
                    async move {
                        for f in &from {
                            if let Ok(true) = proto::mount(&c, &r, f, &d).await {
                                return (d, r, true);
                            }
                        }
                        (d, r, false)
                    }
                })
                .buffer_unordered(16)
                .collect(),
        );
        for (d, r, ok) in mounted {
            if ok {
                present.entry(d).or_default().insert(r);
                self.stats.lock().expect("lock").blobs_mounted += 1;
            }
        }
        self.needs = needs;
        *self.present.lock().expect("lock") = present;
        // Manifests: the ones every repository of an image already holds.
        let mut checks: Vec<(Digest, String)> = Vec::new();
        for image in images {
            if let Some((bytes, _)) = self.final_manifest(image, &image.manifest_bytes) {
                let d = proto::sha256(&bytes);
                for r in self.repos_of(image)? {
                    checks.push((d.clone(), r));
                }
            }
        }
        let found: Vec<Result<(Digest, bool)>> = self.rt.block_on(
            futures_util::stream::iter(checks)
                .map(|(d, r)| {
                    let c = c.clone();
                    async move { Ok((d.clone(), proto::has_manifest(&c, &r, &d).await?)) }
                })
                .buffer_unordered(16)
                .collect(),
        );
        let mut all: HashMap<Digest, bool> = HashMap::new();
        for f in found {
            let (d, has) = f?;
            let e = all.entry(d).or_insert(true);
            *e &= has;
        }
        self.manifests_present = all
            .into_iter()
            .filter_map(|(d, has)| has.then_some(d))
            .collect();
        Ok(())
    }

    /// The manifest the registry gets for `image`: the source's bytes, or (when layers were
    /// compressed on the way) one rebuilt with the compressed layers, and its media type.
    /// `None` while a compressed layer's digest is not known yet.
    fn final_manifest(&self, image: &StoredImage, bytes: &[u8]) -> Option<(Vec<u8>, String)> {
        let compressed = self.compressed.lock().expect("lock");
        if !image.layers.iter().any(|l| self.should_compress(l)) {
            return Some((bytes.to_vec(), image.manifest.media_type.clone()));
        }
        let mut m: Value = serde_json::from_slice(bytes).ok()?;
        let docker = m["mediaType"].as_str() == Some(proto::MEDIA_DOCKER_MANIFEST);
        // zstd layers exist only in OCI manifests.
        let to_oci = docker && self.compress == Compress::Zstd;
        let layers = m["layers"].as_array_mut()?;
        for l in layers.iter_mut() {
            let digest: Digest = l["digest"].as_str()?.parse().ok()?;
            let media = l["mediaType"].as_str().unwrap_or_default().to_owned();
            if !(self.compress != Compress::None && uncompressed_layer(&media)) {
                continue;
            }
            let c = compressed.get(&digest)?;
            l["digest"] = c.digest.to_string().into();
            l["size"] = c.size.into();
            l["mediaType"] = compressed_type(&media, self.compress, to_oci).into();
        }
        if to_oci {
            m["mediaType"] = proto::MEDIA_OCI_MANIFEST.into();
            m["config"]["mediaType"] = MEDIA_OCI_CONFIG.into();
        }
        let media_type = m["mediaType"]
            .as_str()
            .unwrap_or(proto::MEDIA_OCI_MANIFEST)
            .to_owned();
        Some((
            serde_json::to_vec(&m).expect("a JSON value serializes"),
            media_type,
        ))
    }

    /// The image a blob belongs to, for messages.
    fn image_of(&self, digest: &Digest) -> String {
        self.images
            .iter()
            .find(|i| i.blobs().iter().any(|b| &b.digest == digest))
            .and_then(|i| i.names.first())
            .map_or_else(|| "an image".to_owned(), ToString::to_string)
    }

    /// The first upload that failed, if one has finished.
    fn finished_failure(&mut self) -> Option<(Digest, Error)> {
        let idx = self.running.iter().position(|(_, h)| h.is_finished())?;
        let (d, h) = self.running.remove(idx);
        match self.rt.block_on(h) {
            Ok(Ok(sent)) => {
                self.note_sent(&d, sent);
                None
            }
            Ok(Err(e)) => Some((d, e)),
            Err(e) => Some((
                d,
                Error::Io {
                    what: "an upload task".into(),
                    source: io::Error::other(e.to_string()),
                },
            )),
        }
    }

    fn note_sent(&self, source: &Digest, sent: Sent) {
        if &sent.info.digest != source {
            self.compressed
                .lock()
                .expect("lock")
                .insert(source.clone(), sent.info);
        }
    }

    fn push_error(&self, digest: &Digest, e: Error) -> Error {
        let repository = first_repository(self.needs.get(digest));
        let image = self.image_of(digest);
        self.push_error_naming(digest, e, repository, image)
    }

    /// `e` as the push of `digest` into `repository`, for `image` (an error that names them
    /// already stays as it is).
    fn push_error_naming(
        &self,
        digest: &Digest,
        e: Error,
        repository: String,
        image: String,
    ) -> Error {
        if let Error::Push { .. } = e {
            return e;
        }
        Error::Push {
            host: self.spec.host().to_owned(),
            repository,
            image,
            digest: digest.clone(),
            source: Box::new(e),
        }
    }

    /// Deferred mode, for a stream whose images are known only at its end (an engine's
    /// save): blobs are received before the images that name them, so nothing can be asked of
    /// the registry yet (`HEAD` and mounts are per repository). Each blob is spooled as it
    /// arrives (its digest checked) and an uncompressed layer compressed in the background,
    /// several at a time, while the stream goes on; the commit learns the images
    /// ([`RegistryDestination::expect`]: `HEAD`, mounts), uploads what the registry lacks,
    /// several at a time, and pushes the manifests last. A repeat push sends no blob bytes
    /// (the commit asks first); what is read and not needed is only spooled.
    pub fn defer(&mut self) {
        self.deferred = true;
    }

    /// Deferred mode, told before the stream starts which layers each image has (its diff
    /// IDs, in order: an engine's inspect gives them) and the names it goes under in this
    /// registry: each such layer is sent as soon as it is received and compressed (`HEAD` in
    /// its repositories, uploaded to the first that lacks it, mounted into the others), while
    /// the stream goes on, instead of at the commit. The commit still asks about everything
    /// (what was sent early is known to be there), sends the rest, and pushes the manifests
    /// last; a layer the images turn out not to need was only sent ahead.
    pub fn expect_layers(&mut self, images: &[(Vec<ImageRef>, Vec<Digest>)]) {
        for (names, diff_ids) in images {
            let repos: Vec<String> = names
                .iter()
                .filter_map(|n| self.spec.repository_of(n))
                .collect();
            for d in diff_ids {
                if let Some(n) = names.first() {
                    self.early_image
                        .entry(d.clone())
                        .or_insert_with(|| n.to_string());
                }
                let e = self.early.entry(d.clone()).or_default();
                for r in &repos {
                    if !e.contains(r) {
                        e.push(r.clone());
                    }
                }
            }
        }
        self.early.retain(|_, repos| !repos.is_empty());
    }

    /// The first early send (or compression) that failed, among those that have finished.
    fn finished_early_failure(&mut self) -> Option<Error> {
        let finished: Vec<Digest> = self
            .prepared
            .iter()
            .filter(|(_, p)| p.work.as_ref().is_some_and(JoinHandle::is_finished))
            .map(|(d, _)| d.clone())
            .collect();
        for d in finished {
            let p = self.prepared.get_mut(&d).expect("listed above");
            let h = p.work.take().expect("listed above");
            let failed = match self.rt.block_on(h) {
                Ok(Ok(w)) => {
                    p.done = Some(w);
                    continue;
                }
                Ok(Err(e)) => e,
                Err(e) => Error::io("a compression task")(io::Error::other(e.to_string())),
            };
            return Some(self.push_error_early(&d, failed));
        }
        None
    }

    /// A send of `blob` into `repos`, sharing this push's client, counts and cache.
    fn job(
        &self,
        blob: BlobInfo,
        compress: Option<Compress>,
        ready: Option<BlobInfo>,
        ask: bool,
        repos: Vec<String>,
    ) -> Job {
        Job {
            c: self.client.clone(),
            blob,
            compress,
            ready,
            ask,
            repos,
            present: self.present.clone(),
            stats: self.stats.clone(),
            cache: self.cache.clone(),
            host: self.spec.host().to_owned(),
            count_present: false,
        }
    }

    /// Deferred mode: keeps a spooled blob and starts its compression (bounded by the jobs)
    /// and, when its repositories are known already, its send.
    fn prepare(&mut self, info: &BlobInfo, raw: tempfile::TempPath) -> Result<()> {
        let compress = (self.compress != Compress::None && uncompressed_layer(&info.media_type))
            .then_some(self.compress);
        let early = self
            .early
            .get(&info.digest)
            .cloned()
            .map(|repos| self.job(info.clone(), None, None, true, repos));
        if compress.is_none() && early.is_none() {
            self.prepared.insert(
                info.digest.clone(),
                Prepared {
                    raw,
                    work: None,
                    done: None,
                },
            );
            return Ok(());
        }
        let permit = self
            .rt
            .block_on(self.sem.clone().acquire_owned())
            .expect("the semaphore is never closed");
        let src = raw.to_path_buf();
        let blob = info.clone();
        let uploads = self.upload_sem.clone();
        let work = self.rt.spawn(async move {
            let compressed = if let Some(algo) = compress {
                let media = blob.media_type.clone();
                let layer = blob.digest.clone();
                let src = src.clone();
                let done = tokio::task::spawn_blocking(move || {
                    let _permit = permit;
                    let dst = src.with_extension(algo.name());
                    let (digest, size) = compress_file(&src, &dst, algo)
                        .map_err(Error::io(format!("compressing layer {layer}")))?;
                    let keep = tempfile::TempPath::try_from_path(dst)
                        .map_err(Error::io("a compressed layer's temporary file"))?;
                    Ok::<_, Error>((
                        keep,
                        BlobInfo {
                            digest,
                            size,
                            media_type: compressed_type(&media, algo, false).to_owned(),
                        },
                    ))
                })
                .await
                .map_err(|e| Error::io("a compression task")(io::Error::other(e.to_string())))??;
                Some(done)
            } else {
                drop(permit);
                None
            };
            let sent = match early {
                Some(mut job) => {
                    let (file, ready) = match &compressed {
                        Some((path, info)) => (path.to_path_buf(), info.clone()),
                        None => (src, blob),
                    };
                    job.ready = Some(ready);
                    let permit = uploads
                        .acquire_owned()
                        .await
                        .expect("the semaphore is never closed");
                    Some(send_blob(job, file, permit).await?)
                }
                None => None,
            };
            Ok(Worked { compressed, sent })
        });
        self.prepared.insert(
            info.digest.clone(),
            Prepared {
                raw,
                work: Some(work),
                done: None,
            },
        );
        // An early send that failed stops the stream (the registry's error is the one to tell).
        match self.finished_early_failure() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Deferred mode's commit, before the usual one: every compression and early send
    /// finished, the images learnt (`HEAD`, mounts), and each blob a repository lacks sent
    /// from its spool.
    fn send_prepared(&mut self, images: &[StoredImage]) -> Result<()> {
        let prepared = std::mem::take(&mut self.prepared);
        // Source digest → (the file to send, the blob as the registry gets it); raw spools
        // stay too (a layer of an index image is sent as it is).
        let mut files: HashMap<
            Digest,
            (tempfile::TempPath, Option<(tempfile::TempPath, BlobInfo)>),
        > = HashMap::new();
        // Blobs sent early that were uploaded or mounted somewhere (not "already there").
        let mut moved: HashSet<Digest> = HashSet::new();
        for (d, p) in prepared {
            let worked = match (p.work, p.done) {
                (_, Some(w)) => w,
                (Some(h), None) => self
                    .rt
                    .block_on(h)
                    .map_err(|e| Error::io("a compression task")(io::Error::other(e.to_string())))
                    .and_then(|r| r)
                    .map_err(|e| self.push_error_before(&d, e, images))?,
                (None, None) => Worked {
                    compressed: None,
                    sent: None,
                },
            };
            if let Some((_, info)) = &worked.compressed {
                self.stats.lock().expect("lock").layers_compressed += 1;
                self.cache
                    .remember_compressed(&d, self.compress.name(), &info.digest, info.size);
                self.compressed
                    .lock()
                    .expect("lock")
                    .insert(d.clone(), info.clone());
            }
            if worked.sent.is_some_and(|s| s.moved) {
                moved.insert(d.clone());
            }
            files.insert(d, (p.raw, worked.compressed));
        }
        self.expect(images)?;
        let mut seen = HashSet::new();
        let blobs: Vec<BlobInfo> = images
            .iter()
            .flat_map(StoredImage::blobs)
            .filter(|b| seen.insert(b.digest.clone()))
            .cloned()
            .collect();
        for b in blobs {
            let Some(d) = self.registry_digest(&b) else {
                continue;
            };
            let Some(repos) = self.needs.get(&b.digest).cloned() else {
                continue;
            };
            let lacking = {
                let present = self.present.lock().expect("lock");
                repos
                    .iter()
                    .any(|r| !present.get(&d).is_some_and(|s| s.contains(r)))
            };
            if !lacking {
                if !moved.contains(&b.digest) {
                    let mut s = self.stats.lock().expect("lock");
                    s.blobs_present += 1;
                    s.bytes_present += b.size;
                }
                continue;
            }
            // Not received and not there: the commit's check names it.
            let Some((raw, compressed)) = files.remove(&b.digest) else {
                continue;
            };
            let (path, ready) = match compressed {
                Some((path, info)) if self.should_compress(&b) => (path, info),
                _ => (raw, b.clone()),
            };
            let permit = self
                .rt
                .block_on(self.upload_sem.clone().acquire_owned())
                .expect("the semaphore is never closed");
            let job = self.job(b.clone(), None, Some(ready), false, repos);
            let handle = self.rt.spawn(send_blob(job, path, permit));
            self.running.push((b.digest.clone(), handle));
        }
        Ok(())
    }

    /// `push_error` for an early send, while the stream goes on (the images are not known
    /// yet: the repositories it was sent to tell the image).
    fn push_error_early(&self, digest: &Digest, e: Error) -> Error {
        let repository = first_repository(self.early.get(digest));
        let image = self
            .early_image
            .get(digest)
            .cloned()
            .unwrap_or_else(|| format!("{}/{repository}", self.spec.host()));
        self.push_error_naming(digest, e, repository, image)
    }

    /// `push_error` before `expect` has learnt the images (`images` tell the image).
    fn push_error_before(&self, digest: &Digest, e: Error, images: &[StoredImage]) -> Error {
        let image = images
            .iter()
            .find(|i| i.blobs().iter().any(|b| &b.digest == digest))
            .and_then(|i| i.names.first())
            .map_or_else(|| "an image".to_owned(), ToString::to_string);
        Error::Push {
            host: self.spec.host().to_owned(),
            repository: String::new(),
            image,
            digest: digest.clone(),
            source: Box::new(e),
        }
    }

    /// Spools a blob whose digest is not known yet, hashing it as it streams.
    fn spool_hashed(
        &self,
        size: u64,
        media_type: &str,
        content: &mut dyn Read,
    ) -> Result<(tempfile::TempPath, BlobInfo)> {
        use sha2::Digest as _;
        let file = tempfile::NamedTempFile::new_in(self.tmp.path())
            .map_err(Error::io("cannot create a temporary file"))?;
        let (f, path) = file.into_parts();
        let mut w = Hashing {
            inner: BufWriter::with_capacity(1 << 20, f),
            hasher: sha2::Sha256::new(),
            n: 0,
        };
        io::copy(content, &mut w).map_err(|source| Error::Io {
            what: "reading a layer".into(),
            source,
        })?;
        w.flush()
            .map_err(Error::io("cannot write a temporary file"))?;
        if size != 0 && w.n != size {
            return Err(Error::Io {
                what: "reading a layer".into(),
                source: io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("{} bytes of {size}", w.n),
                ),
            });
        }
        let digest = Digest::sha256_hex(&proto::hex(&w.hasher.finalize())).expect("sha256 hex");
        Ok((
            path,
            BlobInfo {
                digest,
                size: w.n,
                media_type: media_type.to_owned(),
            },
        ))
    }

    fn spool(&self, blob: &BlobInfo, content: &mut dyn Read) -> Result<tempfile::TempPath> {
        let file = tempfile::NamedTempFile::new_in(self.tmp.path())
            .map_err(Error::io("cannot create a temporary file"))?;
        let (f, path) = file.into_parts();
        let mut w = imgkit_store::DigestWriter::new(BufWriter::with_capacity(1 << 20, f));
        io::copy(content, &mut w).map_err(|source| Error::Io {
            what: format!("reading blob {}", blob.digest),
            source,
        })?;
        let buf = w.finish(&blob.digest, blob.size)?;
        buf.into_inner()
            .map_err(|e| Error::io("cannot write a temporary file")(e.into_error()))?;
        Ok(path)
    }
}

/// The first of the repositories a blob goes to ("" when none is known).
fn first_repository(repos: Option<&Vec<String>>) -> String {
    repos.and_then(|r| r.first().cloned()).unwrap_or_default()
}

fn compressed_type(media: &str, c: Compress, to_oci: bool) -> &'static str {
    match (media, c, to_oci) {
        (MEDIA_DOCKER_LAYER, Compress::Gzip, false) => {
            "application/vnd.docker.image.rootfs.diff.tar.gzip"
        }
        (_, Compress::Zstd, _) => "application/vnd.oci.image.layer.v1.tar+zstd",
        _ => "application/vnd.oci.image.layer.v1.tar+gzip",
    }
}

/// A writer that hashes and counts.
struct Hashing<W> {
    inner: W,
    hasher: sha2::Sha256,
    n: u64,
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        use sha2::Digest as _;
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.n += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Compresses `src` into `dst`: the digest and size of what was written.
fn compress_file(src: &Path, dst: &Path, c: Compress) -> io::Result<(Digest, u64)> {
    use sha2::Digest as _;
    let mut input = BufReader::with_capacity(1 << 20, std::fs::File::open(src)?);
    let out = Hashing {
        inner: BufWriter::with_capacity(1 << 20, std::fs::File::create(dst)?),
        hasher: sha2::Sha256::new(),
        n: 0,
    };
    let mut out = match c {
        Compress::Gzip => {
            let mut out = out;
            gzip(&mut input, &mut out)?;
            out
        }
        Compress::Zstd => {
            let mut e = zstd::stream::write::Encoder::new(out, 3)?;
            e.include_checksum(true)?;
            io::copy(&mut input, &mut e)?;
            e.finish()?
        }
        Compress::None => unreachable!("nothing to compress"),
    };
    out.flush()?;
    let digest = Digest::sha256_hex(&proto::hex(&out.hasher.finalize())).expect("sha256 hex");
    Ok((digest, out.n))
}

/// A chunk of a layer: compressed (deflate level 1) or stored, as a sample of it says.
const GZIP_CHUNK: usize = 1 << 20;
/// The sample of each chunk that decides: deflated, it must shrink below 97%.
const GZIP_SAMPLE: usize = 16 << 10;

/// `input` as one gzip member: deflate at level 1, except the chunks (1 MiB) that deflate
/// cannot shrink (already-compressed files, random data), which are stored as they are. Level 1
/// on such data is slow (about 90 MB/s here) and makes it 5% bigger; a stored chunk costs a
/// copy. Switching: the compressor's output is flushed to a byte boundary (a sync flush), the
/// chunk written as stored blocks, and the compressor reset (a back reference never crosses a
/// stored chunk). Any gzip reader reads the result.
fn gzip(input: &mut dyn Read, out: &mut dyn Write) -> io::Result<()> {
    use flate2::{Compress, Compression, FlushCompress};
    // The gzip header: deflate, no name, no time, OS unknown.
    out.write_all(&[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff])?;
    let mut deflate = Compress::new(Compression::new(1), false);
    let mut probe = Compress::new(Compression::new(1), false);
    let mut crc = flate2::Crc::new();
    let mut chunk = vec![0u8; GZIP_CHUNK];
    let mut buf: Vec<u8> = Vec::with_capacity(GZIP_CHUNK / 4);
    // Whether the compressor has input since its last reset (its output is still open).
    let mut open = false;
    loop {
        let n = read_full(input, &mut chunk)?;
        let last = n < GZIP_CHUNK;
        let data = &chunk[..n];
        crc.update(data);
        let store = n > 0 && !shrinks(&mut probe, &data[..n.min(GZIP_SAMPLE)], &mut buf)?;
        if store {
            if open {
                deflate_into(&mut deflate, &[], FlushCompress::Sync, out, &mut buf)?;
                deflate.reset();
                open = false;
            }
            for block in data.chunks(65_535) {
                let len = block.len() as u16;
                out.write_all(&[0])?;
                out.write_all(&len.to_le_bytes())?;
                out.write_all(&(!len).to_le_bytes())?;
                out.write_all(block)?;
            }
            if last {
                // The final block: empty, stored.
                out.write_all(&[1, 0, 0, 0xff, 0xff])?;
            }
        } else if last {
            deflate_into(&mut deflate, data, FlushCompress::Finish, out, &mut buf)?;
        } else {
            deflate_into(&mut deflate, data, FlushCompress::None, out, &mut buf)?;
            open = true;
        }
        if last {
            break;
        }
    }
    out.write_all(&crc.sum().to_le_bytes())?;
    out.write_all(&crc.amount().to_le_bytes())?;
    Ok(())
}

/// Whether deflate at level 1 shrinks `sample` below 97% of its size.
fn shrinks(probe: &mut flate2::Compress, sample: &[u8], buf: &mut Vec<u8>) -> io::Result<bool> {
    probe.reset();
    let mut size = 0usize;
    deflate_into(
        probe,
        sample,
        flate2::FlushCompress::Finish,
        &mut CountingSink(&mut size),
        buf,
    )?;
    Ok((size as u64) * 100 < (sample.len() as u64) * 97)
}

/// Counts what is written, keeps nothing.
struct CountingSink<'a>(&'a mut usize);

impl Write for CountingSink<'_> {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        *self.0 += b.len();
        Ok(b.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Feeds `input` to `c` with `flush`, writing what comes out; returns when the input is taken
/// (and, for a sync flush or the finish, everything is out).
fn deflate_into(
    c: &mut flate2::Compress,
    mut input: &[u8],
    flush: flate2::FlushCompress,
    out: &mut dyn Write,
    buf: &mut Vec<u8>,
) -> io::Result<()> {
    use flate2::{FlushCompress, Status};
    loop {
        buf.clear();
        let before = c.total_in();
        let status = c
            .compress_vec(input, buf, flush)
            .map_err(io::Error::other)?;
        input = &input[(c.total_in() - before) as usize..];
        out.write_all(buf)?;
        let done = match flush {
            FlushCompress::Finish => status == Status::StreamEnd,
            FlushCompress::None => input.is_empty(),
            _ => input.is_empty() && buf.len() < buf.capacity(),
        };
        if done {
            return Ok(());
        }
    }
}

/// Reads until `buf` is full or `r` ends: how much was read.
fn read_full(r: &mut dyn Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// One blob into every repository that lacks it: compressed first when asked, uploaded to the
/// first, mounted into the others (uploaded again where the registry declines the mount).
struct Job {
    c: Arc<Client>,
    blob: BlobInfo,
    compress: Option<Compress>,
    /// The file holds the blob as the registry gets it already (compressed before, in
    /// deferred mode), with this descriptor; its repositories were asked at the commit.
    ready: Option<BlobInfo>,
    /// Ask each repository first (`HEAD`): what it holds was not asked about before.
    ask: bool,
    repos: Vec<String>,
    present: Arc<Mutex<HashMap<Digest, HashSet<String>>>>,
    stats: Arc<Mutex<PushStats>>,
    cache: Arc<BlobCache>,
    host: String,
    /// Count the blob as already there (`blobs_present`) when every repository held it once
    /// compressed: a blob `put_blob` took outside deferred mode (the deferred commit counts
    /// its own).
    count_present: bool,
}

/// Notes that repository `repo` holds blob `digest` (asked, mounted or uploaded).
fn holds(present: &Mutex<HashMap<Digest, HashSet<String>>>, digest: &Digest, repo: String) {
    present
        .lock()
        .expect("lock")
        .entry(digest.clone())
        .or_default()
        .insert(repo);
}

async fn send_blob(
    job: Job,
    path: impl AsRef<Path> + Send,
    _permit: tokio::sync::OwnedSemaphorePermit,
) -> Result<Sent> {
    let Job {
        c,
        blob,
        compress,
        ready,
        ask,
        repos,
        present,
        stats,
        cache,
        host,
        count_present,
    } = job;
    let (file, info, _compressed_path) = if let Some(info) = ready {
        (path.as_ref().to_path_buf(), info, None)
    } else if let Some(algo) = compress {
        let src: PathBuf = path.as_ref().to_path_buf();
        let dst = src.with_extension(algo.name());
        let d2 = dst.clone();
        let (digest, size) = tokio::task::spawn_blocking(move || compress_file(&src, &d2, algo))
            .await
            .map_err(|e| Error::io("compressing")(io::Error::other(e.to_string())))?
            .map_err(Error::io(format!("compressing layer {}", blob.digest)))?;
        stats.lock().expect("lock").layers_compressed += 1;
        cache.remember_compressed(&blob.digest, algo.name(), &digest, size);
        let info = BlobInfo {
            digest,
            size,
            media_type: compressed_type(&blob.media_type, algo, false).to_owned(),
        };
        let keep = tempfile::TempPath::try_from_path(dst.clone())
            .map_err(Error::io("a compressed layer's temporary file"))?;
        (dst, info, Some(keep))
    } else {
        (path.as_ref().to_path_buf(), blob.clone(), None)
    };
    // What the registry already holds of it (a compressed layer may be there from before).
    let mut lacking = Vec::new();
    {
        let have = present.lock().expect("lock").get(&info.digest).cloned();
        for r in &repos {
            if have.as_ref().is_some_and(|h| h.contains(r)) {
                continue;
            }
            lacking.push(r.clone());
        }
    }
    if compress.is_some() || ask {
        let mut still = Vec::new();
        for r in lacking {
            if proto::has_blob(&c, &r, &info.digest).await? {
                holds(&present, &info.digest, r);
            } else {
                still.push(r);
            }
        }
        lacking = still;
    }
    let mut holder: Option<String> = repos.iter().find(|r| !lacking.contains(r)).cloned();
    let moved = !lacking.is_empty();
    if ask && holder.is_none() && !lacking.is_empty() {
        // Another repository of this registry may hold it from an earlier push.
        for from in cache.repositories(&host, &info.digest).into_iter().take(3) {
            if repos.contains(&from) {
                continue;
            }
            let r = lacking.remove(0);
            if proto::mount(&c, &r, &from, &info.digest)
                .await
                .unwrap_or(false)
            {
                stats.lock().expect("lock").blobs_mounted += 1;
                holds(&present, &info.digest, r.clone());
                holder = Some(r);
                break;
            }
            lacking.insert(0, r);
        }
    }
    for r in lacking {
        let mounted = match &holder {
            Some(from) => proto::mount(&c, &r, from, &info.digest).await?,
            None => false,
        };
        if mounted {
            stats.lock().expect("lock").blobs_mounted += 1;
        } else {
            proto::upload_file(&c, &r, &file, &info.digest, info.size).await?;
            let mut s = stats.lock().expect("lock");
            s.blobs_uploaded += 1;
            s.bytes_uploaded += info.size;
        }
        cache.remember_repository(&host, &r, &info.digest);
        holds(&present, &info.digest, r.clone());
        holder.get_or_insert(r);
    }
    if !moved && count_present {
        let mut s = stats.lock().expect("lock");
        s.blobs_present += 1;
        s.bytes_present += blob.size;
    }
    drop(path);
    Ok(Sent { info, moved })
}

impl Destination for RegistryDestination {
    fn describe(&self) -> String {
        self.spec.to_string()
    }

    fn has_blob(&self, digest: &Digest) -> bool {
        if self.deferred {
            // Nothing can be asked of the registry before the images are known; a blob
            // received once is not taken twice.
            return self.prepared.contains_key(digest);
        }
        if let Some(image) = self.images.iter().find(|i| &i.manifest.digest == digest) {
            return self
                .final_manifest(image, &image.manifest_bytes)
                .is_some_and(|(b, _)| self.manifests_present.contains(&proto::sha256(&b)));
        }
        let Some(repos) = self.needs.get(digest) else {
            return false;
        };
        let Some(b) = self
            .images
            .iter()
            .flat_map(|i| i.blobs())
            .find(|b| &b.digest == digest)
        else {
            return false;
        };
        let Some(d) = self.registry_digest(b) else {
            return false;
        };
        let present = self.present.lock().expect("lock");
        repos
            .iter()
            .all(|r| present.get(&d).is_some_and(|s| s.contains(r)))
    }

    fn put_blob(&mut self, blob: &BlobInfo, content: &mut dyn Read) -> imgkit_store::Result<()> {
        if let Some((d, e)) = self.finished_failure() {
            let e = self.push_error(&d, e);
            return Err(self.fail(e, Some(&d)));
        }
        if proto::is_manifest_type(&blob.media_type)
            || self
                .images
                .iter()
                .any(|i| i.manifests().iter().any(|(m, _)| m.digest == blob.digest))
        {
            let mut bytes = Vec::new();
            content
                .take(crate::client::MAX_JSON as u64 + 1)
                .read_to_end(&mut bytes)
                .map_err(|source| imgkit_store::Error::Read {
                    digest: blob.digest.clone(),
                    source,
                })?;
            let actual = proto::sha256(&bytes);
            if actual != blob.digest {
                return Err(imgkit_store::Error::DigestMismatch {
                    expected: blob.digest.clone(),
                    actual: actual.to_string(),
                    size: bytes.len() as u64,
                });
            }
            self.manifests.insert(blob.digest.clone(), bytes);
            return Ok(());
        }
        let path = match self.spool(blob, content) {
            Ok(p) => p,
            Err(Error::Store(s)) => return Err(s),
            Err(e) => return Err(self.fail(e, Some(&blob.digest))),
        };
        if self.deferred {
            return match self.prepare(blob, path) {
                Ok(()) => Ok(()),
                Err(e) => Err(self.fail(e, Some(&blob.digest))),
            };
        }
        let Some(repos) = self.needs.get(&blob.digest).cloned() else {
            // Not part of any expected image: nothing needs it.
            return Ok(());
        };
        let permit = self
            .rt
            .block_on(self.sem.clone().acquire_owned())
            .expect("the semaphore is never closed");
        let compress = self.should_compress(blob).then_some(self.compress);
        let job = Job {
            count_present: true,
            ..self.job(blob.clone(), compress, None, false, repos)
        };
        let job = send_blob(job, path, permit);
        let handle = self.rt.spawn(job);
        self.running.push((blob.digest.clone(), handle));
        Ok(())
    }

    fn put_blob_hashed(
        &mut self,
        size: u64,
        media_type: &str,
        content: &mut dyn Read,
    ) -> imgkit_store::Result<(BlobInfo, bool)> {
        let (path, info) = match self.spool_hashed(size, media_type, content) {
            Ok(p) => p,
            Err(Error::Store(s)) => return Err(s),
            Err(e) => return Err(self.fail(e, None)),
        };
        if !self.deferred {
            if self.has_blob(&info.digest) {
                return Ok((info, false));
            }
            let mut file =
                std::fs::File::open(&path).map_err(|source| imgkit_store::Error::Read {
                    digest: info.digest.clone(),
                    source,
                })?;
            self.put_blob(&info, &mut file)?;
            return Ok((info, true));
        }
        if self.prepared.contains_key(&info.digest) {
            return Ok((info, false));
        }
        match self.prepare(&info, path) {
            Ok(()) => Ok((info, true)),
            Err(e) => Err(self.fail(e, Some(&info.digest))),
        }
    }

    fn commit(&mut self, images: &[StoredImage]) -> imgkit_store::Result<()> {
        if self.deferred {
            self.deferred = false;
            if let Err(e) = self.send_prepared(images) {
                return Err(match e {
                    Error::Store(s) => s,
                    e => self.fail(e, None),
                });
            }
        }
        // Every upload first.
        let running = std::mem::take(&mut self.running);
        let mut first_error: Option<(Digest, Error)> = None;
        for (d, h) in running {
            match self.rt.block_on(h) {
                Ok(Ok(sent)) => self.note_sent(&d, sent),
                Ok(Err(e)) => {
                    first_error.get_or_insert((d, e));
                }
                Err(e) => {
                    first_error.get_or_insert((
                        d,
                        Error::io("an upload task")(io::Error::other(e.to_string())),
                    ));
                }
            }
        }
        if let Some((d, e)) = first_error {
            let e = self.push_error(&d, e);
            return Err(self.fail(e, Some(&d)));
        }
        // Every blob in every repository of every image, before any manifest.
        for image in images {
            let repos = match self.repos_of(image) {
                Ok(r) => r,
                Err(e) => return Err(self.fail(e, None)),
            };
            for b in image.blobs() {
                let d = self.registry_digest(b);
                let present = self.present.lock().expect("lock");
                let ok = d.as_ref().is_some_and(|d| {
                    repos
                        .iter()
                        .all(|r| present.get(d).is_some_and(|s| s.contains(r)))
                });
                if !ok {
                    drop(present);
                    return Err(imgkit_store::Error::Incomplete {
                        image: image.id().clone(),
                        digest: b.digest.clone(),
                        destination: self.describe(),
                    });
                }
            }
        }
        // Manifests last, under each name.
        let c = self.client.clone();
        for image in images {
            let source_bytes = self
                .manifests
                .get(&image.manifest.digest)
                .cloned()
                .unwrap_or_else(|| image.manifest_bytes.clone());
            let Some((bytes, media_type)) = self.final_manifest(image, &source_bytes) else {
                let e = Error::Config(format!(
                    "the manifest of {} could not be rebuilt with its compressed layers",
                    image.id()
                ));
                return Err(self.fail(e, None));
            };
            let digest = proto::sha256(&bytes);
            let made = digest != image.manifest.digest;
            // An index's platform manifests first, by digest, in each repository.
            for p in &image.platforms {
                for name in &image.names {
                    let repo = self.spec.repository_of(name).unwrap_or_default();
                    let res = self.rt.block_on(proto::put_manifest(
                        &c,
                        &repo,
                        p.manifest.digest.as_str(),
                        &p.manifest_bytes,
                        &p.manifest.media_type,
                        &name.to_string(),
                    ));
                    if let Err(e) = res {
                        return Err(self.fail(e, Some(&p.manifest.digest)));
                    }
                }
            }
            for name in &image.names {
                let repo = self.spec.repository_of(name).unwrap_or_default();
                let reference = match (name.tag(), name.digest()) {
                    (Some(t), _) => t.to_owned(),
                    _ => digest.to_string(),
                };
                let res = self.rt.block_on(proto::put_manifest(
                    &c,
                    &repo,
                    &reference,
                    &bytes,
                    &media_type,
                    &name.to_string(),
                ));
                if let Err(e) = res {
                    return Err(self.fail(e, Some(&digest)));
                }
                let mut s = self.stats.lock().expect("lock");
                s.manifests_pushed += 1;
                if made {
                    s.manifests_made
                        .push((name.to_string(), digest.to_string()));
                }
            }
        }
        Ok(())
    }

    fn image_ids(&self) -> imgkit_store::Result<Vec<Digest>> {
        let c = self.client.clone();
        let names: Vec<Wanted> = self
            .images
            .iter()
            .flat_map(|i| i.names.iter().map(move |n| (i, n)))
            .filter_map(|(i, n)| {
                let repo = self.spec.repository_of(n)?;
                let reference = n
                    .tag()
                    .map(str::to_owned)
                    .or_else(|| n.digest().map(ToString::to_string))?;
                let index = i
                    .is_index()
                    .then(|| (i.manifest.digest.clone(), i.id().clone()));
                Some((repo, reference, index))
            })
            .collect();
        let host = self.client.host.clone();
        let ids: Vec<Result<Digest>> = self.rt.block_on(
            futures_util::stream::iter(names)
                .map(|(repo, reference, index)| {
                    let c = c.clone();
                    let host = host.clone();
                    async move {
                        let m = proto::get_manifest(&c, &repo, &reference).await?;
                        if let Some((top, id)) = index {
                            // The tag names the index pushed: its image is the one pushed.
                            return Ok(if m.digest == top {
                                id
                            } else {
                                proto::sha256(b"not the index pushed")
                            });
                        }
                        let parsed = m.parse(&host)?;
                        let config = parsed.config.ok_or_else(|| Error::Invalid {
                            host: host.clone(),
                            what: format!("{repo}:{reference}"),
                            detail: "its manifest has no config".into(),
                        })?;
                        proto::parse_digest(&host, "a config digest", &config.digest)
                    }
                })
                .buffered(16)
                .collect(),
        );
        ids.into_iter()
            .map(|r| r.map_err(|e| into_store(&e, None)))
            .collect()
    }
}

/// A name to check: repository, reference, and the index digest and image ID when the image
/// is an index.
type Wanted = (String, String, Option<(Digest, Digest)>);

/// `names` of `image` in `spec`'s registry.
pub fn target_names(spec: &RegistrySpec, names: &[ImageRef]) -> Result<Vec<ImageRef>> {
    names.iter().map(|n| spec.target(n)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Bytes that deflate cannot shrink (xorshift: no need for a random crate).
    fn noise(n: usize, seed: u64) -> Vec<u8> {
        let mut x = seed | 1;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 24) as u8
            })
            .collect()
    }

    fn gunzip(bytes: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(bytes)
            .read_to_end(&mut out)
            .expect("a gzip reader reads it");
        out
    }

    fn gz(data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        gzip(&mut &data[..], &mut out).unwrap();
        out
    }

    #[test]
    fn gzip_reads_back_whatever_the_mix_of_chunks() {
        let text: Vec<u8> = b"a layer of text compresses well. "
            .iter()
            .copied()
            .cycle()
            .take(GZIP_CHUNK * 2 + 77)
            .collect();
        let cases: Vec<Vec<u8>> = vec![
            Vec::new(),
            b"small".to_vec(),
            noise(10, 1),
            text.clone(),
            noise(GZIP_CHUNK * 2, 2),
            noise(GZIP_CHUNK, 3),
            [noise(GZIP_CHUNK, 4), text.clone(), noise(GZIP_CHUNK + 5, 5)].concat(),
            [text.clone(), noise(GZIP_CHUNK * 2 - 3, 6), text.clone()].concat(),
            [noise(GZIP_CHUNK, 7), text[..GZIP_CHUNK].to_vec()].concat(),
        ];
        for (i, data) in cases.iter().enumerate() {
            let z = gz(data);
            assert!(gunzip(&z) == *data, "case {i}: the bytes differ");
        }
    }

    #[test]
    fn gzip_stores_what_deflate_cannot_shrink_and_compresses_the_rest() {
        // Deflate at level 1 makes noise about 5% bigger; stored, it grows by its framing only.
        let data = noise(4 * GZIP_CHUNK, 9);
        let z = gz(&data);
        assert!(
            z.len() < data.len() + data.len() / 1000,
            "{} bytes of noise became {}",
            data.len(),
            z.len()
        );
        let text: Vec<u8> = b"0123456789 abcdefghij "
            .iter()
            .copied()
            .cycle()
            .take(4 * GZIP_CHUNK)
            .collect();
        let z = gz(&text);
        assert!(z.len() < text.len() / 20, "text became {}", z.len());
    }
}
