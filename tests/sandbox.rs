//! The plugin sandbox's time limit covers host calls: a plugin that sleeps, or waits on a stdin
//! that never ends, is stopped at `--plugin-timeout` with the deadline error naming the call,
//! in `imgkit filter` and as the last filter of `imgkit run` (which then saves and loads
//! nothing). The per-import cases are in crates/imgkit-plugin/tests/sandbox.rs.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::util::bin;

/// The short time limit the cases run with, and what a run may take on top of it (process
/// start, loading the plugin, shutting down).
const TIMEOUT: &str = "500ms";
const DEADLINE: Duration = Duration::from_millis(500);
const GRACE: Duration = Duration::from_secs(1);
/// `imgkit filter --plugin`: a run that failed.
const RUN_FAILED: i32 = 5;
const LISTING: &str = include_str!("../examples/listing.jsonl");

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn fixture(name: &str) -> PathBuf {
    root().join("tests/fixtures/plugins/sandbox").join(name)
}

struct Ended {
    code: Option<i32>,
    stderr: String,
    took: Duration,
}

/// Runs imgkit with `args`; its stdin gets `input` and is then closed, or (`None`) stays open
/// and silent until imgkit has exited. Kills it if it is still running after 20 s.
fn imgkit(args: &[&std::ffi::OsStr], input: Option<&str>) -> Ended {
    // The module cache shared with tests/plugin.rs: a module compiles once per target dir.
    let cache = Path::new(env!("CARGO_BIN_EXE_imgkit"))
        .ancestors()
        .nth(2)
        .expect("target dir")
        .join("plugin-test-cache");
    let started = Instant::now();
    let mut child: Child = Command::new(bin())
        .args(args)
        .env_remove("IMGKIT_LOG")
        .env("NO_COLOR", "1")
        .env("XDG_CACHE_HOME", cache)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn imgkit");
    let mut stdin = child.stdin.take();
    if let Some(text) = input {
        let mut pipe = stdin.take().expect("stdin");
        let text = text.to_owned();
        std::thread::spawn(move || {
            use std::io::Write;
            let _ = pipe.write_all(text.as_bytes());
        });
    }
    let mut err = child.stderr.take().expect("stderr");
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait imgkit") {
            break status;
        }
        if started.elapsed() > Duration::from_secs(20) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("imgkit {args:?} was still running after 20 s");
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let took = started.elapsed();
    drop(stdin);
    Ended {
        code: status.code(),
        stderr: reader.join().expect("stderr reader"),
        took,
    }
}

fn os(s: &str) -> &std::ffi::OsStr {
    s.as_ref()
}

#[track_caller]
fn within_deadline(what: &str, ended: &Ended) {
    eprintln!(
        "stop time {:>7.1} ms  {what}",
        ended.took.as_secs_f64() * 1e3
    );
    assert!(
        ended.took <= DEADLINE + GRACE,
        "{what} took {:?}, over the deadline {DEADLINE:?} + {GRACE:?}; stderr:\n{}",
        ended.took,
        ended.stderr
    );
}

/// Sleeping an hour: with the fixed clock the sleeps return at once and the plugin is stopped
/// spinning; with the real clock it is stopped in the sleep, and the error says so.
#[test]
fn filter_stops_a_sleeping_plugin_at_the_deadline_on_both_clocks() {
    let plugin = fixture("sleep.wat");
    for how in ["how=mr", "how=ma", "how=rr", "how=ra"] {
        for clock in ["fixed", "real"] {
            let ended = imgkit(
                &[
                    os("filter"),
                    os("--plugin"),
                    plugin.as_os_str(),
                    os("--plugin-arg"),
                    os(how),
                    os("--plugin-clock"),
                    os(clock),
                    os("--plugin-timeout"),
                    os(TIMEOUT),
                    os("--plugin-fuel"),
                    os("100000000000000"),
                ],
                Some(LISTING),
            );
            within_deadline(
                &format!("filter sleep.wat {how} --plugin-clock {clock}"),
                &ended,
            );
            assert_eq!(ended.code, Some(RUN_FAILED), "{}", ended.stderr);
            assert!(
                ended
                    .stderr
                    .contains("sleep.wat ran past its time limit of 500ms"),
                "{}",
                ended.stderr
            );
            let in_poll = ended
                .stderr
                .contains("while blocked in the host call `poll_oneoff`");
            assert_eq!(in_poll, clock == "real", "{}", ended.stderr);
        }
    }
}

/// stdin that stays open and silent (a terminal nobody types into): a poll on it and a read of
/// it both end at the deadline, and imgkit exits although its own read of stdin still waits.
#[test]
fn filter_stops_a_plugin_waiting_on_a_silent_stdin() {
    for (plugin, import) in [
        ("poll-stdin.wat", "poll_oneoff"),
        ("read-forever.wat", "fd_read"),
    ] {
        let path = fixture(plugin);
        let ended = imgkit(
            &[
                os("filter"),
                os("--plugin"),
                path.as_os_str(),
                os("--plugin-timeout"),
                os(TIMEOUT),
            ],
            None,
        );
        within_deadline(&format!("filter {plugin}, silent stdin"), &ended);
        assert_eq!(ended.code, Some(RUN_FAILED), "{}", ended.stderr);
        assert!(
            ended.stderr.contains(&format!(
                "{plugin} ran past its time limit of 500ms while blocked in the host call `{import}`"
            )),
            "{}",
            ended.stderr
        );
        assert!(
            ended.stderr.contains("hint: raise with --plugin-timeout"),
            "{}",
            ended.stderr
        );
    }
}

/// The sleeping plugin as the last filter of `imgkit run`, after a jq step: exit 2 within the
/// deadline, and nothing saved or loaded (the target archive does not exist).
#[test]
fn run_with_a_sleeping_plugin_as_last_filter_saves_and_loads_nothing() {
    let out_dir = tempfile::tempdir().unwrap();
    let out = out_dir.path().join("out.tar");
    let jq_dir = tempfile::tempdir().unwrap();
    let jq = jq_dir.path().join("tagged.jq");
    std::fs::write(&jq, r#"select(.Tag != "<none>")"#).unwrap();
    let plugin = fixture("sleep.wat");
    let sample = root().join("examples/images.tar");
    let ended = imgkit(
        &[
            os("run"),
            os("--from"),
            sample.as_os_str(),
            os("--to"),
            out.as_os_str(),
            os("--filter"),
            jq.as_os_str(),
            os("--filter"),
            plugin.as_os_str(),
            os("--plugin-arg"),
            os("how=mr"),
            os("--plugin-clock"),
            os("real"),
            os("--plugin-timeout"),
            os(TIMEOUT),
        ],
        Some(""),
    );
    within_deadline("run --filter tagged.jq --filter sleep.wat", &ended);
    assert_eq!(ended.code, Some(2), "{}", ended.stderr);
    assert!(
        ended.stderr.contains(
            "sleep.wat ran past its time limit of 500ms while blocked in the host call `poll_oneoff`"
        ),
        "{}",
        ended.stderr
    );
    assert!(!out.exists(), "{} was written", out.display());
    let left: Vec<_> = std::fs::read_dir(out_dir.path()).unwrap().collect();
    assert!(left.is_empty(), "left {left:?}");
}

/// A Rust plugin's `std::thread::sleep` of an hour: returns at once with the fixed clock (the
/// plugin goes on and selects), and is stopped at the deadline with the real one.
#[test]
fn a_rust_plugin_sleeping_an_hour() {
    let Some(fixed) = crate::plugin::hostile("sleep", &["--plugin-timeout", TIMEOUT]) else {
        return;
    };
    fixed.success().stdout_is("alpine:latest\n");
    let started = Instant::now();
    let Some(real) = crate::plugin::hostile(
        "sleep",
        &["--plugin-timeout", TIMEOUT, "--plugin-clock", "real"],
    ) else {
        return;
    };
    let took = started.elapsed();
    eprintln!(
        "stop time {:>7.1} ms  filter hostile.wasm mode=sleep --plugin-clock real",
        took.as_secs_f64() * 1e3
    );
    assert!(took <= DEADLINE + GRACE, "{took:?}");
    real.code(RUN_FAILED).stderr_has(
        "hostile.wasm ran past its time limit of 500ms while blocked in the host call `poll_oneoff`",
    );
}
