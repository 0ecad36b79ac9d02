//! Errors for people: `error:` with the outermost message, `caused by:` for each cause, and a
//! `hint:` line when some layer knows what to try. A closed stdout exits quietly.

use std::fmt;
use std::io::{self, Write};
use std::process::ExitCode;

use crate::cli::GlobalArgs;

/// Every error message imgkit prints, with its cause and fix.
pub(crate) const TROUBLESHOOTING: &str =
    "https://github.com/imgkit/imgkit/blob/main/docs/troubleshooting.md";

/// Exit code for errors (grep and jq use 2 too).
pub(crate) const EXIT_ERROR: u8 = 2;

/// An error that carries advice: what the user can try.
#[derive(Debug)]
pub(crate) struct Hinted {
    error: anyhow::Error,
    hint: String,
}

impl fmt::Display for Hinted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.error, f)
    }
}

impl std::error::Error for Hinted {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.error.source()
    }
}

/// Attaches a hint to an error; the renderer prints it as `hint: …`.
pub(crate) fn with_hint(error: impl Into<anyhow::Error>, hint: impl fmt::Display) -> anyhow::Error {
    anyhow::Error::new(Hinted {
        error: error.into(),
        hint: hint.to_string(),
    })
}

fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|c| {
        c.downcast_ref::<io::Error>()
            .is_some_and(|e| e.kind() == io::ErrorKind::BrokenPipe)
    })
}

/// Renders `err` on stderr (or as a JSON object with `--json`) and returns the exit code.
pub(crate) fn report(err: &anyhow::Error, global: &GlobalArgs) -> ExitCode {
    if is_broken_pipe(err) {
        return ExitCode::SUCCESS;
    }
    let causes: Vec<String> = err.chain().skip(1).map(ToString::to_string).collect();
    let hints: Vec<&str> = err
        .chain()
        .filter_map(|c| c.downcast_ref::<Hinted>())
        .map(|h| h.hint.as_str())
        .collect();
    let mut out = io::stderr().lock();
    if global.json {
        let obj = serde_json::json!({
            "error": err.to_string(),
            "causes": causes,
            "hints": hints,
        });
        let _ = writeln!(out, "{obj}");
    } else {
        let _ = writeln!(out, "error: {err}");
        for c in &causes {
            let _ = writeln!(out, "  caused by: {c}");
        }
        for h in &hints {
            let _ = writeln!(out, "  hint: {h}");
        }
        if !hints.is_empty() {
            let _ = writeln!(out, "  more: {TROUBLESHOOTING}");
        }
    }
    ExitCode::from(EXIT_ERROR)
}
