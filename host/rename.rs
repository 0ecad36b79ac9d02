//! Renaming images on the way: `--rename 'REGEX=REPLACEMENT'` rules and filter outputs
//! `{"ref": "…", "as": ["new/name:tag", …]}`. New names are checked (image reference grammar,
//! a tag, no two images under one name) before anything moves; after the load the target tags
//! each image with its new names and drops the name it was loaded under (`docker tag` + `rmi`,
//! `podman tag` + `untag`, `ctr images tag` + `rm`), then the new names are verified by ID.

use std::collections::BTreeMap;
use std::str::FromStr;

use anyhow::Context;
use imgkit_types::ImageRef;
use regex::Regex;

use crate::diagnostics::with_hint;
use crate::guard::Snapshot;
use crate::plan::{Endpoint, Found, Plan, PlannedImage, engine_error};

/// One `--rename REGEX=REPLACEMENT` rule. REGEX must match a whole reference, fully qualified
/// (`docker.io/library/alpine:3`) or as docker shows it (`alpine:3`); REPLACEMENT may use
/// `$1`, `${name}`.
#[derive(Debug, Clone)]
pub(crate) struct Rule {
    re: Regex,
    replacement: String,
}

impl FromStr for Rule {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (re, replacement) = s
            .rsplit_once('=')
            .ok_or_else(|| format!("{s:?} is not REGEX=REPLACEMENT"))?;
        if re.is_empty() || replacement.is_empty() {
            return Err(format!("{s:?}: both REGEX and REPLACEMENT are needed"));
        }
        let re = Regex::new(&format!("^(?:{re})$")).map_err(|e| e.to_string())?;
        Ok(Rule {
            re,
            replacement: replacement.to_owned(),
        })
    }
}

/// The new name the first matching rule gives `r`, as text (unchecked).
fn apply_rules(rules: &[Rule], r: &ImageRef) -> Option<String> {
    let qualified = r.normalized().to_string();
    let shown = r.to_string();
    rules.iter().find_map(|rule| {
        [&qualified, &shown]
            .into_iter()
            .find(|s| rule.re.is_match(s))
            .map(|s| rule.re.replace(s, rule.replacement.as_str()).into_owned())
    })
}

/// Fully qualified name, the key new names are compared by.
fn qualified(r: &ImageRef) -> String {
    r.normalized().to_string()
}

/// Fills each image's `rename` with its checked new names (from the filter, else from the
/// first matching rule), fully qualified. Fails before anything moves on a name that is not a
/// reference, names a digest, renames a digest-only image, or is given to two images.
pub(crate) fn resolve(plan: &mut Plan, rules: &[Rule]) -> anyhow::Result<usize> {
    let mut renamed = 0;
    for img in &mut plan.images {
        let raw = if img.rename.is_empty() {
            apply_rules(rules, &img.reference).into_iter().collect()
        } else {
            std::mem::take(&mut img.rename)
        };
        let mut names = Vec::new();
        for n in raw {
            let parsed = ImageRef::parse(&n).map_err(|e| {
                with_hint(
                    anyhow::anyhow!(
                        "the new name {n:?} for {} is not an image reference; refusing to run any engine",
                        img.reference
                    ),
                    e,
                )
            })?;
            if parsed.digest().is_some() {
                anyhow::bail!(
                    "the new name {n} for {} holds a digest; a target can only tag, so give it a tag",
                    img.reference
                );
            }
            let parsed = if parsed.tag().is_none() {
                parsed.with_tag("latest").context("the name with :latest")?
            } else {
                parsed
            };
            let k = qualified(&parsed);
            if !names.contains(&k) {
                names.push(k);
            }
        }
        if !names.is_empty() && img.reference.tag().is_none() {
            anyhow::bail!(
                "{} has no tag to rename (a digest-only image loads without a name)",
                img.reference
            );
        }
        if !names.is_empty() {
            renamed += 1;
        }
        img.rename = names;
    }
    check_collisions(&plan.images)?;
    Ok(renamed)
}

/// No name may stand for two different images in the target.
fn check_collisions(images: &[PlannedImage]) -> anyhow::Result<()> {
    let mut owner: BTreeMap<String, (&str, String)> = BTreeMap::new();
    for img in images {
        let names: Vec<String> = if img.rename.is_empty() {
            vec![qualified(&img.reference)]
        } else {
            img.rename.clone()
        };
        for n in names {
            match owner.get(&n) {
                Some((id, other)) if *id != img.id => {
                    return Err(with_hint(
                        anyhow::anyhow!(
                            "both {other} and {} would be named {n} in the target; refusing to run any engine",
                            img.reference
                        ),
                        "give each image its own names (check the --rename rules and the filter's \"as\")",
                    ));
                }
                Some(_) => {}
                None => {
                    owner.insert(n, (img.id.as_str(), img.reference.to_string()));
                }
            }
        }
    }
    Ok(())
}

/// The checked new names of `img` (empty: it keeps its own).
pub(crate) fn names(img: &PlannedImage) -> Vec<ImageRef> {
    img.rename
        .iter()
        .map(|n| ImageRef::parse(n).expect("checked by resolve"))
        .collect()
}

/// The names `img` has in the target once moved: its new names, or its own.
pub(crate) fn target_names(img: &PlannedImage) -> Vec<ImageRef> {
    let n = names(img);
    if n.is_empty() {
        vec![img.reference.clone()]
    } else {
        n
    }
}

/// Names a run loads images under only on the way to their new names, which the target
/// already had before the run: containerd cannot name an image by ID, so each is first kept
/// under an alias (`ctr images tag NAME ALIAS`) that [`apply`] uses to put it back.
#[derive(Debug, Clone, Default)]
pub(crate) struct Kept {
    /// (name as stored, alias), containerd only.
    aliases: Vec<(String, String)>,
}

/// The names each renamed image is loaded under (as the target stores them), unless they are
/// among its new names.
fn passing_names(engine: &imgkit_engine::Engine, plan: &Plan) -> Vec<String> {
    plan.images
        .iter()
        .filter(|i| !i.rename.is_empty())
        .filter_map(|img| {
            let loaded = engine.native_ref(&img.reference).to_string();
            let new: Vec<String> = names(img)
                .iter()
                .map(|n| engine.native_ref(n).to_string())
                .collect();
            (!new.contains(&loaded)).then_some(loaded)
        })
        .collect()
}

/// Before the load: for an engine that cannot tag by image ID (ctr), keeps each name the load
/// will pass through that the target already has under an alias (see [`Kept`]), to put it
/// back from.
pub(crate) fn keep(target: &Endpoint, plan: &Plan, before: &Snapshot) -> anyhow::Result<Kept> {
    let Some(engine) = target.engine() else {
        return Ok(Kept::default());
    };
    if engine.tags_by_id() {
        return Ok(Kept::default());
    }
    let mut kept = Kept::default();
    for (i, name) in passing_names(engine, plan).into_iter().enumerate() {
        let Some(id) = before.get(&name) else {
            continue;
        };
        let hex = id.strip_prefix("sha256:").unwrap_or(id);
        let alias = format!(
            "imgkit.invalid/kept:{}-{i}-{}",
            &hex[..hex.len().min(12)],
            std::process::id()
        );
        engine
            .tag(&name, std::slice::from_ref(&alias))
            .map_err(|e| engine_error(e, &format!("could not keep {name} safe before loading")))?;
        kept.aliases.push((name, alias));
    }
    Ok(kept)
}

/// After a failed load: puts back what [`keep`] kept and removes its aliases.
pub(crate) fn restore_kept(target: &Endpoint, kept: &Kept) -> Vec<String> {
    let Some(engine) = target.engine() else {
        return Vec::new();
    };
    let mut notes = Vec::new();
    for (name, alias) in &kept.aliases {
        match engine.tag(alias, std::slice::from_ref(name)) {
            Ok(()) => {
                let _ = engine.untag(std::slice::from_ref(alias));
            }
            Err(e) => notes.push(format!("could not put back {name} (kept as {alias}): {e}")),
        }
    }
    notes
}

/// After the load: tags each renamed image with its new names and drops the name it was
/// loaded under (unless it is one of the new names) — but only a name this run created: a name
/// the target had before the run stays, and when the load moved it off the user's image it is
/// put back. Returns notes saying what was put back.
pub(crate) fn apply(
    target: &Endpoint,
    plan: &Plan,
    before: &Snapshot,
    kept: &Kept,
) -> anyhow::Result<Vec<String>> {
    let Some(engine) = target.engine() else {
        return Ok(Vec::new());
    };
    for img in plan.images.iter().filter(|i| !i.rename.is_empty()) {
        let loaded = engine.native_ref(&img.reference).to_string();
        let new: Vec<String> = names(img)
            .iter()
            .map(|n| engine.native_ref(n).to_string())
            .collect();
        engine
            .tag(&loaded, &new)
            .map_err(|e| engine_error(e, &format!("could not tag {}", img.reference)))?;
    }
    let passing = passing_names(engine, plan);
    // Names this run created are dropped; names the target had stay (put back when moved).
    let (had, created): (Vec<String>, Vec<String>) =
        passing.into_iter().partition(|n| before.get(n).is_some());
    let mut notes = Vec::new();
    if !had.is_empty() {
        let now = Snapshot::take(target)?;
        for name in &had {
            let was = before.get(name).expect("partitioned on it");
            if now.get(name) == Some(was) {
                continue;
            }
            let from: &str = if engine.tags_by_id() {
                was
            } else {
                // Not by image ID: the alias kept before the load holds it.
                let Some((_, alias)) = kept.aliases.iter().find(|(n, _)| n == name) else {
                    notes.push(format!(
                        "loading moved {name} off image {was}, and it could not be put back"
                    ));
                    continue;
                };
                alias
            };
            engine.tag(from, std::slice::from_ref(name)).map_err(|e| {
                engine_error(
                    e,
                    &format!("loading moved {name} off image {was}, and putting it back failed"),
                )
            })?;
            notes.push(format!(
                "loading moved {name} off image {was} (the target had it before this run); put it back"
            ));
        }
    }
    let aliases: Vec<String> = kept.aliases.iter().map(|(_, a)| a.clone()).collect();
    engine
        .untag(&aliases)
        .map_err(|e| engine_error(e, "could not remove the aliases kept during the load"))?;
    engine
        .untag(&created)
        .map_err(|e| engine_error(e, "could not drop the names images were loaded under"))?;
    Ok(notes)
}

/// Each moved image's ID in the target: the renamed under their new names ([`verify`]), the
/// rest under their own; how many were checked, and the notes on the rest.
pub(crate) fn verify_all(
    plan: &Plan,
    source: &Endpoint,
    target: &Endpoint,
) -> anyhow::Result<(usize, Vec<String>)> {
    let kept_names = crate::skip::plan_of(
        plan.images
            .iter()
            .filter(|i| i.rename.is_empty())
            .cloned()
            .collect(),
    );
    let mut checked = verify(plan, source, target)?;
    let mut notes = Vec::new();
    if let Some(kept) = kept_names {
        let v = kept.verify(source, target)?;
        notes = v.notes;
        checked += v.checked;
    }
    Ok((checked, notes))
}

/// Checks that each new name resolves in `target` to the source's image ID; the number checked.
pub(crate) fn verify(plan: &Plan, source: &Endpoint, target: &Endpoint) -> anyhow::Result<usize> {
    let renamed: Vec<&PlannedImage> = plan
        .images
        .iter()
        .filter(|i| !i.rename.is_empty())
        .collect();
    if renamed.is_empty() {
        return Ok(0);
    }
    let refs: Vec<ImageRef> = renamed.iter().map(|i| i.reference.clone()).collect();
    let want = source
        .ids(&refs, None)
        .context("could not read the source's image IDs")?;
    let new: Vec<(usize, ImageRef)> = renamed
        .iter()
        .enumerate()
        .flat_map(|(i, img)| names(img).into_iter().map(move |n| (i, n)))
        .collect();
    let new_refs: Vec<ImageRef> = new.iter().map(|(_, n)| n.clone()).collect();
    let got = target
        .ids(&new_refs, None)
        .context("could not read the target's image IDs")?;
    let mut problems = Vec::new();
    for ((i, n), g) in new.iter().zip(got) {
        match (&want[*i], g) {
            (Found::Id(w), Found::Id(g)) if *w == g => {}
            (Found::Id(w), Found::Id(g)) => problems.push(format!(
                "{n} (from {}): ID {g} in the target, {w} in the source",
                refs[*i]
            )),
            _ => problems.push(format!("{n} (from {}): missing in the target", refs[*i])),
        }
    }
    if problems.is_empty() {
        Ok(new.len())
    } else {
        Err(anyhow::anyhow!(
            "{} renamed images differ:\n  {}",
            problems.len(),
            problems.join("\n  ")
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sel(r: &str, id: &str, rename: &[&str]) -> PlannedImage {
        PlannedImage {
            reference: ImageRef::parse(r).unwrap(),
            id: id.into(),
            size: "1MB".into(),
            platforms: None,
            rename: rename.iter().map(|s| (*s).to_owned()).collect(),
        }
    }

    fn plan(images: Vec<PlannedImage>) -> Plan {
        crate::skip::plan_of(images).unwrap()
    }

    #[test]
    fn rules_match_whole_references_qualified_or_as_shown() {
        let rules: Vec<Rule> = [
            "docker.io/library/(.*)=registry.local/lib/$1",
            "seed/(.*)=team/$1",
        ]
        .iter()
        .map(|r| r.parse().unwrap())
        .collect();
        let r = |s: &str| apply_rules(&rules, &ImageRef::parse(s).unwrap());
        assert_eq!(
            r("alpine:3").as_deref(),
            Some("registry.local/lib/alpine:3")
        );
        assert_eq!(r("seed/app:1.0").as_deref(), Some("team/app:1.0"));
        assert_eq!(r("other/app:1.0"), None);
        assert!("nothing".parse::<Rule>().is_err());
        assert!("(=x".parse::<Rule>().is_err());
    }

    #[test]
    fn new_names_are_checked_before_anything_moves() {
        let mut p = plan(vec![sel("seed/app:1.0", "aaa", &["team/app:2"])]);
        assert_eq!(resolve(&mut p, &[]).unwrap(), 1);
        assert_eq!(p.images[0].rename, ["docker.io/team/app:2"]);

        for bad in [
            "--output=/tmp/x",
            "a b",
            "x;rm -rf /",
            "$(touch /tmp/pwned)",
        ] {
            let mut p = plan(vec![sel("seed/app:1.0", "aaa", &[bad])]);
            let e = resolve(&mut p, &[]).unwrap_err();
            assert!(
                format!("{e:#}").contains("not an image reference"),
                "{bad}: {e:#}"
            );
        }
        let rules = vec!["seed/(.*)=Bad Name/$1".parse().unwrap()];
        let mut p = plan(vec![sel("seed/app:1.0", "aaa", &[])]);
        assert!(resolve(&mut p, &rules).is_err());
    }

    #[test]
    fn two_images_under_one_name_are_rejected() {
        let rules = vec!["seed/[a-z]+:(.*)=team/one:$1".parse().unwrap()];
        let mut p = plan(vec![
            sel("seed/app:1.0", "aaa", &[]),
            sel("seed/base:1.0", "bbb", &[]),
        ]);
        let e = resolve(&mut p, &rules).unwrap_err();
        assert!(
            format!("{e:#}").contains("would be named docker.io/team/one:1.0"),
            "{e:#}"
        );
        // renaming onto another selected image's own name
        let mut p = plan(vec![
            sel("seed/app:1.0", "aaa", &["seed/base:1.0"]),
            sel("seed/base:1.0", "bbb", &[]),
        ]);
        assert!(resolve(&mut p, &[]).is_err());
        // two names of one image may share a new name
        let mut p = plan(vec![
            sel("seed/app:1.0", "aaa", &["team/app:1"]),
            sel("seed/many:v1", "aaa", &["team/app:1"]),
        ]);
        assert!(resolve(&mut p, &[]).is_ok());
    }
}
