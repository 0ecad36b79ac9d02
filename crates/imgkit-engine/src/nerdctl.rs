//! nerdctl (containerd's docker-compatible CLI): argv builders and the parser of
//! `nerdctl image ls --format '{{json .}}'`.
//!
//! nerdctl is not packaged for Debian 12, so this module is written and tested against its
//! documented format (containerd/nerdctl `pkg/cmd/image/list.go`, `imagePrintable`): lines with
//! `CreatedAt, CreatedSince, Digest, ID, Repository, Tag, Name, Size, BlobSize, Platform`, ONE
//! LINE PER PLATFORM present, `ID` the target (manifest/index) digest's 12 hex, sizes in
//! containerd's binary units (`261.3 KiB`). imgkit merges the lines of one `Name` into one
//! record: `Platform` becomes the platforms joined with `,` (in nerdctl's order), the other
//! values are the first line's, `Size` is converted to docker's units (`BlobSize` kept as
//! printed), and docker's keys nerdctl lacks (`Containers`, `SharedSize`, `UniqueSize`) are
//! `N/A`.

use std::collections::HashMap;
use std::ffi::OsString;

use imgkit_types::{ImageRecord, ImageRef, humanize};
use serde_json::Value;

use crate::{ParseError, os, refs_args};

/// Global flags: `--address` (when set) and `--namespace`.
pub fn global_args(address: Option<&str>, namespace: &str) -> Vec<OsString> {
    crate::ctr::global_args(address, namespace)
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

/// Parses nerdctl's lines and merges each name's per-platform lines into one record.
pub fn parse_list(out: &[u8]) -> Result<Vec<ImageRecord>, ParseError> {
    let text = String::from_utf8_lossy(out);
    let mut records: Vec<ImageRecord> = Vec::new();
    let mut by_name: HashMap<String, usize> = HashMap::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let bad = |why: String| ParseError::new(i + 1, line, why);
        let mut rec: ImageRecord = serde_json::from_str(line)
            .map_err(|e| bad(format!("not a nerdctl image line: {e}")))?;
        let name = match rec.extra.get("Name") {
            Some(Value::String(n)) => n.clone(),
            _ => return Err(bad("no \"Name\" key".to_owned())),
        };
        let platform = match rec.extra.get("Platform") {
            Some(Value::String(p)) => p.clone(),
            _ => String::new(),
        };
        if let Some(&at) = by_name.get(&name) {
            let merged = &mut records[at];
            if let Some(Value::String(p)) = merged.extra.get_mut("Platform")
                && !platform.is_empty()
                && !p.split(',').any(|x| x == platform)
            {
                if !p.is_empty() {
                    p.push(',');
                }
                p.push_str(&platform);
            }
            continue;
        }
        if let Some(bytes) = humanize::parse_size(&rec.size) {
            rec.size = humanize::size(bytes);
        }
        for field in [
            &mut rec.containers,
            &mut rec.shared_size,
            &mut rec.unique_size,
        ] {
            if field.is_empty() {
                "N/A".clone_into(field);
            }
        }
        rec.extra
            .insert("Platform".to_owned(), Value::String(platform));
        by_name.insert(name, records.len());
        records.push(rec);
    }
    Ok(records)
}

/// nerdctl's seam (see [`crate::seam::Seam`]): docker's verbs, containerd's store.
pub(crate) struct Nerdctl;

impl crate::seam::Seam for Nerdctl {
    fn global_args(&self, e: &crate::Engine) -> Vec<OsString> {
        global_args(e.address.as_deref(), &e.namespace)
    }

    fn endpoint(&self, e: &crate::Engine) -> String {
        e.containerd_address()
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
        Ok((parse_list(out)?, Vec::new()))
    }

    fn classify(&self, e: &crate::Engine, lower: &str, stderr: &str) -> Option<crate::Error> {
        crate::seam::classify_containerd(e, lower, stderr)
    }

    fn save_args(&self, refs: &[ImageRef]) -> Vec<OsString> {
        save_args(refs)
    }

    fn namespaces_args(&self) -> Option<Vec<OsString>> {
        Some(os(&["namespace", "ls", "-q"]))
    }

    fn version_args(&self) -> Vec<OsString> {
        os(&["version", "--format", "{{json .}}"])
    }

    /// `tag SRC NAME`, one call per name.
    fn tag_calls(&self, src: &str, names: &[String]) -> Vec<Vec<OsString>> {
        names.iter().map(|n| os(&["tag", src, n])).collect()
    }

    fn has_image_id(&self, _e: &crate::Engine, _id: &imgkit_types::Digest) -> Option<bool> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Lines in the format of nerdctl's imagePrintable (pkg/cmd/image/list.go): an index with
    // two platforms prints two lines for one name; CRI's config-digest alias prints <none>.
    fn fixture() -> String {
        let idx = "a".repeat(64);
        let cfg = "b".repeat(64);
        [
            format!(r#"{{"CreatedAt":"2026-11-28 08:21:51 +0000 UTC","CreatedSince":"2 hours ago","Digest":"sha256:{idx}","ID":"{}","Repository":"alpine","Tag":"3.20","Name":"docker.io/library/alpine:3.20","Size":"7.6 MiB","BlobSize":"3.5 MiB","Platform":"linux/amd64"}}"#, &idx[..12]),
            format!(r#"{{"CreatedAt":"2026-11-28 08:21:51 +0000 UTC","CreatedSince":"2 hours ago","Digest":"sha256:{idx}","ID":"{}","Repository":"alpine","Tag":"3.20","Name":"docker.io/library/alpine:3.20","Size":"0 B","BlobSize":"3.3 MiB","Platform":"linux/arm64/v8"}}"#, &idx[..12]),
            format!(r#"{{"CreatedAt":"2026-11-28 08:21:51 +0000 UTC","CreatedSince":"2 hours ago","Digest":"sha256:{idx}","ID":"{}","Repository":"alpine","Tag":"<none>","Name":"docker.io/library/alpine@sha256:{idx}","Size":"7.6 MiB","BlobSize":"3.5 MiB","Platform":"linux/amd64"}}"#, &idx[..12]),
            format!(r#"{{"CreatedAt":"2026-11-28 08:21:51 +0000 UTC","CreatedSince":"2 hours ago","Digest":"sha256:{idx}","ID":"{}","Repository":"<none>","Tag":"<none>","Name":"sha256:{cfg}","Size":"7.6 MiB","BlobSize":"3.5 MiB","Platform":"linux/amd64"}}"#, &idx[..12]),
        ]
        .join("\n")
    }

    #[test]
    fn per_platform_lines_merge_into_one_record_per_name() {
        let recs = parse_list(fixture().as_bytes()).unwrap();
        assert_eq!(recs.len(), 3);
        assert_eq!(recs[0].extra["Platform"], "linux/amd64,linux/arm64/v8");
        assert_eq!(recs[0].size, "7.97MB");
        assert_eq!(recs[0].extra["BlobSize"], "3.5 MiB");
        assert_eq!(recs[0].containers, "N/A");
        assert_eq!(
            recs[1].reference().unwrap(),
            format!("alpine@sha256:{}", "a".repeat(64))
        );
        assert_eq!(
            (recs[2].repository.as_str(), recs[2].tag.as_str()),
            ("<none>", "<none>")
        );
    }

    #[test]
    fn argv() {
        let refs = ["alpine:3.20".parse().unwrap()];
        assert_eq!(save_args(&refs), os(&["save", "--", "alpine:3.20"]));
        assert_eq!(list_args(), os(&["image", "ls", "--format", "{{json .}}"]));
        assert_eq!(
            global_args(Some("/run/c.sock"), "k8s.io"),
            os(&["--address", "/run/c.sock", "--namespace", "k8s.io"])
        );
    }

    #[test]
    fn a_line_without_name_is_an_error() {
        let e = parse_list(br#"{"ID":"x","Repository":"a","Tag":"b"}"#).unwrap_err();
        assert!(e.reason.contains("Name"), "{e:?}");
    }
}
