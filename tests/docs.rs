//! Every `imgkit …` command line shown in README.md and docs/*.md parses through the real CLI
//! (`imgkit __parse ARGS…` runs clap's full parse — subcommands, flags, values, conflicts,
//! required arguments — and nothing else), so an example cannot name a flag that does not exist.

use std::path::{Path, PathBuf};

use crate::util::Test;

/// The markdown files whose examples are checked.
fn documents() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = vec![root.join("README.md")];
    if let Ok(dir) = std::fs::read_dir(root.join("docs")) {
        let mut docs: Vec<PathBuf> = dir
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "md"))
            .collect();
        docs.sort();
        files.extend(docs);
    }
    files
}

/// Splits a shell line into words and operators (`|`, `>`, `<`, `;`, `&`), honouring single
/// and double quotes and backslashes, and dropping a `#` comment. Bash and PowerShell lines in
/// the docs are written so that both read them the same way.
fn words(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                in_word = true;
                for q in chars.by_ref() {
                    if q == '\'' {
                        break;
                    }
                    cur.push(q);
                }
            }
            '"' => {
                in_word = true;
                while let Some(q) = chars.next() {
                    match q {
                        '"' => break,
                        '\\' if matches!(chars.peek(), Some('"' | '\\' | '$')) => {
                            cur.push(chars.next().unwrap());
                        }
                        _ => cur.push(q),
                    }
                }
            }
            '\\' => {
                in_word = true;
                if let Some(n) = chars.next() {
                    cur.push(n);
                }
            }
            '#' if !in_word => break,
            '|' | '>' | '<' | ';' | '&' => {
                if in_word {
                    out.push(std::mem::take(&mut cur));
                    in_word = false;
                }
                out.push(c.to_string());
            }
            c if c.is_whitespace() => {
                if in_word {
                    out.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            c => {
                in_word = true;
                cur.push(c);
            }
        }
    }
    if in_word {
        out.push(cur);
    }
    out
}

fn is_operator(w: &str) -> bool {
    matches!(w, "|" | ">" | "<" | ";" | "&")
}

/// The argument lists of the imgkit invocations on one shell line (without `imgkit` itself).
/// `cargo run … -- ARGS` counts as imgkit; `…` (an elided part) is left out.
fn invocations(line: &str) -> Vec<Vec<String>> {
    let line = line.trim_start();
    let line = line
        .strip_prefix("$ ")
        .or_else(|| line.strip_prefix("PS> "))
        .unwrap_or(line);
    let words = words(line);
    let mut found = Vec::new();
    let segments = words.split(|w| is_operator(w));
    let mut after_redirect = false;
    let mut ops = words.iter().filter(|w| is_operator(w));
    for seg in segments {
        // The word after `>`/`<` is a file name, not a command.
        let seg = if after_redirect && !seg.is_empty() {
            &seg[1..]
        } else {
            seg
        };
        after_redirect = matches!(ops.next().map(String::as_str), Some(">" | "<"));
        // Skip `VAR=value` prefixes.
        let start = seg
            .iter()
            .position(|w| !w.contains('='))
            .unwrap_or(seg.len());
        let seg = &seg[start..];
        let args: Option<&[String]> = match seg.first().map(String::as_str) {
            Some("imgkit" | "imgkit.exe") => Some(&seg[1..]),
            Some("cargo") if seg.get(1).is_some_and(|w| w == "run") => {
                seg.iter().position(|w| w == "--").map(|i| &seg[i + 1..])
            }
            _ => None,
        };
        if let Some(args) = args {
            found.push(args.iter().filter(|w| *w != "…").cloned().collect());
        }
    }
    found
}

/// `(file:line, args)` for every imgkit invocation in fenced shell blocks and in inline code.
fn examples(path: &Path) -> Vec<(String, Vec<String>)> {
    let text = std::fs::read_to_string(path).unwrap();
    let name = path.file_name().unwrap().to_string_lossy().into_owned();
    let mut out = Vec::new();
    let mut fence: Option<String> = None;
    for (i, line) in text.lines().enumerate() {
        let at = format!("{name}:{}", i + 1);
        if let Some(rest) = line.trim_start().strip_prefix("```") {
            fence = match fence {
                Some(_) => None,
                None => Some(rest.trim().to_owned()),
            };
            continue;
        }
        match fence.as_deref() {
            // Data, not command lines.
            Some("json" | "jq" | "text") => {}
            Some(_) => out.extend(invocations(line).into_iter().map(|a| (at.clone(), a))),
            None => {
                // Inline code spans that start with `imgkit `.
                for (k, span) in line.split('`').enumerate() {
                    if k % 2 == 1 && span.starts_with("imgkit ") {
                        out.extend(invocations(span).into_iter().map(|a| (at.clone(), a)));
                    }
                }
            }
        }
    }
    out
}

#[test]
fn shell_words_are_split_like_a_shell() {
    assert_eq!(
        words(r#"imgkit ls -e 'select(.Tag != "x")' > out.txt # note"#),
        [
            "imgkit",
            "ls",
            "-e",
            r#"select(.Tag != "x")"#,
            ">",
            "out.txt"
        ]
    );
    assert_eq!(
        invocations("docker save x | imgkit load --engine podman"),
        [vec!["load", "--engine", "podman"]]
    );
    assert_eq!(
        invocations("imgkit save -o - … | gzip > imgkit.tar.gz"),
        [vec!["save", "-o", "-"]]
    );
    assert_eq!(
        invocations("DOCKER_HOST=unix:///x.sock imgkit engines"),
        [vec!["engines"]]
    );
}

#[test]
fn every_documented_command_line_parses() {
    let mut checked = 0;
    let mut failures = Vec::new();
    for doc in documents() {
        for (at, args) in examples(&doc) {
            checked += 1;
            let run = Test::new().args(["__parse"]).args(&args).run();
            if run.status != Some(0) {
                failures.push(format!(
                    "{at}: imgkit {}\n{}",
                    args.join(" "),
                    run.stderr.trim_end()
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {checked} documented command lines do not parse:\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
    // The extraction itself must find the examples (README alone has more than ten).
    assert!(checked >= 30, "only {checked} command lines found");
}
