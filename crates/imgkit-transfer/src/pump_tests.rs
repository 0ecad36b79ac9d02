//! The pump against real child processes (coreutils and `sh` stand in for engines here:
//! the pump only sees argv, pipes and exit statuses).
use super::*;
use crate::progress::NoProgress;
use std::fs::File;
use std::os::unix::fs::FileTypeExt;
use std::path::Path;

fn cmd(program: &str, args: &[&str]) -> Command {
    let mut c = Command::new(program);
    c.args(args);
    c
}

fn sh(script: &str) -> Command {
    cmd("sh", &["-c", script])
}

/// `n` bytes of zeros, then exit 0.
fn zeros(n: u64) -> Source {
    Source::command("head", cmd("head", &["-c", &n.to_string(), "/dev/zero"]))
}

/// The names in `dir`, sorted.
fn entries(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[derive(Default)]
struct Recorder {
    started: bool,
    expected: Option<u64>,
    progress: usize,
    finished: Option<u64>,
    failed: Option<u64>,
}

impl Reporter for Recorder {
    fn started(&mut self, expected: Option<u64>) {
        self.started = true;
        self.expected = expected;
    }
    fn progress(&mut self, _: &Progress) {
        self.progress += 1;
    }
    fn finished(&mut self, p: &Progress) {
        self.finished = Some(p.bytes);
    }
    fn failed(&mut self, p: &Progress) {
        self.failed = Some(p.bytes);
    }
}

#[test]
fn copies_into_a_file_and_renames_it() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.tar");
    let mut rec = Recorder::default();
    let done = Pump::new(zeros(3_000_000))
        .sink(Sink::file(&out))
        .expected_bytes(Some(3_000_000))
        .run(&mut rec)
        .unwrap();
    assert_eq!(done.bytes, 3_000_000);
    assert_eq!(std::fs::metadata(&out).unwrap().len(), 3_000_000);
    assert_eq!(entries(dir.path()), ["out.tar"]);
    assert!(rec.started);
    assert_eq!(rec.expected, Some(3_000_000));
    assert_eq!(rec.finished, Some(3_000_000));
    assert_eq!(rec.failed, None);
}

#[test]
fn tees_into_a_child_and_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("via.tar");
    let done = Pump::new(zeros(1_234_567))
        .sink(Sink::command("wc", cmd("wc", &["-c"])))
        .sink(Sink::file(&out))
        .run(&mut NoProgress)
        .unwrap();
    assert_eq!(done.target_stdout.trim(), "1234567");
    assert_eq!(std::fs::metadata(&out).unwrap().len(), 1_234_567);
}

#[test]
fn reads_from_a_reader_source() {
    let data = vec![7u8; 100_000];
    let done = Pump::new(Source::reader("memory", std::io::Cursor::new(data)))
        .sink(Sink::command("wc", cmd("wc", &["-c"])))
        .run(&mut NoProgress)
        .unwrap();
    assert_eq!(done.bytes, 100_000);
    assert_eq!(done.target_stdout.trim(), "100000");
}

#[test]
fn a_source_dying_mid_stream_never_lets_the_target_commit() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.tar");
    let committed = dir.path().join("committed");
    // The "load" commits (creates `committed`) when its stdin ends: it must be killed first.
    let load = sh(&format!(
        "cat > /dev/null && touch '{}'",
        committed.display()
    ));
    let save = sh("head -c 500000 /dev/zero; echo 'save: disk on fire' >&2; exit 3");
    let mut rec = Recorder::default();
    let err = Pump::new(Source::command("fake save", save))
        .sink(Sink::command("fake load", load))
        .sink(Sink::file(&out))
        .run(&mut rec)
        .unwrap_err();
    match &err {
        Error::ChildFailed {
            side: Side::Source,
            step: Step::Save,
            status,
            ..
        } => {
            assert_eq!(status.code(), Some(3));
        }
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(err.stderr(), Some("save: disk on fire"));
    assert!(
        err.to_string()
            .contains("the source save failed: `fake save` exited with status 3"),
        "{err}"
    );
    assert!(!committed.exists(), "the target saw a clean end of stream");
    assert!(entries(dir.path()).is_empty(), "{:?}", entries(dir.path()));
    assert!(rec.failed.is_some());
}

#[test]
fn a_failing_target_stops_an_endless_source() {
    let load = sh("head -c 10 > /dev/null; echo 'load: unsupported format' >&2; exit 4");
    let err = Pump::new(Source::command("cat", cmd("cat", &["/dev/zero"])))
        .sink(Sink::command("fake load", load))
        .run(&mut NoProgress)
        .unwrap_err();
    match &err {
        Error::ChildFailed {
            side: Side::Target,
            step: Step::Load,
            status,
            ..
        } => assert_eq!(status.code(), Some(4)),
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(err.stderr(), Some("load: unsupported format"));
}

#[test]
fn a_target_that_cannot_start_starts_no_source() {
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("source-ran");
    let err = Pump::new(Source::command(
        "touch",
        cmd("touch", &[marker.to_str().unwrap()]),
    ))
    .sink(Sink::command("nope", cmd("/nonexistent/imgkit-load", &[])))
    .run(&mut NoProgress)
    .unwrap_err();
    assert!(
        matches!(
            err,
            Error::Spawn {
                side: Side::Target,
                step: Step::Load,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(!marker.exists());
}

#[test]
fn an_uncreatable_file_starts_no_source() {
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("source-ran");
    let out = dir.path().join("missing-dir/out.tar");
    let err = Pump::new(Source::command(
        "touch",
        cmd("touch", &[marker.to_str().unwrap()]),
    ))
    .sink(Sink::file(&out))
    .run(&mut NoProgress)
    .unwrap_err();
    assert!(
        matches!(
            err,
            Error::Output {
                problem: crate::OutputProblem::ParentMissing(_),
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(err.side(), Some(Side::Target));
    assert!(!marker.exists());
}

#[test]
fn a_missing_source_binary_is_a_spawn_error_and_removes_the_partial() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.tar");
    let err = Pump::new(Source::command(
        "nope",
        cmd("/nonexistent/imgkit-save", &[]),
    ))
    .sink(Sink::file(&out))
    .run(&mut NoProgress)
    .unwrap_err();
    assert!(
        matches!(
            err,
            Error::Spawn {
                side: Side::Source,
                step: Step::Save,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(!out.exists());
    assert!(entries(dir.path()).is_empty(), "{:?}", entries(dir.path()));
}

#[test]
fn a_full_device_is_a_write_error_naming_the_sink() {
    let full = File::options().write(true).open("/dev/full").unwrap();
    let err = Pump::new(zeros(1_000_000))
        .sink(Sink::writer("/dev/full", full))
        .run(&mut NoProgress)
        .unwrap_err();
    match &err {
        Error::Write { label, source, .. } => {
            assert_eq!(label, "/dev/full");
            assert_eq!(source.raw_os_error(), Some(28)); // ENOSPC
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn cancelling_stops_both_children_and_removes_the_partial() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.tar");
    let committed = dir.path().join("committed");
    let load = sh(&format!(
        "cat > /dev/null && touch '{}'",
        committed.display()
    ));
    let cancel = Cancel::new();
    let trigger = cancel.clone();
    let t = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        trigger.cancel();
    });
    let err = Pump::new(Source::command("cat", cmd("cat", &["/dev/zero"])))
        .sink(Sink::command("fake load", load))
        .sink(Sink::file(&out))
        .cancel(cancel)
        .run(&mut NoProgress)
        .unwrap_err();
    t.join().unwrap();
    assert!(err.is_cancelled(), "{err:?}");
    assert!(!committed.exists());
    assert!(entries(dir.path()).is_empty(), "{:?}", entries(dir.path()));
}

#[test]
fn a_target_that_ends_early_and_succeeds_is_trusted() {
    // Some loads stop reading at the tar end-of-archive marker; the padding after it is
    // drained, and the exit statuses decide.
    let done = Pump::new(zeros(300_000))
        .sink(Sink::command("head", cmd("head", &["-c", "10"])))
        .run(&mut NoProgress)
        .unwrap();
    assert_eq!(done.bytes, 300_000);
}

/// `n` bytes of `byte`, from a child.
fn bytes_of(byte: u8, n: u64) -> Source {
    Source::command(
        "sh",
        sh(&format!("head -c {n} /dev/zero | tr '\\0' '\\{byte:03o}'")),
    )
}

#[test]
fn a_symlink_where_the_temporary_goes_is_never_followed() {
    // The old fixed `FILE.partial` was opened with truncate through whatever was there.
    let dir = tempfile::tempdir().unwrap();
    let victim = dir.path().join("victim");
    std::fs::write(&victim, b"keep me").unwrap();
    let out = dir.path().join("out.tar");
    std::os::unix::fs::symlink(&victim, dir.path().join("out.tar.partial")).unwrap();
    Pump::new(zeros(10_000))
        .sink(Sink::file(&out))
        .run(&mut NoProgress)
        .unwrap();
    assert_eq!(std::fs::read(&victim).unwrap(), b"keep me");
    assert_eq!(std::fs::metadata(&out).unwrap().len(), 10_000);
}

#[test]
fn concurrent_writers_to_one_file_leave_one_complete_archive() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.tar");
    let n = 4_000_000;
    let runs: Vec<_> = (0..4u8)
        .map(|i| {
            let out = out.clone();
            std::thread::spawn(move || {
                Pump::new(bytes_of(b'a' + i, n))
                    .sink(Sink::file(&out))
                    .buffer_size(4096)
                    .run(&mut NoProgress)
                    .map(|d| d.bytes)
            })
        })
        .collect();
    for r in runs {
        assert_eq!(r.join().unwrap().unwrap(), n);
    }
    let data = std::fs::read(&out).unwrap();
    assert_eq!(data.len() as u64, n);
    assert!(
        data.iter().all(|&b| b == data[0]),
        "the file mixes two runs' bytes"
    );
    assert_eq!(entries(dir.path()), ["out.tar"]);
}

#[test]
fn a_stale_temporary_is_removed_and_a_live_one_kept() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.tar");
    let stale = dir.path().join(".out.tar.AAAAAAAA.imgkit-partial");
    std::fs::write(&stale, b"from a killed run").unwrap();
    let live = dir.path().join(".out.tar.BBBBBBBB.imgkit-partial");
    std::fs::write(&live, b"being written").unwrap();
    let held = File::options().write(true).open(&live).unwrap();
    held.lock().unwrap();
    let other = dir.path().join(".other.tar.CCCCCCCC.imgkit-partial");
    std::fs::write(&other, b"another file's").unwrap();
    Pump::new(zeros(1000))
        .sink(Sink::file(&out))
        .run(&mut NoProgress)
        .unwrap();
    assert!(!stale.exists());
    assert!(live.exists() && other.exists());
    drop(held);
}

#[test]
fn a_fifo_is_written_in_place() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("pipe");
    assert!(
        Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    let reader = {
        let fifo = fifo.clone();
        std::thread::spawn(move || std::fs::read(fifo).unwrap().len())
    };
    Pump::new(zeros(300_000))
        .sink(Sink::file(&fifo))
        .run(&mut NoProgress)
        .unwrap();
    // Checked before waiting for the reader: had the FIFO been replaced, its reader would
    // wait forever.
    assert!(
        std::fs::symlink_metadata(&fifo)
            .unwrap()
            .file_type()
            .is_fifo()
    );
    assert_eq!(entries(dir.path()), ["pipe"]);
    assert_eq!(reader.join().unwrap(), 300_000);
}

#[test]
fn a_device_node_is_written_in_place_and_kept() {
    // A copy of /dev/null made with mknod in a temp dir (root only), never the machine's.
    let dir = tempfile::tempdir().unwrap();
    let null = dir.path().join("null");
    let made = Command::new("mknod")
        .arg(&null)
        .args(["c", "1", "3"])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !made {
        eprintln!("skipped: mknod needs root");
        return;
    }
    Pump::new(zeros(100_000))
        .sink(Sink::file(&null))
        .run(&mut NoProgress)
        .unwrap();
    assert!(
        std::fs::symlink_metadata(&null)
            .unwrap()
            .file_type()
            .is_char_device()
    );
    assert_eq!(entries(dir.path()), ["null"]);
}

#[test]
fn a_directory_is_refused_before_the_source_starts() {
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("source-ran");
    let target = dir.path().join("d");
    std::fs::create_dir(&target).unwrap();
    let err = Pump::new(Source::command(
        "touch",
        cmd("touch", &[marker.to_str().unwrap()]),
    ))
    .sink(Sink::file(&target))
    .run(&mut NoProgress)
    .unwrap_err();
    assert!(
        matches!(
            err,
            Error::Output {
                problem: crate::OutputProblem::IsDirectory,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(!marker.exists());
    assert_eq!(entries(dir.path()), ["d"]);
}

#[test]
fn a_symlinked_output_is_written_through() {
    let dir = tempfile::tempdir().unwrap();
    let real = dir.path().join("real.tar");
    std::fs::write(&real, b"old").unwrap();
    let link = dir.path().join("link.tar");
    std::os::unix::fs::symlink(&real, &link).unwrap();
    Pump::new(zeros(5000))
        .sink(Sink::file(&link))
        .run(&mut NoProgress)
        .unwrap();
    assert!(
        std::fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink()
    );
    assert_eq!(std::fs::metadata(&real).unwrap().len(), 5000);
}
