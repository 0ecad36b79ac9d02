//! End-to-end suite: runs the real `imgkit` binary. One module per theme.

mod util;

mod cli;
mod plugin;
