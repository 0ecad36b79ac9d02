//! End-to-end suite: runs the real `imgkit` binary. One module per theme.

mod util;

mod archive;
mod cli;
mod docs;
mod engines;
mod filter;
mod jqcli;
mod plugin;
mod presets;
mod snapshots;
mod sync;
mod transfer;
