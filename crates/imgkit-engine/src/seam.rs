//! The one place an [`EngineKind`] becomes behaviour: each engine's module implements
//! [`Seam`] (its argv, output parsing, error classification, tag/untag/remove and ID lookup),
//! and [`seam`] is the only `match` on the kind that picks one. [`crate::Engine`] runs what the
//! seam builds and never matches on the kind itself.

use std::ffi::OsString;

use imgkit_types::{Digest, ImageRecord, ImageRef};

use crate::{Engine, EngineKind, Error, ParseError, os};

/// One engine's quirks. Methods with a default are the same for most engines.
pub(crate) trait Seam: Sync {
    /// Global flags that come before every subcommand (host, context, address, namespace).
    fn global_args(&self, e: &Engine) -> Vec<OsString>;

    /// Where the engine is reached, for messages.
    fn endpoint(&self, e: &Engine) -> String;

    /// The listing's argv.
    fn list_args(&self) -> Vec<OsString>;

    /// The listing's output as records, and warnings about rows left out.
    fn parse_list(
        &self,
        e: &Engine,
        out: &[u8],
        now: i64,
    ) -> Result<(Vec<ImageRecord>, Vec<String>), ParseError>;

    /// A failure this engine's stderr explains (unreachable daemon, permission), if any.
    fn classify(&self, e: &Engine, lower: &str, stderr: &str) -> Option<Error>;

    /// Writes a tar of `refs` (native names) to stdout.
    fn save_args(&self, refs: &[ImageRef]) -> Vec<OsString>;

    /// Loads a tar from stdin.
    fn load_args(&self) -> Vec<OsString> {
        os(&["load"])
    }

    /// Lists containerd namespaces; `None` where the engine has none.
    fn namespaces_args(&self) -> Option<Vec<OsString>> {
        None
    }

    /// Asks the version (which also checks that the daemon answers).
    fn version_args(&self) -> Vec<OsString>;

    /// The server version in [`Seam::version_args`]'s output.
    fn parse_version(&self, out: &[u8]) -> Option<String> {
        crate::probe::json_version(out)
    }

    /// The reference as this engine stores it: fully qualified (`docker.io/library/alpine:3`)
    /// everywhere but docker.
    fn native_ref(&self, r: &ImageRef) -> ImageRef {
        qualified(r)
    }

    /// The calls that give `src` (a name or an image ID) each of `names`, replacing what a
    /// name pointed at before.
    fn tag_calls(&self, src: &str, names: &[String]) -> Vec<Vec<OsString>>;

    /// The calls that drop `names` (an image that keeps another name stays; one left without
    /// any may go).
    fn untag_calls(&self, names: &[String]) -> Vec<Vec<OsString>> {
        let mut c = os(&["rmi", "--"]);
        c.extend(names.iter().map(OsString::from));
        vec![c]
    }

    /// The call that removes `names` and the images left without one.
    fn remove_args(&self, names: &[String]) -> Vec<OsString> {
        let mut c = os(&["rmi", "--"]);
        c.extend(names.iter().map(OsString::from));
        c
    }

    /// The config digest (image ID) of each reference, `None` where the engine lacks it.
    fn image_ids(
        &self,
        e: &Engine,
        refs: &[ImageRef],
    ) -> Result<Vec<(ImageRef, Option<Digest>)>, Error> {
        inspect_ids(e, refs)
    }

    /// Whether the engine holds the image with ID `id`; `None` where it cannot look an image
    /// up by ID (containerd keeps images by name).
    fn has_image_id(&self, e: &Engine, id: &Digest) -> Option<bool> {
        Some(e.output(&inspect_id_args(&[id.as_str()])).is_ok())
    }

    /// Whether `tag` accepts an image ID as its source (ctr's `images tag` takes a name only).
    fn tags_by_id(&self) -> bool {
        true
    }

    /// Whether the engine files the short names of a docker archive somewhere other than
    /// docker means them (podman: under `localhost/`), so a stream's names should be
    /// qualified on the way in.
    fn misfiles_short_names(&self) -> bool {
        false
    }

    /// After a load: the names the load filed wrongly, as (image's loaded name, wrong names,
    /// right names) per image. `images` are the loaded references with their image IDs.
    fn misfiled(&self, _load_output: &str, _images: &[(&ImageRef, &str)]) -> Vec<Misfiled> {
        Vec::new()
    }
}

/// Names one load filed wrongly for one image (see [`Seam::misfiled`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Misfiled {
    pub(crate) wrong: Vec<String>,
    pub(crate) right: Vec<String>,
}

/// The seam of `kind`: the only `match` on the kind in the crate's dispatch.
pub(crate) fn seam(kind: EngineKind) -> &'static dyn Seam {
    match kind {
        EngineKind::Docker => &crate::docker::Docker,
        EngineKind::Podman => &crate::podman::Podman,
        EngineKind::Ctr => &crate::ctr::Ctr,
        EngineKind::Nerdctl => &crate::nerdctl::Nerdctl,
    }
}

/// `r` fully qualified; a digest-only reference keeps its digest and no tag.
pub(crate) fn qualified(r: &ImageRef) -> ImageRef {
    if r.tag().is_none() && r.digest().is_some() {
        let name: ImageRef = r
            .normalized_name()
            .parse()
            .expect("normalized name is valid");
        name.with_digest(r.digest().expect("checked"))
    } else {
        r.normalized()
    }
}

/// `image inspect --format {{.ID}} -- REF…` (docker, podman, nerdctl).
pub(crate) fn inspect_id_args(refs: &[&str]) -> Vec<OsString> {
    let mut args = os(&["image", "inspect", "--format", "{{.ID}}", "--"]);
    args.extend(refs.iter().map(OsString::from));
    args
}

/// IDs as engines print them: `sha256:hex` (docker, nerdctl) or bare hex (podman).
pub(crate) fn parse_ids(out: &[u8]) -> Vec<Option<Digest>> {
    String::from_utf8_lossy(out)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let l = l.trim();
            l.parse::<Digest>()
                .ok()
                .or_else(|| Digest::sha256_hex(l).ok())
        })
        .collect()
}

/// Image IDs through `image inspect`: one batched call, and one per reference when one of
/// them is missing (to know which).
fn inspect_ids(e: &Engine, refs: &[ImageRef]) -> Result<Vec<(ImageRef, Option<Digest>)>, Error> {
    let native: Vec<String> = refs.iter().map(|r| e.native_ref(r).to_string()).collect();
    let all: Vec<&str> = native.iter().map(String::as_str).collect();
    if let Ok(out) = e.output(&inspect_id_args(&all)) {
        let ids = parse_ids(&out);
        if ids.len() == refs.len() && ids.iter().all(Option::is_some) {
            return Ok(refs.iter().cloned().zip(ids).collect());
        }
    }
    refs.iter()
        .zip(&all)
        .map(|(r, n)| match e.output(&inspect_id_args(&[n])) {
            Ok(out) => Ok((r.clone(), parse_ids(&out).into_iter().next().flatten())),
            Err(Error::EngineFailed { .. }) => Ok((r.clone(), None)),
            Err(e) => Err(e),
        })
        .collect()
}

/// The classification shared by containerd's CLIs: a socket that cannot be dialled.
pub(crate) fn classify_containerd(e: &Engine, lower: &str, stderr: &str) -> Option<Error> {
    let dial =
        lower.contains("failed to dial") || lower.contains("cannot access containerd socket");
    if dial && lower.contains("permission denied") {
        return Some(Error::PermissionDenied {
            kind: e.kind(),
            endpoint: e.endpoint(),
            stderr: stderr.to_owned(),
        });
    }
    if dial || lower.contains("connection refused") {
        return Some(Error::DaemonUnreachable {
            kind: e.kind(),
            endpoint: e.endpoint(),
            stderr: stderr.to_owned(),
        });
    }
    None
}
