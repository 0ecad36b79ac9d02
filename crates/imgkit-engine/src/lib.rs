//! imgkit's container engines: docker, nerdctl, ctr and podman behind one [`Engine`].
//!
//! Each engine's quirks live in its own module (`docker.rs`, `podman.rs`, `ctr.rs`,
//! `nerdctl.rs`): argv builders and output parsers as pure functions (unit-tested with recorded
//! real output), and the engine's seam (`seam.rs`): global flags, listing, error
//! classification, save/load, tag/untag/remove, image-ID lookup and naming quirks (podman's
//! `localhost/`). `seam::seam` is the one `match` on [`EngineKind`] that picks one. [`Engine`]
//! resolves the binary (`bin.rs`), runs one batched command per question through the seam and
//! turns failures into [`Error`]s a person can act on; callers never build an engine argv.
//! The crate knows no command line: the binary maps [`EngineKind`] through its `FromStr`.
//!
//! docker is the exception to "a CLI per engine": `docker_api.rs` speaks dockerd's Engine API
//! on its socket (the `imgkit-docker-api` client, blocking, no runtime) for the listing, IDs,
//! tag, remove, and the save and load streams ([`Engine::save_stream`],
//! [`Engine::load_stream`]), with the docker CLI as the fallback (`IMGKIT_DOCKER_VIA=cli`,
//! `--engine-bin`, ssh:// and TLS hosts, unreadable contexts, an absent socket).
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

mod bin;
mod docker_api;
mod endpoint;
mod error;
mod kind;
mod process;
mod seam;

pub mod ctr;
pub mod docker;
pub mod nerdctl;
pub mod podman;
pub mod probe;
pub mod rancher_desktop;

use std::env;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;

pub use docker_api::{Load, VIA_ENV, records as docker_api_records};
pub use error::Error;
use imgkit_types::{Digest, ImageRecord, ImageRef};
pub use kind::{EngineKind, UnknownEngine};
pub use process::{MAX_LINE, MAX_OUTPUT, STDERR_KEEP, display_argv, posix_line, powershell_line};
use seam::Seam;

/// The containerd namespace used when none is named.
pub const DEFAULT_NAMESPACE: &str = "default";

/// How an engine that pulls by itself ([`Engine::pull_command`]) reaches the registry.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PullOptions {
    /// Verify TLS (false only where imgkit itself speaks plain HTTP to the registry).
    pub tls_verify: bool,
    /// A directory of CA certificates (`*.crt`) to trust.
    pub cert_dir: Option<PathBuf>,
    /// docker's `config.json` (podman reads its `auths` and credential helpers).
    pub authfile: Option<PathBuf>,
    /// `OS/ARCH[/VARIANT]`.
    pub platform: Option<String>,
}

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
    /// docker: the Engine API or the CLI (`docker_api.rs`); `None` for other engines.
    via: Option<docker_api::Via>,
    /// Whether `-v` has said which path docker takes.
    path_traced: std::sync::Arc<std::sync::atomic::AtomicBool>,
    /// Whether the engine's CLI was found (docker over its API runs without one).
    cli: bool,
}

impl Engine {
    /// Resolves the binary (option, then `IMGKIT_<ENGINE>_BIN`, then PATH) and keeps the options.
    pub fn new(kind: EngineKind, opts: EngineOptions) -> Result<Self, Error> {
        let via = (kind == EngineKind::Docker).then(|| docker_api::choose(&opts, opts.trace));
        let (bin, cli) = match bin::resolve_bin(kind, opts.bin.as_deref()) {
            Ok(b) => (b, true),
            // The API needs no CLI (Docker Desktop, Rancher Desktop without it on PATH).
            Err(Error::BinaryNotFound { .. }) if matches!(via, Some(docker_api::Via::Api(_))) => {
                (PathBuf::from(kind.as_str()), false)
            }
            Err(e) => return Err(e),
        };
        Ok(Self {
            via,
            cli,
            path_traced: std::sync::Arc::default(),
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
        if let Some(api) = self.api() {
            return api.address().to_string();
        }
        self.seam().endpoint(self)
    }

    /// Names the image store this engine writes into, the same for every process that would
    /// write into it (ctr and nerdctl on one containerd namespace share a store): imgkit runs
    /// loading into one store take turns by it.
    pub fn store_key(&self) -> String {
        if self.kind.is_containerd() {
            format!(
                "containerd {} {}",
                self.containerd_address(),
                self.namespace
            )
        } else {
            format!("{} {}", self.kind, self.endpoint())
        }
    }

    fn seam(&self) -> &'static dyn Seam {
        seam::seam(self.kind)
    }

    pub(crate) fn containerd_address(&self) -> String {
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
        cmd.args(self.seam().global_args(self));
        cmd.args(args);
        cmd
    }

    /// Runs `args` to completion and returns stdout; failures become typed errors.
    pub fn output(&self, args: &[OsString]) -> Result<Vec<u8>, Error> {
        self.precheck()?;
        self.trace_path();
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
        if let Some(e) = self.seam().classify(self, &lower, &stderr) {
            return e;
        }
        Error::EngineFailed {
            kind: self.kind,
            argv,
            status: status.to_owned(),
            stderr,
        }
    }

    pub(crate) fn unparseable(&self, args: &[OsString], e: ParseError) -> Error {
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
        if let Some(api) = self.api() {
            // docker's CLI prints CreatedAt in local time, the API path in UTC: where the two
            // differ and the CLI is here, the CLI lists (the records stay docker's own).
            if self.cli && !docker_api::utc_here() {
                if let Some(trace) = self.trace {
                    trace(
                        "docker lists through its CLI: the local time zone is not UTC, and docker prints CreatedAt in local time",
                    );
                }
            } else {
                return Ok((self.api_list(api, now)?, Vec::new()));
            }
        }
        let args = self.seam().list_args();
        let out = self.output(&args)?;
        let (records, warnings) = self
            .seam()
            .parse_list(self, &out, now)
            .map_err(|e| self.unparseable(&args, e))?;
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
        let Some(args) = self.seam().namespaces_args() else {
            return Ok(Vec::new());
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
    /// The references are passed as given ([`Engine::native_ref`] names them as the engine does).
    pub fn save_args(&self, refs: &[ImageRef]) -> Vec<OsString> {
        self.seam().save_args(refs)
    }

    /// Arguments that load a tar from stdin.
    pub fn load_args(&self) -> Vec<OsString> {
        self.seam().load_args()
    }

    /// The command that loads a tar from stdin.
    pub fn load_command(&self) -> Command {
        self.command(&self.load_args())
    }

    /// The server's version (podman: the client's), asking which also checks that the daemon
    /// answers; `None` when the answer names none.
    pub fn version(&self) -> Result<Option<String>, Error> {
        if let Some(api) = self.api() {
            self.trace_path();
            return api.version().map_err(|e| docker_api::error(api, e));
        }
        let out = self.output(&self.seam().version_args())?;
        Ok(self.seam().parse_version(&out))
    }

    /// The reference as this engine stores it: containerd and podman keep fully qualified
    /// names (`docker.io/library/alpine:3`), docker the familiar form.
    pub fn native_ref(&self, r: &ImageRef) -> ImageRef {
        self.seam().native_ref(r)
    }

    /// [`Engine::native_ref`] of each reference, image IDs as they are: the names a save asks for.
    pub fn native_refs(&self, refs: &[ImageRef]) -> Vec<ImageRef> {
        refs.iter()
            .map(|r| {
                if endpoint::is_image_id(r) {
                    r.clone()
                } else {
                    self.native_ref(r)
                }
            })
            .collect()
    }

    /// The config digest (image ID) of each reference in this engine, `None` where the engine
    /// does not have it. One batched call (ctr: one `content get` per distinct manifest).
    pub fn image_ids(&self, refs: &[ImageRef]) -> Result<Vec<(ImageRef, Option<Digest>)>, Error> {
        if let Some(api) = self.api() {
            return self.api_ids(api, refs);
        }
        self.seam().image_ids(self, refs)
    }

    /// The diff IDs (`RootFS.Layers`, in order) of each reference docker holds, known before
    /// its save starts: docker ≤24's save names layers by position, not digest, so a store
    /// told these can pass over the layers it holds unread. Empty for other engines and
    /// where docker cannot say (the save then hashes every layer, as without them).
    pub fn layer_diff_ids(&self, refs: &[ImageRef]) -> Vec<Vec<Digest>> {
        let parse =
            |v: Vec<String>| -> Vec<Digest> { v.iter().filter_map(|d| d.parse().ok()).collect() };
        if let Some(api) = self.api() {
            return refs
                .iter()
                .filter_map(|r| api.image_layers(&r.to_string()).ok().flatten())
                .map(parse)
                .collect();
        }
        if self.kind() != EngineKind::Docker {
            return Vec::new();
        }
        let mut args = os(&[
            "image",
            "inspect",
            "--format",
            "{{json .RootFS.Layers}}",
            "--",
        ]);
        args.extend(
            refs.iter()
                .map(|r| OsString::from(self.native_ref(r).to_string())),
        );
        let Ok(out) = self.output(&args) else {
            return Vec::new();
        };
        String::from_utf8_lossy(&out)
            .lines()
            .filter_map(|l| serde_json::from_str::<Vec<String>>(l.trim()).ok())
            .map(parse)
            .collect()
    }

    /// The command that pulls `refs` from their registry straight into this engine's storage,
    /// where the engine can (podman, local: the registry must be reachable from where it runs);
    /// `None` otherwise. Each reference is a validated `ImageRef`.
    pub fn pull_command(&self, refs: &[ImageRef], o: &PullOptions) -> Option<Command> {
        if self.kind != EngineKind::Podman || refs.is_empty() {
            return None;
        }
        Some(self.command(&podman::pull_args(refs, o)))
    }

    /// Whether the engine's images live on another machine (podman's remote service): `None`
    /// when it cannot tell, `Some(false)` for a local podman.
    pub fn is_remote(&self) -> Option<bool> {
        if self.kind != EngineKind::Podman {
            return None;
        }
        let out = self.output(&os(&podman::REMOTE_ARGS)).ok()?;
        match String::from_utf8_lossy(&out).trim() {
            "false" => Some(false),
            "true" => Some(true),
            _ => None,
        }
    }

    /// Whether the engine holds the image whose ID is `id`; `None` where images cannot be
    /// looked up by ID (containerd keeps them by name).
    pub fn has_image_id(&self, id: &Digest) -> Option<bool> {
        if let Some(api) = self.api() {
            self.trace_path();
            return Some(api.image_id(id.as_str()).is_ok_and(|found| found.is_some()));
        }
        self.seam().has_image_id(self, id)
    }

    /// Gives `src` (a name the engine holds, or an image ID) each of `names`; a name that
    /// pointed at another image is moved.
    pub fn tag(&self, src: &str, names: &[String]) -> Result<(), Error> {
        if let Some(api) = self.api() {
            return self.api_tag(api, src, names);
        }
        for call in self.seam().tag_calls(src, names) {
            self.output(&call)?;
        }
        Ok(())
    }

    /// Whether [`Engine::tag`] takes an image ID as its source (not ctr: a name only).
    pub fn tags_by_id(&self) -> bool {
        self.seam().tags_by_id()
    }

    /// Drops `names`; an image left with no name may go with its last one.
    pub fn untag(&self, names: &[String]) -> Result<(), Error> {
        if names.is_empty() {
            return Ok(());
        }
        if let Some(api) = self.api() {
            return self.api_remove(api, names);
        }
        for call in self.seam().untag_calls(names) {
            self.output(&call)?;
        }
        Ok(())
    }

    /// Removes `names` and the images left without one, in one call.
    pub fn remove(&self, names: &[String]) -> Result<(), Error> {
        if let Some(api) = self.api() {
            return self.api_remove(api, names);
        }
        self.output(&self.seam().remove_args(names)).map(drop)
    }

    /// The command line [`Engine::remove`] runs, for a person to paste.
    pub fn remove_command_line(&self, names: &[String]) -> String {
        process::display_argv(&self.command(&self.seam().remove_args(names)))
    }

    /// Whether this engine files the short names of a docker archive somewhere other than
    /// docker means them (podman: under `localhost/`): a stream loaded into it should carry
    /// qualified names (`imgkit_transfer::QualifyNames`).
    pub fn misfiles_short_names(&self) -> bool {
        self.seam().misfiles_short_names()
    }

    /// After a load whose output was `load_output`: renames what the engine filed under names
    /// docker does not mean (podman's `localhost/seed/app:1.0` → `docker.io/seed/app:1.0`), as a
    /// pull would have named them. `images` are the loaded references with their image IDs.
    /// Two calls per image at most; nothing for other engines.
    pub fn fix_misfiled_names(
        &self,
        load_output: &str,
        images: &[(&ImageRef, &str)],
    ) -> Result<(), Error> {
        for m in self.seam().misfiled(load_output, images) {
            self.tag(&m.wrong[0], &m.right)?;
            self.untag(&m.wrong)?;
        }
        Ok(())
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

pub(crate) fn env_nonempty(key: &str) -> Option<String> {
    env::var(key).ok().filter(|v| !v.is_empty())
}

pub(crate) fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
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
        let ids = seam::parse_ids(format!("sha256:{hex}\n{hex}\n").as_bytes());
        assert_eq!(ids.len(), 2);
        assert!(ids.iter().all(Option::is_some));
    }
}
