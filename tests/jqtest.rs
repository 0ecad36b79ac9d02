//! jq's own test files (jq.test, man.test from jqlang/jq) run through `imgkit filter`.
//!
//! Prints `FILE: N passed, M failed` for each file and fails when a count drops below the floor
//! recorded here (what imgkit passes today), so compatibility can only go up.
//!
//! The files are jq's, not ours, and are not copied into this repository: they are
//! `tests/jq.test`, `tests/man.test` and `tests/modules/` of jq's repository
//! (https://github.com/jqlang/jq) at commit [`JQ_COMMIT`]. The harness looks in
//! `$IMGKIT_JQTEST_DIR` (point it at jq's `tests/` folder of a checkout of that commit), else
//! `../shared/jqtest` beside the clone. Without them it skips with one line that says how to get
//! them, and fails instead when `CI` is set to a non-empty value.
//! `IMGKIT_JQTEST_VERBOSE=1` lists the failing programs. `IMGKIT_JQTEST_JQ=/path/to/jq` runs
//! the cases through that jq instead (no floors): that commit is jq 1.8.2 plus four commits,
//! newer than the jq 1.7.1 imgkit follows, so jq 1.7.1 itself fails some of its cases.
//!
//! A test passes as in jq's own harness: the outputs equal the expected values (compared as
//! JSON values, so `1.0` equals `1`; where a number is beyond a double's range, `9E+999999999`,
//! the texts must be identical instead), and an error after the last expected output is allowed,
//! so imgkit must exit as jq does there: 0, or 5 after a runtime error. Any other exit (a
//! panic's 101, a signal, a usage error) is a failure even when the output matches.
//! A `%%FAIL` test passes when the program does not compile (exit 3; the message is not
//! compared). A case that runs out of time is retried once, alone, with a longer limit; if it
//! times out again it is counted apart from the failures (and does not pass).

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

/// Passing counts must not drop below these.
const FLOORS: [(&str, usize); 2] = [("jq.test", 540), ("man.test", 231)];
const TIMEOUT: Duration = Duration::from_secs(10);
/// The retry of a case that timed out runs alone, with this limit.
const RETRY_TIMEOUT: Duration = Duration::from_secs(30);
/// The commit of jq's repository the corpus comes from (`jq-1.8.2-4-g579e6f76`: newer than
/// jq 1.7.1, so a few cases test jq 1.8 behaviour).
const JQ_COMMIT: &str = "579e6f76cffd7643ba4002a2c3618a5ea710589a";

/// Why a case did not pass.
#[derive(Debug)]
enum Failure {
    /// The process ran out of time (a loaded machine, or a hang): reported apart.
    TimedOut,
    /// A real failure, with the reason.
    Failed(String),
}

struct Case {
    line: usize,
    program: String,
    input: String,
    expected: Vec<String>,
    must_fail: bool,
}

fn parse(text: &str) -> Vec<Case> {
    let mut cases = Vec::new();
    let mut lines = text.lines().enumerate().peekable();
    while let Some((n, line)) = lines.next() {
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        let block: Vec<&str> =
            std::iter::from_fn(|| lines.next_if(|(_, l)| !l.trim().is_empty()).map(|(_, l)| l))
                .collect();
        if line.starts_with("%%FAIL") {
            let Some((program, _message)) = block.split_first() else {
                continue;
            };
            cases.push(Case {
                line: n + 2,
                program: (*program).to_string(),
                input: String::new(),
                expected: Vec::new(),
                must_fail: true,
            });
        } else {
            let Some((input, expected)) = block.split_first() else {
                continue;
            };
            // As jq's harness: expected outputs end at a comment line (`# Runtime error: …`).
            let expected = expected
                .iter()
                .take_while(|l| !l.trim_start().starts_with('#'))
                .map(ToString::to_string)
                .collect();
            cases.push(Case {
                line: n + 1,
                program: line.to_string(),
                input: (*input).to_string(),
                expected,
                must_fail: false,
            });
        }
    }
    cases
}

/// Numbers compared by value (jq compares `1.0 == 1`).
fn canonical(v: serde_json::Value) -> serde_json::Value {
    use serde_json::Value as J;
    match v {
        J::Number(n) => n
            .as_f64()
            .and_then(serde_json::Number::from_f64)
            .map_or(J::Number(n), J::Number),
        J::Array(a) => J::Array(a.into_iter().map(canonical).collect()),
        J::Object(o) => J::Object(o.into_iter().map(|(k, v)| (k, canonical(v))).collect()),
        other => other,
    }
}

fn values(text: &str) -> Option<Vec<serde_json::Value>> {
    let mut de = serde_json::Deserializer::from_str(text);
    de.disable_recursion_limit();
    de.into_iter::<serde_json::Value>()
        .map(|r| r.ok().map(canonical))
        .collect()
}

/// Runs one case; `Err` says why it failed.
fn run(bin: &Runner, dir: &Path, case: &Case, timeout: Duration) -> Result<(), Failure> {
    run_once(bin, dir, case, timeout).map_err(|why| {
        if why == "timed out" {
            Failure::TimedOut
        } else {
            Failure::Failed(why)
        }
    })
}

/// How a process ended, for messages: `exit N` or `killed by signal N`.
fn describe(status: std::process::ExitStatus) -> String {
    if let Some(code) = status.code() {
        return format!("exit {code}");
    }
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt as _;
        if let Some(signal) = status.signal() {
            return format!("killed by signal {signal}");
        }
    }
    format!("{status}")
}

/// What runs the cases: imgkit (`imgkit filter …`), or a jq binary (`jq …`) to see which
/// cases a given jq release passes itself (`IMGKIT_JQTEST_JQ`).
struct Runner {
    bin: PathBuf,
    /// The subcommand before jq's arguments (`filter` for imgkit, none for jq).
    sub: Option<&'static str>,
}

fn run_once(bin: &Runner, dir: &Path, case: &Case, timeout: Duration) -> Result<(), String> {
    // As jq's own runner (tests/jqtest, tests/mantest): modules from the corpus' modules/.
    let mut child = Command::new(&bin.bin)
        .args(bin.sub)
        .arg("-L")
        .arg(dir.join("modules"))
        .args(["-c", "--", &case.program])
        // As jq's own `tests/mantest`: one man.test case reads `$ENV.PAGER`.
        .env("PAGER", "less")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("spawn: {e}"))?;
    let mut stdin = child.stdin.take().expect("piped stdin");
    let input = case.input.clone();
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(input.as_bytes());
    });
    let mut stdout = child.stdout.take().expect("piped stdout");
    let reader = std::thread::spawn(move || {
        let mut out = String::new();
        let _ = stdout.read_to_string(&mut out);
        out
    });
    let mut stderr = child.stderr.take().expect("piped stderr");
    let err_reader = std::thread::spawn(move || {
        let mut out = String::new();
        let _ = stderr.read_to_string(&mut out);
        out
    });
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
            break status;
        }
        if start.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            return Err("timed out".into());
        }
        std::thread::sleep(Duration::from_millis(2));
    };
    writer.join().expect("stdin writer");
    let out = reader.join().expect("stdout reader");
    let err = err_reader.join().expect("stderr reader");
    let code = status.code();
    if case.must_fail {
        return if code == Some(3) {
            Ok(())
        } else {
            Err(format!("compiled (exit {code:?})"))
        };
    }
    // jq's harness lets a case end in a runtime error after its outputs: jq exits 5 then.
    // Anything else (a panic, a signal, a usage or compile error) fails the case whatever
    // the output.
    if !matches!(code, Some(0 | 5)) {
        return Err(format!(
            "crashed or refused ({}): {}",
            describe(status),
            err.lines().next().unwrap_or("")
        ));
    }
    // Numbers beyond a double's range (jq's decNumber literals, `9E+999999999`) do not parse
    // here: then the texts must be identical, line for line (stricter than jq's value compare).
    let (Some(got), Some(want)) = (values(&out), values(&case.expected.join("\n"))) else {
        let got: Vec<&str> = out.lines().map(str::trim).collect();
        let want: Vec<&str> = case.expected.iter().map(|l| l.trim()).collect();
        return if got == want {
            Ok(())
        } else {
            Err(format!("got {out:?} want {:?}", case.expected))
        };
    };
    if got == want {
        Ok(())
    } else {
        Err(format!(
            "got {out:?} want {:?} {}",
            case.expected,
            err.lines().next().unwrap_or("")
        ))
    }
}

fn locate() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("IMGKIT_JQTEST_DIR").filter(|d| !d.is_empty()) {
        return Some(PathBuf::from(dir));
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    [
        root.join("../shared/jqtest"),
        root.join("../../shared/jqtest"),
    ]
    .into_iter()
    .find(|d| d.join("jq.test").is_file())
}

/// What to say when the corpus is missing, and whether that fails the run: it does when `CI`
/// is set to a non-empty value (`CI=` in a shell does not count).
fn missing_corpus(ci: Option<&std::ffi::OsStr>) -> (bool, String) {
    let what = format!(
        "jq's test corpus not found (jq's files, not copied into this repository: tests/jq.test, \
         tests/man.test and tests/modules/ of https://github.com/jqlang/jq at commit {JQ_COMMIT}); \
         get them with `git clone https://github.com/jqlang/jq && git -C jq checkout {JQ_COMMIT}` \
         and run with IMGKIT_JQTEST_DIR=$PWD/jq/tests"
    );
    if ci.is_some_and(|v| !v.is_empty()) {
        (true, format!("error: {what}"))
    } else {
        (false, format!("skipped: {what}"))
    }
}

/// The harness checks itself before it counts anything, so its verdicts can be trusted: a
/// process that crashes after printing the expected output fails, a slow one times out, and
/// only a non-empty `CI` turns the missing corpus into a failure.
fn self_check() {
    use std::ffi::OsStr;
    assert!(!missing_corpus(None).0, "no CI: skip");
    assert!(!missing_corpus(Some(OsStr::new(""))).0, "CI= is not CI");
    let (fail, line) = missing_corpus(Some(OsStr::new("true")));
    assert!(fail && line.contains(JQ_COMMIT) && line.contains("IMGKIT_JQTEST_DIR"));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let case = Case {
            line: 0,
            program: ".".into(),
            input: "1".into(),
            expected: vec!["1".into()],
            must_fail: false,
        };
        let dir = std::env::temp_dir().join(format!("imgkit-jqtest-self-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let script = |name: &str, body: &str| {
            let path = dir.join(name);
            std::fs::write(&path, format!("#!/bin/sh\ncat >/dev/null\n{body}\n")).expect("write");
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
            path
        };
        let short = Duration::from_secs(2);
        let verdict = |body: &str| {
            let runner = Runner {
                bin: script("bin", body),
                sub: Some("filter"),
            };
            run(&runner, &dir, &case, short)
        };
        assert!(verdict("echo 1").is_ok(), "a clean pass");
        assert!(
            verdict("echo 1; exit 5").is_ok(),
            "a runtime error after the outputs"
        );
        for crash in [
            "echo 1; exit 101",
            "echo 1; kill -SEGV $$",
            "echo 1; exit 2",
        ] {
            let r = verdict(crash);
            assert!(
                matches!(&r, Err(Failure::Failed(why)) if why.contains("crashed")),
                "{crash}: {r:?}"
            );
        }
        assert!(matches!(
            verdict("echo 1; exec sleep 5"),
            Err(Failure::TimedOut)
        ));
        let _ = std::fs::remove_dir_all(&dir);
    }
}

fn main() -> ExitCode {
    self_check();
    let Some(dir) = locate() else {
        let (fail, line) = missing_corpus(std::env::var_os("CI").as_deref());
        if fail {
            eprintln!("{line}");
            return ExitCode::FAILURE;
        }
        println!("{line}");
        return ExitCode::SUCCESS;
    };
    // IMGKIT_JQTEST_JQ=/path/to/jq runs the corpus through that jq instead, with no floors: how
    // many cases a jq release passes itself (the corpus is newer than jq 1.7.1).
    let other_jq = std::env::var_os("IMGKIT_JQTEST_JQ").filter(|j| !j.is_empty());
    let bin = match &other_jq {
        Some(jq) => Runner {
            bin: PathBuf::from(jq),
            sub: None,
        },
        None => Runner {
            bin: PathBuf::from(env!("CARGO_BIN_EXE_imgkit")),
            sub: Some("filter"),
        },
    };
    let verbose = std::env::var_os("IMGKIT_JQTEST_VERBOSE").is_some();
    let mut ok = true;
    for (file, floor) in FLOORS {
        let text = match std::fs::read_to_string(dir.join(file)) {
            Ok(text) => text,
            Err(e) => {
                eprintln!("error: cannot read {}: {e}", dir.join(file).display());
                return ExitCode::FAILURE;
            }
        };
        let cases = parse(&text);
        let mut results: Vec<Result<(), Failure>> = std::thread::scope(|s| {
            let chunks: Vec<&[Case]> = cases.chunks(cases.len().div_ceil(2).max(1)).collect();
            let handles: Vec<_> = chunks
                .into_iter()
                .map(|chunk| {
                    // Deeply nested outputs (jq tests 10,000 levels) need a big stack to compare.
                    std::thread::Builder::new()
                        .stack_size(1 << 28)
                        .spawn_scoped(s, || {
                            chunk
                                .iter()
                                .map(|c| run(&bin, &dir, c, TIMEOUT))
                                .collect::<Vec<_>>()
                        })
                        .expect("spawn runner thread")
                })
                .collect();
            handles
                .into_iter()
                .flat_map(|h| h.join().expect("runner thread"))
                .collect()
        });
        // A timeout may be the machine's load, not imgkit: retry each once, alone, with more time.
        for (case, r) in cases.iter().zip(results.iter_mut()) {
            if matches!(r, Err(Failure::TimedOut)) {
                *r = std::thread::scope(|s| {
                    std::thread::Builder::new()
                        .stack_size(1 << 28)
                        .spawn_scoped(s, || run(&bin, &dir, case, RETRY_TIMEOUT))
                        .expect("spawn runner thread")
                        .join()
                        .expect("runner thread")
                });
            }
        }
        let passed = results.iter().filter(|r| r.is_ok()).count();
        let timed_out = results
            .iter()
            .filter(|r| matches!(r, Err(Failure::TimedOut)))
            .count();
        let failed = results.len() - passed - timed_out;
        if verbose {
            for (case, r) in cases.iter().zip(&results) {
                match r {
                    Ok(()) => {}
                    Err(Failure::Failed(why)) => {
                        println!("{file}:{}: {}\n    {why}", case.line, case.program);
                    }
                    Err(Failure::TimedOut) => println!(
                        "{file}:{}: {}\n    timed out twice ({}s, then {}s alone)",
                        case.line,
                        case.program,
                        TIMEOUT.as_secs(),
                        RETRY_TIMEOUT.as_secs()
                    ),
                }
            }
        }
        if timed_out == 0 {
            println!("{file}: {passed} passed, {failed} failed");
        } else {
            println!(
                "{file}: {passed} passed, {failed} failed, {timed_out} timed out twice (not failures of imgkit's output, not passes either)"
            );
        }
        if passed < floor && other_jq.is_none() {
            eprintln!("error: {file}: {passed} passed, below the floor of {floor}");
            if timed_out > 0 {
                eprintln!(
                    "note: {timed_out} case(s) timed out twice; a loaded machine can do that, IMGKIT_JQTEST_VERBOSE=1 names them"
                );
            }
            ok = false;
        }
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
