//! containerd's image store over its gRPC API, as an imgkit [`Source`] and [`Destination`].
//!
//! The async client (tonic, through `containerd-client`) stays inside this crate: a
//! [`Client`] owns its own tokio runtime and every call here blocks. Every request carries the
//! namespace; writes carry a lease.
//!
//! - **Listing** ([`Store::list`]): the images service gives names and targets; manifests,
//!   indexes and configs come from the content store, so records have sizes as `ctr images ls`
//!   counts them, the config's creation time, and the platforms. Records have the same shape as
//!   the `ctr` CLI seam's (`imgkit_engine::ctr`), CRI's alias rows included.
//! - **As a source**: only platforms whose content is here ([`Store::notes`] names the rest);
//!   blobs are read straight from the content store's files when containerd is on this machine
//!   and they can be read (`files.rs`), else stream from `ReadContent`, several read ahead; the
//!   receiver (the archive writer, the destination) checks each digest, once.
//! - **As a destination**: under a lease (expiring on its own if imgkit dies), blobs containerd
//!   lacks are written (pipelined `Write` requests, the expected digest and size given, so
//!   containerd checks them at commit); blobs it has are held by the lease. At commit, gc
//!   labels on manifests, then the images unpacked into the snapshotter (as `ctr images
//!   import` does; told the diff IDs first, each layer as soon as it has arrived:
//!   [`Store::unpack_as_layers_arrive`]), then the image records created or updated, last: an
//!   interrupted import leaves no image, and nothing outlives the lease.

mod address;
mod client;
mod dest;
mod error;
mod files;
mod media;
mod source;
mod unpack;

use std::collections::HashMap;
use std::io::Read;
use std::sync::{Arc, Mutex};

use imgkit_store::{BlobInfo, Destination, Source, StoredImage};
use imgkit_types::{Digest, ImageRecord, ImageRef};

pub use address::{Address, USUAL, discover};
pub use client::Client;
pub use dest::native_name;
pub use error::{Code, Error, Result};
pub use unpack::chain_ids;

use crate::source::Listing;

/// How images are imported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportOptions {
    /// The snapshotter images are unpacked into (CRI's: `overlayfs`).
    pub snapshotter: String,
    /// Whether to unpack at all (`--no-unpack`: kubelet unpacks on first start).
    pub unpack: bool,
}

impl Default for ImportOptions {
    fn default() -> Self {
        Self {
            snapshotter: "overlayfs".to_owned(),
            unpack: true,
        }
    }
}

/// What an import unpacked: layers applied, and layers whose snapshot was already there.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UnpackReport {
    pub applied: usize,
    pub present: usize,
}

/// One containerd namespace as an image store.
pub struct Store {
    client: Client,
    options: ImportOptions,
    listing: Mutex<Option<Arc<Listing>>>,
    lease: Mutex<Option<String>>,
    unpacked: Mutex<UnpackReport>,
    /// Layers unpacked as they arrive ([`Store::unpack_as_layers_arrive`]).
    ahead: Mutex<Option<unpack::Ahead>>,
    locks: unpack::Locks,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("client", &self.client)
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl Store {
    pub fn new(client: Client, options: ImportOptions) -> Self {
        Self {
            client,
            options,
            listing: Mutex::new(None),
            lease: Mutex::new(None),
            unpacked: Mutex::new(UnpackReport::default()),
            ahead: Mutex::new(None),
            locks: unpack::Locks::default(),
        }
    }

    /// Told the diff IDs of the images an import's stream will bring (each image's, in
    /// order: docker's inspect gives them before its save), unpacks each layer as soon as its
    /// blob is in the content store (an uncompressed layer, committed under its diff ID, or
    /// one found there) and its parent is unpacked, while the stream still comes. Under the
    /// import's lease, like everything it writes; the images are still named last, at commit,
    /// after every unpack. Nothing to do with `--no-unpack`.
    pub fn unpack_as_layers_arrive(&self, images: &[Vec<Digest>]) -> Result<()> {
        if !self.options.unpack || images.iter().all(Vec::is_empty) {
            return Ok(());
        }
        let lease = self.lease()?;
        let ahead = unpack::Ahead::start(
            &self.client,
            &lease,
            &self.options.snapshotter,
            images,
            &self.locks,
        );
        if let Some(old) = self.ahead.lock().expect("ahead").replace(ahead) {
            old.abort();
        }
        Ok(())
    }

    /// A blob containerd holds that uncompresses to the layer `diff_id`: a layer it pulled
    /// compressed and unpacked (containerd's unpacker labels such a blob
    /// `containerd.io/uncompressed`), gzip or zstd by its first bytes, held by the import's
    /// lease from now on; `None` when there is none. A manifest may name it instead of the
    /// uncompressed layer, which then need not be sent: the image is complete, its config
    /// (and so its ID) unchanged, and unpacking finds the layer's snapshot or applies this
    /// blob (containerd checks what it unpacks to against the diff ID).
    pub fn compressed_layer(&self, diff_id: &Digest) -> Option<BlobInfo> {
        let lease = self.lease().ok()?;
        let ctx = self.client.ctx.clone();
        let d = diff_id.clone();
        let found = self.client.block_on(async move {
            for (digest, size) in ctx.compressed_of(&d).await.ok()? {
                if dest::hold(&ctx, &lease, &digest).await.is_err() {
                    continue;
                }
                let Ok(head) = ctx.read_head(&digest, 4).await else {
                    continue;
                };
                let media_type = match head.as_slice() {
                    [0x1f, 0x8b, ..] => "application/vnd.oci.image.layer.v1.tar+gzip",
                    [0x28, 0xb5, 0x2f, 0xfd] => "application/vnd.oci.image.layer.v1.tar+zstd",
                    _ => continue,
                };
                return Some(BlobInfo {
                    digest,
                    size,
                    media_type: media_type.to_owned(),
                });
            }
            None
        })?;
        if let Some(a) = self.ahead.lock().expect("ahead").as_ref() {
            a.arrived_as(diff_id, &found);
        }
        Some(found)
    }

    fn arrived(&self, digest: &Digest, size: u64) {
        if let Some(a) = self.ahead.lock().expect("ahead").as_ref() {
            a.arrived(digest, size);
        }
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    pub fn options(&self) -> &ImportOptions {
        &self.options
    }

    /// Lists and resolves the namespace afresh.
    fn refresh(&self) -> Result<Arc<Listing>> {
        let ctx = self.client.ctx.clone();
        let l = Arc::new(
            self.client
                .block_on(async move { source::listing(&ctx).await })?,
        );
        *self.listing.lock().expect("listing") = Some(l.clone());
        Ok(l)
    }

    fn cached(&self) -> Result<Arc<Listing>> {
        if let Some(l) = self.listing.lock().expect("listing").clone() {
            return Ok(l);
        }
        self.refresh()
    }

    /// Records (one per name, as the `ctr` CLI seam makes them, with creation times) and
    /// warnings for names left out. An empty listing of a namespace that does not exist is an
    /// error naming the ones that do.
    pub fn list(&self) -> Result<(Vec<ImageRecord>, Vec<String>)> {
        let l = self.refresh()?;
        if l.images.is_empty() && self.client.namespace() != "default" {
            self.client.check_namespace_exists()?;
        }
        Ok(l.records(self.client.namespace(), unix_now()))
    }

    /// Notes on images whose content is not all here (platforms never pulled).
    pub fn notes(&self) -> Vec<String> {
        self.cached().map(|l| l.notes()).unwrap_or_default()
    }

    /// The image ID (config digest) of each reference here, `None` where it has none. Looked
    /// up afresh (after an import, the new records).
    pub fn image_ids_of(&self, refs: &[ImageRef]) -> Result<Vec<(ImageRef, Option<Digest>)>> {
        let l = self.refresh()?;
        let targets: HashMap<&str, &Digest> = l
            .images
            .iter()
            .map(|i| (i.name.as_str(), &i.target.digest))
            .collect();
        Ok(refs
            .iter()
            .map(|r| {
                let id = targets
                    .get(native_name(r).as_str())
                    .or_else(|| targets.get(r.to_string().as_str()))
                    .and_then(|t| l.id_of(t))
                    .cloned();
                (r.clone(), id)
            })
            .collect())
    }

    /// Gives the image named `src` each of `names` (a name that pointed elsewhere moves).
    pub fn tag(&self, src: &str, names: &[String]) -> Result<()> {
        let ctx = self.client.ctx.clone();
        self.client.block_on(async move {
            let Some(target) = dest::get_image(&ctx, src).await? else {
                return Err(Error::Call {
                    address: ctx.address.clone(),
                    what: format!("tagging {src}"),
                    code: Code::NotFound,
                    message: format!("no image {src}"),
                });
            };
            for n in names {
                dest::put_image(&ctx, n, &target).await?;
            }
            Ok(())
        })
    }

    /// Points the image record `name` at `target` (a manifest or an index whose content is
    /// here), creating it or moving it: the images service's create or update.
    pub fn name_target(&self, name: &str, target: &BlobInfo) -> Result<()> {
        let ctx = self.client.ctx.clone();
        self.client
            .block_on(async move { dest::put_image(&ctx, name, target).await })
    }

    /// Drops the image records `names` (content goes when nothing else holds it).
    pub fn untag(&self, names: &[String]) -> Result<()> {
        let ctx = self.client.ctx.clone();
        self.client.block_on(async move {
            for n in names {
                dest::delete_image(&ctx, n).await?;
            }
            Ok(())
        })
    }

    /// What the imports so far unpacked.
    pub fn unpack_report(&self) -> UnpackReport {
        *self.unpacked.lock().expect("unpacked")
    }

    /// The import's lease, created on first use.
    fn lease(&self) -> Result<String> {
        let mut l = self.lease.lock().expect("lease");
        if let Some(id) = l.as_ref() {
            return Ok(id.clone());
        }
        let ctx = self.client.ctx.clone();
        let id = self
            .client
            .block_on(async move { dest::create_lease(&ctx).await })?;
        *l = Some(id.clone());
        Ok(id)
    }

    /// Releases the lease (what it alone held goes at containerd's next collection).
    pub fn release(&self) -> Result<()> {
        if let Some(a) = self.ahead.lock().expect("ahead").take() {
            a.abort();
        }
        let Some(id) = self.lease.lock().expect("lease").take() else {
            return Ok(());
        };
        let ctx = self.client.ctx.clone();
        self.client
            .block_on(async move { dest::delete_lease(&ctx, &id).await })
    }

    fn store_err(&self, e: Error) -> imgkit_store::Error {
        error::to_store(e, self.client.address())
    }

    fn commit_images(&self, images: &[StoredImage]) -> Result<()> {
        let lease = self.lease()?;
        let ctx = self.client.ctx.clone();
        // Every blob here (complete: containerd only lists committed content).
        for image in images {
            let manifests = image.manifests();
            for b in image
                .blobs()
                .into_iter()
                .chain(manifests.iter().map(|(m, _)| *m))
            {
                let c = ctx.clone();
                let d = b.digest.clone();
                if self
                    .client
                    .block_on(async move { c.info(&d).await })?
                    .is_none()
                {
                    return Err(ctx.content_error(
                        format!("committing image {}", image.id()),
                        format!("blob {} is not in the content store", b.digest),
                    ));
                }
            }
        }
        let opts = self.options.clone();
        let images = images.to_vec();
        let ahead = self.ahead.lock().expect("ahead").take();
        let locks = self.locks.clone();
        let client = self.client.clone();
        let (report, ()) = self.client.block_on(async move {
            // What was unpacked while the stream came; the rest below (which finds those
            // snapshots there).
            let started = std::time::Instant::now();
            let early = match ahead {
                Some(a) => a.finish().await?,
                None => unpack::Unpacked::default(),
            };
            // gc labels: a manifest keeps its config and layers.
            for image in &images {
                for (digest, labels) in dest::gc_labels(image) {
                    ctx.set_labels(digest, labels).await?;
                }
            }
            let mut report = UnpackReport::default();
            if opts.unpack {
                let sem = Arc::new(tokio::sync::Semaphore::new(4));
                let mut set = tokio::task::JoinSet::new();
                let mut seen = std::collections::HashSet::new();
                for image in &images {
                    if !seen.insert(image.manifest.digest.clone()) {
                        continue;
                    }
                    let (ctx, lease, locks, sem) =
                        (ctx.clone(), lease.clone(), locks.clone(), sem.clone());
                    let (snap, config, layers) = (
                        opts.snapshotter.clone(),
                        image.config.clone(),
                        image.layers.clone(),
                    );
                    set.spawn(async move {
                        let _p = sem.acquire_owned().await;
                        unpack::unpack(&ctx, &lease, &snap, &config, &layers, &locks).await
                    });
                }
                while let Some(j) = set.join_next().await {
                    let u = j.map_err(|e| ctx.content_error("unpacking", e.to_string()))??;
                    report.applied += u.applied;
                    report.present += u.present;
                }
                // Layers unpacked early count as applied, not as found there.
                report.present = report.present.saturating_sub(early.applied);
                report.applied += early.applied;
                client.note(&format!(
                    "unpacked into {}: {} layers applied while the stream came, {} after it ({:.2} s after it), {} already there",
                    opts.snapshotter,
                    early.applied,
                    report.applied - early.applied,
                    started.elapsed().as_secs_f64(),
                    report.present
                ));
            }
            // Names last.
            for image in &images {
                for n in &image.names {
                    dest::put_image(&ctx, &native_name(n), &image.manifest).await?;
                }
            }
            Ok::<_, Error>((report, ()))
        })?;
        let mut u = self.unpacked.lock().expect("unpacked");
        u.applied += report.applied;
        u.present += report.present;
        drop(u);
        *self.listing.lock().expect("listing") = None;
        Ok(())
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        let _ = self.release();
    }
}

impl Source for Store {
    fn describe(&self) -> String {
        format!(
            "containerd namespace {} at {}",
            self.client.namespace(),
            self.client.address()
        )
    }

    fn records(&self) -> Vec<ImageRecord> {
        self.cached()
            .map(|l| l.records(self.client.namespace(), unix_now()).0)
            .unwrap_or_default()
    }

    fn images(&self) -> imgkit_store::Result<Vec<StoredImage>> {
        Ok(self
            .cached()
            .map_err(|e| self.store_err(e))?
            .stored_images())
    }

    fn read_blobs(
        &self,
        wanted: &[BlobInfo],
        f: &mut dyn FnMut(&BlobInfo, &mut dyn Read) -> imgkit_store::Result<()>,
    ) -> imgkit_store::Result<()> {
        source::read_blobs(&self.client, wanted, f)
    }
}

impl Destination for Store {
    fn describe(&self) -> String {
        Source::describe(self)
    }

    /// Whether the content store holds it; one that does is held by the import's lease from
    /// here on, so it cannot be collected before the image naming it is committed.
    fn has_blob(&self, digest: &Digest) -> bool {
        let Ok(lease) = self.lease() else {
            return false;
        };
        let ctx = self.client.ctx.clone();
        let d = digest.clone();
        let held = self.client.block_on(async move {
            // Held first, then looked up: a collection between the two cannot take it (a blob
            // no image names, left by a removal, goes at containerd's next collection).
            if dest::hold(&ctx, &lease, &d).await.is_err() {
                return None;
            }
            ctx.info(&d).await.ok().flatten()
        });
        match held {
            Some(info) => {
                self.arrived(digest, u64::try_from(info.size).unwrap_or(0));
                true
            }
            None => false,
        }
    }

    fn put_blob(&mut self, blob: &BlobInfo, content: &mut dyn Read) -> imgkit_store::Result<()> {
        let lease = self.lease().map_err(|e| self.store_err(e))?;
        let w = dest::write_blob(&self.client, &lease, Some(blob), content)
            .map_err(|e| self.store_err(e))?;
        self.arrived(&w.digest, w.size);
        Ok(())
    }

    fn commit(&mut self, images: &[StoredImage]) -> imgkit_store::Result<()> {
        self.commit_images(images).map_err(|e| self.store_err(e))?;
        self.release().map_err(|e| self.store_err(e))
    }

    /// Hashed as it streams and committed under that digest, which containerd checks: no
    /// spool file.
    fn put_blob_hashed(
        &mut self,
        _size: u64,
        media_type: &str,
        content: &mut dyn Read,
    ) -> imgkit_store::Result<(BlobInfo, bool)> {
        let lease = self.lease().map_err(|e| self.store_err(e))?;
        let w =
            dest::write_blob(&self.client, &lease, None, content).map_err(|e| self.store_err(e))?;
        self.arrived(&w.digest, w.size);
        Ok((
            BlobInfo {
                digest: w.digest,
                size: w.size,
                media_type: media_type.to_owned(),
            },
            w.new,
        ))
    }

    fn names(&self) -> imgkit_store::Result<Vec<(ImageRef, Digest)>> {
        Store::names(self).map_err(|e| self.store_err(e))
    }

    fn tag(&mut self, image: &Digest, name: &ImageRef) -> imgkit_store::Result<()> {
        self.tag_manifest(image, name)
            .map_err(|e| self.store_err(e))
    }

    fn untag(&mut self, name: &ImageRef) -> imgkit_store::Result<()> {
        Store::untag(self, &[native_name(name)]).map_err(|e| self.store_err(e))?;
        *self.listing.lock().expect("listing") = None;
        Ok(())
    }

    fn image_ids(&self) -> imgkit_store::Result<Vec<Digest>> {
        let l = self.refresh().map_err(|e| self.store_err(e))?;
        let mut ids: Vec<Digest> = l
            .images
            .iter()
            .filter_map(|i| l.id_of(&i.target.digest).cloned())
            .collect();
        ids.sort();
        ids.dedup();
        Ok(ids)
    }
}

pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    hex(&sha2::Sha256::digest(bytes))
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

impl Store {
    /// Every name with its image ID (config digest), for what a run skips and verifies.
    pub fn names(&self) -> Result<Vec<(ImageRef, Digest)>> {
        let l = self.refresh()?;
        Ok(l.images
            .iter()
            .filter(|i| i.name.parse::<Digest>().is_err())
            .filter_map(|i| Some((i.name.parse().ok()?, l.id_of(&i.target.digest)?.clone())))
            .collect())
    }

    /// Gives the image whose top manifest (or index) is `image` one more name.
    pub fn tag_manifest(&self, image: &Digest, name: &ImageRef) -> Result<()> {
        let l = self.cached()?;
        let target = l
            .images
            .iter()
            .map(|i| &i.target)
            .find(|t| &t.digest == image)
            .cloned();
        let Some(target) = target else {
            return Err(Error::Call {
                address: self.client.address().to_owned(),
                what: format!("tagging {image}"),
                code: Code::NotFound,
                message: format!("no image has the manifest {image}"),
            });
        };
        self.name_target(&native_name(name), &target)?;
        *self.listing.lock().expect("listing") = None;
        Ok(())
    }
}
