//! OCI image layout directories as destinations: `oci-layout`, `blobs/sha256/<hex>` (each blob
//! once, written to a temporary file, its digest checked, then renamed), and `index.json`
//! naming the images, written last and atomically.
//!
//! Names go in two annotations per `index.json` entry, one entry per name:
//! `org.opencontainers.image.ref.name` (what `skopeo … oci:DIR:REF` looks up; we write the full
//! reference, `docker.io/library/alpine:3.19`) and `io.containerd.image.name` (what
//! `ctr images import` names the image).

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use imgkit_types::{Digest, ImageRef};
use serde_json::{Value, json};

use crate::archive::ArchiveSource;
use crate::error::{Error, Result};
use crate::verify::DigestWriter;
use crate::{BlobInfo, Destination, Source, StoredImage};

const REF_NAME: &str = "org.opencontainers.image.ref.name";
const CONTAINERD_NAME: &str = "io.containerd.image.name";
const MEDIA_OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";

/// Whether `path` is an OCI layout directory (a directory with an `oci-layout` file).
pub fn is_layout_dir(path: &Path) -> bool {
    path.join("oci-layout").is_file()
}

/// An OCI image layout directory, opened for writing (created when missing).
#[derive(Debug)]
pub struct LayoutDir {
    root: PathBuf,
}

fn io_err<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> Error + 'a {
    move |source| Error::Io {
        what,
        path: path.to_owned(),
        source,
    }
}

/// Writes `bytes` to `path` through a temporary file beside it and a rename.
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = temp_beside(path);
    let res = (|| {
        let mut f = create_temp(&tmp)?;
        f.write_all(bytes).map_err(io_err("cannot write", &tmp))?;
        f.sync_all().map_err(io_err("cannot write", &tmp))?;
        fs::rename(&tmp, path).map_err(io_err("cannot rename into place", path))
    })();
    if res.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    res
}

/// Creates a temporary file and holds a lock on it while it is written: a writer killed
/// before its rename leaves a file nobody holds, which the next [`LayoutDir::create`] removes
/// ([`sweep`]).
fn create_temp(tmp: &Path) -> Result<File> {
    let f = File::create(tmp).map_err(io_err("cannot create", tmp))?;
    // Where files cannot be locked the sweep leaves them be (it removes only what it locks).
    let _ = f.try_lock();
    Ok(f)
}

/// Removes the temporary files of writers that are gone (killed before their rename) from
/// `dir`: ours are named `.NAME.imgkit-PID-N.tmp` and locked while written. A file younger
/// than a minute is left alone (its writer may not have locked it yet).
fn sweep(dir: &Path) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let ours = name.starts_with('.')
            && name.contains(".imgkit-")
            && Path::new(&name).extension().is_some_and(|x| x == "tmp");
        if !ours {
            continue;
        }
        let path = e.path();
        let young = e
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_none_or(|age| age < std::time::Duration::from_mins(1));
        if young {
            continue;
        }
        let Ok(f) = fs::OpenOptions::new().read(true).write(true).open(&path) else {
            continue;
        };
        if f.try_lock().is_ok() {
            let _ = fs::remove_file(&path);
        }
    }
}

/// A temporary name beside `path`, unique to this process and call (writers in other
/// processes and threads may be writing the same blob).
fn temp_beside(path: &Path) -> PathBuf {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let name = path
        .file_name()
        .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
    path.with_file_name(format!(".{name}.imgkit-{}-{n}.tmp", std::process::id()))
}

impl LayoutDir {
    /// Opens the layout at `root`, creating it (and `oci-layout`) when missing. A directory that
    /// holds other files and no `oci-layout` is refused: it is not ours to write into.
    pub fn create(root: &Path) -> Result<Self> {
        if root.exists() && !root.is_dir() {
            return Err(Error::NotLayout {
                path: root.to_owned(),
                why: "it is a file, not a directory".into(),
            });
        }
        if root.is_dir() && !is_layout_dir(root) {
            let mut entries = fs::read_dir(root).map_err(io_err("cannot read", root))?;
            if entries.next().is_some() {
                return Err(Error::NotLayout {
                    path: root.to_owned(),
                    why: "it holds other files and no oci-layout file".into(),
                });
            }
        }
        let blobs = root.join("blobs").join("sha256");
        fs::create_dir_all(&blobs).map_err(io_err("cannot create", &blobs))?;
        let marker = root.join("oci-layout");
        if !marker.is_file() {
            write_atomically(&marker, br#"{"imageLayoutVersion":"1.0.0"}"#)?;
        }
        sweep(&blobs);
        sweep(root);
        Ok(Self {
            root: root.to_owned(),
        })
    }

    /// The directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.root
            .join("blobs")
            .join(digest.algorithm())
            .join(digest.hex())
    }

    fn index_path(&self) -> PathBuf {
        self.root.join("index.json")
    }

    /// The current `index.json` (an empty index when there is none yet).
    fn index(&self) -> Result<Value> {
        let path = self.index_path();
        match fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|source| Error::Json {
                what: format!("{} is not JSON", path.display()),
                source,
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(json!({
                "schemaVersion": 2,
                "mediaType": MEDIA_OCI_INDEX,
                "manifests": [],
            })),
            Err(e) => Err(io_err("cannot read", &path)(e)),
        }
    }

    /// The layout as a source (its images as they are now).
    pub fn source(&self) -> Result<Option<ArchiveSource>> {
        if !self.index_path().is_file() {
            return Ok(None);
        }
        ArchiveSource::open(&self.root).map(Some)
    }
}

/// The normalized names an `index.json` entry gives.
fn entry_names(entry: &Value) -> Vec<String> {
    let mut out = Vec::new();
    for key in [CONTAINERD_NAME, REF_NAME] {
        if let Some(n) = entry["annotations"][key].as_str()
            && let Ok(r) = imgkit_types::ImageRef::parse(n)
        {
            out.push(r.normalized().to_string());
        }
    }
    out
}

impl Destination for LayoutDir {
    fn describe(&self) -> String {
        self.root.display().to_string()
    }

    fn has_blob(&self, digest: &Digest) -> bool {
        self.blob_path(digest).is_file()
    }

    fn put_blob(&mut self, blob: &BlobInfo, content: &mut dyn Read) -> Result<()> {
        let path = self.blob_path(&blob.digest);
        if blob.digest.algorithm() != "sha256" {
            return Err(Error::Algorithm(blob.digest.clone()));
        }
        let tmp = temp_beside(&path);
        let res = (|| {
            let file = create_temp(&tmp)?;
            let mut w = DigestWriter::new(io::BufWriter::with_capacity(1 << 20, file));
            crate::verify::copy_big(content, &mut w).map_err(|source| Error::Read {
                digest: blob.digest.clone(),
                source,
            })?;
            let buf = w.finish(&blob.digest, blob.size)?;
            let file = buf
                .into_inner()
                .map_err(|e| io_err("cannot write", &tmp)(e.into_error()))?;
            file.sync_all().map_err(io_err("cannot write", &tmp))?;
            fs::rename(&tmp, &path).map_err(io_err("cannot rename into place", &path))
        })();
        if res.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        res
    }

    fn put_blob_hashed(
        &mut self,
        size: u64,
        media_type: &str,
        content: &mut dyn Read,
    ) -> Result<(BlobInfo, bool)> {
        // Into a temporary file in blobs/sha256/, then renamed to the digest it hashed to.
        let dir = self.root.join("blobs").join("sha256");
        let tmp = temp_beside(&dir.join("hashing"));
        let res = (|| {
            let file = create_temp(&tmp)?;
            let mut w = DigestWriter::new(io::BufWriter::with_capacity(1 << 20, file));
            crate::verify::copy_big(content, &mut w).map_err(|source| Error::Io {
                what: "cannot read a blob into",
                path: tmp.clone(),
                source,
            })?;
            let info = BlobInfo {
                digest: w.digest(),
                size: w.written(),
                media_type: media_type.to_owned(),
            };
            if size != u64::MAX && info.size != size {
                return Err(Error::SizeMismatch {
                    digest: info.digest,
                    expected: size,
                    actual: info.size,
                });
            }
            let path = self.blob_path(&info.digest);
            if path.is_file() {
                return Ok((info, false));
            }
            let buf = w.finish(&info.digest, info.size)?;
            let file = buf
                .into_inner()
                .map_err(|e| io_err("cannot write", &tmp)(e.into_error()))?;
            file.sync_all().map_err(io_err("cannot write", &tmp))?;
            fs::rename(&tmp, &path).map_err(io_err("cannot rename into place", &path))?;
            Ok((info, true))
        })();
        let _ = fs::remove_file(&tmp);
        res
    }

    fn names(&self) -> Result<Vec<(ImageRef, Digest)>> {
        let Some(source) = self.source()? else {
            return Ok(Vec::new());
        };
        Ok(source
            .images()?
            .iter()
            .flat_map(|i| i.names.iter().map(|n| (n.normalized(), i.id().clone())))
            .collect())
    }

    fn tag(&mut self, image: &Digest, name: &ImageRef) -> Result<()> {
        let source = self.source()?.ok_or_else(|| Error::NoSuchImage {
            store: self.describe(),
            image: image.to_string(),
        })?;
        let mut found = source
            .images()?
            .into_iter()
            .find(|i| &i.manifest.digest == image || i.id() == image)
            .ok_or_else(|| Error::NoSuchImage {
                store: self.describe(),
                image: image.to_string(),
            })?;
        found.names = vec![name.clone()];
        self.commit(&[found])
    }

    fn untag(&mut self, name: &ImageRef) -> Result<()> {
        let name = name.normalized().to_string();
        self.edit_index(|entries| {
            entries.retain(|e| !entry_names(e).contains(&name));
            Ok(())
        })
    }

    fn commit(&mut self, images: &[StoredImage]) -> Result<()> {
        for image in images {
            let manifests = image.manifests();
            for b in image
                .blobs()
                .into_iter()
                .chain(manifests.iter().map(|(m, _)| *m))
            {
                if !self.has_blob(&b.digest) {
                    return Err(Error::Incomplete {
                        image: image.id().clone(),
                        digest: b.digest.clone(),
                        destination: self.describe(),
                    });
                }
            }
        }
        self.edit_index(|entries| {
            name_images(entries, images);
            Ok(())
        })
    }

    fn image_ids(&self) -> Result<Vec<Digest>> {
        Ok(match self.source()? {
            Some(s) => s.images()?.iter().map(|i| i.id().clone()).collect(),
            None => Vec::new(),
        })
    }
}

impl LayoutDir {
    /// Changes the entries of `index.json` under the layout's lock, and writes it back
    /// atomically. Writers of one layout take turns from reading index.json to replacing it
    /// (the lock is on `oci-layout`, which is never replaced); blobs need none: each is
    /// renamed into place.
    fn edit_index(&mut self, edit: impl FnOnce(&mut Vec<Value>) -> Result<()>) -> Result<()> {
        let marker = self.root.join("oci-layout");
        let lock = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&marker)
            .map_err(io_err("cannot open", &marker))?;
        lock.lock().map_err(io_err("cannot lock", &marker))?;
        let mut index = self.index()?;
        let mut entries: Vec<Value> = index["manifests"].as_array().cloned().unwrap_or_default();
        edit(&mut entries)?;
        index["manifests"] = Value::Array(entries);
        let bytes = serde_json::to_vec_pretty(&index).expect("a JSON value serializes");
        let written = write_atomically(&self.index_path(), &bytes);
        drop(lock);
        written
    }
}

/// Points each image's names at it in `entries` (a name moves to the new image; an unnamed
/// image is listed once).
fn name_images(entries: &mut Vec<Value>, images: &[StoredImage]) {
    for image in images {
        let names: Vec<String> = image
            .names
            .iter()
            .map(|n| n.normalized().to_string())
            .collect();
        let digest = image.manifest.digest.to_string();
        // A name moves to the new image; an unnamed image is listed once.
        entries.retain(|e| {
            let theirs = entry_names(e);
            if theirs.is_empty() {
                e["digest"].as_str() != Some(digest.as_str())
            } else {
                !theirs.iter().any(|n| names.contains(n))
            }
        });
        let desc = |annotations: Option<Value>| {
            let mut d = json!({
                "mediaType": image.manifest.media_type,
                "digest": digest,
                "size": image.manifest.size,
            });
            if let Some(a) = annotations {
                d["annotations"] = a;
            }
            d
        };
        if names.is_empty() {
            entries.push(desc(None));
        }
        for n in &names {
            entries.push(desc(Some(json!({ CONTAINERD_NAME: n, REF_NAME: n }))));
        }
    }
}
