//! `registry:HOST[:PORT][/PATH]`: which registry, and where below it images go.

use std::fmt;

use imgkit_types::ImageRef;

use crate::error::{Error, Result};

/// A registry endpoint: its host (with port) and an optional path prefix.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RegistrySpec {
    host: String,
    prefix: Option<String>,
}

/// What an endpoint spec starts with to name a registry.
pub const SCHEME: &str = "registry:";

fn valid_host(h: &str) -> bool {
    let (name, port) = if let Some(rest) = h.strip_prefix('[') {
        // [::1]:5000
        match rest.split_once(']') {
            Some((ip, port)) => {
                if ip.parse::<std::net::Ipv6Addr>().is_err() {
                    return false;
                }
                return port.is_empty()
                    || port
                        .strip_prefix(':')
                        .is_some_and(|p| !p.is_empty() && p.parse::<u16>().is_ok());
            }
            None => return false,
        }
    } else {
        match h.rsplit_once(':') {
            Some((n, p)) => (n, Some(p)),
            None => (h, None),
        }
    };
    if let Some(p) = port
        && (p.is_empty() || p.parse::<u16>().is_err())
    {
        return false;
    }
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|c| {
            !c.is_empty()
                && c.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !c.starts_with('-')
                && !c.ends_with('-')
        })
}

impl RegistrySpec {
    /// Parses `HOST[:PORT][/PATH]` (with or without the `registry:` in front).
    pub fn parse(text: &str) -> Result<Self> {
        let s = text.strip_prefix(SCHEME).unwrap_or(text);
        let s = s.strip_suffix('/').unwrap_or(s);
        if s.is_empty() {
            return Err(Error::Spec(text.to_owned(), "no host after `registry:`"));
        }
        if s.contains("://") {
            return Err(Error::Spec(
                text.to_owned(),
                "write the host without a scheme: registry:HOST[:PORT][/PATH]",
            ));
        }
        let (host, prefix) = match s.split_once('/') {
            Some((h, p)) => (h, Some(p)),
            None => (s, None),
        };
        if !valid_host(host) {
            return Err(Error::Spec(
                text.to_owned(),
                "the host must be a DNS name or IP address with an optional :PORT",
            ));
        }
        if let Some(p) = prefix {
            // The prefix must be a repository path the reference grammar accepts.
            let probe = format!("{host}/{p}/x");
            if !ImageRef::parse(&probe).is_ok_and(|r| r.domain() == Some(host)) {
                return Err(Error::Spec(
                    text.to_owned(),
                    "PATH must be lowercase path components (a-z, 0-9, . _ -) separated by /",
                ));
            }
        }
        Ok(Self {
            host: host.to_owned(),
            prefix: prefix.map(str::to_owned),
        })
    }

    /// `HOST[:PORT]`.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The path prefix, if any.
    pub fn prefix(&self) -> Option<&str> {
        self.prefix.as_deref()
    }

    /// The name an image gets in this registry: its repository path (as docker.io spells
    /// it: `library/alpine`) under HOST and PATH, with its tag (or digest).
    /// `seed/app:1.0` → `HOST/seed/app:1.0`; `docker.io/library/alpine:3.20` →
    /// `HOST/library/alpine:3.20`; `localhost:5000/team/app:1.0` → `HOST/team/app:1.0`.
    pub fn target(&self, r: &ImageRef) -> Result<ImageRef> {
        let n = r.normalized();
        let path = n.path();
        let name = match &self.prefix {
            Some(p) => format!("{}/{p}/{path}", self.host),
            None => format!("{}/{path}", self.host),
        };
        let text = match (n.tag(), n.digest()) {
            (Some(t), _) => format!("{name}:{t}"),
            (None, Some(d)) => format!("{name}@{d}"),
            (None, None) => format!("{name}:latest"),
        };
        ImageRef::parse(&text).map_err(|_| {
            Error::Spec(
                text.clone(),
                "the name this image would get in the registry is not a valid reference (too long?)",
            )
        })
    }

    /// The repository of `r` in this registry (`seed/app`), when `r` names this registry and
    /// lies under its prefix.
    pub fn repository_of(&self, r: &ImageRef) -> Option<String> {
        if r.domain() != Some(self.host.as_str()) {
            return None;
        }
        match &self.prefix {
            Some(p) if !r.path().starts_with(&format!("{p}/")) => None,
            _ => Some(r.path().to_owned()),
        }
    }

    /// Whether a repository of the registry lies under the prefix.
    pub fn covers(&self, repository: &str) -> bool {
        match &self.prefix {
            Some(p) => repository.starts_with(&format!("{p}/")),
            None => true,
        }
    }

    /// Whether plain HTTP may be used without being asked (loopback hosts, as docker does).
    pub fn is_loopback(&self) -> bool {
        let name = if let Some(rest) = self.host.strip_prefix('[') {
            rest.split(']').next().unwrap_or_default()
        } else {
            self.host
                .rsplit_once(':')
                .map_or(self.host.as_str(), |(n, _)| n)
        };
        name == "localhost"
            || name
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback())
    }
}

impl fmt::Display for RegistrySpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.prefix {
            Some(p) => write!(f, "{SCHEME}{}/{p}", self.host),
            None => write!(f, "{SCHEME}{}", self.host),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(s: &str) -> ImageRef {
        s.parse().unwrap()
    }

    #[test]
    fn parses_hosts_ports_and_paths() {
        let s = RegistrySpec::parse("registry:localhost:5000").unwrap();
        assert_eq!((s.host(), s.prefix()), ("localhost:5000", None));
        let s = RegistrySpec::parse("registry:reg.example.com/team/ci").unwrap();
        assert_eq!((s.host(), s.prefix()), ("reg.example.com", Some("team/ci")));
        assert_eq!(s.to_string(), "registry:reg.example.com/team/ci");
        let s = RegistrySpec::parse("registry:[::1]:5000/").unwrap();
        assert_eq!((s.host(), s.prefix()), ("[::1]:5000", None));
        for bad in [
            "registry:",
            "registry:https://x.io",
            "registry:x.io:port",
            "registry:-x.io",
            "registry:x.io/UPPER",
            "registry:x.io/a//b",
            "registry:x.io:5000/$(id)",
        ] {
            assert!(RegistrySpec::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn names_keep_their_repository_path_under_the_host() {
        let s = RegistrySpec::parse("registry:localhost:5000").unwrap();
        assert_eq!(
            s.target(&r("seed/app:1.0")).unwrap().to_string(),
            "localhost:5000/seed/app:1.0"
        );
        assert_eq!(
            s.target(&r("docker.io/library/alpine:3.20"))
                .unwrap()
                .to_string(),
            "localhost:5000/library/alpine:3.20"
        );
        assert_eq!(
            s.target(&r("alpine")).unwrap().to_string(),
            "localhost:5000/library/alpine:latest"
        );
        assert_eq!(
            s.target(&r("registry.example.com:5000/a/b/c:nested"))
                .unwrap()
                .to_string(),
            "localhost:5000/a/b/c:nested"
        );
        let p = RegistrySpec::parse("registry:reg.io/mirror").unwrap();
        let t = p.target(&r("seed/app:1.0")).unwrap();
        assert_eq!(t.to_string(), "reg.io/mirror/seed/app:1.0");
        assert_eq!(p.repository_of(&t).as_deref(), Some("mirror/seed/app"));
        assert_eq!(p.repository_of(&r("reg.io/other/app:1")), None);
        assert!(p.covers("mirror/x") && !p.covers("mirrorx/y"));
    }

    #[test]
    fn only_loopback_hosts_are_loopback() {
        for (h, yes) in [
            ("localhost:5000", true),
            ("127.0.0.1:5000", true),
            ("127.1.2.3", true),
            ("[::1]:5000", true),
            ("reg.example.com:5000", false),
            ("10.0.0.1:5000", false),
        ] {
            assert_eq!(RegistrySpec::parse(h).unwrap().is_loopback(), yes, "{h}");
        }
    }
}
