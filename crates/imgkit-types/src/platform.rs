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

#[cfg(test)]
mod tests {
    #[test]
    fn the_host_platform_is_linux_and_a_go_architecture() {
        let p = super::host_platform();
        assert!(p.starts_with("linux/"), "{p}");
        assert!(!p.contains("x86_64") && !p.contains("aarch64"), "{p}");
    }
}
