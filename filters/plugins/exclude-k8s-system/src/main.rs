//! Selects every tagged image except Kubernetes' own: the registry.k8s.io and k8s.gcr.io
//! images, rancher's mirrored-* and klipper-* images (k3s), and pause/coredns/etcd/
//! kube-* images from any registry. Extra prefixes to drop: `--plugin-arg drop=prefix1,prefix2`.

use imgkit_plugin_sdk::{NONE, Record, args, run};

/// Repository prefixes (as docker prints them) that belong to the cluster, not to you.
const SYSTEM_PREFIXES: &[&str] = &[
    "registry.k8s.io/",
    "k8s.gcr.io/",
    "gcr.io/k8s-",
    "rancher/mirrored-",
    "rancher/klipper-",
    "docker.io/rancher/mirrored-",
    "docker.io/rancher/klipper-",
];

/// Last path components that are cluster plumbing wherever they are hosted.
const SYSTEM_NAMES: &[&str] = &[
    "pause",
    "coredns",
    "etcd",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kube-proxy",
    "local-path-provisioner",
    "metrics-server",
];

fn is_system(repository: &str, extra: &[String]) -> bool {
    let last = repository.rsplit('/').next().unwrap_or(repository);
    SYSTEM_PREFIXES.iter().any(|p| repository.starts_with(p))
        || extra.iter().any(|p| repository.starts_with(p.as_str()))
        || SYSTEM_NAMES.contains(&last)
}

fn main() -> std::process::ExitCode {
    let extra: Vec<String> = args()
        .get("drop")
        .map(|v| {
            v.split(',')
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    run(|r: Record| {
        // Digest-only rows would name "all tags" to `docker save`: skip them.
        if r.tag == NONE || is_system(&r.repository, &extra) {
            return None;
        }
        r.reference()
    })
}

#[cfg(test)]
mod tests {
    use super::is_system;

    #[test]
    fn system_images() {
        for repo in [
            "registry.k8s.io/pause",
            "registry.k8s.io/coredns/coredns",
            "rancher/mirrored-pause",
            "rancher/klipper-helm",
            "docker.io/rancher/klipper-lb",
            "k8s.gcr.io/etcd",
            "quay.io/someone/pause",
            "coredns",
        ] {
            assert!(is_system(repo, &[]), "{repo}");
        }
        for repo in [
            "alpine",
            "rancher/rancher",
            "ghcr.io/me/app",
            "registry.k8s.io.example/x",
        ] {
            assert!(!is_system(repo, &[]), "{repo}");
        }
        assert!(is_system("ghcr.io/me/app", &["ghcr.io/me/".into()]));
    }
}
