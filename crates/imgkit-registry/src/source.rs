//! A registry as a source: the catalog (under the spec's path) and each repository's tags as
//! docker-shaped records, manifests and configs fetched concurrently (bounded), blobs streamed
//! with their digests checked as they are read.

use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::sync::Arc;

use futures_util::StreamExt as _;
use imgkit_store::{BlobInfo, Source, StoredImage};
use imgkit_types::{Digest, ImageRecord, ImageRef, NONE, humanize};
use tokio::sync::mpsc;

use crate::client::Client;
use crate::error::{Error, Result};
use crate::proto::{self, Descriptor, Platform, RawManifest};
use crate::spec::RegistrySpec;

/// How many requests a listing keeps in flight.
const LIST_CONCURRENCY: usize = 32;
/// How many blobs a pull reads ahead.
const READ_AHEAD: usize = 4;

/// One tag as listed.
#[derive(Debug, Clone)]
pub(crate) struct Listed {
    pub(crate) name: ImageRef,
    pub(crate) repo: String,
    /// What the tag points at (a manifest or an index).
    pub(crate) top: RawManifest,
    /// The platform manifest chosen (the top one when it is not an index).
    pub(crate) manifest: RawManifest,
    pub(crate) config: Descriptor,
    pub(crate) layers: Vec<Descriptor>,
    pub(crate) platforms: Vec<String>,
    pub(crate) platform: Option<String>,
    pub(crate) created: Option<String>,
    /// Every manifest an index lists, when the tag points at an index and all are there.
    pub(crate) children: Vec<(Option<String>, RawManifest, proto::Manifest)>,
}

pub use imgkit_types::platform::host_platform;

fn platform_matches(p: &Platform, wanted: &str) -> bool {
    let text = p.to_string();
    text == wanted || format!("{}/{}", p.os, p.architecture) == wanted
}

/// A registry's images, listed.
pub struct RegistrySource {
    client: Arc<Client>,
    rt: tokio::runtime::Handle,
    spec: RegistrySpec,
    listed: Vec<Listed>,
    warnings: Vec<String>,
    /// Which repository holds each blob.
    repo_of: HashMap<Digest, String>,
}

impl std::fmt::Debug for RegistrySource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistrySource")
            .field("spec", &self.spec)
            .field("images", &self.listed.len())
            .finish_non_exhaustive()
    }
}

/// What one config says of its image (`created`, `os/architecture`).
#[derive(Debug, Clone)]
struct ConfigFacts {
    created: Option<String>,
    platform: Option<String>,
}

/// What a listing fetched by digest, shared by every tag: a config or a manifest named by
/// digest is fetched once however many tags point at it (1,000 tags of one image: one
/// config request, not 1,000).
#[derive(Default)]
struct Fetched {
    configs: std::sync::Mutex<HashMap<Digest, Arc<tokio::sync::OnceCell<ConfigFacts>>>>,
    manifests: std::sync::Mutex<HashMap<String, Arc<tokio::sync::OnceCell<RawManifest>>>>,
}

impl Fetched {
    async fn config(&self, c: &Client, repo: &str, digest: &Digest) -> Result<ConfigFacts> {
        let cell = self
            .configs
            .lock()
            .expect("lock")
            .entry(digest.clone())
            .or_default()
            .clone();
        cell.get_or_try_init(|| async {
            let bytes = proto::get_small_blob(c, repo, digest).await?;
            let cfg: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
            let platform = match (cfg["os"].as_str(), cfg["architecture"].as_str()) {
                (Some(os), Some(arch)) => Some(format!("{os}/{arch}")),
                _ => None,
            };
            Ok::<_, Error>(ConfigFacts {
                created: cfg["created"].as_str().map(str::to_owned),
                platform,
            })
        })
        .await
        .cloned()
    }

    /// A manifest by digest (the registry checks nothing; `get_manifest` checks the digest).
    async fn manifest(&self, c: &Client, repo: &str, digest: &str) -> Result<RawManifest> {
        let cell = self
            .manifests
            .lock()
            .expect("lock")
            .entry(digest.to_owned())
            .or_default()
            .clone();
        cell.get_or_try_init(|| proto::get_manifest(c, repo, digest))
            .await
            .cloned()
    }
}

/// Lists one tag: its manifest (the platform's, from an index), its config.
async fn list_tag(
    c: Arc<Client>,
    fetched: Arc<Fetched>,
    repo: String,
    tag: String,
    platform: String,
) -> Result<std::result::Result<Listed, String>> {
    let host = c.host.clone();
    let top = proto::get_manifest(&c, &repo, &tag).await?;
    let parsed = top.parse(&host)?;
    let mut children = Vec::new();
    let (manifest, platforms, chosen) = if proto::is_index_type(&top.media_type)
        || (!parsed.manifests.is_empty() && parsed.config.is_none())
    {
        let platforms: Vec<String> = parsed
            .manifests
            .iter()
            .filter_map(|m| m.platform.as_ref().map(ToString::to_string))
            .collect();
        let Some(child) = parsed.manifests.iter().find(|m| {
            m.platform
                .as_ref()
                .is_some_and(|p| platform_matches(p, &platform))
        }) else {
            return Ok(Err(format!(
                "{host}/{repo}:{tag} has no {platform} image (it has {})",
                if platforms.is_empty() {
                    "no platforms".to_owned()
                } else {
                    platforms.join(", ")
                }
            )));
        };
        let m = fetched.manifest(&c, &repo, &child.digest).await?;
        let chosen = child.platform.as_ref().map(ToString::to_string);
        // Every manifest the index lists, so that it can be copied whole (byte for byte).
        let all = futures_util::future::join_all(
            parsed
                .manifests
                .iter()
                .map(|d| fetched.manifest(&c, &repo, &d.digest)),
        )
        .await;
        if all.iter().all(Result::is_ok) {
            for (d, raw) in parsed.manifests.iter().zip(all) {
                let raw = raw?;
                let m = raw.parse(&host)?;
                children.push((d.platform.as_ref().map(ToString::to_string), raw, m));
            }
        }
        (m, platforms, chosen)
    } else {
        (top.clone(), Vec::new(), None)
    };
    let m = manifest.parse(&host)?;
    let Some(config) = m.config.clone() else {
        return Ok(Err(format!(
            "{host}/{repo}:{tag} is not an image (its manifest has no config)"
        )));
    };
    let config_digest = proto::parse_digest(&host, "a config digest", &config.digest)?;
    let facts = fetched.config(&c, &repo, &config_digest).await?;
    let created = facts.created;
    let platform = chosen.or(facts.platform);
    let name = ImageRef::parse(&format!("{host}/{repo}:{tag}")).map_err(|e| Error::Invalid {
        host: host.clone(),
        what: format!("repository {repo} tag {tag}"),
        detail: e.to_string(),
    })?;
    Ok(Ok(Listed {
        name,
        repo,
        top,
        manifest,
        config,
        layers: m.layers,
        platforms,
        platform,
        created,
        children,
    }))
}

impl RegistrySource {
    /// Lists the registry: every repository under the spec's path (or only `repositories`,
    /// when given) and their tags; `platform` chooses from indexes (`linux/amd64`).
    pub(crate) fn list(
        client: Arc<Client>,
        rt: tokio::runtime::Handle,
        spec: RegistrySpec,
        repositories: Option<Vec<String>>,
        platform: String,
    ) -> Result<Self> {
        let c = client.clone();
        let sp = spec.clone();
        let (listed, warnings) = rt.block_on(async move {
            let repos = match repositories {
                Some(r) => r,
                None => proto::catalog(&c)
                    .await?
                    .into_iter()
                    .filter(|r| sp.covers(r))
                    .collect(),
            };
            let tag_lists: Vec<Result<(String, Vec<String>)>> = futures_util::stream::iter(repos)
                .map(|repo| {
                    let c = c.clone();
                    async move { Ok((repo.clone(), proto::tags(&c, &repo).await?)) }
                })
                .buffered(LIST_CONCURRENCY)
                .collect()
                .await;
            let mut pairs = Vec::new();
            for t in tag_lists {
                let (repo, mut tags) = t?;
                tags.sort();
                for tag in tags {
                    pairs.push((repo.clone(), tag));
                }
            }
            let fetched = Arc::new(Fetched::default());
            let results: Vec<Result<std::result::Result<Listed, String>>> =
                futures_util::stream::iter(pairs)
                    .map(|(repo, tag)| {
                        list_tag(c.clone(), fetched.clone(), repo, tag, platform.clone())
                    })
                    .buffered(LIST_CONCURRENCY)
                    .collect()
                    .await;
            let mut listed = Vec::new();
            let mut warnings = Vec::new();
            for r in results {
                match r? {
                    Ok(l) => listed.push(l),
                    Err(w) => warnings.push(w),
                }
            }
            Ok::<_, Error>((listed, warnings))
        })?;
        let mut repo_of = HashMap::new();
        for l in &listed {
            let children = l
                .children
                .iter()
                .flat_map(|(_, _, m)| m.config.iter().chain(&m.layers));
            for d in std::iter::once(&l.config).chain(&l.layers).chain(children) {
                if let Ok(digest) = d.digest.parse::<Digest>() {
                    repo_of.entry(digest).or_insert_with(|| l.repo.clone());
                }
            }
        }
        Ok(Self {
            client,
            rt,
            spec,
            listed,
            warnings,
            repo_of,
        })
    }

    /// What the listing left out, said for a person (a tag without the wanted platform, …).
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// The manifest (or index) digest each listed name points at.
    pub fn digests(&self) -> Vec<(ImageRef, Digest)> {
        self.listed
            .iter()
            .map(|l| (l.name.clone(), l.top.digest.clone()))
            .collect()
    }

    fn record(l: &Listed, now: i64) -> ImageRecord {
        let created = l.created.as_deref().and_then(humanize::parse_rfc3339);
        let bytes: u64 = l.layers.iter().map(|d| d.size).sum();
        let size = humanize::size(bytes);
        let id = l
            .config
            .digest
            .parse::<Digest>()
            .map_or_else(|_| l.config.digest.clone(), |d| d.short_id().to_owned());
        let mut extra: BTreeMap<String, serde_json::Value> =
            [("VirtualSize".to_owned(), size.clone().into())].into();
        if let Some(p) = &l.platform {
            extra.insert("Platform".into(), p.clone().into());
        }
        if !l.platforms.is_empty() {
            extra.insert("Platforms".into(), l.platforms.join(",").into());
        }
        ImageRecord {
            containers: "N/A".into(),
            created_at: created.map_or_else(|| NONE.to_owned(), humanize::created_at),
            created_since: created.map_or_else(
                || "N/A".to_owned(),
                |c| humanize::since(u64::try_from(now - c).unwrap_or(0)),
            ),
            digest: l.top.digest.to_string(),
            id,
            repository: l.name.familiar_name(),
            shared_size: "N/A".into(),
            size,
            tag: l.name.tag().unwrap_or(NONE).to_owned(),
            unique_size: "N/A".into(),
            extra,
        }
    }
}

fn info(host: &str, d: &Descriptor) -> imgkit_store::Result<BlobInfo> {
    Ok(BlobInfo {
        digest: d.digest.parse().map_err(|_| {
            crate::error::into_store(
                &Error::Invalid {
                    host: host.to_owned(),
                    what: "a descriptor".into(),
                    detail: format!("{:?} is not a digest", d.digest),
                },
                None,
            )
        })?,
        size: d.size,
        media_type: d.media_type.clone(),
    })
}

impl Source for RegistrySource {
    fn describe(&self) -> String {
        self.spec.to_string()
    }

    fn records(&self) -> Vec<ImageRecord> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
        self.listed.iter().map(|l| Self::record(l, now)).collect()
    }

    fn images(&self) -> imgkit_store::Result<Vec<StoredImage>> {
        // One image per tag target (manifest or index), with every name pointing at it.
        let host = &self.client.host;
        let mut out: Vec<StoredImage> = Vec::new();
        for l in &self.listed {
            let whole_index = !l.children.is_empty();
            let top = if whole_index { &l.top } else { &l.manifest };
            if let Some(im) = out.iter_mut().find(|i| i.manifest.digest == top.digest) {
                im.names.push(l.name.clone());
                continue;
            }
            let mut image = StoredImage::single(
                vec![l.name.clone()],
                BlobInfo {
                    digest: top.digest.clone(),
                    size: top.bytes.len() as u64,
                    media_type: top.media_type.clone(),
                },
                top.bytes.clone(),
                info(host, &l.config)?,
                l.layers
                    .iter()
                    .map(|d| info(host, d))
                    .collect::<imgkit_store::Result<_>>()?,
            );
            for (platform, raw, m) in &l.children {
                let config = match &m.config {
                    Some(c) => info(host, c)?,
                    None => continue,
                };
                image.platforms.push(imgkit_store::PlatformManifest {
                    platform: platform.clone(),
                    manifest: BlobInfo {
                        digest: raw.digest.clone(),
                        size: raw.bytes.len() as u64,
                        media_type: raw.media_type.clone(),
                    },
                    manifest_bytes: raw.bytes.clone(),
                    config,
                    layers: m
                        .layers
                        .iter()
                        .map(|d| info(host, d))
                        .collect::<imgkit_store::Result<_>>()?,
                });
            }
            out.push(image);
        }
        Ok(out)
    }

    fn read_blobs(
        &self,
        wanted: &[BlobInfo],
        f: &mut dyn FnMut(&BlobInfo, &mut dyn Read) -> imgkit_store::Result<()>,
    ) -> imgkit_store::Result<()> {
        let mut pending: std::collections::VecDeque<(BlobInfo, mpsc::Receiver<ChunkResult>)> =
            std::collections::VecDeque::new();
        let mut next = 0;
        loop {
            while pending.len() < READ_AHEAD && next < wanted.len() {
                let b = wanted[next].clone();
                next += 1;
                let repo = self.repo_of.get(&b.digest).cloned().ok_or_else(|| {
                    imgkit_store::Error::MissingBlob {
                        source_name: self.describe(),
                        digest: b.digest.clone(),
                    }
                })?;
                let (tx, rx) = mpsc::channel(16);
                let c = self.client.clone();
                let digest = b.digest.clone();
                self.rt
                    .spawn(async move { fetch(c, repo, digest, tx).await });
                pending.push_back((b, rx));
            }
            let Some((b, rx)) = pending.pop_front() else {
                return Ok(());
            };
            let repo = self.repo_of.get(&b.digest).cloned().unwrap_or_default();
            let mut reader = BlobReader {
                rx,
                buf: bytes::Bytes::new(),
                hasher: <sha2::Sha256 as sha2::Digest>::new(),
                read: 0,
                blob: b.clone(),
                host: self.client.host.clone(),
                repo,
                done: false,
            };
            f(&b, &mut reader)?;
        }
    }
}

type ChunkResult = std::result::Result<bytes::Bytes, String>;

/// Streams one blob's body into `tx` (stops when the reader goes away).
async fn fetch(c: Arc<Client>, repo: String, digest: Digest, tx: mpsc::Sender<ChunkResult>) {
    let mut resp = match proto::get_blob(&c, &repo, &digest).await {
        Ok(r) => r,
        Err(e) => {
            let _ = tx.send(Err(e.to_string())).await;
            return;
        }
    };
    loop {
        match resp.chunk().await {
            Ok(Some(chunk)) => {
                if tx.send(Ok(chunk)).await.is_err() {
                    return;
                }
            }
            Ok(None) => return,
            Err(e) => {
                let err = crate::client::transport_error(&c.host, &e);
                let _ = tx
                    .send(Err(format!("reading blob {digest} from {repo}: {err}")))
                    .await;
                return;
            }
        }
    }
}

/// A blob's body as a reader; at its end, its size and digest are checked (an error instead
/// of the end when they do not match, so nothing downstream takes it as complete).
struct BlobReader {
    rx: mpsc::Receiver<ChunkResult>,
    buf: bytes::Bytes,
    hasher: sha2::Sha256,
    read: u64,
    blob: BlobInfo,
    host: String,
    repo: String,
    done: bool,
}

impl Read for BlobReader {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        use sha2::Digest as _;
        if out.is_empty() {
            return Ok(0);
        }
        while self.buf.is_empty() {
            if self.done {
                return Ok(0);
            }
            match self.rx.blocking_recv() {
                Some(Ok(chunk)) => self.buf = chunk,
                Some(Err(e)) => return Err(std::io::Error::other(e)),
                None => {
                    let actual = proto::hex(&self.hasher.clone().finalize());
                    if actual != self.blob.digest.hex() || self.read != self.blob.size {
                        return Err(std::io::Error::new(
                            std::io::ErrorKind::InvalidData,
                            Error::DigestMismatch {
                                host: self.host.clone(),
                                repository: self.repo.clone(),
                                expected: self.blob.digest.clone(),
                                actual: format!("sha256:{actual} ({} bytes)", self.read),
                            },
                        ));
                    }
                    self.done = true;
                    return Ok(0);
                }
            }
        }
        let n = out.len().min(self.buf.len());
        let chunk = self.buf.split_to(n);
        out[..n].copy_from_slice(&chunk);
        self.hasher.update(&chunk);
        self.read += n as u64;
        if self.read > self.blob.size {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!(
                    "blob {} from {}/{} is longer than its {} bytes",
                    self.blob.digest, self.host, self.repo, self.blob.size
                ),
            ));
        }
        Ok(n)
    }
}
