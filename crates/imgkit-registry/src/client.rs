//! The HTTP side of the distribution protocol: TLS (the system's roots plus `--ca-cert`), plain
//! HTTP only where allowed, the auth challenge (anonymous, basic, bearer tokens per scope,
//! refreshed when they expire or are refused), and retries with backoff on dropped connections,
//! 5xx and 429.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine as _;
use reqwest::header::{AUTHORIZATION, HeaderMap, WWW_AUTHENTICATE};
use reqwest::{RequestBuilder, Response, StatusCode, Url};

use imgkit_store::error_chain as chain;

use crate::auth::{self, Credential, Found};
use crate::error::{Error, Result};
use crate::spec::RegistrySpec;

/// How many times a request is tried before its error is final.
pub(crate) const ATTEMPTS: u32 = 4;

/// How the registry is reached.
#[derive(Debug, Clone, Default)]
pub struct ClientOptions {
    /// Extra CA certificates (PEM) trusted besides the system's.
    pub ca_certs: Vec<PathBuf>,
    /// Hosts (`HOST[:PORT]`) that may be spoken to over plain HTTP (loopback hosts always may).
    pub insecure: Vec<String>,
    /// docker's config.json to read credentials from (default: `$DOCKER_CONFIG`, `~/.docker`).
    pub docker_config: Option<PathBuf>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Challenge {
    Basic,
    Bearer {
        realm: String,
        service: Option<String>,
    },
}

#[derive(Debug, Clone)]
struct Token {
    value: String,
    until: Instant,
}

/// A connection to one registry, shared by every task of a run.
#[derive(Debug)]
pub(crate) struct Client {
    pub(crate) host: String,
    base: String,
    http: reqwest::Client,
    found: Found,
    challenge: Mutex<Option<Challenge>>,
    tokens: Mutex<HashMap<String, Token>>,
}

fn is_tls(text: &str) -> bool {
    let t = text.to_ascii_lowercase();
    [
        "certificate",
        "tls",
        "ssl",
        "handshake",
        "corrupt message",
        "invalidcontenttype",
    ]
    .iter()
    .any(|w| t.contains(w))
}

/// A request that failed before an answer came.
pub(crate) fn transport_error(host: &str, e: &reqwest::Error) -> Error {
    let detail = chain(e);
    if is_tls(&detail) {
        Error::Tls {
            host: host.to_owned(),
            detail,
        }
    } else {
        Error::Connect {
            host: host.to_owned(),
            detail,
        }
    }
}

/// `Bearer realm="…",service="…",scope="…"` or `Basic realm="…"`.
fn parse_challenge(headers: &HeaderMap) -> Option<Challenge> {
    let h = headers.get(WWW_AUTHENTICATE)?.to_str().ok()?;
    let (scheme, rest) = h.trim().split_once(' ').unwrap_or((h.trim(), ""));
    if scheme.eq_ignore_ascii_case("basic") {
        return Some(Challenge::Basic);
    }
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let mut params: HashMap<String, String> = HashMap::new();
    let mut s = rest;
    while !s.is_empty() {
        let Some((k, v)) = s.split_once('=') else {
            break;
        };
        let k = k.trim().trim_start_matches(',').trim().to_ascii_lowercase();
        let v = v.trim_start();
        let (value, tail) = if let Some(q) = v.strip_prefix('"') {
            let end = q.find('"').unwrap_or(q.len());
            (&q[..end], q.get(end + 1..).unwrap_or(""))
        } else {
            let end = v.find(',').unwrap_or(v.len());
            (&v[..end], &v[end..])
        };
        params.insert(k, value.to_owned());
        s = tail.trim_start_matches(',').trim_start();
    }
    Some(Challenge::Bearer {
        realm: params.remove("realm")?,
        service: params.remove("service"),
    })
}

/// A short excerpt of an error body (the registry's `errors[].message` when it is JSON).
pub(crate) async fn detail_of(resp: Response) -> String {
    let text = resp.text().await.unwrap_or_default();
    if let Ok(v) = serde_json::from_str::<serde_json::Value>(&text)
        && let Some(errs) = v["errors"].as_array()
    {
        let msgs: Vec<String> = errs
            .iter()
            .map(|e| {
                let code = e["code"].as_str().unwrap_or_default();
                let msg = e["message"].as_str().unwrap_or_default();
                let det = match &e["detail"] {
                    serde_json::Value::Null => String::new(),
                    // distribution 2.8 sends a Go error it cannot serialize as `{}`.
                    serde_json::Value::Object(m) if m.is_empty() => String::new(),
                    serde_json::Value::String(s) if s.is_empty() => String::new(),
                    d => format!(" ({d})"),
                };
                format!("{code}: {msg}{det}")
            })
            .collect();
        if !msgs.is_empty() {
            return msgs.join("; ");
        }
    }
    let t: String = text.trim().chars().take(300).collect();
    if t.is_empty() { "no details".into() } else { t }
}

async fn backoff(attempt: u32) {
    tokio::time::sleep(Duration::from_millis(200 * (1 << attempt.min(5)))).await;
}

/// Whether another attempt is due (of [`ATTEMPTS`]): if so, counts it and backs off first.
async fn another_attempt(attempt: &mut u32) -> bool {
    if *attempt + 1 >= ATTEMPTS {
        return false;
    }
    *attempt += 1;
    backoff(*attempt).await;
    true
}

impl Client {
    /// Whether the registry is spoken to over plain HTTP.
    pub(crate) fn is_plain_http(&self) -> bool {
        self.base.starts_with("http://")
    }

    /// The config file and field the credential came from.
    pub(crate) fn credential_source(&self) -> Option<(&std::path::Path, &'static str)> {
        self.found
            .credential
            .as_ref()
            .and(self.found.source.as_ref())
            .map(|(p, f)| (p.as_path(), *f))
    }

    /// Opens the registry: TLS first; plain HTTP where allowed and TLS is not spoken. The
    /// first `GET /v2/` tells whether and how it wants credentials.
    pub(crate) async fn connect(spec: &RegistrySpec, opts: &ClientOptions) -> Result<Self> {
        let host = spec.host().to_owned();
        let mut builder = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(15))
            .pool_max_idle_per_host(32)
            .user_agent(concat!("imgkit/", env!("CARGO_PKG_VERSION")));
        for ca in &opts.ca_certs {
            let pem = std::fs::read(ca)
                .map_err(Error::io(format!("cannot read --ca-cert {}", ca.display())))?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
                Error::Config(format!(
                    "--ca-cert {} holds no PEM certificate: {e}",
                    ca.display()
                ))
            })?;
            if certs.is_empty() {
                return Err(Error::Config(format!(
                    "--ca-cert {} holds no PEM certificate",
                    ca.display()
                )));
            }
            for c in certs {
                builder = builder.add_root_certificate(c);
            }
        }
        let http = builder
            .build()
            .map_err(|e| Error::Config(format!("cannot set up HTTP: {}", chain(&e))))?;
        let plain_ok = spec.is_loopback() || opts.insecure.iter().any(|h| h == spec.host());
        let found = auth::lookup(
            &host,
            auth::config_path(opts.docker_config.as_deref()).as_deref(),
        )?;
        let mut client = Self {
            base: format!("https://{host}"),
            host,
            http,
            found,
            challenge: Mutex::new(None),
            tokens: Mutex::new(HashMap::new()),
        };
        match client.ping().await {
            Ok(()) => Ok(client),
            Err(Error::Tls { host, detail }) if plain_ok => {
                client.base = format!("http://{host}");
                match client.ping().await {
                    Ok(()) => Ok(client),
                    // It speaks TLS after all (with a certificate we do not trust).
                    Err(_) => Err(Error::Tls { host, detail }),
                }
            }
            Err(Error::Tls { host, detail })
                if detail.to_ascii_lowercase().contains("corrupt message")
                    || detail.contains("InvalidContentType") =>
            {
                Err(Error::PlainHttp { host })
            }
            Err(e) => Err(e),
        }
    }

    /// `GET /v2/`: reachable, a registry, and which challenge it sends.
    async fn ping(&self) -> Result<()> {
        let url = format!("{}/v2/", self.base);
        let mut attempt = 0;
        loop {
            let res = self.http.get(&url).send().await;
            let resp = match res {
                Ok(r) => r,
                Err(e) => {
                    let err = transport_error(&self.host, &e);
                    if err.transient() && another_attempt(&mut attempt).await {
                        continue;
                    }
                    return Err(err);
                }
            };
            let status = resp.status();
            if status == StatusCode::UNAUTHORIZED {
                *self.challenge.lock().expect("lock") = parse_challenge(resp.headers());
                return Ok(());
            }
            if status.is_success() {
                return Ok(());
            }
            if status.is_server_error() && another_attempt(&mut attempt).await {
                continue;
            }
            if status == StatusCode::BAD_REQUEST {
                // Go's "Client sent an HTTP request to an HTTPS server".
                return Err(Error::Tls {
                    host: self.host.clone(),
                    detail: "it answers plain HTTP with 400 (it speaks TLS)".into(),
                });
            }
            return Err(Error::Status {
                host: self.host.clone(),
                status: status.as_u16(),
                what: "GET /v2/ (is it an OCI registry?)".into(),
                detail: detail_of(resp).await,
            });
        }
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// A URL the registry returned (`Location`), made absolute.
    pub(crate) fn resolve(&self, location: &str) -> Result<Url> {
        let base = Url::parse(&format!("{}/", self.base)).expect("the base is a URL");
        base.join(location).map_err(|e| Error::Invalid {
            host: self.host.clone(),
            what: "an upload location".into(),
            detail: format!("{location:?}: {e}"),
        })
    }

    pub(crate) fn tried(&self) -> &str {
        &self.found.tried
    }

    fn auth_error(&self, detail: String) -> Error {
        if self.found.credential.is_some() {
            Error::AuthRefused {
                host: self.host.clone(),
                tried: self.found.tried.clone(),
                detail,
            }
        } else {
            Error::AuthRequired {
                host: self.host.clone(),
                tried: self.found.tried.clone(),
            }
        }
    }

    /// The `Authorization` value for `scope` (a bearer token fetched when needed).
    async fn authorization(&self, scope: &[String]) -> Result<Option<String>> {
        let challenge = self.challenge.lock().expect("lock").clone();
        match challenge {
            None => Ok(None),
            Some(Challenge::Basic) => Ok(match &self.found.credential {
                Some(Credential::Basic { user, password }) => Some(format!(
                    "Basic {}",
                    base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
                )),
                _ => None,
            }),
            Some(Challenge::Bearer { realm, service }) => {
                let key = scope.join(" ");
                if let Some(t) = self.tokens.lock().expect("lock").get(&key)
                    && t.until > Instant::now()
                {
                    return Ok(Some(format!("Bearer {}", t.value)));
                }
                let token = self.fetch_token(&realm, service.as_deref(), scope).await?;
                let v = format!("Bearer {}", token.value);
                self.tokens.lock().expect("lock").insert(key, token);
                Ok(Some(v))
            }
        }
    }

    async fn fetch_token(
        &self,
        realm: &str,
        service: Option<&str>,
        scope: &[String],
    ) -> Result<Token> {
        let mut url = Url::parse(realm).map_err(|e| Error::Invalid {
            host: self.host.clone(),
            what: "the token realm".into(),
            detail: format!("{realm:?}: {e}"),
        })?;
        let req = if let Some(Credential::IdentityToken(t)) = &self.found.credential {
            let mut form = url::form_urlencoded::Serializer::new(String::new());
            form.append_pair("grant_type", "refresh_token")
                .append_pair("refresh_token", t)
                .append_pair("client_id", "imgkit");
            if let Some(s) = service {
                form.append_pair("service", s);
            }
            if !scope.is_empty() {
                form.append_pair("scope", &scope.join(" "));
            }
            self.http
                .post(url)
                .header("Content-Type", "application/x-www-form-urlencoded")
                .body(form.finish())
        } else {
            {
                let mut q = url.query_pairs_mut();
                if let Some(s) = service {
                    q.append_pair("service", s);
                }
                for s in scope {
                    q.append_pair("scope", s);
                }
            }
            let mut req = self.http.get(url);
            if let Some(Credential::Basic { user, password }) = &self.found.credential {
                req = req.basic_auth(user, Some(password));
            }
            req
        };
        let resp = req
            .send()
            .await
            .map_err(|e| transport_error(&self.host, &e))?;
        let status = resp.status();
        if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            let d = detail_of(resp).await;
            return Err(self.auth_error(d));
        }
        if !status.is_success() {
            return Err(Error::Status {
                host: self.host.clone(),
                status: status.as_u16(),
                what: format!("the token request to {realm}"),
                detail: detail_of(resp).await,
            });
        }
        let v: serde_json::Value = json_of(resp).await.map_err(|e| Error::Invalid {
            host: self.host.clone(),
            what: "the token".into(),
            detail: e,
        })?;
        let value = v["token"]
            .as_str()
            .or_else(|| v["access_token"].as_str())
            .filter(|t| !t.is_empty())
            .ok_or_else(|| Error::Invalid {
                host: self.host.clone(),
                what: "the token answer".into(),
                detail: "it has no token".into(),
            })?;
        let secs = v["expires_in"].as_u64().unwrap_or(60).max(10);
        Ok(Token {
            value: value.to_owned(),
            // Refreshed a little before it runs out.
            until: Instant::now() + Duration::from_secs(secs - secs / 10),
        })
    }

    fn forget_token(&self, scope: &[String]) {
        self.tokens.lock().expect("lock").remove(&scope.join(" "));
    }

    /// Sends the request `build` makes (once per attempt), authorized for `scope`: a 401 gets the
    /// challenge answered (or the token refreshed) and the request sent again; dropped
    /// connections, 5xx and 429 are tried again with backoff. The response may be any other
    /// status: the caller says what it means.
    pub(crate) async fn send(
        &self,
        scope: &[String],
        build: &(dyn Fn(&reqwest::Client) -> Result<RequestBuilder> + Sync),
    ) -> Result<Response> {
        let mut attempt = 0;
        let mut reauthorized = false;
        loop {
            let mut req = build(&self.http)?;
            if let Some(a) = self.authorization(scope).await? {
                req = req.header(AUTHORIZATION, a);
            }
            let resp = match req.send().await {
                Ok(r) => r,
                Err(e) => {
                    let err = transport_error(&self.host, &e);
                    if err.transient() && another_attempt(&mut attempt).await {
                        continue;
                    }
                    return Err(err);
                }
            };
            let status = resp.status();
            if status == StatusCode::UNAUTHORIZED {
                if reauthorized {
                    let d = detail_of(resp).await;
                    return Err(self.auth_error(d));
                }
                reauthorized = true;
                let fresh = parse_challenge(resp.headers());
                let had = self.challenge.lock().expect("lock").clone();
                if fresh.is_none() && had.is_none() {
                    let d = detail_of(resp).await;
                    return Err(self.auth_error(d));
                }
                if let Some(c) = fresh {
                    *self.challenge.lock().expect("lock") = Some(c);
                }
                if matches!(
                    *self.challenge.lock().expect("lock"),
                    Some(Challenge::Basic)
                ) && !matches!(self.found.credential, Some(Credential::Basic { .. }))
                {
                    return Err(self.auth_error("no credentials".into()));
                }
                self.forget_token(scope);
                continue;
            }
            if (status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS)
                && another_attempt(&mut attempt).await
            {
                continue;
            }
            return Ok(resp);
        }
    }
}

/// JSON from a response body (bounded: registries' JSON answers are small).
pub(crate) async fn json_of(resp: Response) -> std::result::Result<serde_json::Value, String> {
    let bytes = read_bounded(resp, MAX_JSON).await?;
    serde_json::from_slice(&bytes).map_err(|e| e.to_string())
}

/// The most a manifest, config or listing page may hold.
pub(crate) const MAX_JSON: usize = 16 << 20;

/// A body read into memory, refused past `limit` bytes.
pub(crate) async fn read_bounded(
    mut resp: Response,
    limit: usize,
) -> std::result::Result<Vec<u8>, String> {
    let mut out = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| chain(&e))? {
        if out.len() + chunk.len() > limit {
            return Err(format!("it is over {limit} bytes"));
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_bearer_and_basic_challenges() {
        let mut h = HeaderMap::new();
        h.insert(
            WWW_AUTHENTICATE,
            r#"Bearer realm="https://auth.example.com/token",service="registry.example.com",scope="repository:a/b:pull""#
                .parse()
                .unwrap(),
        );
        assert_eq!(
            parse_challenge(&h),
            Some(Challenge::Bearer {
                realm: "https://auth.example.com/token".into(),
                service: Some("registry.example.com".into())
            })
        );
        h.insert(
            WWW_AUTHENTICATE,
            r#"Basic realm="Registry Realm""#.parse().unwrap(),
        );
        assert_eq!(parse_challenge(&h), Some(Challenge::Basic));
        h.insert(WWW_AUTHENTICATE, "Negotiate".parse().unwrap());
        assert_eq!(parse_challenge(&h), None);
    }
}
