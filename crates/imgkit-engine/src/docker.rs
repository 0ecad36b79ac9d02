//! docker (dockerd/moby through the docker CLI): argv builders and parsers.
//!
//! `docker image ls --format '{{json .}}'` already prints the record shape; lines pass through
//! untouched. One exception: without `--digests` docker prints a digest-only row (an image
//! pulled by digest, `Tag` `<none>`) with an empty `Digest`, and `--digests` would add rows per
//! digest. imgkit fills that one field from a batched `image inspect` of those IDs.

use std::collections::HashMap;
use std::ffi::OsString;

use imgkit_types::{ImageRecord, ImageRef, NONE};

use crate::{ParseError, os, refs_args};

/// Global flags: `--host` and `--context`.
pub fn global_args(host: Option<&str>, context: Option<&str>) -> Vec<OsString> {
    let mut args = Vec::new();
    if let Some(h) = host {
        args.extend(os(&["--host", h]));
    }
    if let Some(c) = context {
        args.extend(os(&["--context", c]));
    }
    args
}

/// `image ls --format {{json .}}`.
pub fn list_args() -> Vec<OsString> {
    os(&["image", "ls", "--format", "{{json .}}"])
}

/// `save -- REF…` (a docker-save tar on stdout).
pub fn save_args(refs: &[ImageRef]) -> Vec<OsString> {
    let mut args = os(&["save", "--"]);
    args.extend(refs_args(refs));
    args
}

/// Parses `image ls --format '{{json .}}'` output: one JSON object per line.
pub fn parse_list(out: &[u8]) -> Result<Vec<ImageRecord>, ParseError> {
    let text = String::from_utf8_lossy(out);
    let mut records = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let rec: ImageRecord = serde_json::from_str(line)
            .map_err(|e| ParseError::new(i + 1, line, format!("not a docker image line: {e}")))?;
        records.push(rec);
    }
    Ok(records)
}

/// A digest-only row: a repository, no tag, and no digest shown.
fn is_digest_only(r: &ImageRecord) -> bool {
    r.repository != NONE && r.tag == NONE && (r.digest.is_empty() || r.digest == NONE)
}

/// IDs of the digest-only rows, each once.
pub fn digest_only_ids(records: &[ImageRecord]) -> Vec<String> {
    let mut ids: Vec<String> = records
        .iter()
        .filter(|r| is_digest_only(r))
        .map(|r| r.id.clone())
        .collect();
    ids.sort();
    ids.dedup();
    ids
}

/// `image inspect --format '{{.ID}} {{json .RepoDigests}}' -- ID…`.
pub fn repo_digests_args(ids: &[String]) -> Vec<OsString> {
    let mut args = os(&[
        "image",
        "inspect",
        "--format",
        "{{.ID}} {{json .RepoDigests}}",
        "--",
    ]);
    args.extend(ids.iter().map(OsString::from));
    args
}

/// Parses the inspect lines into short ID → `repo@digest` references.
pub fn parse_repo_digests(out: &[u8]) -> Result<HashMap<String, Vec<ImageRef>>, ParseError> {
    let text = String::from_utf8_lossy(out);
    let mut map = HashMap::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let bad = |why: &str| ParseError::new(i + 1, line, why);
        let (id, json) = line
            .split_once(' ')
            .ok_or_else(|| bad("expected `ID [digests]`"))?;
        let id: imgkit_types::Digest = id.parse().map_err(|_| bad("not an image ID"))?;
        let digests: Option<Vec<String>> =
            serde_json::from_str(json).map_err(|_| bad("not a JSON list"))?;
        let refs = digests
            .unwrap_or_default()
            .iter()
            .map(|d| d.parse::<ImageRef>().map_err(|e| bad(&e.to_string())))
            .collect::<Result<Vec<_>, _>>()?;
        map.insert(id.short_id().to_owned(), refs);
    }
    Ok(map)
}

/// Sets `Digest` on digest-only rows from the image's repo digests of the same repository.
pub fn fill_digests<S: std::hash::BuildHasher>(
    records: &mut [ImageRecord],
    digests: &HashMap<String, Vec<ImageRef>, S>,
) {
    for r in records.iter_mut().filter(|r| is_digest_only(r)) {
        let Some(refs) = digests.get(&r.id) else {
            continue;
        };
        let found = refs
            .iter()
            .find(|d| d.familiar_name() == r.repository || d.name() == r.repository);
        if let Some(d) = found.and_then(ImageRef::digest) {
            r.digest = d.to_string();
        }
    }
}

/// The socket a docker error message names (`… daemon at unix:///x.sock. Is …`).
pub(crate) fn socket_in_message(stderr: &str) -> Option<String> {
    let at = stderr.find(" at ")? + 4;
    let rest = &stderr[at..];
    let end = rest.find(|c: char| c.is_whitespace()).unwrap_or(rest.len());
    let s = rest[..end].trim_end_matches(['.', ':']);
    s.contains("://").then(|| s.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIST: &str = include_str!("../tests/fixtures/docker-images.jsonl");

    #[test]
    fn parses_recorded_docker_20_10_lines() {
        let recs = parse_list(LIST.as_bytes()).unwrap();
        assert_eq!(recs.len(), LIST.lines().count());
        let pinned = recs.iter().find(|r| r.repository == "seed/pinned").unwrap();
        assert_eq!((pinned.tag.as_str(), pinned.digest.as_str()), (NONE, ""));
        assert!(recs.iter().any(|r| r.repository == NONE && r.tag == NONE));
        assert!(
            recs.iter()
                .any(|r| r.repository == "registry.example.com:5000/a/b/c" && r.tag == "nested")
        );
        // untouched: each line re-serializes to the same JSON value
        for (line, rec) in LIST.lines().zip(&recs) {
            let a: serde_json::Value = serde_json::from_str(line).unwrap();
            let b: serde_json::Value = serde_json::from_str(&rec.to_json_line()).unwrap();
            assert_eq!(a, b);
        }
        assert_eq!(digest_only_ids(&recs), std::slice::from_ref(&pinned.id));
    }

    #[test]
    fn fills_the_digest_of_digest_only_rows() {
        let mut recs = parse_list(LIST.as_bytes()).unwrap();
        let id = digest_only_ids(&recs).remove(0);
        let hex = "7b423225bbbc50ef5a69cf9c11d5a3431e4b52242f80b4fc2ad2cd25b5e84544";
        let out = format!(
            "sha256:{id}{} [\"seed/pinned@sha256:{hex}\"]\n",
            "0".repeat(52)
        );
        let map = parse_repo_digests(out.as_bytes()).unwrap();
        fill_digests(&mut recs, &map);
        let pinned = recs.iter().find(|r| r.repository == "seed/pinned").unwrap();
        assert_eq!(pinned.digest, format!("sha256:{hex}"));
        assert_eq!(
            pinned.reference().unwrap(),
            format!("seed/pinned@sha256:{hex}")
        );
    }

    #[test]
    fn a_bad_line_is_quoted_with_its_number() {
        let out = format!("{}\nWARNING: something odd\n", LIST.lines().next().unwrap());
        let e = parse_list(out.as_bytes()).unwrap_err();
        assert_eq!((e.line_no, e.line.as_str()), (2, "WARNING: something odd"));
    }

    #[test]
    fn finds_the_socket_in_messages() {
        let m = "Cannot connect to the Docker daemon at unix:///tmp/nonexist.sock. Is the docker daemon running?";
        assert_eq!(socket_in_message(m).unwrap(), "unix:///tmp/nonexist.sock");
        let m = "permission denied while trying to connect to the Docker daemon socket at unix:///tmp/d/docker.sock: Get \"http://x\": dial unix";
        assert_eq!(socket_in_message(m).unwrap(), "unix:///tmp/d/docker.sock");
    }
}
