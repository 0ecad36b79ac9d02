//! `imgkit ls`, `save` and `load --engine ctr` over containerd's gRPC API (the decision `run`
//! makes for `ctr:NAMESPACE`: `host/containerd.rs`), end to end on real containerd 1.6 from
//! `scripts/engines`: listings with the config's creation time and the manifests' sizes (every
//! namespace with `-n all`), saves read from the content store into an archive, stdout and a
//! layout directory (a damaged blob leaves nothing), loads read once into the store, unpacked,
//! named last (a corrupt or interrupted one names nothing); and the ctr CLI wherever a ctr
//! binary is named (`IMGKIT_CTR_BIN`, `--engine-bin`).
#![cfg(unix)]

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::containerd::{content_file, damage_middle};
use crate::transfer::{
    Engines, K8S_DST, ctr, ctr_images, empty_ctr, imgkit, kv, lock, output, temp_of, want_two,
};
use crate::util::bin;

/// `-v`: the namespace went through containerd's API.
const NATIVE: &str = "through containerd's API";
/// `-v`: the namespace went through the ctr CLI.
const CLI: &str = "through the ctr CLI";

/// The ctr binary, named: the CLI even where containerd's socket answers.
fn ctr_bin() -> (String, String) {
    let bin = crate::util::on_path("ctr").expect("ctr on PATH");
    kv("IMGKIT_CTR_BIN", bin.to_str().unwrap())
}

fn src_ctr(e: &Engines) -> (String, String) {
    kv("CONTAINERD_ADDRESS", e.src.var("CONTAINERD_ADDRESS"))
}

fn dst_ctr(e: &Engines) -> (String, String) {
    kv("CONTAINERD_ADDRESS", e.dst.var("CONTAINERD_ADDRESS"))
}

/// The JSON records of `ls --format json`, by `Name` (containerd's own name).
fn records(stdout: &str) -> BTreeMap<String, serde_json::Value> {
    stdout
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap_or_else(|e| panic!("{e}: {l}"))
        })
        .map(|v| (v["Name"].as_str().unwrap().to_owned(), v))
        .collect()
}

/// A size as imgkit prints one (`268kB`, `1.2MB`, `512B`) in bytes.
fn size_bytes(s: &str) -> f64 {
    let at = s.find(|c: char| c.is_ascii_alphabetic()).unwrap();
    let unit = match &s[at..] {
        "B" => 1.0,
        "kB" => 1e3,
        "MB" => 1e6,
        "GB" => 1e9,
        u => panic!("unit {u} in {s}"),
    };
    s[..at].parse::<f64>().unwrap() * unit
}

/// What containerd holds for `name` in `ns`, read with the ctr CLI: the manifest's size plus
/// its config's and layers' (the image's size as `ctr images ls` counts it), and the config's
/// `created` as `YYYY-MM-DD HH:MM:SS`.
fn size_and_created(addr: &str, ns: &str, name: &str) -> (u64, String) {
    let table = output(ctr(addr, ns).args(["images", "ls"]));
    let digest = table
        .lines()
        .find(|l| l.split_whitespace().next() == Some(name))
        .and_then(|l| l.split_whitespace().nth(2))
        .unwrap_or_else(|| panic!("{name} not in\n{table}"))
        .to_owned();
    let manifest = output(ctr(addr, ns).args(["content", "get", &digest]));
    let m: serde_json::Value = serde_json::from_str(&manifest).unwrap();
    let size = manifest.len() as u64
        + m["config"]["size"].as_u64().unwrap()
        + m["layers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["size"].as_u64().unwrap())
            .sum::<u64>();
    let config =
        output(ctr(addr, ns).args(["content", "get", m["config"]["digest"].as_str().unwrap()]));
    let c: serde_json::Value = serde_json::from_str(&config).unwrap();
    let created = c["created"].as_str().unwrap().replace('T', " ");
    (size, created[..19].to_owned())
}

#[test]
fn ls_lists_natively_with_the_configs_creation_time_and_the_manifests_sizes() {
    let e = need_engines!();
    let addr = e.src.var("CONTAINERD_ADDRESS");
    let native = imgkit(&[src_ctr(e)])
        .args([
            "-v", "ls", "--engine", "ctr", "-n", "k8s.io", "-a", "--format", "json",
        ])
        .run()
        .success()
        .stderr_has(&format!("ctr:k8s.io: {NATIVE}"));
    let got = records(&native.stdout);
    for name in [
        "docker.io/seed/app:1.0",
        "docker.io/seed/base:1.0",
        "docker.io/seed/multi:latest",
    ] {
        let rec = &got[name];
        let (size, created) = size_and_created(addr, "k8s.io", name);
        let listed = size_bytes(rec["Size"].as_str().unwrap());
        assert!(
            (listed - size as f64).abs() <= 1000.0,
            "{name}: Size {} for {size} bytes: {rec}",
            rec["Size"]
        );
        assert!(
            rec["CreatedAt"].as_str().unwrap().starts_with(&created),
            "{name}: CreatedAt is not the config's {created}: {rec}"
        );
        assert!(
            rec["CreatedSince"].as_str().unwrap().ends_with(" ago"),
            "{rec}"
        );
        assert_eq!(rec["Platform"], "linux/amd64", "{rec}");
        // One namespace: the ctr CLI's record shape (no Namespace).
        assert!(rec.get("Namespace").is_none(), "{rec}");
    }
    // The ctr CLI's table has no creation time: forced to it, the same listing says N/A.
    for env in [vec![src_ctr(e), ctr_bin()], vec![src_ctr(e)]] {
        let forced_by_flag = env.len() == 1;
        let mut t = imgkit(&env).args([
            "-v", "ls", "--engine", "ctr", "-n", "k8s.io", "-a", "--format", "json",
        ]);
        if forced_by_flag {
            t = t
                .arg("--engine-bin")
                .arg(crate::util::on_path("ctr").unwrap());
        }
        let cli = t.run().success().stderr_has(&format!("ctr:k8s.io: {CLI}"));
        let via_cli = records(&cli.stdout);
        assert_eq!(
            via_cli.keys().collect::<Vec<_>>(),
            got.keys().collect::<Vec<_>>()
        );
        assert_eq!(via_cli["docker.io/seed/app:1.0"]["CreatedAt"], "N/A");
        assert_eq!(
            via_cli["docker.io/seed/app:1.0"]["ID"],
            got["docker.io/seed/app:1.0"]["ID"]
        );
    }
    // The default selection is the same either way; an empty one still exits 1.
    let refs = |env: &[(String, String)]| {
        imgkit(env)
            .args(["ls", "--engine", "ctr", "-n", "k8s.io"])
            .run()
            .success()
            .stdout
    };
    assert_eq!(refs(&[src_ctr(e)]), refs(&[src_ctr(e), ctr_bin()]));
    imgkit(&[src_ctr(e)])
        .args(["ls", "--engine", "ctr", "-n", "k8s.io", "-e", "empty"])
        .run()
        .code(1)
        .stdout_is("");
    // containerd not answering at --address: the CLI, saying why, and the CLI's own error.
    imgkit(&[src_ctr(e)])
        .args(["-v", "ls", "--engine", "ctr", "-n", "k8s.io", "--address"])
        .arg("/nonexistent/imgkit/containerd.sock")
        .run()
        .code(2)
        .stderr_has("falling back to the ctr CLI")
        .stderr_has("cannot reach the ctr daemon at /nonexistent/imgkit/containerd.sock");
    // No ctr binary anywhere: natively, none is needed.
    imgkit(&[src_ctr(e)])
        .args(["ls", "--engine", "ctr", "-n", "k8s.io", "-a"])
        .env("PATH", "/nonexistent")
        .env("IMGKIT_CTR_BIN", "")
        .run()
        .success()
        .stdout_has("seed/app:1.0");
    // A namespace containerd does not have: its error, naming those it has.
    imgkit(&[src_ctr(e)])
        .args(["ls", "--engine", "ctr", "-n", "no-such-ns"])
        .run()
        .code(2)
        .stderr_has("containerd namespace \"no-such-ns\" does not exist")
        .stderr_has("k8s.io");
}

#[test]
fn ls_every_namespace_natively_carries_the_namespace() {
    let e = need_engines!();
    let run = imgkit(&[src_ctr(e)])
        .args([
            "-v", "ls", "--engine", "ctr", "-n", "all", "-a", "--format", "json",
        ])
        .run()
        .success()
        .stderr_has(&format!("ctr:k8s.io: {NATIVE}"))
        .stderr_has(&format!("ctr:default: {NATIVE}"));
    let mut by_ns: BTreeMap<String, usize> = BTreeMap::new();
    for line in run.stdout.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let ns = v["Namespace"]
            .as_str()
            .unwrap_or_else(|| panic!("no Namespace: {line}"));
        assert_ne!(v["CreatedAt"], "N/A", "{line}");
        *by_ns.entry(ns.to_owned()).or_default() += 1;
    }
    // `-a` shows each reference once (the first namespace's record), as through the CLI.
    assert!(by_ns["default"] >= 10 && by_ns["k8s.io"] >= 1, "{by_ns:?}");
    let pairs = |stdout: &str| -> Vec<(String, String)> {
        stdout
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .map(|v| {
                (
                    v["Namespace"].as_str().unwrap().to_owned(),
                    v["Name"].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    };
    let cli = imgkit(&[src_ctr(e), ctr_bin()])
        .args([
            "ls", "--engine", "ctr", "-n", "all", "-a", "--format", "json",
        ])
        .run()
        .success();
    assert_eq!(pairs(&run.stdout), pairs(&cli.stdout));
    // Filters choose by namespace, as with the CLI.
    let program = r#"select(.Namespace == "k8s.io" and .Repository == "seed/app" and .Tag == "1.0") | .Repository + ":" + .Tag"#;
    let native = imgkit(&[src_ctr(e)])
        .args(["ls", "--engine", "ctr", "-n", "all", "-e", program])
        .run()
        .success()
        .stdout;
    assert_eq!(native, "seed/app:1.0\n");
    let cli = imgkit(&[src_ctr(e), ctr_bin()])
        .args(["-v", "ls", "--engine", "ctr", "-n", "all", "-e", program])
        .run()
        .success()
        .stderr_has(CLI);
    assert_eq!(cli.stdout, native);
}

/// The image IDs (config digests) an archive's `manifest.json` names, by its first tag.
fn archive_ids(tar: &Path) -> BTreeMap<String, String> {
    let mut a = ::tar::Archive::new(std::fs::File::open(tar).unwrap());
    for entry in a.entries().unwrap() {
        let mut entry = entry.unwrap();
        if entry.path().unwrap().to_str() == Some("manifest.json") {
            let mut s = String::new();
            entry.read_to_string(&mut s).unwrap();
            let v: serde_json::Value = serde_json::from_str(&s).unwrap();
            return v
                .as_array()
                .unwrap()
                .iter()
                .map(|m| {
                    let config = m["Config"].as_str().unwrap();
                    let hex = config.rsplit('/').next().unwrap().trim_end_matches(".json");
                    (
                        m["RepoTags"][0].as_str().unwrap().to_owned(),
                        format!("sha256:{hex}"),
                    )
                })
                .collect();
        }
    }
    panic!("{} has no manifest.json", tar.display())
}

#[test]
fn save_reads_containerds_store_into_a_file_stdout_and_a_layout_dir() {
    let e = need_engines!();
    let addr = e.src.var("CONTAINERD_ADDRESS");
    let tmp = tempfile::tempdir().unwrap();
    let held = ctr_images(addr, "k8s.io");
    let want = BTreeMap::from([
        (
            "docker.io/seed/app:1.0".to_owned(),
            held["docker.io/seed/app:1.0"].clone(),
        ),
        (
            "docker.io/seed/base:1.0".to_owned(),
            held["docker.io/seed/base:1.0"].clone(),
        ),
    ]);
    assert_eq!(want, want_two(e, "docker.io/"));
    // A file: written from the content store (not `ctr export`), verified, the IDs containerd holds.
    let file = tmp.path().join("x.tar");
    imgkit(&[src_ctr(e)])
        .args(["-v", "save", "--engine", "ctr", "-n", "k8s.io", "-o"])
        .arg(&file)
        .args(["seed/app:1.0", "seed/base:1.0"])
        .run()
        .success()
        .stderr_has(&format!("ctr:k8s.io: {NATIVE}"))
        .stderr_has("blobs read from containerd's content files")
        .stderr_has("moved 2 images from ctr:k8s.io");
    crate::util::Test::new()
        .arg("verify")
        .arg(&file)
        .run()
        .success();
    assert_eq!(archive_ids(&file), want);
    // stdout, with the summary as JSON on stderr.
    let out = Command::new(bin())
        .args([
            "--json",
            "save",
            "--engine",
            "ctr",
            "-n",
            "k8s.io",
            "-o",
            "-",
            "seed/app:1.0",
        ])
        .env("CONTAINERD_ADDRESS", addr)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let summary: serde_json::Value = serde_json::from_str(stderr.lines().last().unwrap()).unwrap();
    assert_eq!(summary["images"], 1, "{stderr}");
    assert_eq!(summary["from"], "ctr:k8s.io", "{stderr}");
    assert_eq!(
        summary["bytes"].as_u64(),
        Some(out.stdout.len() as u64),
        "{stderr}"
    );
    let piped = tmp.path().join("piped.tar");
    std::fs::write(&piped, &out.stdout).unwrap();
    crate::util::Test::new()
        .arg("verify")
        .arg(&piped)
        .run()
        .success();
    assert_eq!(
        archive_ids(&piped),
        BTreeMap::from([(
            "docker.io/seed/app:1.0".to_owned(),
            want["docker.io/seed/app:1.0"].clone()
        )])
    );
    // A layout directory: blobs copied, IDs checked there; again, everything already there.
    let dir = tmp.path().join("layout");
    let run = imgkit(&[src_ctr(e)])
        .args(["--json", "save", "--engine", "ctr", "-n", "k8s.io", "-o"])
        .arg(format!("{}/", dir.display()))
        .args(["seed/app:1.0", "seed/base:1.0"])
        .run()
        .success();
    let doc: serde_json::Value = serde_json::from_str(run.stdout.lines().last().unwrap()).unwrap();
    assert_eq!(doc["verified"], 2, "{doc}");
    assert!(doc["blobs_written"].as_u64().unwrap() >= 4, "{doc}");
    assert!(dir.join("oci-layout").is_file());
    let again = imgkit(&[src_ctr(e)])
        .args(["--json", "save", "--engine", "ctr", "-n", "k8s.io", "-o"])
        .arg(format!("{}/", dir.display()))
        .args(["seed/app:1.0"])
        .run()
        .success();
    let doc: serde_json::Value =
        serde_json::from_str(again.stdout.lines().last().unwrap()).unwrap();
    assert_eq!(doc["blobs_written"], 0, "{doc}");
    // The layout holds what containerd holds: read back as a source.
    let listed = imgkit(&[])
        .args(["ls", "--from"])
        .arg(&dir)
        .args(["-a", "--format", "json"])
        .run()
        .success();
    assert!(
        listed.stdout.contains("\"Repository\":\"seed/base\""),
        "{}",
        listed.stdout
    );
    // Forced to the CLI: `ctr export` runs, as before.
    imgkit(&[src_ctr(e), ctr_bin()])
        .args(["-v", "save", "--engine", "ctr", "-n", "k8s.io", "-o"])
        .arg(tmp.path().join("cli.tar"))
        .arg("seed/app:1.0")
        .run()
        .success()
        .stderr_has(CLI)
        .stderr_has("images export");
}

fn sha256(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    let d = sha2::Sha256::digest(bytes);
    d.iter().fold(String::new(), |mut s, b| {
        use std::fmt::Write as _;
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// A docker-archive (docker ≤24's layout) of one image `name` with one layer of `mib` MiB of
/// bytes no other image has: (the archive's bytes, the layer's digest hex).
fn one_layer_archive(name: &str, mib: usize, seed: u64) -> (Vec<u8>, String) {
    let mut data = vec![0u8; mib << 20];
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15 ^ seed ^ u64::from(std::process::id());
    for chunk in data.chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        chunk.copy_from_slice(&x.to_le_bytes()[..chunk.len()]);
    }
    let layer = imgkit_archive::layer_tar(&[("blob", &data[..])]);
    let hex = sha256(&layer);
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64", "os": "linux", "config": {},
        "created": "2026-01-02T03:04:05Z",
        "rootfs": {"type": "layers", "diff_ids": [format!("sha256:{hex}")]},
    }))
    .unwrap();
    let config_name = format!("{}.json", sha256(&config));
    let manifest = serde_json::to_vec(&serde_json::json!([
        {"Config": config_name, "RepoTags": [name], "Layers": ["l/layer.tar"]}
    ]))
    .unwrap();
    let mut tar = ::tar::Builder::new(Vec::new());
    for (n, bytes) in [
        ("l/layer.tar", &layer),
        (config_name.as_str(), &config),
        ("manifest.json", &manifest),
    ] {
        let mut h = ::tar::Header::new_ustar();
        h.set_size(bytes.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        tar.append_data(&mut h, n, &bytes[..]).unwrap();
    }
    (tar.into_inner().unwrap(), hex)
}

fn names(addr: &str, ns: &str) -> Vec<String> {
    output(ctr(addr, ns).args(["images", "ls", "-q"]))
        .lines()
        .map(str::to_owned)
        .collect()
}

fn drop_namespace(addr: &str, ns: &str) {
    empty_ctr(addr, ns);
    let _ = Command::new("ctr")
        .args(["-a", addr, "namespaces", "rm", ns])
        .output();
}

#[test]
fn a_damaged_blob_fails_the_save_and_leaves_no_file() {
    let e = need_engines!();
    let addr = e.dst.var("CONTAINERD_ADDRESS");
    let ns = format!("imgkit-t-ctrcmds-damaged-{}", std::process::id());
    let tmp = tempfile::tempdir().unwrap();
    let (archive, hex) = one_layer_archive("imgkit-t/damaged-save:1", 3, 1);
    let input = tmp.path().join("in.tar");
    std::fs::write(&input, &archive).unwrap();
    imgkit(&[dst_ctr(e)])
        .args([
            "-q",
            "load",
            "--engine",
            "ctr",
            "--no-unpack",
            "-n",
            &ns,
            "-i",
        ])
        .arg(&input)
        .run()
        .success();
    let save = |to: &Path| {
        imgkit(&[dst_ctr(e)])
            .args(["save", "--engine", "ctr", "-n", &ns, "-o"])
            .arg(to)
            .arg("imgkit-t/damaged-save:1")
            .run()
    };
    save(&tmp.path().join("good.tar")).success();
    let file = content_file(e, &hex);
    let restore = damage_middle(&file);
    let bad = tmp.path().join("bad.tar");
    let run = save(&bad)
        .code(2)
        .stderr_has(&hex)
        .stderr_has("content store at");
    assert!(!bad.exists(), "an archive was left behind: {}", run.stderr);
    assert!(
        temp_of(tmp.path(), "bad.tar").is_none(),
        "a temporary was left behind"
    );
    // Into a layout directory this save creates: none is left either.
    let dir = tmp.path().join("bad-layout");
    save(&PathBuf::from(format!("{}/", dir.display())))
        .code(2)
        .stderr_has(&hex);
    assert!(!dir.exists(), "a layout directory was left behind");
    drop(restore);
    save(&tmp.path().join("again.tar")).success();
    drop_namespace(addr, &ns);
}

/// `ctr images check` of `name`: (complete, unpacked).
fn check(addr: &str, ns: &str, name: &str) -> (bool, bool) {
    let table = output(ctr(addr, ns).args(["images", "check"]));
    let line = table
        .lines()
        .find(|l| l.split_whitespace().next() == Some(name))
        .unwrap_or_else(|| panic!("{name} not in\n{table}"));
    (
        line.contains(" complete "),
        line.split_whitespace().last() == Some("true"),
    )
}

/// `docker save` of seed/app and seed/base from the seeded docker (read only).
fn docker_saved(e: &Engines, dir: &Path) -> PathBuf {
    let tar = dir.join("two.tar");
    output(
        crate::transfer::docker(e.src.var("DOCKER_HOST"))
            .args(["save", "-o"])
            .arg(&tar)
            .args(["seed/app:1.0", "seed/base:1.0"]),
    );
    tar
}

#[test]
fn load_reads_an_archive_once_into_containerd_unpacked_from_a_file_and_stdin() {
    let e = need_engines!();
    let _k = lock(&K8S_DST);
    let addr = e.dst.var("CONTAINERD_ADDRESS");
    empty_ctr(addr, "k8s.io");
    let tmp = tempfile::tempdir().unwrap();
    let tar = docker_saved(e, tmp.path());
    let complete = |how: &str| {
        assert_eq!(
            ctr_images(addr, "k8s.io"),
            want_two(e, "docker.io/"),
            "{how}"
        );
        for name in ["docker.io/seed/app:1.0", "docker.io/seed/base:1.0"] {
            assert_eq!(check(addr, "k8s.io", name), (true, true), "{how}: {name}");
        }
        let snaps = output(ctr(addr, "k8s.io").args(["snapshots", "ls"]));
        assert!(
            snaps.lines().filter(|l| l.contains("Committed")).count() >= 2,
            "{how}: {snaps}"
        );
    };
    let run = imgkit(&[dst_ctr(e)])
        .args(["-v", "load", "--engine", "ctr", "-n", "k8s.io", "-i"])
        .arg(&tar)
        .run()
        .success()
        .stderr_has(&format!("ctr:k8s.io: {NATIVE}"))
        .stderr_has("unpacked into overlayfs")
        .stderr_has("moved 2 images from");
    // What `ctr images import` prints, one line per name.
    assert!(
        run.stdout
            .contains("unpacking docker.io/seed/app:1.0 (sha256:")
            && run
                .stdout
                .contains("unpacking docker.io/seed/base:1.0 (sha256:"),
        "{}",
        run.stdout
    );
    assert_eq!(run.stdout.lines().count(), 2, "{}", run.stdout);
    complete("-i FILE");
    empty_ctr(addr, "k8s.io");
    let run = imgkit(&[dst_ctr(e)])
        .args(["--json", "load", "--engine", "ctr", "-n", "k8s.io"])
        .stdin(std::fs::read(&tar).unwrap())
        .run()
        .success();
    let doc: serde_json::Value = serde_json::from_str(run.stdout.lines().last().unwrap()).unwrap();
    assert_eq!(doc["images"], 2, "{doc}");
    assert_eq!(doc["from"], "stdin", "{doc}");
    assert_eq!(doc["to"], "ctr:k8s.io", "{doc}");
    complete("stdin");
    // Loaded again: the same, nothing broken.
    imgkit(&[dst_ctr(e)])
        .args(["-q", "load", "--engine", "ctr", "-n", "k8s.io", "-i"])
        .arg(&tar)
        .run()
        .success();
    complete("again");
    empty_ctr(addr, "k8s.io");
    // --no-unpack: complete, not unpacked.
    let ns = format!("imgkit-t-ctrcmds-nounpack-{}", std::process::id());
    imgkit(&[dst_ctr(e)])
        .args(["load", "--engine", "ctr", "--no-unpack", "-n", &ns, "-i"])
        .arg(&tar)
        .run()
        .success()
        .stdout_has("imported docker.io/seed/app:1.0");
    assert_eq!(check(addr, &ns, "docker.io/seed/app:1.0"), (true, false));
    drop_namespace(addr, &ns);
    // The CLI, named: `ctr images import` as before; it has no --no-unpack of ours.
    let ns = format!("imgkit-t-ctrcmds-cli-{}", std::process::id());
    imgkit(&[dst_ctr(e), ctr_bin()])
        .args(["-v", "load", "--engine", "ctr", "-n", &ns, "-i"])
        .arg(&tar)
        .run()
        .success()
        .stderr_has(CLI)
        .stderr_has("images import");
    assert_eq!(check(addr, &ns, "docker.io/seed/app:1.0"), (true, true));
    imgkit(&[dst_ctr(e), ctr_bin()])
        .args(["load", "--engine", "ctr", "--no-unpack", "-n", &ns, "-i"])
        .arg(&tar)
        .run()
        .code(2)
        .stderr_has("--no-unpack applies to a load into containerd over its API")
        .stderr_has("imgkit explain IK172");
    drop_namespace(addr, &ns);
}

#[test]
fn a_corrupt_or_truncated_archive_loads_nothing() {
    let e = need_engines!();
    let _k = lock(&K8S_DST);
    let addr = e.dst.var("CONTAINERD_ADDRESS");
    empty_ctr(addr, "k8s.io");
    let tmp = tempfile::tempdir().unwrap();
    let (good, _) = one_layer_archive("imgkit-t/corrupt:1", 4, 2);
    // A byte of the layer flipped: the archive's own check stops it (exit 2), nothing named.
    let mut flipped = good.clone();
    flipped[2048] ^= 1;
    let bad = tmp.path().join("flipped.tar");
    std::fs::write(&bad, &flipped).unwrap();
    imgkit(&[dst_ctr(e)])
        .args(["-v", "load", "--engine", "ctr", "-n", "k8s.io", "-i"])
        .arg(&bad)
        .run()
        .code(2)
        .stderr_has(NATIVE)
        .stderr_has("has sha256")
        .stderr_has("kept nothing");
    assert_eq!(names(addr, "k8s.io"), Vec::<String>::new());
    // Cut short, from stdin.
    imgkit(&[dst_ctr(e)])
        .args(["load", "--engine", "ctr", "-n", "k8s.io"])
        .stdin(good[..good.len() / 2].to_vec())
        .run()
        .code(2)
        .stderr_has("kept nothing");
    assert_eq!(names(addr, "k8s.io"), Vec::<String>::new());
    // Not an archive at all.
    imgkit(&[dst_ctr(e)])
        .args(["load", "--engine", "ctr", "-n", "k8s.io"])
        .stdin(vec![b'x'; 10_000])
        .run()
        .code(2);
    assert_eq!(names(addr, "k8s.io"), Vec::<String>::new());
    // The good one loads.
    imgkit(&[dst_ctr(e)])
        .args(["load", "--engine", "ctr", "-n", "k8s.io"])
        .stdin(good)
        .run()
        .success();
    assert_eq!(
        names(addr, "k8s.io"),
        vec!["docker.io/imgkit-t/corrupt:1".to_owned()]
    );
    empty_ctr(addr, "k8s.io");
}

/// The refs of active ingests (blobs being written) in `ns`.
fn active_ingests(addr: &str, ns: &str) -> Vec<String> {
    output(ctr(addr, ns).args(["content", "active"]))
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
        .collect()
}

/// `imgkit load --engine ctr -n k8s.io -i INPUT` started, once containerd shows an ingest of
/// it (a blob being written); its stderr as asked.
fn load_writing(addr: &str, input: &Path, stderr: Stdio) -> std::process::Child {
    let before = active_ingests(addr, "k8s.io");
    let mut child = Command::new(bin())
        .args(["-q", "load", "--engine", "ctr", "-n", "k8s.io", "-i"])
        .arg(input)
        .env("CONTAINERD_ADDRESS", addr)
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_mins(1);
    while active_ingests(addr, "k8s.io")
        .iter()
        .all(|k| before.contains(k))
    {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the load finished before it was seen writing a blob"
        );
        assert!(Instant::now() < deadline, "the load never wrote a blob");
        std::thread::sleep(Duration::from_millis(10));
    }
    child
}

/// imgkit killed (SIGKILL) while containerd takes a blob of the load: no image is named; the
/// load run again completes.
#[test]
fn a_load_killed_midway_names_nothing_and_a_rerun_completes() {
    let e = need_engines!();
    let _k = lock(&K8S_DST);
    let addr = e.dst.var("CONTAINERD_ADDRESS");
    empty_ctr(addr, "k8s.io");
    let tmp = tempfile::tempdir().unwrap();
    let (archive, _) = one_layer_archive("imgkit-t/killed:1", 160, 3);
    let input = tmp.path().join("big.tar");
    std::fs::write(&input, &archive).unwrap();
    let mut child = load_writing(addr, &input, Stdio::null());
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(names(addr, "k8s.io"), Vec::<String>::new());
    imgkit(&[dst_ctr(e)])
        .args(["-v", "load", "--engine", "ctr", "-n", "k8s.io", "-i"])
        .arg(&input)
        .run()
        .success()
        .stderr_has(NATIVE);
    assert_eq!(
        check(addr, "k8s.io", "docker.io/imgkit-t/killed:1"),
        (true, true)
    );
    empty_ctr(addr, "k8s.io");
}

/// Two loads into one namespace take turns (the store's lock, as for `run`): the second waits
/// for the first, then both complete.
#[test]
fn concurrent_loads_into_one_namespace_take_turns() {
    let e = need_engines!();
    let _k = lock(&K8S_DST);
    let addr = e.dst.var("CONTAINERD_ADDRESS");
    empty_ctr(addr, "k8s.io");
    let tmp = tempfile::tempdir().unwrap();
    let (big, _) = one_layer_archive("imgkit-t/first:1", 160, 4);
    let (small, _) = one_layer_archive("imgkit-t/second:1", 1, 5);
    let input = tmp.path().join("big.tar");
    std::fs::write(&input, &big).unwrap();
    let mut first = load_writing(addr, &input, Stdio::piped());
    imgkit(&[dst_ctr(e)])
        .args(["load", "--engine", "ctr", "-n", "k8s.io"])
        .stdin(small)
        .run()
        .success()
        .stderr_has("waiting for another imgkit run that is loading into ctr:k8s.io");
    let mut stderr = String::new();
    first
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert!(first.wait().unwrap().success(), "{stderr}");
    for name in ["docker.io/imgkit-t/first:1", "docker.io/imgkit-t/second:1"] {
        assert_eq!(check(addr, "k8s.io", name), (true, true), "{name}");
    }
    empty_ctr(addr, "k8s.io");
}
