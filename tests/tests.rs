//! End-to-end suite: runs the real `imgkit` binary. One module per theme.

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
