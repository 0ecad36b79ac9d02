//! What `imgkit engines` shows: is each engine installed, does it answer, which version, where,
//! and which containerd namespaces hold how many images.

use std::path::PathBuf;

use serde::Serialize;
use serde_json::Value;

use crate::{Engine, EngineKind, EngineOptions, Error};

/// One engine as found on this machine.
#[derive(Debug, Clone, Serialize)]
pub struct Probe {
    /// Which engine.
    pub engine: EngineKind,
    /// The binary, when found.
    pub bin: Option<PathBuf>,
    /// Whether it answered (a daemon-less podman answers when its storage is readable).
    pub reachable: bool,
    /// The server's version (the client's for podman).
    pub version: Option<String>,
    /// The socket, context or storage it talks to.
    pub endpoint: String,
    /// Images (records) in the default place; per namespace for containerd.
    pub images: Option<usize>,
    /// containerd namespaces and their image counts.
    pub namespaces: Vec<NamespaceCount>,
    /// Why it is not usable, when it is not.
    pub error: Option<String>,
    /// What to try, when imgkit knows.
    pub hint: Option<String>,
    /// Images left out of the counts, and why (a containerd name imgkit cannot use).
    pub warnings: Vec<String>,
}

/// A containerd namespace and how many records its listing has.
#[derive(Debug, Clone, Serialize)]
pub struct NamespaceCount {
    /// The namespace.
    pub name: String,
    /// Records (image names) in it.
    pub images: usize,
}

impl serde::Serialize for EngineKind {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// Probes one engine with these options.
pub fn probe(kind: EngineKind, opts: EngineOptions) -> Probe {
    let mut p = Probe {
        engine: kind,
        bin: None,
        reachable: false,
        version: None,
        endpoint: String::new(),
        images: None,
        namespaces: Vec::new(),
        error: None,
        hint: None,
        warnings: Vec::new(),
    };
    let engine = match Engine::new(kind, opts) {
        Ok(e) => e,
        Err(e) => {
            p.hint = e.hint();
            p.error = Some(e.to_string());
            return p;
        }
    };
    p.bin = Some(engine.bin().to_path_buf());
    p.endpoint = engine.endpoint();
    if let Err(e) = fill(&engine, &mut p) {
        p.hint = e.hint();
        p.error = Some(e.to_string());
    }
    p
}

fn fill(engine: &Engine, p: &mut Probe) -> Result<(), Error> {
    p.version = engine.version()?;
    p.reachable = true;
    if engine.kind().is_containerd() {
        for ns in engine.namespaces()? {
            let (records, warnings) = engine.with_namespace(&ns).list_noting()?;
            p.warnings.extend(warnings);
            let n = records.len();
            p.namespaces.push(NamespaceCount {
                name: ns,
                images: n,
            });
        }
        p.images = p
            .namespaces
            .iter()
            .find(|n| n.name == engine.namespace())
            .map(|n| n.images);
    } else {
        let (records, warnings) = engine.list_noting()?;
        p.warnings.extend(warnings);
        p.images = Some(records.len());
    }
    Ok(())
}

/// The server version in a `version --format json` answer (podman: the client's; it has no
/// server).
pub(crate) fn json_version(out: &[u8]) -> Option<String> {
    let v: Value = serde_json::from_slice(out).ok()?;
    let s = v
        .pointer("/Server/Version")
        .or_else(|| v.pointer("/Server/Components/0/Version"))
        .or_else(|| v.pointer("/Client/Version"))?;
    s.as_str().map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_version(kind: EngineKind, out: &[u8]) -> Option<String> {
        crate::seam::seam(kind).parse_version(out)
    }

    #[test]
    fn versions_from_recorded_output() {
        let f = |name: &str| {
            std::fs::read(format!(
                "{}/tests/fixtures/{name}",
                env!("CARGO_MANIFEST_DIR")
            ))
            .unwrap()
        };
        assert_eq!(
            parse_version(EngineKind::Docker, &f("docker-version.json")).unwrap(),
            "20.10.24+dfsg1"
        );
        assert_eq!(
            parse_version(EngineKind::Podman, &f("podman-version.json")).unwrap(),
            "4.3.1"
        );
        assert_eq!(
            parse_version(EngineKind::Ctr, &f("ctr-version.txt")).unwrap(),
            "1.6.20~ds1"
        );
    }
}
