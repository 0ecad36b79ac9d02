//! What a target held before a load, so that a load takes nothing away from the user: after a
//! failed load, the names it left are removed (and the error says only what is true); after a
//! load that moved a name off the user's image (a name the run only needed on the way, see
//! [`crate::rename`]), the name is put back.
//!
//! One listing of the target before the load, one after (only when needed).

use std::collections::BTreeMap;

use imgkit_engine::Engine;
use imgkit_types::{ImageRecord, ImageRef};

use crate::plan::Endpoint;

/// The target's names, each with what it resolves to (the listing's ID: config digest for
/// docker and podman, target digest for containerd), keyed by the name as the engine stores it.
#[derive(Debug, Clone, Default)]
pub(crate) struct Snapshot {
    names: BTreeMap<String, String>,
}

impl Snapshot {
    /// Lists `target` (nothing for an archive, or a containerd namespace that does not exist).
    pub(crate) fn take(target: &Endpoint) -> anyhow::Result<Self> {
        let Some(engine) = target.engine() else {
            return Ok(Self::default());
        };
        let records = match engine.list() {
            Ok(r) => r,
            Err(imgkit_engine::Error::UnknownNamespace { .. }) => Vec::new(),
            Err(e) => {
                return Err(crate::plan::engine_error(
                    e,
                    &format!(
                        "could not list the images in {} before loading",
                        target.name()
                    ),
                ));
            }
        };
        Ok(Self {
            names: records
                .iter()
                .filter_map(|r| stored_name(engine, r).map(|n| (n, id_of(r))))
                .collect(),
        })
    }

    /// What `name` (as the engine stores it) resolved to.
    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        self.names.get(name).map(String::as_str)
    }
}

/// The name as the engine stores it: ctr's own `Name`; podman's fully qualified; docker's as
/// listed.
pub(crate) fn stored_name(engine: &Engine, rec: &ImageRecord) -> Option<String> {
    if let Some(n) = rec.extra.get("Name").and_then(|v| v.as_str()) {
        return Some(n.to_owned());
    }
    let r: ImageRef = rec.reference()?.parse().ok()?;
    Some(engine.native_ref(&r).to_string())
}

fn id_of(rec: &ImageRecord) -> String {
    if rec.digest.starts_with("sha256:") && rec.extra.contains_key("Name") {
        rec.digest.clone()
    } else {
        rec.id.clone()
    }
}

/// After a failed load: removes the names the load created (they were not there before) and
/// says what it did, as a hint on `err`; names it moved are listed, not touched.
pub(crate) fn after_failed_load(
    target: &Endpoint,
    before: &Snapshot,
    err: anyhow::Error,
) -> anyhow::Error {
    let Some(engine) = target.engine() else {
        return err;
    };
    let after = match Snapshot::take(target) {
        Ok(s) => s,
        Err(e) => {
            return err.context(format!(
                "the load into {} did not complete, and what it kept could not be checked ({e:#}); look with `imgkit ls {}`",
                target.name(),
                crate::endpoint::EndpointSpec::of(engine).engine_flags()
            ));
        }
    };
    let created: Vec<&String> = after
        .names
        .keys()
        .filter(|n| !before.names.contains_key(*n))
        .collect();
    let moved: Vec<String> = after
        .names
        .iter()
        .filter(|(n, id)| before.names.get(*n).is_some_and(|b| b != *id))
        .map(|(n, id)| format!("{n} (was {}, now {id})", before.names[n]))
        .collect();
    let mut said = Vec::new();
    if created.is_empty() && moved.is_empty() {
        said.push(format!(
            "{} kept nothing from it (it holds the same names as before)",
            target.name()
        ));
    }
    if !created.is_empty() {
        let created: Vec<String> = created.into_iter().cloned().collect();
        let names = created
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>()
            .join(", ");
        match engine.remove(&created) {
            Ok(()) => said.push(format!(
                "removed what it had left in {}: {names}",
                target.name()
            )),
            Err(e) => said.push(format!(
                "it left {names} in {}, and removing them failed ({e}); remove them with `{}`",
                target.name(),
                engine.remove_command_line(&created)
            )),
        }
    }
    if !moved.is_empty() {
        said.push(format!(
            "it re-pointed names in {}: {}",
            target.name(),
            moved.join(", ")
        ));
    }
    // The statement heads the error; the pump's own error and hints follow as its causes.
    err.context(format!(
        "the load into {} did not complete; {}",
        target.name(),
        said.join("; ")
    ))
}

/// Held while one run writes into an engine's image store (before-listing → load → names →
/// verification): imgkit runs into one store take turns, so that no run mistakes another's
/// load for its own leftovers (and removes it), and containerd's import, which fails when two
/// run into one namespace at once, never does. Released when dropped (or when the process
/// dies: the operating system drops the lock with the file handle).
pub(crate) struct StoreLock {
    _file: Option<std::fs::File>,
}

/// Takes the lock of `target`'s store, calling `waiting` first when another run holds it. An
/// archive target needs none (its writes go to a temporary that is renamed); a lock file that
/// cannot be made (an unwritable temp dir) means running unlocked, as before.
pub(crate) fn lock_store(target: &Endpoint, waiting: impl FnOnce(&str)) -> StoreLock {
    use sha2::Digest as _;
    let key = match target {
        Endpoint::Store(spec, ..) => crate::containerd::store_key(spec),
        _ => target.engine().map(Engine::store_key),
    };
    let Some(key) = key else {
        return StoreLock { _file: None };
    };
    let hash = sha2::Sha256::digest(key.as_bytes());
    let name = hash[..8].iter().fold(String::new(), |mut s, b| {
        use std::fmt::Write as _;
        let _ = write!(s, "{b:02x}");
        s
    });
    let dir = std::env::temp_dir().join("imgkit-locks");
    let file = std::fs::create_dir_all(&dir).ok().and_then(|()| {
        std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join(format!("{name}.lock")))
            .ok()
    });
    let Some(file) = file else {
        return StoreLock { _file: None };
    };
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            waiting(&format!(
                "waiting for another imgkit run that is loading into {} ({key})",
                target.name()
            ));
            if file.lock().is_err() {
                return StoreLock { _file: None };
            }
        }
        Err(std::fs::TryLockError::Error(_)) => return StoreLock { _file: None },
    }
    StoreLock { _file: Some(file) }
}
