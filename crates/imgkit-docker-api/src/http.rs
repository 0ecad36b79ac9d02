//! HTTP/1.1 over one connection, blocking: a request head (and an optional body, whole or
//! chunked), a response head read within bounds, and the response body as a reader that undoes
//! its framing (`Content-Length`, `chunked`, or until the daemon closes). No timeouts on bodies:
//! a save of many gigabytes streams as long as it takes.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::TcpStream;
#[cfg(unix)]
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

/// The longest response head accepted (status line and headers).
const MAX_HEAD: usize = 64 * 1024;
/// The longest chunk-size line accepted.
const MAX_CHUNK_LINE: usize = 4096;

/// A connected socket: a unix socket, TCP, or a Windows named pipe opened as a file.
#[derive(Debug)]
pub(crate) enum Stream {
    #[cfg(unix)]
    Unix(UnixStream),
    Tcp(TcpStream),
    /// A named pipe (`\\.\pipe\docker_engine`), which Windows opens like a file.
    Pipe(std::fs::File),
}

impl Stream {
    #[cfg(unix)]
    pub(crate) fn unix(path: &Path) -> io::Result<Self> {
        UnixStream::connect(path).map(Stream::Unix)
    }

    #[cfg(not(unix))]
    pub(crate) fn unix(path: &Path) -> io::Result<Self> {
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            format!("unix sockets are not supported here ({})", path.display()),
        ))
    }

    pub(crate) fn tcp(addr: &str) -> io::Result<Self> {
        use std::net::ToSocketAddrs;
        let mut last = io::Error::new(
            io::ErrorKind::NotFound,
            format!("{addr} resolves to nothing"),
        );
        for a in addr.to_socket_addrs()? {
            match TcpStream::connect_timeout(&a, Duration::from_secs(10)) {
                Ok(s) => {
                    let _ = s.set_nodelay(true);
                    return Ok(Stream::Tcp(s));
                }
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    pub(crate) fn pipe(path: &Path) -> io::Result<Self> {
        std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map(Stream::Pipe)
    }

    pub(crate) fn try_clone(&self) -> io::Result<Self> {
        Ok(match self {
            #[cfg(unix)]
            Stream::Unix(s) => Stream::Unix(s.try_clone()?),
            Stream::Tcp(s) => Stream::Tcp(s.try_clone()?),
            Stream::Pipe(f) => Stream::Pipe(f.try_clone()?),
        })
    }

    /// A read timeout (`None`: wait as long as it takes). Named pipes have none.
    pub(crate) fn set_read_timeout(&self, t: Option<Duration>) {
        let _ = match self {
            #[cfg(unix)]
            Stream::Unix(s) => s.set_read_timeout(t),
            Stream::Tcp(s) => s.set_read_timeout(t),
            Stream::Pipe(_) => Ok(()),
        };
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            #[cfg(unix)]
            Stream::Unix(s) => s.read(buf),
            Stream::Tcp(s) => s.read(buf),
            Stream::Pipe(f) => f.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            #[cfg(unix)]
            Stream::Unix(s) => s.write(buf),
            Stream::Tcp(s) => s.write(buf),
            Stream::Pipe(f) => f.write(buf),
        }
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        match self {
            #[cfg(unix)]
            Stream::Unix(s) => s.write_all(buf),
            Stream::Tcp(s) => s.write_all(buf),
            Stream::Pipe(f) => f.write_all(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            #[cfg(unix)]
            Stream::Unix(s) => s.flush(),
            Stream::Tcp(s) => s.flush(),
            Stream::Pipe(f) => f.flush(),
        }
    }
}

/// The request head: `METHOD target HTTP/1.1` and headers. `target` is built by the caller
/// from validated parts (see `crate::path`).
pub(crate) fn request_head(method: &str, target: &str, headers: &[(&str, &str)]) -> Vec<u8> {
    let mut h = format!(
        "{method} {target} HTTP/1.1\r\nHost: docker\r\nUser-Agent: imgkit/{}\r\n",
        env!("CARGO_PKG_VERSION")
    );
    for (k, v) in headers {
        h.push_str(k);
        h.push_str(": ");
        h.push_str(v);
        h.push_str("\r\n");
    }
    h.push_str("\r\n");
    h.into_bytes()
}

/// A response's status line and headers.
#[derive(Debug, Clone)]
pub(crate) struct Head {
    pub(crate) status: u16,
    pub(crate) reason: String,
    /// Header names lowercased.
    pub(crate) headers: Vec<(String, String)>,
}

impl Head {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Reads a response head (skipping `100 Continue` heads).
pub(crate) fn read_head(r: &mut impl BufRead) -> io::Result<Head> {
    loop {
        let mut total = 0;
        let status_line = read_line(r, MAX_HEAD, &mut total)?;
        let mut parts = status_line.splitn(3, ' ');
        let version = parts.next().unwrap_or_default();
        if !version.starts_with("HTTP/1.") {
            return Err(bad(format!(
                "not an HTTP response: {:?}",
                first(&status_line, 80)
            )));
        }
        let status: u16 = parts
            .next()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| bad(format!("bad status line {:?}", first(&status_line, 80))))?;
        let reason = parts.next().unwrap_or_default().to_owned();
        let mut headers = Vec::new();
        loop {
            let line = read_line(r, MAX_HEAD, &mut total)?;
            if line.is_empty() {
                break;
            }
            let (k, v) = line
                .split_once(':')
                .ok_or_else(|| bad(format!("bad header line {:?}", first(&line, 80))))?;
            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_owned()));
        }
        if status == 100 {
            continue;
        }
        return Ok(Head {
            status,
            reason,
            headers,
        });
    }
}

/// One CRLF- (or LF-) terminated line, counted against `*total` ≤ `max`.
fn read_line(r: &mut impl BufRead, max: usize, total: &mut usize) -> io::Result<String> {
    let mut line = Vec::new();
    loop {
        let buf = r.fill_buf()?;
        if buf.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the daemon closed the connection inside a response head",
            ));
        }
        let (take, done) = match buf.iter().position(|&b| b == b'\n') {
            Some(i) => (i + 1, true),
            None => (buf.len(), false),
        };
        line.extend_from_slice(&buf[..take]);
        r.consume(take);
        *total += take;
        if *total > max {
            return Err(bad(format!("a response head longer than {max} bytes")));
        }
        if done {
            break;
        }
    }
    while line.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
        line.pop();
    }
    String::from_utf8(line).map_err(|_| bad("a response head that is not UTF-8".to_owned()))
}

fn first(s: &str, n: usize) -> String {
    s.chars().take(n).collect()
}

pub(crate) fn bad(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

/// How a response body ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    /// `Content-Length`: this many bytes left.
    Length(u64),
    /// `Transfer-Encoding: chunked`: bytes left in the current chunk, `None` before a size line.
    Chunked(Option<u64>),
    /// Until the daemon closes the connection.
    Close,
    Done,
}

/// A response body, its framing undone. A body that ends early is an `UnexpectedEof` error,
/// never a short success.
pub struct Body {
    r: BufReader<Stream>,
    framing: Framing,
}

impl std::fmt::Debug for Body {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Body")
            .field("framing", &self.framing)
            .finish_non_exhaustive()
    }
}

impl Body {
    pub(crate) fn new(r: BufReader<Stream>, head: &Head, method: &str) -> io::Result<Self> {
        let no_body = method == "HEAD" || head.status == 204 || head.status == 304;
        let chunked = head
            .header("transfer-encoding")
            .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
        let framing = if no_body {
            Framing::Done
        } else if chunked {
            Framing::Chunked(None)
        } else if let Some(len) = head.header("content-length") {
            let n: u64 = len
                .parse()
                .map_err(|_| bad(format!("bad Content-Length {len:?}")))?;
            if n == 0 {
                Framing::Done
            } else {
                Framing::Length(n)
            }
        } else {
            Framing::Close
        };
        Ok(Self { r, framing })
    }

    /// Reads the whole body, refusing more than `max` bytes.
    pub(crate) fn read_bounded(mut self, max: usize) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        let n = (&mut self).take(max as u64 + 1).read_to_end(&mut out)?;
        if n > max {
            return Err(bad(format!("a response body longer than {max} bytes")));
        }
        Ok(out)
    }

    fn chunk_size(&mut self) -> io::Result<u64> {
        let mut total = 0;
        let line = read_line(&mut self.r, MAX_CHUNK_LINE, &mut total)
            .map_err(|e| eof_inside(e, "a chunk size"))?;
        let hex = line.split(';').next().unwrap_or_default().trim();
        u64::from_str_radix(hex, 16).map_err(|_| bad(format!("bad chunk size line {line:?}")))
    }

    fn crlf(&mut self) -> io::Result<()> {
        let mut total = 0;
        let line = read_line(&mut self.r, MAX_CHUNK_LINE, &mut total)
            .map_err(|e| eof_inside(e, "a chunk's end"))?;
        if line.is_empty() {
            Ok(())
        } else {
            Err(bad("a chunk longer than its size".to_owned()))
        }
    }
}

fn eof_inside(e: io::Error, what: &str) -> io::Error {
    if e.kind() == io::ErrorKind::UnexpectedEof {
        io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!("the daemon closed the connection before {what}: the response is cut short"),
        )
    } else {
        e
    }
}

impl Read for Body {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            match self.framing {
                Framing::Done => return Ok(0),
                Framing::Close => return self.r.read(buf),
                Framing::Length(left) => {
                    let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
                    let n = self.r.read(&mut buf[..want])?;
                    if n == 0 {
                        return Err(io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            format!(
                                "the daemon closed the connection with {left} bytes of the response left"
                            ),
                        ));
                    }
                    let left = left - n as u64;
                    self.framing = if left == 0 {
                        Framing::Done
                    } else {
                        Framing::Length(left)
                    };
                    return Ok(n);
                }
                Framing::Chunked(None) => {
                    let size = self.chunk_size()?;
                    if size == 0 {
                        // Trailers, up to the empty line.
                        let mut total = 0;
                        while !read_line(&mut self.r, MAX_HEAD, &mut total)
                            .map_err(|e| eof_inside(e, "the last chunk's end"))?
                            .is_empty()
                        {}
                        self.framing = Framing::Done;
                    } else {
                        self.framing = Framing::Chunked(Some(size));
                    }
                }
                Framing::Chunked(Some(left)) => {
                    let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
                    let n = self.r.read(&mut buf[..want])?;
                    if n == 0 {
                        return Err(io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            "the daemon closed the connection inside a chunk: the response is cut short",
                        ));
                    }
                    let left = left - n as u64;
                    if left == 0 {
                        self.crlf()?;
                        self.framing = Framing::Chunked(None);
                    } else {
                        self.framing = Framing::Chunked(Some(left));
                    }
                    return Ok(n);
                }
            }
        }
    }
}

/// Writes a request body in chunks (`Transfer-Encoding: chunked`); [`ChunkedWriter::end`]
/// writes the last chunk. Dropped without `end`, the daemon sees a body cut short and keeps
/// nothing from it.
pub(crate) struct ChunkedWriter<W: Write> {
    pub(crate) w: W,
}

impl<W: Write> ChunkedWriter<W> {
    pub(crate) fn end(&mut self) -> io::Result<()> {
        self.w.write_all(b"0\r\n\r\n")?;
        self.w.flush()
    }
}

impl<W: Write> Write for ChunkedWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write_all(buf)?;
        Ok(buf.len())
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        if buf.is_empty() {
            return Ok(());
        }
        self.w
            .write_all(format!("{:x}\r\n", buf.len()).as_bytes())?;
        self.w.write_all(buf)?;
        self.w.write_all(b"\r\n")
    }

    fn flush(&mut self) -> io::Result<()> {
        self.w.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(unix)]
    fn body_of(raw: &[u8]) -> io::Result<Vec<u8>> {
        // A body over a real socket pair: the framing is what is under test.
        let (mut a, b) = UnixStream::pair().unwrap();
        let raw = raw.to_vec();
        let t = std::thread::spawn(move || {
            a.write_all(&raw).unwrap();
        });
        let mut r = BufReader::new(Stream::Unix(b));
        let head = read_head(&mut r)?;
        let mut out = Vec::new();
        let res = Body::new(r, &head, "GET")?.read_to_end(&mut out);
        t.join().unwrap();
        res.map(|_| out)
    }

    #[cfg(unix)]
    #[test]
    fn undoes_each_framing() {
        let r = body_of(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello").unwrap();
        assert_eq!(r, b"hello");
        let r = body_of(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6;x=y\r\n world\r\n0\r\nX-T: 1\r\n\r\n",
        )
        .unwrap();
        assert_eq!(r, b"hello world");
        let r = body_of(b"HTTP/1.1 200 OK\r\n\r\nuntil close").unwrap();
        assert_eq!(r, b"until close");
        let r = body_of(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n").unwrap();
        assert!(r.is_empty());
    }

    #[cfg(unix)]
    #[test]
    fn a_body_cut_short_is_an_error_not_a_short_success() {
        let e = body_of(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhello").unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof);
        let e =
            body_of(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel").unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof);
        let e = body_of(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")
            .unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof, "{e}");
        let e =
            body_of(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n").unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
        let e = body_of(b"SSH-2.0-OpenSSH\r\n\r\n").unwrap_err();
        assert!(e.to_string().contains("not an HTTP response"), "{e}");
    }

    #[test]
    fn chunks_a_body_and_ends_it() {
        let mut w = ChunkedWriter { w: Vec::new() };
        w.write_all(b"hello").unwrap();
        w.write_all(&[b'x'; 26]).unwrap();
        w.end().unwrap();
        assert_eq!(
            w.w,
            b"5\r\nhello\r\n1a\r\nxxxxxxxxxxxxxxxxxxxxxxxxxx\r\n0\r\n\r\n"
        );
    }
}
