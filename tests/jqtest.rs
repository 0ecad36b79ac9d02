//! jq's own test files (jq.test, man.test from jqlang/jq) run through `imgkit filter`.
//!
//! Prints `FILE: N passed, M failed` for each file and fails when a count drops below the floor
//! recorded here (what imgkit passes today), so compatibility can only go up.
//!
//! The files live outside the repository: `$IMGKIT_JQTEST_DIR`, else `../shared/jqtest` beside
//! the clone. `IMGKIT_JQTEST_VERBOSE=1` lists the failing programs.
//!
//! A test passes as in jq's own harness: the outputs equal the expected values (compared as
//! JSON values, so `1.0` equals `1`), and an error after the last expected output is allowed.
//! A `%%FAIL` test passes when the program does not compile (the message is not compared).

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

/// Passing counts must not drop below these.
const FLOORS: [(&str, usize); 2] = [("jq.test", 512), ("man.test", 228)];
const TIMEOUT: Duration = Duration::from_secs(10);

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
fn run(bin: &Path, case: &Case) -> Result<(), String> {
    let mut child = Command::new(bin)
        .args(["filter", "-c", "--", &case.program])
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
        if start.elapsed() > TIMEOUT {
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
    if code == Some(3) || code == Some(2) {
        return Err(format!(
            "exit {code:?}: {}",
            err.lines().next().unwrap_or("")
        ));
    }
    let got = values(&out).ok_or_else(|| format!("unparsable output {out:?}"))?;
    let want = values(&case.expected.join("\n"))
        .ok_or_else(|| format!("unparsable expectation {:?}", case.expected))?;
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
    if let Some(dir) = std::env::var_os("IMGKIT_JQTEST_DIR") {
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

fn main() -> ExitCode {
    let Some(dir) = locate() else {
        let msg = "jq's test files not found: set IMGKIT_JQTEST_DIR to a folder with jq.test and man.test";
        if std::env::var_os("CI").is_some() {
            eprintln!("error: {msg}");
            return ExitCode::FAILURE;
        }
        println!("skipped: {msg}");
        return ExitCode::SUCCESS;
    };
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_imgkit"));
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
        let results: Vec<Result<(), String>> = std::thread::scope(|s| {
            let chunks: Vec<&[Case]> = cases.chunks(cases.len().div_ceil(2).max(1)).collect();
            let handles: Vec<_> = chunks
                .into_iter()
                .map(|chunk| {
                    // Deeply nested outputs (jq tests 10,000 levels) need a big stack to compare.
                    std::thread::Builder::new()
                        .stack_size(1 << 28)
                        .spawn_scoped(s, || chunk.iter().map(|c| run(&bin, c)).collect::<Vec<_>>())
                        .expect("spawn runner thread")
                })
                .collect();
            handles
                .into_iter()
                .flat_map(|h| h.join().expect("runner thread"))
                .collect()
        });
        let passed = results.iter().filter(|r| r.is_ok()).count();
        if verbose {
            for (case, r) in cases.iter().zip(&results) {
                if let Err(why) = r {
                    println!("{file}:{}: {}\n    {why}", case.line, case.program);
                }
            }
        }
        println!("{file}: {passed} passed, {} failed", results.len() - passed);
        if passed < floor {
            eprintln!("error: {file}: {passed} passed, below the floor of {floor}");
            ok = false;
        }
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
