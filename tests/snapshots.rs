//! Snapshots (insta) of what people read: `--help` of every command and the rendering of each
//! kind of error. Temp paths, digests and times are filtered (times not in help, whose only date
//! is the fixed plugin clock's). After a deliberate help or message
//! change, review and accept with `INSTA_UPDATE=always cargo test --test tests snapshots`
//! (or `cargo insta review`).

use crate::util::{Run, Test};

/// Runs imgkit with a fixed terminal width (help wraps to it).
fn imgkit<I, S>(args: I) -> Run
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    Test::new()
        .env("COLUMNS", "100")
        .env_remove("IMGKIT_ENGINE")
        .env_remove("CONTAINERD_NAMESPACE")
        .args(args)
        .run()
}

/// The subcommands `imgkit --help` lists (hidden ones are not listed).
fn subcommands() -> Vec<String> {
    let help = imgkit(["--help"]).success().stdout;
    help.lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        // Wrapped descriptions are indented further than the command names.
        .filter(|l| !l.starts_with("   "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| *c != "help")
        .map(str::to_owned)
        .collect()
}

/// Settings for one kind of output: `[TMP]`, digests, IDs and the version are filtered
/// everywhere; times only where they vary (`times`): help text has one date, the fixed plugin
/// clock's, and a change to it must show in the snapshot.
macro_rules! filtered {
    ($tmp:expr, $body:block) => {{
        filtered!($tmp, times: true, $body)
    }};
    ($tmp:expr, times: $times:expr, $body:block) => {{
        let mut settings = insta::Settings::clone_current();
        settings.set_snapshot_path("snapshots");
        settings.set_prepend_module_to_snapshot(false);
        if let Some(tmp) = $tmp {
            settings.add_filter(&regex_escape(tmp), "[TMP]");
        }
        settings.add_filter(r"sha256:[0-9a-f]{64}", "sha256:[DIGEST]");
        settings.add_filter(r"\b[0-9a-f]{12}\b", "[ID]");
        if $times {
            settings.add_filter(
                r"\d{4}-\d\d-\d\d[ T]\d\d:\d\d:\d\d[^ ]*( \+0000 UTC)?",
                "[TIME]",
            );
        }
        settings.add_filter(r"imgkit \d+\.\d+\.\d+", "imgkit [VERSION]");
        settings.bind(|| $body);
    }};
}

fn regex_escape(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '/' || c == '_' || c == '-' {
                c.to_string()
            } else {
                format!("\\{c}")
            }
        })
        .collect()
}

/// What a person sees: exit code, stdout, stderr.
fn shown(run: &Run) -> String {
    format!(
        "exit: {}\n--- stdout\n{}--- stderr\n{}",
        run.status
            .map_or_else(|| "signal".to_owned(), |c| c.to_string()),
        run.stdout,
        run.stderr
    )
}

#[test]
fn help_of_every_command() {
    let commands = subcommands();
    assert!(commands.iter().any(|c| c == "run"), "{commands:?}");
    filtered!(None::<&str>, times: false, {
        insta::assert_snapshot!("help", imgkit(["--help"]).success().stdout);
        for c in &commands {
            let run = imgkit([c.as_str(), "--help"]).success();
            insta::assert_snapshot!(format!("help-{c}"), run.stdout);
        }
    });
}

#[test]
fn version_names_the_engines_inside() {
    let out = imgkit(["--version"]).success().stdout;
    assert!(out.contains("jaq-core"), "{out}");
    assert!(out.contains("wasmtime"), "{out}");
    assert!(out.contains("contract v1"), "{out}");
    // -V stays one line, as clap prints it.
    let short = imgkit(["-V"]).success().stdout;
    assert_eq!(short.lines().count(), 1, "{short}");
}

#[test]
fn usage_errors() {
    filtered!(None::<&str>, {
        insta::assert_snapshot!(
            "error-unknown-flag",
            shown(&imgkit(["ls", "--bogus"]).code(2))
        );
        insta::assert_snapshot!(
            "error-unknown-command",
            shown(&imgkit(["frobnicate"]).code(2))
        );
        insta::assert_snapshot!(
            "error-bad-engine-value",
            shown(&imgkit(["ls", "--engine", "rkt"]).code(2))
        );
        insta::assert_snapshot!(
            "error-missing-required",
            shown(&imgkit(["save", "--engine", "docker"]).code(2))
        );
    });
}

#[test]
fn missing_filter_file() {
    filtered!(None::<&str>, {
        insta::assert_snapshot!(
            "error-missing-filter-file",
            shown(&imgkit(["filter", "-f", "/nonexistent/mine.jq"]).code(2))
        );
    });
}

#[test]
fn filter_compile_error() {
    filtered!(None::<&str>, {
        insta::assert_snapshot!(
            "error-filter-compile",
            shown(&imgkit(["filter", "-n", ".Repository | select("]).code(3))
        );
    });
}

#[test]
fn engine_binary_missing() {
    filtered!(None::<&str>, {
        let run = imgkit([
            "ls",
            "--engine",
            "docker",
            "--engine-bin",
            "/nonexistent/docker",
        ])
        .code(2);
        insta::assert_snapshot!("error-engine-bin-missing", shown(&run));
        let json = imgkit([
            "--json",
            "ls",
            "--engine",
            "docker",
            "--engine-bin",
            "/nonexistent/docker",
        ])
        .code(2);
        insta::assert_snapshot!("error-engine-bin-missing-json", shown(&json));
    });
}

#[test]
fn invalid_reference() {
    // Refs from the command line are parsed before any engine runs: /bin/true is never asked.
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out.tar");
    let tmp_str = tmp.path().display().to_string();
    filtered!(Some(tmp_str.as_str()), {
        let run = imgkit([
            "save".as_ref(),
            "--engine".as_ref(),
            "docker".as_ref(),
            "--engine-bin".as_ref(),
            "/bin/true".as_ref(),
            "-o".as_ref(),
            out.as_os_str(),
            "Team/App:1.0".as_ref(),
        ] as [&std::ffi::OsStr; 8])
        .code(2);
        insta::assert_snapshot!("error-invalid-reference", shown(&run));
        assert!(!out.exists());
    });
}

#[test]
fn filter_output_that_is_not_a_reference() {
    // An archive source needs no engine.
    let tmp = tempfile::tempdir().unwrap();
    let jq = tmp.path().join("bad.jq");
    std::fs::write(&jq, "\"Not A Reference\"\n").unwrap();
    let images = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/images.tar");
    let tmp_str = tmp.path().display().to_string();
    filtered!(Some(tmp_str.as_str()), {
        let run = Test::new()
            .env("COLUMNS", "100")
            .args(["run", "--dry-run", "--from", images, "--to"])
            .args([tmp.path().join("out.tar")])
            .args(["-f".as_ref(), jq.as_os_str()])
            .run()
            .code(2);
        let text = shown(&run).replace(env!("CARGO_MANIFEST_DIR"), "[REPO]");
        insta::assert_snapshot!("error-filter-output-not-a-reference", text);
    });
}

#[test]
fn verbose_shows_engine_command_lines_on_every_engine_command() {
    // /bin/echo stands in for docker: it prints its argv, which is no listing, so the command
    // fails after the traced call. Enough to see that -v reached the engine.
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out.tar");
    for args in [
        vec![
            "-v",
            "ls",
            "--engine",
            "docker",
            "--engine-bin",
            "/bin/echo",
        ],
        vec![
            "-v",
            "save",
            "--engine",
            "docker",
            "--engine-bin",
            "/bin/echo",
            "-o",
        ],
    ] {
        let mut t = Test::new().args(&args);
        if args.contains(&"save") {
            t = t.args([&out]);
        }
        t.run().code(2).stderr_has("+ /bin/echo ");
    }
}
