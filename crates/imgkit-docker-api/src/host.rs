//! Where dockerd listens, found the way the docker CLI finds it: `--host`, else `--context`,
//! else `DOCKER_HOST`, else `DOCKER_CONTEXT`, else the `currentContext` of docker's
//! `config.json`, else the default socket. A context is read from docker's own context store
//! (`$DOCKER_CONFIG/contexts/meta/<sha256 of the name>/meta.json`). What this client cannot
//! speak (ssh://, TLS) is an [`Unsupported`] answer, and the caller uses the docker CLI.

use std::env;
use std::fmt;
use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};

/// A daemon address this client can dial.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Address {
    /// `unix:///var/run/docker.sock`.
    Unix(PathBuf),
    /// `tcp://host:port` (plain HTTP).
    Tcp(String),
    /// `npipe:////./pipe/docker_engine` (Windows).
    Npipe(PathBuf),
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Address::Unix(p) => write!(f, "unix://{}", p.display()),
            Address::Tcp(a) => write!(f, "tcp://{a}"),
            Address::Npipe(p) => {
                write!(f, "npipe://{}", p.display().to_string().replace('\\', "/"))
            }
        }
    }
}

/// Why the API cannot be used for this daemon (the docker CLI can).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unsupported(pub String);

impl fmt::Display for Unsupported {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What names the daemon (the CLI's flags; the environment is read here).
#[derive(Debug, Clone, Default)]
pub struct HostOptions {
    /// `--host`.
    pub host: Option<String>,
    /// `--context`.
    pub context: Option<String>,
}

/// The default daemon address of this platform.
pub fn default_address() -> Address {
    if cfg!(windows) {
        Address::Npipe(PathBuf::from(r"\\.\pipe\docker_engine"))
    } else {
        Address::Unix(PathBuf::from("/var/run/docker.sock"))
    }
}

/// Parses a `DOCKER_HOST`-style URL.
pub fn parse_host(url: &str) -> Result<Address, Unsupported> {
    let url = url.trim();
    if let Some(p) = url.strip_prefix("unix://") {
        if p.is_empty() {
            return Err(Unsupported(format!("{url} names no socket")));
        }
        return Ok(Address::Unix(PathBuf::from(p)));
    }
    if let Some(p) = url.strip_prefix("npipe://") {
        // npipe:////./pipe/docker_engine → \\.\pipe\docker_engine
        let p = p.replace('/', "\\");
        return Ok(Address::Npipe(PathBuf::from(p)));
    }
    if let Some(rest) = url
        .strip_prefix("tcp://")
        .or_else(|| url.strip_prefix("http://"))
    {
        let tls = env::var_os("DOCKER_TLS_VERIFY").is_some_and(|v| !v.is_empty())
            || env::var_os("DOCKER_TLS").is_some_and(|v| !v.is_empty());
        if tls {
            return Err(Unsupported(format!(
                "{url} with TLS (DOCKER_TLS_VERIFY) is left to the docker CLI"
            )));
        }
        let hostport = rest.split('/').next().unwrap_or_default();
        if hostport.is_empty() {
            return Err(Unsupported(format!("{url} names no host")));
        }
        let has_port = hostport
            .rsplit_once(':')
            .is_some_and(|(_, p)| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
            && !hostport.ends_with(']');
        let addr = if has_port {
            hostport.to_owned()
        } else {
            format!("{hostport}:2375")
        };
        return Ok(Address::Tcp(addr));
    }
    if url.starts_with("ssh://") {
        return Err(Unsupported(format!(
            "{url} is an ssh:// host, which the docker CLI reaches through ssh"
        )));
    }
    if url.starts_with("https://") {
        return Err(Unsupported(format!("{url} needs TLS")));
    }
    Err(Unsupported(format!(
        "{url} is not a host URL this client knows"
    )))
}

fn env_nonempty(k: &str) -> Option<String> {
    env::var(k).ok().filter(|v| !v.is_empty())
}

/// docker's configuration directory: `$DOCKER_CONFIG`, else `~/.docker`.
pub fn config_dir() -> Option<PathBuf> {
    if let Some(d) = env::var_os("DOCKER_CONFIG").filter(|v| !v.is_empty()) {
        return Some(PathBuf::from(d));
    }
    env::var_os(if cfg!(windows) { "USERPROFILE" } else { "HOME" })
        .filter(|h| !h.is_empty())
        .map(|h| Path::new(&h).join(".docker"))
}

/// The daemon address for these options and this environment.
pub fn resolve(opts: &HostOptions) -> Result<Address, Unsupported> {
    if let Some(h) = &opts.host {
        return parse_host(h);
    }
    if let Some(c) = &opts.context {
        return context_address(c);
    }
    if let Some(h) = env_nonempty("DOCKER_HOST") {
        return parse_host(&h);
    }
    if let Some(c) = env_nonempty("DOCKER_CONTEXT") {
        return context_address(&c);
    }
    if let Some(c) = current_context()? {
        return context_address(&c);
    }
    Ok(default_address())
}

/// `currentContext` of docker's `config.json`, when set.
fn current_context() -> Result<Option<String>, Unsupported> {
    let Some(dir) = config_dir() else {
        return Ok(None);
    };
    let path = dir.join("config.json");
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(Unsupported(format!("cannot read {}: {e}", path.display())));
        }
    };
    let v: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| Unsupported(format!("cannot read {}: {e}", path.display())))?;
    Ok(v.get("currentContext")
        .and_then(serde_json::Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_owned))
}

/// The docker endpoint of context `name` in docker's context store.
pub fn context_address(name: &str) -> Result<Address, Unsupported> {
    if name == "default" {
        return match env_nonempty("DOCKER_HOST") {
            Some(h) => parse_host(&h),
            None => Ok(default_address()),
        };
    }
    let dir = config_dir()
        .ok_or_else(|| Unsupported("no home directory to find docker's contexts in".into()))?;
    let hash = hex(&Sha256::digest(name.as_bytes()));
    let meta = dir
        .join("contexts")
        .join("meta")
        .join(&hash)
        .join("meta.json");
    let text = std::fs::read_to_string(&meta).map_err(|e| {
        Unsupported(format!(
            "context {name:?}: cannot read {}: {e}",
            meta.display()
        ))
    })?;
    let v: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| Unsupported(format!("context {name:?}: {}: {e}", meta.display())))?;
    let docker = v
        .pointer("/Endpoints/docker")
        .ok_or_else(|| Unsupported(format!("context {name:?} has no docker endpoint")))?;
    let host = docker
        .get("Host")
        .and_then(serde_json::Value::as_str)
        .filter(|h| !h.is_empty())
        .ok_or_else(|| Unsupported(format!("context {name:?} names no docker host")))?;
    let tls = dir.join("contexts").join("tls").join(&hash).join("docker");
    if tls.exists() {
        return Err(Unsupported(format!(
            "context {name:?} uses TLS material, which the docker CLI reads"
        )));
    }
    parse_host(host)
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_host_urls() {
        assert_eq!(
            parse_host("unix:///run/user/1000/docker.sock"),
            Ok(Address::Unix("/run/user/1000/docker.sock".into()))
        );
        assert_eq!(
            parse_host("npipe:////./pipe/docker_engine"),
            Ok(Address::Npipe(r"\\.\pipe\docker_engine".into()))
        );
        assert!(parse_host("ssh://me@box").unwrap_err().0.contains("ssh"));
        assert!(parse_host("fd://").is_err());
        assert_eq!(
            default_address().to_string(),
            if cfg!(windows) {
                "npipe:////./pipe/docker_engine"
            } else {
                "unix:///var/run/docker.sock"
            }
        );
        assert_eq!(
            Address::Npipe(r"\\.\pipe\docker_engine".into()).to_string(),
            "npipe:////./pipe/docker_engine"
        );
    }

    #[test]
    fn the_context_store_is_keyed_by_the_names_sha256() {
        // docker's own layout: contexts/meta/<sha256("rd")>/meta.json
        assert_eq!(
            hex(&Sha256::digest(b"default")),
            "37a8eec1ce19687d132fe29051dca629d164e2c4958ba141d5f4133a33f0688f"
        );
    }
}
