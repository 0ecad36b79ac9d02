//! The images an archive holds, built from its `index.json` (OCI layout; Docker ≥25, ctr,
//! nerdctl) and/or docker-save's `manifest.json` (every docker), merged by config digest.

use std::collections::BTreeMap;

use imgkit_types::{Digest, ImageRef};
use serde::Serialize;
use sha2::{Digest as _, Sha256};

use crate::compress::Compression;
use crate::error::{Error, Result};
use crate::oci::{self, Descriptor, Kind, Platform};
use crate::path;
use crate::scan::Table;

/// A blob the archive holds: its digest, size (from its descriptor, or the member's) and
/// where it is (the member name, links resolved).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Blob {
    pub digest: Digest,
    pub size: u64,
    #[serde(rename = "mediaType")]
    pub media_type: String,
    pub path: String,
}

/// One platform's image: a config and its layers (and the manifest naming them, when the
/// archive holds one; docker ≤24 archives don't).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PlatformImage {
    pub platform: Platform,
    pub manifest: Option<Blob>,
    pub config: Blob,
    pub layers: Vec<Blob>,
    pub diff_ids: Vec<Digest>,
    /// `created` from the config (RFC 3339), as written.
    pub created: Option<String>,
}

/// A platform an index names whose manifest the archive lacks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MissingPlatform {
    pub platform: Option<Platform>,
    pub digest: Digest,
}

/// An image of the archive: its names, and one or more platforms (the first is the one a
/// listing shows: the host's platform when present).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Image {
    /// Full names (tags and digest references) from manifest.json and the index annotations.
    pub names: Vec<ImageRef>,
    /// `org.opencontainers.image.ref.name` values that are bare tags, not names.
    pub ref_names: Vec<String>,
    /// What `index.json` points at (a manifest or an index), if the archive has an index.
    pub target: Option<Blob>,
    pub platforms: Vec<PlatformImage>,
    pub missing_platforms: Vec<MissingPlatform>,
    /// Names the archive gives the image that are not image references (left out of `names`:
    /// none of them may reach an engine).
    pub invalid_names: Vec<String>,
}

impl Image {
    /// The platform a listing shows.
    pub fn primary(&self) -> &PlatformImage {
        &self.platforms[0]
    }

    /// The image ID: the primary platform's config digest.
    pub fn id(&self) -> &Digest {
        &self.primary().config.digest
    }

    /// Sum of the primary platform's layer sizes, as stored.
    pub fn size(&self) -> u64 {
        self.primary().layers.iter().map(|l| l.size).sum()
    }

    /// Whether `r` names this image: by name and tag (`:latest` when neither tag nor digest
    /// is given), or by digest (index, manifest or config).
    pub fn matches(&self, r: &ImageRef) -> bool {
        let r = r.normalized();
        if let Some(d) = r.digest() {
            return self.target.as_ref().is_some_and(|t| &t.digest == d)
                || self.platforms.iter().any(|p| {
                    &p.config.digest == d || p.manifest.as_ref().is_some_and(|m| &m.digest == d)
                });
        }
        self.names.iter().any(|n| same_name_tag(n, &r))
    }
}

fn same_name_tag(a: &ImageRef, b: &ImageRef) -> bool {
    a.normalized_name() == b.normalized_name() && a.normalized().tag() == b.tag()
}

use imgkit_types::platform::host_arch;

fn parse_digest(value: &str, referrer: &str) -> Result<Digest> {
    value.parse().map_err(|source| Error::BadDigest {
        referrer: referrer.to_owned(),
        value: value.to_owned(),
        source,
    })
}

fn bad_json(path: &str) -> impl FnOnce(serde_json::Error) -> Error + '_ {
    move |source| Error::BadJson {
        path: path.to_owned(),
        source,
    }
}

/// The bytes of a JSON member (a config or manifest), or why not.
fn json_member<'t>(table: &'t Table, referrer: &str, name: &str) -> Result<&'t [u8]> {
    match table.file(name)? {
        None => Err(Error::MissingMember {
            referrer: referrer.to_owned(),
            member: name.to_owned(),
        }),
        Some(m) => table.json(&m.path)?.ok_or_else(|| {
            if m.size > table.max_json {
                Error::MetadataTooLarge {
                    path: m.path.clone(),
                    size: m.size,
                    limit: table.max_json,
                }
            } else {
                Error::BadJson {
                    path: m.path.clone(),
                    source: serde::de::Error::custom("not a JSON document"),
                }
            }
        }),
    }
}

/// A descriptor's blob, which must be in the archive.
fn blob_of(table: &Table, referrer: &str, desc: &Descriptor) -> Result<Blob> {
    let digest = parse_digest(&desc.digest, referrer)?;
    let name = path::blob_path(&digest);
    let member = table.file(&name)?.ok_or_else(|| Error::MissingBlob {
        referrer: referrer.to_owned(),
        digest: digest.to_string(),
    })?;
    Ok(Blob {
        digest,
        size: u64::try_from(desc.size).unwrap_or(u64::MAX),
        media_type: desc.media_type.clone(),
        path: member.path.clone(),
    })
}

fn config_facts(bytes: &[u8], path: &str) -> Result<(oci::Config, Vec<Digest>)> {
    let config = oci::parse_config(bytes).map_err(bad_json(path))?;
    let diff_ids = config
        .rootfs
        .as_ref()
        .map(|r| {
            r.diff_ids
                .iter()
                .map(|d| parse_digest(d, path))
                .collect::<Result<Vec<_>>>()
        })
        .transpose()?
        .unwrap_or_default();
    Ok((config, diff_ids))
}

fn platform_of(config: &oci::Config, desc: Option<&Platform>) -> Platform {
    if config.os.is_empty()
        && let Some(p) = desc
    {
        return p.clone();
    }
    Platform {
        architecture: config.architecture.clone(),
        os: config.os.clone(),
        variant: config.variant.clone(),
    }
}

fn image_from_manifest(
    table: &Table,
    blob: Blob,
    desc_platform: Option<&Platform>,
) -> Result<PlatformImage> {
    let bytes = json_member(table, "index.json", &blob.path)?;
    let manifest = oci::parse_manifest(bytes).map_err(bad_json(&blob.path))?;
    let referrer = format!("manifest {}", blob.digest);
    let config = blob_of(table, &referrer, &manifest.config)?;
    let (facts, diff_ids) =
        config_facts(json_member(table, &referrer, &config.path)?, &config.path)?;
    let layers = manifest
        .layers
        .iter()
        .map(|l| blob_of(table, &referrer, l))
        .collect::<Result<Vec<_>>>()?;
    Ok(PlatformImage {
        platform: platform_of(&facts, desc_platform),
        manifest: Some(blob),
        config,
        layers,
        diff_ids,
        created: facts.created,
    })
}

fn add_name(image: &mut Image, name: &str, from_ref_annotation: bool) {
    let looks_full = !from_ref_annotation || name.contains(['/', ':', '@']);
    match ImageRef::parse(name) {
        Ok(r) if looks_full && !image.names.iter().any(|n| n.normalized() == r.normalized()) => {
            image.names.push(r);
        }
        Ok(_) if looks_full => {}
        _ if from_ref_annotation && !image.ref_names.iter().any(|n| n == name) => {
            image.ref_names.push(name.to_owned());
        }
        // An unparseable RepoTag never reaches an engine: it is left out here, and said.
        _ if !from_ref_annotation && !image.invalid_names.iter().any(|n| n == name) => {
            image.invalid_names.push(name.to_owned());
        }
        _ => {}
    }
}

/// What a person should know about the names of an archive's images: names that are not
/// image references (left out), and names given to more than one image (an engine loading the
/// archive keeps such a name on one of them only).
pub(crate) fn name_warnings(images: &[Image]) -> Vec<String> {
    let mut warnings = Vec::new();
    let mut owners: BTreeMap<String, Vec<&str>> = BTreeMap::new();
    for image in images {
        for n in &image.invalid_names {
            warnings.push(format!(
                "image {} is named {n:?}, which is not an image reference; that name is left out",
                image.id().short_id()
            ));
        }
        for n in &image.names {
            owners
                .entry(n.normalized().to_string())
                .or_default()
                .push(image.id().short_id());
        }
    }
    for (name, ids) in owners {
        if ids.len() > 1 {
            warnings.push(format!(
                "{name} names {} images ({}); an engine loading the archive keeps the name on one of them only",
                ids.len(),
                ids.join(", ")
            ));
        }
    }
    warnings
}

/// Builds the images of a scanned archive.
pub(crate) fn build(table: &Table, what: &str) -> Result<Vec<Image>> {
    let mut images: Vec<Image> = Vec::new();
    let mut by_target: BTreeMap<Digest, usize> = BTreeMap::new();
    let index_bytes = table.json("index.json")?;
    let manifest_bytes = table.json("manifest.json")?;
    if index_bytes.is_none() && manifest_bytes.is_none() {
        return Err(
            if table.contains("index.json") || table.contains("manifest.json") {
                Error::BadJson {
                    path: "manifest.json".into(),
                    source: serde::de::Error::custom("not a JSON document"),
                }
            } else {
                Error::NotAnImageArchive(what.to_owned())
            },
        );
    }
    if let Some(bytes) = index_bytes {
        let index = oci::parse_index(bytes).map_err(bad_json("index.json"))?;
        for desc in &index.manifests {
            let target = blob_of(table, "index.json", desc)?;
            let slot = if let Some(&i) = by_target.get(&target.digest) {
                i
            } else {
                let image = image_from_target(table, target.clone(), desc)?;
                images.push(image);
                by_target.insert(target.digest, images.len() - 1);
                images.len() - 1
            };
            if let Some(ann) = &desc.annotations {
                if let Some(n) = ann.get(oci::ANNOTATION_IMAGE_NAME) {
                    add_name(&mut images[slot], n, false);
                }
                if let Some(n) = ann.get(oci::ANNOTATION_REF_NAME) {
                    add_name(&mut images[slot], n, true);
                }
            }
        }
    }
    if let Some(bytes) = manifest_bytes {
        let entries = oci::parse_docker_manifest(bytes).map_err(bad_json("manifest.json"))?;
        for entry in entries {
            let config_path = path::normalize(entry.config.as_bytes())?;
            let config_bytes = json_member(table, "manifest.json", &config_path)?;
            let config_digest = match path::blob_digest(&config_path) {
                Some(d) => d,
                None => docker_config_digest(&config_path, config_bytes),
            };
            let existing = images.iter().position(|im| {
                im.platforms
                    .iter()
                    .any(|p| p.config.digest == config_digest)
            });
            let slot = if let Some(i) = existing {
                i
            } else {
                images.push(image_from_docker_entry(
                    table,
                    &entry,
                    &config_path,
                    config_digest,
                    config_bytes,
                )?);
                images.len() - 1
            };
            for tag in entry.repo_tags.iter().flatten() {
                add_name(&mut images[slot], tag, false);
            }
        }
    }
    Ok(images)
}

/// A docker ≤24 config is named `<hex>.json`; otherwise hash it.
fn docker_config_digest(path: &str, bytes: &[u8]) -> Digest {
    let file = path.rsplit('/').next().unwrap_or(path);
    if let Some(d) = file
        .strip_suffix(".json")
        .and_then(|hex| Digest::sha256_hex(hex).ok())
    {
        return d;
    }
    Digest::sha256_hex(&crate::scan::hex(&Sha256::digest(bytes))).expect("sha256 hex")
}

fn image_from_docker_entry(
    table: &Table,
    entry: &oci::DockerEntry,
    config_path: &str,
    config_digest: Digest,
    config_bytes: &[u8],
) -> Result<Image> {
    let (facts, diff_ids) = config_facts(config_bytes, config_path)?;
    let config_member = table.file(config_path)?.expect("json_member found it");
    let config = Blob {
        digest: config_digest,
        size: config_member.size,
        media_type: oci::MEDIA_OCI_CONFIG.to_owned(),
        path: config_member.path.clone(),
    };
    let mut layers = Vec::with_capacity(entry.layers.len());
    for (i, raw) in entry.layers.iter().enumerate() {
        let name = path::normalize(raw.as_bytes())?;
        let member = table.file(&name)?.ok_or_else(|| Error::MissingMember {
            referrer: "manifest.json".into(),
            member: name.clone(),
        })?;
        let digest = match path::blob_digest(&name).or_else(|| path::blob_digest(&member.path)) {
            Some(d) => d,
            None if member.compression == Compression::None => diff_ids
                .get(i)
                .cloned()
                .ok_or_else(|| Error::LayerCountMismatch {
                    image: config.digest.to_string(),
                    diff_ids: diff_ids.len(),
                    layers: entry.layers.len(),
                })?,
            None => return Err(Error::UnknownLayerDigest { path: name }),
        };
        let media_type = match member.compression {
            Compression::None => oci::MEDIA_OCI_LAYER,
            Compression::Gzip => oci::MEDIA_OCI_LAYER_GZIP,
            Compression::Zstd => oci::MEDIA_OCI_LAYER_ZSTD,
        };
        layers.push(Blob {
            digest,
            size: member.size,
            media_type: media_type.to_owned(),
            path: member.path.clone(),
        });
    }
    Ok(Image {
        names: Vec::new(),
        ref_names: Vec::new(),
        target: None,
        platforms: vec![PlatformImage {
            platform: platform_of(&facts, None),
            manifest: None,
            config,
            layers,
            diff_ids,
            created: facts.created,
        }],
        missing_platforms: Vec::new(),
        invalid_names: Vec::new(),
    })
}

fn image_from_target(table: &Table, target: Blob, desc: &Descriptor) -> Result<Image> {
    let bytes = json_member(table, "index.json", &target.path)?;
    let mut platforms = Vec::new();
    let mut missing_platforms = Vec::new();
    match oci::kind_of(&desc.media_type, bytes) {
        Some(Kind::Index) => {
            let index = oci::parse_index(bytes).map_err(bad_json(&target.path))?;
            let referrer = format!("index {}", target.digest);
            for child in &index.manifests {
                let digest = parse_digest(&child.digest, &referrer)?;
                if !table.contains(&path::blob_path(&digest)) {
                    missing_platforms.push(MissingPlatform {
                        platform: child.platform.clone(),
                        digest,
                    });
                    continue;
                }
                // Attestation manifests (buildkit's `unknown/unknown`) are not images to run.
                if child.platform.as_ref().is_some_and(|p| p.os == "unknown") {
                    continue;
                }
                let blob = blob_of(table, &referrer, child)?;
                let child_bytes = json_member(table, &referrer, &blob.path)?;
                if oci::kind_of(&child.media_type, child_bytes) != Some(Kind::Manifest) {
                    continue;
                }
                platforms.push(image_from_manifest(table, blob, child.platform.as_ref())?);
            }
        }
        Some(Kind::Manifest) => platforms.push(image_from_manifest(
            table,
            target.clone(),
            desc.platform.as_ref(),
        )?),
        None => {
            return Err(Error::BadJson {
                path: target.path.clone(),
                source: serde::de::Error::custom("neither an image index nor a manifest"),
            });
        }
    }
    if platforms.is_empty() {
        return Err(Error::MissingBlob {
            referrer: format!("index {}", target.digest),
            digest: missing_platforms
                .first()
                .map_or_else(|| "any platform".to_owned(), |m| m.digest.to_string()),
        });
    }
    let arch = host_arch();
    if let Some(i) = platforms
        .iter()
        .position(|p| p.platform.os == "linux" && p.platform.architecture == arch)
    {
        platforms.swap(0, i);
    }
    Ok(Image {
        names: Vec::new(),
        ref_names: Vec::new(),
        target: Some(target),
        platforms,
        missing_platforms,
        invalid_names: Vec::new(),
    })
}
