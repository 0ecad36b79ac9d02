//! `imgkit explain CODE`: prints the entry of docs/troubleshooting.md (built into the binary)
//! for an error's code, as `rustc --explain` does; without a code, lists them all.

use std::io::Write;
use std::process::ExitCode;

use crate::diagnostics::{entries, with_hint};
use crate::global::GlobalArgs;

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The code an error printed on its `more:` line, e.g. IK301. None: list every code.
    #[arg(value_name = "CODE")]
    pub(crate) code: Option<String>,
}

pub(crate) fn run(args: &Args, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    let all = entries();
    let mut out = std::io::stdout().lock();
    let Some(code) = &args.code else {
        if global.json {
            let list: Vec<_> = all
                .iter()
                .map(|e| serde_json::json!({"code": e.code, "title": e.title}))
                .collect();
            writeln!(out, "{}", serde_json::Value::Array(list))?;
        } else {
            for e in &all {
                writeln!(out, "{}  {}", e.code, e.title)?;
            }
        }
        return Ok(ExitCode::SUCCESS);
    };
    let wanted = code.trim().to_uppercase();
    let Some(entry) = all.iter().find(|e| e.code == wanted) else {
        return Err(with_hint(
            anyhow::anyhow!("no troubleshooting entry has the code {code:?}"),
            "`imgkit explain` lists every code",
        ));
    };
    if global.json {
        writeln!(
            out,
            "{}",
            serde_json::json!({"code": entry.code, "title": entry.title, "text": entry.body})
        )?;
    } else {
        writeln!(out, "{}: {}\n\n{}", entry.code, entry.title, entry.body)?;
    }
    Ok(ExitCode::SUCCESS)
}
