//! The pump itself: spawn, copy, supervise, finish or clean up.
//!
//! One thread copies source → sinks through a fixed buffer; the calling thread supervises: it
//! reports progress, watches the children's exit statuses and the cancellation flag, and decides
//! who failed first. The copy thread hands every sink writer back when it ends, so a target's
//! stdin is closed (letting a load commit) only after the source has exited successfully; on any
//! failure the target children are killed first.

use std::io::{self, Read, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::cancel::Cancel;
use crate::error::{Error, Side, StderrTail, Step};
use crate::output::{OpenError, OutputFile};
use crate::progress::{Progress, Reporter};
use crate::tail;

/// The copy buffer: big enough that a pipe read (64 KiB on Linux) never has to be split.
pub const DEFAULT_BUFFER_SIZE: usize = 256 * 1024;
/// How much of a child's stderr is kept for error messages.
const STDERR_KEEP: usize = 64 * 1024;
/// How much of a load's stdout is kept ("Loaded image: …" lines).
const STDOUT_KEEP: usize = 1024 * 1024;
/// How often the supervisor wakes to report progress and check children.
const TICK: Duration = Duration::from_millis(100);
/// How long to wait for a copy thread blocked on a reader we cannot interrupt.
const GRACE: Duration = Duration::from_secs(2);

type OpenReader = Box<dyn FnOnce() -> io::Result<Box<dyn Read>> + Send>;
type Transform = Box<dyn FnOnce(Box<dyn Read>) -> Box<dyn Read> + Send>;

/// Where the stream comes from.
pub struct Source {
    label: String,
    kind: SourceKind,
}

enum SourceKind {
    Command(Command),
    Reader(OpenReader),
}

impl Source {
    /// A child that writes the archive to its stdout (an engine's `save`). `label` names it in
    /// errors and progress, e.g. `docker save`. Its stdin is null, its stderr is drained.
    pub fn command(label: impl Into<String>, command: Command) -> Self {
        Self {
            label: label.into(),
            kind: SourceKind::Command(command),
        }
    }

    /// Any reader (a file, stdin).
    pub fn reader(label: impl Into<String>, reader: impl Read + Send + 'static) -> Self {
        Self::open_with(label, move || Ok(Box::new(reader) as Box<dyn Read>))
    }

    /// A reader opened on the copy thread, for readers that are not `Send` (a decompressor
    /// wrapping a file). An error from `open` is a read error of the source.
    pub fn open_with(
        label: impl Into<String>,
        open: impl FnOnce() -> io::Result<Box<dyn Read>> + Send + 'static,
    ) -> Self {
        Self {
            label: label.into(),
            kind: SourceKind::Reader(Box::new(open)),
        }
    }

    /// The label given at construction.
    pub fn label(&self) -> &str {
        &self.label
    }
}

/// Where the stream goes. A pump may have several sinks (a load and a file: a tee).
pub struct Sink {
    label: String,
    kind: SinkKind,
}

enum SinkKind {
    Command(Command),
    File(PathBuf),
    Writer(Box<dyn Write + Send>),
}

impl Sink {
    /// A child that reads the archive from its stdin (an engine's `load`). Its stdout is kept
    /// (see [`Transferred::target_stdout`]), its stderr drained.
    pub fn command(label: impl Into<String>, command: Command) -> Self {
        Self {
            label: label.into(),
            kind: SinkKind::Command(command),
        }
    }

    /// A file: written to a unique temporary beside `PATH` (created exclusively), flushed to
    /// disk and renamed to `PATH` only when the whole transfer succeeded; removed on any
    /// failure. A device or FIFO is written in place (see [`crate::check_output`]).
    pub fn file(path: impl Into<PathBuf>) -> Self {
        let path = path.into();
        Self {
            label: path.display().to_string(),
            kind: SinkKind::File(path),
        }
    }

    /// Any writer (stdout). Flushed at the end; what was written before a failure stays written.
    pub fn writer(label: impl Into<String>, writer: impl Write + Send + 'static) -> Self {
        Self {
            label: label.into(),
            kind: SinkKind::Writer(Box::new(writer)),
        }
    }

    /// The label given at construction (the path for a file).
    pub fn label(&self) -> &str {
        &self.label
    }
}

/// What a successful transfer moved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transferred {
    /// Bytes read from the source (each sink received all of them).
    pub bytes: u64,
    /// Wall time from spawning the first child to the last child's exit.
    pub elapsed: Duration,
    /// What the target children printed on stdout (e.g. `Loaded image: …`), concatenated.
    pub target_stdout: String,
    /// What the target children printed on stderr (tail), concatenated.
    pub target_stderr: String,
    /// What the source child printed on stderr (tail).
    pub source_stderr: String,
}

/// A configured transfer; [`Pump::run`] performs it.
pub struct Pump {
    source: Source,
    sinks: Vec<Sink>,
    buffer_size: usize,
    expected: Option<u64>,
    cancel: Cancel,
    transform: Option<Transform>,
}

impl Pump {
    /// A pump reading from `source`; add at least one [`Sink`].
    pub fn new(source: Source) -> Self {
        Self {
            source,
            sinks: Vec::new(),
            buffer_size: DEFAULT_BUFFER_SIZE,
            expected: None,
            cancel: Cancel::new(),
            transform: None,
        }
    }

    /// Adds a sink; with several, every byte goes to each (a tee).
    #[must_use]
    pub fn sink(mut self, sink: Sink) -> Self {
        self.sinks.push(sink);
        self
    }

    /// The expected stream size, for the reporter's ETA.
    #[must_use]
    pub fn expected_bytes(mut self, bytes: Option<u64>) -> Self {
        self.expected = bytes;
        self
    }

    /// The copy buffer size (at least 4 KiB).
    #[must_use]
    pub fn buffer_size(mut self, bytes: usize) -> Self {
        self.buffer_size = bytes.max(4096);
        self
    }

    /// Rewrites the stream on its way from the source to the sinks (e.g. [`crate::QualifyNames`]).
    /// Runs on the copy thread; byte counts are of the rewritten stream.
    #[must_use]
    pub fn transform(
        mut self,
        f: impl FnOnce(Box<dyn Read>) -> Box<dyn Read> + Send + 'static,
    ) -> Self {
        self.transform = Some(Box::new(f));
        self
    }

    /// A flag that stops the transfer when set (e.g. from a Ctrl-C handler).
    #[must_use]
    pub fn cancel(mut self, cancel: Cancel) -> Self {
        self.cancel = cancel;
        self
    }

    /// Runs the transfer to the end. On error every child has been stopped and waited for and
    /// every temporary output file removed.
    ///
    /// # Panics
    /// When no sink was added.
    pub fn run(self, reporter: &mut dyn Reporter) -> Result<Transferred, Error> {
        assert!(!self.sinks.is_empty(), "a pump needs at least one sink");
        let Pump {
            source,
            sinks,
            buffer_size,
            expected,
            cancel,
            transform,
        } = self;
        let start = Instant::now();
        let mut run = Running::default();

        // Targets first: a file that can't be created or a load that can't start fails before
        // the source produces anything.
        let mut writers: Vec<SinkWriter> = Vec::new();
        for sink in sinks {
            match open_sink(sink, &mut run) {
                Ok(w) => writers.push(w),
                Err(e) => {
                    run.abort();
                    return Err(e);
                }
            }
        }
        let (reader, source_label): (OpenReader, String) = match source.kind {
            SourceKind::Reader(open) => (open, source.label),
            SourceKind::Command(mut cmd) => {
                cmd.stdin(Stdio::null())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped());
                own_process_group(&mut cmd);
                match cmd.spawn() {
                    Ok(mut child) => {
                        let stdout = child.stdout.take().expect("piped stdout");
                        let stderr = child.stderr.take().expect("piped stderr");
                        run.source = Some(ChildSide {
                            label: source.label.clone(),
                            child,
                            status: None,
                            stderr: Some(tail::drain(stderr, STDERR_KEEP)),
                            stdout: None,
                        });
                        (
                            Box::new(move || Ok(Box::new(stdout) as Box<dyn Read>)),
                            source.label,
                        )
                    }
                    Err(e) => {
                        run.abort();
                        return Err(Error::Spawn {
                            side: Side::Source,
                            step: Step::Save,
                            label: source.label,
                            source: e,
                        });
                    }
                }
            }
        };

        let reader: OpenReader = match transform {
            Some(t) => Box::new(move || reader().map(t)),
            None => reader,
        };
        reporter.started(expected);
        let counter = Arc::new(AtomicU64::new(0));
        let (tx, rx) = mpsc::channel();
        let copy = {
            let counter = Arc::clone(&counter);
            let cancel = cancel.clone();
            std::thread::spawn(move || {
                let outcome = copy(reader, &mut writers, buffer_size, &counter, &cancel);
                let _ = tx.send((outcome, writers));
            })
        };
        let progress = |bytes| Progress {
            bytes,
            elapsed: start.elapsed(),
            expected,
        };

        // Supervise until the copy ends or someone fails.
        let mut culprit: Option<Culprit> = None;
        let mut done: Option<(CopyEnd, Vec<SinkWriter>)> = None;
        let mut last_reported = u64::MAX;
        loop {
            match rx.recv_timeout(TICK) {
                Ok(d) => {
                    done = Some(d);
                    break;
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
            if cancel.is_cancelled() {
                culprit = Some(Culprit::Cancelled);
                break;
            }
            if let Some(c) = run.poll_failures() {
                culprit = Some(c);
                break;
            }
            let bytes = counter.load(Ordering::Relaxed);
            if bytes != last_reported {
                last_reported = bytes;
                reporter.progress(&progress(bytes));
            }
        }
        let bytes = || counter.load(Ordering::Relaxed);

        // The stream ended on its own: find out whether it ended well.
        if culprit.is_none() {
            match &done {
                Some((CopyEnd::Eof, _)) => {
                    if let Some(status) = run.wait_source()
                        && !status.success()
                    {
                        culprit = Some(Culprit::SourceExit(status));
                    }
                }
                Some((CopyEnd::Cancelled, _)) => culprit = Some(Culprit::Cancelled),
                Some((CopyEnd::Write(i, _), _)) => culprit = Some(Culprit::SinkWrite(*i)),
                Some((CopyEnd::Read(_), _)) | None => culprit = Some(Culprit::SourceRead),
            }
        }
        if cancel.is_cancelled() {
            culprit = Some(Culprit::Cancelled);
        }

        if culprit.is_none() {
            let (_, writers) = done.take().expect("copy finished");
            match run.finish(writers) {
                Ok(()) => {
                    let p = progress(bytes());
                    reporter.finished(&p);
                    let _ = copy.join();
                    return Ok(run.into_transferred(p.bytes, start.elapsed()));
                }
                Err(c) => culprit = Some(c),
            }
        }

        // Failure: stop everything, then explain.
        let culprit = culprit.expect("a failure");
        run.kill_all();
        let writers_back = match done.take() {
            Some(d) => Some(d),
            None => rx.recv_timeout(GRACE).ok(),
        };
        let copy_end = writers_back.map(|(end, writers)| {
            drop(writers);
            end
        });
        if copy.is_finished() {
            let _ = copy.join();
        }
        run.wait_all();
        run.remove_partials();
        reporter.failed(&progress(bytes()));
        Err(run.explain(culprit, copy_end, &source_label, bytes()))
    }
}

/// Puts a child in its own process group so a terminal's Ctrl-C reaches only imgkit, which then
/// stops the children in order (target first) instead of racing them.
fn own_process_group(cmd: &mut Command) {
    #[cfg(unix)]
    {
        use std::os::unix::process::CommandExt;
        cmd.process_group(0);
    }
    #[cfg(not(unix))]
    {
        let _ = cmd;
    }
}

fn open_sink(sink: Sink, run: &mut Running) -> Result<SinkWriter, Error> {
    match sink.kind {
        SinkKind::File(path) => {
            let file = OutputFile::open(&path).map_err(|e| match e {
                OpenError::Problem(problem) => Error::Output {
                    path: path.clone(),
                    problem,
                },
                OpenError::Io(source) => Error::Create {
                    path: path.clone(),
                    source,
                },
            })?;
            if let Some(temp) = file.temp_path() {
                run.temps.push(temp.to_path_buf());
            }
            run.sink_labels.push(sink.label.clone());
            Ok(SinkWriter {
                kind: WriterKind::File(Box::new(file)),
                closed: false,
            })
        }
        SinkKind::Writer(w) => {
            run.sink_labels.push(sink.label.clone());
            Ok(SinkWriter {
                kind: WriterKind::Writer(w),
                closed: false,
            })
        }
        SinkKind::Command(mut cmd) => {
            cmd.stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped());
            own_process_group(&mut cmd);
            let mut child = cmd.spawn().map_err(|e| Error::Spawn {
                side: Side::Target,
                step: Step::Load,
                label: sink.label.clone(),
                source: e,
            })?;
            let stdin = child.stdin.take().expect("piped stdin");
            let stdout = child.stdout.take().expect("piped stdout");
            let stderr = child.stderr.take().expect("piped stderr");
            run.sink_labels.push(sink.label.clone());
            run.sinks.push(ChildSide {
                label: sink.label.clone(),
                child,
                status: None,
                stderr: Some(tail::drain(stderr, STDERR_KEEP)),
                stdout: Some(tail::drain(stdout, STDOUT_KEEP)),
            });
            Ok(SinkWriter {
                kind: WriterKind::Child(stdin),
                closed: false,
            })
        }
    }
}

struct SinkWriter {
    kind: WriterKind,
    /// A child that closed its stdin: it gets no more bytes; its exit status decides.
    closed: bool,
}

enum WriterKind {
    Child(ChildStdin),
    /// An output file (its temporary, or a device written in place).
    File(Box<OutputFile>),
    Writer(Box<dyn Write + Send>),
}

impl SinkWriter {
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        match &mut self.kind {
            WriterKind::Child(w) => w.write_all(buf),
            WriterKind::File(w) => w.file().write_all(buf),
            WriterKind::Writer(w) => w.write_all(buf),
        }
    }
}

/// How the copy thread ended.
enum CopyEnd {
    Eof,
    Cancelled,
    Read(io::Error),
    /// The index of the failing writer in the sink list.
    Write(usize, io::Error),
}

fn copy(
    open: OpenReader,
    writers: &mut [SinkWriter],
    buffer_size: usize,
    counter: &AtomicU64,
    cancel: &Cancel,
) -> CopyEnd {
    let mut reader = match open() {
        Ok(r) => r,
        Err(e) => return CopyEnd::Read(e),
    };
    let mut buf = vec![0u8; buffer_size];
    loop {
        if cancel.is_cancelled() {
            return CopyEnd::Cancelled;
        }
        let n = match reader.read(&mut buf) {
            Ok(0) => return CopyEnd::Eof,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return CopyEnd::Read(e),
        };
        for (i, w) in writers.iter_mut().enumerate() {
            if w.closed {
                continue;
            }
            if let Err(e) = w.write_all(&buf[..n]) {
                // A load that stopped reading: stop feeding it, its exit status decides.
                if e.kind() == io::ErrorKind::BrokenPipe && matches!(w.kind, WriterKind::Child(_)) {
                    w.closed = true;
                    continue;
                }
                return CopyEnd::Write(i, e);
            }
        }
        counter.fetch_add(n as u64, Ordering::Relaxed);
    }
}

/// Who failed first.
enum Culprit {
    Cancelled,
    SourceExit(ExitStatus),
    SourceRead,
    /// Index into `Running::sinks` (a child that exited unsuccessfully).
    SinkExit(usize),
    /// Index into the writer list (a write error).
    SinkWrite(usize),
    /// Finishing a file failed (flush, fsync, rename).
    Finish(PathBuf, io::Error),
    /// Flushing a writer sink failed (index into the writer list).
    Flush(usize, io::Error),
}

struct ChildSide {
    label: String,
    child: Child,
    status: Option<ExitStatus>,
    stderr: Option<JoinHandle<Vec<u8>>>,
    stdout: Option<JoinHandle<Vec<u8>>>,
}

impl ChildSide {
    fn try_status(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            self.status = self.child.try_wait().ok().flatten();
        }
        self.status
    }

    fn wait(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            self.status = self.child.wait().ok();
        }
        self.status
    }

    fn kill(&mut self) {
        if self.try_status().is_none() {
            let _ = self.child.kill();
        }
    }
}

#[derive(Default)]
struct Running {
    source: Option<ChildSide>,
    sinks: Vec<ChildSide>,
    /// Temporaries of file sinks, removed on failure (also when the copy thread still holds
    /// them).
    temps: Vec<PathBuf>,
    sink_labels: Vec<String>,
}

impl Running {
    /// A child that exited unsuccessfully while the stream still flows.
    fn poll_failures(&mut self) -> Option<Culprit> {
        for (i, s) in self.sinks.iter_mut().enumerate() {
            if let Some(status) = s.try_status()
                && !status.success()
            {
                return Some(Culprit::SinkExit(i));
            }
        }
        if let Some(s) = &mut self.source
            && let Some(status) = s.try_status()
            && !status.success()
        {
            return Some(Culprit::SourceExit(status));
        }
        None
    }

    fn wait_source(&mut self) -> Option<ExitStatus> {
        self.source.as_mut().and_then(ChildSide::wait)
    }

    /// The source succeeded and the stream is complete: close every target in order and check it.
    fn finish(&mut self, writers: Vec<SinkWriter>) -> Result<(), Culprit> {
        let mut files = Vec::new();
        for (i, w) in writers.into_iter().enumerate() {
            match w.kind {
                WriterKind::Child(stdin) => drop(stdin),
                WriterKind::File(mut f) => {
                    if let Err(e) = f.file().flush().and_then(|()| f.sync()) {
                        let label = self.sink_labels.get(i).cloned().unwrap_or_default();
                        return Err(Culprit::Finish(PathBuf::from(label), e));
                    }
                    files.push(f);
                }
                WriterKind::Writer(mut w) => {
                    if let Err(e) = w.flush() {
                        return Err(Culprit::Flush(i, e));
                    }
                }
            }
        }
        for (i, s) in self.sinks.iter_mut().enumerate() {
            if let Some(status) = s.wait()
                && !status.success()
            {
                return Err(Culprit::SinkExit(i));
            }
        }
        for f in files {
            if let Err((path, e)) = f.commit() {
                return Err(Culprit::Finish(path, e));
            }
        }
        self.temps.clear();
        Ok(())
    }

    fn kill_all(&mut self) {
        // Targets first: a load must not see the end of a stream we are abandoning.
        for s in &mut self.sinks {
            s.kill();
        }
        if let Some(s) = &mut self.source {
            s.kill();
        }
    }

    fn wait_all(&mut self) {
        for s in &mut self.sinks {
            s.wait();
        }
        if let Some(s) = &mut self.source {
            s.wait();
        }
    }

    /// Used when setting up fails: stop what was started, remove what was created.
    fn abort(&mut self) {
        self.kill_all();
        self.wait_all();
        self.remove_partials();
    }

    fn remove_partials(&mut self) {
        for temp in self.temps.drain(..) {
            let _ = std::fs::remove_file(temp);
        }
    }

    fn explain(
        mut self,
        culprit: Culprit,
        copy_end: Option<CopyEnd>,
        source_label: &str,
        bytes: u64,
    ) -> Error {
        match culprit {
            Culprit::Cancelled => Error::Cancelled { bytes },
            Culprit::SourceExit(status) => {
                let side = self.source.as_mut().expect("a source child");
                Error::ChildFailed {
                    side: Side::Source,
                    step: Step::Save,
                    label: side.label.clone(),
                    status,
                    bytes,
                    stderr: stderr_of(side),
                }
            }
            Culprit::SourceRead => {
                // A child source that failed explains a read error better than the error does.
                if let Some(side) = self.source.as_mut()
                    && let Some(status) = side.status
                    && !status.success()
                {
                    return Error::ChildFailed {
                        side: Side::Source,
                        step: Step::Save,
                        label: side.label.clone(),
                        status,
                        bytes,
                        stderr: stderr_of(side),
                    };
                }
                let source = match copy_end {
                    Some(CopyEnd::Read(e)) => e,
                    _ => io::Error::other("the copy thread stopped unexpectedly"),
                };
                Error::Read {
                    label: source_label.to_owned(),
                    bytes,
                    source,
                }
            }
            Culprit::SinkExit(i) => self.sink_failed(i, bytes),
            Culprit::SinkWrite(i) => {
                let source = match copy_end {
                    Some(CopyEnd::Write(_, e)) => e,
                    _ => io::Error::other("the copy thread stopped unexpectedly"),
                };
                Error::Write {
                    label: self.sink_labels.get(i).cloned().unwrap_or_default(),
                    bytes,
                    source,
                }
            }
            Culprit::Finish(path, source) => Error::Finish { path, source },
            Culprit::Flush(i, source) => Error::Write {
                label: self.sink_labels.get(i).cloned().unwrap_or_default(),
                bytes,
                source,
            },
        }
    }

    fn sink_failed(&mut self, i: usize, bytes: u64) -> Error {
        let side = &mut self.sinks[i];
        let status = side.wait().expect("a waited child");
        Error::ChildFailed {
            side: Side::Target,
            step: Step::Load,
            label: side.label.clone(),
            status,
            bytes,
            stderr: stderr_of(side),
        }
    }

    fn into_transferred(mut self, bytes: u64, elapsed: Duration) -> Transferred {
        let mut target_stdout = String::new();
        let mut target_stderr = String::new();
        for s in &mut self.sinks {
            target_stdout.push_str(&tail::collect(s.stdout.take()));
            target_stderr.push_str(&tail::collect(s.stderr.take()));
        }
        let source_stderr = self
            .source
            .as_mut()
            .map(|s| tail::collect(s.stderr.take()))
            .unwrap_or_default();
        Transferred {
            bytes,
            elapsed,
            target_stdout,
            target_stderr,
            source_stderr,
        }
    }
}

fn stderr_of(side: &mut ChildSide) -> Option<StderrTail> {
    let text = tail::collect(side.stderr.take());
    (!text.is_empty()).then_some(StderrTail(text))
}

#[cfg(all(test, unix))]
mod tests {
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
}
