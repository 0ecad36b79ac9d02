//! Unpacking into a snapshotter, as `ctr images import` does (containerd's `rootfs.ApplyLayers`):
//! for each layer, by chain ID, a snapshot prepared on its parent, the layer applied by the
//! diff service (which checks the uncompressed digest against the config's diff ID), and the
//! snapshot committed under its chain ID. All under the import's lease; then the config is
//! labelled `containerd.io/gc.ref.snapshot.<snapshotter>` so the snapshots outlive it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use containerd_client::services::v1::ApplyRequest;
use containerd_client::services::v1::diff_client::DiffClient;
use containerd_client::services::v1::snapshots::snapshots_client::SnapshotsClient;
use containerd_client::services::v1::snapshots::{
    CommitSnapshotRequest, PrepareSnapshotRequest, RemoveSnapshotRequest, StatSnapshotRequest,
};
use containerd_client::tonic::Code as T;
use containerd_client::types::Descriptor;
use imgkit_store::BlobInfo;
use serde_json::Value;

use crate::client::Ctx;
use crate::error::Result;

/// Chain IDs being unpacked, so two images sharing a base unpack it once.
pub(crate) type Locks = Arc<Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>>;

static KEYS: AtomicU64 = AtomicU64::new(0);

/// The chain IDs of `diff_ids` (OCI image spec: `ChainID(L0|…|Ln) = sha256(ChainID(…Ln-1) + " " + DiffID(Ln))`).
pub fn chain_ids(diff_ids: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(diff_ids.len());
    for d in diff_ids {
        let next = match out.last() {
            None => d.clone(),
            Some(prev) => format!(
                "sha256:{}",
                crate::sha256_hex(format!("{prev} {d}").as_bytes())
            ),
        };
        out.push(next);
    }
    out
}

/// What unpacking one image did.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Unpacked {
    pub(crate) applied: usize,
    pub(crate) present: usize,
}

/// Unpacks one image (its config and layers) into `snapshotter` under `lease`.
pub(crate) async fn unpack(
    ctx: &Ctx,
    lease: &str,
    snapshotter: &str,
    config: &BlobInfo,
    layers: &[BlobInfo],
    locks: &Locks,
) -> Result<Unpacked> {
    let what = || format!("unpacking image {}", config.digest);
    let cfg = ctx.read_small(&config.digest).await?;
    let v: Value = serde_json::from_slice(&cfg)
        .map_err(|e| ctx.content_error(what(), format!("its config is not JSON: {e}")))?;
    let diff_ids: Vec<String> = v
        .pointer("/rootfs/diff_ids")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|d| d.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    if diff_ids.len() != layers.len() {
        return Err(ctx.content_error(
            what(),
            format!(
                "its config lists {} diff IDs for {} layers",
                diff_ids.len(),
                layers.len()
            ),
        ));
    }
    let chains = chain_ids(&diff_ids);
    let mut done = Unpacked::default();
    for (i, layer) in layers.iter().enumerate() {
        if layer_into(
            ctx,
            lease,
            snapshotter,
            &chains,
            i,
            layer,
            &diff_ids[i],
            locks,
        )
        .await?
        {
            done.applied += 1;
        } else {
            done.present += 1;
        }
    }
    if let Some(top) = chains.last() {
        ctx.set_labels(
            &config.digest,
            HashMap::from([(
                format!("containerd.io/gc.ref.snapshot.{snapshotter}"),
                top.clone(),
            )]),
        )
        .await?;
    }
    Ok(done)
}

/// Unpacks layer `i` of a chain (`chains`: the image's chain IDs) onto its parent's snapshot,
/// which must be there: a snapshot prepared under `lease`, the layer applied, committed under
/// its chain ID. `true` when it was applied here, `false` when its snapshot was already there.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn layer_into(
    ctx: &Ctx,
    lease: &str,
    snapshotter: &str,
    chains: &[String],
    i: usize,
    layer: &BlobInfo,
    diff_id: &str,
    locks: &Locks,
) -> Result<bool> {
    let mut snaps = SnapshotsClient::new(ctx.channel.clone());
    let chain = &chains[i];
    let lock = locks
        .lock()
        .expect("unpack locks")
        .entry(chain.clone())
        .or_default()
        .clone();
    let _held = lock.lock().await;
    let stat = snaps
        .stat(ctx.req(StatSnapshotRequest {
            snapshotter: snapshotter.to_owned(),
            key: chain.clone(),
        }))
        .await;
    match stat {
        Ok(_) => return Ok(false),
        Err(s) if s.code() == T::NotFound => {}
        Err(s) => return Err(ctx.status(&format!("snapshot {chain} in {snapshotter}"), &s)),
    }
    let parent = if i == 0 {
        String::new()
    } else {
        chains[i - 1].clone()
    };
    let key = format!(
        "extract-imgkit-{}-{} {chain}",
        std::process::id(),
        KEYS.fetch_add(1, Ordering::Relaxed)
    );
    let mounts = snaps
        .prepare(ctx.leased(
            PrepareSnapshotRequest {
                snapshotter: snapshotter.to_owned(),
                key: key.clone(),
                parent,
                labels: HashMap::new(),
            },
            lease,
        ))
        .await
        .map_err(|s| ctx.status(&format!("preparing a snapshot in {snapshotter}"), &s))?
        .into_inner()
        .mounts;
    let applied = apply(ctx, layer, mounts, diff_id).await;
    if let Err(e) = applied {
        let _ = snaps
            .remove(ctx.req(RemoveSnapshotRequest {
                snapshotter: snapshotter.to_owned(),
                key,
            }))
            .await;
        return Err(e);
    }
    let committed = snaps
        .commit(ctx.leased(
            CommitSnapshotRequest {
                snapshotter: snapshotter.to_owned(),
                name: chain.clone(),
                key: key.clone(),
                labels: HashMap::new(),
            },
            lease,
        ))
        .await;
    let applied = match committed {
        Ok(_) => true,
        Err(s) if s.code() == T::AlreadyExists => {
            let _ = snaps
                .remove(ctx.req(RemoveSnapshotRequest {
                    snapshotter: snapshotter.to_owned(),
                    key,
                }))
                .await;
            false
        }
        Err(s) => return Err(ctx.status(&format!("committing snapshot {chain}"), &s)),
    };
    ctx.set_labels(
        &layer.digest,
        HashMap::from([("containerd.io/uncompressed".to_owned(), diff_id.to_owned())]),
    )
    .await?;
    Ok(applied)
}

/// The uncompressed layer type: a blob whose digest is its own diff ID is an uncompressed tar.
const UNCOMPRESSED: &str = "application/vnd.docker.image.rootfs.diff.tar";

/// Layers unpacked while an import's stream still comes: told each image's diff IDs before
/// the stream (docker's inspect), a task per image waits for each layer, in order, to be
/// committed in the content store (or found there) under its diff ID (a docker ≤24 save's
/// `layer.tar`, uncompressed), and unpacks it onto its parent as [`unpack`] does, under the
/// import's lease. What it has not reached when the stream ends is unpacked by [`unpack`] at
/// commit, which finds these snapshots there. Image names stay last, after every unpack.
pub(crate) struct Ahead {
    arrived: tokio::sync::watch::Sender<HashMap<String, BlobInfo>>,
    wanted: std::collections::HashSet<String>,
    tasks: Vec<tokio::task::JoinHandle<Result<Unpacked>>>,
}

/// Layers applied at once by the tasks of an [`Ahead`].
const AHEAD_APPLIES: usize = 2;

impl Ahead {
    /// Starts a task per distinct chain of `images` (each image's diff IDs, in order).
    pub(crate) fn start(
        client: &crate::Client,
        lease: &str,
        snapshotter: &str,
        images: &[Vec<imgkit_types::Digest>],
        locks: &Locks,
    ) -> Self {
        let (arrived, _) = tokio::sync::watch::channel(HashMap::new());
        let sem = Arc::new(tokio::sync::Semaphore::new(AHEAD_APPLIES));
        let mut wanted = std::collections::HashSet::new();
        let mut chains_seen = std::collections::HashSet::new();
        let mut tasks = Vec::new();
        for image in images {
            let diff_ids: Vec<String> = image.iter().map(ToString::to_string).collect();
            if diff_ids.is_empty() || !chains_seen.insert(diff_ids.clone()) {
                continue;
            }
            wanted.extend(diff_ids.iter().cloned());
            let rx = arrived.subscribe();
            let (ctx, lease, snapshotter, locks, sem) = (
                client.ctx.clone(),
                lease.to_owned(),
                snapshotter.to_owned(),
                locks.clone(),
                sem.clone(),
            );
            tasks.push(client.spawn(async move {
                ahead(&ctx, &lease, &snapshotter, &diff_ids, rx, &locks, &sem).await
            }));
        }
        Self {
            arrived,
            wanted,
            tasks,
        }
    }

    /// A blob is in the content store (committed, or found there and held by the lease).
    pub(crate) fn arrived(&self, digest: &imgkit_types::Digest, size: u64) {
        let d = digest.to_string();
        if !self.wanted.contains(&d) {
            return;
        }
        self.arrived.send_modify(|m| {
            m.entry(d).or_insert_with(|| BlobInfo {
                digest: digest.clone(),
                size,
                media_type: UNCOMPRESSED.to_owned(),
            });
        });
    }

    /// The layer `diff_id` is in the content store as `blob` (compressed): a task waiting
    /// for it goes on (its snapshot is there, or `blob` is applied).
    pub(crate) fn arrived_as(&self, diff_id: &imgkit_types::Digest, blob: &BlobInfo) {
        let d = diff_id.to_string();
        if !self.wanted.contains(&d) {
            return;
        }
        self.arrived.send_modify(|m| {
            m.entry(d).or_insert_with(|| blob.clone());
        });
    }

    /// The stream ended: each task unpacks what has arrived and stops; what they did.
    pub(crate) async fn finish(self) -> Result<Unpacked> {
        drop(self.arrived);
        let mut done = Unpacked::default();
        let mut failed = None;
        for t in self.tasks {
            match t.await {
                Ok(Ok(u)) => {
                    done.applied += u.applied;
                    done.present += u.present;
                }
                Ok(Err(e)) => failed = failed.or(Some(e)),
                Err(e) => {
                    failed = failed.or_else(|| {
                        Some(crate::Error::Content {
                            address: String::new(),
                            what: "unpacking".to_owned(),
                            why: e.to_string(),
                        })
                    });
                }
            }
        }
        failed.map_or(Ok(done), Err)
    }

    /// Stops every task (the import failed or was dropped; the lease goes with it).
    pub(crate) fn abort(self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// One image's layers, each unpacked once it has arrived, in order.
async fn ahead(
    ctx: &Ctx,
    lease: &str,
    snapshotter: &str,
    diff_ids: &[String],
    mut rx: tokio::sync::watch::Receiver<HashMap<String, BlobInfo>>,
    locks: &Locks,
    sem: &tokio::sync::Semaphore,
) -> Result<Unpacked> {
    let chains = chain_ids(diff_ids);
    let mut done = Unpacked::default();
    for (i, d) in diff_ids.iter().enumerate() {
        let layer = loop {
            if let Some(b) = rx.borrow_and_update().get(d).cloned() {
                break b;
            }
            if rx.changed().await.is_err() {
                // The stream ended: what arrived last, or the rest is for the commit.
                match rx.borrow().get(d).cloned() {
                    Some(b) => break b,
                    None => return Ok(done),
                }
            }
        };
        let _p = sem.acquire().await;
        if layer_into(ctx, lease, snapshotter, &chains, i, &layer, d, locks).await? {
            done.applied += 1;
        } else {
            done.present += 1;
        }
    }
    Ok(done)
}

async fn apply(
    ctx: &Ctx,
    layer: &BlobInfo,
    mounts: Vec<containerd_client::types::Mount>,
    diff_id: &str,
) -> Result<()> {
    let applied = DiffClient::new(ctx.channel.clone())
        .apply(ctx.req(ApplyRequest {
            diff: Some(Descriptor {
                media_type: layer.media_type.clone(),
                digest: layer.digest.to_string(),
                size: i64::try_from(layer.size).unwrap_or(i64::MAX),
                annotations: HashMap::new(),
            }),
            mounts,
            ..Default::default()
        }))
        .await
        .map_err(|s| ctx.status(&format!("applying layer {}", layer.digest), &s))?
        .into_inner()
        .applied;
    let got = applied.map(|d| d.digest).unwrap_or_default();
    if got != diff_id {
        return Err(ctx.content_error(
            format!("applying layer {}", layer.digest),
            format!("it unpacks to {got}, and the config says {diff_id}"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_ids_follow_the_image_spec() {
        // The seeded seed/multi image: ctr's snapshots (parents) for these diff IDs.
        let d0 = "sha256:d800f231792356b262b5a0b3ed5541b6a05304255e6bffc16f421c055b38b387";
        let d1 = "sha256:64fbfd3c4d7f33ad6dd9d668865eca1f46517d0b08a5d704c0225781c811ad1c";
        let c = chain_ids(&[d0.to_owned(), d1.to_owned()]);
        assert_eq!(c[0], d0);
        assert_eq!(
            c[1],
            "sha256:1b4d54db99d96153c8bfd646ef151933d116333dd7d521236b60cab03e3e989e"
        );
    }
}
