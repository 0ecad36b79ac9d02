//! The plugin's stdin, stdout and stderr: a bounded channel of input chunks (so a big listing
//! streams through in constant memory) and capped in-memory outputs.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::Receiver;
use std::sync::{Arc, Mutex};

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
}

/// stdin: chunks from the feeding thread; end of input when the sender is dropped.
pub(crate) struct ChannelStdin {
    inner: Arc<Mutex<ChannelReader>>,
}

struct ChannelReader {
    rx: Receiver<Bytes>,
    pending: Bytes,
}

impl ChannelStdin {
    pub(crate) fn new(rx: Receiver<Bytes>) -> Self {
        Self {
            inner: Arc::new(Mutex::new(ChannelReader {
                rx,
                pending: Bytes::new(),
            })),
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
        if r.pending.is_empty() {
            // Blocks until the feeder sends a chunk or finishes: this runs on the plugin's
            // own thread, which has nothing else to do meanwhile.
            match r.rx.recv() {
                Ok(chunk) => r.pending = chunk,
                Err(_) => return Err(StreamError::Closed),
            }
        }
        let n = size.min(r.pending.len());
        Ok(r.pending.split_to(n))
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for ChannelInput {
    async fn ready(&mut self) {}
}

/// stdout or stderr kept in memory up to a cap. For stdout, going over the cap traps the guest
/// (a full pipe would only give it EIO, which many programs ignore); for stderr, bytes past the
/// cap are dropped silently.
#[derive(Clone)]
pub(crate) struct CappedOutput {
    buf: Arc<Mutex<Vec<u8>>>,
    kind: OutputKind,
}

#[derive(Clone)]
enum OutputKind {
    /// Trap past `cap(progress)`.
    Stdout {
        progress: Arc<Progress>,
        cap: Arc<dyn Fn(u64) -> u64 + Send + Sync>,
    },
    /// Keep the first `keep` bytes.
    Stderr { keep: usize },
}

impl CappedOutput {
    pub(crate) fn stdout(
        progress: Arc<Progress>,
        cap: Arc<dyn Fn(u64) -> u64 + Send + Sync>,
    ) -> Self {
        Self {
            buf: Arc::default(),
            kind: OutputKind::Stdout { progress, cap },
        }
    }

    pub(crate) fn stderr(keep: usize) -> Self {
        Self {
            buf: Arc::default(),
            kind: OutputKind::Stderr { keep },
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
        match &self.kind {
            OutputKind::Stdout { progress, cap } => {
                let cap = cap(progress.input_bytes.load(Ordering::Relaxed));
                if (buf.len() + bytes.len()) as u64 > cap {
                    progress.output_overflow.store(true, Ordering::Relaxed);
                    return Err(StreamError::trap("plugin output over its cap"));
                }
                buf.extend_from_slice(&bytes);
            }
            OutputKind::Stderr { keep } => {
                let room = keep.saturating_sub(buf.len());
                buf.extend_from_slice(&bytes[..room.min(bytes.len())]);
            }
        }
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
