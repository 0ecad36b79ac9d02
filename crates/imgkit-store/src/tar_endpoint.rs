//! Endpoints whose only doors are whole-image tar streams: engine CLIs (docker, podman, ctr,
//! nerdctl). They list, save a selection as one tar on a command's stdout, load one from a
//! command's stdin, look up image IDs by name, and tag, untag and remove names. Between them
//! and the blob stores of this crate stand [`crate::ingest`] (a save stream into a
//! [`crate::Destination`], blob by blob) and [`crate::write_tar`] (a [`crate::Source`]'s
//! images as one tar for a load). `imgkit-engine` implements this for its `Engine`.

use std::process::Command;

use imgkit_types::{Digest, ImageRecord, ImageRef};

/// A tar-stream endpoint (see the module docs). Errors are the endpoint's own (an engine's
/// carry its hint and `imgkit explain` code).
pub trait TarEndpoint {
    type Error: std::error::Error + Send + Sync + 'static;

    /// What to call it in messages (`docker`, `ctr:k8s.io`).
    fn describe(&self) -> String;
    /// Its images as docker-shaped records, and warnings about rows it left out.
    fn records(&self) -> Result<(Vec<ImageRecord>, Vec<String>), Self::Error>;
    /// The image ID (config digest) each reference names here; `None` where it has none.
    fn image_ids(&self, refs: &[ImageRef]) -> Result<Vec<Option<Digest>>, Self::Error>;
    /// The command that writes `refs` (as listed, or image IDs) as one tar to its stdout; the
    /// endpoint names them as it stores them.
    fn save_command(&self, refs: &[ImageRef]) -> Command;
    /// The command that loads one tar from its stdin.
    fn load_command(&self) -> Command;
    /// Gives the image `image` (a name it holds, or an image ID where it tags by ID) each of
    /// `names`; a name on another image moves.
    fn tag(&self, image: &str, names: &[ImageRef]) -> Result<(), Self::Error>;
    /// Drops `names` (an image left with none may go with its last).
    fn untag(&self, names: &[ImageRef]) -> Result<(), Self::Error>;
    /// Removes `names` and the images left without one.
    fn remove(&self, names: &[ImageRef]) -> Result<(), Self::Error>;
}
