//! Image references (`[domain/]path[:tag][@digest]`), parsed against the grammar of
//! distribution/reference — the gate every reference passes before it reaches an argv.
//!
//! A reference that parses here cannot start with `-`, cannot hold whitespace, quotes, `$`, `;`
//! or control characters, and is at most [`MAX_NAME_LEN`] bytes of name plus a bounded tag and
//! digest: it is safe to pass as one argument to an engine CLI.

use std::fmt;
use std::str::FromStr;

use crate::digest::{Digest, DigestError};

/// The longest repository name (domain and path) the grammar accepts.
pub const MAX_NAME_LEN: usize = 255;
const MAX_TAG_LEN: usize = 128;
const MAX_REF_LEN: usize = 1024;

/// The domain docker assumes for names without one.
const DEFAULT_DOMAIN: &str = "docker.io";
const LEGACY_DEFAULT_DOMAIN: &str = "index.docker.io";
const OFFICIAL_REPO_PREFIX: &str = "library/";

/// A parsed image reference. Display prints it exactly as it was written.
///
/// ```
/// use imgkit_types::ImageRef;
/// let r: ImageRef = "localhost:5000/team/app:1.2".parse().unwrap();
/// assert_eq!(r.domain(), Some("localhost:5000"));
/// assert_eq!(r.path(), "team/app");
/// assert_eq!(r.tag(), Some("1.2"));
/// assert!("--output=/tmp/x".parse::<ImageRef>().is_err());
/// assert_eq!("alpine".parse::<ImageRef>().unwrap().normalized_name(), "docker.io/library/alpine");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ImageRef {
    domain: Option<String>,
    path: String,
    tag: Option<String>,
    digest: Option<Digest>,
}

/// Why a string is not an image reference. Messages quote the input (escaped, cut at 80 chars).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RefError {
    #[error("empty image reference")]
    Empty,
    #[error("{0} is too long to be an image reference ({1} bytes)")]
    TooLong(Quoted, usize),
    #[error("{0} is not an image reference: it starts with '-' and would be read as a flag")]
    LooksLikeFlag(Quoted),
    #[error("{0} is not an image reference: it contains {1}")]
    ForbiddenChar(Quoted, &'static str),
    #[error("{0} is not an image reference: repository name {1:?} {2}")]
    InvalidName(Quoted, String, &'static str),
    #[error(
        "{0} is not an image reference: tag {1:?} must match [A-Za-z0-9_][A-Za-z0-9_.-]{{0,127}}"
    )]
    InvalidTag(Quoted, String),
    #[error("{0} is not an image reference: {1}")]
    InvalidDigest(Quoted, DigestError),
}

/// A user-supplied string, quoted for an error message: escaped and cut to 80 chars.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quoted(pub String);

impl Quoted {
    fn new(s: &str) -> Self {
        let cut: String = s.chars().take(80).collect();
        let more = if cut.len() < s.len() { "…" } else { "" };
        Self(format!("{cut:?}{more}"))
    }
}

impl fmt::Display for Quoted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl ImageRef {
    /// Parses a reference exactly as written (no normalization).
    pub fn parse(s: &str) -> Result<Self, RefError> {
        s.parse()
    }

    /// The registry domain (with port), if the name has one.
    pub fn domain(&self) -> Option<&str> {
        self.domain.as_deref()
    }

    /// The path below the domain (`team/app`).
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The tag, if any.
    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    /// The digest, if any.
    pub fn digest(&self) -> Option<&Digest> {
        self.digest.as_ref()
    }

    /// The repository name as written: `[domain/]path`.
    pub fn name(&self) -> String {
        match &self.domain {
            Some(d) => format!("{d}/{}", self.path),
            None => self.path.clone(),
        }
    }

    /// The fully qualified name, as containerd and podman store it: `docker.io/library/alpine`.
    pub fn normalized_name(&self) -> String {
        let domain = match self.domain.as_deref() {
            None | Some(LEGACY_DEFAULT_DOMAIN) => DEFAULT_DOMAIN,
            Some(d) => d,
        };
        if domain == DEFAULT_DOMAIN && !self.path.contains('/') {
            format!("{domain}/{OFFICIAL_REPO_PREFIX}{}", self.path)
        } else {
            format!("{domain}/{}", self.path)
        }
    }

    /// The short name docker prints: `alpine` for `docker.io/library/alpine`. A docker.io path
    /// whose first component would read as a registry (`docker.io/a.b/c`) keeps its domain:
    /// `a.b/c` would name another registry (or not parse at all).
    pub fn familiar_name(&self) -> String {
        match self.domain.as_deref() {
            None | Some(DEFAULT_DOMAIN | LEGACY_DEFAULT_DOMAIN) => {
                let short = self
                    .path
                    .strip_prefix(OFFICIAL_REPO_PREFIX)
                    .filter(|rest| !rest.contains('/'))
                    .unwrap_or(&self.path);
                match short.split_once('/') {
                    Some((first, _)) if first.contains(['.', ':']) || first == "localhost" => {
                        format!("{DEFAULT_DOMAIN}/{}", self.path)
                    }
                    _ => short.to_owned(),
                }
            }
            Some(d) => format!("{d}/{}", self.path),
        }
    }

    /// The same reference, fully qualified, with `:latest` when it has neither tag nor digest.
    #[must_use]
    pub fn normalized(&self) -> Self {
        let name: Self = self
            .normalized_name()
            .parse()
            .expect("normalized name is valid");
        Self {
            domain: name.domain,
            path: name.path,
            tag: match (&self.tag, &self.digest) {
                (None, None) => Some("latest".to_owned()),
                (t, _) => t.clone(),
            },
            digest: self.digest.clone(),
        }
    }

    /// The same reference in docker's familiar form (`alpine:3.20`).
    #[must_use]
    pub fn familiar(&self) -> Self {
        let name: Self = self
            .familiar_name()
            .parse()
            .expect("familiar name is valid");
        Self {
            domain: name.domain,
            path: name.path,
            tag: self.tag.clone(),
            digest: self.digest.clone(),
        }
    }

    /// This name with another tag (and no digest).
    pub fn with_tag(&self, tag: &str) -> Result<Self, RefError> {
        format!("{}:{tag}", self.name()).parse()
    }

    /// This name with a digest (and no tag).
    #[must_use]
    pub fn with_digest(&self, digest: &Digest) -> Self {
        Self {
            domain: self.domain.clone(),
            path: self.path.clone(),
            tag: None,
            digest: Some(digest.clone()),
        }
    }
}

fn is_alnum_lower(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit()
}

/// path-component := [a-z0-9]+ (separator [a-z0-9]+)*, separator := [_.] | __ | [-]+
fn valid_path_component(c: &str) -> bool {
    let b = c.as_bytes();
    if b.is_empty() || !is_alnum_lower(b[0]) || !is_alnum_lower(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if is_alnum_lower(b[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && !is_alnum_lower(b[i]) {
            i += 1;
        }
        let sep = &c[start..i];
        let ok = matches!(sep, "." | "_" | "__") || sep.bytes().all(|x| x == b'-');
        if !ok {
            return false;
        }
    }
    true
}

/// domain-component := [a-zA-Z0-9] | [a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9]
fn valid_domain_component(c: &str) -> bool {
    let b = c.as_bytes();
    !b.is_empty()
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter().all(|x| x.is_ascii_alphanumeric() || *x == b'-')
}

/// `domain := host [':' port]`, `host := domain-name | '[' ipv6 ']'`
fn valid_domain(d: &str) -> bool {
    let (host, port) = if let Some(rest) = d.strip_prefix('[') {
        let Some(end) = rest.find(']') else {
            return false;
        };
        let ip = &rest[..end];
        if ip.is_empty() || !ip.bytes().all(|b| b.is_ascii_hexdigit() || b == b':') {
            return false;
        }
        let after = &rest[end + 1..];
        match after.strip_prefix(':') {
            Some(p) => (None, Some(p)),
            None if after.is_empty() => (None, None),
            None => return false,
        }
    } else {
        match d.split_once(':') {
            Some((h, p)) => (Some(h), Some(p)),
            None => (Some(d), None),
        }
    };
    if let Some(h) = host
        && !h.split('.').all(valid_domain_component)
    {
        return false;
    }
    port.is_none_or(|p| !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()))
}

fn valid_tag(t: &str) -> bool {
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let b = t.as_bytes();
    !b.is_empty()
        && b.len() <= MAX_TAG_LEN
        && word(b[0])
        && b.iter().all(|&x| word(x) || x == b'.' || x == b'-')
}

impl FromStr for ImageRef {
    type Err = RefError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.is_empty() {
            return Err(RefError::Empty);
        }
        if s.len() > MAX_REF_LEN {
            return Err(RefError::TooLong(Quoted::new(s), s.len()));
        }
        if s.starts_with('-') {
            return Err(RefError::LooksLikeFlag(Quoted::new(s)));
        }
        if let Some(c) = s.chars().find(|c| c.is_whitespace() || c.is_control()) {
            let what = if c.is_whitespace() {
                "whitespace"
            } else {
                "a control character"
            };
            return Err(RefError::ForbiddenChar(Quoted::new(s), what));
        }
        if !s.is_ascii() {
            return Err(RefError::ForbiddenChar(
                Quoted::new(s),
                "a non-ASCII character",
            ));
        }
        let (rest, digest) = match s.split_once('@') {
            Some((rest, d)) => {
                let digest = d
                    .parse::<Digest>()
                    .map_err(|e| RefError::InvalidDigest(Quoted::new(s), e))?;
                (rest, Some(digest))
            }
            None => (s, None),
        };
        let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match rest[last_slash..].rfind(':') {
            Some(i) => (&rest[..last_slash + i], Some(&rest[last_slash + i + 1..])),
            None => (rest, None),
        };
        if let Some(t) = tag
            && !valid_tag(t)
        {
            return Err(RefError::InvalidTag(Quoted::new(s), t.to_owned()));
        }
        let bad_name = |why| RefError::InvalidName(Quoted::new(s), name.to_owned(), why);
        if name.is_empty() {
            return Err(bad_name("is empty"));
        }
        if name.len() > MAX_NAME_LEN {
            return Err(bad_name("is longer than 255 characters"));
        }
        let (domain, path) = match name.split_once('/') {
            Some((first, rest))
                if first.contains(['.', ':'])
                    || first == "localhost"
                    || first.starts_with('[')
                    || first.bytes().any(|b| b.is_ascii_uppercase()) =>
            {
                if !valid_domain(first) {
                    return Err(bad_name("has an invalid registry domain"));
                }
                (Some(first), rest)
            }
            _ => (None, name),
        };
        // Engines store the qualified name (`docker.io/library/…`): it must fit the limit too,
        // as in docker's ParseNormalizedNamed (and `normalized()` can then never fail).
        let qualified_len = match domain {
            Some(d) if d != DEFAULT_DOMAIN && d != LEGACY_DEFAULT_DOMAIN => {
                d.len() + 1 + path.len()
            }
            _ if path.contains('/') => DEFAULT_DOMAIN.len() + 1 + path.len(),
            _ => DEFAULT_DOMAIN.len() + 1 + OFFICIAL_REPO_PREFIX.len() + path.len(),
        };
        if qualified_len > MAX_NAME_LEN {
            return Err(bad_name(
                "is longer than 255 characters once qualified (docker.io/library/…)",
            ));
        }
        if !path.split('/').all(valid_path_component) {
            return Err(bad_name(
                "must be lowercase letters, digits and separators (. _ __ -) between '/' components",
            ));
        }
        Ok(Self {
            domain: domain.map(str::to_owned),
            path: path.to_owned(),
            tag: tag.map(str::to_owned),
            digest,
        })
    }
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(d) = &self.domain {
            write!(f, "{d}/")?;
        }
        f.write_str(&self.path)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

impl serde::Serialize for ImageRef {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for ImageRef {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_too_long_once_qualified_are_refused() {
        // Found by fuzz/fuzz_targets/reference.rs: `normalized()` panicked on these.
        let long = format!("{}/x", "a".repeat(246));
        assert!(ImageRef::parse(&long).is_err());
        assert!(ImageRef::parse(&"a".repeat(240)).is_err());
        assert!(
            ImageRef::parse(&format!("{}/x", "a".repeat(200)))
                .unwrap()
                .normalized()
                .to_string()
                .len()
                > 200
        );
    }

    #[test]
    fn familiar_names_never_change_registry() {
        // Found by fuzz/fuzz_targets/reference.rs: these familiarized to another registry, or
        // to a string that doesn't parse (a panic in `familiar()`).
        for (input, familiar) in [
            (
                "index.docker.io/fx.docker.io/oo/bar",
                "docker.io/fx.docker.io/oo/bar",
            ),
            (
                "index.docker.io/fxc6jr__ooooex.docker.i/barba:r",
                "docker.io/fxc6jr__ooooex.docker.i/barba:r",
            ),
            ("docker.io/localhost/x", "docker.io/localhost/x"),
            ("docker.io/library/alpine:3", "alpine:3"),
            ("docker.io/team/app", "team/app"),
        ] {
            let r = ImageRef::parse(input).unwrap();
            assert_eq!(r.familiar().to_string(), familiar, "{input}");
            assert_eq!(r.familiar().normalized(), r.normalized(), "{input}");
        }
    }

    const HEX: &str = "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824";

    #[test]
    fn accepts_the_grammar() {
        let cases = [
            ("alpine", None, "alpine", None),
            ("alpine:3.20", None, "alpine", Some("3.20")),
            (
                "library/alpine:latest",
                None,
                "library/alpine",
                Some("latest"),
            ),
            (
                "localhost:5000/team/app:v1",
                Some("localhost:5000"),
                "team/app",
                Some("v1"),
            ),
            ("localhost/app", Some("localhost"), "app", None),
            (
                "registry.k8s.io/pause:3.9",
                Some("registry.k8s.io"),
                "pause",
                Some("3.9"),
            ),
            (
                "Registry.Example/app",
                Some("Registry.Example"),
                "app",
                None,
            ),
            ("[::1]:5000/app:x", Some("[::1]:5000"), "app", Some("x")),
            (
                "a__b/c.d/e-f---g:_T.a-g",
                None,
                "a__b/c.d/e-f---g",
                Some("_T.a-g"),
            ),
            (
                "rancher/mirrored-pause:3.6",
                None,
                "rancher/mirrored-pause",
                Some("3.6"),
            ),
        ];
        for (input, domain, path, tag) in cases {
            let r: ImageRef = input.parse().unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(
                (r.domain(), r.path(), r.tag()),
                (domain, path, tag),
                "{input}"
            );
            assert_eq!(r.to_string(), input);
        }
        let r: ImageRef = format!("app@sha256:{HEX}").parse().unwrap();
        assert_eq!(r.digest().unwrap().hex(), HEX);
        let r: ImageRef = format!("localhost:5000/app:v1@sha256:{HEX}")
            .parse()
            .unwrap();
        assert_eq!((r.tag(), r.digest().is_some()), (Some("v1"), true));
    }

    #[test]
    fn rejects_hostile_and_malformed_input() {
        let long = "a".repeat(10_000);
        let cases: Vec<String> = vec![
            String::new(),
            "--output=/tmp/x".into(),
            "-v".into(),
            "a b".into(),
            "$(touch /tmp/pwned)".into(),
            "x;rm -rf /".into(),
            "`id`".into(),
            "app\n".into(),
            "app\0".into(),
            "App".into(),
            "app:".into(),
            "app:-x".into(),
            "app@sha256:abc".into(),
            "/app".into(),
            "app/".into(),
            "a//b".into(),
            "app:tag:tag".into(),
            "localhost:port/app".into(),
            "ex-.com/app".into(),
            "ïmage".into(),
            "a..b".into(),
            format!("app:{}", "t".repeat(129)),
            long,
            format!("{}/x", "a".repeat(300)),
        ];
        for bad in cases {
            assert!(bad.parse::<ImageRef>().is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn normalizes_like_docker() {
        let n = |s: &str| s.parse::<ImageRef>().unwrap();
        assert_eq!(n("alpine").normalized_name(), "docker.io/library/alpine");
        assert_eq!(n("team/app").normalized_name(), "docker.io/team/app");
        assert_eq!(n("localhost/app").normalized_name(), "localhost/app");
        assert_eq!(n("docker.io/library/alpine").familiar_name(), "alpine");
        assert_eq!(
            n("index.docker.io/library/alpine").familiar_name(),
            "alpine"
        );
        assert_eq!(n("docker.io/team/app").familiar_name(), "team/app");
        assert_eq!(n("docker.io/library/a/b").familiar_name(), "library/a/b");
        assert_eq!(n("quay.io/a/b").familiar_name(), "quay.io/a/b");
        assert_eq!(
            n("alpine").normalized().to_string(),
            "docker.io/library/alpine:latest"
        );
        assert_eq!(
            n("docker.io/library/alpine:3").familiar().to_string(),
            "alpine:3"
        );
    }

    #[test]
    fn errors_quote_and_cut_the_input() {
        let e = "x"
            .repeat(2000)
            .parse::<ImageRef>()
            .unwrap_err()
            .to_string();
        assert!(e.len() < 200, "{e}");
        let e = "--output=/x".parse::<ImageRef>().unwrap_err().to_string();
        assert!(e.contains("flag"), "{e}");
    }
}
