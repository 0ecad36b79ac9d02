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
    let mut snaps = SnapshotsClient::new(ctx.channel.clone());
    let mut done = Unpacked::default();
    for (i, layer) in layers.iter().enumerate() {
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
            Ok(_) => {
                done.present += 1;
                continue;
            }
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
        let applied = apply(ctx, layer, mounts, &diff_ids[i]).await;
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
        match committed {
            Ok(_) => done.applied += 1,
            Err(s) if s.code() == T::AlreadyExists => {
                let _ = snaps
                    .remove(ctx.req(RemoveSnapshotRequest {
                        snapshotter: snapshotter.to_owned(),
                        key,
                    }))
                    .await;
                done.present += 1;
            }
            Err(s) => return Err(ctx.status(&format!("committing snapshot {chain}"), &s)),
        }
        ctx.set_labels(
            &layer.digest,
            HashMap::from([("containerd.io/uncompressed".to_owned(), diff_ids[i].clone())]),
        )
        .await?;
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
