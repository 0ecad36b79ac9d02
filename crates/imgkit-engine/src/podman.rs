//! podman: argv builders and the parser of its listing.
//!
//! podman 4.3's `images --format json` prints an image's whole entry (with all its names) once
//! PER NAME: with 1,000 tags that is 1,000 × 1,000 names, 82 MB and 3 s. imgkit asks instead for
//! one JSON object per row (repository:tag) through a Go template whose every field goes through
//! the template's `json` function, so the output stays JSON (quoting included) and linear:
//! `Id, Repository, Tag, Digest, RepoDigests, Size, VirtualSize, Created`.
//!
//! Records: one per row, named in docker's familiar form (`docker.io/seed/app` → `seed/app`;
//! `localhost/x` stays). A digest-only row (`Tag` `<none>`) carries the repository's digest from
//! `RepoDigests`; an image with no name is one `<none>`/`<none>` row. Sizes and times in
//! docker's units.

use std::collections::BTreeMap;
use std::ffi::OsString;

use imgkit_types::{ImageRecord, ImageRef, NONE, humanize};
use serde::Deserialize;
use serde_json::Value;

use crate::{ParseError, os, refs_args};

/// The row template: JSON, one object per repository:tag.
pub const ROW_FORMAT: &str = concat!(
    r#"{"Id":{{json .ImageSummary.ID}},"Repository":{{json .Repository}},"Tag":{{json .Tag}},"#,
    r#""Digest":{{json .Digest}},"RepoDigests":{{json .RepoDigests}},"Size":{{json .ImageSummary.Size}},"#,
    r#""VirtualSize":{{json .ImageSummary.VirtualSize}},"Created":{{json .ImageSummary.Created}}}"#
);

/// `images --format ROW_FORMAT`.
pub fn list_args() -> Vec<OsString> {
    os(&["images", "--format", ROW_FORMAT])
}

/// `save --multi-image-archive --format docker-archive -- REF…` (without `-m` podman 4.3
/// silently saves only the first image).
pub fn save_args(refs: &[ImageRef]) -> Vec<OsString> {
    let mut args = os(&[
        "save",
        "--multi-image-archive",
        "--format",
        "docker-archive",
        "--",
    ]);
    args.extend(refs_args(refs));
    args
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Row {
    id: String,
    repository: String,
    tag: String,
    #[serde(default)]
    digest: Option<String>,
    #[serde(default)]
    repo_digests: Option<Vec<String>>,
    #[serde(default)]
    size: Option<u64>,
    #[serde(default)]
    virtual_size: Option<u64>,
    #[serde(default)]
    created: Option<i64>,
}

/// Parses the rows; `now` (unix seconds) makes `CreatedSince`.
pub fn parse_list(out: &[u8], now: i64) -> Result<Vec<ImageRecord>, ParseError> {
    let text = String::from_utf8_lossy(out);
    let mut records = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let bad = |why: String| ParseError::new(i + 1, line, why);
        let row: Row =
            serde_json::from_str(line).map_err(|e| bad(format!("not a podman image row: {e}")))?;
        records.push(to_record(&row, now).map_err(bad)?);
    }
    Ok(records)
}

fn to_record(row: &Row, now: i64) -> Result<ImageRecord, String> {
    let id = row.id.strip_prefix("sha256:").unwrap_or(&row.id);
    if id.len() < 12 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(format!("image ID {:?} is not hex", row.id));
    }
    let mut extra = BTreeMap::new();
    extra.insert(
        "VirtualSize".to_owned(),
        Value::String(humanize::size_with_precision(
            row.virtual_size.or(row.size).unwrap_or(0),
            4,
        )),
    );
    let mut rec = ImageRecord {
        containers: "N/A".into(),
        created_at: row
            .created
            .map_or_else(|| "N/A".into(), humanize::created_at),
        created_since: row.created.map_or_else(
            || "N/A".into(),
            |c| humanize::since(u64::try_from(now - c).unwrap_or(0)),
        ),
        digest: NONE.into(),
        id: id[..12].to_owned(),
        repository: NONE.into(),
        shared_size: "N/A".into(),
        size: humanize::size(row.size.unwrap_or(0)),
        tag: NONE.into(),
        unique_size: "N/A".into(),
        extra,
    };
    if row.repository == NONE {
        return Ok(rec);
    }
    let repo: ImageRef = row
        .repository
        .parse()
        .map_err(|e| format!("repository {:?}: {e}", row.repository))?;
    rec.repository = repo.familiar_name();
    if row.tag == NONE {
        // digest-only: the digest this repository was pulled by
        let own = row.repo_digests.iter().flatten().find_map(|rd| {
            let r = rd.parse::<ImageRef>().ok()?;
            (r.name() == repo.name())
                .then(|| r.digest().map(ToString::to_string))
                .flatten()
        });
        rec.digest = own
            .or_else(|| row.digest.clone())
            .unwrap_or_else(|| NONE.into());
    } else {
        row.tag.clone_into(&mut rec.tag);
    }
    Ok(rec)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pull_args_reach_the_registry_as_asked_and_end_options_before_the_references() {
        let refs = vec![
            ImageRef::parse("127.0.0.1:5000/seed/app:1.0").unwrap(),
            ImageRef::parse("reg.example.com/x/y:2").unwrap(),
        ];
        let plain = pull_args(&refs, &crate::PullOptions::default());
        assert_eq!(
            plain,
            os(&[
                "pull",
                "--quiet",
                "--tls-verify=false",
                "--",
                "127.0.0.1:5000/seed/app:1.0",
                "reg.example.com/x/y:2",
            ])
        );
        let o = crate::PullOptions {
            tls_verify: true,
            cert_dir: Some("/tmp/certs".into()),
            authfile: Some("/home/u/.docker/config.json".into()),
            platform: Some("linux/arm64".into()),
        };
        assert_eq!(
            pull_args(&refs[..1], &o),
            os(&[
                "pull",
                "--quiet",
                "--tls-verify=true",
                "--cert-dir",
                "/tmp/certs",
                "--authfile",
                "/home/u/.docker/config.json",
                "--platform",
                "linux/arm64",
                "--",
                "127.0.0.1:5000/seed/app:1.0",
            ])
        );
    }

    const LIST: &str = include_str!("../tests/fixtures/podman-images.jsonl");
    const NOW: i64 = 1_795_854_585; // a minute after the fixture's images were made

    #[test]
    fn parses_recorded_podman_4_3_rows() {
        let recs = parse_list(LIST.as_bytes(), NOW).unwrap();
        assert_eq!(recs.len(), LIST.lines().count());
        let refs: Vec<String> = recs.iter().filter_map(ImageRecord::reference).collect();
        for want in [
            "seed/app:1.0",
            "seed/many:v5",
            "seed/base:1.0",
            "seed/multi:latest",
            "localhost:5000/team/app:1.0",
            "registry.example.com:5000/a/b/c:nested",
        ] {
            assert!(
                refs.contains(&want.to_owned()),
                "{want} missing from {refs:?}"
            );
        }
        let app = recs.iter().find(|r| r.repository == "seed/app").unwrap();
        assert_eq!(app.id, "6498340d1d36");
        assert_eq!(recs.iter().filter(|r| r.id == app.id).count(), 8);
        assert_eq!(app.size, "268kB");
        assert_eq!(app.created_at, "2026-11-28 08:28:45 +0000 UTC");
        assert_eq!(app.created_since, "About a minute ago");
        assert_eq!(app.digest, NONE);
        // the untagged image is one <none> row
        assert_eq!(
            recs.iter()
                .filter(|r| r.repository == NONE && r.tag == NONE)
                .count(),
            1
        );
        // the same keys as docker 20.10 prints
        let line = app.to_json_line();
        let keys: Vec<String> = serde_json::from_str::<serde_json::Map<String, Value>>(&line)
            .unwrap()
            .keys()
            .cloned()
            .collect();
        assert_eq!(
            keys,
            [
                "Containers",
                "CreatedAt",
                "CreatedSince",
                "Digest",
                "ID",
                "Repository",
                "SharedSize",
                "Size",
                "Tag",
                "UniqueSize",
                "VirtualSize"
            ]
        );
    }

    #[test]
    fn a_digest_only_row_carries_its_repositorys_digest() {
        let (a, b) = ("a".repeat(64), "b".repeat(64));
        let line = format!(
            r#"{{"Id":"{a}","Repository":"quay.io/x/y","Tag":"<none>","Digest":"sha256:{b}","RepoDigests":["quay.io/other@sha256:{b}","quay.io/x/y@sha256:{a}"],"Size":1000,"VirtualSize":1000,"Created":1795854111}}"#
        );
        let recs = parse_list(line.as_bytes(), NOW).unwrap();
        assert_eq!(
            (recs[0].repository.as_str(), recs[0].tag.as_str()),
            ("quay.io/x/y", NONE)
        );
        assert_eq!(
            recs[0].reference().unwrap(),
            format!("quay.io/x/y@sha256:{a}")
        );
    }

    #[test]
    fn garbage_is_quoted() {
        let e = parse_list(b"Error: something\n", NOW).unwrap_err();
        assert_eq!((e.line_no, e.line.as_str()), (1, "Error: something"));
        let e = parse_list(br#"{"Id":"xyz","Repository":"a","Tag":"b"}"#, NOW).unwrap_err();
        assert!(e.reason.contains("not hex"), "{e:?}");
    }

    #[test]
    fn the_template_is_json_once_filled() {
        let filled = ROW_FORMAT
            .replace("{{json .ImageSummary.ID}}", "\"x\"")
            .replace("{{json .RepoDigests}}", "[]")
            .replace("{{json .Repository}}", "\"r\"")
            .replace("{{json .Tag}}", "\"t\"")
            .replace("{{json .Digest}}", "\"d\"")
            .replace("{{json .ImageSummary.Size}}", "1")
            .replace("{{json .ImageSummary.VirtualSize}}", "1")
            .replace("{{json .ImageSummary.Created}}", "1");
        assert!(serde_json::from_str::<Value>(&filled).is_ok(), "{filled}");
    }
}

/// `podman pull` of registry references straight into podman's storage (the library skopeo
/// copies with; no archive, no temporary copy), quiet; `--` before the references.
pub(crate) fn pull_args(refs: &[ImageRef], o: &crate::PullOptions) -> Vec<OsString> {
    let mut a = os(&["pull", "--quiet"]);
    a.push(format!("--tls-verify={}", o.tls_verify).into());
    if let Some(d) = &o.cert_dir {
        a.push("--cert-dir".into());
        a.push(d.into());
    }
    if let Some(f) = &o.authfile {
        a.push("--authfile".into());
        a.push(f.into());
    }
    if let Some(p) = &o.platform {
        a.push("--platform".into());
        a.push(p.into());
    }
    a.push("--".into());
    a.extend(refs.iter().map(|r| OsString::from(r.to_string())));
    a
}

/// Whether podman speaks to a remote service (`podman info`'s `Host.ServiceIsRemote`).
pub(crate) const REMOTE_ARGS: [&str; 3] = ["info", "--format", "{{.Host.ServiceIsRemote}}"];

/// podman's seam (see [`crate::seam::Seam`]). Its naming quirk lives here alone: a short name
/// in a docker archive (`seed/app:1.0`) is filed under `localhost/` where docker means
/// `docker.io/`.
pub(crate) struct Podman;

impl crate::seam::Seam for Podman {
    fn global_args(&self, _e: &crate::Engine) -> Vec<OsString> {
        Vec::new()
    }

    fn endpoint(&self, _e: &crate::Engine) -> String {
        match crate::env_nonempty("CONTAINERS_STORAGE_CONF") {
            Some(conf) => format!("storage configured by {conf}"),
            None => "local storage".to_owned(),
        }
    }

    fn list_args(&self) -> Vec<OsString> {
        list_args()
    }

    fn parse_list(
        &self,
        _e: &crate::Engine,
        out: &[u8],
        now: i64,
    ) -> Result<(Vec<ImageRecord>, Vec<String>), ParseError> {
        Ok((parse_list(out, now)?, Vec::new()))
    }

    fn classify(&self, e: &crate::Engine, lower: &str, stderr: &str) -> Option<crate::Error> {
        lower
            .contains("permission denied")
            .then(|| crate::Error::PermissionDenied {
                kind: e.kind(),
                endpoint: e.endpoint(),
                stderr: stderr.to_owned(),
            })
    }

    fn save_args(&self, refs: &[ImageRef]) -> Vec<OsString> {
        save_args(refs)
    }

    fn version_args(&self) -> Vec<OsString> {
        os(&["version", "--format", "json"])
    }

    /// `tag SRC NAME…` in one call.
    fn tag_calls(&self, src: &str, names: &[String]) -> Vec<Vec<OsString>> {
        let mut c = os(&["tag", src]);
        c.extend(names.iter().map(OsString::from));
        vec![c]
    }

    /// `untag NAME NAME`, one call per name (`podman untag IMAGE NAME…` works per image).
    fn untag_calls(&self, names: &[String]) -> Vec<Vec<OsString>> {
        names.iter().map(|n| os(&["untag", n, n])).collect()
    }

    fn misfiles_short_names(&self) -> bool {
        true
    }

    fn misfiled(
        &self,
        load_output: &str,
        images: &[(&ImageRef, &str)],
    ) -> Vec<crate::seam::Misfiled> {
        misfiled(load_output, images)
    }
}

/// The names `podman load` filed under `localhost/` (its `Loaded image: …` lines) that docker
/// means as `docker.io/…`, grouped by image ID.
fn misfiled(load_output: &str, images: &[(&ImageRef, &str)]) -> Vec<crate::seam::Misfiled> {
    let loaded: std::collections::HashSet<&str> = load_output
        .lines()
        .filter_map(|l| l.trim().strip_prefix("Loaded image: "))
        .map(str::trim)
        .collect();
    let mut by_image: BTreeMap<&str, crate::seam::Misfiled> = BTreeMap::new();
    for (r, id) in images {
        if r.domain().is_some() || r.tag().is_none() {
            continue;
        }
        let local = format!("localhost/{r}");
        if loaded.contains(local.as_str()) {
            let entry = by_image.entry(id).or_insert_with(|| crate::seam::Misfiled {
                wrong: Vec::new(),
                right: Vec::new(),
            });
            entry.wrong.push(local);
            entry.right.push(r.normalized().to_string());
        }
    }
    by_image.into_values().collect()
}

#[cfg(test)]
mod seam_tests {
    use super::*;

    #[test]
    fn short_names_loaded_under_localhost_are_found() {
        let a: ImageRef = "seed/app:1.0".parse().unwrap();
        let b: ImageRef = "seed/app:latest".parse().unwrap();
        let q: ImageRef = "quay.io/x/y:1".parse().unwrap();
        let out = "Loaded image: localhost/seed/app:1.0\nLoaded image: localhost/seed/app:latest\nLoaded image: quay.io/x/y:1\n";
        let m = misfiled(out, &[(&a, "i1"), (&b, "i1"), (&q, "i2")]);
        assert_eq!(m.len(), 1);
        assert_eq!(
            m[0].wrong,
            ["localhost/seed/app:1.0", "localhost/seed/app:latest"]
        );
        assert_eq!(
            m[0].right,
            ["docker.io/seed/app:1.0", "docker.io/seed/app:latest"]
        );
    }
}
