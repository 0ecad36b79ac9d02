//! A small blocking client for dockerd's Engine API: the few calls imgkit makes (ping, version,
//! image list, inspect, tag, remove, save, load), over the daemon's socket (unix, plain tcp, a
//! Windows named pipe opened as a file). HTTP/1.1 with `Content-Length`, chunked and
//! read-to-close bodies, one connection per call; no async runtime, no timeout on a body (a long
//! save streams as long as it takes). The API version is negotiated once per client with
//! `/_ping`, capped at [`MAX_VERSION`] (dockerd 20.10 serves 1.41).
//!
//! Every path segment and query value is percent-encoded here; callers pass validated image
//! references anyway.

mod host;
mod http;

use std::io::{self, BufReader, Write};
use std::sync::OnceLock;
use std::time::Duration;

pub use host::{
    Address, HostOptions, Unsupported, config_dir, context_address, default_address, parse_host,
    resolve,
};
pub use http::Body;
use serde::Deserialize;

/// The highest API version this client asks for (the fields it reads are all there in 1.41).
pub const MAX_VERSION: (u32, u32) = (1, 41);
/// The lowest it accepts (docker 17.05; `RepoDigests`, `/images/get?names=` and `quiet` loads).
pub const MIN_VERSION: (u32, u32) = (1, 25);
/// The most a non-streamed answer (a listing, an inspect, an error) may be.
pub const MAX_ANSWER: usize = 64 * 1024 * 1024;

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The socket could not be dialled (daemon down, socket absent, permission denied).
    #[error("cannot connect to {address}: {source}")]
    Connect { address: String, source: io::Error },
    /// The daemon answered with an error status and its message.
    #[error("{request} answered {status}: {message}")]
    Status {
        request: String,
        status: u16,
        message: String,
    },
    /// The daemon's API is older than this client accepts.
    #[error("the docker daemon at {address} speaks API {server}, older than {min}")]
    TooOld {
        address: String,
        server: String,
        min: String,
    },
    /// The conversation broke (connection reset, a malformed answer, a stream error).
    #[error("{request}: {source}")]
    Io { request: String, source: io::Error },
    /// An answer that is not the JSON expected.
    #[error("{request}: unexpected answer: {reason}")]
    Json { request: String, reason: String },
}

impl ApiError {
    /// The HTTP status of a [`ApiError::Status`].
    pub fn status(&self) -> Option<u16> {
        match self {
            ApiError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// One image of `GET /images/json`, the fields docker's CLI formats.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct ImageSummary {
    /// `sha256:…`.
    pub id: String,
    #[serde(default)]
    pub repo_tags: Option<Vec<String>>,
    #[serde(default)]
    pub repo_digests: Option<Vec<String>>,
    /// Unix seconds.
    #[serde(default)]
    pub created: i64,
    #[serde(default)]
    pub size: i64,
    #[serde(default = "minus_one")]
    pub shared_size: i64,
    /// Absent from API 1.44 on; `Size` then.
    #[serde(default)]
    pub virtual_size: Option<i64>,
    #[serde(default = "minus_one")]
    pub containers: i64,
}

fn minus_one() -> i64 {
    -1
}

/// Called with a line describing each request (for `-v`).
pub type Trace = fn(&str);

/// A client for one daemon.
#[derive(Debug)]
pub struct Client {
    address: Address,
    version: OnceLock<Result<String, String>>,
    trace: Option<Trace>,
}

impl Clone for Client {
    fn clone(&self) -> Self {
        Self {
            address: self.address.clone(),
            version: self.version.clone(),
            trace: self.trace,
        }
    }
}

/// A connection with a request sent, its answer not yet read.
struct Exchange {
    reader: BufReader<http::Stream>,
    request: String,
    method: &'static str,
}

impl Client {
    /// A client for `address` (nothing is dialled yet).
    pub fn new(address: Address, trace: Option<Trace>) -> Self {
        Self {
            address,
            version: OnceLock::new(),
            trace,
        }
    }

    /// Where the daemon is.
    pub fn address(&self) -> &Address {
        &self.address
    }

    /// Whether the socket is there to dial (a unix socket or named pipe that exists; tcp: yes).
    pub fn socket_present(&self) -> bool {
        match &self.address {
            // A socket this user may not even look at is there: dialling it says so.
            Address::Unix(p) | Address::Npipe(p) => match std::fs::metadata(p) {
                Ok(_) => true,
                Err(e) => e.kind() != io::ErrorKind::NotFound,
            },
            Address::Tcp(_) => true,
        }
    }

    fn connect(&self) -> Result<http::Stream, ApiError> {
        let r = match &self.address {
            Address::Unix(p) => http::Stream::unix(p),
            Address::Tcp(a) => http::Stream::tcp(a),
            Address::Npipe(p) => http::Stream::pipe(p),
        };
        r.map_err(|source| ApiError::Connect {
            address: self.address.to_string(),
            source,
        })
    }

    /// The negotiated API version (`1.41`): `/_ping`'s `API-Version`, capped at
    /// [`MAX_VERSION`]; an error when older than [`MIN_VERSION`]. Asked once per client.
    pub fn api_version(&self) -> Result<String, ApiError> {
        if let Some(v) = self.version.get() {
            return v.clone().map_err(|reason| ApiError::TooOld {
                address: self.address.to_string(),
                server: reason,
                min: fmt_version(MIN_VERSION),
            });
        }
        let ex = self.send("GET", "/_ping", &[], None)?;
        let (head, body) = Self::answer(ex)?;
        let _ = body.read_bounded(4096);
        let server = head.header("api-version").map(str::to_owned);
        let negotiated = match server.as_deref().and_then(parse_version) {
            None => Ok(fmt_version(MAX_VERSION)),
            Some(v) if v < MIN_VERSION => Err(server.unwrap_or_default()),
            Some(v) => Ok(fmt_version(v.min(MAX_VERSION))),
        };
        let _ = self.version.set(negotiated);
        self.api_version()
    }

    fn versioned(&self, path: &str) -> Result<String, ApiError> {
        Ok(format!("/v{}{path}", self.api_version()?))
    }

    /// Sends a request; `body` whole (with its length).
    fn send(
        &self,
        method: &'static str,
        target: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
    ) -> Result<Exchange, ApiError> {
        let request = format!("{method} {target}");
        if let Some(t) = self.trace {
            t(&format!("docker API {}: {request}", self.address));
        }
        let mut stream = self.connect()?;
        let len;
        let mut hs: Vec<(&str, &str)> = headers.to_vec();
        if let Some(b) = body {
            len = b.len().to_string();
            hs.push(("Content-Length", &len));
        } else if method == "POST" {
            hs.push(("Content-Length", "0"));
        }
        let head = http::request_head(method, target, &hs);
        let io = |source| ApiError::Io {
            request: request.clone(),
            source,
        };
        stream.write_all(&head).map_err(io)?;
        if let Some(b) = body {
            stream.write_all(b).map_err(io)?;
        }
        stream.flush().map_err(io)?;
        Ok(Exchange {
            reader: BufReader::with_capacity(256 * 1024, stream),
            request,
            method,
        })
    }

    /// Reads the answer's head: a 2xx status gives the body, any other the daemon's message.
    fn answer(mut ex: Exchange) -> Result<(http::Head, Body), ApiError> {
        let request = ex.request.clone();
        let io = |source| ApiError::Io {
            request: request.clone(),
            source,
        };
        let head = http::read_head(&mut ex.reader).map_err(io)?;
        let body = Body::new(ex.reader, &head, ex.method).map_err(io)?;
        if (200..300).contains(&head.status) {
            return Ok((head, body));
        }
        let text = body.read_bounded(MAX_ANSWER).unwrap_or_default();
        Err(ApiError::Status {
            request: ex.request,
            status: head.status,
            message: message_of(&text, &head.reason),
        })
    }

    fn json<T: for<'de> Deserialize<'de>>(
        &self,
        method: &'static str,
        target: &str,
    ) -> Result<T, ApiError> {
        let ex = self.send(method, target, &[], None)?;
        let request = ex.request.clone();
        let (_, body) = Self::answer(ex)?;
        let bytes = body
            .read_bounded(MAX_ANSWER)
            .map_err(|source| ApiError::Io {
                request: request.clone(),
                source,
            })?;
        serde_json::from_slice(&bytes).map_err(|e| ApiError::Json {
            request,
            reason: e.to_string(),
        })
    }

    /// `GET /version`: the daemon's version (`20.10.24`).
    pub fn version(&self) -> Result<Option<String>, ApiError> {
        let v: serde_json::Value = self.json("GET", &self.versioned("/version")?)?;
        Ok(v.get("Version")
            .and_then(serde_json::Value::as_str)
            .map(str::to_owned))
    }

    /// `GET /info`'s `DockerRootDir` and `Driver`: where dockerd keeps its images, and with
    /// which storage driver.
    pub fn storage(&self) -> Result<(String, String), ApiError> {
        #[derive(Deserialize)]
        struct Info {
            #[serde(rename = "DockerRootDir", default)]
            root: String,
            #[serde(rename = "Driver", default)]
            driver: String,
        }
        let info: Info = self.json("GET", &self.versioned("/info")?)?;
        Ok((info.root, info.driver))
    }

    /// `GET /images/json?digests=1`: every image, with its tags and repo digests.
    pub fn images(&self) -> Result<Vec<ImageSummary>, ApiError> {
        self.json("GET", &self.versioned("/images/json?digests=1")?)
    }

    /// `GET /images/{name}/json`'s `Id`; `None` when the daemon has no such image.
    pub fn image_id(&self, name: &str) -> Result<Option<String>, ApiError> {
        #[derive(Deserialize)]
        struct Inspect {
            #[serde(rename = "Id")]
            id: String,
        }
        let target = self.versioned(&format!("/images/{}/json", encode_path(name)))?;
        match self.json::<Inspect>("GET", &target) {
            Ok(i) => Ok(Some(i.id)),
            Err(e) if e.status() == Some(404) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// `GET /images/{name}/json`'s `RootFS.Layers`: the image's diff IDs, in order; `None`
    /// when there is no such image.
    pub fn image_layers(&self, name: &str) -> Result<Option<Vec<String>>, ApiError> {
        #[derive(Deserialize)]
        struct RootFs {
            #[serde(rename = "Layers", default)]
            layers: Vec<String>,
        }
        #[derive(Deserialize)]
        struct Inspect {
            #[serde(rename = "RootFS")]
            rootfs: Option<RootFs>,
        }
        let target = self.versioned(&format!("/images/{}/json", encode_path(name)))?;
        match self.json::<Inspect>("GET", &target) {
            Ok(i) => Ok(Some(i.rootfs.map(|r| r.layers).unwrap_or_default())),
            Err(e) if e.status() == Some(404) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// `POST /images/{src}/tag?repo=…&tag=…`: `src` (a name or ID) gets `repo:tag`.
    pub fn tag(&self, src: &str, repo: &str, tag: &str) -> Result<(), ApiError> {
        let target = self.versioned(&format!(
            "/images/{}/tag?repo={}&tag={}",
            encode_path(src),
            encode_query(repo),
            encode_query(tag)
        ))?;
        let ex = self.send("POST", &target, &[], None)?;
        let (_, body) = Self::answer(ex)?;
        let _ = body.read_bounded(MAX_ANSWER);
        Ok(())
    }

    /// `DELETE /images/{name}`: the name goes; the image too when no other name keeps it.
    pub fn remove(&self, name: &str) -> Result<(), ApiError> {
        let target = self.versioned(&format!("/images/{}", encode_path(name)))?;
        let ex = self.send("DELETE", &target, &[], None)?;
        let (_, body) = Self::answer(ex)?;
        let _ = body.read_bounded(MAX_ANSWER);
        Ok(())
    }

    /// `GET /images/get?names=…`: a docker-save tar of `names`, streamed. A name the daemon
    /// lacks is an error before any byte.
    pub fn save(&self, names: &[String]) -> Result<Body, ApiError> {
        let query: Vec<String> = names
            .iter()
            .map(|n| format!("names={}", encode_query(n)))
            .collect();
        let target = self.versioned(&format!("/images/get?{}", query.join("&")))?;
        let ex = self.send("GET", &target, &[], None)?;
        let (_, body) = Self::answer(ex)?;
        Ok(body)
    }

    /// `POST /images/load?quiet=1`, its body streamed: write the tar into the [`Load`], then
    /// [`Load::finish`] for the daemon's verdict.
    pub fn load(&self) -> Result<Load, ApiError> {
        let target = self.versioned("/images/load?quiet=1")?;
        let request = format!("POST {target}");
        if let Some(t) = self.trace {
            t(&format!(
                "docker API {}: {request} (the tar streamed in)",
                self.address
            ));
        }
        let mut stream = self.connect()?;
        let head = http::request_head(
            "POST",
            &target,
            &[
                ("Content-Type", "application/x-tar"),
                ("Transfer-Encoding", "chunked"),
            ],
        );
        let io = |source| ApiError::Io {
            request: request.clone(),
            source,
        };
        stream.write_all(&head).map_err(io)?;
        let reader = stream.try_clone().map_err(io)?;
        Ok(Load {
            w: http::ChunkedWriter { w: stream },
            reader: Some(reader),
            request,
        })
    }
}

/// A load under way: the tar goes in through [`Write`]; [`Load::finish`] ends it and reads the
/// daemon's messages. Dropped unfinished, the daemon sees a body cut short and loads nothing.
pub struct Load {
    w: http::ChunkedWriter<http::Stream>,
    reader: Option<http::Stream>,
    request: String,
}

impl std::fmt::Debug for Load {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Load")
            .field("request", &self.request)
            .finish_non_exhaustive()
    }
}

impl Load {
    /// Ends the body and reads the daemon's answer: the `Loaded image: …` lines it printed, or
    /// its error.
    pub fn finish(mut self) -> Result<String, ApiError> {
        let request = self.request.clone();
        self.w.end().map_err(|source| ApiError::Io {
            request: request.clone(),
            source,
        })?;
        self.verdict()
    }

    /// The daemon's answer on the reading half.
    fn verdict(&mut self) -> Result<String, ApiError> {
        let request = self.request.clone();
        let reader = self.reader.take().ok_or_else(|| ApiError::Io {
            request: request.clone(),
            source: io::Error::other("the answer was already read"),
        })?;
        let mut r = BufReader::new(reader);
        let io = |source| ApiError::Io {
            request: request.clone(),
            source,
        };
        let head = http::read_head(&mut r).map_err(io)?;
        let body = Body::new(r, &head, "POST").map_err(io)?;
        let text = body.read_bounded(MAX_ANSWER).map_err(io)?;
        if !(200..300).contains(&head.status) {
            return Err(ApiError::Status {
                request,
                status: head.status,
                message: message_of(&text, &head.reason),
            });
        }
        load_messages(&request, &text)
    }

    /// After a failed write: what the daemon said, if it answered within a moment.
    fn why_write_failed(&mut self, e: io::Error) -> io::Error {
        if let Some(r) = &self.reader {
            r.set_read_timeout(Some(Duration::from_secs(2)));
        }
        match self.verdict() {
            Err(ApiError::Status {
                status, message, ..
            }) => io::Error::other(format!("the daemon refused the load ({status}): {message}")),
            Err(ApiError::Json { reason, .. }) => {
                io::Error::other(format!("the daemon refused the load: {reason}"))
            }
            _ => e,
        }
    }
}

impl Write for Load {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write_all(buf)?;
        Ok(buf.len())
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        match self.w.write_all(buf) {
            Ok(()) => Ok(()),
            Err(e) => Err(self.why_write_failed(e)),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        self.w.flush()
    }
}

/// The `stream` texts of a load's JSON messages; its `error` as an error.
fn load_messages(request: &str, text: &[u8]) -> Result<String, ApiError> {
    let mut out = String::new();
    let stream = serde_json::Deserializer::from_slice(text).into_iter::<serde_json::Value>();
    for msg in stream {
        let msg = msg.map_err(|e| ApiError::Json {
            request: request.to_owned(),
            reason: e.to_string(),
        })?;
        if let Some(err) = msg.get("error").and_then(serde_json::Value::as_str) {
            return Err(ApiError::Json {
                request: request.to_owned(),
                reason: format!("the daemon failed the load: {err}"),
            });
        }
        if let Some(s) = msg.get("stream").and_then(serde_json::Value::as_str) {
            out.push_str(s);
        }
    }
    Ok(out)
}

/// The daemon's `{"message": …}`, else the text, else the status reason.
fn message_of(body: &[u8], reason: &str) -> String {
    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(body)
        && let Some(m) = v.get("message").and_then(serde_json::Value::as_str)
    {
        return m.to_owned();
    }
    let t = String::from_utf8_lossy(body).trim().to_owned();
    if t.is_empty() {
        reason.to_owned()
    } else {
        t.chars().take(1024).collect()
    }
}

fn parse_version(v: &str) -> Option<(u32, u32)> {
    let (a, b) = v.trim().split_once('.')?;
    Some((a.parse().ok()?, b.parse().ok()?))
}

fn fmt_version((a, b): (u32, u32)) -> String {
    format!("{a}.{b}")
}

fn encode(s: &str, keep: &[u8]) -> String {
    use std::fmt::Write as _;
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) || keep.contains(&b) {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// A path part: `/` and `:` kept (docker's router takes `/images/{name:.*}/json`).
fn encode_path(s: &str) -> String {
    encode(s, b"/:@")
}

/// A query value.
fn encode_query(s: &str) -> String {
    encode(s, b"/:@")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn load_messages_become_lines_and_errors() {
        let ok = br#"{"stream":"Loaded image: seed/app:1.0\n"}
{"stream":"Loaded image ID: sha256:abc\n"}"#;
        assert_eq!(
            load_messages("POST /load", ok).unwrap(),
            "Loaded image: seed/app:1.0\nLoaded image ID: sha256:abc\n"
        );
        let bad = br#"{"errorDetail":{"message":"unexpected EOF"},"error":"unexpected EOF"}"#;
        let e = load_messages("POST /load", bad).unwrap_err();
        assert!(e.to_string().contains("unexpected EOF"), "{e}");
    }

    #[test]
    fn messages_come_from_the_daemons_json() {
        assert_eq!(
            message_of(br#"{"message":"No such image: x:1"}"#, "Not Found"),
            "No such image: x:1"
        );
        assert_eq!(message_of(b"", "Not Found"), "Not Found");
        assert_eq!(
            message_of(b"page not found\n", "Not Found"),
            "page not found"
        );
    }

    #[test]
    fn versions_and_encoding() {
        assert_eq!(parse_version("1.41"), Some((1, 41)));
        assert!(parse_version("1.24").unwrap() < MIN_VERSION);
        assert_eq!(
            encode_query("localhost:5000/a b?&#"),
            "localhost:5000/a%20b%3F%26%23"
        );
        assert_eq!(encode_path("seed/app:1.0"), "seed/app:1.0");
    }

    /// A stand-in daemon for faults a real dockerd will not show on demand (an old API, a
    /// load it refuses half-way): answers each connection with the next canned response after
    /// reading the request head (and, for `drain`, the whole body).
    #[cfg(unix)]
    fn daemon(answers: Vec<(&'static str, bool)>) -> (tempfile::TempDir, Client) {
        use std::io::BufRead;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("d.sock");
        let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        std::thread::spawn(move || {
            for (answer, drain) in answers {
                let (mut s, _) = listener.accept().unwrap();
                let mut r = BufReader::new(s.try_clone().unwrap());
                let mut line = String::new();
                while r.read_line(&mut line).unwrap() > 2 {
                    line.clear();
                }
                // The chunked body, up to its last chunk (these tests write text chunks).
                while drain && r.read_line(&mut line).unwrap_or(0) > 0 {
                    if line.ends_with("\n0\r\n") || line == "0\r\n" {
                        break;
                    }
                }
                let _ = s.write_all(answer.as_bytes());
            }
        });
        (dir, Client::new(Address::Unix(path), None))
    }

    #[cfg(unix)]
    #[test]
    fn an_old_daemon_is_refused_once_asked() {
        let (_d, c) = daemon(vec![(
            "HTTP/1.1 200 OK\r\nApi-Version: 1.24\r\nContent-Length: 2\r\n\r\nOK",
            false,
        )]);
        let e = c.images().unwrap_err();
        assert!(matches!(e, ApiError::TooOld { .. }), "{e}");
        assert!(
            e.to_string().contains("speaks API 1.24, older than 1.25"),
            "{e}"
        );
    }

    #[cfg(unix)]
    #[test]
    fn versions_are_capped_and_errors_carry_the_daemons_message() {
        let (_d, c) = daemon(vec![
            (
                "HTTP/1.1 200 OK\r\nApi-Version: 1.47\r\nContent-Length: 2\r\n\r\nOK",
                false,
            ),
            (
                "HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\nContent-Length: 35\r\n\r\n{\"message\":\"No such image: x:1\"}\n  ",
                false,
            ),
            (
                "HTTP/1.1 404 Not Found\r\nContent-Length: 35\r\n\r\n{\"message\":\"No such image: x:1\"}\n  ",
                false,
            ),
        ]);
        assert_eq!(c.api_version().unwrap(), "1.41");
        assert_eq!(
            c.image_id("x:1").unwrap(),
            None,
            "a 404 inspect is no image"
        );
        let e = c.save(&["x:1".to_owned()]).unwrap_err();
        assert_eq!(e.status(), Some(404));
        assert!(e.to_string().contains("No such image: x:1"), "{e}");
        assert!(
            e.to_string().contains("GET /v1.41/images/get?names=x:1"),
            "{e}"
        );
    }

    #[cfg(unix)]
    #[test]
    fn a_load_the_daemon_fails_is_an_error_with_its_message() {
        let (_d, c) = daemon(vec![
            (
                "HTTP/1.1 200 OK\r\nApi-Version: 1.41\r\nContent-Length: 2\r\n\r\nOK",
                false,
            ),
            (
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n45\r\n{\"errorDetail\":{\"message\":\"unexpected EOF\"},\"error\":\"unexpected EOF\"}\r\n0\r\n\r\n",
                true,
            ),
        ]);
        let mut load = c.load().unwrap();
        load.write_all(b"not a tar").unwrap();
        let e = load.finish().unwrap_err();
        assert!(
            e.to_string()
                .contains("the daemon failed the load: unexpected EOF"),
            "{e}"
        );
    }

    #[cfg(unix)]
    #[test]
    fn nothing_listening_is_a_connect_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gone.sock");
        drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
        let c = Client::new(Address::Unix(path.clone()), None);
        assert!(c.socket_present());
        let e = c.images().unwrap_err();
        assert!(
            matches!(&e, ApiError::Connect { source, .. } if source.kind() == io::ErrorKind::ConnectionRefused),
            "{e}"
        );
        let c = Client::new(Address::Unix(dir.path().join("absent.sock")), None);
        assert!(!c.socket_present());
    }
}
