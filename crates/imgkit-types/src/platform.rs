//! The platform images are picked for: this machine's, named as OCI and Go name them.

/// This machine's CPU architecture as OCI platforms name it (Go's `GOARCH`): `amd64`, `arm64`, …
pub fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        other => other,
    }
}

/// The platform picked from an index: `linux/` and [`host_arch`]. Images are for linux even
/// where imgkit runs elsewhere (containerd's and docker's default matchers do the same).
pub fn host_platform() -> String {
    format!("linux/{}", host_arch())
}

/// Checks a platform as a person writes it (`--platform`): `os/arch` or `os/arch/variant`,
/// each part lower-case letters, digits, `_` or `.`. The reason when it is not one.
pub fn check(p: &str) -> Result<(), String> {
    let parts: Vec<&str> = p.split('/').collect();
    if !(2..=3).contains(&parts.len()) {
        return Err(format!(
            "{p:?} is not a platform: write OS/ARCH or OS/ARCH/VARIANT, e.g. linux/arm64"
        ));
    }
    let ok = |w: &str| {
        !w.is_empty()
            && w.len() <= 32
            && w.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'.')
    };
    match parts.iter().find(|w| !ok(w)) {
        Some(w) => Err(format!(
            "{p:?} is not a platform: {w:?} must be lower-case letters, digits, `_` or `.`"
        )),
        None => Ok(()),
    }
}

/// Whether the platform `have` (as an index names it: `os/arch[/variant]`) is one `want`
/// asks for: the same OS and architecture, and the same variant when `want` names one
/// (`arm64`'s default variant is `v8`, as containerd's matcher has it).
pub fn matches(want: &str, have: &str) -> bool {
    let split = |p: &str| -> (String, String, Option<String>) {
        let mut it = p.split('/');
        let os = it.next().unwrap_or_default().to_owned();
        let arch = it.next().unwrap_or_default().to_owned();
        let variant = it.next().map(str::to_owned);
        let variant = match (arch.as_str(), variant) {
            ("arm64", None) => Some("v8".to_owned()),
            (_, v) => v,
        };
        (os, arch, variant)
    };
    let (wo, wa, wv) = split(want);
    let (ho, ha, hv) = split(have);
    let explicit = want.split('/').nth(2).is_some();
    wo == ho && wa == ha && (!explicit || wv == hv)
}

#[cfg(test)]
mod tests {
    #[test]
    fn platforms_match_as_containerd_matches_them() {
        use super::matches;
        assert!(matches("linux/amd64", "linux/amd64"));
        assert!(matches("linux/arm64", "linux/arm64/v8"));
        assert!(matches("linux/arm64/v8", "linux/arm64"));
        assert!(matches("linux/arm", "linux/arm/v7"));
        assert!(!matches("linux/arm/v6", "linux/arm/v7"));
        assert!(!matches("linux/amd64", "linux/arm64"));
        assert!(!matches("windows/amd64", "linux/amd64"));
    }

    #[test]
    fn checks_what_a_person_writes() {
        use super::check;
        assert!(check("linux/amd64").is_ok());
        assert!(check("linux/arm/v7").is_ok());
        assert!(check("linux").is_err());
        assert!(check("linux/amd64/v1/x").is_err());
        assert!(check("Linux/amd64").is_err());
        assert!(check("linux/-x").is_err());
        assert!(check("linux//v7").is_err());
    }

    #[test]
    fn the_host_platform_is_linux_and_a_go_architecture() {
        let p = super::host_platform();
        assert!(p.starts_with("linux/"), "{p}");
        assert!(!p.contains("x86_64") && !p.contains("aarch64"), "{p}");
    }
}
