//! The built-in presets (`filters/*.jq`) on recorded listings — docker's seeded set and a
//! k3s-like containerd `k8s.io` namespace — each with images it must keep and drop; and on a
//! real containerd namespace laid out like k3s's, through `imgkit ls`.

use imgkit_engine::{ctr, docker};
use imgkit_types::ImageRecord;

use crate::util::Test;

/// Recorded `docker image ls --digests --format '{{json .}}'` of the seeded set.
const DOCKER: &str = include_str!("fixtures/docker-seeded-digests.jsonl");
/// Recorded `ctr -n k8s.io images ls` of a k3s-like namespace: k3s's system images
/// (rancher/mirrored-*, klipper, local-path-provisioner, registry.k8s.io, k8s.gcr.io), user
/// images, CRI's digest and `sha256:<config>` aliases.
const K3S: &str = include_str!("fixtures/k3s-ctr-k8s.io.txt");

fn docker_records() -> Vec<ImageRecord> {
    docker::undo_digests(docker::parse_list(DOCKER.as_bytes()).unwrap())
}

fn k3s_records() -> Vec<ImageRecord> {
    ctr::to_records(&ctr::parse_list(K3S.as_bytes()).unwrap())
}

/// What `imgkit filter -r -f PRESET` prints for the records, one line each, sorted.
fn outputs(preset: &str, records: &[ImageRecord]) -> Vec<String> {
    let input: String = records.iter().map(|r| r.to_json_line() + "\n").collect();
    let run = Test::new()
        .args(["filter", "-r", "-f", preset])
        .stdin(input)
        .run()
        .success();
    let mut lines: Vec<String> = run.stdout.lines().map(str::to_owned).collect();
    lines.sort();
    lines
}

#[test]
fn exclude_k8s_system_drops_what_k3s_runs_and_keeps_the_rest() {
    let out = outputs("exclude-k8s-system", &k3s_records());
    assert_eq!(
        out,
        [
            "ghcr.io/acme/worker:7",
            "localhost:5000/team/app:1.0",
            "myorg/api",
            "myorg/api:2.1",
            "nginx:1.25",
            "pauser:1",
            "rancher/rancher-agent:v2.8.0",
            "registry.example.com:5000/a/b/c:nested",
            "seed/app:1.0",
            "seed/base:1.0",
            "seed/many:v1",
            "seed/many:v2",
            "seed/many:v3",
            "seed/many:v4",
            "seed/many:v5",
            "seed/multi:latest",
        ]
    );
    // on docker's seeded set it is the guide's program (nothing there is a system image)
    assert_eq!(
        outputs("exclude-k8s-system", &docker_records()),
        outputs("default", &docker_records())
    );
}

#[test]
fn dangling_selects_untagged_images_by_id_or_digest() {
    let recs = docker_records();
    let untagged_id = recs
        .iter()
        .find(|r| r.repository == "<none>")
        .unwrap()
        .id
        .clone();
    let pinned = recs.iter().find(|r| r.repository == "seed/pinned").unwrap();
    assert_eq!(
        outputs("dangling", &recs),
        [untagged_id, format!("seed/pinned@{}", pinned.digest)]
    );
    // k3s: digest-only names (CRI's alias next to a tag is one, row by row) and the config alias
    let out = outputs("dangling", &k3s_records());
    assert_eq!(out.len(), 3, "{out:?}");
    assert!(
        out.iter().any(|o| o.starts_with("myorg/api@sha256:")),
        "{out:?}"
    );
    assert!(
        !out.iter().any(|o| o.contains(':') && !o.contains('@')),
        "{out:?}"
    );
}

#[test]
fn all_selects_every_row_named_or_not() {
    let recs = docker_records();
    let out = outputs("all", &recs);
    assert_eq!(out.len(), recs.len());
    assert!(out.contains(&"seed/app:1.0".to_owned()));
    assert!(out.iter().any(|o| o.starts_with("seed/pinned@sha256:")));
    let untagged = recs.iter().find(|r| r.repository == "<none>").unwrap();
    assert!(out.contains(&untagged.id));
    assert_eq!(outputs("all", &k3s_records()).len(), k3s_records().len());
}

#[test]
fn unknown_presets_are_listed() {
    Test::new()
        .args(["filter", "-r", "-f", "no-such-preset"])
        .stdin("{}")
        .run()
        .code(2)
        .stderr_has("default, all, dangling, exclude-k8s-system");
}

/// `imgkit ls -f exclude-k8s-system` on a real containerd namespace laid out like k3s's.
#[cfg(unix)]
#[test]
fn exclude_k8s_system_on_a_real_k3s_like_namespace() {
    use crate::transfer::{ctr, engines, output};
    let Some(e) = engines() else { return };
    let addr = e.dst.var("CONTAINERD_ADDRESS");
    let ns = "k3s-like";
    let shared = std::path::Path::new(e.src.var("IMGKIT_ENGINES_DIR")).join("seed/shared.tar");
    let mut import = ctr(addr, ns);
    import
        .args(["images", "import", "--no-unpack"])
        .arg(&shared);
    output(&mut import);
    for name in [
        "docker.io/rancher/mirrored-pause:3.6",
        "docker.io/rancher/mirrored-coredns-coredns:1.10.1",
        "docker.io/rancher/klipper-helm:v0.8.2-build20230815",
        "docker.io/rancher/local-path-provisioner:v0.0.24",
        "registry.k8s.io/pause:3.9",
        "docker.io/myorg/api:2.1",
    ] {
        let _ = ctr(addr, ns).args(["images", "rm", name]).output();
        output(ctr(addr, ns).args(["images", "tag", "docker.io/seed/base:1.0", name]));
    }
    let run = Test::new()
        .env("CONTAINERD_ADDRESS", addr)
        .args([
            "ls",
            "--engine",
            "ctr",
            "-n",
            ns,
            "-f",
            "exclude-k8s-system",
        ])
        .run()
        .success();
    let out: Vec<&str> = run.stdout.lines().collect();
    assert!(out.contains(&"myorg/api:2.1"), "{out:?}");
    assert!(out.contains(&"seed/base:1.0"), "{out:?}");
    for dropped in ["rancher/", "registry.k8s.io/"] {
        assert!(!out.iter().any(|o| o.starts_with(dropped)), "{out:?}");
    }
}

/// `-f a -f b` is a pipeline in `ls` and `run`: records that pass `a` go into `b`.
#[cfg(unix)]
#[test]
fn repeated_filters_compose_as_a_pipeline() {
    use crate::transfer::{engines, src_docker, write_filter};
    let Some(e) = engines() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let seed_only = tmp.path().join("seed.jq");
    std::fs::write(&seed_only, r#"select(.Repository | startswith("seed/m"))"#).unwrap();
    let tagged = write_filter(tmp.path(), r#".Repository + ":" + .Tag"#);
    let (k, v) = src_docker(e);
    Test::new()
        .env(&k, &v)
        .env("IMGKIT_DOCKER_BIN", crate::transfer::docker_cli())
        .args(["ls", "--engine", "docker", "-f"])
        .args([&seed_only, &"-f".into(), &tagged])
        .run()
        .success()
        .stdout_is(
            "seed/multi:latest\nseed/many:v1\nseed/many:v2\nseed/many:v3\nseed/many:v4\nseed/many:v5\n",
        );
    // a preset first, then a program choosing among what it kept
    let multi = tmp.path().join("multi.jq");
    std::fs::write(
        &multi,
        r#"select(.Repository == "seed/multi") | .Repository + ":" + .Tag"#,
    )
    .unwrap();
    let run = Test::new()
        .env(&k, &v)
        .env("IMGKIT_DOCKER_BIN", crate::transfer::docker_cli())
        .args([
            "--json",
            "run",
            "--dry-run",
            "--force",
            "--from",
            "docker",
            "--to",
            "x.tar",
        ])
        .args(["-f", "exclude-k8s-system", "-f"])
        .args([&multi])
        .current_dir(tmp.path())
        .run()
        .success();
    let plan: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(plan["images"].as_array().unwrap().len(), 1, "{plan}");
    assert_eq!(plan["images"][0]["ref"], "seed/multi:latest");
}
