//! Where containerd's socket is: `--address`, `CONTAINERD_ADDRESS`, else the first of the usual
//! places that exists (plain containerd, k3s and RKE2, MicroK8s).

use std::path::Path;

/// The usual sockets, in the order they are tried.
#[cfg(not(windows))]
pub const USUAL: &[&str] = &[
    "/run/containerd/containerd.sock",
    "/run/k3s/containerd/containerd.sock",
    "/var/snap/microk8s/common/run/containerd.sock",
];
/// The usual named pipe.
#[cfg(windows)]
pub const USUAL: &[&str] = &[r"\\.\pipe\containerd-containerd"];

/// A containerd address and how it was found (for `-v`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Address {
    /// The socket path (or named pipe), without a `unix://` or `npipe://` scheme.
    pub path: String,
    /// `--address`, `CONTAINERD_ADDRESS`, `found` (a usual place that exists) or `default`.
    pub how: &'static str,
}

impl std::fmt::Display for Address {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.path)
    }
}

/// The socket to use: `explicit` (`--address`), else `CONTAINERD_ADDRESS`, else the first
/// usual place that exists, else the first usual place (so an error names it).
pub fn discover(explicit: Option<&str>) -> Address {
    discover_with(
        explicit,
        std::env::var("CONTAINERD_ADDRESS").ok().as_deref(),
        |p| Path::new(p).exists(),
    )
}

pub(crate) fn discover_with(
    explicit: Option<&str>,
    env: Option<&str>,
    exists: impl Fn(&str) -> bool,
) -> Address {
    if let Some(a) = explicit.filter(|a| !a.is_empty()) {
        return Address {
            path: strip_scheme(a).to_owned(),
            how: "--address",
        };
    }
    if let Some(a) = env.filter(|a| !a.is_empty()) {
        return Address {
            path: strip_scheme(a).to_owned(),
            how: "CONTAINERD_ADDRESS",
        };
    }
    match USUAL.iter().find(|p| exists(p)) {
        Some(p) => Address {
            path: (*p).to_owned(),
            how: "found",
        },
        None => Address {
            path: USUAL[0].to_owned(),
            how: "default",
        },
    }
}

fn strip_scheme(a: &str) -> &str {
    a.strip_prefix("unix://")
        .or_else(|| a.strip_prefix("npipe://"))
        .unwrap_or(a)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flag_then_environment_then_the_first_usual_place_that_exists() {
        let none = |_: &str| false;
        assert_eq!(
            discover_with(Some("unix:///x.sock"), Some("/y.sock"), none),
            Address {
                path: "/x.sock".into(),
                how: "--address"
            }
        );
        assert_eq!(
            discover_with(None, Some("/y.sock"), none).how,
            "CONTAINERD_ADDRESS"
        );
        assert_eq!(discover_with(Some(""), Some(""), none).how, "default");
        assert_eq!(discover_with(None, None, none).path, USUAL[0]);
        #[cfg(not(windows))]
        assert_eq!(
            discover_with(None, None, |p| p.contains("k3s")),
            Address {
                path: "/run/k3s/containerd/containerd.sock".into(),
                how: "found"
            }
        );
    }
}
