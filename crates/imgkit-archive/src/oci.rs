//! The JSON documents of image archives: OCI index, manifest and descriptor, the image config
//! (only the fields imgkit reads), and docker-save's `manifest.json`. Parsers are total: any
//! input gives a value or an error, never a panic (fuzzed in `fuzz/`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub const MEDIA_OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const MEDIA_OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const MEDIA_OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const MEDIA_OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";
pub const MEDIA_OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const MEDIA_OCI_LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
pub const MEDIA_DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const MEDIA_DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";

/// containerd's annotation for an image's full name.
pub const ANNOTATION_IMAGE_NAME: &str = "io.containerd.image.name";
/// The OCI annotation for a reference name.
pub const ANNOTATION_REF_NAME: &str = "org.opencontainers.image.ref.name";

/// An OCI content descriptor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    #[serde(default)]
    pub media_type: String,
    pub digest: String,
    pub size: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
}

/// An OCI platform.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Platform {
    #[serde(default)]
    pub architecture: String,
    #[serde(default)]
    pub os: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

impl std::fmt::Display for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

/// An OCI image index (also a docker manifest list).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Index {
    pub schema_version: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    #[serde(default)]
    pub manifests: Vec<Descriptor>,
}

/// An OCI image manifest (also docker schema 2).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    pub schema_version: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    pub config: Descriptor,
    #[serde(default)]
    pub layers: Vec<Descriptor>,
}

/// One entry of docker-save's `manifest.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DockerEntry {
    pub config: String,
    #[serde(default)]
    pub repo_tags: Option<Vec<String>>,
    #[serde(default)]
    pub layers: Vec<String>,
}

/// The image config fields imgkit reads.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
pub struct Config {
    #[serde(default)]
    pub created: Option<String>,
    #[serde(default)]
    pub architecture: String,
    #[serde(default)]
    pub os: String,
    #[serde(default)]
    pub variant: Option<String>,
    #[serde(default)]
    pub rootfs: Option<RootFs>,
}

/// `rootfs` of an image config.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
pub struct RootFs {
    #[serde(default)]
    pub diff_ids: Vec<String>,
}

/// What a blob holds, judged by its `mediaType` (or its shape when the field is absent).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Index,
    Manifest,
}

/// Parses `index.json` (or an index blob).
pub fn parse_index(bytes: &[u8]) -> Result<Index, serde_json::Error> {
    serde_json::from_slice(bytes)
}

/// Parses an image manifest blob.
pub fn parse_manifest(bytes: &[u8]) -> Result<Manifest, serde_json::Error> {
    serde_json::from_slice(bytes)
}

/// Parses docker-save's `manifest.json`.
pub fn parse_docker_manifest(bytes: &[u8]) -> Result<Vec<DockerEntry>, serde_json::Error> {
    serde_json::from_slice(bytes)
}

/// Parses an image config.
pub fn parse_config(bytes: &[u8]) -> Result<Config, serde_json::Error> {
    serde_json::from_slice(bytes)
}

/// Tells an index from a manifest by media type, or by shape when the type is missing.
pub fn kind_of(media_type: &str, bytes: &[u8]) -> Option<Kind> {
    match media_type {
        MEDIA_OCI_INDEX | MEDIA_DOCKER_LIST => Some(Kind::Index),
        MEDIA_OCI_MANIFEST | MEDIA_DOCKER_MANIFEST => Some(Kind::Manifest),
        _ => {
            let v: serde_json::Value = serde_json::from_slice(bytes).ok()?;
            if v.get("manifests").is_some() {
                Some(Kind::Index)
            } else if v.get("config").is_some() {
                Some(Kind::Manifest)
            } else {
                None
            }
        }
    }
}
