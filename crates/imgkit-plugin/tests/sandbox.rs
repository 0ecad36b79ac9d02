//! The sandbox's host calls, tried as a hostile plugin author would: every case ends within
//! the deadline plus one second with its typed error, and the same process then runs a good
//! plugin. `cargo test -p imgkit-plugin --test sandbox -- --nocapture` prints how long each
//! case took to stop.

use std::io::Read;
use std::path::PathBuf;
use std::sync::mpsc::{Receiver, Sender, channel};
use std::time::{Duration, Instant};

use imgkit_plugin::{Clock, Error, Limits, Options, Outcome, Plugin, Sandbox};

/// A short deadline, so the cases stop quickly.
const DEADLINE: Duration = Duration::from_millis(500);
const GRACE: Duration = Duration::from_secs(1);
const INPUT: &[u8] = b"{\"Repository\":\"alpine\",\"Tag\":\"latest\"}\n{\"Repository\":\"x\"}\n";

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/plugins")
        .join(name)
}

fn options(clock: Clock, args: &[(&str, &str)]) -> Options {
    Options {
        limits: Limits {
            // Fuel out of the way: these cases are about time.
            fuel_per_record: u64::MAX / 1024,
            timeout: DEADLINE,
            ..Limits::default()
        },
        sandbox: Sandbox {
            args: args
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            clock,
        },
        cache_dir: None,
    }
}

fn load(name: &str, clock: Clock, args: &[(&str, &str)]) -> Plugin {
    Plugin::load_with(&fixture(&format!("sandbox/{name}")), options(clock, args))
        .unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// Runs `name` on `INPUT` and returns what it ended with and how long that took, checking it
/// took no longer than the deadline plus a second.
fn run(name: &str, clock: Clock, args: &[(&str, &str)]) -> Result<Outcome, Error> {
    let plugin = load(name, clock, args);
    let shown: Vec<String> = args.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let shown = format!("{name} {}", shown.join(" "));
    timed(shown.trim_end(), clock, || plugin.execute(&mut &INPUT[..]))
}

fn timed(
    name: &str,
    clock: Clock,
    f: impl FnOnce() -> Result<Outcome, Error>,
) -> Result<Outcome, Error> {
    let started = Instant::now();
    let result = f();
    let took = started.elapsed();
    let how = match &result {
        Ok(_) => "ok".to_owned(),
        Err(e) => e.to_string(),
    };
    eprintln!(
        "stop time {:>7.1} ms  {name} ({clock:?} clock): {how}",
        took.as_secs_f64() * 1e3
    );
    assert!(
        took <= DEADLINE + GRACE,
        "{name} ({clock:?}) took {took:?}, over the deadline {DEADLINE:?} + {GRACE:?}"
    );
    result
}

/// The deadline error, and the import it names (`None`: stopped in the plugin's own code).
#[track_caller]
fn deadline(result: Result<Outcome, Error>) -> Option<String> {
    match result {
        Err(Error::Deadline {
            timeout,
            blocked_in,
            ..
        }) => {
            assert_eq!(timeout, DEADLINE);
            blocked_in
        }
        other => panic!("expected the deadline error, got {other:?}"),
    }
}

#[track_caller]
fn exit_code(result: Result<Outcome, Error>) -> i32 {
    match result {
        Err(Error::Exit { code, .. }) => code,
        other => panic!("expected an exit code, got {other:?}"),
    }
}

/// An input that never arrives and never ends (a terminal nobody types into), until the test
/// drops the sender.
struct Stalled(Receiver<()>);

impl Read for Stalled {
    fn read(&mut self, _buf: &mut [u8]) -> std::io::Result<usize> {
        let _ = self.0.recv();
        Ok(0)
    }
}

fn stalled() -> (Sender<()>, Box<dyn Read + Send>) {
    let (tx, rx) = channel();
    (tx, Box::new(Stalled(rx)))
}

fn host_goes_on() {
    let hello = Plugin::load_with(&fixture("hello.wat"), options(Clock::Fixed, &[])).unwrap();
    for _ in 0..2 {
        assert_eq!(hello.run(&mut &INPUT[..]).unwrap(), ["alpine:latest"]);
    }
}

/// Clock sleeps of an hour, relative and absolute, on the monotonic and the realtime clock:
/// with the fixed clock each returns at once with its event (the plugin then spins until the
/// deadline stops it in its own code); with the real clock the first one is cut at the
/// deadline, which names `poll_oneoff`.
#[test]
fn clock_sleeps_end_at_the_deadline_on_both_clocks() {
    for how in ["mr", "ma", "rr", "ra"] {
        let name = format!("sleep.wat how={how}");
        let fixed = run("sleep.wat", Clock::Fixed, &[("how", how)]);
        assert_eq!(deadline(fixed), None, "{name}");
        let real = run("sleep.wat", Clock::Real, &[("how", how)]);
        assert_eq!(deadline(real).as_deref(), Some("poll_oneoff"), "{name}");
    }
    host_goes_on();
}

#[test]
fn a_sleep_within_the_deadline_completes_with_the_real_clock() {
    // One 100 ms sleep, then the plugin prints its pick: the sleep is honoured.
    let plugin = Plugin::load_with(
        &fixture("sandbox/sleep-then-print.wat"),
        options(Clock::Real, &[]),
    )
    .unwrap();
    let started = Instant::now();
    let out = plugin.run(&mut &INPUT[..]).unwrap();
    let took = started.elapsed();
    assert_eq!(out, ["alpine:latest"]);
    assert!(took >= Duration::from_millis(100), "{took:?}");
    assert!(took < DEADLINE, "{took:?}");
}

#[test]
fn a_poll_on_stdin_waits_at_most_until_the_deadline() {
    for clock in [Clock::Fixed, Clock::Real] {
        // The input arrives and ends: the plugin reads it, then polls the ended stdin, which
        // is always ready, until the deadline stops it in its own code.
        assert_eq!(deadline(run("poll-stdin.wat", clock, &[])), None);
        // The input stalls: the poll is cut at the deadline.
        let plugin = load("poll-stdin.wat", clock, &[]);
        let (keep_open, input) = stalled();
        let result = timed("poll-stdin.wat, stalled input", clock, || {
            plugin.execute_owned(input)
        });
        assert_eq!(deadline(result).as_deref(), Some("poll_oneoff"));
        drop(keep_open);
    }
    host_goes_on();
}

#[test]
fn a_read_of_a_stalled_stdin_ends_at_the_deadline() {
    let plugin = load("read-forever.wat", Clock::Fixed, &[]);
    let (keep_open, input) = stalled();
    let result = timed("read-forever.wat, stalled input", Clock::Fixed, || {
        plugin.execute_owned(input)
    });
    assert_eq!(deadline(result).as_deref(), Some("fd_read"));
    drop(keep_open);
    // After the end of input, reads return at once: the loop spins until the deadline.
    assert_eq!(deadline(run("read-forever.wat", Clock::Fixed, &[])), None);
    host_goes_on();
}

#[test]
fn a_poll_with_65536_subscriptions_is_bounded() {
    // Fixed clock: all 65536 fire at once, every time; the deadline finds the plugin in its
    // own code or inside a call (which looks at the deadline every 65536 subscriptions).
    let fixed = deadline(run("poll-many.wat", Clock::Fixed, &[]));
    assert!(
        fixed.is_none() || fixed.as_deref() == Some("poll_oneoff"),
        "{fixed:?}"
    );
    // Real clock: an hour each, cut at the deadline.
    assert_eq!(
        deadline(run("poll-many.wat", Clock::Real, &[])).as_deref(),
        Some("poll_oneoff")
    );
    host_goes_on();
}

#[test]
fn busy_host_calls_in_a_loop_end_at_the_deadline() {
    assert_eq!(deadline(run("sched-yield.wat", Clock::Fixed, &[])), None);
    // 64 MiB of randomness per call: stopped between two calls or inside one.
    let random = deadline(run("random-all.wat", Clock::Real, &[]));
    assert!(
        random.is_none() || random.as_deref() == Some("random_get"),
        "{random:?}"
    );
    host_goes_on();
}

/// One call for 64 MiB of randomness takes longer than a 5 ms limit: it is cut inside the
/// call, between two of its 1 MiB slices.
#[test]
fn a_random_get_longer_than_the_deadline_is_cut_inside_the_call() {
    let mut options = options(Clock::Fixed, &[]);
    options.limits.timeout = Duration::from_millis(5);
    let plugin = Plugin::load_with(&fixture("sandbox/random-all.wat"), options).unwrap();
    let started = Instant::now();
    let result = plugin.execute(&mut &INPUT[..]);
    let took = started.elapsed();
    eprintln!(
        "stop time {:>7.1} ms  random-all.wat, 5 ms limit: {result:?}",
        took.as_secs_f64() * 1e3
    );
    assert!(
        matches!(&result, Err(Error::Deadline { blocked_in: Some(i), .. }) if i == "random_get"),
        "{result:?}"
    );
    assert!(took < Duration::from_millis(100), "{took:?}");
}

/// What the denied imports return, as the plugins see it (each exits with the errno every
/// call returned).
#[test]
fn denied_imports_return_their_errno_on_every_fd() {
    for (name, errno) in [
        ("fd-write-3-64.wat", 8),     // EBADF: as is, no such descriptor
        ("path-open-3-64.wat", 76),   // ENOTCAPABLE
        ("fd-readdir-3-64.wat", 8),   // EBADF
        ("fd-prestat-3-64.wat", 8),   // EBADF: no preopened directory
        ("sock-accept-0-64.wat", 57), // ENOTSOCK
        ("sock-recv-0-64.wat", 57),
        ("sock-send-0-64.wat", 57),
        ("proc-raise.wat", 58), // ENOTSUP
    ] {
        assert_eq!(exit_code(run(name, Clock::Fixed, &[])), errno, "{name}");
    }
    host_goes_on();
}

#[test]
fn args_and_environ_hold_only_the_name_and_the_plugin_args() {
    assert_eq!(exit_code(run("args-environ.wat", Clock::Fixed, &[])), 10);
    assert_eq!(
        exit_code(run("args-environ.wat", Clock::Fixed, &[("k", "v")])),
        20
    );
    host_goes_on();
}

#[test]
fn an_import_wasi_does_not_have_is_refused_before_it_runs() {
    let started = Instant::now();
    let err = Plugin::load_with(
        &fixture("sandbox/no-such-import.wat"),
        options(Clock::Fixed, &[]),
    )
    .unwrap_err();
    eprintln!(
        "stop time {:>7.1} ms  no-such-import.wat: {err}",
        started.elapsed().as_secs_f64() * 1e3
    );
    assert!(
        matches!(&err, Error::UnsupportedImport { module, name, .. }
            if module == "wasi_snapshot_preview1" && name == "sock_open"),
        "{err:?}"
    );
    host_goes_on();
}

#[test]
fn the_deadline_error_names_the_import() {
    let err = run("sleep.wat", Clock::Real, &[("how", "mr")]).unwrap_err();
    assert!(
        err.to_string().ends_with(
            "sleep.wat ran past its time limit of 500ms while blocked in the host call \
             `poll_oneoff`"
        ),
        "{err}"
    );
    assert_eq!(err.hint().as_deref(), Some("raise with --plugin-timeout"));
}
