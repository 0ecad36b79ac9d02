//! Image stores as `run` endpoints (host/stores.rs), end to end on real engines: an engine's
//! save stream goes into a layout directory blob by blob (no temporary archive), a layout
//! loads into podman and containerd with the same image IDs, a multi-platform index is copied
//! whole between stores, and a repeat writes no blob.
#![cfg(unix)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use serde_json::{Value, json};
use sha2::Digest as _;

use crate::transfer::{
    K8S_DST, SELECT_TWO, ctr_images, empty_ctr, fresh_podman, imgkit, kv, lock, podman_images,
    src_docker, want_two, write_filter,
};

fn slash(dir: &Path) -> String {
    format!("{}/", dir.display())
}

/// Runs `imgkit --json run …` while watching `dir`: every name that ever appears at its top
/// level (polled every millisecond), and the run's `--json` document.
fn run_watching(env: &[(String, String)], args: &[String], dir: &Path) -> (Value, Vec<String>) {
    let stop = Arc::new(AtomicBool::new(false));
    let watcher = {
        let stop = Arc::clone(&stop);
        let dir = dir.to_owned();
        std::thread::spawn(move || {
            let mut seen: Vec<String> = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                if let Ok(rd) = std::fs::read_dir(&dir) {
                    for e in rd.flatten() {
                        let n = e.file_name().to_string_lossy().into_owned();
                        if !seen.contains(&n) {
                            seen.push(n);
                        }
                    }
                }
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
            seen
        })
    };
    let run = imgkit(env).arg("--json").args(args).run().success();
    stop.store(true, Ordering::Relaxed);
    let seen = watcher.join().unwrap();
    let doc = serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("{e}: {}", run.stdout));
    (doc, seen)
}

#[test]
fn docker_into_a_layout_dir_streams_blobs_with_no_temporary_archive_and_loads_back() {
    let e = need_engines!();
    let tmp = tempfile::tempdir().unwrap();
    let filter = write_filter(tmp.path(), SELECT_TWO);
    let dir = tmp.path().join("oci");
    let src = vec![src_docker(e)];
    let args = |force: bool| {
        let mut a: Vec<String> = ["run", "--from", "docker", "--to"]
            .map(str::to_owned)
            .into();
        a.push(slash(&dir));
        a.push("-f".into());
        a.push(filter.display().to_string());
        if force {
            a.push("--force".into());
        }
        a
    };
    let (doc, seen) = run_watching(&src, &args(false), &dir);
    assert_eq!(doc["images"], 2, "{doc}");
    assert_eq!(doc["verified"], 2, "{doc}");
    let written = doc["blobs_written"].as_u64().unwrap();
    assert!(written >= 6, "2 manifests, 2 configs, layers: {doc}");
    // The save stream went into the store as it passed: no archive ever appeared beside it.
    assert!(
        seen.iter()
            .all(|n| !n.contains("incoming") && !n.to_ascii_lowercase().ends_with(".tar")),
        "{seen:?}"
    );
    assert_eq!(
        std::fs::read_dir(dir.join("blobs/sha256")).unwrap().count() as u64,
        written
    );

    // The same images again: present by name and ID, so nothing is saved at all …
    let (again, _) = run_watching(&src, &args(false), &dir);
    assert_eq!(again["images"], 0, "{again}");
    assert_eq!(again["skipped"].as_array().unwrap().len(), 2, "{again}");
    assert_eq!(again["blobs_written"], 0, "{again}");
    // … and forced, every blob streams past and none is written (said in the summary too).
    let (forced, _) = run_watching(&src, &args(true), &dir);
    assert_eq!(forced["images"], 2, "{forced}");
    assert_eq!(forced["blobs_written"], 0, "{forced}");
    assert_eq!(forced["bytes_written"], 0, "{forced}");
    assert_eq!(forced["blobs_skipped"].as_u64(), Some(written), "{forced}");
    imgkit(&src)
        .args(["run", "--force", "--from", "docker", "-f"])
        .arg(&filter)
        .arg("--to")
        .arg(slash(&dir))
        .run()
        .success()
        .stderr_has(&format!(": 0 blobs written (0B), {written} already there"));

    // The layout into podman and containerd's k8s.io, as a tar stream their loads take.
    let podman = fresh_podman(tmp.path());
    imgkit(&podman)
        .args(["run", "--to", "podman", "--from"])
        .arg(slash(&dir))
        .run()
        .success()
        .stderr_has("2 verified by image ID");
    assert_eq!(podman_images(&podman), want_two(e, "docker.io/"));

    let _k8s = lock(&K8S_DST);
    let addr = e.dst.var("CONTAINERD_ADDRESS");
    empty_ctr(addr, "k8s.io");
    imgkit(&[kv("CONTAINERD_ADDRESS", addr)])
        .args(["run", "--to", "ctr:k8s.io", "--from"])
        .arg(slash(&dir))
        .run()
        .success()
        .stderr_has("2 verified by image ID");
    let got = ctr_images(addr, "k8s.io");
    for (name, id) in want_two(e, "docker.io/") {
        assert_eq!(got.get(&name), Some(&id), "{name}: {got:?}");
    }
    empty_ctr(addr, "k8s.io");
}

fn sha256(bytes: &[u8]) -> String {
    let d = sha2::Sha256::digest(bytes);
    let hex = d.iter().fold(String::new(), |mut s, b| {
        use std::fmt::Write as _;
        let _ = write!(s, "{b:02x}");
        s
    });
    format!("sha256:{hex}")
}

fn blob(dir: &Path, digest: &str) -> PathBuf {
    dir.join("blobs/sha256").join(&digest["sha256:".len()..])
}

fn put(dir: &Path, bytes: &[u8]) -> Value {
    let d = sha256(bytes);
    std::fs::write(blob(dir, &d), bytes).unwrap();
    json!({"digest": d, "size": bytes.len()})
}

/// A two-platform OCI layout from a real image: `seed/app:1.0` as docker saved it (its layers
/// and config as linux/amd64), and the same layers under a config saying linux/arm64, both
/// listed by one index named `docker.io/seed/multi:1.0`. The index digest.
fn two_platform_layout(e: &crate::transfer::Engines, tmp: &Path, dir: &Path) -> String {
    let single = tmp.join("single");
    imgkit(&[src_docker(e)])
        .args(["run", "--from", "docker", "--to"])
        .arg(slash(&single))
        .arg("-f")
        .arg(write_filter(
            tmp,
            r#"select(.Repository == "seed/app" and .Tag == "1.0") | .Repository + ":" + .Tag"#,
        ))
        .run()
        .success();
    let index: Value =
        serde_json::from_slice(&std::fs::read(single.join("index.json")).unwrap()).unwrap();
    let top = index["manifests"][0]["digest"].as_str().unwrap().to_owned();
    let manifest: Value =
        serde_json::from_slice(&std::fs::read(blob(&single, &top)).unwrap()).unwrap();
    std::fs::create_dir_all(dir.join("blobs/sha256")).unwrap();
    std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    let mut children = Vec::new();
    for (arch, variant) in [("amd64", None), ("arm64", Some("v8"))] {
        let config_digest = manifest["config"]["digest"].as_str().unwrap();
        let mut config: Value =
            serde_json::from_slice(&std::fs::read(blob(&single, config_digest)).unwrap()).unwrap();
        config["architecture"] = json!(arch);
        if let Some(v) = variant {
            config["variant"] = json!(v);
        }
        let mut m = manifest.clone();
        let c = put(dir, &serde_json::to_vec(&config).unwrap());
        m["config"]["digest"] = c["digest"].clone();
        m["config"]["size"] = c["size"].clone();
        for l in manifest["layers"].as_array().unwrap() {
            let d = l["digest"].as_str().unwrap();
            std::fs::copy(blob(&single, d), blob(dir, d)).unwrap();
        }
        let md = put(dir, &serde_json::to_vec(&m).unwrap());
        let mut platform = json!({"architecture": arch, "os": "linux"});
        if let Some(v) = variant {
            platform["variant"] = json!(v);
        }
        children.push(json!({
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": md["digest"], "size": md["size"], "platform": platform,
        }));
    }
    let index = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": children,
    });
    let id = put(dir, &serde_json::to_vec(&index).unwrap());
    let name = "docker.io/seed/multi:1.0";
    let top = json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "digest": id["digest"], "size": id["size"],
            "annotations": {"io.containerd.image.name": name, "org.opencontainers.image.ref.name": name},
        }],
    });
    std::fs::write(dir.join("index.json"), serde_json::to_vec(&top).unwrap()).unwrap();
    id["digest"].as_str().unwrap().to_owned()
}

/// The blobs of a layout directory.
fn blobs(dir: &Path) -> BTreeMap<String, u64> {
    std::fs::read_dir(dir.join("blobs/sha256"))
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().to_string_lossy().into_owned(),
                e.metadata().unwrap().len(),
            )
        })
        .collect()
}

#[test]
fn a_two_platform_index_is_copied_whole_between_layout_dirs() {
    let e = need_engines!();
    let tmp = tempfile::tempdir().unwrap();
    let from = tmp.path().join("multi");
    let index = two_platform_layout(e, tmp.path(), &from);
    let to = tmp.path().join("copy");
    let run = |force: bool| {
        let mut t = imgkit(&[])
            .args(["--json", "run", "--from"])
            .arg(slash(&from))
            .arg("--to")
            .arg(slash(&to));
        if force {
            t = t.arg("--force");
        }
        let out = t.run().success();
        serde_json::from_str::<Value>(&out.stdout).unwrap()
    };
    let doc = run(false);
    assert_eq!(doc["images"], 1, "{doc}");
    assert_eq!(doc["verified"], 1, "{doc}");
    // The same index, byte for byte: every platform's manifest and config came along.
    let written: Value =
        serde_json::from_slice(&std::fs::read(to.join("index.json")).unwrap()).unwrap();
    assert_eq!(
        written["manifests"][0]["digest"],
        index.as_str(),
        "{written}"
    );
    assert_eq!(blobs(&to), blobs(&from));
    assert_eq!(
        doc["blobs_written"].as_u64(),
        Some(blobs(&from).len() as u64)
    );

    // Again: present by name and ID, skipped; forced: no blob written.
    let again = run(false);
    assert_eq!(again["images"], 0, "{again}");
    assert_eq!(again["blobs_written"], 0, "{again}");
    let forced = run(true);
    assert_eq!(forced["images"], 1, "{forced}");
    assert_eq!(forced["blobs_written"], 0, "{forced}");
    assert_eq!(
        forced["blobs_skipped"].as_u64(),
        Some(blobs(&from).len() as u64),
        "{forced}"
    );

    // An archive written from it keeps the index too, and lists the host's platform.
    let tar = tmp.path().join("multi.tar");
    imgkit(&[])
        .args(["run", "--from"])
        .arg(slash(&to))
        .arg("--to")
        .arg(&tar)
        .run()
        .success();
    let back = tmp.path().join("back");
    imgkit(&[])
        .args(["run", "--from"])
        .arg(&tar)
        .arg("--to")
        .arg(slash(&back))
        .run()
        .success();
    let again: Value =
        serde_json::from_slice(&std::fs::read(back.join("index.json")).unwrap()).unwrap();
    assert_eq!(again["manifests"][0]["digest"], index.as_str(), "{again}");
}

/// A ctr row carries a tag and the image's target digest. `repo@digest` on the command line
/// and printed by a filter name the same image the same way: by its tag, which is what ctr
/// exports (it has no image named `repo@digest`) and what keeps the name in the archive.
#[test]
fn a_ctr_digest_reference_resolves_to_its_tag_from_the_command_line_and_a_filter() {
    let e = need_engines!();
    let tmp = tempfile::tempdir().unwrap();
    let env = [kv("CONTAINERD_ADDRESS", e.src.var("CONTAINERD_ADDRESS"))];
    let by_digest = format!("seed/app@{}", e.src.seed["SEED_APP_MANIFEST"]);
    let given = tmp.path().join("given.tar");
    imgkit(&env)
        .args(["save", "--engine", "ctr", "-o"])
        .arg(&given)
        .arg(&by_digest)
        .run()
        .success();
    let filter = write_filter(
        tmp.path(),
        &format!(r#"select(.Repository == "seed/app" and .Tag == "1.0") | "{by_digest}""#),
    );
    let filtered = tmp.path().join("filtered.tar");
    imgkit(&env)
        .args(["save", "--engine", "ctr", "-f"])
        .arg(&filter)
        .arg("-o")
        .arg(&filtered)
        .run()
        .success();
    for tar in [&given, &filtered] {
        imgkit(&[])
            .args(["ls", "--all", "--from"])
            .arg(tar)
            .run()
            .success()
            .stdout_is("seed/app:1.0\n");
    }
}

/// podman's save (docker-archive: `<hex>.tar` layers) and ctr's (an OCI layout with
/// `manifest.json`) go into a layout directory blob by blob too, with the seeded IDs.
#[test]
fn podman_and_ctr_saves_go_into_a_layout_dir_with_their_ids() {
    let e = need_engines!();
    let tmp = tempfile::tempdir().unwrap();
    let filter = write_filter(tmp.path(), SELECT_TWO);
    let ctr_env = vec![kv("CONTAINERD_ADDRESS", e.src.var("CONTAINERD_ADDRESS"))];
    for (from, env) in [("podman", crate::transfer::src_podman(e)), ("ctr", ctr_env)] {
        let dir = tmp.path().join(from);
        let (doc, seen) = run_watching(
            &env,
            &[
                "run".into(),
                "--from".into(),
                from.into(),
                "--to".into(),
                slash(&dir),
                "-f".into(),
                filter.display().to_string(),
            ],
            &dir,
        );
        assert_eq!(doc["verified"], 2, "{from}: {doc}");
        assert!(
            seen.iter().all(|n| !n.contains("incoming")),
            "{from}: {seen:?}"
        );
        let ls = imgkit(&[])
            .args(["ls", "--all", "--format", "json", "--from"])
            .arg(slash(&dir))
            .run()
            .success();
        let mut ids = BTreeMap::new();
        for line in ls.stdout.lines() {
            let r: Value = serde_json::from_str(line).unwrap();
            ids.insert(
                format!(
                    "{}:{}",
                    r["Repository"].as_str().unwrap(),
                    r["Tag"].as_str().unwrap()
                ),
                r["ID"].as_str().unwrap().to_owned(),
            );
        }
        let want: BTreeMap<String, String> = want_two(e, "")
            .into_iter()
            .map(|(n, id)| (n, id["sha256:".len().."sha256:".len() + 12].to_owned()))
            .collect();
        assert_eq!(ids, want, "{from}");
    }
}

/// `--from ctr:all` into a store: each namespace's images in turn (an archive target is
/// refused, as each namespace's run would rewrite it); what an earlier namespace wrote is
/// skipped by name and ID.
#[test]
fn every_containerd_namespace_goes_into_one_layout_dir() {
    let e = need_engines!();
    let tmp = tempfile::tempdir().unwrap();
    let filter = write_filter(tmp.path(), SELECT_TWO);
    let dir = tmp.path().join("all");
    let env = [kv("CONTAINERD_ADDRESS", e.src.var("CONTAINERD_ADDRESS"))];
    imgkit(&env)
        .args(["run", "--from", "ctr:all", "-f"])
        .arg(&filter)
        .arg("--to")
        .arg(slash(&dir))
        .run()
        .success()
        .stderr_has("wrote 2 images from ctr:default");
    imgkit(&[])
        .args(["ls", "--all", "--from"])
        .arg(slash(&dir))
        .run()
        .success()
        .stdout_has("seed/app:1.0")
        .stdout_has("seed/base:1.0");
}

/// A layout directory's listing warnings reach `run` as they reach `ls`: a name that is not
/// an image reference (left out) and a name on two images (no engine needed).
#[test]
fn a_layout_dirs_name_warnings_are_shown_by_run() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("d");
    crate::util::Test::new()
        .args(["run", "--from"])
        .arg(crate::archive::sample_path())
        .arg("--to")
        .arg(slash(&dir))
        .run()
        .success();
    let index_path = dir.join("index.json");
    let mut index: Value = serde_json::from_slice(&std::fs::read(&index_path).unwrap()).unwrap();
    let manifests = index["manifests"].as_array_mut().unwrap();
    let named =
        |n: &str| json!({"io.containerd.image.name": n, "org.opencontainers.image.ref.name": n});
    // The third entry takes the first one's name; a copy of the fourth gets a name that is
    // not a reference.
    let first = manifests[0]["annotations"]["org.opencontainers.image.ref.name"]
        .as_str()
        .unwrap()
        .to_owned();
    manifests[2]["annotations"] = named(&first);
    let mut bad = manifests[3].clone();
    bad["annotations"] = named("Bad Name!");
    manifests.push(bad);
    std::fs::write(&index_path, serde_json::to_vec(&index).unwrap()).unwrap();
    let out = tmp.path().join("o.tar");
    crate::util::Test::new()
        .args(["run", "--from"])
        .arg(slash(&dir))
        .arg("--to")
        .arg(&out)
        .run()
        .success()
        .stderr_has("warning: image ")
        .stderr_has(r#"is named "Bad Name!", which is not an image reference"#)
        .stderr_has(&format!("warning: {first} names 2 images"));
}

/// Into an engine, a multi-platform index gives one platform: the host's, or the first
/// `--platform` names that it has. Only that platform's blobs are streamed (the index itself
/// comes along, so its digest stays), the rest is named in a note, and a platform the index
/// lacks is an error naming those it has, before anything is loaded.
#[test]
fn into_an_engine_an_index_gives_one_platform_and_names_the_rest() {
    let e = need_engines!();
    let host = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        _ => return,
    };
    let tmp = tempfile::tempdir().unwrap();
    let from = tmp.path().join("multi");
    let index = two_platform_layout(e, tmp.path(), &from);
    let index_doc: Value =
        serde_json::from_slice(&std::fs::read(blob(&from, &index)).unwrap()).unwrap();
    // Each platform's config digest (its image ID), by architecture.
    let config_of: BTreeMap<String, String> = index_doc["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            let manifest: Value = serde_json::from_slice(
                &std::fs::read(blob(&from, m["digest"].as_str().unwrap())).unwrap(),
            )
            .unwrap();
            (
                m["platform"]["architecture"].as_str().unwrap().to_owned(),
                manifest["config"]["digest"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let other = if host == "amd64" { "arm64" } else { "amd64" };
    let tar_members = |tar: &Path| -> Vec<String> {
        let mut a = tar::Archive::new(std::fs::File::open(tar).unwrap());
        a.entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().to_string_lossy().into_owned())
            .collect()
    };
    let hex = |d: &str| d.trim_start_matches("sha256:").to_owned();

    for (asked, got) in [(None, host), (Some(format!("linux/{other}")), other)] {
        let env = fresh_podman(&tmp.path().join(format!("p-{got}")));
        let via = tmp.path().join(format!("via-{got}.tar"));
        let mut t = imgkit(&env)
            .args(["run", "--from"])
            .arg(slash(&from))
            .args(["--to", "podman", "--via"])
            .arg(&via);
        if let Some(p) = &asked {
            t = t.args(["--platform", p]);
        }
        let left = if got == "amd64" {
            "linux/arm64/v8"
        } else {
            "linux/amd64"
        };
        t.run().success().stderr_has(&format!("{left} left out"));
        let images = podman_images(&env);
        assert_eq!(
            images.get("docker.io/seed/multi:1.0").map(|id| hex(id)),
            Some(hex(&config_of[got])),
            "{images:?}"
        );
        // The stream held the index and this platform's config, not the other's.
        let members = tar_members(&via);
        let has = |d: &str| members.iter().any(|m| m.ends_with(&hex(d)));
        assert!(has(&index), "{members:?}");
        assert!(has(&config_of[got]), "{members:?}");
        let not_got = if got == host { other } else { host };
        assert!(!has(&config_of[not_got]), "{members:?}");
    }

    // A platform the index lacks: named with those it has, nothing loaded.
    let env = fresh_podman(&tmp.path().join("p-none"));
    imgkit(&env)
        .args(["run", "--from"])
        .arg(slash(&from))
        .args(["--to", "podman", "--platform", "linux/s390x"])
        .run()
        .code(2)
        .stderr_has("has no linux/s390x image: it has linux/amd64, linux/arm64/v8");
    assert!(podman_images(&env).is_empty());
    // A single-platform image asked for another platform: named too (its config says which).
    imgkit(&env)
        .args(["run", "--from"])
        .arg(slash(&tmp.path().join("single")))
        .args(["--to", "podman", "--platform", &format!("linux/{other}")])
        .run()
        .code(2)
        .stderr_has(&format!(
            "has no linux/{other} image: it has linux/{host} only"
        ));
    assert!(podman_images(&env).is_empty());
    // Not into an archive: it keeps every platform.
    imgkit(&[])
        .args(["run", "--from"])
        .arg(slash(&from))
        .arg("--to")
        .arg(tmp.path().join("all.tar"))
        .args(["--platform", "linux/amd64"])
        .run()
        .code(2)
        .stderr_has("--platform chooses what goes into an engine");
    imgkit(&[])
        .args(["run", "--from"])
        .arg(slash(&from))
        .args(["--to", "registry:127.0.0.1:9", "--platform", "linux/amd64"])
        .run()
        .code(2)
        .stderr_has("--platform chooses what goes into an engine, and registry:127.0.0.1:9");
}
