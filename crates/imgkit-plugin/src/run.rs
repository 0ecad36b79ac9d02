//! Running a plugin: a fresh store per run with fuel topped up as records arrive, an epoch
//! deadline, a memory limiter, capped outputs, and the input streamed in from a feeding loop.

use std::io::Read;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, channel, sync_channel};
use std::time::{Duration, Instant};

use bytes::Bytes;
use imgkit_types::ImageRef;
use wasmtime::{CallHook, ResourceLimiter, Store, Trap, UpdateDeadline};
use wasmtime_wasi::p1::WasiP1Ctx;
use wasmtime_wasi::{HostMonotonicClock, HostWallClock, I32Exit, WasiCtxBuilder};

use crate::error::Error;
use crate::imports::{Blocked, Clocks};
use crate::limits::{Clock, Limits, STDERR_SHOWN};
use crate::plugin::Plugin;
use crate::stdio::{CappedOutput, ChannelStdin, Progress, StreamedStdout};

/// How often the deadline is checked.
const TICK: Duration = Duration::from_millis(50);
/// Input chunk size, and how many chunks may wait for the plugin.
const CHUNK: usize = 256 << 10;
const CHUNKS_IN_FLIGHT: usize = 4;
/// The plugin runs on its own thread with this much native stack (the wasm stack is 1 MiB).
const THREAD_STACK: usize = 8 << 20;

/// What a successful run produced.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Outcome {
    /// The references printed, one per non-empty stdout line, each checked with
    /// [`ImageRef::parse`] and returned as printed.
    pub references: Vec<String>,
    /// The plugin's stderr (up to [`Limits::max_stderr`] bytes, lossily decoded).
    pub stderr: String,
    /// Input records (lines) fed.
    pub records: u64,
    /// Fuel the run used.
    pub fuel_used: u64,
}

/// Per-run store data.
pub(crate) struct State {
    pub(crate) wasi: WasiP1Ctx,
    limiter: MemoryLimiter,
    pub(crate) progress: Arc<Progress>,
    limits: Limits,
    fuel_granted: u64,
    pub(crate) deadline: Instant,
    deadline_hit: bool,
    /// The clocks the plugin sees, for `poll_oneoff`.
    pub(crate) clocks: Clocks,
    /// The plugin's stdin, for `poll_oneoff`.
    pub(crate) stdin: ChannelStdin,
}

struct MemoryLimiter {
    limit: u64,
    refused: Option<u64>,
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired as u64 > self.limit {
            self.refused = Some(desired as u64);
            return Ok(false);
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 1 << 20)
    }

    fn instances(&self) -> usize {
        1
    }

    fn memories(&self) -> usize {
        1
    }

    fn tables(&self) -> usize {
        4
    }
}

/// 2026-01-01T00:00:00Z, and a monotonic clock that never moves.
struct FixedClock;

impl HostWallClock for FixedClock {
    fn resolution(&self) -> Duration {
        Duration::from_secs(1)
    }
    fn now(&self) -> Duration {
        // 2026-01-01T00:00:00Z
        Duration::from_hours(490_896)
    }
}

impl HostMonotonicClock for FixedClock {
    fn resolution(&self) -> u64 {
        1
    }
    fn now(&self) -> u64 {
        0
    }
}

/// The real monotonic clock, counted from the run's start (so `poll_oneoff` can tell how far
/// off an absolute time is).
struct RealMonotonic(Instant);

impl HostMonotonicClock for RealMonotonic {
    fn resolution(&self) -> u64 {
        1
    }
    fn now(&self) -> u64 {
        self.0.elapsed().as_nanos() as u64
    }
}

/// The records to feed: borrowed (fed from the calling thread, which waits for the end of
/// them), or owned (fed from a thread of their own, left behind if the plugin is done while a
/// read of the input still waits).
enum Input<'a> {
    Borrowed(&'a mut dyn Read),
    Owned(Box<dyn Read + Send>),
}

/// What the plugin thread hands back.
struct Finished {
    result: wasmtime::Result<()>,
    fuel_left: u64,
    fuel_granted: u64,
    deadline_hit: bool,
    memory_refused: Option<u64>,
}

impl Plugin {
    /// Runs the plugin on `records_jsonl` (one JSON record per line, streamed) and returns the
    /// references it printed. Its stderr is dropped; use [`Plugin::execute`] to show it.
    pub fn run(&self, records_jsonl: &mut dyn Read) -> Result<Vec<String>, Error> {
        self.execute(records_jsonl).map(|o| o.references)
    }

    /// Runs the plugin on `records_jsonl` and returns everything it produced.
    pub fn execute(&self, records_jsonl: &mut dyn Read) -> Result<Outcome, Error> {
        self.execute_input(Input::Borrowed(records_jsonl))
    }

    /// As [`Plugin::execute`], for an input that may stall (a terminal, a pipe): the records
    /// are fed from a thread of their own, so the run ends at the plugin's deadline even while
    /// a read of the input still waits (that thread then ends with its read).
    pub fn execute_owned(&self, records_jsonl: Box<dyn Read + Send>) -> Result<Outcome, Error> {
        self.execute_input(Input::Owned(records_jsonl))
    }

    fn execute_input(&self, input: Input<'_>) -> Result<Outcome, Error> {
        let started = Instant::now();
        let deadline = started + self.options.limits.timeout;
        let limits = self.options.limits.clone();
        let progress = Arc::new(Progress::default());
        let (tx, rx) = sync_channel::<Vec<u8>>(CHUNKS_IN_FLIGHT);
        let (recycle_tx, recycle_rx) = channel::<Vec<u8>>();
        let (out_tx, out_rx) = channel::<Bytes>();
        let cap_limits = limits.clone();
        let stdout = StreamedStdout::new(
            out_tx,
            progress.clone(),
            Arc::new(move |input| cap_limits.output_cap(input)),
        );
        let stderr = CappedOutput::stderr(usize::try_from(limits.max_stderr).unwrap_or(usize::MAX));

        let stdin = ChannelStdin::new(rx, recycle_tx, deadline, progress.clone());
        let mut wasi = WasiCtxBuilder::new();
        wasi.stdin(stdin.clone())
            .stdout(stdout)
            .stderr(stderr.clone())
            .arg(&self.name)
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false);
        for (k, v) in &self.options.sandbox.args {
            wasi.arg(format!("{k}={v}"));
        }
        let clock = self.options.sandbox.clock;
        match clock {
            Clock::Fixed => {
                wasi.wall_clock(FixedClock)
                    .monotonic_clock(FixedClock)
                    .insecure_random_seed(0);
            }
            Clock::Real => {
                wasi.monotonic_clock(RealMonotonic(started));
            }
        }
        let state = State {
            wasi: wasi.build_p1(),
            limiter: MemoryLimiter {
                limit: limits.memory,
                refused: None,
            },
            progress: progress.clone(),
            fuel_granted: limits.fuel_base(),
            limits: limits.clone(),
            deadline,
            deadline_hit: false,
            clocks: Clocks {
                kind: clock,
                start: started,
            },
            stdin,
        };
        let mut store = Store::new(&self.engine, state);
        store.limiter(|s| &mut s.limiter);
        store
            .set_fuel(limits.fuel_base())
            .map_err(|e| self.runtime(&e))?;
        store.call_hook(top_up_fuel);
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(|mut cx| {
            if Instant::now() >= cx.data().deadline {
                cx.data_mut().deadline_hit = true;
                Ok(UpdateDeadline::Interrupt)
            } else {
                Ok(UpdateDeadline::Continue(1))
            }
        });

        let (stop_tx, stop_rx) = sync_channel::<()>(0);
        let (finished, input_error, checked) = std::thread::scope(|scope| {
            let engine = &self.engine;
            // References are checked as the plugin prints them, on the core the feeder leaves
            // idle, rather than all at the end.
            let path = &self.path;
            let checker = scope.spawn(move || check_output(path, &out_rx));
            let ticker = scope.spawn(move || {
                while let Err(RecvTimeoutError::Timeout) = stop_rx.recv_timeout(TICK) {
                    engine.increment_epoch();
                }
            });
            let pre = &self.pre;
            let guest = std::thread::Builder::new()
                .name("imgkit-plugin".into())
                .stack_size(THREAD_STACK)
                .spawn_scoped(scope, move || {
                    let result = pre.instantiate(&mut store).and_then(|instance| {
                        let start = instance.get_typed_func::<(), ()>(&mut store, "_start")?;
                        start.call(&mut store, ())
                    });
                    let data = store.data();
                    Finished {
                        result,
                        fuel_left: store.get_fuel().unwrap_or(0),
                        fuel_granted: data.fuel_granted,
                        deadline_hit: data.deadline_hit,
                        memory_refused: data.limiter.refused,
                    }
                    // The store drops here, and with it stdin's receiver (which stops the feeder)
                    // and stdout's sender (which ends the checker's input).
                })
                .expect("spawn the plugin thread");
            let (finished, input_error) = match input {
                Input::Borrowed(records) => {
                    let input_error = feed(records, &tx, &recycle_rx, &progress).err();
                    drop(tx);
                    (
                        guest.join().expect("plugin thread does not panic"),
                        input_error,
                    )
                }
                Input::Owned(mut records) => {
                    let (result_tx, result_rx) = sync_channel(1);
                    let progress = progress.clone();
                    std::thread::Builder::new()
                        .name("imgkit-plugin-input".into())
                        .spawn(move || {
                            let result = feed(&mut *records, &tx, &recycle_rx, &progress);
                            // Before the end of input reaches the plugin, so a plugin that
                            // read to the end finds the result here.
                            let _ = result_tx.send(result.err());
                            drop(tx);
                        })
                        .expect("spawn the input thread");
                    let finished = guest.join().expect("plugin thread does not panic");
                    (finished, result_rx.try_recv().ok().flatten())
                }
            };
            drop(stop_tx);
            ticker.join().expect("ticker thread does not panic");
            let checked = checker.join().expect("output checker does not panic");
            (finished, input_error, checked)
        });

        let err_text = String::from_utf8_lossy(&stderr.take()).into_owned();
        if let Some(source) = input_error {
            return Err(Error::Input {
                plugin: self.path.clone(),
                source,
            });
        }
        let records = progress.records.load(Ordering::Relaxed);
        if let Err(e) = &finished.result
            && let Some(err) = self.failure(e, &finished, &progress, &limits, records, &err_text)
        {
            return Err(err);
        }
        let references = checked?;
        Ok(Outcome {
            references,
            stderr: err_text,
            records,
            fuel_used: finished.fuel_granted.saturating_sub(finished.fuel_left),
        })
    }

    /// Maps a failed `_start` to a typed error; `None` for `exit(0)`.
    fn failure(
        &self,
        e: &wasmtime::Error,
        finished: &Finished,
        progress: &Progress,
        limits: &Limits,
        records: u64,
        stderr: &str,
    ) -> Option<Error> {
        let plugin = self.path.clone();
        let stderr = head(stderr);
        let exit = e.downcast_ref::<I32Exit>().map(|x| x.0);
        if exit == Some(0) {
            return None;
        }
        if progress.output_overflow.load(Ordering::Relaxed) {
            let limit = limits.output_cap(progress.input_bytes.load(Ordering::Relaxed));
            return Some(Error::OutputTooLarge {
                plugin,
                limit,
                stderr,
            });
        }
        if let Some(requested) = finished.memory_refused {
            return Some(Error::MemoryLimit {
                plugin,
                requested,
                limit: limits.memory,
                stderr,
            });
        }
        // The deadline passed while the plugin waited in a host call.
        let blocked = e.downcast_ref::<Blocked>().map(|b| b.0);
        if let Some(import) = blocked.or_else(|| progress.blocked_in.get().copied()) {
            return Some(Error::Deadline {
                plugin,
                timeout: limits.timeout,
                blocked_in: Some(import.to_owned()),
                stderr,
            });
        }
        if let Some(code) = exit {
            return Some(Error::Exit {
                plugin,
                code,
                stderr,
            });
        }
        let kind = match e.downcast_ref::<Trap>() {
            Some(Trap::OutOfFuel) => {
                // The nominal budget for the records fed (the fuel actually granted may lag
                // by the last chunk, which the plugin had not read yet).
                return Some(Error::OutOfFuel {
                    plugin,
                    budget: limits.fuel_for(records),
                    records,
                    stderr,
                });
            }
            Some(Trap::Interrupt) => {
                return Some(Error::Deadline {
                    plugin,
                    timeout: limits.timeout,
                    blocked_in: None,
                    stderr,
                });
            }
            Some(Trap::StackOverflow) => "stack overflow".to_owned(),
            Some(Trap::MemoryOutOfBounds) => {
                "out-of-bounds memory access (also how a guest stack overflow shows)".to_owned()
            }
            Some(Trap::UnreachableCodeReached) => {
                "unreachable instruction (how a Rust panic or abort shows)".to_owned()
            }
            Some(trap) => trap.to_string(),
            None if finished.deadline_hit => {
                return Some(Error::Deadline {
                    plugin,
                    timeout: limits.timeout,
                    blocked_in: None,
                    stderr,
                });
            }
            None => format!("{e:#}"),
        };
        Some(Error::Trap {
            plugin,
            kind,
            stderr,
        })
    }

    fn runtime(&self, e: &wasmtime::Error) -> Error {
        Error::Runtime {
            plugin: self.path.clone(),
            reason: format!("{e:#}"),
        }
    }
}

/// The call hook: on every return from a host call (reading stdin among them), grant the
/// fuel for the records fed since.
fn top_up_fuel(
    mut cx: wasmtime::StoreContextMut<'_, State>,
    hook: CallHook,
) -> wasmtime::Result<()> {
    if !matches!(hook, CallHook::ReturningFromHost) {
        return Ok(());
    }
    let records = cx.data().progress.records.load(Ordering::Relaxed);
    let want = cx.data().limits.fuel_for(records);
    let granted = cx.data().fuel_granted;
    if want > granted {
        let left = cx.get_fuel()?;
        cx.set_fuel(left.saturating_add(want - granted))?;
        cx.data_mut().fuel_granted = want;
    }
    Ok(())
}

/// Copies the input into the channel in chunks, counting lines and bytes before each send so
/// the fuel and output caps already include a chunk when the plugin sees it. Buffers the
/// plugin has read come back through `recycled` and are filled again.
fn feed(
    input: &mut dyn Read,
    tx: &SyncSender<Vec<u8>>,
    recycled: &Receiver<Vec<u8>>,
    progress: &Progress,
) -> std::io::Result<()> {
    let mut last = b'\n';
    loop {
        let mut buf = recycled.try_recv().unwrap_or_default();
        buf.resize(CHUNK, 0);
        let n = match input.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        buf.truncate(n);
        last = buf[n - 1];
        #[allow(clippy::naive_bytecount)] // one pass over a chunk: the loop vectorizes
        let lines = buf.iter().filter(|&&b| b == b'\n').count() as u64;
        progress.records.fetch_add(lines, Ordering::Relaxed);
        progress.input_bytes.fetch_add(n as u64, Ordering::Relaxed);
        if tx.send(buf).is_err() {
            // The plugin has finished without reading everything: that is its right.
            return Ok(());
        }
    }
    if last != b'\n' {
        progress.records.fetch_add(1, Ordering::Relaxed);
    }
    Ok(())
}

/// The first [`STDERR_SHOWN`] bytes of `s`, cut at a character boundary.
fn head(s: &str) -> String {
    if s.len() <= STDERR_SHOWN {
        return s.to_owned();
    }
    let mut end = STDERR_SHOWN;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

/// Splits stdout, as it arrives, into lines and checks each is an image reference. After the
/// first bad line it only drains the channel.
fn check_output(plugin: &Path, chunks: &Receiver<Bytes>) -> Result<Vec<String>, Error> {
    let mut lines = OutputLines {
        plugin,
        refs: Vec::new(),
        number: 0,
        error: None,
    };
    let mut partial = Vec::new();
    for chunk in chunks {
        if lines.error.is_some() {
            continue;
        }
        let mut rest = &chunk[..];
        while let Some(end) = rest.iter().position(|&b| b == b'\n') {
            if partial.is_empty() {
                lines.check(&rest[..end]);
            } else {
                partial.extend_from_slice(&rest[..end]);
                lines.check(&partial);
                partial.clear();
            }
            rest = &rest[end + 1..];
        }
        partial.extend_from_slice(rest);
    }
    if !partial.is_empty() {
        lines.check(&partial);
    }
    match lines.error {
        Some(e) => Err(e),
        None => Ok(lines.refs),
    }
}

struct OutputLines<'a> {
    plugin: &'a Path,
    refs: Vec<String>,
    /// Lines seen, empty ones included.
    number: usize,
    error: Option<Error>,
}

impl OutputLines<'_> {
    fn check(&mut self, line: &[u8]) {
        self.number += 1;
        if line.is_empty() || self.error.is_some() {
            return;
        }
        let invalid = |text: String, reason: String| Error::InvalidOutput {
            plugin: self.plugin.to_path_buf(),
            line: self.number,
            text,
            reason,
        };
        let Ok(text) = std::str::from_utf8(line) else {
            let text = String::from_utf8_lossy(line).into_owned();
            self.error = Some(invalid(text, "it is not UTF-8".into()));
            return;
        };
        if let Err(e) = ImageRef::parse(text) {
            let shown: String = text.chars().take(200).collect();
            self.error = Some(invalid(shown, e.to_string()));
            return;
        }
        self.refs.push(text.to_owned());
    }
}
