//! The distribution API calls imgkit makes (`/v2/…`), each a small async function over
//! [`Client::send`]: catalog and tags (paginated by `Link`), manifests (byte for byte, digest
//! checked), blob HEAD, GET, mount and upload.

use std::path::Path;

use futures_util::StreamExt as _;
use imgkit_types::Digest;
use reqwest::StatusCode;
use reqwest::header::{ACCEPT, CONTENT_LENGTH, CONTENT_TYPE, LINK, LOCATION};
use serde::Deserialize;

use crate::client::{Client, MAX_JSON, detail_of, json_of, read_bounded};
use crate::error::{Error, Result};

pub(crate) const MEDIA_OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub(crate) const MEDIA_OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub(crate) const MEDIA_DOCKER_MANIFEST: &str =
    "application/vnd.docker.distribution.manifest.v2+json";
pub(crate) const MEDIA_DOCKER_LIST: &str =
    "application/vnd.docker.distribution.manifest.list.v2+json";

/// Whether a media type is a manifest or an index (pushed to `/manifests/`, not `/blobs/`).
pub(crate) fn is_manifest_type(media_type: &str) -> bool {
    matches!(
        media_type,
        MEDIA_OCI_MANIFEST | MEDIA_OCI_INDEX | MEDIA_DOCKER_MANIFEST | MEDIA_DOCKER_LIST
    )
}

pub(crate) fn is_index_type(media_type: &str) -> bool {
    matches!(media_type, MEDIA_OCI_INDEX | MEDIA_DOCKER_LIST)
}

pub(crate) fn pull(repo: &str) -> Vec<String> {
    vec![format!("repository:{repo}:pull")]
}

pub(crate) fn push(repo: &str) -> Vec<String> {
    vec![format!("repository:{repo}:pull,push")]
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Descriptor {
    #[serde(default)]
    pub(crate) media_type: String,
    pub(crate) digest: String,
    pub(crate) size: u64,
    #[serde(default)]
    pub(crate) platform: Option<Platform>,
}

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub(crate) struct Platform {
    #[serde(default)]
    pub(crate) os: String,
    #[serde(default)]
    pub(crate) architecture: String,
    #[serde(default)]
    pub(crate) variant: Option<String>,
}

impl std::fmt::Display for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

/// A manifest or an index, as far as imgkit reads it.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Manifest {
    #[serde(default)]
    pub(crate) config: Option<Descriptor>,
    #[serde(default)]
    pub(crate) layers: Vec<Descriptor>,
    #[serde(default)]
    pub(crate) manifests: Vec<Descriptor>,
}

/// A manifest as the registry holds it: its bytes, its media type and their digest.
#[derive(Debug, Clone)]
pub(crate) struct RawManifest {
    pub(crate) bytes: Vec<u8>,
    pub(crate) media_type: String,
    pub(crate) digest: Digest,
}

impl RawManifest {
    pub(crate) fn parse(&self, host: &str) -> Result<Manifest> {
        serde_json::from_slice(&self.bytes).map_err(|e| Error::Invalid {
            host: host.to_owned(),
            what: format!("manifest {}", self.digest),
            detail: e.to_string(),
        })
    }
}

pub(crate) fn sha256(bytes: &[u8]) -> Digest {
    use sha2::Digest as _;
    let h = sha2::Sha256::digest(bytes);
    Digest::sha256_hex(&hex(&h)).expect("sha256 hex is a digest")
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

pub(crate) fn parse_digest(host: &str, what: &str, text: &str) -> Result<Digest> {
    text.parse().map_err(|e| Error::Invalid {
        host: host.to_owned(),
        what: what.to_owned(),
        detail: format!("{text:?}: {e}"),
    })
}

fn not_found(c: &Client, repo: &str, what: String) -> Error {
    Error::NotFound {
        host: c.host.clone(),
        repository: repo.to_owned(),
        what,
    }
}

async fn status_error(c: &Client, what: String, resp: reqwest::Response) -> Error {
    Error::Status {
        host: c.host.clone(),
        status: resp.status().as_u16(),
        what,
        detail: detail_of(resp).await,
    }
}

/// The `rel="next"` target of a `Link` header.
fn next_link(headers: &reqwest::header::HeaderMap) -> Option<String> {
    let link = headers.get(LINK)?.to_str().ok()?;
    link.split(',').find_map(|part| {
        let (target, params) = part.split_once(';')?;
        params.contains("rel=\"next\"").then(|| {
            target
                .trim()
                .trim_start_matches('<')
                .trim_end_matches('>')
                .to_owned()
        })
    })
}

/// Every page of a paginated listing (`_catalog`'s `repositories`, `tags/list`'s `tags`).
async fn paginated(
    c: &Client,
    scope: &[String],
    first: String,
    field: &str,
    repo: &str,
) -> Result<Vec<String>> {
    let mut out = Vec::new();
    let mut next = Some(first);
    let mut pages = 0;
    while let Some(path) = next.take() {
        pages += 1;
        if pages > 100_000 {
            break;
        }
        let url = c.resolve(&path)?;
        let resp = c.send(scope, &|h| Ok(h.get(url.clone()))).await?;
        if resp.status() == StatusCode::NOT_FOUND {
            return Err(not_found(c, repo, format!("listing {path}")));
        }
        if !resp.status().is_success() {
            return Err(status_error(c, format!("GET {path}"), resp).await);
        }
        next = next_link(resp.headers());
        let v = json_of(resp).await.map_err(|detail| Error::Invalid {
            host: c.host.clone(),
            what: format!("GET {path}"),
            detail,
        })?;
        if let Some(items) = v[field].as_array() {
            out.extend(items.iter().filter_map(|x| x.as_str().map(str::to_owned)));
        }
    }
    Ok(out)
}

/// Every repository of the registry (`GET /v2/_catalog`, paginated).
pub(crate) async fn catalog(c: &Client) -> Result<Vec<String>> {
    paginated(
        c,
        &["registry:catalog:*".to_owned()],
        "/v2/_catalog?n=1000".into(),
        "repositories",
        "(catalog)",
    )
    .await
}

/// The `Accept` header of a manifest request: every manifest and index type imgkit reads.
fn accept_manifests() -> String {
    [
        MEDIA_OCI_MANIFEST,
        MEDIA_OCI_INDEX,
        MEDIA_DOCKER_MANIFEST,
        MEDIA_DOCKER_LIST,
    ]
    .join(", ")
}

/// Every tag of `repo`.
pub(crate) async fn tags(c: &Client, repo: &str) -> Result<Vec<String>> {
    paginated(
        c,
        &pull(repo),
        format!("/v2/{repo}/tags/list?n=1000"),
        "tags",
        repo,
    )
    .await
}

/// A manifest or index by tag or digest, its digest checked when asked for by digest.
pub(crate) async fn get_manifest(c: &Client, repo: &str, reference: &str) -> Result<RawManifest> {
    let url = c.url(&format!("/v2/{repo}/manifests/{reference}"));
    let accept = accept_manifests();
    let resp = c
        .send(&pull(repo), &|h| Ok(h.get(&url).header(ACCEPT, &accept)))
        .await?;
    if resp.status() == StatusCode::NOT_FOUND {
        return Err(not_found(c, repo, format!("no manifest {reference}")));
    }
    if !resp.status().is_success() {
        return Err(status_error(c, format!("GET manifest {repo}:{reference}"), resp).await);
    }
    let header_type = resp
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|t| t.split(';').next().unwrap_or(t).trim().to_owned());
    let bytes = read_bounded(resp, MAX_JSON)
        .await
        .map_err(|detail| Error::Invalid {
            host: c.host.clone(),
            what: format!("manifest {repo}:{reference}"),
            detail,
        })?;
    let digest = sha256(&bytes);
    if reference.contains(':') && digest.as_str() != reference {
        return Err(Error::DigestMismatch {
            host: c.host.clone(),
            repository: repo.to_owned(),
            expected: parse_digest(&c.host, "a manifest digest", reference)?,
            actual: digest.to_string(),
        });
    }
    let body_type = serde_json::from_slice::<serde_json::Value>(&bytes)
        .ok()
        .and_then(|v| v["mediaType"].as_str().map(str::to_owned));
    let media_type = body_type
        .or(header_type)
        .unwrap_or_else(|| MEDIA_OCI_MANIFEST.to_owned());
    Ok(RawManifest {
        bytes,
        media_type,
        digest,
    })
}

/// A small blob (a config) in memory, its digest checked.
pub(crate) async fn get_small_blob(c: &Client, repo: &str, digest: &Digest) -> Result<Vec<u8>> {
    let resp = get_blob(c, repo, digest).await?;
    let bytes = read_bounded(resp, MAX_JSON)
        .await
        .map_err(|detail| Error::Invalid {
            host: c.host.clone(),
            what: format!("blob {digest}"),
            detail,
        })?;
    let actual = sha256(&bytes);
    if &actual != digest {
        return Err(Error::DigestMismatch {
            host: c.host.clone(),
            repository: repo.to_owned(),
            expected: digest.clone(),
            actual: actual.to_string(),
        });
    }
    Ok(bytes)
}

/// `GET /v2/REPO/blobs/DIGEST`: the response, its body not yet read.
pub(crate) async fn get_blob(c: &Client, repo: &str, digest: &Digest) -> Result<reqwest::Response> {
    let url = c.url(&format!("/v2/{repo}/blobs/{digest}"));
    let resp = c.send(&pull(repo), &|h| Ok(h.get(&url))).await?;
    if resp.status() == StatusCode::NOT_FOUND {
        return Err(not_found(c, repo, format!("no blob {digest}")));
    }
    if !resp.status().is_success() {
        return Err(status_error(c, format!("GET blob {digest} of {repo}"), resp).await);
    }
    Ok(resp)
}

/// Whether `repo` holds the blob (`HEAD`).
pub(crate) async fn has_blob(c: &Client, repo: &str, digest: &Digest) -> Result<bool> {
    let url = c.url(&format!("/v2/{repo}/blobs/{digest}"));
    let resp = c.send(&push(repo), &|h| Ok(h.head(&url))).await?;
    match resp.status() {
        s if s.is_success() => Ok(true),
        StatusCode::NOT_FOUND => Ok(false),
        _ => Err(status_error(c, format!("HEAD blob {digest} of {repo}"), resp).await),
    }
}

/// Whether `repo` holds the manifest `digest`.
pub(crate) async fn has_manifest(c: &Client, repo: &str, digest: &Digest) -> Result<bool> {
    let url = c.url(&format!("/v2/{repo}/manifests/{digest}"));
    let accept = accept_manifests();
    let resp = c
        .send(&push(repo), &|h| Ok(h.head(&url).header(ACCEPT, &accept)))
        .await?;
    match resp.status() {
        s if s.is_success() => Ok(true),
        StatusCode::NOT_FOUND => Ok(false),
        _ => Err(status_error(c, format!("HEAD manifest {digest} of {repo}"), resp).await),
    }
}

/// Mounts a blob `from` another repository of the registry into `repo`: `true` when mounted,
/// `false` when the registry declined (it then opened an upload, which is cancelled).
pub(crate) async fn mount(c: &Client, repo: &str, from: &str, digest: &Digest) -> Result<bool> {
    let url = c.url(&format!(
        "/v2/{repo}/blobs/uploads/?mount={digest}&from={from}"
    ));
    let mut scope = push(repo);
    scope.extend(pull(from));
    let resp = c
        .send(&scope, &|h| Ok(h.post(&url).header(CONTENT_LENGTH, "0")))
        .await?;
    match resp.status() {
        StatusCode::CREATED => Ok(true),
        StatusCode::ACCEPTED => {
            if let Some(loc) = resp.headers().get(LOCATION).and_then(|v| v.to_str().ok())
                && let Ok(u) = c.resolve(loc)
            {
                let _ = c.send(&push(repo), &|h| Ok(h.delete(u.clone()))).await;
            }
            Ok(false)
        }
        _ => Ok(false),
    }
}

/// Uploads the file at `path` (exactly `size` bytes, digest `digest`) into `repo`: `POST` an
/// upload, then `PUT` the whole body streamed from the file with its digest. Tried again from
/// the start (a new upload, a fresh token) on a dropped connection or a 5xx.
pub(crate) async fn upload_file(
    c: &Client,
    repo: &str,
    path: &Path,
    digest: &Digest,
    size: u64,
) -> Result<()> {
    let mut attempt = 0;
    loop {
        match upload_once(c, repo, path, digest, size).await {
            Ok(()) => return Ok(()),
            // A dropped connection was already tried again by `send`; a 5xx to the PUT gets a
            // whole new upload.
            Err(e @ Error::Status { .. })
                if e.transient() && attempt + 1 < crate::client::ATTEMPTS =>
            {
                attempt += 1;
                tokio::time::sleep(std::time::Duration::from_millis(300 << attempt)).await;
            }
            Err(e) => return Err(e),
        }
    }
}

async fn upload_once(
    c: &Client,
    repo: &str,
    path: &Path,
    digest: &Digest,
    size: u64,
) -> Result<()> {
    let start = c.url(&format!("/v2/{repo}/blobs/uploads/"));
    let resp = c
        .send(&push(repo), &|h| {
            Ok(h.post(&start).header(CONTENT_LENGTH, "0"))
        })
        .await?;
    if resp.status() == StatusCode::NOT_FOUND {
        return Err(not_found(c, repo, "uploads are refused".into()));
    }
    if resp.status() != StatusCode::ACCEPTED {
        return Err(status_error(c, format!("starting an upload to {repo}"), resp).await);
    }
    let loc = resp
        .headers()
        .get(LOCATION)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| Error::Invalid {
            host: c.host.clone(),
            what: format!("the upload to {repo}"),
            detail: "no Location header".into(),
        })?;
    let mut url = c.resolve(loc)?;
    url.query_pairs_mut().append_pair("digest", digest.as_str());
    let path = path.to_owned();
    let resp = c
        .send(&push(repo), &|h| {
            let file = std::fs::File::open(&path)
                .map_err(Error::io(format!("cannot open {}", path.display())))?;
            Ok(h.put(url.clone())
                .header(CONTENT_TYPE, "application/octet-stream")
                .header(CONTENT_LENGTH, size)
                .body(file_body(file)))
        })
        .await?;
    if resp.status() == StatusCode::CREATED || resp.status().is_success() {
        return Ok(());
    }
    Err(status_error(c, format!("PUT blob {digest} to {repo}"), resp).await)
}

/// A request body streamed from a file, 1 MiB at a time.
fn file_body(file: std::fs::File) -> reqwest::Body {
    let file = tokio::fs::File::from_std(file);
    let stream = futures_util::stream::unfold(file, |mut f| async move {
        use tokio::io::AsyncReadExt as _;
        let mut buf = vec![0u8; 1 << 20];
        match f.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok::<_, std::io::Error>(bytes::Bytes::from(buf)), f))
            }
            Err(e) => Some((Err(e), f)),
        }
    });
    reqwest::Body::wrap_stream(stream.boxed())
}

/// `PUT /v2/REPO/manifests/REFERENCE` with exactly `bytes`; the digest the registry computed
/// must be theirs.
pub(crate) async fn put_manifest(
    c: &Client,
    repo: &str,
    reference: &str,
    bytes: &[u8],
    media_type: &str,
    name: &str,
) -> Result<()> {
    let url = c.url(&format!("/v2/{repo}/manifests/{reference}"));
    let body = bytes::Bytes::copy_from_slice(bytes);
    let resp = c
        .send(&push(repo), &|h| {
            Ok(h.put(&url)
                .header(CONTENT_TYPE, media_type)
                .body(body.clone()))
        })
        .await?;
    let status = resp.status();
    if status.is_success() {
        let want = sha256(bytes);
        if let Some(got) = resp
            .headers()
            .get("Docker-Content-Digest")
            .and_then(|v| v.to_str().ok())
            && got != want.as_str()
        {
            return Err(Error::ManifestRejected {
                host: c.host.clone(),
                name: name.to_owned(),
                media_type: media_type.to_owned(),
                detail: format!("it stored it as {got}, not {want}: the bytes were changed"),
            });
        }
        return Ok(());
    }
    if status == StatusCode::BAD_REQUEST || status == StatusCode::UNSUPPORTED_MEDIA_TYPE {
        let mut detail = detail_of(resp).await;
        if !is_manifest_type(media_type) {
            detail = format!(
                "{detail}; {media_type} is not a manifest type registries take (they take OCI image manifests and indexes, and Docker schema 2 manifests and manifest lists)"
            );
        }
        return Err(Error::ManifestRejected {
            host: c.host.clone(),
            name: name.to_owned(),
            media_type: media_type.to_owned(),
            detail,
        });
    }
    if status == StatusCode::NOT_FOUND {
        return Err(not_found(c, repo, format!("pushing manifest {reference}")));
    }
    Err(status_error(c, format!("PUT manifest {repo}:{reference}"), resp).await)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn follows_the_next_link() {
        let mut h = reqwest::header::HeaderMap::new();
        h.insert(
            LINK,
            r#"</v2/_catalog?last=b&n=2>; rel="next""#.parse().unwrap(),
        );
        assert_eq!(next_link(&h).as_deref(), Some("/v2/_catalog?last=b&n=2"));
        h.insert(LINK, r#"</x>; rel="prev""#.parse().unwrap());
        assert_eq!(next_link(&h), None);
    }
}
