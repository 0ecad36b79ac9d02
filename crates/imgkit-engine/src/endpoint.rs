//! An engine as an `imgkit_store::TarEndpoint`: its seam's listing, save and load commands,
//! ID lookup, tag, untag and remove, in the store interface's terms. References are named as
//! the engine stores them here ([`Engine::native_ref`]), image IDs passed as they are.

use std::process::Command;

use imgkit_store::TarEndpoint;
use imgkit_types::{Digest, ImageRecord, ImageRef};

use crate::{Engine, Error};

/// Whether `r` is an image ID as listings show one (12 or 64 lowercase hex, no tag, digest or
/// domain): engines read it as an ID, so it is not renamed.
fn is_image_id(r: &ImageRef) -> bool {
    let name = r.path();
    r.tag().is_none()
        && r.digest().is_none()
        && r.domain().is_none()
        && (name.len() == 12 || name.len() == 64)
        && name
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

fn texts(names: &[ImageRef]) -> Vec<String> {
    names.iter().map(ToString::to_string).collect()
}

impl TarEndpoint for Engine {
    type Error = Error;

    fn describe(&self) -> String {
        if self.kind().is_containerd() {
            format!("{}:{}", self.kind(), self.namespace())
        } else {
            self.kind().to_string()
        }
    }

    fn records(&self) -> Result<(Vec<ImageRecord>, Vec<String>), Error> {
        self.list_noting()
    }

    fn image_ids(&self, refs: &[ImageRef]) -> Result<Vec<Option<Digest>>, Error> {
        Ok(Engine::image_ids(self, refs)?
            .into_iter()
            .map(|(_, id)| id)
            .collect())
    }

    fn save_command(&self, refs: &[ImageRef]) -> Command {
        let native: Vec<ImageRef> = refs
            .iter()
            .map(|r| {
                if is_image_id(r) {
                    r.clone()
                } else {
                    self.native_ref(r)
                }
            })
            .collect();
        self.command(&self.save_args(&native))
    }

    fn load_command(&self) -> Command {
        Engine::load_command(self)
    }

    fn tag(&self, image: &str, names: &[ImageRef]) -> Result<(), Error> {
        Engine::tag(self, image, &texts(names))
    }

    fn untag(&self, names: &[ImageRef]) -> Result<(), Error> {
        Engine::untag(self, &texts(names))
    }

    fn remove(&self, names: &[ImageRef]) -> Result<(), Error> {
        Engine::remove(self, &texts(names))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_ids_are_not_renamed_names_are() {
        let p = |s: &str| ImageRef::parse(s).unwrap();
        assert!(is_image_id(&p("4a2be5982e10")));
        assert!(!is_image_id(&p("4a2be5982e10:latest")));
        assert!(!is_image_id(&p("seed/4a2be5982e10")));
        assert!(!is_image_id(&p("4a2be5982e1")));
    }
}
