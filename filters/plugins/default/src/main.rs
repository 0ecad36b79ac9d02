//! imgkit's default filter as a plugin: a line-for-line port of filters/default.jq,
//!   select(.Repository!="<none>") | if (.Tag=="<none>") then .Repository else (.Repository+":"+.Tag) end
//! Its output equals `jq -r -f filters/default.jq` byte for byte.

use imgkit_plugin_sdk::{Record, run};

fn main() -> std::process::ExitCode {
    run(|record: Record| record.reference())
}
