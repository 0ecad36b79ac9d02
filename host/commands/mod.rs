//! One module per subcommand (`cli.rs` declares them and dispatches).

pub(crate) mod completions;
pub(crate) mod engines;
pub(crate) mod explain;
pub(crate) mod filter;
pub(crate) mod inspect;
pub(crate) mod load;
pub(crate) mod ls;
pub(crate) mod man;
pub(crate) mod parse;
pub(crate) mod plugin;
pub(crate) mod run;
pub(crate) mod save;
pub(crate) mod verify;
