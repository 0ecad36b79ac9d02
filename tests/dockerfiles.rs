//! docker → an image store without `docker save`: layers rebuilt from dockerd's own files
//! (`crates/imgkit-docker-files`), end to end on real engines (`scripts/engines`: dockerd 20.10
//! with the vfs driver, containerd 1.6). The route gives the save route's bytes (same manifest
//! digests), never asks dockerd for a save, reads nothing the store holds, and a layer changed
//! behind dockerd's back fails the run naming it, with nothing named in the target.
#![cfg(unix)]

use std::path::{Path, PathBuf};

use crate::containerd::{base_and_top, check, json_of, manifest_of};
use crate::transfer::{
    DOCKER_DST, K8S_DST, ctr, docker, empty_ctr, empty_docker, engines, imgkit, kv, lock, output,
};
use crate::util::Test;

macro_rules! need_engines {
    () => {
        match engines() {
            Some(e) => e,
            None => return,
        }
    };
}

/// `-v` when the files are read, and dockerd's save request (which must not be made then).
const FILES: &str = "reading the layers from docker's files at";
const SAVE_REQUEST: &str = "/images/get";

fn only(dir: &Path, name: &str) -> PathBuf {
    let f = dir.join(format!("{}.jq", name.replace(['/', ':'], "_")));
    std::fs::write(
        &f,
        format!("select(.Repository + \":\" + .Tag == \"{name}\") | \"{name}\""),
    )
    .unwrap();
    f
}

/// Every file under a layout directory, with its bytes.
fn tree(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_owned()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                todo.push(p);
            } else {
                out.push((
                    p.strip_prefix(dir).unwrap().to_owned(),
                    std::fs::read(&p).unwrap(),
                ));
            }
        }
    }
    out.sort();
    out
}

/// The manifest digests a layout's index names.
fn layout_manifests(dir: &Path) -> Vec<String> {
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("index.json")).unwrap()).unwrap();
    let mut out: Vec<String> = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["digest"].as_str().unwrap().to_owned())
        .collect();
    out.sort();
    out
}

#[test]
fn docker_to_ctr_and_a_layout_read_dockers_files_with_the_save_routes_bytes() {
    let e = need_engines!();
    let _d = lock(&DOCKER_DST);
    let _k = lock(&K8S_DST);
    let host = e.dst.var("DOCKER_HOST");
    let addr = e.dst.var("CONTAINERD_ADDRESS");
    empty_docker(host);
    empty_ctr(addr, "k8s.io");
    let tmp = tempfile::tempdir().unwrap();
    let (base, top) = base_and_top(e, tmp.path(), 4);
    let env = vec![kv("DOCKER_HOST", host), kv("CONTAINERD_ADDRESS", addr)];
    let run = |t: Test| t.arg("-f").arg(only(tmp.path(), &top)).run();
    // Into containerd: no save asked of dockerd, unpacked, complete.
    let r = run(imgkit(&env).args(["-v", "run", "--from", "docker", "--to", "ctr:k8s.io"]))
        .success()
        .stderr_has(FILES)
        .stderr_has("1 verified by image ID");
    assert!(
        !r.stderr.contains(SAVE_REQUEST),
        "dockerd was asked for a save:\n{}",
        r.stderr
    );
    let name = format!("docker.io/{top}");
    assert_eq!(check(addr, "k8s.io", &name), (true, true), "{name}");
    let via_files = manifest_of(addr, "k8s.io", &name);
    // Into layout directories, each way: the same blobs, byte for byte.
    let (lf, ls) = (tmp.path().join("files"), tmp.path().join("save"));
    let mut to_lf = lf.clone().into_os_string();
    to_lf.push("/");
    let mut to_ls = ls.clone().into_os_string();
    to_ls.push("/");
    run(imgkit(&env)
        .args(["-v", "run", "--from", "docker", "--to"])
        .arg(&to_lf))
    .success()
    .stderr_has(FILES);
    let r = run(imgkit(&env)
        .env("IMGKIT_DOCKER_READ", "save")
        .args(["-v", "run", "--from", "docker", "--to"])
        .arg(&to_ls))
    .success()
    .stderr_has("docker save (IMGKIT_DOCKER_READ=save)");
    assert!(r.stderr.contains(SAVE_REQUEST), "{}", r.stderr);
    assert_eq!(tree(&lf), tree(&ls), "the two routes wrote different bytes");
    assert_eq!(layout_manifests(&lf), vec![via_files.clone()]);
    // Through the docker CLI there is no data root to read: the save stream it is.
    let r = run(imgkit(&env).env("IMGKIT_DOCKER_VIA", "cli").args([
        "-v",
        "run",
        "--force",
        "--from",
        "docker",
        "--to",
        "ctr:k8s.io",
    ]))
    .success();
    assert!(!r.stderr.contains(FILES), "{}", r.stderr);
    assert_eq!(manifest_of(addr, "k8s.io", &name), via_files);
    let _ = base;
    empty_ctr(addr, "k8s.io");
    empty_docker(host);
}

#[test]
fn a_held_base_is_never_read_and_json_counts_it_skipped() {
    let e = need_engines!();
    let _d = lock(&DOCKER_DST);
    let _k = lock(&K8S_DST);
    let host = e.dst.var("DOCKER_HOST");
    let addr = e.dst.var("CONTAINERD_ADDRESS");
    empty_docker(host);
    empty_ctr(addr, "k8s.io");
    let tmp = tempfile::tempdir().unwrap();
    let (base, top) = base_and_top(e, tmp.path(), 8);
    let env = vec![kv("DOCKER_HOST", host), kv("CONTAINERD_ADDRESS", addr)];
    imgkit(&env)
        .args(["-q", "run", "--from", "docker", "--to", "ctr:k8s.io", "-f"])
        .arg(only(tmp.path(), &base))
        .run()
        .success();
    // The base's files made unreadable: a run that read them would fail.
    let root = output(docker(host).args(["info", "--format", "{{.DockerRootDir}}"]));
    let blob = layer_file(host, root.trim(), &base, "blob");
    let saved = std::fs::read(&blob).unwrap();
    std::fs::write(&blob, vec![0u8; saved.len()]).unwrap();
    let r = imgkit(&env)
        .args([
            "--json",
            "run",
            "--from",
            "docker",
            "--to",
            "ctr:k8s.io",
            "-f",
        ])
        .arg(only(tmp.path(), &top))
        .run();
    std::fs::write(&blob, &saved).unwrap();
    let r = r.success();
    let doc = json_of(&r.stdout);
    assert!(
        doc["bytes_skipped"].as_u64().unwrap_or(0) >= 8 << 20,
        "the base is not counted as skipped: {doc}"
    );
    assert!(doc["bytes"].as_u64().unwrap_or(u64::MAX) < 1 << 20, "{doc}");
    assert_eq!(
        check(addr, "k8s.io", &format!("docker.io/{top}")),
        (true, true)
    );
    empty_ctr(addr, "k8s.io");
    empty_docker(host);
}

/// The file `name` of `image`'s last layer in dockerd's (vfs) store under `root`.
fn layer_file(host: &str, root: &str, image: &str, name: &str) -> PathBuf {
    let layers = output(docker(host).args([
        "image",
        "inspect",
        "--format",
        "{{json .RootFS.Layers}}",
        image,
    ]));
    let layers: Vec<String> = serde_json::from_str(layers.trim()).unwrap();
    let mut chain = layers[0].clone();
    for d in &layers[1..] {
        use sha2::Digest as _;
        let h = sha2::Sha256::digest(format!("{chain} {d}").as_bytes());
        chain = format!(
            "sha256:{}",
            h.iter().map(|b| format!("{b:02x}")).collect::<String>()
        );
    }
    let hex = chain.trim_start_matches("sha256:");
    let db = Path::new(root).join("image/vfs/layerdb/sha256").join(hex);
    let cache = std::fs::read_to_string(db.join("cache-id")).unwrap();
    Path::new(root)
        .join("vfs/dir")
        .join(cache.trim())
        .join(name)
}

#[test]
fn a_layer_changed_behind_dockers_back_fails_naming_it_and_names_nothing() {
    let e = need_engines!();
    let _d = lock(&DOCKER_DST);
    let _k = lock(&K8S_DST);
    let host = e.dst.var("DOCKER_HOST");
    let addr = e.dst.var("CONTAINERD_ADDRESS");
    empty_docker(host);
    empty_ctr(addr, "k8s.io");
    let tmp = tempfile::tempdir().unwrap();
    let (_, top) = base_and_top(e, tmp.path(), 2);
    let env = vec![kv("DOCKER_HOST", host), kv("CONTAINERD_ADDRESS", addr)];
    let root = output(docker(host).args(["info", "--format", "{{.DockerRootDir}}"]));
    let blob = layer_file(host, root.trim(), "imgkit-t/base:1", "blob");
    // The same size, other bytes: only the digest can tell.
    let mut bytes = std::fs::read(&blob).unwrap();
    bytes[1000] ^= 0xff;
    std::fs::write(&blob, &bytes).unwrap();
    let layers = output(docker(host).args([
        "image",
        "inspect",
        "--format",
        "{{index .RootFS.Layers 0}}",
        "imgkit-t/base:1",
    ]));
    let layer = layers.trim();
    let out = tmp.path().join("out");
    let mut to = out.clone().into_os_string();
    to.push("/");
    imgkit(&env)
        .args(["run", "--from", "docker", "--to"])
        .arg(&to)
        .arg("-f")
        .arg(only(tmp.path(), &top))
        .run()
        .code(2)
        .stderr_has(layer)
        .stderr_has("docker's store at")
        .stderr_has("is damaged");
    assert!(!out.exists(), "a layout directory was left behind");
    imgkit(&env)
        .args(["run", "--from", "docker", "--to", "ctr:k8s.io", "-f"])
        .arg(only(tmp.path(), &top))
        .run()
        .code(2)
        .stderr_has(layer);
    let names = output(ctr(addr, "k8s.io").args(["images", "ls", "-q"]));
    assert!(names.trim().is_empty(), "containerd names {names}");
    empty_docker(host);
}
