//! The compiled-module cache: `<cache dir>/plugins/<key>.cwasm`, key = sha256 of the module,
//! the wasmtime version and the engine's compatibility hash (its settings and target).
//!
//! `Module::deserialize` trusts its input (it maps machine code), so imgkit only deserializes
//! files it wrote itself: each file starts with a magic line and the sha256 of the payload,
//! and anything that does not verify — a corrupt, truncated or foreign file — is ignored and
//! rewritten from a fresh compile.

use std::hash::Hasher;
use std::io::Write;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use wasmtime::{Engine, Module};

const MAGIC: &[u8] = b"imgkit compiled plugin v1\n";
const WASMTIME_VERSION: &str = "48.0.8";

/// imgkit's cache directory: `$XDG_CACHE_HOME/imgkit`, else the platform's cache directory
/// (`~/.cache`, `~/Library/Caches`, `%LOCALAPPDATA%`) + `imgkit`. `None` when no home is known.
pub fn default_cache_dir() -> Option<PathBuf> {
    let nonempty = |k: &str| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    if let Some(xdg) = nonempty("XDG_CACHE_HOME") {
        return Some(xdg.join("imgkit"));
    }
    let base = if cfg!(windows) {
        nonempty("LOCALAPPDATA")?
    } else if cfg!(target_os = "macos") {
        nonempty("HOME")?.join("Library").join("Caches")
    } else {
        nonempty("HOME")?.join(".cache")
    };
    Some(base.join("imgkit"))
}

/// Feeds `Hash` output into sha256.
struct ShaHasher(Sha256);

impl Hasher for ShaHasher {
    fn finish(&self) -> u64 {
        0
    }
    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
}

/// The cache key of `wasm` compiled by `engine`, as hex.
pub(crate) fn key(engine: &Engine, wasm: &[u8]) -> String {
    let mut h = ShaHasher(Sha256::new());
    h.0.update(Sha256::digest(wasm));
    h.0.update(WASMTIME_VERSION.as_bytes());
    std::hash::Hash::hash(&engine.precompile_compatibility_hash(), &mut h);
    hex(&h.0.finalize())
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::with_capacity(64), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

fn file(dir: &Path, key: &str) -> PathBuf {
    dir.join("plugins").join(format!("{key}.cwasm"))
}

/// How a module was obtained (for `plugin check` and benchmarks).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheOutcome {
    /// Loaded from the cache.
    Hit,
    /// Compiled, and written to the cache.
    Compiled,
    /// Compiled; the cache was disabled or could not be written.
    CompiledUncached,
    /// Compiled because the cache file was corrupt or foreign, and rewritten.
    Replaced,
}

/// Loads the compiled module for `key` if a verified file exists.
pub(crate) fn load(engine: &Engine, dir: &Path, key: &str) -> Result<Option<Module>, ()> {
    let Ok(bytes) = std::fs::read(file(dir, key)) else {
        return Ok(None);
    };
    let Some(rest) = bytes.strip_prefix(MAGIC) else {
        return Err(());
    };
    if rest.len() < 32 {
        return Err(());
    }
    let (sum, payload) = rest.split_at(32);
    if Sha256::digest(payload).as_slice() != sum {
        return Err(());
    }
    // SAFETY: `payload` is exactly the bytes `Module::serialize` produced for this engine
    // configuration and that `store` below wrote (the sha256 above verifies it); wasmtime
    // further checks its version and settings header and rejects a mismatch.
    #[allow(unsafe_code)]
    let module = unsafe { Module::deserialize(engine, payload) };
    module.map(Some).map_err(|_| ())
}

/// Writes `module` to the cache atomically (temp file in the same dir, then rename).
pub(crate) fn store(dir: &Path, key: &str, module: &Module) -> std::io::Result<()> {
    let payload = module.serialize().map_err(std::io::Error::other)?;
    let path = file(dir, key);
    let parent = path.parent().expect("cache file has a parent");
    std::fs::create_dir_all(parent)?;
    let mut tmp = tempfile::NamedTempFile::new_in(parent)?;
    tmp.write_all(MAGIC)?;
    tmp.write_all(&Sha256::digest(&payload))?;
    tmp.write_all(&payload)?;
    tmp.persist(&path).map_err(|e| e.error)?;
    Ok(())
}
