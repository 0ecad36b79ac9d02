//! imgkit's container engines: docker, nerdctl, ctr and podman behind one [`Engine`].
//!
//! Each engine's quirks live in its own module as pure functions (argv builders and output
//! parsers, unit-tested with recorded real output); [`Engine`] resolves the binary, adds the
//! global flags (docker host/context, containerd address and namespace), runs one batched
//! command per question and turns failures into [`Error`]s a person can act on.
//!
//! Every listing comes back in one record shape, docker's `{{json .}}` line ([`ImageRecord`]),
//! one record per repository:tag:
//! - docker: lines as docker prints them, except that a digest-only row (`Tag` `<none>`) keeps
//!   the `Digest` docker shows only with `--digests`, so the row names its image;
//! - podman: its JSON array, one record per name, names in docker's familiar form
//!   (`docker.io/library/alpine` → `alpine`), sizes and times converted to docker's units;
//! - ctr and nerdctl: one record per containerd image name, as nerdctl shows it: `ID` and
//!   `Digest` are the target (manifest or index) digest, CRI's `sha256:<config>` alias is
//!   `<none>`/`<none>`, `repo@sha256:…` is `repo`/`<none>`; nerdctl's `Name`, `Platform`
//!   (platforms joined with `,`, one record for all of an image's platforms) and `BlobSize` are
//!   kept as extra keys.

mod error;
mod kind;
mod process;

pub mod ctr;
pub mod docker;
pub mod nerdctl;
pub mod podman;
pub mod probe;
pub mod rancher_desktop;

use std::env;
use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::process::Command;

pub use error::Error;
use imgkit_types::{Digest, ImageRecord, ImageRef};
pub use kind::{EngineKind, UnknownEngine};
pub use process::{MAX_LINE, MAX_OUTPUT, STDERR_KEEP, display_argv, posix_line, powershell_line};

/// The containerd namespace used when none is named.
pub const DEFAULT_NAMESPACE: &str = "default";

/// How to reach an engine. `None` means "the engine's own default" (its environment variables
/// such as `DOCKER_HOST` and `CONTAINERD_ADDRESS` still apply, since children inherit them).
#[derive(Debug, Clone, Default)]
pub struct EngineOptions {
    /// The engine's binary; else `IMGKIT_<ENGINE>_BIN`; else the program name on PATH.
    pub bin: Option<PathBuf>,
    /// docker `--host` (e.g. `unix:///run/user/1000/docker.sock`).
    pub docker_host: Option<String>,
    /// docker `--context`.
    pub docker_context: Option<String>,
    /// containerd socket (`--address`).
    pub address: Option<String>,
    /// containerd namespace; [`DEFAULT_NAMESPACE`] when `None`.
    pub namespace: Option<String>,
    /// Called with each command line the engine runs itself (for `-v`), as one display string.
    pub trace: Option<fn(&str)>,
}

/// One engine, ready to run commands.
#[derive(Debug, Clone)]
pub struct Engine {
    kind: EngineKind,
    bin: PathBuf,
    docker_host: Option<String>,
    docker_context: Option<String>,
    address: Option<String>,
    namespace: String,
    trace: Option<fn(&str)>,
}

impl Engine {
    /// Resolves the binary (option, then `IMGKIT_<ENGINE>_BIN`, then PATH) and keeps the options.
    pub fn new(kind: EngineKind, opts: EngineOptions) -> Result<Self, Error> {
        let bin = resolve_bin(kind, opts.bin.as_deref())?;
        Ok(Self {
            kind,
            bin,
            docker_host: opts.docker_host,
            docker_context: opts.docker_context,
            address: opts.address,
            namespace: opts
                .namespace
                .unwrap_or_else(|| DEFAULT_NAMESPACE.to_owned()),
            trace: opts.trace,
        })
    }

    /// Which engine this is.
    pub fn kind(&self) -> EngineKind {
        self.kind
    }

    /// The binary that runs.
    pub fn bin(&self) -> &Path {
        &self.bin
    }

    /// The containerd namespace (meaningful for ctr and nerdctl).
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// Where the engine is reached, for messages: a socket URL, a context, or podman's storage.
    pub fn endpoint(&self) -> String {
        match self.kind {
            EngineKind::Docker => {
                if let Some(h) = &self.docker_host {
                    h.clone()
                } else if let Some(c) = &self.docker_context {
                    format!("context {c}")
                } else if let Some(h) = env_nonempty("DOCKER_HOST") {
                    h
                } else if let Some(c) = env_nonempty("DOCKER_CONTEXT") {
                    format!("context {c}")
                } else if cfg!(windows) {
                    "npipe:////./pipe/docker_engine".to_owned()
                } else {
                    "unix:///var/run/docker.sock".to_owned()
                }
            }
            EngineKind::Ctr | EngineKind::Nerdctl => self.containerd_address(),
            EngineKind::Podman => match env_nonempty("CONTAINERS_STORAGE_CONF") {
                Some(conf) => format!("storage configured by {conf}"),
                None => "local storage".to_owned(),
            },
        }
    }

    /// Names the image store this engine writes into, the same for every process that would
    /// write into it (ctr and nerdctl on one containerd namespace share a store): imgkit runs
    /// loading into one store take turns by it.
    pub fn store_key(&self) -> String {
        match self.kind {
            EngineKind::Ctr | EngineKind::Nerdctl => {
                format!(
                    "containerd {} {}",
                    self.containerd_address(),
                    self.namespace
                )
            }
            EngineKind::Docker => format!("docker {}", self.endpoint()),
            EngineKind::Podman => format!("podman {}", self.endpoint()),
        }
    }

    fn containerd_address(&self) -> String {
        self.address
            .clone()
            .or_else(|| env_nonempty("CONTAINERD_ADDRESS"))
            .unwrap_or_else(|| {
                if cfg!(windows) {
                    r"\\.\pipe\containerd-containerd".to_owned()
                } else {
                    "/run/containerd/containerd.sock".to_owned()
                }
            })
    }

    /// A command running this engine's binary with its global flags, then `args`.
    pub fn command(&self, args: &[OsString]) -> Command {
        let mut cmd = Command::new(&self.bin);
        match self.kind {
            EngineKind::Docker => cmd.args(docker::global_args(
                self.docker_host.as_deref(),
                self.docker_context.as_deref(),
            )),
            EngineKind::Ctr => cmd.args(ctr::global_args(self.address.as_deref(), &self.namespace)),
            EngineKind::Nerdctl => cmd.args(nerdctl::global_args(
                self.address.as_deref(),
                &self.namespace,
            )),
            EngineKind::Podman => &mut cmd,
        };
        cmd.args(args);
        cmd
    }

    /// Runs `args` to completion and returns stdout; failures become typed errors.
    pub fn output(&self, args: &[OsString]) -> Result<Vec<u8>, Error> {
        self.precheck()?;
        let cmd = self.command(args);
        let argv = process::display_argv(&cmd);
        if let Some(trace) = self.trace {
            trace(&argv);
        }
        let done = match process::run(cmd)? {
            process::Outcome::Finished(done) => done,
            process::Outcome::Refused(why) => {
                return Err(Error::OutputRefused {
                    kind: self.kind,
                    argv,
                    why: why.to_string(),
                });
            }
        };
        if done.status.success() {
            return Ok(done.stdout);
        }
        Err(self.classify_failure(argv, &done.status.to_string(), done.stderr))
    }

    /// containerd's CLIs wait 10 s on a socket that is not there; say so at once.
    fn precheck(&self) -> Result<(), Error> {
        if !self.kind.is_containerd() || cfg!(windows) {
            return Ok(());
        }
        let addr = self.containerd_address();
        let path = addr.strip_prefix("unix://").unwrap_or(&addr);
        if !path.starts_with('/') {
            return Ok(());
        }
        match std::fs::metadata(path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(Error::DaemonUnreachable {
                kind: self.kind,
                endpoint: addr.clone(),
                stderr: format!("{path} does not exist"),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
                Err(Error::PermissionDenied {
                    kind: self.kind,
                    endpoint: addr.clone(),
                    stderr: e.to_string(),
                })
            }
            _ => Ok(()),
        }
    }

    fn classify_failure(&self, argv: String, status: &str, stderr: String) -> Error {
        let lower = stderr.to_lowercase();
        let endpoint = self.endpoint();
        match self.kind {
            EngineKind::Docker => {
                if lower.contains("permission denied") && lower.contains("docker daemon socket") {
                    let endpoint = docker::socket_in_message(&stderr).unwrap_or(endpoint);
                    return Error::PermissionDenied {
                        kind: self.kind,
                        endpoint,
                        stderr,
                    };
                }
                if lower.contains("cannot connect to the docker daemon")
                    || lower.contains("error during connect")
                {
                    let endpoint = docker::socket_in_message(&stderr).unwrap_or(endpoint);
                    return Error::DaemonUnreachable {
                        kind: self.kind,
                        endpoint,
                        stderr,
                    };
                }
            }
            EngineKind::Ctr | EngineKind::Nerdctl => {
                let dial = lower.contains("failed to dial")
                    || lower.contains("cannot access containerd socket");
                if dial && lower.contains("permission denied") {
                    return Error::PermissionDenied {
                        kind: self.kind,
                        endpoint,
                        stderr,
                    };
                }
                if dial || lower.contains("connection refused") {
                    return Error::DaemonUnreachable {
                        kind: self.kind,
                        endpoint,
                        stderr,
                    };
                }
            }
            EngineKind::Podman => {
                if lower.contains("permission denied") {
                    return Error::PermissionDenied {
                        kind: self.kind,
                        endpoint,
                        stderr,
                    };
                }
            }
        }
        Error::EngineFailed {
            kind: self.kind,
            argv,
            status: status.to_owned(),
            stderr,
        }
    }

    fn unparseable(&self, args: &[OsString], e: ParseError) -> Error {
        Error::Unparseable {
            kind: self.kind,
            argv: process::display_argv(&self.command(args)),
            line_no: e.line_no,
            line: error::first_chars(&e.line, 200),
            reason: e.reason,
        }
    }

    /// Lists the images with one CLI call, one record per repository:tag. Rows left out (see
    /// [`Engine::list_noting`]) are dropped silently: use that where a person reads the result.
    pub fn list(&self) -> Result<Vec<ImageRecord>, Error> {
        self.list_noting().map(|(records, _)| records)
    }

    /// [`Engine::list`], with a warning for each row left out because imgkit cannot use its
    /// name (containerd stores names with spaces, which no engine argv can carry).
    pub fn list_noting(&self) -> Result<(Vec<ImageRecord>, Vec<String>), Error> {
        let now = unix_now();
        let mut warnings = Vec::new();
        let args = list_args(self.kind);
        let out = self.output(&args)?;
        let records = match self.kind {
            EngineKind::Docker => docker::undo_digests(
                docker::parse_list(&out).map_err(|e| self.unparseable(&args, e))?,
            ),
            EngineKind::Podman => {
                podman::parse_list(&out, now).map_err(|e| self.unparseable(&args, e))?
            }
            EngineKind::Ctr => {
                let rows = ctr::parse_list(&out).map_err(|e| self.unparseable(&args, e))?;
                let (rows, skipped) = ctr::usable(rows);
                warnings.extend(
                    skipped
                        .into_iter()
                        .map(|w| format!("{}: {w}", self.namespace)),
                );
                ctr::to_records(&rows)
            }
            EngineKind::Nerdctl => {
                nerdctl::parse_list(&out).map_err(|e| self.unparseable(&args, e))?
            }
        };
        if records.is_empty() && self.kind.is_containerd() && self.namespace != DEFAULT_NAMESPACE {
            let known = self.namespaces()?;
            if !known.contains(&self.namespace) {
                return Err(Error::UnknownNamespace {
                    namespace: self.namespace.clone(),
                    known,
                });
            }
        }
        Ok((records, warnings))
    }

    /// containerd's namespaces (ctr and nerdctl); empty for other engines.
    pub fn namespaces(&self) -> Result<Vec<String>, Error> {
        let args: Vec<OsString> = match self.kind {
            EngineKind::Ctr => os(&["namespaces", "ls", "-q"]),
            EngineKind::Nerdctl => os(&["namespace", "ls", "-q"]),
            _ => return Ok(Vec::new()),
        };
        let out = self.output(&args)?;
        Ok(String::from_utf8_lossy(&out)
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(str::to_owned)
            .collect())
    }

    /// The same engine in another containerd namespace.
    #[must_use]
    pub fn with_namespace(&self, namespace: &str) -> Self {
        Self {
            namespace: namespace.to_owned(),
            ..self.clone()
        }
    }

    /// Arguments that write a tar of `refs` to stdout (docker-save format; OCI for ctr).
    pub fn save_args(&self, refs: &[ImageRef]) -> Vec<OsString> {
        match self.kind {
            EngineKind::Docker => docker::save_args(refs),
            EngineKind::Podman => podman::save_args(refs),
            EngineKind::Ctr => ctr::save_args(refs),
            EngineKind::Nerdctl => nerdctl::save_args(refs),
        }
    }

    /// Arguments that load a tar from stdin.
    pub fn load_args(&self) -> Vec<OsString> {
        match self.kind {
            EngineKind::Ctr => os(&["images", "import", "-"]),
            EngineKind::Docker | EngineKind::Podman | EngineKind::Nerdctl => os(&["load"]),
        }
    }

    /// The reference as this engine stores it: containerd and podman keep fully qualified
    /// names (`docker.io/library/alpine:3`), docker the familiar form.
    pub fn native_ref(&self, r: &ImageRef) -> ImageRef {
        match self.kind {
            EngineKind::Docker => r.clone(),
            _ => {
                if r.tag().is_none() && r.digest().is_some() {
                    let name: ImageRef = r
                        .normalized_name()
                        .parse()
                        .expect("normalized name is valid");
                    name.with_digest(r.digest().expect("checked"))
                } else {
                    r.normalized()
                }
            }
        }
    }

    /// The config digest (image ID) of each reference in this engine, `None` where the engine
    /// does not have it. One batched call (ctr: one `content get` per distinct manifest).
    pub fn image_ids(&self, refs: &[ImageRef]) -> Result<Vec<(ImageRef, Option<Digest>)>, Error> {
        match self.kind {
            EngineKind::Docker | EngineKind::Podman | EngineKind::Nerdctl => {
                let native: Vec<ImageRef> = refs.iter().map(|r| self.native_ref(r)).collect();
                let args = inspect_id_args(&native);
                if let Ok(out) = self.output(&args) {
                    let ids = parse_ids(&out);
                    if ids.len() == refs.len() && ids.iter().all(Option::is_some) {
                        return Ok(refs.iter().cloned().zip(ids).collect());
                    }
                }
                // One of them is missing: ask one by one to know which.
                refs.iter()
                    .zip(&native)
                    .map(|(r, n)| {
                        let one = self.output(&inspect_id_args(std::slice::from_ref(n)));
                        match one {
                            Ok(out) => {
                                Ok((r.clone(), parse_ids(&out).into_iter().next().flatten()))
                            }
                            Err(Error::EngineFailed { .. }) => Ok((r.clone(), None)),
                            Err(e) => Err(e),
                        }
                    })
                    .collect()
            }
            EngineKind::Ctr => ctr::image_ids(self, refs),
        }
    }
}

fn inspect_id_args(refs: &[ImageRef]) -> Vec<OsString> {
    let mut args = os(&["image", "inspect", "--format", "{{.ID}}", "--"]);
    args.extend(refs.iter().map(|r| OsString::from(r.to_string())));
    args
}

/// IDs as engines print them: `sha256:hex` (docker, nerdctl) or bare hex (podman).
fn parse_ids(out: &[u8]) -> Vec<Option<Digest>> {
    String::from_utf8_lossy(out)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let l = l.trim();
            l.parse::<Digest>()
                .ok()
                .or_else(|| Digest::sha256_hex(l).ok())
        })
        .collect()
}

fn list_args(kind: EngineKind) -> Vec<OsString> {
    match kind {
        EngineKind::Docker => docker::list_args(),
        EngineKind::Podman => podman::list_args(),
        EngineKind::Ctr => ctr::list_args(),
        EngineKind::Nerdctl => nerdctl::list_args(),
    }
}

/// A line of engine output imgkit cannot read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    /// 1-based line number in the output.
    pub line_no: usize,
    /// The line itself.
    pub line: String,
    /// What is wrong with it.
    pub reason: String,
}

impl ParseError {
    pub(crate) fn new(line_no: usize, line: &str, reason: impl Into<String>) -> Self {
        Self {
            line_no,
            line: line.to_owned(),
            reason: reason.into(),
        }
    }
}

pub(crate) fn os(args: &[&str]) -> Vec<OsString> {
    args.iter().map(OsString::from).collect()
}

pub(crate) fn refs_args(refs: &[ImageRef]) -> impl Iterator<Item = OsString> + '_ {
    refs.iter().map(|r| OsString::from(r.to_string()))
}

fn env_nonempty(key: &str) -> Option<String> {
    env::var(key).ok().filter(|v| !v.is_empty())
}

pub(crate) fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// The binary for `kind`: the explicit path, else `IMGKIT_<ENGINE>_BIN`, else PATH.
fn resolve_bin(kind: EngineKind, explicit: Option<&Path>) -> Result<PathBuf, Error> {
    let (path, origin) = match explicit {
        Some(p) => (Some(p.to_path_buf()), "--engine-bin".to_owned()),
        None => (
            env::var_os(kind.bin_env())
                .filter(|v| !v.is_empty())
                .map(PathBuf::from),
            kind.bin_env().to_owned(),
        ),
    };
    if let Some(path) = path {
        // A bare name is looked up on PATH like the default.
        if path.components().count() == 1 && !path.is_absolute() {
            return find_on_path(path.as_os_str()).ok_or_else(|| Error::BinaryMissing {
                kind,
                path: path.clone(),
                origin,
            });
        }
        if is_executable(&path) {
            return Ok(path);
        }
        return Err(Error::BinaryMissing { kind, path, origin });
    }
    find_on_path(OsStr::new(kind.as_str())).ok_or_else(|| Error::BinaryNotFound {
        kind,
        program: kind.as_str().to_owned(),
    })
}

fn find_on_path(name: &OsStr) -> Option<PathBuf> {
    let path = env::var_os("PATH")?;
    for dir in env::split_paths(&path) {
        let candidate = dir.join(name);
        if is_executable(&candidate) {
            return Some(candidate);
        }
        if cfg!(windows) {
            let exe = candidate.with_extension("exe");
            if is_executable(&exe) {
                return Some(exe);
            }
        }
    }
    None
}

#[cfg(unix)]
fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    p.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(not(unix))]
fn is_executable(p: &Path) -> bool {
    p.is_file()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn engine(kind: EngineKind, opts: EngineOptions) -> Engine {
        Engine::new(
            kind,
            EngineOptions {
                bin: Some(PathBuf::from("/bin/sh")),
                ..opts
            },
        )
        .unwrap()
    }

    fn argv(cmd: &Command) -> Vec<String> {
        cmd.get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn global_flags_come_before_the_subcommand() {
        let e = engine(
            EngineKind::Docker,
            EngineOptions {
                docker_host: Some("unix:///x.sock".into()),
                ..Default::default()
            },
        );
        assert_eq!(
            argv(&e.command(&os(&["load"]))),
            ["--host", "unix:///x.sock", "load"]
        );
        let e = engine(
            EngineKind::Docker,
            EngineOptions {
                docker_context: Some("rd".into()),
                ..Default::default()
            },
        );
        assert_eq!(
            argv(&e.command(&os(&["load"]))),
            ["--context", "rd", "load"]
        );
        let e = engine(
            EngineKind::Ctr,
            EngineOptions {
                address: Some("/c.sock".into()),
                namespace: Some("k8s.io".into()),
                ..Default::default()
            },
        );
        assert_eq!(
            argv(&e.command(&os(&["images", "ls"]))),
            [
                "--address",
                "/c.sock",
                "--namespace",
                "k8s.io",
                "images",
                "ls"
            ]
        );
        let e = engine(EngineKind::Nerdctl, EngineOptions::default());
        assert_eq!(
            argv(&e.command(&os(&["load"]))),
            ["--namespace", "default", "load"]
        );
        let e = engine(EngineKind::Podman, EngineOptions::default());
        assert_eq!(argv(&e.command(&os(&["load"]))), ["load"]);
    }

    #[test]
    fn save_and_load_argv_end_flags_before_refs() {
        let refs: Vec<ImageRef> = ["seed/app:1.0", "localhost:5000/team/app:1.0"]
            .iter()
            .map(|r| r.parse().unwrap())
            .collect();
        let s = |k| {
            engine(k, EngineOptions::default())
                .save_args(&refs)
                .iter()
                .map(|a| a.to_string_lossy().into_owned())
                .collect::<Vec<_>>()
        };
        assert_eq!(
            s(EngineKind::Docker),
            ["save", "--", "seed/app:1.0", "localhost:5000/team/app:1.0"]
        );
        assert_eq!(
            s(EngineKind::Podman),
            [
                "save",
                "--multi-image-archive",
                "--format",
                "docker-archive",
                "--",
                "seed/app:1.0",
                "localhost:5000/team/app:1.0"
            ]
        );
        assert_eq!(
            s(EngineKind::Ctr),
            [
                "images",
                "export",
                "-",
                "--",
                "seed/app:1.0",
                "localhost:5000/team/app:1.0"
            ]
        );
        assert_eq!(
            s(EngineKind::Nerdctl),
            ["save", "--", "seed/app:1.0", "localhost:5000/team/app:1.0"]
        );
        assert_eq!(
            engine(EngineKind::Ctr, EngineOptions::default()).load_args(),
            os(&["images", "import", "-"])
        );
    }

    #[test]
    fn native_refs_are_qualified_outside_docker() {
        let r: ImageRef = "seed/app:1.0".parse().unwrap();
        assert_eq!(
            engine(EngineKind::Docker, EngineOptions::default())
                .native_ref(&r)
                .to_string(),
            "seed/app:1.0"
        );
        assert_eq!(
            engine(EngineKind::Ctr, EngineOptions::default())
                .native_ref(&r)
                .to_string(),
            "docker.io/seed/app:1.0"
        );
        let d = format!("alpine@sha256:{}", "a".repeat(64));
        let r: ImageRef = d.parse().unwrap();
        assert_eq!(
            engine(EngineKind::Podman, EngineOptions::default())
                .native_ref(&r)
                .to_string(),
            format!("docker.io/library/alpine@sha256:{}", "a".repeat(64))
        );
    }

    #[test]
    fn a_missing_binary_is_named() {
        let e = Engine::new(
            EngineKind::Podman,
            EngineOptions {
                bin: Some("/nonexistent/podman".into()),
                ..Default::default()
            },
        )
        .unwrap_err();
        assert!(matches!(e, Error::BinaryMissing { .. }), "{e}");
        assert!(e.to_string().contains("/nonexistent/podman"), "{e}");
    }

    #[test]
    fn ids_parse_with_or_without_algorithm() {
        let hex = "b".repeat(64);
        let ids = parse_ids(format!("sha256:{hex}\n{hex}\n").as_bytes());
        assert_eq!(ids.len(), 2);
        assert!(ids.iter().all(Option::is_some));
    }
}
