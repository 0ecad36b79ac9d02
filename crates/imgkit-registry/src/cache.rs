//! What earlier pushes learned, so that a repeat push asks instead of sending: which compressed
//! blob a layer became (`gzip` of layer X is Y, Y bytes), and which repositories of a registry
//! hold a blob (mount sources). One JSON line per fact in `registry-blobs.jsonl` under
//! `$IMGKIT_CACHE_DIR`, else `$XDG_CACHE_HOME/imgkit`, else `~/.cache/imgkit`. Every fact is
//! checked with the registry before it is used (a `HEAD`, a mount the registry may decline): a
//! stale or damaged cache costs a re-upload, never a wrong image.

use std::collections::HashMap;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Mutex;

use imgkit_store::BlobInfo;
use imgkit_types::Digest;
use serde_json::json;

/// The facts, read once, and appended to as the push goes.
#[derive(Debug, Default)]
pub(crate) struct BlobCache {
    path: Option<PathBuf>,
    compressed: Mutex<HashMap<(Digest, String), BlobInfo>>,
    repositories: Mutex<HashMap<(String, Digest), Vec<String>>>,
}

fn dir() -> Option<PathBuf> {
    if let Some(d) = std::env::var_os("IMGKIT_CACHE_DIR").filter(|d| !d.is_empty()) {
        return Some(PathBuf::from(d));
    }
    if let Some(d) = std::env::var_os("XDG_CACHE_HOME").filter(|d| !d.is_empty()) {
        return Some(PathBuf::from(d).join("imgkit"));
    }
    if let Some(d) = std::env::var_os("LOCALAPPDATA").filter(|d| !d.is_empty()) {
        return Some(PathBuf::from(d).join("imgkit"));
    }
    let home = std::env::var_os("HOME")?;
    Some(PathBuf::from(home).join(".cache").join("imgkit"))
}

impl BlobCache {
    /// The cache of this user (empty when it cannot be read; facts are then not kept).
    pub(crate) fn open(explicit: Option<&std::path::Path>) -> Self {
        let Some(dir) = explicit.map(std::path::Path::to_path_buf).or_else(dir) else {
            return Self::default();
        };
        let path = dir.join("registry-blobs.jsonl");
        let cache = Self {
            path: Some(path.clone()),
            ..Self::default()
        };
        let Ok(text) = std::fs::read_to_string(&path) else {
            return cache;
        };
        for line in text.lines() {
            let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
                continue;
            };
            let digest = |k: &str| v[k].as_str().and_then(|s| s.parse::<Digest>().ok());
            if let (Some(from), Some(algo), Some(to), Some(size)) = (
                digest("layer"),
                v["compression"].as_str(),
                digest("blob"),
                v["size"].as_u64(),
            ) {
                cache.compressed.lock().expect("lock").insert(
                    (from, algo.to_owned()),
                    BlobInfo {
                        digest: to,
                        size,
                        media_type: String::new(),
                    },
                );
            } else if let (Some(host), Some(repo), Some(d)) =
                (v["host"].as_str(), v["repository"].as_str(), digest("blob"))
            {
                let mut r = cache.repositories.lock().expect("lock");
                let e = r.entry((host.to_owned(), d)).or_default();
                if !e.iter().any(|x| x == repo) {
                    e.push(repo.to_owned());
                }
            }
        }
        cache
    }

    fn append(&self, line: &serde_json::Value) {
        let Some(path) = &self.path else {
            return;
        };
        if let Some(parent) = path.parent() {
            let _ = std::fs::create_dir_all(parent);
        }
        // One short line per write, appended: concurrent runs interleave whole lines.
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
        {
            let _ = f.write_all(format!("{line}\n").as_bytes());
        }
    }

    /// What `layer` became compressed with `algo`, when an earlier push said.
    pub(crate) fn compressed(&self, layer: &Digest, algo: &str) -> Option<BlobInfo> {
        self.compressed
            .lock()
            .expect("lock")
            .get(&(layer.clone(), algo.to_owned()))
            .cloned()
    }

    pub(crate) fn remember_compressed(&self, layer: &Digest, algo: &str, blob: &Digest, size: u64) {
        let known = self.compressed(layer, algo).map(|b| b.digest);
        if known.as_ref() == Some(blob) {
            return;
        }
        self.compressed.lock().expect("lock").insert(
            (layer.clone(), algo.to_owned()),
            BlobInfo {
                digest: blob.clone(),
                size,
                media_type: String::new(),
            },
        );
        self.append(&json!({"layer": layer.to_string(), "compression": algo, "blob": blob.to_string(), "size": size}));
    }

    /// Repositories of `host` an earlier push put `blob` in.
    pub(crate) fn repositories(&self, host: &str, blob: &Digest) -> Vec<String> {
        self.repositories
            .lock()
            .expect("lock")
            .get(&(host.to_owned(), blob.clone()))
            .cloned()
            .unwrap_or_default()
    }

    pub(crate) fn remember_repository(&self, host: &str, repo: &str, blob: &Digest) {
        {
            let mut r = self.repositories.lock().expect("lock");
            let e = r.entry((host.to_owned(), blob.clone())).or_default();
            if e.iter().any(|x| x == repo) {
                return;
            }
            e.push(repo.to_owned());
        }
        self.append(&json!({"host": host, "repository": repo, "blob": blob.to_string()}));
    }
}
