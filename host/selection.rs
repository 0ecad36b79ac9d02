//! Applying a selection to a listing, with provenance: the program runs once per record, so
//! each output is known to come from one record, and is resolved to one concrete image of the
//! listing before any engine sees it.
//!
//! Resolution of an output `o` printed for record `r`:
//! - `o` must be a string that parses as an image reference (or an image ID of the listing);
//! - `repo:tag` / `repo@digest`: the listed image of that name (names compared fully qualified,
//!   so `docker.io/library/alpine:3` finds `alpine:3`);
//! - a bare `repo` equal to `r`'s repository: `r`'s own image — `repo:tag`, or for a digest-only
//!   row `repo@digest` (the guide's pipeline hands the bare name to `save`, which docker reads as
//!   "every tag of repo" and nerdctl as `repo:latest`);
//! - another bare `repo`: `repo:latest` if listed;
//! - an image ID (12–64 hex, or `sha256:…`): the image with that ID, by `r`'s name if `r` has it.
//!
//! Anything else names no image of the listing: an error naming the output and its record.
//! The same image named twice is selected once.

use std::collections::{HashMap, HashSet};

use imgkit_types::{ImageRecord, ImageRef, NONE};
use serde_json::Value;

use crate::diagnostics::with_hint;

/// One selected image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Selected {
    /// What the program printed (as `jq -r` prints it).
    pub(crate) output: String,
    /// The image, as the listing names it (docker's familiar form): pass it through
    /// `Engine::native_ref` before an engine's argv.
    pub(crate) reference: ImageRef,
    /// Index in the listing of the record naming the image.
    pub(crate) record: usize,
    /// New names for the target, from an output `{"ref": …, "as": [names]}` (checked later).
    pub(crate) rename: Vec<String>,
}

/// Fully qualified lookup key of a reference (`docker.io/library/alpine:3`).
pub(crate) fn key(r: &ImageRef) -> String {
    let name = r.normalized_name();
    match (r.tag(), r.digest()) {
        (Some(t), _) => format!("{name}:{t}"),
        (None, Some(d)) => format!("{name}@{d}"),
        (None, None) => format!("{name}:latest"),
    }
}

/// The reference a record stands for: `repo:tag`, `repo@digest`, or none (untagged image).
fn record_ref(rec: &ImageRecord) -> Option<ImageRef> {
    rec.reference().and_then(|s| s.parse().ok())
}

/// Looks up listing entries by name and by ID.
struct Index<'a> {
    records: &'a [ImageRecord],
    by_key: HashMap<String, usize>,
}

impl<'a> Index<'a> {
    fn new(records: &'a [ImageRecord]) -> Self {
        let mut by_key = HashMap::new();
        for (i, rec) in records.iter().enumerate() {
            if let Some(r) = record_ref(rec) {
                by_key.entry(key(&r)).or_insert(i);
            }
        }
        Self { records, by_key }
    }

    /// The reference for record `i`: its own name; for a nameless record, a named record of the
    /// same image (containerd's `sha256:<config>` alias), else the ID (docker and podman save
    /// untagged images by ID).
    fn name_of(&self, i: usize) -> anyhow::Result<(ImageRef, usize)> {
        let rec = &self.records[i];
        if let Some(r) = record_ref(rec) {
            return Ok((r, i));
        }
        if let Some((j, r)) = self.records.iter().enumerate().find_map(|(j, x)| {
            (x.id == rec.id)
                .then(|| record_ref(x).map(|r| (j, r)))
                .flatten()
        }) {
            return Ok((r, j));
        }
        if rec.extra.contains_key("Name") {
            anyhow::bail!(
                "image {} has no name that {} can save",
                rec.id,
                "containerd"
            );
        }
        Ok((
            ImageRef::parse(&rec.id).map_err(|e| anyhow::anyhow!("image {}: {e}", rec.id))?,
            i,
        ))
    }

    /// The record a name names: the one resolution of a reference to a listed image, for
    /// filter outputs, plugin outputs and command-line references alike.
    /// - `repo:tag` (a bare `repo`: `repo:latest`), or `repo@digest` listed as a name of its own
    ///   (a digest-only row; containerd's `repo@digest` alias): that record;
    /// - `repo@digest` where `digest` is the digest of a record of `repo` (a ctr/nerdctl target
    ///   digest, a docker repo digest on a tagged row): that record, whose name is `repo:tag`,
    ///   the name the engine saves, loads and tags the image by (docker loads a digest
    ///   reference unnamed; containerd has no image named `repo@digest` unless it lists one).
    fn by_name(&self, r: &ImageRef) -> Option<usize> {
        if let Some(&i) = self.by_key.get(&key(r)) {
            return Some(i);
        }
        let d = r.digest()?;
        self.records
            .iter()
            .position(|x| x.digest == d.as_str() && repo_key(&x.repository) == r.normalized_name())
    }

    /// Records whose image ID (or containerd target digest) matches `id`.
    fn by_id(&self, id: &str) -> impl Iterator<Item = usize> + '_ {
        let hex = id.strip_prefix("sha256:").unwrap_or(id).to_owned();
        self.records.iter().enumerate().filter_map(move |(i, rec)| {
            let rec_hex = rec.id.strip_prefix("sha256:").unwrap_or(&rec.id);
            let full = rec.digest.strip_prefix("sha256:").unwrap_or("");
            let matches = (rec_hex.len() >= 12
                && (hex.starts_with(rec_hex) || rec_hex.starts_with(&hex)))
                || (!full.is_empty() && full == hex && rec.digest != NONE);
            matches.then_some(i)
        })
    }
}

fn looks_like_id(s: &str) -> bool {
    let hex = s.strip_prefix("sha256:").unwrap_or(s);
    (12..=64).contains(&hex.len())
        && hex
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        && (s.starts_with("sha256:") || hex.len() == 12 || hex.len() == 64)
}

/// Describes a record in messages: its reference, or its ID.
fn describe(rec: &ImageRecord) -> String {
    rec.reference()
        .unwrap_or_else(|| format!("image {}", rec.id))
}

/// Resolves one output of record `from` to an image of the listing.
fn resolve(index: &Index<'_>, from: usize, output: &str) -> anyhow::Result<Selected> {
    let rec = &index.records[from];
    let selected = |record: usize| -> anyhow::Result<Selected> {
        let (reference, record) = index.name_of(record)?;
        Ok(Selected {
            output: output.to_owned(),
            reference,
            record,
            rename: Vec::new(),
        })
    };
    if looks_like_id(output) {
        let ids: Vec<usize> = index.by_id(output).collect();
        if let Some(&first) = ids.first() {
            let own = ids
                .iter()
                .copied()
                .find(|&i| i == from || index.records[i].repository == rec.repository);
            return selected(own.unwrap_or(first));
        }
    }
    let r = ImageRef::parse(output).map_err(|e| {
        with_hint(
            anyhow::anyhow!(
                "the filter printed {output:?} for {}, which is not an image reference",
                describe(rec)
            ),
            e,
        )
    })?;
    if r.tag().is_none() && r.digest().is_none() && r.normalized_name() == repo_key(&rec.repository)
    {
        return selected(from);
    }
    if let Some(i) = index.by_name(&r) {
        return selected(i);
    }
    let bare = if r.tag().is_none() && r.digest().is_none() {
        " (a bare name means :latest)"
    } else {
        ""
    };
    Err(with_hint(
        anyhow::anyhow!(
            "the filter printed {output:?} for {}, but it names no image of this listing{bare}",
            describe(rec)
        ),
        "a filter can only select listed images; print the record's own name, e.g. .Repository + \":\" + .Tag",
    ))
}

fn repo_key(repository: &str) -> String {
    ImageRef::parse(repository).map_or_else(|_| repository.to_owned(), |r| r.normalized_name())
}

/// An output as `jq -r` prints it: strings raw, anything else as JSON.
fn raw(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Runs `program` on each record and resolves every output; the same image is selected once.
pub(crate) fn select(
    records: &[ImageRecord],
    mut program: impl FnMut(&Value) -> anyhow::Result<Vec<Value>>,
) -> anyhow::Result<Vec<Selected>> {
    let index = Index::new(records);
    let mut seen = HashSet::new();
    let mut out: Vec<Selected> = Vec::new();
    for (i, rec) in records.iter().enumerate() {
        let value = serde_json::to_value(rec)?;
        let outputs = program(&value)
            .map_err(|e| e.context(format!("the filter failed on {}", describe(rec))))?;
        for v in &outputs {
            if let Some((output, rename)) = renaming(v) {
                let mut s = resolve(&index, i, &output?)?;
                s.rename = rename
                    .map_err(|e| e.context(format!("the filter's output for {}", describe(rec))))?;
                if let Some(x) = out.iter_mut().find(|x| x.reference == s.reference) {
                    x.rename.extend(s.rename);
                } else {
                    seen.insert(s.reference.to_string());
                    out.push(s);
                }
                continue;
            }
            if !v.is_string() {
                return Err(with_hint(
                    anyhow::anyhow!(
                        "the filter printed {} for {}, which is not a string",
                        raw(v),
                        describe(rec)
                    ),
                    "print image references as strings, e.g. .Repository + \":\" + .Tag",
                ));
            }
            let s = resolve(&index, i, &raw(v))?;
            if seen.insert(s.reference.to_string()) {
                out.push(s);
            }
        }
    }
    Ok(drop_digest_aliases(records, out))
}

/// Resolves the references a WASM plugin printed for the whole listing. A plugin's output is not
/// tied to one record, so each is resolved as if printed for the record that bears its name (a
/// bare repository: the digest-only row of that repository, when the listing has one and no
/// `:latest`), and must name an image of the listing like any other output.
pub(crate) fn select_outputs(
    records: &[ImageRecord],
    outputs: &[String],
) -> anyhow::Result<Vec<Selected>> {
    let index = Index::new(records);
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for output in outputs {
        let bearer = ImageRef::parse(output).ok().and_then(|r| {
            index.by_name(&r).or_else(|| {
                let name = r.normalized_name();
                records.iter().position(|x| {
                    x.tag == NONE && x.digest != NONE && repo_key(&x.repository) == name
                })
            })
        });
        let from = match bearer {
            Some(i) => i,
            // An image ID names its image wherever it stands.
            None if looks_like_id(output) && index.by_id(output).next().is_some() => {
                index.by_id(output).next().unwrap_or_default()
            }
            None => {
                return Err(with_hint(
                    anyhow::anyhow!(
                        "the plugin printed {output:?}, which names no image of this listing"
                    ),
                    "a filter can only select listed images; print a record's own name, e.g. \
                     Repository + \":\" + Tag",
                ));
            }
        };
        let s = resolve(&index, from, output)?;
        if seen.insert(s.reference.to_string()) {
            out.push(s);
        }
    }
    Ok(drop_digest_aliases(records, out))
}

/// An output `{"ref": "…", "as": ["new:tag", …]}`: the reference and its new names.
#[allow(clippy::type_complexity)]
fn renaming(v: &Value) -> Option<(anyhow::Result<String>, anyhow::Result<Vec<String>>)> {
    let obj = v.as_object()?;
    let hint = "print {\"ref\": .Repository + \":\" + .Tag, \"as\": [\"new/name:tag\"]}";
    let reference = match obj.get("ref") {
        Some(Value::String(r)) => Ok(r.clone()),
        _ => Err(with_hint(
            anyhow::anyhow!("the filter printed {v} (an object needs a string \"ref\")"),
            hint,
        )),
    };
    let names = match obj.get("as") {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::String(n)) => Ok(vec![n.clone()]),
        Some(Value::Array(a)) if a.iter().all(Value::is_string) => Ok(a
            .iter()
            .filter_map(|n| n.as_str().map(str::to_owned))
            .collect()),
        Some(_) => Err(with_hint(
            anyhow::anyhow!("the filter printed {v} (\"as\" must be a list of names)"),
            hint,
        )),
    };
    Some((reference, names))
}

/// `repo@digest` adds nothing when `repo:tag` of the same image is selected too (CRI keeps such
/// an alias for every image it pulls): one image, one name.
fn drop_digest_aliases(records: &[ImageRecord], selected: Vec<Selected>) -> Vec<Selected> {
    let tagged: HashSet<(String, &str)> = selected
        .iter()
        .filter(|s| s.reference.tag().is_some())
        .map(|s| (s.reference.normalized_name(), records[s.record].id.as_str()))
        .collect();
    selected
        .into_iter()
        .filter(|s| {
            s.reference.tag().is_some()
                || s.reference.digest().is_none()
                || !tagged.contains(&(s.reference.normalized_name(), records[s.record].id.as_str()))
        })
        .collect()
}

/// Every record as selected, no program: the records that have a name or an ID. A name two
/// images carry (an archive may say so) is selected once per image.
pub(crate) fn select_all(records: &[ImageRecord]) -> Vec<Selected> {
    let index = Index::new(records);
    let mut seen = HashSet::new();
    let all = (0..records.len())
        .filter_map(|i| {
            let (reference, record) = index.name_of(i).ok()?;
            let image = records[record].id.clone();
            seen.insert((reference.to_string(), image))
                .then(|| Selected {
                    output: reference.to_string(),
                    reference,
                    record,
                    rename: Vec::new(),
                })
        })
        .collect();
    drop_digest_aliases(records, all)
}

/// One listing of an endpoint: its records, in docker's shape, and warnings about rows left
/// out. References are resolved against it here, one way: a filter's outputs ([`select`] and
/// its siblings) and references given on the command line ([`Listing::resolve`]) both go
/// through `Index::by_name`.
#[derive(Debug, Clone, Default)]
pub(crate) struct Listing {
    pub(crate) records: Vec<ImageRecord>,
    pub(crate) warnings: Vec<String>,
}

/// The listing's image with the ID `r` (as `docker save ID` reads it): saved by that ID,
/// or, where the engine saves only by name (containerd), by a name of the image.
pub(crate) fn resolve_id(records: &[ImageRecord], r: &ImageRef) -> Option<(ImageRef, usize)> {
    let id = crate::plan::image_id_of(r)?;
    let found: Vec<usize> = records
        .iter()
        .enumerate()
        .filter(|(_, rec)| {
            let own = rec.id.strip_prefix("sha256:").unwrap_or(&rec.id);
            own.len() >= 12 && (id.starts_with(own) || own.starts_with(id))
        })
        .map(|(i, _)| i)
        .collect();
    let first = *found.first()?;
    if !records[first].extra.contains_key("Name") {
        return Some((r.clone(), first));
    }
    found.into_iter().find_map(|i| {
        let rec = &records[i];
        let name = rec.reference()?;
        Some((ImageRef::parse(&name).ok()?, i))
    })
}

impl Listing {
    /// The listing's image a command-line reference names, and the reference to hand the
    /// engine: by name as a filter output is resolved ([`Index::by_name`]; a bare name means
    /// its `latest` tag, as engines read it), else as an image ID ([`resolve_id`]).
    pub(crate) fn resolve(&self, r: &ImageRef) -> Option<(ImageRef, usize)> {
        let index = Index::new(&self.records);
        if let Some(i) = index.by_name(r)
            && let Ok(found) = index.name_of(i)
        {
            return Some(found);
        }
        resolve_id(&self.records, r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "7b423225bbbc50ef5a69cf9c11d5a3431e4b52242f80b4fc2ad2cd25b5e84544";

    fn rec(repo: &str, tag: &str, digest: &str, id: &str) -> ImageRecord {
        ImageRecord {
            repository: repo.into(),
            tag: tag.into(),
            digest: digest.into(),
            id: id.into(),
            ..ImageRecord::default()
        }
    }

    fn listing() -> Vec<ImageRecord> {
        vec![
            rec("seed/app", "1.0", NONE, "39d1a0a7960f"),
            rec("seed/many", "v1", NONE, "39d1a0a7960f"),
            rec(
                "seed/pinned",
                NONE,
                &format!("sha256:{HEX}"),
                "c9fae14eae85",
            ),
            rec(NONE, NONE, NONE, "baaa8a17f32a"),
            rec("localhost:5000/team/app", "1.0", NONE, "39d1a0a7960f"),
        ]
    }

    /// The guide's program, written as a closure so these tests need no jq engine.
    #[allow(clippy::unnecessary_wraps)] // the shape `select` takes
    fn guide(v: &Value) -> anyhow::Result<Vec<Value>> {
        let repo = v["Repository"].as_str().unwrap();
        let tag = v["Tag"].as_str().unwrap();
        Ok(match (repo, tag) {
            (NONE, _) => vec![],
            (r, NONE) => vec![Value::from(r)],
            (r, t) => vec![Value::from(format!("{r}:{t}"))],
        })
    }

    fn refs(sel: &[Selected]) -> Vec<String> {
        sel.iter().map(|s| s.reference.to_string()).collect()
    }

    #[test]
    fn a_digest_only_row_resolves_to_its_digest_not_all_tags() {
        let sel = select(&listing(), guide).unwrap();
        assert_eq!(
            refs(&sel),
            [
                "seed/app:1.0",
                "seed/many:v1",
                &format!("seed/pinned@sha256:{HEX}"),
                "localhost:5000/team/app:1.0"
            ]
        );
        assert_eq!(sel[2].output, "seed/pinned");
        assert_eq!(sel[2].record, 2);
    }

    #[test]
    fn a_bare_repository_means_the_records_own_image() {
        let repo = |v: &Value| {
            Ok(if v["Repository"] == NONE {
                vec![]
            } else {
                vec![v["Repository"].clone()]
            })
        };
        let sel = select(&listing(), repo).unwrap();
        assert_eq!(
            refs(&sel),
            [
                "seed/app:1.0",
                "seed/many:v1",
                &format!("seed/pinned@sha256:{HEX}"),
                "localhost:5000/team/app:1.0"
            ]
        );
        // "<none>" is not a reference
        let e = select(&listing(), |v| Ok(vec![v["Repository"].clone()])).unwrap_err();
        assert!(format!("{e:#}").contains("not an image reference"), "{e:#}");
    }

    #[test]
    fn duplicates_collapse_and_qualified_names_match() {
        let sel = select(&listing(), |_| {
            Ok(vec![
                Value::from("docker.io/seed/app:1.0"),
                Value::from("seed/app:1.0"),
            ])
        })
        .unwrap();
        assert_eq!(refs(&sel), ["seed/app:1.0"]);
    }

    #[test]
    fn an_unlisted_name_is_an_error_naming_it() {
        let e = select(&listing(), |_| Ok(vec![Value::from("evil/image:1")])).unwrap_err();
        let msg = format!("{e:#}");
        assert!(
            msg.contains("\"evil/image:1\"") && msg.contains("names no image"),
            "{msg}"
        );
        let e = select(&listing(), |_| {
            Ok(vec![Value::from("--output=/etc/passwd")])
        })
        .unwrap_err();
        assert!(format!("{e:#}").contains("not an image reference"), "{e:#}");
        let e = select(&listing(), |_| Ok(vec![Value::from(3)])).unwrap_err();
        assert!(format!("{e:#}").contains("not a string"), "{e:#}");
        // a bare name of another repository means :latest, which is not listed
        let e = select(&listing(), |_| Ok(vec![Value::from("seed/many")])).unwrap_err();
        assert!(format!("{e:#}").contains(":latest"), "{e:#}");
    }

    #[test]
    fn ids_select_the_image_by_the_records_name() {
        let sel = select(&listing(), |v| {
            Ok(if v["Tag"] == "v1" {
                vec![v["ID"].clone()]
            } else {
                vec![]
            })
        })
        .unwrap();
        assert_eq!(refs(&sel), ["seed/many:v1"]);
        let sel = select(&listing(), |v| {
            Ok(if v["Repository"] == NONE {
                vec![v["ID"].clone()]
            } else {
                vec![]
            })
        })
        .unwrap();
        assert_eq!(refs(&sel), ["baaa8a17f32a"]);
    }

    #[test]
    fn a_cri_digest_alias_of_a_selected_tag_is_the_same_image() {
        let mut l = listing();
        l.push(rec(
            "seed/app",
            NONE,
            &format!("sha256:{HEX}"),
            "39d1a0a7960f",
        ));
        let mut config_alias = rec(NONE, NONE, &format!("sha256:{HEX}"), "39d1a0a7960f");
        config_alias.extra.insert(
            "Name".into(),
            Value::from(format!("sha256:{}", "e".repeat(64))),
        );
        l.push(config_alias);
        let sel = select(&l, guide).unwrap();
        assert!(
            !refs(&sel).iter().any(|r| r.starts_with("seed/app@")),
            "{:?}",
            refs(&sel)
        );
        assert_eq!(select_all(&l).len(), 5, "{:?}", refs(&select_all(&l)));
    }

    #[test]
    fn select_all_names_every_image() {
        assert_eq!(select_all(&listing()).len(), 5);
    }
    #[test]
    fn resolves_command_line_refs_against_the_listing() {
        const D: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
        let records = vec![
            rec("seed/app", "1.0", NONE, "aaa"),
            rec("seed/pinned", NONE, D, "bbb"),
            rec("docker.io/library/alpine", "latest", NONE, "ccc"),
        ];
        let idx = Listing {
            records,
            warnings: Vec::new(),
        };
        let p = |s: &str| ImageRef::parse(s).unwrap();
        assert_eq!(
            idx.resolve(&p("seed/app:1.0")).unwrap().0.to_string(),
            "seed/app:1.0"
        );
        assert_eq!(idx.resolve(&p("docker.io/seed/app:1.0")).unwrap().1, 0);
        assert_eq!(idx.resolve(&p(&format!("seed/pinned@{D}"))).unwrap().1, 1);
        assert_eq!(
            idx.resolve(&p("alpine")).unwrap().1,
            2,
            "a bare name means :latest"
        );
        assert!(idx.resolve(&p("nope/none:1")).is_none());
        assert!(idx.resolve(&p("seed/app")).is_none(), "no seed/app:latest");
    }

    /// A ctr/nerdctl row carries a tag and the image's target digest: `repo@digest` names it
    /// by its tag on both paths (the name containerd exports and docker loads with a name);
    /// where containerd lists a `repo@digest` alias row of its own (CRI), both take that row.
    #[test]
    fn a_tag_and_digest_record_resolves_the_same_from_the_command_line_and_a_filter() {
        const D: &str = "sha256:2222222222222222222222222222222222222222222222222222222222222222";
        let tagged = rec("seed/app", "1.0", D, "aaa");
        let alias = rec("seed/app", NONE, D, "aaa");
        let by_digest = format!("seed/app@{D}");
        for (records, want) in [
            (vec![tagged.clone()], "seed/app:1.0"),
            (vec![tagged, alias], by_digest.as_str()),
        ] {
            let filter = select(&records, |_| Ok(vec![Value::from(by_digest.clone())])).unwrap();
            let listing = Listing {
                records: records.clone(),
                warnings: Vec::new(),
            };
            let given = listing
                .resolve(&ImageRef::parse(&by_digest).unwrap())
                .unwrap();
            assert_eq!(refs(&filter), [want], "{records:?}");
            assert_eq!(given.0.to_string(), want, "{records:?}");
            assert_eq!(given.1, filter[0].record);
            // A plugin's output resolves the same way.
            let plugin = select_outputs(&records, std::slice::from_ref(&by_digest)).unwrap();
            assert_eq!(refs(&plugin), [want]);
        }
    }
}
