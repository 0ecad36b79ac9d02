//! Errors for people: `error:` with the outermost message, `caused by:` for each cause, and a
//! `hint:` line when some layer knows what to try, then `more: imgkit explain CODE`, where CODE
//! names the error's entry in docs/troubleshooting.md (built into the binary; see
//! `commands::explain`). A closed stdout exits quietly.

use std::fmt;
use std::io::{self, Write};
use std::path::Path;
use std::process::ExitCode;

use imgkit_engine::EngineKind;

use crate::global::GlobalArgs;

/// docs/troubleshooting.md: every error message imgkit prints, with its cause and fix, each
/// under a stable code (`### IK301: …`) and with the patterns of the messages it explains
/// (`<!-- matches: REGEX -->`).
pub(crate) const TROUBLESHOOTING: &str = include_str!("../docs/troubleshooting.md");

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

/// One entry of docs/troubleshooting.md.
#[derive(Debug)]
pub(crate) struct Entry {
    /// `IK301`.
    pub(crate) code: &'static str,
    /// The heading after the code: the message(s) it explains.
    pub(crate) title: &'static str,
    /// The entry's text (cause and fix), without the match patterns.
    pub(crate) body: String,
    /// Patterns of the messages this entry explains.
    pub(crate) patterns: Vec<&'static str>,
}

/// Every entry of docs/troubleshooting.md, in order.
pub(crate) fn entries() -> Vec<Entry> {
    let mut out: Vec<Entry> = Vec::new();
    let mut current: Option<Entry> = None;
    for line in TROUBLESHOOTING.lines() {
        if line.starts_with("## ") || line.starts_with("### ") || line.starts_with("# ") {
            out.extend(current.take());
            if let Some((code, title)) = line
                .strip_prefix("### ")
                .and_then(|h| h.split_once(": "))
                .filter(|(c, _)| is_code(c))
            {
                current = Some(Entry {
                    code,
                    title,
                    body: String::new(),
                    patterns: Vec::new(),
                });
            }
            continue;
        }
        let Some(entry) = current.as_mut() else {
            continue;
        };
        if let Some(p) = line
            .trim()
            .strip_prefix("<!-- matches: ")
            .and_then(|p| p.strip_suffix(" -->"))
        {
            entry.patterns.push(p);
        } else {
            entry.body.push_str(line);
            entry.body.push('\n');
        }
    }
    out.extend(current);
    for e in &mut out {
        e.body = e.body.trim().to_owned();
    }
    out
}

/// `IK` and three digits.
pub(crate) fn is_code(s: &str) -> bool {
    s.len() == 5 && s.starts_with("IK") && s[2..].bytes().all(|b| b.is_ascii_digit())
}

/// The code of the entry explaining `err`: the innermost message of its chain that an entry
/// explains (the cause is more specific than its context), skipping what the OS or an engine
/// said in its own words.
pub(crate) fn code_of(err: &anyhow::Error) -> Option<&'static str> {
    let mut messages: Vec<String> = err
        .chain()
        .filter(|c| {
            c.downcast_ref::<io::Error>().is_none()
                && c.downcast_ref::<imgkit_transfer::StderrTail>().is_none()
        })
        .map(ToString::to_string)
        .collect();
    messages.reverse();
    let entries = entries();
    for m in &messages {
        for e in &entries {
            for p in &e.patterns {
                if regex::Regex::new(p).is_ok_and(|re| re.is_match(m)) {
                    return Some(e.code);
                }
            }
        }
    }
    None
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
    let code = code_of(err);
    let mut out = io::stderr().lock();
    if global.json {
        let obj = serde_json::json!({
            "error": err.to_string(),
            "causes": causes,
            "hints": hints,
            "code": code,
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
        if let Some(code) = code {
            let _ = writeln!(out, "  more: imgkit explain {code}");
        }
    }
    ExitCode::from(EXIT_ERROR)
}

/// "did you mean `docker`?" when `path` does not exist and its text is one edit (an insertion,
/// deletion, substitution or swap of neighbours) away from an engine name, with or without a
/// `:NAMESPACE`.
pub(crate) fn engine_typo(path: &Path) -> Option<String> {
    if path.exists() {
        return None;
    }
    let text = path.to_str()?;
    let (head, ns) = match text.split_once(':') {
        Some((h, ns)) => (h, Some(ns)),
        None => (text, None),
    };
    let kind = EngineKind::ALL
        .into_iter()
        .find(|k| edit_distance(&head.to_lowercase(), k.as_str()) <= 1)?;
    let suggestion = match ns {
        Some(ns) if kind.is_containerd() => format!("{kind}:{ns}"),
        Some(_) => return None,
        None => kind.to_string(),
    };
    Some(format!(
        "did you mean `{suggestion}`? (for a file of that name, write ./{text})"
    ))
}

/// Optimal string alignment distance (Levenshtein plus swaps of neighbours).
fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut v = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                v = v.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = v;
        }
    }
    d[a.len()][b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_entry_has_a_unique_code_and_valid_patterns() {
        let entries = entries();
        assert!(entries.len() > 30, "{}", entries.len());
        let mut codes = std::collections::HashSet::new();
        for e in &entries {
            assert!(codes.insert(e.code), "{} appears twice", e.code);
            assert!(
                !e.patterns.is_empty(),
                "{} has no `matches:` pattern",
                e.code
            );
            assert!(!e.body.is_empty(), "{} has no text", e.code);
            for p in &e.patterns {
                regex::Regex::new(p).unwrap_or_else(|err| panic!("{}: {p}: {err}", e.code));
            }
        }
    }

    #[test]
    fn typos_of_engine_names_are_caught() {
        let t = |s: &str| engine_typo(Path::new(s));
        assert!(t("dockr").unwrap().starts_with("did you mean `docker`?"));
        assert!(t("dokcer").unwrap().starts_with("did you mean `docker`?"));
        assert!(t("podmn").unwrap().starts_with("did you mean `podman`?"));
        assert!(
            t("crt:k8s.io")
                .unwrap()
                .starts_with("did you mean `ctr:k8s.io`?")
        );
        assert!(
            t("nerdctll")
                .unwrap()
                .starts_with("did you mean `nerdctl`?")
        );
        assert_eq!(t("images.tar"), None);
        assert_eq!(t("dkr"), None);
        assert_eq!(t("dockr:x"), None);
    }
}
