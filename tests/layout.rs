//! OCI image layout directories as endpoints (`--to ./dir/`, `--from ./dir/`), end to end on
//! real engines and against skopeo and `ctr images import`: what we write they read, what
//! skopeo writes we read, image IDs stay equal, and a repeated write copies no blob.
//!
//! Engines as in `transfer.rs` (the seeded set as the source, the empty docker and containerd
//! as targets, podman fresh per test); skopeo from `PATH` (`crate::util::tool`).
#![cfg(unix)]

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};

use crate::transfer::{
    DOCKER_DST, K8S_DST, SELECT_TWO, ctr, ctr_images, docker_images, empty_ctr, empty_docker,
    fresh_podman, imgkit, kv, lock, output, podman_images, src_docker, want_two, write_filter,
};
use crate::util::tool;

/// `docker (seeded) → DIR/` with the two-image selection; the summary as `--json` gives it.
fn write_two(env: &[(String, String)], filter: &Path, dir: &Path) -> serde_json::Value {
    let run = imgkit(env)
        .args(["--json", "run", "--from", "docker", "--to"])
        .arg(format!("{}/", dir.display()))
        .arg("-f")
        .arg(filter)
        .run()
        .success();
    serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("{e}: {}", run.stdout))
}

/// The config digest of the manifest skopeo finds at `oci:DIR:REF`.
fn skopeo_config(skopeo: &Path, dir: &Path, reference: &str) -> String {
    let raw = output(
        Command::new(skopeo)
            .args(["inspect", "--raw"])
            .arg(format!("oci:{}:{reference}", dir.display())),
    );
    let v: serde_json::Value = serde_json::from_str(&raw).unwrap();
    v["config"]["digest"].as_str().unwrap().to_owned()
}

#[test]
fn docker_to_a_layout_dir_then_to_podman_and_ctr_k8s_keeps_the_image_ids() {
    let e = need_engines!();
    let tmp = tempfile::tempdir().unwrap();
    let filter = write_filter(tmp.path(), SELECT_TWO);
    let dir = tmp.path().join("oci");
    let src = vec![src_docker(e)];
    let doc = write_two(&src, &filter, &dir);
    assert_eq!(doc["images"], 2, "{doc}");
    assert_eq!(doc["verified"], 2, "{doc}");
    assert!(dir.join("oci-layout").is_file());
    assert!(dir.join("index.json").is_file());
    // Nothing of the temporary archive is left in the layout.
    let left: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(left.len(), 3, "{left:?}");

    // ls reads it, with the seeded IDs.
    let ls = imgkit(&[])
        .args(["ls", "--all", "--format", "json", "--from"])
        .arg(format!("{}/", dir.display()))
        .run()
        .success();
    let mut listed = BTreeMap::new();
    for line in ls.stdout.lines() {
        let r: serde_json::Value = serde_json::from_str(line).unwrap();
        listed.insert(
            format!(
                "{}:{}",
                r["Repository"].as_str().unwrap(),
                r["Tag"].as_str().unwrap()
            ),
            r["ID"].as_str().unwrap().to_owned(),
        );
    }
    let short: BTreeMap<String, String> = want_two(e, "")
        .into_iter()
        .map(|(k, v)| (k, v["sha256:".len().."sha256:".len() + 12].to_owned()))
        .collect();
    assert_eq!(listed, short);

    // On to podman.
    let podman = fresh_podman(tmp.path());
    imgkit(&podman)
        .args(["run", "--to", "podman", "-f"])
        .arg(&filter)
        .arg("--from")
        .arg(format!("{}/", dir.display()))
        .run()
        .success()
        .stderr_has("2 verified by image ID");
    assert_eq!(podman_images(&podman), want_two(e, "docker.io/"));

    // And to ctr:k8s.io.
    let _guard = lock(&K8S_DST);
    let addr = e.dst.var("CONTAINERD_ADDRESS");
    empty_ctr(addr, "k8s.io");
    imgkit(&[kv("CONTAINERD_ADDRESS", addr)])
        .args(["run", "--to", "ctr:k8s.io", "-f"])
        .arg(&filter)
        .arg("--from")
        .arg(format!("{}/", dir.display()))
        .run()
        .success()
        .stderr_has("2 verified by image ID");
    assert_eq!(ctr_images(addr, "k8s.io"), want_two(e, "docker.io/"));
}

#[test]
fn a_repeated_write_to_the_same_dir_writes_no_blob() {
    let e = need_engines!();
    let tmp = tempfile::tempdir().unwrap();
    let filter = write_filter(tmp.path(), SELECT_TWO);
    let dir = tmp.path().join("oci");
    let src = vec![src_docker(e)];
    // --dry-run prints the plan and creates nothing, not even the directory.
    imgkit(&src)
        .args(["run", "--dry-run", "--from", "docker", "-f"])
        .arg(&filter)
        .arg("--to")
        .arg(format!("{}/", dir.display()))
        .run()
        .success()
        .stderr_has("index.json names the images");
    assert!(!dir.exists());
    // A directory of other files is not written into.
    imgkit(&src)
        .args(["run", "--from", "docker", "-f"])
        .arg(&filter)
        .arg("--to")
        .arg(format!("{}/", tmp.path().display()))
        .run()
        .code(2)
        .stderr_has("holds other files and no oci-layout file")
        .stderr_has("hint: name a new or empty directory");
    let first = write_two(&src, &filter, &dir);
    let written = first["blobs_written"].as_u64().unwrap();
    assert!(
        written >= 6,
        "two images: 2 manifests, 2 configs, layers: {first}"
    );
    assert_eq!(first["blobs_skipped"], 0, "{first}");

    // The same images again are in the directory by name and ID: skipped, nothing saved.
    let again = write_two(&src, &filter, &dir);
    assert_eq!(again["blobs_written"], 0, "{again}");
    assert_eq!(again["images"], 0, "{again}");
    assert_eq!(
        again["skipped"].as_array().map(Vec::len),
        Some(2),
        "{again}"
    );
    // Forced, the save streams every blob past the directory, and it writes none.
    let run = imgkit(&src)
        .args(["--json", "run", "--force", "--from", "docker", "--to"])
        .arg(format!("{}/", dir.display()))
        .arg("-f")
        .arg(&filter)
        .run()
        .success();
    let again: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(again["blobs_written"], 0, "{again}");
    assert_eq!(again["bytes_written"], 0, "{again}");
    assert_eq!(again["blobs_skipped"].as_u64(), Some(written), "{again}");
    assert_eq!(again["images"], 2, "{again}");

    // The same in the summary a person reads.
    imgkit(&src)
        .args(["run", "--force", "--from", "docker", "-f"])
        .arg(&filter)
        .arg("--to")
        .arg(format!("{}/", dir.display()))
        .run()
        .success()
        .stderr_has("wrote 2 images from docker to")
        .stderr_has(&format!(": 0 blobs written (0B), {written} already there"));
    // Each blob once: the blobs directory holds exactly what the first write wrote.
    let blobs = std::fs::read_dir(dir.join("blobs/sha256")).unwrap().count();
    assert_eq!(blobs as u64, written);
}

#[test]
fn a_dir_written_by_skopeo_is_read_and_loaded() {
    let e = need_engines!();
    let Some(skopeo) = tool("skopeo") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let filter = write_filter(tmp.path(), SELECT_TWO);
    let tar = tmp.path().join("two.tar");
    imgkit(&[src_docker(e)])
        .args(["run", "--from", "docker", "-f"])
        .arg(&filter)
        .arg("--to")
        .arg(&tar)
        .run()
        .success();
    let dir = tmp.path().join("by-skopeo");
    output(
        Command::new(&skopeo)
            .arg("copy")
            .arg(format!("docker-archive:{}:seed/app:1.0", tar.display()))
            .arg(format!("oci:{}:seed/app:1.0", dir.display())),
    );
    // skopeo rewrites the config for OCI: its ID is skopeo's config digest.
    let id = skopeo_config(&skopeo, &dir, "seed/app:1.0");
    let ls = imgkit(&[])
        .args(["ls", "--all", "--format", "json", "--from"])
        .arg(&dir)
        .run()
        .success();
    let r: serde_json::Value = serde_json::from_str(ls.stdout.trim()).unwrap();
    assert_eq!(r["Repository"], "seed/app");
    assert_eq!(
        r["ID"].as_str().unwrap(),
        &id["sha256:".len().."sha256:".len() + 12]
    );

    let _guard = lock(&DOCKER_DST);
    let host = e.dst.var("DOCKER_HOST");
    empty_docker(host);
    let app = write_filter(
        tmp.path(),
        r#"select(.Repository == "seed/app") | .Repository + ":" + .Tag"#,
    );
    imgkit(&[kv("DOCKER_HOST", host)])
        .args(["run", "--to", "docker", "-f"])
        .arg(&app)
        .arg("--from")
        .arg(&dir)
        .run()
        .success()
        .stderr_has("1 verified by image ID");
    assert_eq!(
        docker_images(host),
        BTreeMap::from([("seed/app:1.0".to_owned(), id)])
    );
}

#[test]
fn a_dir_written_by_imgkit_is_read_by_skopeo_and_imported_by_ctr() {
    let e = need_engines!();
    let Some(skopeo) = tool("skopeo") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let filter = write_filter(tmp.path(), SELECT_TWO);
    let dir = tmp.path().join("oci");
    write_two(&[src_docker(e)], &filter, &dir);

    // skopeo finds each image by its full name, with the seeded config.
    for (name, id) in want_two(e, "docker.io/") {
        assert_eq!(skopeo_config(&skopeo, &dir, &name), id, "{name}");
    }
    // … and copies one out: an archive imgkit lists with the same ID.
    let out = tmp.path().join("from-skopeo.tar");
    output(
        Command::new(&skopeo)
            .arg("copy")
            .arg(format!("oci:{}:docker.io/seed/base:1.0", dir.display()))
            .arg(format!("docker-archive:{}:seed/base:1.0", out.display())),
    );
    imgkit(&[])
        .args(["ls", "--all", "--format", "json", "--from"])
        .arg(&out)
        .run()
        .success()
        .stdout_has(&e.src.seed["SEED_BASE_ID"]["sha256:".len().."sha256:".len() + 12]);

    // ctr imports a tar of the layout, names from io.containerd.image.name.
    let addr = e.dst.var("CONTAINERD_ADDRESS");
    let ns = "imgkit-layout-import";
    empty_ctr(addr, ns);
    let mut tar = Command::new("tar")
        .arg("-C")
        .arg(&dir)
        .args(["-cf", "-", "."])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let import = ctr(addr, ns)
        .args(["images", "import", "-"])
        .stdin(tar.stdout.take().unwrap())
        .output()
        .unwrap();
    assert!(tar.wait().unwrap().success(), "tar of the layout failed");
    assert!(
        import.status.success(),
        "ctr images import: {}",
        String::from_utf8_lossy(&import.stderr)
    );
    assert_eq!(ctr_images(addr, ns), want_two(e, "docker.io/"));
    empty_ctr(addr, ns);
}

#[test]
fn save_writes_a_layout_dir_and_a_failed_save_leaves_no_dir() {
    let e = need_engines!();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("saved");
    let src = vec![src_docker(e)];
    imgkit(&src)
        .args(["save", "--engine", "docker", "-o"])
        .arg(format!("{}/", dir.display()))
        .args(["seed/app:1.0", "seed/base:1.0"])
        .run()
        .success()
        .stderr_has("wrote 2 images from docker to")
        .stderr_has("2 verified by image ID");
    let ls = imgkit(&[])
        .args(["ls", "--all", "--format", "refs", "--from"])
        .arg(&dir)
        .run()
        .success();
    let mut refs: Vec<&str> = ls.stdout.lines().collect();
    refs.sort_unstable();
    assert_eq!(refs, ["seed/app:1.0", "seed/base:1.0"]);

    let never = tmp.path().join("never");
    imgkit(&src)
        .args(["save", "--engine", "docker", "-o"])
        .arg(format!("{}/", never.display()))
        .arg("seed/nosuch:1")
        .run()
        .code(2)
        .stderr_has("names no image");
    assert!(!never.exists());
}

/// A filter's new names (`{"ref", "as"}`) on `save`: checked before the save (a name that is not
/// a reference used to panic on the way into a layout directory), taken by a layout directory,
/// and refused for an archive, which keeps the names the engine saves (they used to be dropped
/// without a word).
#[test]
fn save_checks_a_filters_new_names_and_a_layout_dir_takes_them() {
    let e = need_engines!();
    let tmp = tempfile::tempdir().unwrap();
    let src = vec![src_docker(e)];
    let filter = |name: &str, program: &str| {
        let f = tmp.path().join(name);
        std::fs::write(&f, program).unwrap();
        f
    };
    let bad = filter(
        "bad.jq",
        r#"select(.Repository == "seed/app" and .Tag == "1.0") | {"ref": (.Repository + ":" + .Tag), "as": ["NOT A NAME!!"]}"#,
    );
    let good = filter(
        "good.jq",
        r#"select(.Repository == "seed/app" and .Tag == "1.0") | {"ref": (.Repository + ":" + .Tag), "as": ["crew/app:1"]}"#,
    );
    let dir = tmp.path().join("renamed");
    imgkit(&src)
        .args(["save", "--engine", "docker", "-f"])
        .arg(&bad)
        .arg("-o")
        .arg(format!("{}/", dir.display()))
        .run()
        .code(2)
        .stderr_has("is not an image reference");
    assert!(!dir.exists());
    let archive = tmp.path().join("renamed.tar");
    imgkit(&src)
        .args(["save", "--engine", "docker", "-f"])
        .arg(&good)
        .arg("-o")
        .arg(&archive)
        .run()
        .code(2)
        .stderr_has("is an archive");
    assert!(!archive.exists());
    imgkit(&src)
        .args(["save", "--engine", "docker", "-f"])
        .arg(&good)
        .arg("-o")
        .arg(format!("{}/", dir.display()))
        .run()
        .success();
    let ls = imgkit(&[])
        .args(["ls", "--all", "--format", "refs", "--from"])
        .arg(&dir)
        .run()
        .success();
    let refs: Vec<&str> = ls.stdout.lines().collect();
    assert!(
        refs == ["crew/app:1"] || refs == ["docker.io/crew/app:1"],
        "{refs:?}"
    );
}
