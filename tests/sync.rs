//! Sync semantics of `imgkit run` on real engines: a repeated run moves nothing, a run after one
//! image changed moves only that image, `--force` moves everything again. The engines are the
//! ones `tests/transfer.rs` uses (from `scripts/test`); without them these tests skip (and fail
//! when `CI` is set).
#![cfg(unix)]

use std::process::Command;

use serde_json::Value;

use crate::transfer::{
    Engines, K8S_DST, SELECT_TWO, ctr, ctr_images, empty_ctr, engines, fresh_podman, imgkit, kv,
    lock, output, podman_images, src_docker, want_two, write_filter,
};

/// The engines, or a skip (a failure in CI).
fn need() -> Option<&'static Engines> {
    engines()
}

/// The `--json` summary of a run (the last stdout line).
fn summary(stdout: &str) -> Value {
    let line = stdout
        .lines()
        .last()
        .unwrap_or_else(|| panic!("no summary"));
    serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"))
}

fn strings(v: &Value) -> Vec<String> {
    let mut out: Vec<String> = v
        .as_array()
        .unwrap_or_else(|| panic!("not an array: {v}"))
        .iter()
        .map(|s| s.as_str().unwrap().to_owned())
        .collect();
    out.sort();
    out
}

#[test]
fn a_repeated_run_moves_nothing_and_a_changed_image_moves_alone() {
    let Some(e) = need() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let filter = write_filter(tmp.path(), SELECT_TWO);
    let mut env = fresh_podman(tmp.path());
    env.push(src_docker(e));
    let run = || {
        imgkit(&env)
            .args(["--json", "run", "--from", "docker", "--to", "podman", "-f"])
            .args([&filter])
            .run()
            .success()
    };

    let first = summary(&run().stdout);
    assert_eq!(strings(&first["copied"]), ["seed/app:1.0", "seed/base:1.0"]);
    assert!(strings(&first["skipped"]).is_empty());
    assert!(first["bytes"].as_u64().unwrap() > 0);

    let second = summary(&run().stdout);
    assert_eq!(second["bytes"], 0, "{second}");
    assert!(strings(&second["copied"]).is_empty(), "{second}");
    assert_eq!(
        strings(&second["skipped"]),
        ["seed/app:1.0", "seed/base:1.0"]
    );
    assert_eq!(podman_images(&env), want_two(e, "docker.io/"));

    // seed/base:1.0 now names another image in the target: only it moves.
    let mut tag = Command::new("podman");
    tag.args(["tag", "docker.io/seed/app:1.0", "docker.io/seed/base:1.0"]);
    tag.envs(env.iter().map(|(k, v)| (k, v)));
    output(&mut tag);
    let third = summary(&run().stdout);
    assert_eq!(strings(&third["copied"]), ["seed/base:1.0"], "{third}");
    assert_eq!(strings(&third["skipped"]), ["seed/app:1.0"], "{third}");
    assert_eq!(third["verified"], 1);
    assert_eq!(podman_images(&env), want_two(e, "docker.io/"));

    // --force moves both again; the human summary names what it skipped.
    let forced = imgkit(&env)
        .args([
            "--json", "run", "--force", "--from", "docker", "--to", "podman", "-f",
        ])
        .args([&filter])
        .run()
        .success();
    assert_eq!(
        strings(&summary(&forced.stdout)["copied"]),
        ["seed/app:1.0", "seed/base:1.0"]
    );
    imgkit(&env)
        .args(["run", "--from", "docker", "--to", "podman", "-f"])
        .args([&filter])
        .run()
        .success()
        .stderr_has("nothing to move from docker to podman")
        .stderr_has("skipped 2 already there with the same ID");
}

#[test]
fn the_default_selection_repeats_as_nothing_including_digest_only_images() {
    let Some(e) = need() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let mut env = fresh_podman(tmp.path());
    env.push(src_docker(e));
    let run = || {
        imgkit(&env)
            .args(["--json", "run", "--from", "docker", "--to", "podman"])
            .run()
            .success()
    };
    let first = summary(&run().stdout);
    let copied = strings(&first["copied"]);
    assert!(
        copied.iter().any(|r| r.starts_with("seed/pinned@sha256:")),
        "{copied:?}"
    );
    let second = summary(&run().stdout);
    assert_eq!(second["bytes"], 0, "{second}");
    assert_eq!(strings(&second["skipped"]), copied);
    // the dry run says the same without moving anything (docker lists in no stable order)
    let dry = imgkit(&env)
        .args(["run", "--dry-run", "--from", "docker", "--to", "podman"])
        .run()
        .success();
    let mut lines: Vec<&str> = dry.stdout.lines().collect();
    assert_eq!(lines.pop(), Some("nothing to move from docker to podman"));
    lines.sort_unstable();
    let want: Vec<String> = strings(&second["skipped"])
        .iter()
        .map(|s| format!("skip {s} (already in podman with the same image ID)"))
        .collect();
    assert_eq!(lines, want);
}

#[test]
fn a_repeated_run_into_ctr_k8s_moves_nothing() {
    let Some(e) = need() else { return };
    let _guard = lock(&K8S_DST);
    let addr = e.dst.var("CONTAINERD_ADDRESS");
    empty_ctr(addr, "k8s.io");
    let tmp = tempfile::tempdir().unwrap();
    let filter = write_filter(tmp.path(), SELECT_TWO);
    let env = vec![src_docker(e), kv("CONTAINERD_ADDRESS", addr)];
    let run = || {
        imgkit(&env)
            .args([
                "--json",
                "run",
                "--from",
                "docker",
                "--to",
                "ctr:k8s.io",
                "-f",
            ])
            .args([&filter])
            .run()
            .success()
    };
    assert_eq!(
        strings(&summary(&run().stdout)["copied"]),
        ["seed/app:1.0", "seed/base:1.0"]
    );
    let second = summary(&run().stdout);
    assert_eq!(second["bytes"], 0, "{second}");
    assert_eq!(
        strings(&second["skipped"]),
        ["seed/app:1.0", "seed/base:1.0"]
    );
    // retag seed/base in the target to seed/app's image: only seed/base moves
    output(ctr(addr, "k8s.io").args(["images", "rm", "docker.io/seed/base:1.0"]));
    output(ctr(addr, "k8s.io").args([
        "images",
        "tag",
        "docker.io/seed/app:1.0",
        "docker.io/seed/base:1.0",
    ]));
    let third = summary(&run().stdout);
    assert_eq!(strings(&third["copied"]), ["seed/base:1.0"], "{third}");
    assert_eq!(ctr_images(addr, "k8s.io"), want_two(e, "docker.io/"));
}

// ---- renames ---------------------------------------------------------------------------------

fn ids(map: &std::collections::BTreeMap<String, String>, names: &[&str]) -> Vec<String> {
    names
        .iter()
        .map(|n| {
            map.get(*n)
                .cloned()
                .unwrap_or_else(|| format!("{n} missing: {map:?}"))
        })
        .collect()
}

#[test]
fn renames_land_in_podman_and_a_repeat_skips_them() {
    let Some(e) = need() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let filter = write_filter(tmp.path(), SELECT_TWO);
    let mut env = fresh_podman(tmp.path());
    env.push(src_docker(e));
    let run = || {
        imgkit(&env)
            .args(["--json", "run", "--from", "docker", "--to", "podman", "-f"])
            .args([&filter])
            .args(["--rename", "docker.io/seed/(.*)=registry.local/team/$1"])
            .run()
            .success()
    };
    let first = summary(&run().stdout);
    assert_eq!(
        first["renamed"]["seed/app:1.0"],
        serde_json::json!(["registry.local/team/app:1.0"]),
        "{first}"
    );
    assert_eq!(first["verified"], 2, "{first}");
    let images = podman_images(&env);
    assert_eq!(
        images.keys().collect::<Vec<_>>(),
        [
            "registry.local/team/app:1.0",
            "registry.local/team/base:1.0"
        ]
    );
    assert_eq!(
        ids(
            &images,
            &[
                "registry.local/team/app:1.0",
                "registry.local/team/base:1.0"
            ]
        ),
        [
            e.src.seed["SEED_APP_ID"].clone(),
            e.src.seed["SEED_BASE_ID"].clone()
        ]
    );
    let second = summary(&run().stdout);
    assert_eq!(second["bytes"], 0, "{second}");
    assert_eq!(
        strings(&second["skipped"]),
        ["seed/app:1.0", "seed/base:1.0"]
    );
}

#[test]
fn a_filter_renames_into_ctr_k8s_with_as() {
    let Some(e) = need() else { return };
    let _guard = lock(&K8S_DST);
    let addr = e.dst.var("CONTAINERD_ADDRESS");
    empty_ctr(addr, "k8s.io");
    let tmp = tempfile::tempdir().unwrap();
    let filter = write_filter(
        tmp.path(),
        r#"select(.Repository == "seed/app" and .Tag == "1.0") | {ref: (.Repository + ":" + .Tag), as: ["team/app:1.0", "team/app:stable"]}"#,
    );
    let env = vec![src_docker(e), kv("CONTAINERD_ADDRESS", addr)];
    imgkit(&env)
        .args(["run", "--from", "docker", "--to", "ctr:k8s.io", "-f"])
        .args([&filter])
        .run()
        .success()
        .stderr_has("2 verified by image ID")
        .stderr_has("renamed seed/app:1.0 → docker.io/team/app:1.0, docker.io/team/app:stable");
    let app = e.src.seed["SEED_APP_ID"].clone();
    assert_eq!(
        ctr_images(addr, "k8s.io"),
        std::collections::BTreeMap::from([
            ("docker.io/team/app:1.0".to_owned(), app.clone()),
            ("docker.io/team/app:stable".to_owned(), app),
        ])
    );
}

#[test]
fn renames_land_in_docker() {
    let Some(e) = need() else { return };
    let _guard = lock(&crate::transfer::DOCKER_DST);
    let host = e.dst.var("DOCKER_HOST");
    crate::transfer::empty_docker(host);
    let tmp = tempfile::tempdir().unwrap();
    let filter = write_filter(tmp.path(), SELECT_TWO);
    let mut env = crate::transfer::src_podman(e);
    env.push(kv("DOCKER_HOST", host));
    imgkit(&env)
        .args(["run", "--from", "podman", "--to", "docker", "-f"])
        .args([&filter])
        .args(["--rename", "seed/app:(.*)=team/app:$1-renamed"])
        .run()
        .success()
        .stderr_has("2 verified by image ID");
    let images = crate::transfer::docker_images(host);
    assert_eq!(
        images.keys().collect::<Vec<_>>(),
        ["seed/base:1.0", "team/app:1.0-renamed"]
    );
    assert_eq!(images["team/app:1.0-renamed"], e.src.seed["SEED_APP_ID"]);
}

#[test]
fn invalid_or_colliding_new_names_are_rejected_before_anything_moves() {
    let Some(e) = need() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let filter = write_filter(tmp.path(), SELECT_TWO);
    let mut env = fresh_podman(tmp.path());
    env.push(src_docker(e));
    let attempt = |rule: &str| {
        imgkit(&env)
            .args(["run", "--from", "docker", "--to", "podman", "-f"])
            .args([&filter])
            .args(["--rename", rule])
            .run()
            .code(2)
    };
    attempt("docker.io/seed/(app|base):1.0=team/one:1")
        .stderr_has("would be named docker.io/team/one:1 in the target");
    attempt("docker.io/seed/app:1.0=Bad Name:1").stderr_has("not an image reference");
    attempt("docker.io/seed/app:(.*)=-$1").stderr_has("not an image reference");
    attempt("docker.io/seed/app:1.0=team/app@sha256:0000000000000000000000000000000000000000000000000000000000000000")
        .stderr_has("holds a digest");
    assert!(podman_images(&env).is_empty(), "{:?}", podman_images(&env));
}

// ---- containerd namespaces -------------------------------------------------------------------

#[test]
fn ls_namespace_all_lists_every_namespace_for_filters() {
    let Some(e) = need() else { return };
    let addr = e.src.var("CONTAINERD_ADDRESS");
    let ls = |program: &str| {
        imgkit(&[kv("CONTAINERD_ADDRESS", addr)])
            .args(["ls", "--engine", "ctr", "-n", "all", "-e", program])
            .run()
    };
    // seed/pinned is only in k8s.io
    ls(r#"select(.Namespace == "k8s.io" and .Repository == "seed/pinned") | .Repository"#)
        .success()
        .stdout_has("seed/pinned@sha256:");
    ls(r#"select(.Namespace == "default" and .Repository == "seed/pinned") | .Repository"#).code(1);
    let json = imgkit(&[kv("CONTAINERD_ADDRESS", addr)])
        .args(["ls", "--engine", "ctr", "-n", "all", "--format", "json"])
        .run()
        .success();
    assert!(
        json.stdout.contains(r#""Namespace":"default""#),
        "{}",
        json.stdout
    );
    // an archive target would be rewritten by each namespace's run
    imgkit(&[kv("CONTAINERD_ADDRESS", addr)])
        .args(["run", "--from", "ctr:all", "--to", "x.tar"])
        .run()
        .code(2)
        .stderr_has("runs once per namespace");
}

#[test]
fn loading_into_a_namespace_kubernetes_does_not_read_is_noted() {
    let Some(e) = need() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let filter = write_filter(tmp.path(), SELECT_TWO);
    let env = vec![
        src_docker(e),
        kv("CONTAINERD_ADDRESS", e.dst.var("CONTAINERD_ADDRESS")),
    ];
    imgkit(&env)
        .args([
            "run",
            "--dry-run",
            "--from",
            "docker",
            "--to",
            "ctr:imgkit-note",
            "-f",
        ])
        .args([&filter])
        .run()
        .success()
        .stderr_has("Kubernetes (CRI, k3s) only sees images in k8s.io");
    let quiet = imgkit(&env)
        .args([
            "run",
            "--dry-run",
            "--from",
            "docker",
            "--to",
            "ctr:k8s.io",
            "-f",
        ])
        .args([&filter])
        .run()
        .success();
    assert!(
        !quiet.stderr.contains("only sees images"),
        "{}",
        quiet.stderr
    );
}

#[test]
fn run_from_every_namespace_moves_each_image_once() {
    let Some(e) = need() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let filter = write_filter(tmp.path(), SELECT_TWO);
    let mut env = fresh_podman(tmp.path());
    env.push(kv("CONTAINERD_ADDRESS", e.src.var("CONTAINERD_ADDRESS")));
    let run = imgkit(&env)
        .args(["--json", "run", "--from", "ctr:all", "--to", "podman", "-f"])
        .args([&filter])
        .run()
        .success();
    // default and k8s.io hold the same two images: the first namespace moves them, the second
    // finds them there (one JSON document, one summary per namespace)
    let doc: Value = serde_json::from_str(&run.stdout).unwrap();
    let summaries = doc["namespaces"].as_array().unwrap();
    assert_eq!(summaries.len(), 2, "{}", run.stdout);
    assert_eq!(
        strings(&summaries[0]["copied"]),
        ["seed/app:1.0", "seed/base:1.0"]
    );
    assert_eq!(
        strings(&summaries[1]["skipped"]),
        ["seed/app:1.0", "seed/base:1.0"]
    );
    assert_eq!(podman_images(&env), want_two(e, "docker.io/"));
    // filters see the namespace
    let only_k8s = write_filter(
        tmp.path(),
        &format!(r#"select(.Namespace == "k8s.io") | {SELECT_TWO}"#),
    );
    let run = imgkit(&env)
        .args([
            "--json", "run", "--force", "--from", "ctr:all", "--to", "podman", "-f",
        ])
        .args([&only_k8s])
        .run()
        .success();
    assert_eq!(run.stdout.lines().count(), 1, "{}", run.stdout);
    // default selects nothing (an empty summary), k8s.io moves the two
    let doc = summary(&run.stdout);
    let moved: Vec<&Value> = doc["namespaces"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["images"] != 0)
        .collect();
    assert_eq!(moved.len(), 1, "{}", run.stdout);
    assert_eq!(moved[0]["from"], "ctr:k8s.io");
}
