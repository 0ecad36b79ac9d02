//! containerd as a source: the images service lists names and targets; manifests, indexes and
//! configs are read from the content store (small, digest-checked); blobs are read from its
//! files when they can be (`files.rs`), else stream out of it (`ReadContent`), several at once;
//! the receiver checks each digest.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::io::{self, Read};

use containerd_client::services::v1::images_client::ImagesClient;
use containerd_client::services::v1::{ListImagesRequest, ReadContentRequest};
use imgkit_engine::ctr::{CtrImage, to_records, usable};
use imgkit_store::BlobInfo;
use imgkit_types::{Digest, ImageRecord, ImageRef, humanize};
use serde_json::Value;
use tokio::sync::mpsc;

use crate::client::Ctx;
use crate::error::Result;
use crate::media;

/// Blobs read ahead while one is being consumed.
const READ_AHEAD: usize = 4;
/// Chunks (containerd sends up to 1 MiB each) buffered per blob read ahead.
const CHUNKS_AHEAD: usize = 8;

/// One image record in containerd: a name and its target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Listed {
    pub(crate) name: String,
    pub(crate) target: BlobInfo,
    pub(crate) labels: BTreeMap<String, String>,
}

/// What a target (a manifest or an index) resolves to here.
#[derive(Debug, Clone, Default)]
pub(crate) struct Resolved {
    /// Platforms as `ctr images ls` shows them (sorted, each once).
    pub(crate) platforms: Vec<String>,
    /// Bytes as `ctr images ls` counts them: the target, and for this machine's platform the
    /// manifest, config and layers.
    pub(crate) size: u64,
    /// The manifest exported: this machine's platform when its content is all here, else the
    /// first platform whose content is.
    pub(crate) chosen: Option<Chosen>,
    /// Platforms listed without their content here.
    pub(crate) missing: Vec<String>,
    /// An index whose every manifest is here, whole: exported as the index.
    pub(crate) index: Option<Index>,
    /// The config's `created`, unix seconds.
    pub(crate) created: Option<i64>,
}

#[derive(Debug, Clone)]
pub(crate) struct Index {
    pub(crate) descriptor: BlobInfo,
    pub(crate) bytes: Vec<u8>,
    pub(crate) manifests: Vec<Chosen>,
}

#[derive(Debug, Clone)]
pub(crate) struct Chosen {
    pub(crate) platform: String,
    pub(crate) manifest: BlobInfo,
    pub(crate) manifest_bytes: Vec<u8>,
    pub(crate) config: BlobInfo,
    pub(crate) layers: Vec<BlobInfo>,
}

/// Every image of a namespace, resolved.
#[derive(Debug, Clone, Default)]
pub(crate) struct Listing {
    pub(crate) images: Vec<Listed>,
    pub(crate) resolved: HashMap<Digest, Resolved>,
}

/// The image records (names and targets) of the namespace.
pub(crate) async fn list_images(ctx: &Ctx) -> Result<Vec<Listed>> {
    let mut c = ImagesClient::new(ctx.channel.clone()).max_decoding_message_size(64 << 20);
    let r = c
        .list(ctx.req(ListImagesRequest::default()))
        .await
        .map_err(|s| ctx.status("listing images", &s))?;
    let mut out = Vec::new();
    for img in r.into_inner().images {
        let Some(t) = img.target else { continue };
        let Ok(digest) = t.digest.parse::<Digest>() else {
            continue;
        };
        out.push(Listed {
            name: img.name,
            target: BlobInfo {
                digest,
                size: u64::try_from(t.size).unwrap_or(0),
                media_type: t.media_type,
            },
            labels: img.labels.into_iter().collect(),
        });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// Lists and resolves every distinct target, several at once.
pub(crate) async fn listing(ctx: &Ctx) -> Result<Listing> {
    let images = list_images(ctx).await?;
    let targets: HashMap<&Digest, &BlobInfo> = images
        .iter()
        .map(|i| (&i.target.digest, &i.target))
        .collect();
    let mut set = tokio::task::JoinSet::new();
    for t in targets.into_values() {
        let (ctx, t) = (ctx.clone(), t.clone());
        set.spawn(async move {
            let r = resolve(&ctx, &t).await;
            (t.digest, r)
        });
    }
    let mut resolved = HashMap::new();
    while let Some(j) = set.join_next().await {
        let (d, r) = j.map_err(|e| ctx.content_error("resolving images", e.to_string()))?;
        resolved.insert(d, r?);
    }
    Ok(Listing { images, resolved })
}

pub(crate) use imgkit_types::platform::host_platform;

fn platform_of(p: &Value) -> Option<String> {
    let os = p.get("os")?.as_str()?;
    let arch = p.get("architecture")?.as_str()?;
    if os == "unknown" || arch == "unknown" {
        return None;
    }
    Some(match p.get("variant").and_then(Value::as_str) {
        Some(v) if !v.is_empty() => format!("{os}/{arch}/{v}"),
        _ => format!("{os}/{arch}"),
    })
}

fn descriptor(v: &Value) -> Option<BlobInfo> {
    Some(BlobInfo {
        digest: v.get("digest")?.as_str()?.parse().ok()?,
        size: v.get("size")?.as_u64()?,
        media_type: v
            .get("mediaType")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned(),
    })
}

/// A manifest read and checked: its config and layers, whether all are here, the config's
/// platform and creation time.
async fn manifest(ctx: &Ctx, desc: &BlobInfo) -> Result<Option<(Chosen, Option<i64>, bool)>> {
    if ctx.info(&desc.digest).await?.is_none() {
        return Ok(None);
    }
    let bytes = ctx.read_small(&desc.digest).await?;
    let what = || format!("manifest {}", desc.digest);
    let v: Value = serde_json::from_slice(&bytes)
        .map_err(|e| ctx.content_error(what(), format!("not JSON: {e}")))?;
    let config = v
        .get("config")
        .and_then(descriptor)
        .ok_or_else(|| ctx.content_error(what(), "no config descriptor"))?;
    let layers: Vec<BlobInfo> = v
        .get("layers")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(descriptor).collect())
        .unwrap_or_default();
    let (platform, created) = match ctx.info(&config.digest).await? {
        Some(_) => {
            let c = ctx.read_small(&config.digest).await?;
            let cv: Value = serde_json::from_slice(&c).unwrap_or(Value::Null);
            let created = cv
                .get("created")
                .and_then(Value::as_str)
                .and_then(humanize::parse_rfc3339);
            let os = cv.get("os").and_then(Value::as_str).unwrap_or("linux");
            let arch = cv.get("architecture").and_then(Value::as_str).unwrap_or("");
            (Some(format!("{os}/{arch}")), created)
        }
        None => (None, None),
    };
    let mut complete = platform.is_some();
    for l in &layers {
        if !complete {
            break;
        }
        complete = ctx.info(&l.digest).await?.is_some();
    }
    Ok(Some((
        Chosen {
            platform: platform.unwrap_or_default(),
            manifest: desc.clone(),
            manifest_bytes: bytes,
            config,
            layers,
        },
        created,
        complete,
    )))
}

async fn resolve(ctx: &Ctx, target: &BlobInfo) -> Result<Resolved> {
    if media::is_manifest(&target.media_type) {
        let Some((chosen, created, complete)) = manifest(ctx, target).await? else {
            return Ok(Resolved {
                size: target.size,
                missing: vec!["its manifest".to_owned()],
                ..Resolved::default()
            });
        };
        let size =
            target.size + chosen.config.size + chosen.layers.iter().map(|l| l.size).sum::<u64>();
        let platforms = if chosen.platform.is_empty() {
            Vec::new()
        } else {
            vec![chosen.platform.clone()]
        };
        return Ok(Resolved {
            missing: if complete {
                Vec::new()
            } else {
                platforms.clone()
            },
            platforms,
            size,
            chosen: complete.then_some(chosen),
            created,
            index: None,
        });
    }
    if !media::is_index(&target.media_type) {
        return Ok(Resolved {
            size: target.size,
            ..Resolved::default()
        });
    }
    if ctx.info(&target.digest).await?.is_none() {
        return Ok(Resolved {
            size: target.size,
            missing: vec!["its index".to_owned()],
            ..Resolved::default()
        });
    }
    let bytes = ctx.read_small(&target.digest).await?;
    let v: Value = serde_json::from_slice(&bytes).map_err(|e| {
        ctx.content_error(format!("index {}", target.digest), format!("not JSON: {e}"))
    })?;
    let host = host_platform();
    // Every manifest the index lists, in its order (attestations too: the index is kept byte
    // for byte when all of them are here), with its platform when it names a real one.
    let listed: Vec<(Option<String>, BlobInfo)> = v
        .get("manifests")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|m| {
                    let p = m.get("platform").and_then(platform_of);
                    Some((p, descriptor(m)?))
                })
                .collect()
        })
        .unwrap_or_default();
    let platforms: Vec<String> = listed
        .iter()
        .filter_map(|(p, _)| p.clone())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let mut all = Vec::new();
    let mut missing = Vec::new();
    let mut complete = !listed.is_empty();
    for (p, desc) in &listed {
        if let Some((c, cr, true)) = manifest(ctx, desc).await? {
            all.push((
                Chosen {
                    platform: p.clone().unwrap_or_default(),
                    ..c
                },
                cr,
            ));
        } else {
            complete = false;
            if let Some(p) = p {
                missing.push(p.clone());
            }
        }
    }
    // This machine's platform first (a variant of it too), then the index's order.
    let is_host = |p: &str| p == host || p.starts_with(&format!("{host}/"));
    let primary = all
        .iter()
        .position(|(c, _)| is_host(&c.platform))
        .or_else(|| all.iter().position(|(c, _)| !c.platform.is_empty()));
    let (chosen, created) = match primary {
        Some(i) => (Some(all[i].0.clone()), all[i].1),
        None => (None, None),
    };
    let size = target.size
        + chosen.as_ref().map_or(0, |c| {
            c.manifest.size + c.config.size + c.layers.iter().map(|l| l.size).sum::<u64>()
        });
    missing.sort();
    missing.dedup();
    Ok(Resolved {
        platforms,
        size,
        index: (complete && chosen.is_some()).then(|| Index {
            descriptor: target.clone(),
            bytes,
            manifests: all.into_iter().map(|(c, _)| c).collect(),
        }),
        chosen,
        missing,
        created,
    })
}

/// `ctr`'s byte counts (`progress.Bytes`): `421 B`, `261.3 KiB`, `1.2 GiB`.
pub(crate) fn ctr_bytes(b: u64) -> String {
    const UNITS: [&str; 6] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    if b < 1024 {
        return format!("{b} B");
    }
    let mut v = b as f64 / 1024.0;
    let mut i = 0;
    while v >= 1024.0 && i < UNITS.len() - 1 {
        v /= 1024.0;
        i += 1;
    }
    format!("{v:.1} {}", UNITS[i])
}

impl Listing {
    /// Records as the `ctr` CLI seam makes them (one per name, CRI's alias rows, odd names
    /// left out with a warning), with the config's creation time the ctr table lacks and the
    /// `Namespace` `run` adds to them.
    pub(crate) fn records(&self, namespace: &str, now: i64) -> (Vec<ImageRecord>, Vec<String>) {
        let rows: Vec<CtrImage> = self
            .images
            .iter()
            .map(|i| {
                let r = self.resolved.get(&i.target.digest);
                CtrImage {
                    name: i.name.clone(),
                    media_type: i.target.media_type.clone(),
                    digest: i.target.digest.clone(),
                    size: ctr_bytes(r.map_or(i.target.size, |r| r.size)),
                    platforms: match r {
                        Some(r) if !r.platforms.is_empty() => r.platforms.join(","),
                        _ => "-".to_owned(),
                    },
                    labels: if i.labels.is_empty() {
                        "-".to_owned()
                    } else {
                        i.labels
                            .iter()
                            .map(|(k, v)| format!("{k}={v}"))
                            .collect::<Vec<_>>()
                            .join(",")
                    },
                }
            })
            .collect();
        let (rows, skipped) = usable(rows);
        let warnings = skipped
            .into_iter()
            .map(|w| format!("{namespace}: {w}"))
            .collect();
        let mut records = to_records(&rows);
        for (rec, row) in records.iter_mut().zip(&rows) {
            // Filters may choose by namespace (`run --from ctr:all`), as with the ctr CLI.
            rec.extra
                .insert("Namespace".to_owned(), Value::String(namespace.to_owned()));
            if let Some(created) = self.resolved.get(&row.digest).and_then(|r| r.created) {
                rec.created_at = humanize::created_at(created);
                rec.created_since =
                    humanize::since(u64::try_from(now.saturating_sub(created)).unwrap_or(0));
            }
        }
        (records, warnings)
    }

    /// The images whose content is here, one per target, with every name that parses as a
    /// reference (CRI's `sha256:<config>` alias rows name the same image and are left out).
    pub(crate) fn stored_images(&self) -> Vec<imgkit_store::StoredImage> {
        let mut by_target: BTreeMap<&Digest, Vec<ImageRef>> = BTreeMap::new();
        for i in &self.images {
            let names = by_target.entry(&i.target.digest).or_default();
            if i.name.parse::<Digest>().is_err()
                && let Ok(r) = i.name.parse::<ImageRef>()
            {
                names.push(r);
            }
        }
        by_target
            .into_iter()
            .filter_map(|(d, names)| {
                let r = self.resolved.get(d)?;
                let c = r.chosen.as_ref()?;
                Some(match &r.index {
                    Some(ix) => imgkit_store::StoredImage {
                        names,
                        manifest: ix.descriptor.clone(),
                        manifest_bytes: ix.bytes.clone(),
                        config: c.config.clone(),
                        layers: c.layers.clone(),
                        platforms: ix
                            .manifests
                            .iter()
                            .map(|m| imgkit_store::PlatformManifest {
                                platform: (!m.platform.is_empty()).then(|| m.platform.clone()),
                                manifest: m.manifest.clone(),
                                manifest_bytes: m.manifest_bytes.clone(),
                                config: m.config.clone(),
                                layers: m.layers.clone(),
                            })
                            .collect(),
                    },
                    None => imgkit_store::StoredImage::single(
                        names,
                        c.manifest.clone(),
                        c.manifest_bytes.clone(),
                        c.config.clone(),
                        c.layers.clone(),
                    ),
                })
            })
            .collect()
    }

    /// A note per image with platforms whose content is not here (listed in its index, never
    /// pulled), or with no content at all.
    pub(crate) fn notes(&self) -> Vec<String> {
        let mut names: BTreeMap<&Digest, Vec<&str>> = BTreeMap::new();
        for i in &self.images {
            names.entry(&i.target.digest).or_default().push(&i.name);
        }
        names
            .into_iter()
            .filter_map(|(d, n)| {
                let r = self.resolved.get(d)?;
                if r.missing.is_empty() {
                    return None;
                }
                let name = n.iter().find(|n| n.parse::<Digest>().is_err()).unwrap_or(&n[0]);
                Some(match &r.chosen {
                    Some(c) => format!(
                        "{name}: only {} is in the content store; {} {} not (never pulled): only what is here moves",
                        c.platform,
                        r.missing.join(", "),
                        if r.missing.len() == 1 { "is" } else { "are" }
                    ),
                    None => format!(
                        "{name}: {} not in the content store; it cannot be exported",
                        r.missing.join(", ")
                    ),
                })
            })
            .collect()
    }

    /// The image ID (config digest) each name's target resolves to.
    pub(crate) fn id_of(&self, target: &Digest) -> Option<&Digest> {
        self.resolved
            .get(target)?
            .chosen
            .as_ref()
            .map(|c| &c.config.digest)
    }
}

pub(crate) enum Chunk {
    Data(Vec<u8>),
    End,
    Failed(io::Error),
}

/// Blobs larger than this are read as [`SEGMENT`]-sized ranges, several at once.
const SEGMENTED: u64 = 2 * SEGMENT;
const SEGMENT: u64 = 4 << 20;
/// Ranges of one blob in flight.
const SEGMENTS_AHEAD: usize = 4;

/// One range of a blob, whole (containerd sends it in messages of up to 1 MiB).
async fn read_range(ctx: Ctx, digest: String, offset: u64, size: u64) -> Result<Vec<Vec<u8>>> {
    let what = format!("reading {digest} at {offset}");
    let mut s = ctx
        .content()
        .read(ctx.req(ReadContentRequest {
            digest,
            offset: i64::try_from(offset).unwrap_or(i64::MAX),
            size: i64::try_from(size).unwrap_or(i64::MAX),
        }))
        .await
        .map_err(|s| ctx.status(&what, &s))?
        .into_inner();
    let mut out = Vec::new();
    while let Some(m) = s.message().await.map_err(|s| ctx.status(&what, &s))? {
        out.push(m.data);
    }
    Ok(out)
}

/// Streams one blob into `tx`; a failure is the last message. A large blob is read as ranges,
/// [`SEGMENTS_AHEAD`] at once, handed on in order. Its digest is checked by the receiver (the
/// archive writer, the destination), once.
pub(crate) async fn stream_blob(ctx: Ctx, blob: BlobInfo, tx: mpsc::Sender<Chunk>) {
    let what = format!("reading {}", blob.digest);
    let result: Result<bool> = async {
        if blob.size >= SEGMENTED {
            let mut ranges = (0..blob.size.div_ceil(SEGMENT)).map(|i| {
                let off = i * SEGMENT;
                tokio::spawn(read_range(
                    ctx.clone(),
                    blob.digest.to_string(),
                    off,
                    SEGMENT.min(blob.size - off),
                ))
            });
            let mut pending: VecDeque<_> = ranges.by_ref().take(SEGMENTS_AHEAD).collect();
            while let Some(h) = pending.pop_front() {
                let parts = h
                    .await
                    .map_err(|e| ctx.content_error(what.clone(), e.to_string()))??;
                pending.extend(ranges.next());
                for data in parts {
                    if tx.send(Chunk::Data(data)).await.is_err() {
                        for h in &pending {
                            h.abort();
                        }
                        return Ok(false);
                    }
                }
            }
        } else {
            let mut s = ctx
                .content()
                .read(ctx.req(ReadContentRequest {
                    digest: blob.digest.to_string(),
                    offset: 0,
                    size: 0,
                }))
                .await
                .map_err(|s| ctx.status(&what, &s))?
                .into_inner();
            while let Some(m) = s.message().await.map_err(|s| ctx.status(&what, &s))? {
                if tx.send(Chunk::Data(m.data)).await.is_err() {
                    return Ok(false);
                }
            }
        }
        Ok(true)
    }
    .await;
    let last = match result {
        Ok(true) => Chunk::End,
        Ok(false) => return,
        Err(e) => Chunk::Failed(io::Error::other(e)),
    };
    let _ = tx.send(last).await;
}

/// The blocking end of a [`stream_blob`].
pub(crate) struct ChunkReader {
    rx: mpsc::Receiver<Chunk>,
    buf: Vec<u8>,
    pos: usize,
    done: bool,
}

impl ChunkReader {
    fn new(rx: mpsc::Receiver<Chunk>) -> Self {
        Self {
            rx,
            buf: Vec::new(),
            pos: 0,
            done: false,
        }
    }
}

impl Read for ChunkReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        loop {
            if self.pos < self.buf.len() {
                let n = out.len().min(self.buf.len() - self.pos);
                out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
                self.pos += n;
                return Ok(n);
            }
            if self.done {
                return Ok(0);
            }
            match self.rx.blocking_recv() {
                Some(Chunk::Data(d)) => {
                    self.buf = d;
                    self.pos = 0;
                }
                Some(Chunk::End) => self.done = true,
                Some(Chunk::Failed(e)) => return Err(e),
                None => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "containerd's content stream ended early",
                    ));
                }
            }
        }
    }
}

/// Calls `f` for each wanted blob in order: from the content store's files when they can be
/// read from here ([`crate::files`]), else over the API with up to [`READ_AHEAD`] more
/// streaming in. A blob whose file cannot be opened goes over the API; permission denied sends
/// the rest there too.
pub(crate) fn read_blobs(
    client: &crate::Client,
    wanted: &[BlobInfo],
    f: &mut dyn FnMut(&BlobInfo, &mut dyn Read) -> imgkit_store::Result<()>,
) -> imgkit_store::Result<()> {
    let Some(root) = client.blob_files() else {
        return read_over_api(client, wanted, f);
    };
    for (i, b) in wanted.iter().enumerate() {
        match crate::files::open(&root, b) {
            Ok(mut file) => f(b, &mut file)?,
            Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
                client.files_refused(&e);
                return read_over_api(client, &wanted[i..], f);
            }
            // Not there (collected, or a store that is not containerd's own), or not the
            // size its descriptor says: what containerd serves, checked by the receiver.
            Err(_) => read_over_api(client, std::slice::from_ref(b), f)?,
        }
    }
    Ok(())
}

/// Calls `f` for each wanted blob in order, read over the API, with up to [`READ_AHEAD`] more
/// streaming in.
fn read_over_api(
    client: &crate::Client,
    wanted: &[BlobInfo],
    f: &mut dyn FnMut(&BlobInfo, &mut dyn Read) -> imgkit_store::Result<()>,
) -> imgkit_store::Result<()> {
    let mut pending: VecDeque<(&BlobInfo, mpsc::Receiver<Chunk>)> = VecDeque::new();
    let mut next = wanted.iter();
    let start = |b: &BlobInfo| {
        let (tx, rx) = mpsc::channel(CHUNKS_AHEAD);
        client.spawn(stream_blob(client.ctx.clone(), b.clone(), tx));
        rx
    };
    for b in next.by_ref().take(READ_AHEAD) {
        pending.push_back((b, start(b)));
    }
    while let Some((b, rx)) = pending.pop_front() {
        let mut r = ChunkReader::new(rx);
        f(b, &mut r)?;
        if let Some(n) = next.next() {
            pending.push_back((n, start(n)));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_print_as_ctr_prints_them() {
        assert_eq!(ctr_bytes(421), "421 B");
        assert_eq!(ctr_bytes(267_571), "261.3 KiB");
        assert_eq!(ctr_bytes(134_217_728), "128.0 MiB");
        assert_eq!(ctr_bytes(3 << 30), "3.0 GiB");
    }

    #[test]
    fn platforms_skip_unknown_and_keep_variants() {
        let p = |s: &str| platform_of(&serde_json::from_str(s).unwrap());
        assert_eq!(
            p(r#"{"os":"linux","architecture":"amd64"}"#).unwrap(),
            "linux/amd64"
        );
        assert_eq!(
            p(r#"{"os":"linux","architecture":"arm","variant":"v7"}"#).unwrap(),
            "linux/arm/v7"
        );
        assert_eq!(p(r#"{"os":"unknown","architecture":"unknown"}"#), None);
    }
}
