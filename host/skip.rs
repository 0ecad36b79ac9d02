//! Skipping what the target already has: `imgkit run` lists the target once and leaves out every
//! selected image whose reference already resolves there to the same image ID (config digest),
//! so a repeated run moves nothing.
//!
//! The check costs one listing of the target, and — only for the images the listing names —
//! one batched ID lookup on each side (the same lookups the verification after a transfer
//! does). An image is skipped only when both IDs are known and equal; anything uncertain is
//! copied.

use std::collections::{BTreeMap, HashSet};

use imgkit_types::ImageRef;

use crate::plan::{Endpoint, Found, Plan, PlannedImage};
use crate::rename;
use crate::selection::key;
use crate::transfer::listed_bytes;

/// A plan split into what to move and what the target already holds.
#[derive(Debug, Clone)]
pub(crate) struct Partition {
    /// The images to move (`None` when every image is already there).
    pub(crate) copy: Option<Plan>,
    /// The references skipped: present in the target with the same ID.
    pub(crate) skipped: Vec<ImageRef>,
}

/// Splits `plan` by what `target` holds. Archive targets are written whole: nothing is skipped.
pub(crate) fn partition(
    plan: Plan,
    source: &Endpoint,
    target: &Endpoint,
) -> anyhow::Result<Partition> {
    let Some(engine) = target.engine() else {
        return Ok(everything(plan));
    };
    let records = match engine.list() {
        Ok(r) => r,
        // A namespace that does not exist yet is empty; the load creates it.
        Err(imgkit_engine::Error::UnknownNamespace { .. }) => Vec::new(),
        Err(e) => {
            return Err(crate::plan::engine_error(
                e,
                &format!("could not list the images in {}", target.name()),
            ));
        }
    };
    let listed: HashSet<String> = records
        .iter()
        .filter_map(imgkit_types::ImageRecord::reference)
        .filter_map(|s| ImageRef::parse(&s).ok())
        .map(|r| key(&r))
        .collect();
    let ids: HashSet<&str> = records.iter().map(|r| r.id.as_str()).collect();
    // Candidates: images whose every target name (their own, or their new names) the target
    // lists; digest-only refs (loaded without a name) when the target lists an image with the
    // source's short ID and keeps unnamed images.
    let keeps_unnamed = !engine.kind().is_containerd();
    let candidates: Vec<&PlannedImage> = plan
        .images
        .iter()
        .filter(|i| {
            if digest_only(&i.reference) {
                keeps_unnamed && ids.contains(i.id.as_str())
            } else {
                rename::target_names(i)
                    .iter()
                    .all(|n| listed.contains(&key(n)))
            }
        })
        .collect();
    if candidates.is_empty() {
        return Ok(everything(plan));
    }
    let refs: Vec<ImageRef> = candidates.iter().map(|i| i.reference.clone()).collect();
    let want: Vec<Option<imgkit_types::Digest>> = source
        .ids(&refs, None)?
        .into_iter()
        .map(|f| match f {
            Found::Id(d) => Some(d),
            Found::Missing | Found::Unnamed => None,
        })
        .collect();
    // Named images: the target's config digest under each target name (one batched lookup).
    // A digest-only ref has no name in the target: the listing's ID must be the source's.
    let mut lookups: Vec<(usize, ImageRef)> = Vec::new();
    for (c, img) in candidates.iter().enumerate() {
        if !digest_only(&img.reference) {
            lookups.extend(rename::target_names(img).into_iter().map(|n| (c, n)));
        }
    }
    let names: Vec<ImageRef> = lookups.iter().map(|(_, n)| n.clone()).collect();
    let got = if names.is_empty() {
        Vec::new()
    } else {
        target.ids(&names, None)?
    };
    let mut differs = vec![false; candidates.len()];
    for ((c, _), g) in lookups.iter().zip(got) {
        match (&want[*c], g) {
            (Some(w), Found::Id(g)) if *w == g => {}
            _ => differs[*c] = true,
        }
    }
    let mut same: HashSet<String> = HashSet::new();
    for (c, img) in candidates.iter().enumerate() {
        let present = if digest_only(&img.reference) {
            want[c].as_ref().is_some_and(|w| ids.contains(w.short_id()))
        } else {
            want[c].is_some() && !differs[c]
        };
        if present {
            same.insert(img.reference.to_string());
        }
    }
    let (skipped, copy): (Vec<PlannedImage>, Vec<PlannedImage>) = plan
        .images
        .into_iter()
        .partition(|i| same.contains(&i.reference.to_string()));
    Ok(Partition {
        copy: plan_of(copy),
        skipped: skipped.into_iter().map(|i| i.reference).collect(),
    })
}

/// The whole plan, nothing skipped (`--force`).
pub(crate) fn partition_none(plan: Plan) -> Partition {
    everything(plan)
}

fn everything(plan: Plan) -> Partition {
    Partition {
        copy: Some(plan),
        skipped: Vec::new(),
    }
}

/// Loaded without a name: a digest-only reference, or an image selected by its ID.
fn digest_only(r: &ImageRef) -> bool {
    (r.tag().is_none() && r.digest().is_some()) || crate::plan::image_id_of(r).is_some()
}

/// A plan of `images` (sizes summed once per image ID); `None` when empty.
pub(crate) fn plan_of(images: Vec<PlannedImage>) -> Option<Plan> {
    if images.is_empty() {
        return None;
    }
    let mut sizes: BTreeMap<&str, u64> = BTreeMap::new();
    for img in &images {
        if let Some(s) = listed_bytes(&img.size) {
            sizes.insert(&img.id, s);
        }
    }
    let expected_bytes = (!sizes.is_empty()).then(|| sizes.values().sum());
    let refs = images.iter().map(|i| i.reference.clone()).collect();
    Some(Plan {
        images,
        refs,
        expected_bytes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sel(r: &str, id: &str, size: &str) -> PlannedImage {
        PlannedImage {
            reference: ImageRef::parse(r).unwrap(),
            id: id.into(),
            size: size.into(),
            platforms: None,
            rename: Vec::new(),
        }
    }

    #[test]
    fn keys_are_fully_qualified() {
        let k = |s: &str| key(&ImageRef::parse(s).unwrap());
        assert_eq!(k("alpine"), "docker.io/library/alpine:latest");
        assert_eq!(k("docker.io/seed/app:1.0"), k("seed/app:1.0"));
        assert_ne!(k("localhost/seed/app:1.0"), k("seed/app:1.0"));
    }

    #[test]
    fn a_plan_counts_each_image_once() {
        let p = plan_of(vec![
            sel("seed/app:1.0", "aaa", "1MB"),
            sel("seed/many:v1", "aaa", "1MB"),
            sel("seed/base:1.0", "bbb", "2MB"),
        ])
        .unwrap();
        assert_eq!(p.expected_bytes, Some(3_000_000));
        assert_eq!(p.refs.len(), 3);
        assert!(plan_of(Vec::new()).is_none());
    }
}
