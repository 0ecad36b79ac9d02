//! Keeps the layering so: `host/` builds no engine argv (each engine's verbs live in its own
//! file of imgkit-engine, behind `Engine` methods), imgkit-engine knows no command line, and
//! `commands/` does not import `cli.rs`.

use std::path::{Path, PathBuf};

/// Engine verbs that, as a string literal in `host/`, mean an argv is being built there.
const VERBS: [&str; 10] = [
    "rmi", "tag", "untag", "inspect", "images", "import", "load", "save", "export", "rm",
];

/// What in `text` (the file `name`) builds or runs engine argv: a verb as a string literal
/// that is not a JSON key (a key is followed by `:`), or a raw `engine.output(` call.
fn offences(name: &str, text: &str) -> Vec<String> {
    let mut found = Vec::new();
    for (no, line) in text.lines().enumerate() {
        let code = line.split("//").next().unwrap_or("");
        for verb in VERBS {
            let lit = format!("\"{verb}\"");
            let mut rest = code;
            while let Some(at) = rest.find(&lit) {
                let after = rest[at + lit.len()..].trim_start();
                if !after.starts_with(':') {
                    found.push(format!("{name}:{}: {verb:?} in `{}`", no + 1, line.trim()));
                }
                rest = &rest[at + lit.len()..];
            }
        }
        if code.contains("engine.output(") || code.contains("engine.command(&[") {
            found.push(format!("{name}:{}: runs argv: `{}`", no + 1, line.trim()));
        }
    }
    found
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("host/ is readable") {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn host_builds_no_engine_argv() {
    // IMGKIT_HOST_SRC points the check at another tree (to see it fail on an older one).
    let root = std::env::var_os("IMGKIT_HOST_SRC").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("host"),
        PathBuf::from,
    );
    let mut files = Vec::new();
    rust_files(&root, &mut files);
    assert!(files.len() > 10, "host/ read from {}", root.display());
    let mut found = Vec::new();
    for f in files {
        let name = f.strip_prefix(&root).unwrap_or(&f).display().to_string();
        // filter.rs runs jq, not engines; this file names the verbs it looks for.
        if name.ends_with("filter.rs") || name.ends_with("layering.rs") {
            continue;
        }
        let text = std::fs::read_to_string(&f).expect("a readable source file");
        found.extend(offences(&name, &text));
    }
    assert!(
        found.is_empty(),
        "engine argv built under host/ (add an Engine method in crates/imgkit-engine, in the \
         engine's own file):\n{}",
        found.join("\n")
    );
}

#[test]
fn the_check_sees_argv_and_not_json_keys() {
    assert_eq!(
        offences("x.rs", r#"let c = vec![os("images"), os("rm")];"#).len(),
        2
    );
    assert_eq!(
        offences("x.rs", r#"["image", "inspect", "--format", "{{.ID}}"]"#).len(),
        1
    );
    assert_eq!(offences("x.rs", "engine.output(&argv)?;").len(), 1);
    assert!(offences("x.rs", r#"json!({"images": n, "tag" : t})"#).is_empty());
    assert!(offences("x.rs", r#"// "rmi" in a comment"#).is_empty());
}

#[test]
fn the_engine_crate_knows_no_command_line() {
    let toml = Path::new(env!("CARGO_MANIFEST_DIR")).join("crates/imgkit-engine/Cargo.toml");
    let text = std::fs::read_to_string(&toml).expect("imgkit-engine's Cargo.toml");
    let deps = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.split(['.', '=', ' ']).next() == Some("clap"));
    assert_eq!(
        deps.count(),
        0,
        "imgkit-engine depends on clap: the binary maps EngineKind (host/engine_args.rs)"
    );
}

#[test]
fn commands_do_not_import_the_command_line_definition() {
    // cli.rs dispatches to commands/; a command that needs the clap definition gets it passed
    // in (man, completions, filter's argument positions), so the two never import each other.
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("host/commands");
    let mut files = Vec::new();
    rust_files(&root, &mut files);
    let found: Vec<String> = files
        .iter()
        .filter(|f| {
            std::fs::read_to_string(f)
                .expect("a readable source file")
                .contains("crate::cli")
        })
        .map(|f| f.display().to_string())
        .collect();
    assert!(found.is_empty(), "commands/ imports cli.rs: {found:?}");
}
