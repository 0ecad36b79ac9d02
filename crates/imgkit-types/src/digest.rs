//! Content digests (`sha256:<64 hex>`), as used for config, manifest and layer blobs.

use std::fmt;
use std::str::FromStr;

/// A content digest `algorithm:hex`, validated against the OCI digest grammar.
///
/// ```
/// let d: imgkit_types::Digest = "sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824".parse().unwrap();
/// assert_eq!(d.algorithm(), "sha256");
/// assert_eq!(d.short_id(), "2cf24dba5fb0");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest {
    text: String,
    colon: usize,
}

/// Why a string is not a digest.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DigestError {
    #[error("digest {0:?} has no `algorithm:` prefix")]
    MissingAlgorithm(String),
    #[error("digest algorithm {0:?} is not valid (letters, digits and + . _ - only)")]
    InvalidAlgorithm(String),
    #[error(
        "digest {0:?} must be lowercase hex of the algorithm's length (sha256: 64, sha512: 128)"
    )]
    InvalidHex(String),
}

impl Digest {
    /// The algorithm part (`sha256`).
    pub fn algorithm(&self) -> &str {
        &self.text[..self.colon]
    }

    /// The hex part, lowercase.
    pub fn hex(&self) -> &str {
        &self.text[self.colon + 1..]
    }

    /// The whole digest, `sha256:…`.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The first 12 hex digits, as docker prints an image ID.
    pub fn short_id(&self) -> &str {
        let hex = self.hex();
        &hex[..hex.len().min(12)]
    }

    /// A sha256 digest from 64 lowercase hex digits.
    pub fn sha256_hex(hex: &str) -> Result<Self, DigestError> {
        format!("sha256:{hex}").parse()
    }
}

fn valid_algorithm(alg: &str) -> bool {
    // algorithm-component (separator algorithm-component)*, component = [a-z0-9]+
    !alg.is_empty()
        && alg.split(['+', '.', '_', '-']).all(|c| {
            !c.is_empty()
                && c.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        })
}

impl FromStr for Digest {
    type Err = DigestError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let Some(colon) = s.find(':') else {
            return Err(DigestError::MissingAlgorithm(s.to_owned()));
        };
        let (alg, hex) = (&s[..colon], &s[colon + 1..]);
        if !valid_algorithm(alg) {
            return Err(DigestError::InvalidAlgorithm(s.to_owned()));
        }
        let want = match alg {
            "sha256" => Some(64),
            "sha512" => Some(128),
            _ => None,
        };
        let hex_ok = hex
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
            && match want {
                Some(n) => hex.len() == n,
                None => hex.len() >= 32,
            };
        if !hex_ok {
            return Err(DigestError::InvalidHex(s.to_owned()));
        }
        Ok(Self {
            text: s.to_owned(),
            colon,
        })
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl serde::Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text)
    }
}

impl<'de> serde::Deserialize<'de> for Digest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824";

    #[test]
    fn parses_sha256() {
        let d: Digest = format!("sha256:{HEX}").parse().unwrap();
        assert_eq!(d.hex(), HEX);
        assert_eq!(d.to_string(), format!("sha256:{HEX}"));
    }

    #[test]
    fn rejects_bad_digests() {
        for bad in [
            HEX.to_owned(),
            format!("sha256:{}", &HEX[..63]),
            format!("sha256:{}", HEX.to_uppercase()),
            format!("SHA256:{HEX}"),
            format!(":{HEX}"),
            "sha256:".to_owned(),
            format!("sha256:{HEX}\n"),
        ] {
            assert!(bad.parse::<Digest>().is_err(), "{bad:?} parsed");
        }
    }
}
