//! The image record: one JSON object per repository:tag, shaped exactly like a line of
//! `docker image ls --format '{{json .}}'`. It is the input of every filter, whatever the source.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// What docker prints for a missing repository, tag or digest.
pub const NONE: &str = "<none>";

/// One listing line in docker's `{{json .}}` shape. All values are strings, as docker prints
/// them; keys other than docker's (nerdctl's `Name`, `Platform`, `BlobSize`; imgkit's
/// `Namespace`) are kept in `extra`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ImageRecord {
    #[serde(default)]
    pub containers: String,
    #[serde(default)]
    pub created_at: String,
    #[serde(default)]
    pub created_since: String,
    #[serde(default)]
    pub digest: String,
    #[serde(rename = "ID")]
    pub id: String,
    pub repository: String,
    #[serde(default)]
    pub shared_size: String,
    #[serde(default)]
    pub size: String,
    pub tag: String,
    #[serde(default)]
    pub unique_size: String,
    /// Every other key, in the listing's own spelling.
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

impl ImageRecord {
    /// The record as one compact JSON line, keys sorted as docker (Go) prints them.
    pub fn to_json_line(&self) -> String {
        let value = serde_json::to_value(self).expect("records serialize");
        let Value::Object(map) = value else {
            unreachable!("a record is an object")
        };
        let sorted: BTreeMap<&String, &Value> = map.iter().collect();
        serde_json::to_string(&sorted).expect("records serialize")
    }

    /// `repository:tag`, `repository@digest` or `None` for a row without a usable name.
    pub fn reference(&self) -> Option<String> {
        if self.repository == NONE {
            return None;
        }
        if self.tag != NONE {
            return Some(format!("{}:{}", self.repository, self.tag));
        }
        (self.digest != NONE && !self.digest.is_empty())
            .then(|| format!("{}@{}", self.repository, self.digest))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOCKER_LINE: &str = r#"{"Containers":"N/A","CreatedAt":"2026-11-28 06:34:53 +0000 UTC","CreatedSince":"2 hours ago","Digest":"\u003cnone\u003e","ID":"0123456789ab","Repository":"localhost:5000/team/app","SharedSize":"N/A","Size":"72.9MB","Tag":"v1","UniqueSize":"N/A","VirtualSize":"72.9MB"}"#;

    #[test]
    fn round_trips_a_docker_line_with_sorted_keys() {
        let rec: ImageRecord = serde_json::from_str(DOCKER_LINE).unwrap();
        assert_eq!(rec.repository, "localhost:5000/team/app");
        assert_eq!(rec.extra["VirtualSize"], "72.9MB");
        let again: Value = serde_json::from_str(&rec.to_json_line()).unwrap();
        assert_eq!(again, serde_json::from_str::<Value>(DOCKER_LINE).unwrap());
        let line = rec.to_json_line();
        let at = |k: &str| line.find(&format!("\"{k}\":")).unwrap();
        assert!(
            at("Containers") < at("ID") && at("ID") < at("Tag") && at("Tag") < at("VirtualSize")
        );
    }

    #[test]
    fn reference_follows_the_none_convention() {
        let mut rec: ImageRecord = serde_json::from_str(DOCKER_LINE).unwrap();
        assert_eq!(
            rec.reference().as_deref(),
            Some("localhost:5000/team/app:v1")
        );
        rec.tag = NONE.into();
        assert_eq!(rec.reference(), None);
        rec.digest = "sha256:abc".into();
        assert_eq!(
            rec.reference().as_deref(),
            Some("localhost:5000/team/app@sha256:abc")
        );
    }
}
