//! The plugin's stdin, stdout and stderr: a bounded channel of reused input chunks (so a big
//! listing streams through in constant memory), stdout streamed to a checking thread under a
//! cap, and stderr capped in memory.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

use bytes::Bytes;
use wasmtime_wasi::cli::{IsTerminal, StdinStream, StdoutStream};
use wasmtime_wasi::p2::pipe::{MemoryInputPipe, MemoryOutputPipe};
use wasmtime_wasi::p2::{InputStream, OutputStream, Pollable, StreamError, StreamResult};

/// Counters shared by the feeding thread, the streams and the store's hooks.
#[derive(Debug, Default)]
pub(crate) struct Progress {
    /// Complete input lines fed so far.
    pub(crate) records: AtomicU64,
    /// Input bytes fed so far.
    pub(crate) input_bytes: AtomicU64,
    /// Set when stdout went over its cap.
    pub(crate) output_overflow: AtomicBool,
    /// The import the plugin was waiting in when the deadline passed.
    pub(crate) blocked_in: OnceLock<&'static str>,
}

/// stdin: chunks from the feeding thread; end of input when the sender is dropped. Each chunk,
/// once read, goes back to the feeder to be filled again, so a big listing streams through a
/// few reused buffers (no allocation, zeroing or page faults per chunk). A read that has to
/// wait for the next chunk waits at most until the run's deadline.
#[derive(Clone)]
pub(crate) struct ChannelStdin {
    inner: Arc<Mutex<ChannelReader>>,
}

struct ChannelReader {
    rx: Receiver<Vec<u8>>,
    recycle: Sender<Vec<u8>>,
    pending: Vec<u8>,
    pos: usize,
    eof: bool,
    deadline: Instant,
    progress: Arc<Progress>,
}

/// Whether stdin has something for the plugin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fill {
    /// This many bytes can be read at once.
    Data(usize),
    /// The input has ended.
    Eof,
    /// Nothing came before the time given.
    TimedOut,
}

impl ChannelStdin {
    pub(crate) fn new(
        rx: Receiver<Vec<u8>>,
        recycle: Sender<Vec<u8>>,
        deadline: Instant,
        progress: Arc<Progress>,
    ) -> Self {
        Self {
            inner: Arc::new(Mutex::new(ChannelReader {
                rx,
                recycle,
                pending: Vec::new(),
                pos: 0,
                eof: false,
                deadline,
                progress,
            })),
        }
    }

    /// Waits until `until` at most for input (`poll_oneoff` on stdin).
    pub(crate) fn fill(&self, until: Option<Instant>) -> Fill {
        self.inner.lock().expect("stdin lock").fill(until)
    }
}

impl ChannelReader {
    /// Makes input available: what is pending, else the next chunk, waiting until `until`
    /// at most (`None`: until the deadline).
    fn fill(&mut self, until: Option<Instant>) -> Fill {
        if self.pos < self.pending.len() {
            return Fill::Data(self.pending.len() - self.pos);
        }
        if self.eof {
            return Fill::Eof;
        }
        let until = until.unwrap_or(self.deadline);
        match self
            .rx
            .recv_timeout(until.saturating_duration_since(Instant::now()))
        {
            Ok(chunk) => {
                let done = std::mem::replace(&mut self.pending, chunk);
                self.pos = 0;
                // The feeder may have finished: then the buffer is simply freed.
                let _ = self.recycle.send(done);
                Fill::Data(self.pending.len())
            }
            Err(RecvTimeoutError::Disconnected) => {
                self.eof = true;
                Fill::Eof
            }
            Err(RecvTimeoutError::Timeout) => Fill::TimedOut,
        }
    }
}

impl IsTerminal for ChannelStdin {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdinStream for ChannelStdin {
    fn async_stream(&self) -> Box<dyn tokio::io::AsyncRead + Send + Sync> {
        // Only WASI p2/p3 guests ask for this; p1 reads through `p2_stream`.
        Box::new(MemoryInputPipe::new(Bytes::new()))
    }

    fn p2_stream(&self) -> Box<dyn InputStream> {
        Box::new(ChannelInput(self.inner.clone()))
    }
}

struct ChannelInput(Arc<Mutex<ChannelReader>>);

impl InputStream for ChannelInput {
    fn read(&mut self, size: usize) -> StreamResult<Bytes> {
        let mut r = self.0.lock().expect("stdin lock");
        if r.pos == r.pending.len() {
            // Waits for the feeder to send a chunk or finish, but not past the deadline: this
            // runs on the plugin's own thread, which has nothing else to do meanwhile.
            match r.fill(None) {
                Fill::Data(_) => {}
                Fill::Eof => return Err(StreamError::Closed),
                Fill::TimedOut => {
                    let _ = r.progress.blocked_in.set("fd_read");
                    return Err(StreamError::Trap(wasmtime::Error::new(
                        crate::imports::Blocked("fd_read"),
                    )));
                }
            }
        }
        let n = size.min(r.pending.len() - r.pos);
        let bytes = Bytes::copy_from_slice(&r.pending[r.pos..r.pos + n]);
        r.pos += n;
        Ok(bytes)
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for ChannelInput {
    async fn ready(&mut self) {}
}

/// stdout: every write goes to a checking thread as it happens (so references are checked
/// while the plugin still runs), up to a cap that traps the guest (a full pipe would only give
/// it EIO, which many programs ignore).
#[derive(Clone)]
pub(crate) struct StreamedStdout {
    tx: Sender<Bytes>,
    written: Arc<AtomicU64>,
    progress: Arc<Progress>,
    cap: Arc<dyn Fn(u64) -> u64 + Send + Sync>,
}

impl StreamedStdout {
    pub(crate) fn new(
        tx: Sender<Bytes>,
        progress: Arc<Progress>,
        cap: Arc<dyn Fn(u64) -> u64 + Send + Sync>,
    ) -> Self {
        Self {
            tx,
            written: Arc::default(),
            progress,
            cap,
        }
    }
}

impl IsTerminal for StreamedStdout {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for StreamedStdout {
    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(MemoryOutputPipe::new(0))
    }

    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }
}

impl OutputStream for StreamedStdout {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        let cap = (self.cap)(self.progress.input_bytes.load(Ordering::Relaxed));
        let total = self.written.load(Ordering::Relaxed) + bytes.len() as u64;
        if total > cap {
            self.progress.output_overflow.store(true, Ordering::Relaxed);
            return Err(StreamError::trap("plugin output over its cap"));
        }
        self.written.store(total, Ordering::Relaxed);
        // The checker stops listening only after it has seen everything or failed.
        let _ = self.tx.send(bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(1 << 20)
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for StreamedStdout {
    async fn ready(&mut self) {}
}

/// stderr, kept in memory up to a cap; bytes past the cap are dropped silently.
#[derive(Clone)]
pub(crate) struct CappedOutput {
    buf: Arc<Mutex<Vec<u8>>>,
    keep: usize,
}

impl CappedOutput {
    pub(crate) fn stderr(keep: usize) -> Self {
        Self {
            buf: Arc::default(),
            keep,
        }
    }

    pub(crate) fn take(&self) -> Vec<u8> {
        std::mem::take(&mut *self.buf.lock().expect("output lock"))
    }
}

impl IsTerminal for CappedOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for CappedOutput {
    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(MemoryOutputPipe::new(0))
    }

    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }
}

impl OutputStream for CappedOutput {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        let mut buf = self.buf.lock().expect("output lock");
        let room = self.keep.saturating_sub(buf.len());
        buf.extend_from_slice(&bytes[..room.min(bytes.len())]);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(1 << 20)
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for CappedOutput {
    async fn ready(&mut self) {}
}
