//! docker over dockerd's Engine API (the `imgkit-docker-api` client): which path a docker
//! engine takes, the listing formatted as docker's CLI formats it, and the API's errors as the
//! crate's.
//!
//! The path: the API, unless `IMGKIT_DOCKER_VIA=cli`, `--engine-bin` (a docker CLI named for
//! this run), a host or context the client cannot speak (ssh://, TLS, a context it cannot
//! read), or a socket that is not there while the CLI is (the CLI then says why).
//! `IMGKIT_DOCKER_VIA=api` forces the API. `IMGKIT_DOCKER_BIN` only says which CLI runs when
//! the CLI does. With `-v` every API request is printed (`+ docker API unix:///…: GET …`) as
//! every CLI command line is, and an automatic fallback to the CLI says why once.
//!
//! The listing: `GET /images/json?digests=1`, each image made into the rows docker/cli's
//! `formatter/image.go` makes (`imageFormatTaggedAndDigest`, `isDangling`), with the sizes and
//! times of its `imageContext` (`HumanSizeWithPrecision(size, 3)`, `HumanSize` for the others,
//! `time.Unix(created, 0).String()`, `HumanDuration(now - created) + " ago"`), then the rows
//! `docker.rs` makes of `--digests` output: one per repository:tag with `Digest` `<none>`, one
//! per digest-only repository carrying its first digest.

use std::collections::BTreeMap;
use std::env;
use std::sync::Arc;

use imgkit_docker_api::{ApiError, Client, HostOptions, ImageSummary};
use imgkit_types::{Digest, ImageRecord, ImageRef, NONE, humanize};
use serde_json::Value;

use crate::{Engine, EngineKind, EngineOptions, Error};

/// `IMGKIT_DOCKER_VIA`: `cli` forces the docker CLI, `api` the Engine API.
pub const VIA_ENV: &str = "IMGKIT_DOCKER_VIA";

/// Which path a docker engine takes, and why.
#[derive(Debug, Clone)]
pub(crate) enum Via {
    Api(Arc<Client>),
    /// Why the CLI, and whether `-v` should say so (not when the user asked for it).
    Cli(String, bool),
}

/// Chooses the path for docker with these options (nothing is dialled).
pub(crate) fn choose(opts: &EngineOptions, trace: Option<fn(&str)>) -> Via {
    let forced = env::var(VIA_ENV).unwrap_or_default().to_ascii_lowercase();
    if forced == "cli" {
        return Via::Cli(format!("{VIA_ENV}=cli"), false);
    }
    if forced != "api" && opts.bin.is_some() {
        return Via::Cli("--engine-bin names the docker CLI".to_owned(), false);
    }
    let host = HostOptions {
        host: opts.docker_host.clone(),
        context: opts.docker_context.clone(),
    };
    let address = match imgkit_docker_api::resolve(&host) {
        Ok(a) => a,
        Err(why) => return Via::Cli(why.0, true),
    };
    let client = Client::new(address, trace);
    if forced != "api"
        && !client.socket_present()
        && crate::bin::resolve_bin(EngineKind::Docker, None).is_ok()
    {
        return Via::Cli(format!("{} is not there", client.address()), true);
    }
    Via::Api(Arc::new(client))
}

/// The API's error as the crate's: an unreachable daemon, a refused socket, an old daemon, or
/// what the daemon answered.
pub(crate) fn error(client: &Client, e: ApiError) -> Error {
    let endpoint = client.address().to_string();
    match e {
        ApiError::Connect { source, .. }
            if source.kind() == std::io::ErrorKind::PermissionDenied =>
        {
            Error::PermissionDenied {
                kind: EngineKind::Docker,
                endpoint,
                stderr: source.to_string(),
            }
        }
        ApiError::Connect { source, .. } => Error::DaemonUnreachable {
            kind: EngineKind::Docker,
            endpoint,
            stderr: source.to_string(),
        },
        ApiError::TooOld { server, min, .. } => Error::ApiTooOld {
            endpoint,
            server,
            min,
        },
        ApiError::Status {
            request,
            status,
            message,
        } => Error::Api {
            endpoint,
            status: Some(status),
            detail: format!("`{request}` answered {status}: {message}"),
        },
        other => Error::Api {
            endpoint,
            status: None,
            detail: other.to_string(),
        },
    }
}

/// Whether Go's local time here is UTC, as the docker CLI would load it: `TZ` set names the
/// zone (empty: UTC); unset, `/etc/localtime` does (absent or unreadable: UTC). A zone that is
/// not provably UTC (a link to `Etc/UTC`, or the same bytes as zoneinfo's `UTC`) counts as not.
pub(crate) fn utc_here() -> bool {
    match env::var_os("TZ") {
        Some(tz) => {
            let tz = tz.to_string_lossy();
            matches!(
                tz.strip_prefix(':').unwrap_or(&tz),
                "" | "UTC" | "Etc/UTC" | "UTC0"
            )
        }
        None => localtime_is_utc(),
    }
}

#[cfg(unix)]
fn localtime_is_utc() -> bool {
    let local = std::path::Path::new("/etc/localtime");
    let Ok(bytes) = std::fs::read(local) else {
        return true;
    };
    if let Ok(target) = std::fs::read_link(local) {
        let t = target.to_string_lossy();
        if t.ends_with("zoneinfo/UTC") || t.ends_with("zoneinfo/Etc/UTC") {
            return true;
        }
    }
    ["/usr/share/zoneinfo/UTC", "/usr/share/zoneinfo/Etc/UTC"]
        .iter()
        .any(|u| std::fs::read(u).is_ok_and(|b| b == bytes))
}

/// Windows: Go reads the system's zone, which imgkit does not; the API's UTC is used.
#[cfg(not(unix))]
fn localtime_is_utc() -> bool {
    true
}

/// docker's `stringid.TruncateID`: the hex after `sha256:`, 12 digits.
fn short_id(id: &str) -> String {
    let hex = id.split_once(':').map_or(id, |(_, h)| h);
    hex.chars().take(12).collect()
}

fn n_a(v: i64, f: impl Fn(u64) -> String) -> String {
    if v == -1 {
        "N/A".to_owned()
    } else {
        f(u64::try_from(v).unwrap_or(0))
    }
}

/// The records `docker image ls --digests --format '{{json .}}'` prints for `images`, made into
/// imgkit's rows (see the module docs). `now` is unix seconds.
pub fn records(images: &[ImageSummary], now: i64) -> Vec<ImageRecord> {
    let mut out = Vec::new();
    for img in images {
        let virtual_size = img.virtual_size.unwrap_or(img.size);
        let row = |repo: &str, tag: &str, digest: &str| {
            let mut extra = BTreeMap::new();
            extra.insert(
                "VirtualSize".to_owned(),
                Value::String(humanize::size_with_precision(
                    u64::try_from(virtual_size).unwrap_or(0),
                    4,
                )),
            );
            ImageRecord {
                containers: if img.containers == -1 {
                    "N/A".to_owned()
                } else {
                    img.containers.to_string()
                },
                created_at: humanize::created_at(img.created),
                created_since: humanize::since(u64::try_from(now - img.created).unwrap_or(0)),
                digest: digest.to_owned(),
                id: short_id(&img.id),
                repository: repo.to_owned(),
                shared_size: n_a(img.shared_size, |v| humanize::size_with_precision(v, 4)),
                size: humanize::size(u64::try_from(img.size).unwrap_or(0)),
                tag: tag.to_owned(),
                unique_size: if virtual_size == -1 || img.shared_size == -1 {
                    "N/A".to_owned()
                } else {
                    humanize::size_with_precision(
                        u64::try_from(virtual_size - img.shared_size).unwrap_or(0),
                        4,
                    )
                },
                extra,
            }
        };
        let tags = img.repo_tags.as_deref().unwrap_or_default();
        let digests = img.repo_digests.as_deref().unwrap_or_default();
        let dangling = (tags.is_empty() && digests.is_empty())
            || (tags == ["<none>:<none>"] && digests == ["<none>@<none>"]);
        if dangling {
            out.push(row(NONE, NONE, NONE));
            continue;
        }
        // Repositories in the order the daemon names them; Go's maps have none.
        let mut tagged: Vec<(String, Vec<String>)> = Vec::new();
        for t in tags {
            let Ok(r) = ImageRef::parse(t) else { continue };
            let Some(tag) = r.tag() else { continue };
            let repo = r.familiar_name();
            match tagged.iter_mut().find(|(n, _)| *n == repo) {
                Some((_, ts)) => ts.push(tag.to_owned()),
                None => tagged.push((repo, vec![tag.to_owned()])),
            }
        }
        let mut digest_only: Vec<(String, String)> = Vec::new();
        for d in digests {
            let Ok(r) = ImageRef::parse(d) else { continue };
            let Some(digest) = r.digest() else { continue };
            let repo = r.familiar_name();
            if tagged.iter().any(|(n, _)| *n == repo) || digest_only.iter().any(|(n, _)| *n == repo)
            {
                continue;
            }
            digest_only.push((repo, digest.to_string()));
        }
        for (repo, ts) in &tagged {
            for t in ts {
                out.push(row(repo, t, NONE));
            }
        }
        for (repo, d) in &digest_only {
            out.push(row(repo, NONE, d));
        }
    }
    out
}

impl Engine {
    /// The Engine API client, when this docker engine speaks it.
    pub(crate) fn api(&self) -> Option<&Client> {
        match &self.via {
            Some(Via::Api(c)) => Some(c),
            _ => None,
        }
    }

    /// Where dockerd keeps its images (its data root) and its storage driver, as its `/info`
    /// says; `None` through a CLI or when it does not answer.
    pub fn storage(&self) -> Option<(std::path::PathBuf, String)> {
        let (root, driver) = self.api()?.storage().ok()?;
        (!root.is_empty()).then(|| (std::path::PathBuf::from(root), driver))
    }

    /// Whether this engine talks to dockerd over its Engine API (else through a CLI).
    pub fn speaks_api(&self) -> bool {
        self.api().is_some()
    }

    /// Why this docker engine goes through the CLI, when it does.
    pub fn cli_reason(&self) -> Option<&str> {
        match &self.via {
            Some(Via::Cli(why, _)) => Some(why),
            _ => None,
        }
    }

    /// For `-v`: why docker falls back to its CLI, once, before its first command (the API
    /// path shows itself: each request is printed).
    pub(crate) fn trace_path(&self) {
        if let (Some(trace), Some(Via::Cli(why, true))) = (self.trace, &self.via)
            && !self
                .path_traced
                .swap(true, std::sync::atomic::Ordering::Relaxed)
        {
            trace(&format!("docker through its CLI: {why}"));
        }
    }

    pub(crate) fn api_list(&self, api: &Client, now: i64) -> Result<Vec<ImageRecord>, Error> {
        self.trace_path();
        let images = api.images().map_err(|e| error(api, e))?;
        Ok(records(&images, now))
    }

    pub(crate) fn api_ids(
        &self,
        api: &Client,
        refs: &[ImageRef],
    ) -> Result<Vec<(ImageRef, Option<Digest>)>, Error> {
        self.trace_path();
        refs.iter()
            .map(|r| {
                let id = api
                    .image_id(&r.to_string())
                    .map_err(|e| error(api, e))?
                    .and_then(|id| id.parse::<Digest>().ok());
                Ok((r.clone(), id))
            })
            .collect()
    }

    pub(crate) fn api_tag(&self, api: &Client, src: &str, names: &[String]) -> Result<(), Error> {
        self.trace_path();
        for n in names {
            let r = ImageRef::parse(n).map_err(|e| Error::Api {
                endpoint: api.address().to_string(),
                status: None,
                detail: format!("cannot tag {src} as {n:?}: {e}"),
            })?;
            let tag = r.tag().unwrap_or("latest");
            api.tag(src, &r.name(), tag).map_err(|e| error(api, e))?;
        }
        Ok(())
    }

    /// `docker rmi` for each name: all are tried, the first failure is returned.
    pub(crate) fn api_remove(&self, api: &Client, names: &[String]) -> Result<(), Error> {
        self.trace_path();
        let mut first = None;
        for n in names {
            if let Err(e) = api.remove(n) {
                first.get_or_insert(error(api, e));
            }
        }
        first.map_or(Ok(()), Err)
    }

    /// A docker-save tar of `refs` streamed from the daemon (`GET /images/get`); `None` when
    /// this engine goes through a CLI ([`Engine::save_args`] then).
    pub fn save_stream(&self, refs: &[ImageRef]) -> Option<Result<imgkit_docker_api::Body, Error>> {
        let api = self.api()?;
        self.trace_path();
        let names: Vec<String> = refs.iter().map(ToString::to_string).collect();
        Some(api.save(&names).map_err(|e| error(api, e)))
    }

    /// A load into the daemon (`POST /images/load`), its tar written into the returned
    /// [`Load`]; `None` when this engine goes through a CLI ([`Engine::load_command`] then).
    pub fn load_stream(&self) -> Option<Result<Load, Error>> {
        let api = self.api()?;
        self.trace_path();
        Some(
            api.load()
                .map(|inner| Load {
                    inner,
                    client: Client::clone(api),
                })
                .map_err(|e| error(api, e)),
        )
    }

    /// How [`Engine::save_stream`] is named in messages; `None` on the CLI path.
    pub fn api_save_label(&self) -> Option<String> {
        self.api()
            .map(|a| format!("docker save (Engine API at {})", a.address()))
    }

    /// How [`Engine::load_stream`] is named in messages; `None` on the CLI path.
    pub fn api_load_label(&self) -> Option<String> {
        self.api()
            .map(|a| format!("docker load (Engine API at {})", a.address()))
    }
}

/// A load under way through the Engine API: the tar goes in through [`std::io::Write`];
/// [`Load::finish`] ends it and gives the daemon's `Loaded image: …` lines, or its error.
/// Dropped unfinished, the daemon loads nothing from it.
#[derive(Debug)]
pub struct Load {
    inner: imgkit_docker_api::Load,
    client: Client,
}

impl Load {
    /// Ends the stream and waits for the daemon's verdict.
    pub fn finish(self) -> Result<String, Error> {
        let Load { inner, client } = self;
        inner.finish().map_err(|e| error(&client, e))
    }
}

impl std::io::Write for Load {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.inner.write(buf)
    }

    fn write_all(&mut self, buf: &[u8]) -> std::io::Result<()> {
        self.inner.write_all(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(tags: &[&str], digests: &[&str]) -> ImageSummary {
        ImageSummary {
            id: format!("sha256:{}", "ab".repeat(32)),
            repo_tags: Some(tags.iter().map(|s| (*s).to_owned()).collect()),
            repo_digests: Some(digests.iter().map(|s| (*s).to_owned()).collect()),
            created: 1_795_854_111,
            size: 131_000,
            shared_size: -1,
            virtual_size: Some(131_072),
            containers: -1,
        }
    }

    #[test]
    fn rows_are_docker_cli_rows() {
        let d1 = format!("sha256:{}", "1".repeat(64));
        let d2 = format!("sha256:{}", "2".repeat(64));
        let imgs = [
            image(
                &[
                    "seed/app:1.0",
                    "seed/app:latest",
                    "docker.io/library/alpine:3",
                ],
                &[&format!("seed/app@{d1}")],
            ),
            image(
                &[],
                &[&format!("seed/pinned@{d1}"), &format!("seed/pinned@{d2}")],
            ),
            image(&["<none>:<none>"], &["<none>@<none>"]),
        ];
        let recs = records(&imgs, 1_795_854_115);
        let rows: Vec<(&str, &str, &str)> = recs
            .iter()
            .map(|r| (r.repository.as_str(), r.tag.as_str(), r.digest.as_str()))
            .collect();
        assert_eq!(
            rows,
            [
                ("seed/app", "1.0", NONE),
                ("seed/app", "latest", NONE),
                ("alpine", "3", NONE),
                ("seed/pinned", NONE, d1.as_str()),
                (NONE, NONE, NONE),
            ]
        );
        let line = recs[0].to_json_line();
        assert_eq!(
            line,
            r#"{"Containers":"N/A","CreatedAt":"2026-11-28 08:21:51 +0000 UTC","CreatedSince":"4 seconds ago","Digest":"<none>","ID":"abababababab","Repository":"seed/app","SharedSize":"N/A","Size":"131kB","Tag":"1.0","UniqueSize":"N/A","VirtualSize":"131.1kB"}"#
        );
    }
}
