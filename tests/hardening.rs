//! Hardening (issue 17, and the output-path items of issue 20), end to end: what a person sees
//! (`imgkit explain CODE`, typo hints, errors that never quote a file, argv a shell can paste
//! back), output paths that are not regular files, engine output that breaks every bound (the
//! stand-in engine under tests/fixtures), signals and SIGKILL mid-transfer, and load on the real
//! engines (16 concurrent runs into one podman and one containerd namespace, 50 concurrent
//! listings per engine).
#![cfg(unix)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::transfer::{
    DOCKER_DST, Engines, big_image, ctr, docker_images, engines, fresh_podman, kv, lock, output,
    src_podman, temp_of, write_filter,
};
use crate::util::{Run, Test, bin};

macro_rules! need_engines {
    () => {
        match engines() {
            Some(e) => e,
            None => {
                eprintln!(
                    "skipped: needs real engines; run scripts/test, which sets IMGKIT_ENGINES_DIR and IMGKIT_TRANSFER_DST"
                );
                return;
            }
        }
    };
}

fn fake_engine() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/fake-engine")
}

/// The `more: imgkit explain IKnnn` code of a rendered error.
fn code_in(stderr: &str) -> Option<String> {
    stderr
        .lines()
        .find_map(|l| l.trim().strip_prefix("more: imgkit explain "))
        .map(str::to_owned)
}

// ---------------------------------------------------------------------------------------------
// What a person sees

#[test]
fn explain_prints_each_entry_from_the_binary() {
    let list = Test::new().arg("explain").run().success().stdout;
    let codes: Vec<&str> = list
        .lines()
        .map(|l| l.split_whitespace().next().unwrap())
        .collect();
    assert!(codes.len() > 30, "{list}");
    let doc = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/troubleshooting.md"),
    )
    .unwrap();
    for code in &codes {
        let run = Test::new().args(["explain", code]).run().success();
        assert!(
            run.stdout.starts_with(&format!("{code}: ")),
            "{}",
            run.stdout
        );
        assert!(run.stdout.contains("- "), "{code} has no cause or fix");
        assert!(!run.stdout.contains("<!--"), "{code} shows its patterns");
        assert!(doc.contains(&format!("### {code}: ")));
    }
    Test::new()
        .args(["explain", "ik305"])
        .run()
        .success()
        .stdout_has("it is a directory");
    let run = Test::new().args(["explain", "IK999"]).run().code(2);
    assert_eq!(
        code_in(&run.stderr).as_deref(),
        Some("IK001"),
        "{}",
        run.stderr
    );
}

#[test]
fn every_error_with_a_hint_names_its_explain_entry() {
    let tmp = tempfile::tempdir().unwrap();
    let passwd = tmp.path().join("passwd");
    std::fs::write(&passwd, "root:x:0:0:root:/root:/bin/bash\n".repeat(30)).unwrap();
    let p = |x: &Path| x.display().to_string();
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec![
                "ls".into(),
                "--engine".into(),
                "docker".into(),
                "--engine-bin".into(),
                "/nonexistent/docker".into(),
            ],
            "IK102",
        ),
        (
            vec!["ls".into(), "--engine-bin".into(), "/bin/true".into()],
            "IK103",
        ),
        (
            vec!["filter".into(), "-f".into(), "/nonexistent/x.jq".into()],
            "IK201",
        ),
        // (`filter` without a program, IK211, needs a terminal: with piped input it runs `.`,
        // as jq does; tests/jqcli.rs covers that.)
        (vec!["run".into(), "--from".into(), "dockr".into()], "IK310"),
        (
            vec![
                "run".into(),
                "--from".into(),
                "docker".into(),
                "--to".into(),
                "docker".into(),
            ],
            "IK309",
        ),
        (vec!["ls".into(), "--from".into(), p(&passwd)], "IK401"),
        (vec!["verify".into(), p(&passwd)], "IK401"),
        (vec!["inspect".into(), p(&passwd)], "IK401"),
        (
            vec!["ls".into(), "--from".into(), "/nonexistent/x.tar".into()],
            "IK410",
        ),
        (
            vec![
                "run".into(),
                "--from".into(),
                "examples/images.tar".into(),
                "--to".into(),
                p(tmp.path()),
            ],
            "IK305",
        ),
        (
            vec![
                "save".into(),
                "--engine".into(),
                "docker".into(),
                "-o".into(),
                p(&tmp.path().join("no/such/dir/x.tar")),
            ],
            "IK305",
        ),
        (vec!["explain".into(), "IK000".into()], "IK001"),
    ];
    for (args, want) in cases {
        let run = Test::new()
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .args(&args)
            .stdin(Vec::new())
            .run()
            .code(2);
        assert!(run.stderr.contains("hint:"), "{args:?}: {}", run.stderr);
        assert_eq!(
            code_in(&run.stderr).as_deref(),
            Some(want),
            "{args:?}: {}",
            run.stderr
        );
        assert!(!run.stderr.contains("github.com"), "{}", run.stderr);
        // The same code with --json.
        let json = Test::new()
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .arg("--json")
            .args(&args)
            .run()
            .code(2);
        let v: serde_json::Value = serde_json::from_str(json.stderr.trim()).unwrap();
        assert_eq!(v["code"], want, "{args:?}: {}", json.stderr);
    }
    let cargo =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml")).unwrap();
    assert!(!cargo.contains("github.com/imgkit/imgkit"));
}

#[test]
fn a_typo_of_an_engine_name_says_which_engine() {
    let tmp = tempfile::tempdir().unwrap();
    for (spec, want) in [
        ("dockr", "did you mean `docker`?"),
        ("pdoman", "did you mean `podman`?"),
        ("crt:k8s.io", "did you mean `ctr:k8s.io`?"),
    ] {
        Test::new()
            .current_dir(tmp.path())
            .args(["run", "--from", spec, "--to", "x.tar"])
            .run()
            .code(2)
            .stderr_has(&format!(
                "--from {spec} is neither an engine nor an existing file"
            ))
            .stderr_has(want);
        Test::new()
            .current_dir(tmp.path())
            .args(["run", "--from", "x.tar", "--to", spec])
            .run()
            .code(2)
            .stderr_has(want);
    }
    // A file of that name is a file.
    std::fs::write(tmp.path().join("dockr"), b"not an archive").unwrap();
    let run = Test::new()
        .current_dir(tmp.path())
        .args(["run", "--from", "dockr", "--to", "x.tar"])
        .run()
        .code(2);
    assert!(!run.stderr.contains("did you mean"), "{}", run.stderr);
}

#[test]
fn errors_never_quote_a_files_contents() {
    let tmp = tempfile::tempdir().unwrap();
    let secret = "root:x:0:0:SECRET-8d1f:/root:/bin/bash\n";
    let text = tmp.path().join("passwd");
    std::fs::write(&text, secret.repeat(40)).unwrap();
    // A real tar member, then the same text where the next header should be.
    let damaged = tmp.path().join("damaged.tar");
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_ustar();
    h.set_size(3);
    h.set_mode(0o644);
    h.set_cksum();
    b.append_data(&mut h, "a.txt", &b"abc"[..]).unwrap();
    let mut bytes = b.into_inner().unwrap();
    bytes.truncate(1024);
    bytes.extend(secret.repeat(40).as_bytes());
    std::fs::write(&damaged, &bytes).unwrap();
    for (file, what) in [
        (&text, "not an image archive: no tar header at byte 0"),
        (
            &damaged,
            "the block after member \"a.txt\" is not a tar header",
        ),
    ] {
        for args in [
            vec!["ls", "--from"],
            vec!["verify"],
            vec!["inspect"],
            vec!["run", "--to", "/dev/null", "--from"],
        ] {
            let run = Test::new().args(&args).arg(file).run().code(2);
            assert!(
                !run.stderr.contains("SECRET") && !run.stderr.contains("root:x"),
                "{args:?} quoted the file: {}",
                run.stderr
            );
            assert!(run.stderr.contains(what), "{args:?}: {}", run.stderr);
        }
    }
}

/// A POSIX shell reads `; & | < > * ? ( ) $ \`` outside quotes as operators, globs or
/// expansions: in a line meant for pasting, each must be inside single quotes or escaped.
fn assert_no_bare_metacharacters(line: &str) {
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                for q in chars.by_ref() {
                    if q == '\'' {
                        break;
                    }
                }
            }
            '\\' => {
                chars.next();
            }
            ';' | '&' | '|' | '<' | '>' | '*' | '?' | '(' | ')' | '$' | '`' | '"' => {
                panic!("{c:?} outside quotes in {line}")
            }
            _ => {}
        }
    }
}

/// The command a POSIX shell would run for `line` pasted into it: the words as an independent
/// POSIX word splitter (shlex) reads them, run without a shell.
fn pasted_command(line: &str) -> Command {
    assert_no_bare_metacharacters(line);
    let words = shlex::split(line).unwrap_or_else(|| panic!("not POSIX shell words: {line}"));
    let (program, args) = words.split_first().expect("a command line with a program");
    let mut c = Command::new(program);
    c.args(args);
    c
}

#[test]
fn verbose_and_dry_run_command_lines_paste_back_into_a_shell() {
    let e = need_engines!();
    let tmp = tempfile::tempdir().unwrap();
    // An engine binary whose path needs quoting: `;`, `&`, `|`, `*`, `?`, `<`, `>` (and no
    // space or quote, which the old display quoted already).
    let dir = tmp.path().join("bin;x&y|z*?<a>");
    std::fs::create_dir(&dir).unwrap();
    let docker_bin = dir.join("docker");
    std::fs::copy(fake_engine(), &docker_bin).unwrap();
    let host = e.src.var("DOCKER_HOST");
    let run = Test::new()
        .env("IMGKIT_DOCKER_BIN", &docker_bin)
        .env("IMGKIT_DOCKER_VIA", "cli")
        .env("IMGKIT_FAKE_REAL", crate::util::docker_bin())
        .env("DOCKER_HOST", host)
        .args(["-v", "ls", "--engine", "docker"])
        .run()
        .success();
    let line = run
        .stderr
        .lines()
        .find_map(|l| l.strip_prefix("+ "))
        .unwrap_or_else(|| panic!("no command line in {}", run.stderr));
    let pasted = pasted_command(line)
        .env("IMGKIT_FAKE_REAL", crate::util::docker_bin())
        .env("DOCKER_HOST", host)
        .output()
        .unwrap();
    assert!(
        pasted.status.success(),
        "{line}: {}",
        String::from_utf8_lossy(&pasted.stderr)
    );
    assert!(String::from_utf8_lossy(&pasted.stdout).contains("seed/app"));

    let filter = write_filter(
        tmp.path(),
        r#"select(.Repository == "seed/base") | .Repository + ":" + .Tag"#,
    );
    let run = Test::new()
        .env("IMGKIT_DOCKER_BIN", &docker_bin)
        .env("IMGKIT_DOCKER_VIA", "cli")
        .env("IMGKIT_FAKE_REAL", crate::util::docker_bin())
        .env("DOCKER_HOST", host)
        .args(["run", "--from", "docker", "--dry-run", "--to"])
        .arg(tmp.path().join("x.tar"))
        .arg("-f")
        .arg(&filter)
        .run()
        .success();
    let line = run
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("save: "))
        .unwrap_or_else(|| panic!("no save line in {}", run.stdout));
    let pasted = pasted_command(line)
        .env("IMGKIT_FAKE_REAL", crate::util::docker_bin())
        .env("DOCKER_HOST", host)
        .output()
        .unwrap();
    let bytes = pasted.stdout.len();
    assert!(
        bytes > 10_000,
        "{line}: {}",
        String::from_utf8_lossy(&pasted.stderr)
    );
}

// ---------------------------------------------------------------------------------------------
// Output paths

#[test]
fn a_device_node_or_fifo_output_is_written_in_place() {
    use std::os::unix::fs::FileTypeExt;
    let tmp = tempfile::tempdir().unwrap();
    let archive = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/images.tar");
    let sel = write_filter(
        tmp.path(),
        r#"select(.Tag != "<none>") | .Repository + ":" + .Tag"#,
    );
    // A copy of /dev/null made with mknod in a temp dir, never the machine's own /dev.
    let null = tmp.path().join("null");
    let made = Command::new("mknod")
        .arg(&null)
        .args(["c", "1", "3"])
        .status()
        .is_ok_and(|s| s.success());
    if made {
        Test::new()
            .arg("run")
            .arg("--from")
            .arg(&archive)
            .arg("--to")
            .arg(&null)
            .arg("-f")
            .arg(&sel)
            .run()
            .success();
        let t = std::fs::symlink_metadata(&null).unwrap().file_type();
        assert!(t.is_char_device(), "the device node was replaced: {t:?}");
    } else {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI runs as root: mknod must work"
        );
        eprintln!("skipped the device half: mknod needs root");
    }
    let fifo = tmp.path().join("pipe");
    assert!(
        Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    let reader = {
        let fifo = fifo.clone();
        std::thread::spawn(move || std::fs::read(fifo).unwrap())
    };
    Test::new()
        .arg("run")
        .arg("--from")
        .arg(&archive)
        .arg("--to")
        .arg(&fifo)
        .arg("-f")
        .arg(&sel)
        .run()
        .success();
    let t = std::fs::symlink_metadata(&fifo).unwrap().file_type();
    assert!(t.is_fifo(), "the FIFO was replaced: {t:?}");
    let got = reader.join().unwrap();
    assert!(got.len() > 10_000 && got.len() % 512 == 0, "{}", got.len());
    let names: Vec<String> = std::fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with("partial"))
        .collect();
    assert!(names.is_empty(), "{names:?}");
}

/// The stand-in engine in front of the seeded docker, logging every argv.
fn logged(e: &Engines, dir: &Path, args: &[&str]) -> (Run, String) {
    let log = dir.join("engine.log");
    let _ = std::fs::remove_file(&log);
    let run = Test::new()
        .current_dir(dir)
        .env("IMGKIT_DOCKER_BIN", fake_engine())
        .env("IMGKIT_DOCKER_VIA", "cli")
        .env("IMGKIT_FAKE_REAL", crate::util::docker_bin())
        .env("IMGKIT_FAKE_LOG", &log)
        .env("DOCKER_HOST", e.src.var("DOCKER_HOST"))
        .args(args)
        .run();
    (run, std::fs::read_to_string(&log).unwrap_or_default())
}

#[test]
fn a_directory_as_output_fails_before_any_engine_runs() {
    let e = need_engines!();
    let tmp = tempfile::tempdir().unwrap();
    std::fs::create_dir(tmp.path().join("out")).unwrap();
    write_filter(
        tmp.path(),
        r#"select(.Repository == "seed/base") | .Repository + ":" + .Tag"#,
    );
    for args in [
        &["run", "--from", "docker", "-f", "select.jq", "--to", "out"][..],
        &["save", "--engine", "docker", "-f", "select.jq", "-o", "out"],
        &[
            "run",
            "--from",
            "docker",
            "-f",
            "select.jq",
            "--to",
            "x.tar",
            "--via",
            "out",
        ],
        &[
            "run",
            "--from",
            "docker",
            "-f",
            "select.jq",
            "--to",
            "missing/x.tar",
        ],
    ] {
        let (run, log) = logged(e, tmp.path(), args);
        run.code(2)
            .stderr_has("cannot write an archive to")
            .stderr_has("hint:");
        assert!(log.is_empty(), "{args:?}: the engine ran: {log}");
    }
    let (run, log) = logged(
        e,
        tmp.path(),
        &[
            "run",
            "--from",
            "docker",
            "-f",
            "select.jq",
            "--to",
            "out/x.tar",
        ],
    );
    run.success();
    assert!(log.contains("save"), "the control run did not save: {log}");
}

// ---------------------------------------------------------------------------------------------
// Engine output bounds

/// Runs imgkit under GNU time; its exit code, stderr (without time's line) and peak RSS in KiB.
fn measured(cmd: &mut Command) -> (Option<i32>, String, u64) {
    let out = cmd.output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let (rest, last) = stderr
        .trim_end()
        .rsplit_once('\n')
        .unwrap_or(("", stderr.trim_end()));
    let kib = last
        .strip_prefix("maxrss=")
        .and_then(|k| k.trim().parse().ok())
        .unwrap_or_else(|| panic!("no maxrss in {stderr}"));
    (out.status.code(), rest.to_owned(), kib)
}

fn timed_imgkit() -> Command {
    let time = crate::util::on_path("time")
        .expect("GNU time on PATH (Debian's `time` package, which scripts/test installs)");
    let mut c = Command::new(time);
    c.args(["-f", "maxrss=%M"])
        .arg(bin())
        .env("NO_COLOR", "1")
        .stdin(Stdio::null());
    c
}

#[test]
fn engine_output_that_breaks_a_bound_is_refused_with_flat_memory() {
    // What `imgkit ls` costs when the engine prints one short line: the floods may add their
    // bound (32 MiB of lines) and a little, never a second copy of it.
    let (_, _, base) = measured(
        timed_imgkit()
            .args(["ls", "--engine", "docker"])
            .env("IMGKIT_DOCKER_BIN", fake_engine())
            .env("IMGKIT_DOCKER_VIA", "cli")
            .env("IMGKIT_FAKE_FAULT", "list-not-utf8"),
    );
    for (fault, want) in [
        ("list-flood-line", "line 1 is longer than 1 MiB"),
        ("list-flood-lines", "it printed more than 32 MiB"),
        ("list-not-utf8", "line 1 is not UTF-8 text"),
        ("stderr-flood", "failed"),
    ] {
        let start = Instant::now();
        let (code, stderr, kib) = measured(
            timed_imgkit()
                .args(["ls", "--engine", "docker"])
                .env("IMGKIT_DOCKER_BIN", fake_engine())
                .env("IMGKIT_DOCKER_VIA", "cli")
                .env("IMGKIT_FAKE_FAULT", fault),
        );
        eprintln!("{fault}: peak {kib} KiB, {:?}", start.elapsed());
        assert_eq!(code, Some(2), "{fault}: {stderr}");
        assert!(stderr.contains(want), "{fault}: {stderr}");
        assert!(
            stderr.len() < 8192,
            "{fault}: {} bytes of error",
            stderr.len()
        );
        assert!(
            kib < base + 44 * 1024,
            "{fault}: peak {kib} KiB, {base} KiB for one line"
        );
        if fault.starts_with("list-") {
            assert_eq!(code_in(&stderr).as_deref(), Some("IK111"), "{stderr}");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Signals mid-transfer

#[test]
fn sigterm_mid_transfer_takes_the_ctrl_c_path() {
    crate::transfer::interrupt_mid_transfer("-TERM");
}

#[test]
fn sighup_mid_transfer_takes_the_ctrl_c_path() {
    crate::transfer::interrupt_mid_transfer("-HUP");
}

#[test]
fn sigkill_mid_transfer_then_the_same_run_completes_and_cleans_up() {
    let e = need_engines!();
    let _guard = lock(&DOCKER_DST);
    let big = big_image(e);
    let host = e.dst.var("DOCKER_HOST");
    let want_id = docker_images(host)[big].clone();
    let tmp = tempfile::tempdir().unwrap();
    let env = fresh_podman(tmp.path());
    let filter = write_filter(
        tmp.path(),
        &format!("select(.Repository + \":\" + .Tag == \"{big}\") | \"{big}\""),
    );
    let command = || {
        let mut c = Command::new(bin());
        c.args([
            "run", "--from", "docker", "--to", "podman", "--via", "via.tar", "-f",
        ])
        .arg(&filter)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .env("DOCKER_HOST", host)
        .env("IMGKIT_DOCKER_BIN", crate::util::docker_bin())
        .env("NO_COLOR", "1")
        .current_dir(tmp.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
        c
    };
    let mut child = command().spawn().unwrap();
    let deadline = Instant::now() + Duration::from_mins(1);
    let temp = loop {
        if let Some(t) = temp_of(tmp.path(), "via.tar")
            && std::fs::metadata(&t).map_or(0, |m| m.len()) > 1_000_000
        {
            break t;
        }
        assert!(Instant::now() < deadline, "no bytes flowed within 60 s");
        assert!(child.try_wait().unwrap().is_none(), "imgkit ended first");
        std::thread::sleep(Duration::from_millis(20));
    };
    child.kill().unwrap(); // SIGKILL: no cleanup runs.
    child.wait().unwrap();
    assert!(
        temp.exists(),
        "a killed run cannot clean up; the temporary must be recognisable"
    );
    // The orphaned load sees its input end early and must keep nothing; give it a moment.
    std::thread::sleep(Duration::from_secs(2));

    let out = command().output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(!temp.exists(), "the stale temporary is still there");
    assert_eq!(temp_of(tmp.path(), "via.tar"), None);
    Test::new()
        .arg("verify")
        .arg(tmp.path().join("via.tar"))
        .run()
        .success();
    let images = crate::transfer::podman_images(&env);
    let named: Vec<_> = images
        .iter()
        .filter(|(n, _)| n.ends_with(&format!("/{big}")) || *n == big)
        .collect();
    assert_eq!(named.len(), 1, "{images:?}");
    assert_eq!(named[0].1, &want_id);
}

// ---------------------------------------------------------------------------------------------
// Load on the real engines

/// What the concurrent runs select, with the seeded IDs (`seed/many:v1` is seed/app's image).
fn load_refs(e: &Engines) -> Vec<(&'static str, String)> {
    vec![
        ("seed/app:1.0", e.src.seed["SEED_APP_ID"].clone()),
        ("seed/base:1.0", e.src.seed["SEED_BASE_ID"].clone()),
        ("seed/multi:latest", e.src.seed["SEED_MULTI_ID"].clone()),
        ("seed/many:v1", e.src.seed["SEED_APP_ID"].clone()),
        ("seed/many:v2", e.src.seed["SEED_APP_ID"].clone()),
    ]
}

/// 16 runs from the seeded docker into `to` at once, run `i` selecting refs `i` and `i+1`
/// (mod 5), the even ones also keeping `shared.tar` (the same file for all of them).
fn sixteen_runs(e: &Engines, dir: &Path, to: &str, env: &[(String, String)]) {
    let refs = load_refs(e);
    let mut children = Vec::new();
    for i in 0..16 {
        let first = refs[i % refs.len()].0;
        let second = refs[(i + 1) % refs.len()].0;
        let filter = dir.join(format!("sel{i}.jq"));
        std::fs::write(
            &filter,
            format!(
                "(.Repository + \":\" + .Tag) as $n | select($n == \"{first}\" or $n == \"{second}\") | $n"
            ),
        )
        .unwrap();
        let mut c = Command::new(bin());
        c.args(["run", "--from", "docker", "--to", to, "-f"])
            .arg(&filter)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .env("DOCKER_HOST", e.src.var("DOCKER_HOST"))
            .env("IMGKIT_DOCKER_BIN", crate::util::docker_bin())
            .env("NO_COLOR", "1")
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if i % 2 == 0 {
            // --force: runs take turns, and a later run finds its images already there and
            // streams nothing; these always stream, so every one of them writes shared.tar.
            c.args(["--via", "shared.tar", "--force"]);
        }
        children.push(c.spawn().unwrap());
    }
    let mut failed = 0;
    for c in children {
        let out = c.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        match out.status.code() {
            Some(0) => {}
            Some(2) => {
                failed += 1;
                assert!(
                    stderr.contains("\nerror: ") || stderr.starts_with("error: "),
                    "exit 2 without an error line: {stderr}"
                );
                assert!(!stderr.contains("panicked"), "{stderr}");
                // Runs sharing one output file never trip over each other's temporaries.
                assert!(
                    !stderr.contains("shared.tar"),
                    "a run failed on the shared output: {stderr}"
                );
            }
            other => panic!("exit {other:?}: {stderr}"),
        }
    }
    eprintln!("16 concurrent runs into {to}: {failed} failed with a clear error");
    // Runs into one store take turns (a lock per store), so none fails on another's load, and
    // none removes what another loaded as if it were its own failed load's leftovers.
    assert_eq!(failed, 0, "16 concurrent runs into {to}: {failed} failed");
    // `shared.tar` is one run's complete archive, and no temporary is left.
    Test::new()
        .arg("verify")
        .arg(dir.join("shared.tar"))
        .run()
        .success();
    let left: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with("partial"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn sixteen_concurrent_runs_into_one_podman() {
    let e = need_engines!();
    let tmp = tempfile::tempdir().unwrap();
    let env = fresh_podman(tmp.path());
    sixteen_runs(e, tmp.path(), "podman", &env);
    let mut c = Command::new("podman");
    c.args([
        "images",
        "--no-trunc",
        "--format",
        "{{.Repository}}:{{.Tag}} {{.ID}}",
    ])
    .envs(env.iter().map(|(k, v)| (k, v)));
    let listing = output(&mut c);
    for (r, id) in load_refs(e) {
        let full = format!("docker.io/{r}");
        let rows: Vec<&str> = listing
            .lines()
            .filter(|l| {
                l.split(' ')
                    .next()
                    .is_some_and(|n| n == full || n.ends_with(&format!("/{r}")))
            })
            .collect();
        assert_eq!(rows.len(), 1, "{r}: {listing}");
        assert!(rows[0].starts_with(&full), "{r}: {listing}");
        assert!(
            id.ends_with(
                rows[0]
                    .rsplit(' ')
                    .next()
                    .unwrap()
                    .trim_start_matches("sha256:")
            ),
            "{r}: {listing}"
        );
    }
}

#[test]
fn sixteen_concurrent_runs_into_one_containerd_namespace() {
    let e = need_engines!();
    let tmp = tempfile::tempdir().unwrap();
    let addr = e.dst.var("CONTAINERD_ADDRESS");
    let ns = "hardening-load";
    let _ = ctr(addr, ns).args(["namespaces", "create", ns]).output();
    crate::transfer::empty_ctr(addr, ns);
    let env = vec![kv("CONTAINERD_ADDRESS", addr)];
    sixteen_runs(e, tmp.path(), &format!("ctr:{ns}"), &env);
    let images = crate::transfer::ctr_images(addr, ns);
    for (r, id) in load_refs(e) {
        let full = format!("docker.io/{r}");
        let rows: Vec<_> = images
            .iter()
            .filter(|(n, _)| n.ends_with(&format!("/{r}")))
            .collect();
        assert_eq!(rows.len(), 1, "{r}: {images:?}");
        assert_eq!(rows[0].0, &full);
        assert_eq!(rows[0].1, &id, "{r}");
    }
    crate::transfer::empty_ctr(addr, ns);
}

#[test]
fn fifty_concurrent_listings_per_engine_all_succeed_with_flat_memory() {
    let e = need_engines!();
    let mut engines: Vec<(&str, Vec<(String, String)>)> = vec![
        (
            "docker",
            vec![
                kv("DOCKER_HOST", e.src.var("DOCKER_HOST")),
                kv(
                    "IMGKIT_DOCKER_BIN",
                    &crate::util::docker_bin().to_string_lossy(),
                ),
            ],
        ),
        (
            "ctr",
            vec![kv("CONTAINERD_ADDRESS", e.src.var("CONTAINERD_ADDRESS"))],
        ),
    ];
    engines.push(("podman", src_podman(e)));
    let mut report = BTreeMap::new();
    for (engine, env) in &engines {
        let runs: Vec<_> = (0..50)
            .map(|_| {
                let mut c = timed_imgkit();
                c.args(["ls", "--all", "--engine", engine])
                    .args(if *engine == "ctr" {
                        &["-n", "k8s.io"][..]
                    } else {
                        &[]
                    })
                    .envs(env.iter().map(|(k, v)| (k, v)))
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped());
                c.spawn().unwrap()
            })
            .collect();
        let mut listings = Vec::new();
        let mut peaks = Vec::new();
        for c in runs {
            let out = c.wait_with_output().unwrap();
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(0), "{engine}: {stderr}");
            let kib: u64 = stderr
                .trim_end()
                .rsplit_once("maxrss=")
                .map(|(_, k)| k.trim().parse().unwrap())
                .unwrap();
            peaks.push(kib);
            // The same set each time (docker orders images created in the same second freely).
            let mut lines: Vec<String> = String::from_utf8_lossy(&out.stdout)
                .lines()
                .map(str::to_owned)
                .collect();
            lines.sort();
            listings.push(lines);
        }
        assert!(
            listings.iter().all(|l| *l == listings[0] && !l.is_empty()),
            "{engine}: listings differ"
        );
        let (min, max) = (*peaks.iter().min().unwrap(), *peaks.iter().max().unwrap());
        report.insert(*engine, (min, max));
        assert!(max < 64 * 1024, "{engine}: a listing took {max} KiB");
        assert!(max <= min * 2, "{engine}: peaks from {min} to {max} KiB");
    }
    eprintln!("peak RSS per `imgkit ls` (KiB, min..max over 50 concurrent runs): {report:?}");
}
