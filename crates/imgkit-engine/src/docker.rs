//! docker (dockerd/moby through the docker CLI): argv builders and parsers.
//!
//! `docker image ls --format '{{json .}}'` already prints the record shape. One wrinkle: without
//! `--digests` docker prints a digest-only row (an image pulled by digest, `Tag` `<none>`) with
//! an empty `Digest`, so nothing in the row names the image. imgkit lists with `--digests` (one
//! call) and undoes what that flag adds elsewhere: tagged rows get back `<none>` and the extra
//! row per repo digest collapses, so every record equals the line docker prints without the
//! flag, except that a digest-only row carries its digest.

use std::collections::HashSet;
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

/// `image ls --digests --format {{json .}}`.
pub fn list_args() -> Vec<OsString> {
    os(&["image", "ls", "--digests", "--format", "{{json .}}"])
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

/// Turns `--digests` rows back into docker's default rows: one per repository:tag with `Digest`
/// `<none>`, and one per repository for a digest-only image, keeping its (first) digest.
pub fn undo_digests(records: Vec<ImageRecord>) -> Vec<ImageRecord> {
    let mut seen = HashSet::new();
    records
        .into_iter()
        .filter_map(|mut r| {
            if r.repository != NONE && r.tag != NONE {
                NONE.clone_into(&mut r.digest);
            }
            let key = (r.repository.clone(), r.tag.clone(), r.id.clone());
            (r.repository == NONE || seen.insert(key)).then_some(r)
        })
        .collect()
}

/// The socket a docker error message names (`… daemon at unix:///x.sock. Is …`).
pub(crate) fn socket_in_message(stderr: &str) -> Option<String> {
    let at = stderr.find(" at ")? + 4;
    let rest = &stderr[at..];
    let end = rest.find(|c: char| c.is_whitespace()).unwrap_or(rest.len());
    let s = rest[..end].trim_end_matches(['.', ':']);
    s.contains("://").then(|| s.to_owned())
}

/// docker's seam (see [`crate::seam::Seam`]).
pub(crate) struct Docker;

impl crate::seam::Seam for Docker {
    fn global_args(&self, e: &crate::Engine) -> Vec<OsString> {
        global_args(e.docker_host.as_deref(), e.docker_context.as_deref())
    }

    fn endpoint(&self, e: &crate::Engine) -> String {
        if let Some(h) = &e.docker_host {
            h.clone()
        } else if let Some(c) = &e.docker_context {
            format!("context {c}")
        } else if let Some(h) = crate::env_nonempty("DOCKER_HOST") {
            h
        } else if let Some(c) = crate::env_nonempty("DOCKER_CONTEXT") {
            format!("context {c}")
        } else if cfg!(windows) {
            "npipe:////./pipe/docker_engine".to_owned()
        } else {
            "unix:///var/run/docker.sock".to_owned()
        }
    }

    fn list_args(&self) -> Vec<OsString> {
        list_args()
    }

    fn parse_list(
        &self,
        _e: &crate::Engine,
        out: &[u8],
        _now: i64,
    ) -> Result<(Vec<ImageRecord>, Vec<String>), ParseError> {
        Ok((undo_digests(parse_list(out)?), Vec::new()))
    }

    fn classify(&self, e: &crate::Engine, lower: &str, stderr: &str) -> Option<crate::Error> {
        let endpoint = || socket_in_message(stderr).unwrap_or_else(|| e.endpoint());
        if lower.contains("permission denied") && lower.contains("docker daemon socket") {
            return Some(crate::Error::PermissionDenied {
                kind: e.kind(),
                endpoint: endpoint(),
                stderr: stderr.to_owned(),
            });
        }
        if lower.contains("cannot connect to the docker daemon")
            || lower.contains("error during connect")
        {
            return Some(crate::Error::DaemonUnreachable {
                kind: e.kind(),
                endpoint: endpoint(),
                stderr: stderr.to_owned(),
            });
        }
        None
    }

    fn save_args(&self, refs: &[ImageRef]) -> Vec<OsString> {
        save_args(refs)
    }

    fn version_args(&self) -> Vec<OsString> {
        os(&["version", "--format", "{{json .}}"])
    }

    fn native_ref(&self, r: &ImageRef) -> ImageRef {
        r.clone()
    }

    /// `tag SRC NAME`, one call per name.
    fn tag_calls(&self, src: &str, names: &[String]) -> Vec<Vec<OsString>> {
        names.iter().map(|n| os(&["tag", src, n])).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIST: &str = include_str!("../tests/fixtures/docker-images.jsonl");

    const DIGESTS: &str = include_str!("../tests/fixtures/docker-images-digests.jsonl");

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
        // each line re-serializes to the same JSON value
        for (line, rec) in LIST.lines().zip(&recs) {
            let a: serde_json::Value = serde_json::from_str(line).unwrap();
            let b: serde_json::Value = serde_json::from_str(&rec.to_json_line()).unwrap();
            assert_eq!(a, b);
        }
    }

    #[test]
    fn digests_rows_become_the_default_rows_with_the_digest_only_rows_digest() {
        let plain = parse_list(LIST.as_bytes()).unwrap();
        let undone = undo_digests(parse_list(DIGESTS.as_bytes()).unwrap());
        let mut fixed: Vec<String> = plain
            .iter()
            .map(|r| {
                let mut r = r.clone();
                if r.repository == "seed/pinned" {
                    r.digest = undone
                        .iter()
                        .find(|u| u.repository == "seed/pinned")
                        .unwrap()
                        .digest
                        .clone();
                }
                r.to_json_line()
            })
            .collect();
        let mut got: Vec<String> = undone.iter().map(ImageRecord::to_json_line).collect();
        fixed.sort();
        got.sort();
        assert_eq!(got, fixed);
        let pinned = undone
            .iter()
            .find(|r| r.repository == "seed/pinned")
            .unwrap();
        assert!(
            pinned
                .reference()
                .unwrap()
                .starts_with("seed/pinned@sha256:")
        );
        // the tagged seed/app row had a digest with --digests; it is <none> again
        assert_eq!(
            undone
                .iter()
                .find(|r| r.repository == "seed/app")
                .unwrap()
                .digest,
            NONE
        );
    }

    #[test]
    fn several_digests_of_one_repository_are_one_row() {
        let line = |tag: &str, digest: &str| {
            format!(
                r#"{{"Containers":"N/A","Digest":"{digest}","ID":"0123456789ab","Repository":"a/b","Tag":"{tag}"}}"#
            )
        };
        let (d1, d2) = (
            format!("sha256:{}", "1".repeat(64)),
            format!("sha256:{}", "2".repeat(64)),
        );
        let out = [
            line("v1", &d1),
            line("v1", &d2),
            line("<none>", &d1),
            line("<none>", &d2),
        ]
        .join("\n");
        let recs = undo_digests(parse_list(out.as_bytes()).unwrap());
        assert_eq!(recs.len(), 2);
        assert_eq!(
            (recs[0].tag.as_str(), recs[0].digest.as_str()),
            ("v1", NONE)
        );
        assert_eq!(
            (recs[1].tag.as_str(), recs[1].digest.as_str()),
            (NONE, d1.as_str())
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
