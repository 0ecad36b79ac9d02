//! docker's image store read from its own files, when dockerd runs on this machine and its
//! data root can be read (root, or a rootless dockerd's own user).
//!
//! `docker save` makes dockerd rebuild every layer of the saved images (docker ≤24 writes the
//! whole save into a temporary directory before its first byte), including the layers the
//! receiver already holds. The same bytes are on disk: the image config in
//! `DATA/image/DRIVER/imagedb/content/sha256/ID` and, per layer, its tar-split record and its
//! extracted files (`DATA/image/DRIVER/layerdb/sha256/CHAIN/{diff,cache-id,tar-split.json.gz}`
//! and the driver's directory for that cache ID). [`DockerFiles`] reads them as an
//! [`imgkit_store::Source`]: a config is checked against its image ID when read, a layer's tar
//! is rebuilt byte for byte as `docker save` would ([`split`]), and the receiver checks it
//! against its diff ID as it streams, so a store that changed behind dockerd's back is caught
//! there, never passed on. Only what the destination lacks is ever read.
//!
//! Images are described as a docker ≤24 save is read (`imgkit_store::made_up_image`): an OCI
//! manifest naming the config and the uncompressed layers, so either route gives the same
//! manifest digest.
//!
//! Storage drivers read: `overlay2`, `fuse-overlayfs` and `vfs` (each keeps a layer's files in
//! a plain directory). Anything else (docker's containerd image store, btrfs, zfs, Windows
//! filters) is [`Error::Unusable`], and the caller keeps `docker save`.

mod split;

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use imgkit_store::{BlobInfo, Source, StoredImage};
use imgkit_types::{Digest, ImageRecord, ImageRef};
use sha2::{Digest as _, Sha256};

pub use split::Assembled;

const MEDIA_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const MEDIA_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";
/// A config larger than this is not docker's.
const MAX_CONFIG: u64 = 16 << 20;

/// Why docker's files cannot serve (the caller falls back to `docker save`), or what is wrong
/// with one image in them.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("docker's files at {} are not read here: {why}", root.display())]
    Unusable { root: PathBuf, why: String },
    #[error("image {id} in docker's files at {}: {why}", root.display())]
    Image {
        root: PathBuf,
        id: Digest,
        why: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Driver {
    Overlay2,
    FuseOverlayfs,
    Vfs,
}

impl Driver {
    fn name(self) -> &'static str {
        match self {
            Driver::Overlay2 => "overlay2",
            Driver::FuseOverlayfs => "fuse-overlayfs",
            Driver::Vfs => "vfs",
        }
    }
}

/// One daemon's store on disk.
#[derive(Debug, Clone)]
pub struct DockerFiles {
    root: PathBuf,
    driver: Driver,
    configs: PathBuf,
    layers: PathBuf,
}

/// One layer as docker keeps it.
#[derive(Debug, Clone)]
struct Layer {
    record: PathBuf,
    dir: PathBuf,
    info: BlobInfo,
}

impl DockerFiles {
    /// The store of the dockerd whose `/info` gives `DockerRootDir` = `root` and `Driver` =
    /// `driver`, when its image and layer databases can be read here.
    pub fn open(root: &Path, driver: &str) -> Result<Self, Error> {
        let unusable = |why: String| Error::Unusable {
            root: root.to_owned(),
            why,
        };
        let driver = match driver {
            "overlay2" => Driver::Overlay2,
            "fuse-overlayfs" => Driver::FuseOverlayfs,
            "vfs" => Driver::Vfs,
            other => {
                return Err(unusable(format!(
                    "its storage driver is {other:?}; imgkit reads overlay2, fuse-overlayfs and vfs"
                )));
            }
        };
        let base = root.join("image").join(driver.name());
        let configs = base.join("imagedb").join("content").join("sha256");
        let layers = base.join("layerdb").join("sha256");
        for dir in [&configs, &layers] {
            std::fs::read_dir(dir)
                .map_err(|e| unusable(format!("cannot list {}: {e}", dir.display())))?;
        }
        Ok(Self {
            root: root.to_owned(),
            driver,
            configs,
            layers,
        })
    }

    /// Where the store is.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The driver's directory holding a layer's files.
    fn layer_dir(&self, cache_id: &str) -> PathBuf {
        match self.driver {
            Driver::Vfs => self.root.join("vfs").join("dir").join(cache_id),
            Driver::Overlay2 | Driver::FuseOverlayfs => self
                .root
                .join(self.driver.name())
                .join(cache_id)
                .join("diff"),
        }
    }

    /// A source of the images `wanted` names (each by its image ID, with the names it goes
    /// by), read from the files: every config checked against its ID, every layer's record
    /// and directory found, and its tar's size read from its record.
    pub fn source(&self, wanted: &[(Digest, Vec<ImageRef>)]) -> Result<FileSource, Error> {
        let mut images: Vec<StoredImage> = Vec::new();
        let mut configs: HashMap<Digest, Vec<u8>> = HashMap::new();
        let mut layers: HashMap<Digest, Layer> = HashMap::new();
        for (id, names) in wanted {
            if let Some(im) = images.iter_mut().find(|i| i.id() == id) {
                for n in names {
                    if !im.names.contains(n) {
                        im.names.push(n.clone());
                    }
                }
                continue;
            }
            let (config, diff_ids) = self.config(id)?;
            let mut infos = Vec::with_capacity(diff_ids.len());
            for (chain, diff) in chain_ids(&diff_ids).into_iter().zip(&diff_ids) {
                let layer = match layers.get(diff) {
                    Some(l) => l.clone(),
                    None => self.layer(id, &chain, diff)?,
                };
                infos.push(layer.info.clone());
                layers.insert(diff.clone(), layer);
            }
            let config_info = BlobInfo {
                digest: id.clone(),
                size: config.len() as u64,
                media_type: MEDIA_CONFIG.to_owned(),
            };
            images.push(imgkit_store::made_up_image(
                names.clone(),
                config_info,
                infos,
            ));
            configs.insert(id.clone(), config);
        }
        Ok(FileSource {
            files: self.clone(),
            images,
            configs,
            layers,
            denied: std::sync::atomic::AtomicBool::new(false),
        })
    }

    fn image_error(&self, id: &Digest, why: String) -> Error {
        Error::Image {
            root: self.root.clone(),
            id: id.clone(),
            why,
        }
    }

    /// An image's config (checked against its ID) and its diff IDs.
    fn config(&self, id: &Digest) -> Result<(Vec<u8>, Vec<Digest>), Error> {
        if id.algorithm() != "sha256" {
            return Err(self.image_error(id, "docker's image IDs are sha256".to_owned()));
        }
        let path = self.configs.join(id.hex());
        let mut bytes = Vec::new();
        std::fs::File::open(&path)
            .and_then(|f| f.take(MAX_CONFIG + 1).read_to_end(&mut bytes))
            .map_err(|e| self.image_error(id, format!("cannot read {}: {e}", path.display())))?;
        if hex(&Sha256::digest(&bytes)) != id.hex() {
            return Err(self.image_error(
                id,
                format!("{} does not hash to the image ID", path.display()),
            ));
        }
        let config: Config = serde_json::from_slice(&bytes)
            .map_err(|e| self.image_error(id, format!("its config has no rootfs: {e}")))?;
        Ok((bytes, config.rootfs.diff_ids))
    }

    /// The layer at `chain`, which must be `diff`: its record, its files and its tar's size.
    fn layer(&self, id: &Digest, chain: &Digest, diff: &Digest) -> Result<Layer, Error> {
        let dir = self.layers.join(chain.hex());
        let read = |name: &str| {
            let p = dir.join(name);
            std::fs::read_to_string(&p)
                .map(|s| s.trim().to_owned())
                .map_err(|e| self.image_error(id, format!("cannot read {}: {e}", p.display())))
        };
        let recorded = read("diff")?;
        if recorded != diff.as_str() {
            return Err(self.image_error(
                id,
                format!(
                    "layer {chain} holds {recorded}, and the config names {diff} at that place"
                ),
            ));
        }
        let cache_id = read("cache-id")?;
        if cache_id.is_empty()
            || cache_id.len() > 128
            || !cache_id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(self.image_error(
                id,
                format!("layer {chain} has a cache ID that is not a directory name"),
            ));
        }
        let files = self.layer_dir(&cache_id);
        if !files.is_dir() {
            return Err(self.image_error(
                id,
                format!("layer {diff}'s files are not at {}", files.display()),
            ));
        }
        let record = dir.join("tar-split.json.gz");
        let size = split::tar_size(&record).map_err(|e| {
            self.image_error(
                id,
                format!("layer {diff}'s tar-split record {}: {e}", record.display()),
            )
        })?;
        Ok(Layer {
            record,
            dir: files,
            info: BlobInfo {
                digest: diff.clone(),
                size,
                media_type: MEDIA_LAYER.to_owned(),
            },
        })
    }
}

/// What an image config says of its layers.
#[derive(serde::Deserialize)]
struct Config {
    rootfs: RootFs,
}

#[derive(serde::Deserialize)]
struct RootFs {
    #[serde(default)]
    diff_ids: Vec<Digest>,
}

/// Each layer's chain ID: the first diff ID, then sha256("PARENT_CHAIN DIFF").
fn chain_ids(diff_ids: &[Digest]) -> Vec<Digest> {
    let mut out: Vec<Digest> = Vec::with_capacity(diff_ids.len());
    for d in diff_ids {
        let next = match out.last() {
            None => d.clone(),
            Some(parent) => {
                let h = Sha256::digest(format!("{parent} {d}").as_bytes());
                Digest::sha256_hex(&hex(&h)).expect("sha256 hex is a digest")
            }
        };
        out.push(next);
    }
    out
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::with_capacity(64), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// Images read from docker's files (see [`DockerFiles::source`]).
#[derive(Debug)]
pub struct FileSource {
    files: DockerFiles,
    images: Vec<StoredImage>,
    configs: HashMap<Digest, Vec<u8>>,
    layers: HashMap<Digest, Layer>,
    /// A file of a layer could not be opened or read for want of permission (a rootless
    /// dockerd's files belong to its subordinate IDs): `docker save` is the way then.
    denied: std::sync::atomic::AtomicBool,
}

impl FileSource {
    /// Each image's diff IDs, in order (what a containerd destination unpacks as they come).
    pub fn diff_ids(&self) -> Vec<Vec<Digest>> {
        self.images
            .iter()
            .map(|i| i.layers.iter().map(|l| l.digest.clone()).collect())
            .collect()
    }

    /// Where the files are read from (the daemon's data root).
    pub fn root(&self) -> &Path {
        &self.files.root
    }

    /// Whether a read failed for want of permission (see the field): a caller that has
    /// named nothing yet can take `docker save` instead.
    pub fn was_denied(&self) -> bool {
        self.denied.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Opens every file of every layer (without reading it), so a layer that cannot be
    /// rebuilt here (a file missing, changed in size, or not readable by this user: a
    /// rootless dockerd's files belong to its subordinate IDs) is found before a stream
    /// starts. The first such file, as an error naming its layer.
    pub fn check_readable(&self) -> Result<(), Error> {
        let mut layers: Vec<&Layer> = self.layers.values().collect();
        layers.sort_by(|a, b| a.info.digest.as_str().cmp(b.info.digest.as_str()));
        for layer in layers {
            split::check_files(&layer.record, &layer.dir).map_err(|e| Error::Unusable {
                root: self.files.root.clone(),
                why: format!("layer {}: {e}", layer.info.digest),
            })?;
        }
        Ok(())
    }

    /// Whether `digest` is one of the layers it rebuilds.
    pub fn is_layer(&self, digest: &Digest) -> bool {
        self.layers.contains_key(digest)
    }

    /// The bytes of every layer of the images, counted once each.
    pub fn layer_bytes(&self) -> u64 {
        self.layers.values().map(|l| l.info.size).sum()
    }
}

impl Source for FileSource {
    fn describe(&self) -> String {
        format!("docker's files at {}", self.files.root.display())
    }

    fn records(&self) -> Vec<ImageRecord> {
        let mut out = Vec::new();
        for image in &self.images {
            let size: u64 = image.layers.iter().map(|l| l.size).sum();
            for n in &image.names {
                out.push(ImageRecord {
                    repository: n.name(),
                    tag: n.tag().unwrap_or(imgkit_types::NONE).to_owned(),
                    id: image.id().short_id().to_owned(),
                    size: imgkit_types::humanize::size(size),
                    digest: imgkit_types::NONE.to_owned(),
                    ..ImageRecord::default()
                });
            }
        }
        out
    }

    fn images(&self) -> imgkit_store::Result<Vec<StoredImage>> {
        Ok(self.images.clone())
    }

    fn read_blobs(
        &self,
        wanted: &[BlobInfo],
        f: &mut dyn FnMut(&BlobInfo, &mut dyn Read) -> imgkit_store::Result<()>,
    ) -> imgkit_store::Result<()> {
        for b in wanted {
            if let Some(config) = self.configs.get(&b.digest) {
                f(b, &mut &config[..])?;
                continue;
            }
            if let Some(m) = self.images.iter().find(|i| i.manifest.digest == b.digest) {
                f(b, &mut &m.manifest_bytes[..])?;
                continue;
            }
            let Some(layer) = self.layers.get(&b.digest) else {
                continue;
            };
            let read_error = |source: std::io::Error| {
                if source.kind() == std::io::ErrorKind::PermissionDenied {
                    self.denied
                        .store(true, std::sync::atomic::Ordering::Relaxed);
                }
                imgkit_store::Error::Read {
                    digest: b.digest.clone(),
                    source: std::io::Error::new(
                        source.kind(),
                        format!(
                            "rebuilding the layer from docker's files ({}, {}): {source}",
                            layer.record.display(),
                            layer.dir.display()
                        ),
                    ),
                }
            };
            let mut tar = Assembled::open(&layer.record, &layer.dir).map_err(read_error)?;
            let mut errors = ErrorsNamed {
                inner: &mut tar,
                name: &read_error,
            };
            f(b, &mut errors)?;
        }
        Ok(())
    }
}

/// A reader whose errors say which layer and which files they came from.
struct ErrorsNamed<'a, R: Read> {
    inner: &'a mut R,
    name: &'a dyn Fn(std::io::Error) -> imgkit_store::Error,
}

impl<R: Read> Read for ErrorsNamed<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.inner.read(buf).map_err(|e| {
            let kind = e.kind();
            std::io::Error::new(kind, (self.name)(e).to_string())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::split::tests::{split_into, tar_of};

    fn sha(b: &[u8]) -> Digest {
        Digest::sha256_hex(&hex(&Sha256::digest(b))).unwrap()
    }

    /// A vfs store under `root` holding one image of two layers; its ID and diff IDs.
    fn store(root: &Path) -> (Digest, Vec<Digest>) {
        let base = root.join("image/vfs");
        let tars = [
            tar_of(&[("d/base", b"the base\n")]),
            tar_of(&[("d/top", b"the top\n")]),
        ];
        let diffs: Vec<Digest> = tars.iter().map(|t| sha(t)).collect();
        for ((tar, chain), diff) in tars.iter().zip(chain_ids(&diffs)).zip(&diffs) {
            let dir = base.join("layerdb/sha256").join(chain.hex());
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join("diff"), diff.as_str()).unwrap();
            let cache = &chain.hex()[..16];
            std::fs::write(dir.join("cache-id"), cache).unwrap();
            split_into(
                tar,
                &dir.join("tar-split.json.gz"),
                &root.join("vfs/dir").join(cache),
            );
        }
        let config = serde_json::to_vec(&serde_json::json!({
            "architecture": "amd64", "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": diffs},
        }))
        .unwrap();
        let id = sha(&config);
        let configs = base.join("imagedb/content/sha256");
        std::fs::create_dir_all(&configs).unwrap();
        std::fs::write(configs.join(id.hex()), &config).unwrap();
        (id, diffs)
    }

    #[test]
    fn an_image_reads_as_its_config_and_layers_each_hashing_to_its_digest() {
        let tmp = tempfile::tempdir().unwrap();
        let (id, diffs) = store(tmp.path());
        let files = DockerFiles::open(tmp.path(), "vfs").unwrap();
        let name: ImageRef = "example/app:1".parse().unwrap();
        let src = files.source(&[(id.clone(), vec![name.clone()])]).unwrap();
        let images = src.images().unwrap();
        assert_eq!(images.len(), 1);
        assert_eq!(images[0].id(), &id);
        assert_eq!(images[0].names, vec![name]);
        assert_eq!(src.diff_ids(), vec![diffs.clone()]);
        let mut got = Vec::new();
        src.read_blobs(
            &images[0].blobs().into_iter().cloned().collect::<Vec<_>>(),
            &mut |b, r| {
                let mut bytes = Vec::new();
                r.read_to_end(&mut bytes).unwrap();
                assert_eq!(sha(&bytes), b.digest, "{}", b.media_type);
                assert_eq!(bytes.len() as u64, b.size);
                got.push(b.digest.clone());
                Ok(())
            },
        )
        .unwrap();
        assert!(
            diffs.iter().all(|d| got.contains(d)) && got.contains(&id),
            "{got:?}"
        );
    }

    #[test]
    fn a_changed_config_a_wrong_layer_or_another_driver_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let (id, diffs) = store(tmp.path());
        assert!(matches!(
            DockerFiles::open(tmp.path(), "btrfs"),
            Err(Error::Unusable { .. })
        ));
        assert!(matches!(
            DockerFiles::open(&tmp.path().join("nowhere"), "vfs"),
            Err(Error::Unusable { .. })
        ));
        let files = DockerFiles::open(tmp.path(), "vfs").unwrap();
        // The top layer's record says it holds another diff.
        let chain = &chain_ids(&diffs)[1];
        let diff_file = tmp
            .path()
            .join("image/vfs/layerdb/sha256")
            .join(chain.hex())
            .join("diff");
        std::fs::write(&diff_file, diffs[0].as_str()).unwrap();
        let e = files
            .source(&[(id.clone(), Vec::new())])
            .unwrap_err()
            .to_string();
        assert!(e.contains("and the config names"), "{e}");
        std::fs::write(&diff_file, diffs[1].as_str()).unwrap();
        // The config no longer hashes to its ID.
        let config = tmp
            .path()
            .join("image/vfs/imagedb/content/sha256")
            .join(id.hex());
        std::fs::write(&config, b"{\"rootfs\":{\"diff_ids\":[]}}").unwrap();
        let e = files.source(&[(id, Vec::new())]).unwrap_err().to_string();
        assert!(e.contains("does not hash to the image ID"), "{e}");
    }

    #[test]
    fn chain_ids_are_dockers() {
        let a: Digest = format!("sha256:{}", "a".repeat(64)).parse().unwrap();
        let b: Digest = format!("sha256:{}", "b".repeat(64)).parse().unwrap();
        let chain = chain_ids(&[a.clone(), b.clone()]);
        assert_eq!(chain[0], a);
        assert_eq!(chain[1], sha(format!("{a} {b}").as_bytes()));
    }
}
