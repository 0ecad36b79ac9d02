//! End-to-end suite: runs the real `imgkit` binary. One module per theme.

/// The real engines (`transfer::engines`), or the test returns: skipped outside CI, as
/// `engines` says why; under CI=true a missing engine fails there instead. A module may define
/// its own (with its own skip message).
macro_rules! need_engines {
    () => {
        match crate::transfer::engines() {
            Some(e) => e,
            None => return,
        }
    };
}

mod util;

mod archive;
mod cli;
mod containerd;
mod ctrcmds;
mod dockerapi;
mod dockerfiles;
mod docs;
mod engines;
mod filter;
mod hardening;
mod jqcli;
mod layout;
mod plugin;
mod presets;
mod registry;
mod safety;
mod sandbox;
mod snapshots;
mod spec;
mod stores;
mod sync;
mod transfer;
