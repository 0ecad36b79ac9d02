//! ctr (containerd's own CLI): argv builders and the parser of its `images ls` table.
//!
//! ctr has no JSON output, so the table is parsed carefully: the header must be
//! `REF TYPE DIGEST SIZE PLATFORMS LABELS`; each row is read as whitespace-separated fields
//! (`REF`, `TYPE` and `DIGEST` cannot hold spaces, `SIZE` is always a number and a unit such as
//! `261.3 KiB`, `PLATFORMS` is a comma list or `-`) and the rest of the line is `LABELS`
//! (values may hold spaces). Any row that does not fit is an error quoting it.
//!
//! Records follow nerdctl's conventions for containerd images (see the crate docs).

use std::collections::{BTreeMap, HashMap};
use std::ffi::OsString;

use imgkit_types::{Digest, ImageRecord, ImageRef, NONE, humanize};
use serde_json::Value;

use crate::{Engine, Error, ParseError, os, refs_args};

/// Global flags: `--address` (when set) and `--namespace`.
pub fn global_args(address: Option<&str>, namespace: &str) -> Vec<OsString> {
    let mut args = Vec::new();
    if let Some(a) = address {
        args.extend(os(&["--address", a]));
    }
    args.extend(os(&["--namespace", namespace]));
    args
}

/// `images ls`.
pub fn list_args() -> Vec<OsString> {
    os(&["images", "ls"])
}

/// `images export - -- REF…` (an OCI archive with docker's manifest.json on stdout).
pub fn save_args(refs: &[ImageRef]) -> Vec<OsString> {
    let mut args = os(&["images", "export", "-", "--"]);
    args.extend(refs_args(refs));
    args
}

/// One row of `ctr images ls`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CtrImage {
    /// The image name (`docker.io/library/alpine:3.20`, `repo@sha256:…`, `sha256:<config>`).
    pub name: String,
    /// The target's media type.
    pub media_type: String,
    /// The target (manifest or index) digest.
    pub digest: Digest,
    /// The size as ctr prints it (`261.3 KiB`).
    pub size: String,
    /// Platforms, comma separated, or `-`.
    pub platforms: String,
    /// Labels, `k=v` comma separated, or `-`.
    pub labels: String,
}

const HEADER: [&str; 6] = ["REF", "TYPE", "DIGEST", "SIZE", "PLATFORMS", "LABELS"];

/// Parses the `images ls` table.
pub fn parse_list(out: &[u8]) -> Result<Vec<CtrImage>, ParseError> {
    let text = String::from_utf8_lossy(out);
    let mut lines = text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty());
    let Some((_, header)) = lines.next() else {
        return Ok(Vec::new());
    };
    if header.split_whitespace().collect::<Vec<_>>() != HEADER {
        return Err(ParseError::new(
            1,
            header,
            "expected the header REF TYPE DIGEST SIZE PLATFORMS LABELS",
        ));
    }
    lines
        .map(|(i, line)| parse_row(line).map_err(|why| ParseError::new(i + 1, line, why)))
        .collect()
}

/// A row; a name with spaces in it (containerd stores any string: `ctr images tag … "a/b c:1"`)
/// is recovered by finding the media type and digest columns after it.
fn parse_row(line: &str) -> Result<CtrImage, String> {
    parse_fields(line).or_else(|why| {
        let trimmed = line.trim();
        let mut starts = trimmed
            .char_indices()
            .filter(|&(i, c)| {
                !c.is_whitespace() && (i == 0 || trimmed[..i].ends_with(char::is_whitespace))
            })
            .map(|(i, _)| i)
            .skip(1);
        starts
            .find_map(|i| {
                let mut tokens = trimmed[i..].split_whitespace();
                let media_type = tokens.next()?;
                let digest = tokens.next()?;
                (media_type.contains('/') && digest.parse::<Digest>().is_ok()).then_some(i)
            })
            .and_then(|i| {
                let mut row = parse_fields(&format!("- {}", &trimmed[i..])).ok()?;
                trimmed[..i].trim_end().clone_into(&mut row.name);
                Some(row)
            })
            .ok_or(why)
    })
}

/// Splits rows into those whose name imgkit can use (an image reference, or CRI's
/// `sha256:<config>` alias) and warnings naming the others, which are left out: one odd name
/// must not make a whole namespace unlistable.
pub fn usable(rows: Vec<CtrImage>) -> (Vec<CtrImage>, Vec<String>) {
    let mut warnings = Vec::new();
    let rows = rows
        .into_iter()
        .filter(|r| {
            let ok = r.name.parse::<Digest>().is_ok() || r.name.parse::<ImageRef>().is_ok();
            if !ok {
                warnings.push(format!(
                    "skipping containerd image {:?} ({}): its name is not an image reference imgkit can pass to ctr",
                    r.name, r.digest
                ));
            }
            ok
        })
        .collect();
    (rows, warnings)
}

fn parse_fields(line: &str) -> Result<CtrImage, String> {
    let mut rest = line.trim_start();
    let mut field = |what: &str| -> Result<String, String> {
        let end = rest
            .find(char::is_whitespace)
            .ok_or_else(|| format!("missing {what}"))?;
        let f = rest[..end].to_owned();
        rest = rest[end..].trim_start();
        Ok(f)
    };
    let name = field("TYPE")?;
    let media_type = field("DIGEST")?;
    let digest_s = field("SIZE")?;
    let number = field("SIZE unit")?;
    let unit = field("PLATFORMS")?;
    let platforms = field("LABELS")?;
    let labels = rest.trim_end().to_owned();
    if labels.is_empty() {
        return Err("missing LABELS".to_owned());
    }
    let digest: Digest = digest_s.parse().map_err(|e| format!("DIGEST: {e}"))?;
    if !media_type.contains('/') {
        return Err(format!("TYPE {media_type:?} is not a media type"));
    }
    let size = format!("{number} {unit}");
    if humanize::parse_size(&size).is_none() {
        return Err(format!("SIZE {size:?} is not a size"));
    }
    Ok(CtrImage {
        name,
        media_type,
        digest,
        size,
        platforms,
        labels,
    })
}

/// Repository and tag as nerdctl shows a containerd image name: CRI's `sha256:<config>` alias
/// is `<none>`/`<none>`; `repo@sha256:…` is `repo`/`<none>`; names are familiar.
pub fn repo_tag(name: &str) -> (String, String) {
    if name.parse::<Digest>().is_ok() {
        return (NONE.into(), NONE.into());
    }
    match name.parse::<ImageRef>() {
        Ok(r) => {
            let tag = match (r.tag(), r.digest()) {
                (Some(t), None) => t.to_owned(),
                (None, None) => "latest".to_owned(),
                _ => NONE.to_owned(),
            };
            (r.familiar_name(), tag)
        }
        Err(_) => (NONE.into(), NONE.into()),
    }
}

/// Records for ctr's rows: one per name, nerdctl's extra keys `Name`, `Platform`, `BlobSize`.
pub fn to_records(images: &[CtrImage]) -> Vec<ImageRecord> {
    images
        .iter()
        .map(|img| {
            let (repository, tag) = repo_tag(&img.name);
            let bytes = humanize::parse_size(&img.size).unwrap_or(0);
            let mut extra = BTreeMap::new();
            extra.insert("Name".to_owned(), Value::String(img.name.clone()));
            extra.insert(
                "Platform".to_owned(),
                Value::String(if img.platforms == "-" {
                    String::new()
                } else {
                    img.platforms.clone()
                }),
            );
            extra.insert("BlobSize".to_owned(), Value::String(img.size.clone()));
            extra.insert(
                "VirtualSize".to_owned(),
                Value::String(humanize::size_with_precision(bytes, 4)),
            );
            ImageRecord {
                containers: "N/A".into(),
                created_at: "N/A".into(),
                created_since: "N/A".into(),
                digest: img.digest.to_string(),
                id: img.digest.short_id().to_owned(),
                repository,
                shared_size: "N/A".into(),
                size: humanize::size(bytes),
                tag,
                unique_size: "N/A".into(),
                extra,
            }
        })
        .collect()
}

/// Config digests for `refs`: the listing gives each name's target; `content get` of each
/// distinct target (and of the platform manifest, for an index) gives the config.
pub(crate) fn image_ids(
    engine: &Engine,
    refs: &[ImageRef],
) -> Result<Vec<(ImageRef, Option<Digest>)>, Error> {
    let args = list_args();
    let out = engine.output(&args)?;
    let rows = parse_list(&out).map_err(|e| engine.unparseable(&args, e))?;
    let targets: HashMap<&str, &Digest> =
        rows.iter().map(|r| (r.name.as_str(), &r.digest)).collect();
    let mut configs: HashMap<Digest, Option<Digest>> = HashMap::new();
    let mut result = Vec::new();
    for r in refs {
        let native = engine.native_ref(r).to_string();
        let Some(target) = targets
            .get(native.as_str())
            .or_else(|| targets.get(r.to_string().as_str()))
        else {
            result.push((r.clone(), None));
            continue;
        };
        if !configs.contains_key(*target) {
            let config = config_of(engine, target, 0)?;
            configs.insert((*target).clone(), config);
        }
        result.push((r.clone(), configs[*target].clone()));
    }
    Ok(result)
}

fn config_of(engine: &Engine, digest: &Digest, depth: u8) -> Result<Option<Digest>, Error> {
    let args = os(&["content", "get", digest.as_str()]);
    let out = engine.output(&args)?;
    let Ok(v) = serde_json::from_slice::<Value>(&out) else {
        return Ok(None);
    };
    if let Some(c) = v.pointer("/config/digest").and_then(Value::as_str) {
        return Ok(c.parse().ok());
    }
    // An index: follow the manifest for this machine's platform, else the first.
    let Some(manifests) = v.get("manifests").and_then(Value::as_array) else {
        return Ok(None);
    };
    let arch = imgkit_types::platform::host_arch();
    let pick = manifests
        .iter()
        .find(|m| m.pointer("/platform/architecture").and_then(Value::as_str) == Some(arch))
        .or_else(|| manifests.first());
    match pick
        .and_then(|m| m.get("digest"))
        .and_then(Value::as_str)
        .and_then(|d| d.parse::<Digest>().ok())
    {
        Some(d) if depth < 2 => config_of(engine, &d, depth + 1),
        _ => Ok(None),
    }
}

/// ctr's seam (see [`crate::seam::Seam`]).
pub(crate) struct Ctr;

impl crate::seam::Seam for Ctr {
    fn global_args(&self, e: &Engine) -> Vec<OsString> {
        global_args(e.address.as_deref(), &e.namespace)
    }

    fn endpoint(&self, e: &Engine) -> String {
        e.containerd_address()
    }

    fn list_args(&self) -> Vec<OsString> {
        list_args()
    }

    /// Rows whose names no argv can carry are left out, each with a warning.
    fn parse_list(
        &self,
        e: &Engine,
        out: &[u8],
        _now: i64,
    ) -> Result<(Vec<ImageRecord>, Vec<String>), ParseError> {
        let (rows, skipped) = usable(parse_list(out)?);
        let warnings = skipped
            .into_iter()
            .map(|w| format!("{}: {w}", e.namespace))
            .collect();
        Ok((to_records(&rows), warnings))
    }

    fn classify(&self, e: &Engine, lower: &str, stderr: &str) -> Option<Error> {
        crate::seam::classify_containerd(e, lower, stderr)
    }

    fn save_args(&self, refs: &[ImageRef]) -> Vec<OsString> {
        save_args(refs)
    }

    /// `images import -`.
    fn load_args(&self) -> Vec<OsString> {
        os(&["images", "import", "-"])
    }

    fn namespaces_args(&self) -> Option<Vec<OsString>> {
        Some(os(&["namespaces", "ls", "-q"]))
    }

    fn version_args(&self) -> Vec<OsString> {
        os(&["version"])
    }

    /// `Server:` … `Version:` of ctr's text output.
    fn parse_version(&self, out: &[u8]) -> Option<String> {
        let text = String::from_utf8_lossy(out);
        let server = text.split("Server:").nth(1)?;
        server
            .lines()
            .find_map(|l| l.trim().strip_prefix("Version:"))
            .map(|v| v.trim().to_owned())
    }

    /// `images tag --force SRC NAME…` in one call.
    fn tag_calls(&self, src: &str, names: &[String]) -> Vec<Vec<OsString>> {
        let mut c = os(&["images", "tag", "--force", src]);
        c.extend(names.iter().map(OsString::from));
        vec![c]
    }

    /// `images rm NAME…` (containerd drops a name, and its content once nothing holds it).
    fn untag_calls(&self, names: &[String]) -> Vec<Vec<OsString>> {
        vec![self.remove_args(names)]
    }

    fn remove_args(&self, names: &[String]) -> Vec<OsString> {
        let mut c = os(&["images", "rm"]);
        c.extend(names.iter().map(OsString::from));
        c
    }

    fn image_ids(
        &self,
        e: &Engine,
        refs: &[ImageRef],
    ) -> Result<Vec<(ImageRef, Option<Digest>)>, Error> {
        image_ids(e, refs)
    }

    fn has_image_id(&self, _e: &Engine, _id: &Digest) -> Option<bool> {
        None
    }

    fn tags_by_id(&self) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEFAULT_NS: &str = include_str!("../tests/fixtures/ctr-default.txt");
    const K8S: &str = include_str!("../tests/fixtures/ctr-k8s.txt");

    #[test]
    fn parses_recorded_ctr_1_6_tables() {
        let rows = parse_list(DEFAULT_NS.as_bytes()).unwrap();
        assert_eq!(rows.len(), DEFAULT_NS.lines().count() - 1);
        assert_eq!(rows[0].name, "docker.io/seed/app:1.0");
        assert_eq!(rows[0].size, "261.3 KiB");
        assert_eq!(rows[0].platforms, "linux/amd64");
        assert_eq!(rows[0].labels, "-");
        let recs = to_records(&rows);
        assert_eq!(
            (recs[0].repository.as_str(), recs[0].tag.as_str()),
            ("seed/app", "1.0")
        );
        assert_eq!(recs[0].size, "268kB");
        assert_eq!(recs[0].id, &rows[0].digest.hex()[..12]);
    }

    #[test]
    fn cri_alias_refs_look_as_nerdctl_shows_them() {
        let recs = to_records(&parse_list(K8S.as_bytes()).unwrap());
        let by_name = |n: &str| {
            recs.iter()
                .find(|r| r.extra["Name"] == n)
                .unwrap_or_else(|| panic!("{n}"))
        };
        let config_alias = recs
            .iter()
            .find(|r| r.extra["Name"].as_str().unwrap().starts_with("sha256:"))
            .unwrap();
        assert_eq!(
            (config_alias.repository.as_str(), config_alias.tag.as_str()),
            (NONE, NONE)
        );
        let digest_alias = recs
            .iter()
            .find(|r| {
                r.extra["Name"]
                    .as_str()
                    .unwrap()
                    .starts_with("docker.io/seed/app@")
            })
            .unwrap();
        assert_eq!(
            (digest_alias.repository.as_str(), digest_alias.tag.as_str()),
            ("seed/app", NONE)
        );
        assert_eq!(
            digest_alias.reference().unwrap(),
            format!("seed/app@{}", digest_alias.digest)
        );
        let nested = by_name("registry.example.com:5000/a/b/c:nested");
        assert_eq!(
            (nested.repository.as_str(), nested.tag.as_str()),
            ("registry.example.com:5000/a/b/c", "nested")
        );
    }

    #[test]
    fn labels_with_spaces_and_many_platforms() {
        let hex = "d".repeat(64);
        let table = format!(
            "REF TYPE DIGEST SIZE PLATFORMS LABELS \n\
             docker.io/library/alpine:3.20 application/vnd.oci.image.index.v1+json sha256:{hex} 3.4 MiB linux/386,linux/amd64,linux/arm64/v8 io.cri-containerd.image=managed,note=a b c \n"
        );
        let rows = parse_list(table.as_bytes()).unwrap();
        assert_eq!(rows[0].platforms, "linux/386,linux/amd64,linux/arm64/v8");
        assert_eq!(rows[0].labels, "io.cri-containerd.image=managed,note=a b c");
        let rec = &to_records(&rows)[0];
        assert_eq!(
            (rec.repository.as_str(), rec.tag.as_str(), rec.size.as_str()),
            ("alpine", "3.20", "3.57MB")
        );
    }

    #[test]
    fn the_first_bad_row_is_quoted() {
        let bad = format!(
            "{}\ndocker.io/x:1 application/json sha256:zz 1 KiB - -\n",
            DEFAULT_NS.lines().next().unwrap()
        );
        let e = parse_list(bad.as_bytes()).unwrap_err();
        assert_eq!(e.line_no, 2);
        assert!(e.reason.contains("DIGEST"), "{e:?}");
        let e = parse_list(b"NAME TYPE\n").unwrap_err();
        assert!(e.reason.contains("header"), "{e:?}");
        let truncated = format!(
            "{}\ndocker.io/x:1 application/json\n",
            DEFAULT_NS.lines().next().unwrap()
        );
        assert!(parse_list(truncated.as_bytes()).is_err());
    }

    #[test]
    fn a_name_with_spaces_is_read_and_set_aside_with_a_warning() {
        let hex = "e".repeat(64);
        let table = format!(
            "{}\na/evil name:1           application/vnd.docker.distribution.manifest.v2+json sha256:{hex} 521.3 KiB linux/amd64 -      \n\
             docker.io/seed/base:1.0 application/vnd.docker.distribution.manifest.v2+json sha256:{hex} 521.3 KiB linux/amd64 -      \n",
            DEFAULT_NS.lines().next().unwrap()
        );
        let rows = parse_list(table.as_bytes()).unwrap();
        assert_eq!(rows[0].name, "a/evil name:1");
        assert_eq!(rows[0].size, "521.3 KiB");
        let (rows, warnings) = usable(rows);
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].name, "docker.io/seed/base:1.0");
        assert!(warnings[0].contains("\"a/evil name:1\""), "{warnings:?}");
    }

    #[test]
    fn an_empty_namespace_is_just_a_header() {
        assert!(
            parse_list(include_bytes!("../tests/fixtures/ctr-unknown-ns.txt"))
                .unwrap()
                .is_empty()
        );
        assert!(parse_list(b"").unwrap().is_empty());
    }
}
