//! Credentials, as docker finds them: `config.json` (`$DOCKER_CONFIG/config.json`, else
//! `~/.docker/config.json`): `credHelpers[HOST]`, then `credsStore`, then `auths[HOST]`
//! (`auth` = base64 `user:password`, or `username`/`password`, or `identitytoken`). A helper is
//! `docker-credential-NAME get`, run with the host on its stdin (argv only, no shell).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use base64::Engine as _;
use serde_json::Value;

use crate::error::{Error, Result};

/// What to log in with.
#[derive(Clone, PartialEq, Eq)]
pub(crate) enum Credential {
    Basic {
        user: String,
        password: String,
    },
    /// An OAuth2 refresh token (`docker login` to a token server stores one).
    IdentityToken(String),
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credential::Basic { user, .. } => write!(f, "Basic({user}, ***)"),
            Credential::IdentityToken(_) => f.write_str("IdentityToken(***)"),
        }
    }
}

/// The credential found for a host (if any), and where it was looked for: said in errors.
#[derive(Debug, Clone)]
pub(crate) struct Found {
    pub(crate) credential: Option<Credential>,
    pub(crate) tried: String,
    /// Where the credential came from: the config file and its field (`auths`,
    /// `credHelpers`, `credsStore`).
    pub(crate) source: Option<(PathBuf, &'static str)>,
}

/// docker's config.json: `--docker-config`'s file, `$DOCKER_CONFIG/config.json`, or
/// `~/.docker/config.json`.
pub(crate) fn config_path(explicit: Option<&Path>) -> Option<PathBuf> {
    if let Some(p) = explicit {
        return Some(p.to_owned());
    }
    if let Some(dir) = std::env::var_os("DOCKER_CONFIG").filter(|d| !d.is_empty()) {
        return Some(PathBuf::from(dir).join("config.json"));
    }
    let home = std::env::var_os("HOME").or_else(|| std::env::var_os("USERPROFILE"))?;
    Some(PathBuf::from(home).join(".docker").join("config.json"))
}

/// `https://host/v1/` → `host`.
fn key_host(key: &str) -> &str {
    let k = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    k.split('/').next().unwrap_or(k)
}

/// Looks up `host`'s credential in the config file at `path` (none when it is missing).
pub(crate) fn lookup(host: &str, path: Option<&Path>) -> Result<Found> {
    let Some(path) = path else {
        return Ok(Found {
            credential: None,
            tried: "no docker config.json: HOME is not set".into(),
            source: None,
        });
    };
    let text = match std::fs::read(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Ok(Found {
                credential: None,
                tried: format!("anonymous: {} does not exist", path.display()),
                source: None,
            });
        }
        Err(e) => return Err(Error::io(format!("cannot read {}", path.display()))(e)),
    };
    let config: Value = serde_json::from_slice(&text)
        .map_err(|e| Error::Config(format!("{} is not JSON: {e}", path.display())))?;
    let mut notes = Vec::new();
    let helper = config["credHelpers"]
        .as_object()
        .and_then(|m| m.iter().find(|(k, _)| key_host(k) == host))
        .and_then(|(_, v)| v.as_str());
    for (name, field) in [
        (helper, "credHelpers"),
        (config["credsStore"].as_str(), "credsStore"),
    ] {
        let Some(name) = name.filter(|n| !n.is_empty()) else {
            continue;
        };
        match from_helper(name, host) {
            Ok(Some(c)) => {
                return Ok(Found {
                    credential: Some(c),
                    tried: format!("docker-credential-{name} ({field} in {})", path.display()),
                    source: Some((path.to_owned(), field)),
                });
            }
            Ok(None) => notes.push(format!("docker-credential-{name} has none")),
            Err(e) => notes.push(format!("docker-credential-{name}: {e}")),
        }
    }
    let entry = config["auths"]
        .as_object()
        .and_then(|m| m.iter().find(|(k, _)| key_host(k) == host))
        .map(|(_, v)| v);
    if let Some(e) = entry
        && let Some(c) = from_auths_entry(e)
    {
        return Ok(Found {
            credential: Some(c),
            tried: format!("the auths entry for {host} in {}", path.display()),
            source: Some((path.to_owned(), "auths")),
        });
    }
    notes.push(format!("{} has no auths entry for {host}", path.display()));
    Ok(Found {
        credential: None,
        tried: format!("anonymous: {}", notes.join("; ")),
        source: None,
    })
}

fn from_auths_entry(e: &Value) -> Option<Credential> {
    if let Some(t) = e["identitytoken"].as_str().filter(|t| !t.is_empty()) {
        return Some(Credential::IdentityToken(t.to_owned()));
    }
    if let Some(a) = e["auth"].as_str().filter(|a| !a.is_empty()) {
        let raw = base64::engine::general_purpose::STANDARD.decode(a).ok()?;
        let text = String::from_utf8(raw).ok()?;
        let (user, password) = text.split_once(':')?;
        return Some(Credential::Basic {
            user: user.to_owned(),
            password: password.to_owned(),
        });
    }
    match (e["username"].as_str(), e["password"].as_str()) {
        (Some(u), Some(p)) if !u.is_empty() => Some(Credential::Basic {
            user: u.to_owned(),
            password: p.to_owned(),
        }),
        _ => None,
    }
}

/// `docker-credential-NAME get` with `host` on stdin: `{"Username": …, "Secret": …}`.
fn from_helper(name: &str, host: &str) -> std::result::Result<Option<Credential>, String> {
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
    {
        return Err(format!("{name:?} is not a credential helper name"));
    }
    let mut child = Command::new(format!("docker-credential-{name}"))
        .arg("get")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run it: {e}"))?;
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(host.as_bytes());
    }
    let out = child.wait_with_output().map_err(|e| e.to_string())?;
    if !out.status.success() {
        let text = String::from_utf8_lossy(&out.stdout);
        if text.contains("credentials not found") {
            return Ok(None);
        }
        return Err(format!("{} {}", out.status, text.trim()));
    }
    let v: Value = serde_json::from_slice(&out.stdout).map_err(|e| e.to_string())?;
    let user = v["Username"].as_str().unwrap_or_default();
    let secret = v["Secret"].as_str().unwrap_or_default();
    if secret.is_empty() {
        return Ok(None);
    }
    Ok(Some(if user == "<token>" {
        Credential::IdentityToken(secret.to_owned())
    } else {
        Credential::Basic {
            user: user.to_owned(),
            password: secret.to_owned(),
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_auths_entries_in_their_three_spellings() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("config.json");
        std::fs::write(
            &p,
            r#"{"auths": {
                "https://a.io/v1/": {"auth": "dXNlcjpwYTpzcw=="},
                "b.io:5000": {"username": "u", "password": "p"},
                "c.io": {"identitytoken": "tok"}
            }}"#,
        )
        .unwrap();
        let f = lookup("a.io", Some(&p)).unwrap();
        assert_eq!(
            f.credential,
            Some(Credential::Basic {
                user: "user".into(),
                password: "pa:ss".into()
            })
        );
        assert!(f.tried.contains("auths entry for a.io"), "{}", f.tried);
        assert!(matches!(
            lookup("b.io:5000", Some(&p)).unwrap().credential,
            Some(Credential::Basic { .. })
        ));
        assert_eq!(
            lookup("c.io", Some(&p)).unwrap().credential,
            Some(Credential::IdentityToken("tok".into()))
        );
        let none = lookup("d.io", Some(&p)).unwrap();
        assert!(none.credential.is_none());
        assert!(
            none.tried.contains("no auths entry for d.io"),
            "{}",
            none.tried
        );
        let missing = lookup("a.io", Some(&dir.path().join("nope.json"))).unwrap();
        assert!(missing.tried.contains("does not exist"));
    }

    #[test]
    fn a_missing_helper_is_said_and_the_auths_entry_still_used() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("config.json");
        std::fs::write(
            &p,
            r#"{"credsStore": "imgkit-test-none", "auths": {"a.io": {"auth": "dTpw"}}}"#,
        )
        .unwrap();
        let f = lookup("a.io", Some(&p)).unwrap();
        assert!(f.credential.is_some());
        let f = lookup("b.io", Some(&p)).unwrap();
        assert!(
            f.tried.contains("docker-credential-imgkit-test-none"),
            "{}",
            f.tried
        );
        std::fs::write(&p, r#"{"credsStore": "x; rm -rf /"}"#).unwrap();
        assert!(
            lookup("a.io", Some(&p))
                .unwrap()
                .tried
                .contains("not a credential helper name")
        );
    }
}
