//! podman: argv builders and the parser of `podman images --format json` (one pretty JSON array
//! for the whole listing; 4.3 prints `Id, Names, RepoDigests, Size, Created, …`).
//!
//! podman 4.3 prints an image's entry once per name, each with all its names: entries are
//! taken once per `Id`. Records: one per name in `Names`, named in docker's familiar form
//! (`docker.io/seed/app:1.0` → `seed/app` / `1.0`; `localhost/x` stays). An image with no name
//! but repo digests gets one digest-only row per repository (`Tag` `<none>`, `Digest` set); an
//! image with neither is one `<none>`/`<none>` row. Sizes and times in docker's units.

use std::collections::BTreeSet;
use std::ffi::OsString;

use imgkit_types::{ImageRecord, ImageRef, NONE, humanize};
use serde::Deserialize;
use serde_json::Value;

use crate::{ParseError, os, refs_args};

/// `images --format json`.
pub fn list_args() -> Vec<OsString> {
    os(&["images", "--format", "json"])
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
struct PodmanImage {
    id: String,
    #[serde(default)]
    names: Option<Vec<String>>,
    #[serde(default)]
    repo_digests: Option<Vec<String>>,
    #[serde(default)]
    digest: Option<String>,
    #[serde(default)]
    size: Option<u64>,
    #[serde(default)]
    virtual_size: Option<u64>,
    #[serde(default)]
    created: Option<i64>,
}

/// Parses the JSON array; `now` (unix seconds) makes `CreatedSince`.
pub fn parse_list(out: &[u8], now: i64) -> Result<Vec<ImageRecord>, ParseError> {
    let text = String::from_utf8_lossy(out);
    if text.trim().is_empty() {
        return Ok(Vec::new());
    }
    let images: Vec<Value> = serde_json::from_str(&text).map_err(|e| {
        let line_no = e.line().max(1);
        let line = text.lines().nth(line_no - 1).unwrap_or_default();
        ParseError::new(line_no, line, format!("not podman's JSON array: {e}"))
    })?;
    let mut records = Vec::new();
    // podman 4.3 repeats an image's entry once per name (each with all the names).
    let mut seen_ids = std::collections::HashSet::new();
    for (i, v) in images.into_iter().enumerate() {
        if let Some(id) = v.get("Id").and_then(Value::as_str)
            && !seen_ids.insert(id.to_owned())
        {
            continue;
        }
        let shown = v.to_string();
        let img: PodmanImage = serde_json::from_value(v).map_err(|e| {
            ParseError::new(
                1,
                &shown,
                format!("image #{} is not a podman image: {e}", i + 1),
            )
        })?;
        let bad = |why: String| ParseError::new(1, &shown, why);
        push_records(&img, now, &mut records).map_err(bad)?;
    }
    Ok(records)
}

fn push_records(img: &PodmanImage, now: i64, out: &mut Vec<ImageRecord>) -> Result<(), String> {
    let id = img.id.strip_prefix("sha256:").unwrap_or(&img.id);
    if id.len() < 12 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(format!("image ID {:?} is not hex", img.id));
    }
    let mut base = ImageRecord {
        containers: "N/A".into(),
        created_at: img
            .created
            .map_or_else(|| "N/A".into(), humanize::created_at),
        created_since: img.created.map_or_else(
            || "N/A".into(),
            |c| humanize::since(u64::try_from(now - c).unwrap_or(0)),
        ),
        digest: NONE.into(),
        id: id[..12].to_owned(),
        repository: NONE.into(),
        shared_size: "N/A".into(),
        size: humanize::size(img.size.unwrap_or(0)),
        tag: NONE.into(),
        unique_size: "N/A".into(),
        extra: std::collections::BTreeMap::new(),
    };
    base.extra.insert(
        "VirtualSize".into(),
        Value::String(humanize::size_with_precision(
            img.virtual_size.or(img.size).unwrap_or(0),
            4,
        )),
    );
    let names = img.names.as_deref().unwrap_or_default();
    let mut tagged_repos = BTreeSet::new();
    for name in names {
        let r: ImageRef = name.parse().map_err(|e| format!("name {name:?}: {e}"))?;
        let mut rec = base.clone();
        rec.repository = r.familiar_name();
        match (r.tag(), r.digest()) {
            (Some(t), _) => t.clone_into(&mut rec.tag),
            (None, Some(d)) => rec.digest = d.to_string(),
            (None, None) => rec.tag = "latest".into(),
        }
        tagged_repos.insert(rec.repository.clone());
        out.push(rec);
    }
    // Repo digests of repositories with no tag: digest-only rows, as docker shows them.
    let mut seen = BTreeSet::new();
    for rd in img.repo_digests.as_deref().unwrap_or_default() {
        let r: ImageRef = rd.parse().map_err(|e| format!("repo digest {rd:?}: {e}"))?;
        let repo = r.familiar_name();
        if tagged_repos.contains(&repo) || !seen.insert(repo.clone()) {
            continue;
        }
        let mut rec = base.clone();
        rec.repository = repo;
        rec.digest = r.digest().map_or_else(
            || img.digest.clone().unwrap_or_else(|| NONE.into()),
            ToString::to_string,
        );
        out.push(rec);
    }
    if names.is_empty() && seen.is_empty() {
        out.push(base);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIST: &str = include_str!("../tests/fixtures/podman-images.json");
    const NOW: i64 = 1_795_854_585; // a minute after the fixture's images were made

    #[test]
    fn parses_recorded_podman_4_3_output() {
        let recs = parse_list(LIST.as_bytes(), NOW).unwrap();
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
        assert_eq!(
            recs.iter().filter(|r| r.id == app.id).count(),
            8,
            "one record per name, not per name squared"
        );
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
        // same keys as docker 20.10 prints
        let keys: Vec<String> =
            serde_json::from_str::<serde_json::Map<String, Value>>(&app.to_json_line())
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
    fn repo_digests_without_a_tag_are_digest_only_rows() {
        let hex = "c".repeat(64);
        let json = format!(
            r#"[{{"Id":"{hex}","RepoDigests":["quay.io/x/y@sha256:{hex}"],"Size":1000,"Created":1795854111}}]"#
        );
        let recs = parse_list(json.as_bytes(), NOW).unwrap();
        assert_eq!(recs.len(), 1);
        assert_eq!(
            (recs[0].repository.as_str(), recs[0].tag.as_str()),
            ("quay.io/x/y", NONE)
        );
        assert_eq!(
            recs[0].reference().unwrap(),
            format!("quay.io/x/y@sha256:{hex}")
        );
    }

    #[test]
    fn garbage_is_quoted() {
        let e = parse_list(b"Error: something\n", NOW).unwrap_err();
        assert_eq!(e.line, "Error: something");
        let e = parse_list(br#"[{"Id":"xyz","Names":["a"]}]"#, NOW).unwrap_err();
        assert!(e.reason.contains("not hex"), "{e:?}");
    }
}
