//! imgkit's shared vocabulary: image references and digests (parsed against the
//! distribution reference grammar), and the image record every source yields — the shape of
//! `docker image ls --format '{{json .}}'`. No I/O happens here.

mod digest;
pub mod humanize;
pub mod platform;
mod record;
mod reference;

pub use digest::{Digest, DigestError};
pub use record::{ImageRecord, NONE};
pub use reference::{ImageRef, MAX_NAME_LEN, RefError};
