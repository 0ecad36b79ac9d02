//! imgkit's default filter as a plugin: a line-for-line port of filters/default.jq,
//!   select(.Repository!="<none>") | if (.Tag=="<none>") then .Repository else (.Repository+":"+.Tag) end
//! Its output equals `jq -r -f filters/default.jq` byte for byte. Records are borrowed from the
//! input lines (`run_ref`): no string is copied to decide.

use imgkit_plugin_sdk::run_ref;

fn main() -> std::process::ExitCode {
    run_ref(|record| record.reference())
}
