//! The pump itself, in three phases: start (targets, source, copy thread), supervise (to an
//! outcome: the stream complete, or who failed first), settle (commit, or stop and explain).
//! Its tests are in `pump_tests.rs`.
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
    Finishing(Box<dyn Finish>),
}

/// A target that is not a child but must be told the stream is complete, and answers (an
/// engine's load over its API): [`Finish::finish`] is called only after the source succeeded;
/// on any failure the writer is dropped unfinished instead.
pub trait Finish: Write + Send {
    /// Ends the stream; returns what the target said (`Loaded image: …` lines), or why it
    /// failed.
    fn finish(self: Box<Self>) -> io::Result<String>;
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

    /// A target that is told when the stream is complete (see [`Finish`]); what it answers is
    /// in [`Transferred::target_stdout`].
    pub fn finishing(label: impl Into<String>, target: Box<dyn Finish>) -> Self {
        Self {
            label: label.into(),
            kind: SinkKind::Finishing(target),
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

    /// Runs the transfer to the end, in three phases: [`Pump::start`] (targets, then the
    /// source, then the copy thread), [`Started::supervise`] (to an [`Outcome`]) and
    /// [`Started::settle`] (commit, or stop and explain). On error every child has been stopped
    /// and waited for and every temporary output file removed.
    ///
    /// # Panics
    /// When no sink was added.
    pub fn run(self, reporter: &mut dyn Reporter) -> Result<Transferred, Error> {
        assert!(!self.sinks.is_empty(), "a pump needs at least one sink");
        let mut started = self.start(reporter)?;
        let outcome = started.supervise(reporter);
        started.settle(outcome, reporter)
    }

    /// Opens the targets first (a file that can't be created or a load that can't start fails
    /// before the source produces anything), then the source, then starts the copy thread.
    fn start(self, reporter: &mut dyn Reporter) -> Result<Started, Error> {
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
        let (reader, source_label) = match open_source(source, &mut run) {
            Ok(r) => r,
            Err(e) => {
                run.abort();
                return Err(e);
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
        Ok(Started {
            run,
            copy,
            rx,
            counter,
            cancel,
            source_label,
            start,
            expected,
        })
    }
}

/// A transfer under way: children started, the copy thread running.
struct Started {
    run: Running,
    copy: JoinHandle<()>,
    /// The copy thread's end and the writers it hands back.
    rx: mpsc::Receiver<(CopyEnd, Vec<SinkWriter>)>,
    counter: Arc<AtomicU64>,
    cancel: Cancel,
    source_label: String,
    start: Instant,
    expected: Option<u64>,
}

/// How supervision ended.
enum Outcome {
    /// The stream is complete and the source succeeded: the writers, to close and commit.
    Complete(Vec<SinkWriter>),
    /// Someone failed first; the copy's end and writers when it had already handed them back.
    Failed(Culprit, Option<(CopyEnd, Vec<SinkWriter>)>),
}

impl Started {
    fn progress(&self) -> Progress {
        Progress {
            bytes: self.counter.load(Ordering::Relaxed),
            elapsed: self.start.elapsed(),
            expected: self.expected,
        }
    }

    /// Reports progress until the copy ends or someone fails, then decides which it was.
    fn supervise(&mut self, reporter: &mut dyn Reporter) -> Outcome {
        let mut culprit: Option<Culprit> = None;
        let mut done: Option<(CopyEnd, Vec<SinkWriter>)> = None;
        let mut last_reported = u64::MAX;
        loop {
            match self.rx.recv_timeout(TICK) {
                Ok(d) => {
                    done = Some(d);
                    break;
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
            if self.cancel.is_cancelled() {
                culprit = Some(Culprit::Cancelled);
                break;
            }
            if let Some(c) = self.run.poll_failures() {
                culprit = Some(c);
                break;
            }
            let p = self.progress();
            if p.bytes != last_reported {
                last_reported = p.bytes;
                reporter.progress(&p);
            }
        }
        // The stream ended on its own: find out whether it ended well.
        if culprit.is_none() {
            match &done {
                Some((CopyEnd::Eof, _)) => {
                    if let Some(status) = self.run.wait_source()
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
        if self.cancel.is_cancelled() {
            culprit = Some(Culprit::Cancelled);
        }
        match (culprit, done) {
            (None, Some((_, writers))) => Outcome::Complete(writers),
            (Some(c), done) => Outcome::Failed(c, done),
            (None, None) => unreachable!("no copy end is a failure"),
        }
    }

    /// Closes and commits every target after a complete stream; after a failure (or a target
    /// that fails to commit) stops everything, removes what was written, and explains.
    fn settle(self, outcome: Outcome, reporter: &mut dyn Reporter) -> Result<Transferred, Error> {
        let Started {
            mut run,
            copy,
            rx,
            counter,
            source_label,
            start,
            expected,
            ..
        } = self;
        let (culprit, mut done) = match outcome {
            Outcome::Complete(writers) => match run.finish(writers) {
                Ok(()) => {
                    let p = Progress {
                        bytes: counter.load(Ordering::Relaxed),
                        elapsed: start.elapsed(),
                        expected,
                    };
                    reporter.finished(&p);
                    let _ = copy.join();
                    return Ok(run.into_transferred(p.bytes, start.elapsed()));
                }
                Err(c) => (c, None),
            },
            Outcome::Failed(c, done) => (c, done),
        };
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
        let bytes = counter.load(Ordering::Relaxed);
        reporter.failed(&Progress {
            bytes,
            elapsed: start.elapsed(),
            expected,
        });
        Err(run.explain(culprit, copy_end, &source_label, bytes))
    }
}

/// Starts the source: a child's stdout, or the reader as given.
fn open_source(source: Source, run: &mut Running) -> Result<(OpenReader, String), Error> {
    match source.kind {
        SourceKind::Reader(open) => Ok((open, source.label)),
        SourceKind::Command(mut cmd) => {
            cmd.stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped());
            own_process_group(&mut cmd);
            let mut child = cmd.spawn().map_err(|e| Error::Spawn {
                side: Side::Source,
                step: Step::Save,
                label: source.label.clone(),
                source: e,
            })?;
            let stdout = child.stdout.take().expect("piped stdout");
            let stderr = child.stderr.take().expect("piped stderr");
            run.source = Some(ChildSide {
                label: source.label.clone(),
                child,
                status: None,
                stderr: Some(tail::drain(stderr, STDERR_KEEP)),
                stdout: None,
            });
            Ok((
                Box::new(move || Ok(Box::new(stdout) as Box<dyn Read>)),
                source.label,
            ))
        }
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
            run.sinks.push(SinkSide {
                label: sink.label,
                child: None,
                finishing: false,
            });
            Ok(SinkWriter {
                kind: WriterKind::File(Box::new(file)),
                closed: false,
            })
        }
        SinkKind::Writer(w) => {
            run.sinks.push(SinkSide {
                label: sink.label,
                child: None,
                finishing: false,
            });
            Ok(SinkWriter {
                kind: WriterKind::Writer(w),
                closed: false,
            })
        }
        SinkKind::Finishing(w) => {
            run.sinks.push(SinkSide {
                label: sink.label,
                child: None,
                finishing: true,
            });
            Ok(SinkWriter {
                kind: WriterKind::Finishing(w),
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
            run.sinks.push(SinkSide {
                label: sink.label.clone(),
                finishing: false,
                child: Some(ChildSide {
                    label: sink.label,
                    child,
                    status: None,
                    stderr: Some(tail::drain(stderr, STDERR_KEEP)),
                    stdout: Some(tail::drain(stdout, STDOUT_KEEP)),
                }),
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
    Finishing(Box<dyn Finish>),
}

impl SinkWriter {
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        match &mut self.kind {
            WriterKind::Child(w) => w.write_all(buf),
            WriterKind::File(w) => w.file().write_all(buf),
            WriterKind::Writer(w) => w.write_all(buf),
            WriterKind::Finishing(w) => w.write_all(buf),
        }
    }
}

/// How the copy thread ended.
enum CopyEnd {
    Eof,
    Cancelled,
    Read(io::Error),
    /// The failing sink (its index in the pump's sinks).
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
    /// A child sink that exited unsuccessfully. Every sink index is the sink's position in the
    /// pump (`Running::sinks`, the writer list and the copy's `CopyEnd::Write` alike).
    SinkExit(usize),
    /// A write error.
    SinkWrite(usize),
    /// Finishing a file failed (flush, fsync, rename).
    Finish(PathBuf, io::Error),
    /// Flushing a writer sink failed.
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

/// One sink, in the pump's order: its label, and its child when it is a command.
struct SinkSide {
    label: String,
    child: Option<ChildSide>,
    /// A [`Finish`] target: its failures are a load's, not a file's.
    finishing: bool,
}

#[derive(Default)]
struct Running {
    source: Option<ChildSide>,
    /// Every sink, indexed as the pump's sinks.
    sinks: Vec<SinkSide>,
    /// Temporaries of file sinks, removed on failure (also when the copy thread still holds
    /// them).
    temps: Vec<PathBuf>,
    /// What finishing targets answered (see [`Finish`]).
    answers: String,
}

impl Running {
    /// Sink `i`'s label.
    fn label(&self, i: usize) -> String {
        self.sinks
            .get(i)
            .map(|s| s.label.clone())
            .unwrap_or_default()
    }

    /// A child that exited unsuccessfully while the stream still flows.
    fn poll_failures(&mut self) -> Option<Culprit> {
        for (i, s) in self.sinks.iter_mut().enumerate() {
            if let Some(status) = s.child.as_mut().and_then(ChildSide::try_status)
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
                        return Err(Culprit::Finish(PathBuf::from(self.label(i)), e));
                    }
                    files.push(f);
                }
                WriterKind::Writer(mut w) => {
                    if let Err(e) = w.flush() {
                        return Err(Culprit::Flush(i, e));
                    }
                }
                WriterKind::Finishing(w) => match w.finish() {
                    Ok(said) => self.answers.push_str(&said),
                    Err(e) => return Err(Culprit::Flush(i, e)),
                },
            }
        }
        for (i, s) in self.sinks.iter_mut().enumerate() {
            if let Some(status) = s.child.as_mut().and_then(ChildSide::wait)
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
        for s in self.sinks.iter_mut().filter_map(|s| s.child.as_mut()) {
            s.kill();
        }
        if let Some(s) = &mut self.source {
            s.kill();
        }
    }

    fn wait_all(&mut self) {
        for s in self.sinks.iter_mut().filter_map(|s| s.child.as_mut()) {
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
                if self.sinks[i].finishing {
                    return Error::TargetRefused {
                        label: self.label(i),
                        bytes,
                        source,
                    };
                }
                Error::Write {
                    label: self.label(i),
                    bytes,
                    source,
                }
            }
            Culprit::Finish(path, source) => Error::Finish { path, source },
            Culprit::Flush(i, source) if self.sinks[i].finishing => Error::TargetRefused {
                label: self.label(i),
                bytes,
                source,
            },
            Culprit::Flush(i, source) => Error::Write {
                label: self.label(i),
                bytes,
                source,
            },
        }
    }

    fn sink_failed(&mut self, i: usize, bytes: u64) -> Error {
        let side = self.sinks[i].child.as_mut().expect("a child sink");
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
        let mut target_stdout = std::mem::take(&mut self.answers);
        let mut target_stderr = String::new();
        for s in self.sinks.iter_mut().filter_map(|s| s.child.as_mut()) {
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
#[path = "pump_tests.rs"]
mod tests;
