//! Data safety on the real engines: imgkit never destroys what the user had (a `--via` over
//! the input, names the target had before a `--rename`, what a failed load leaves) and never
//! exits 0 on broken data (a closed stdout during a save, flipped layer bytes, cut or damaged
//! compression); selections work as documented (untagged images by ID, odd containerd names,
//! an archive naming two images alike) and `--json` prints one document per command.
//!
//! Engines as in `transfer.rs`: the seeded set is only read; what is written goes into the
//! empty destination docker (under its lock), fresh podman storage, or containerd namespaces
//! only these tests use.
#![cfg(unix)]

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use sha2::Digest as _;

use crate::archive::sample_path;
use crate::transfer::{
    DOCKER_DST, Engines, ctr, docker, docker_images, empty_docker, engines, fresh_podman, imgkit,
    kv, lock, output, podman_images, src_docker, write_filter,
};
use crate::util::{Test, bin};

macro_rules! need_engines {
    () => {
        match engines() {
            Some(e) => e,
            None => {
                eprintln!(
                    "skipped: safety tests need real engines; run scripts/test (as root), which starts them and sets IMGKIT_ENGINES_DIR and IMGKIT_TRANSFER_DST"
                );
                return;
            }
        }
    };
}

fn dst_docker(e: &Engines) -> (String, String) {
    kv("DOCKER_HOST", e.dst.var("DOCKER_HOST"))
}

fn dst_ctr(e: &Engines) -> (String, String) {
    kv("CONTAINERD_ADDRESS", e.dst.var("CONTAINERD_ADDRESS"))
}

/// A containerd namespace of the destination set, emptied, for one test alone.
fn fresh_namespace(e: &Engines, ns: &str) {
    let addr = e.dst.var("CONTAINERD_ADDRESS");
    let names = output(ctr(addr, ns).args(["images", "ls", "-q"]));
    let names: Vec<&str> = names.lines().collect();
    if !names.is_empty() {
        output(ctr(addr, ns).args(["images", "rm"]).args(&names));
    }
}

fn ctr_names(e: &Engines, ns: &str) -> Vec<String> {
    let addr = e.dst.var("CONTAINERD_ADDRESS");
    let mut names: Vec<String> = output(ctr(addr, ns).args(["images", "ls", "-q"]))
        .lines()
        .map(str::to_owned)
        .collect();
    names.sort();
    names
}

/// `name → target digest` in a destination containerd namespace.
fn ctr_targets(e: &Engines, ns: &str) -> std::collections::BTreeMap<String, String> {
    let addr = e.dst.var("CONTAINERD_ADDRESS");
    output(ctr(addr, ns).args(["images", "ls"]))
        .lines()
        .skip(1)
        .filter_map(|l| {
            // The name may hold spaces: the digest is the first `sha256:` field, and the media
            // type (one word) stands before it, padded or not.
            let at = l.find(" sha256:")?;
            let digest = l[at + 1..].split_whitespace().next()?;
            let name = l[..at]
                .trim_end()
                .rsplit_once(' ')
                .map_or(l, |(n, _)| n)
                .trim();
            Some((name.to_owned(), digest.to_owned()))
        })
        .collect()
}

/// `docker save` of one seeded image, from the seeded docker.
fn saved(e: &Engines, reference: &str, dir: &Path) -> PathBuf {
    let path = dir.join(format!("{}.tar", reference.replace(['/', ':'], "_")));
    let out = docker(e.src.var("DOCKER_HOST"))
        .args(["save", reference])
        .output()
        .unwrap();
    assert!(out.status.success(), "docker save {reference}");
    std::fs::write(&path, out.stdout).unwrap();
    path
}

fn podman(env: &[(String, String)]) -> Command {
    let mut c = Command::new("podman");
    c.envs(env.iter().map(|(k, v)| (k, v)));
    c
}

fn podman_load(env: &[(String, String)], archive: &Path) {
    let file = std::fs::File::open(archive).unwrap();
    let out = podman(env)
        .args(["load", "-q"])
        .stdin(file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "podman load: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn docker_load(host: &str, archive: &Path) {
    let file = std::fs::File::open(archive).unwrap();
    let out = docker(host)
        .args(["load", "-q"])
        .stdin(file)
        .output()
        .unwrap();
    assert!(out.status.success(), "docker load");
}

fn ctr_import(e: &Engines, ns: &str, archive: &Path) {
    let file = std::fs::File::open(archive).unwrap();
    let out = ctr(e.dst.var("CONTAINERD_ADDRESS"), ns)
        .args(["images", "import", "-"])
        .stdin(file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "ctr import: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn sha256(bytes: &[u8]) -> String {
    let d = sha2::Sha256::digest(bytes);
    d.iter().fold(String::new(), |mut s, b| {
        use std::fmt::Write as _;
        let _ = write!(s, "{b:02x}");
        s
    })
}

// ---- never destroy what the user had ---------------------------------------------------------

#[test]
fn via_equal_to_from_or_to_is_refused_before_anything_runs() {
    let e = need_engines!();
    let tmp = tempfile::tempdir().unwrap();
    let all = tmp.path().join("all.tar");
    std::fs::copy(sample_path(), &all).unwrap();
    let before = std::fs::read(&all).unwrap();
    let mut env = fresh_podman(tmp.path());
    env.push(src_docker(e));
    std::fs::create_dir(tmp.path().join("x")).unwrap();
    // The same file under another spelling (relative, through `..`) is the same file.
    imgkit(&env)
        .current_dir(tmp.path())
        .args([
            "run",
            "--from",
            "all.tar",
            "--to",
            "podman",
            "--via",
            "./x/../all.tar",
            "-f",
            "all",
        ])
        .run()
        .code(2)
        .stderr_has("is the same file as --from");
    assert_eq!(std::fs::read(&all).unwrap(), before, "all.tar was touched");
    assert!(podman_images(&env).is_empty(), "podman loaded something");
    // --via over the file --to writes.
    let out = tmp.path().join("out.tar");
    imgkit(&env)
        .args(["run", "--from", "docker", "--to"])
        .arg(&out)
        .arg("--via")
        .arg(tmp.path().join(".").join("out.tar"))
        .run()
        .code(2)
        .stderr_has("is the same file as --to");
    assert!(!out.exists());
    // --from X --to X compares resolved paths too.
    imgkit(&env)
        .current_dir(tmp.path())
        .args(["run", "--from", "all.tar", "--to", "./all.tar", "-f", "all"])
        .run()
        .code(2)
        .stderr_has("--from and --to are both");
    assert_eq!(std::fs::read(&all).unwrap(), before);
}

#[test]
fn via_named_for_compression_gets_it_or_is_refused() {
    let e = need_engines!();
    let tmp = tempfile::tempdir().unwrap();
    let mut env = fresh_podman(tmp.path());
    env.push(src_docker(e));
    let filter = write_filter(
        tmp.path(),
        r#"select(.Repository == "seed/base") | .Repository + ":" + .Tag"#,
    );
    // An engine's stream is a plain tar: a .zst name is refused before anything runs.
    let via = tmp.path().join("kept.tar.zst");
    imgkit(&env)
        .args(["run", "--from", "docker", "--to", "podman", "-f"])
        .arg(&filter)
        .arg("--via")
        .arg(&via)
        .run()
        .code(2)
        .stderr_has("asks for zstd compression");
    assert!(!via.exists());
    assert!(podman_images(&env).is_empty());
    // Archive to compressed archive: the tee is that compressed stream, and verifies.
    let to = tmp.path().join("copy.tar.zst");
    imgkit(&env)
        .args(["run", "--from"])
        .arg(sample_path())
        .arg("--to")
        .arg(&to)
        .arg("--via")
        .arg(&via)
        .args(["-f", "all"])
        .run()
        .success();
    let bytes = std::fs::read(&via).unwrap();
    assert_eq!(&bytes[..4], &[0x28, 0xb5, 0x2f, 0xfd], "not zstd");
    Test::new().arg("verify").arg(&via).run().success();
}

/// docker holds `NAME:1` (the user's image X); the source holds `docker.io/NAME:1` (image Y).
/// `--rename 'docker.io/NAME:1=NAME-new:1'` must leave `NAME:1` on X (put back, and said).
#[test]
fn rename_keeps_the_names_the_target_had_docker_and_podman() {
    let e = need_engines!();
    let _guard = lock(&DOCKER_DST);
    let host = e.dst.var("DOCKER_HOST");
    empty_docker(host);
    let tmp = tempfile::tempdir().unwrap();
    let base = saved(e, "seed/base:1.0", tmp.path());
    let app = saved(e, "seed/app:1.0", tmp.path());
    let base_id = &e.src.seed["SEED_BASE_ID"];
    let app_id = &e.src.seed["SEED_APP_ID"];

    // docker target: X = seed/base, named safety/ab:1; podman source: Y = seed/app.
    docker_load(host, &base);
    output(docker(host).args(["tag", "seed/base:1.0", "safety/ab:1"]));
    output(docker(host).args(["rmi", "seed/base:1.0"]));
    let src = tempfile::tempdir().unwrap();
    let src_env = fresh_podman(src.path());
    podman_load(&src_env, &app);
    output(podman(&src_env).args(["tag", "localhost/seed/app:1.0", "docker.io/safety/ab:1"]));
    let filter = write_filter(
        tmp.path(),
        r#"select(.Repository == "safety/ab") | .Repository + ":" + .Tag"#,
    );
    let mut env = src_env.clone();
    env.push(dst_docker(e));
    imgkit(&env)
        .args(["run", "--from", "podman", "--to", "docker", "-f"])
        .arg(&filter)
        .args(["--rename", "docker.io/safety/ab:1=safety/ab-new:1"])
        .run()
        .success()
        .stderr_has("loading moved safety/ab:1 off image")
        .stderr_has("put it back");
    let got = docker_images(host);
    assert_eq!(got.get("safety/ab:1"), Some(base_id), "{got:?}");
    assert_eq!(got.get("safety/ab-new:1"), Some(app_id), "{got:?}");

    // podman target: T holds docker.io/safety/ab:1 = Y (seed/app); docker now holds
    // safety/ab:1 = X (seed/base), which is moved and renamed into T.
    let target = tempfile::tempdir().unwrap();
    let t_env = fresh_podman(target.path());
    podman_load(&t_env, &app);
    output(podman(&t_env).args(["tag", "localhost/seed/app:1.0", "docker.io/safety/ab:1"]));
    let mut env = t_env.clone();
    env.push(dst_docker(e));
    imgkit(&env)
        .args(["run", "--from", "docker", "--to", "podman", "-f"])
        .arg(&filter)
        .args(["--rename", "docker.io/safety/ab:1=safety/ab-moved:1"])
        .run()
        .success()
        .stderr_has("put it back");
    let got = podman_images(&t_env);
    assert_eq!(got.get("docker.io/safety/ab:1"), Some(app_id), "{got:?}");
    assert_eq!(
        got.get("docker.io/safety/ab-moved:1"),
        Some(base_id),
        "{got:?}"
    );
    empty_docker(host);
}

/// Natively the store commits only the new names, so the target's `safety/ab:1` is never touched;
/// through the ctr CLI the import overwrites it and imgkit puts it back.
#[test]
fn rename_keeps_the_names_the_target_had_ctr() {
    let e = need_engines!();
    rename_keeps_the_names_the_target_had_ctr_via(e, None);
    rename_keeps_the_names_the_target_had_ctr_via(e, Some(&ctr_cli()));
}

fn rename_keeps_the_names_the_target_had_ctr_via(e: &Engines, cli: Option<&(String, String)>) {
    let ns = "safety-rename";
    fresh_namespace(e, ns);
    let tmp = tempfile::tempdir().unwrap();
    let base = saved(e, "seed/base:1.0", tmp.path());
    let app = saved(e, "seed/app:1.0", tmp.path());
    let addr = e.dst.var("CONTAINERD_ADDRESS");
    ctr_import(e, ns, &base);
    output(ctr(addr, ns).args([
        "images",
        "tag",
        "docker.io/seed/base:1.0",
        "docker.io/safety/ab:1",
    ]));
    let before = ctr_targets(e, ns)["docker.io/safety/ab:1"].clone();
    let src = tempfile::tempdir().unwrap();
    let src_env = fresh_podman(src.path());
    podman_load(&src_env, &app);
    output(podman(&src_env).args(["tag", "localhost/seed/app:1.0", "docker.io/safety/ab:1"]));
    let filter = write_filter(
        tmp.path(),
        r#"select(.Repository == "safety/ab") | .Repository + ":" + .Tag"#,
    );
    let mut env = src_env.clone();
    env.push(dst_ctr(e));
    env.extend(cli.cloned());
    let r = imgkit(&env)
        .args([
            "run",
            "--from",
            "podman",
            "--to",
            &format!("ctr:{ns}"),
            "-f",
        ])
        .arg(&filter)
        .args(["--rename", "docker.io/safety/ab:1=safety/ab-new:1"])
        .run()
        .success();
    let r = if cli.is_some() {
        r.stderr_has("put it back")
    } else {
        r
    };
    let got = ctr_targets(e, ns);
    let how = if cli.is_some() { "ctr CLI" } else { "native" };
    assert_eq!(
        got.get("docker.io/safety/ab:1"),
        Some(&before),
        "{how}: {got:?}\n--- imgkit's stderr\n{}",
        r.stderr
    );
    assert!(
        got.contains_key("docker.io/safety/ab-new:1"),
        "{how}: {got:?}\n--- imgkit's stderr\n{}",
        r.stderr
    );
    assert_eq!(
        got.keys().filter(|k| k.contains("imgkit")).count(),
        0,
        "an alias was left: {got:?}"
    );
    fresh_namespace(e, ns);
}

// ---- never exit 0 on broken data -------------------------------------------------------------

/// `imgkit save -o - REF | head -c 1000`: a truncated archive, so exit 2 with a message (and
/// with --json an error object); `ls` into a closed stdout stays quiet.
#[test]
fn a_closed_stdout_during_a_save_is_an_error() {
    let e = need_engines!();
    for json in [false, true] {
        let mut cmd = Command::new(bin());
        cmd.env("IMGKIT_DOCKER_BIN", crate::util::docker_bin())
            .env("DOCKER_HOST", e.src.var("DOCKER_HOST"))
            .env("NO_COLOR", "1");
        if json {
            cmd.arg("--json");
        }
        let mut child = cmd
            .args(["save", "--engine", "docker", "-o", "-", "seed/base:1.0"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut out = child.stdout.take().unwrap();
        let mut first = [0u8; 1000];
        out.read_exact(&mut first).unwrap();
        drop(out);
        let mut stderr = String::new();
        child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut stderr)
            .unwrap();
        let status = child.wait().unwrap();
        assert_eq!(status.code(), Some(2), "json={json}: {stderr}");
        assert!(
            stderr.contains("stdout was closed before the archive was complete"),
            "{stderr}"
        );
        if json {
            let last = stderr.lines().last().unwrap();
            let v: serde_json::Value = serde_json::from_str(last).unwrap();
            assert!(
                v["error"].as_str().unwrap().contains("stdout was closed"),
                "{last}"
            );
        }
    }
    // A listing into a closed stdout: quiet, exit 0.
    let mut child = Command::new(bin())
        .env("IMGKIT_DOCKER_BIN", crate::util::docker_bin())
        .env("DOCKER_HOST", e.src.var("DOCKER_HOST"))
        .args(["ls", "--engine", "docker", "--all"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert_eq!(child.wait().unwrap().code(), Some(0), "{stderr}");
    assert_eq!(stderr, "");
}

/// `docker save` of seed/base with one byte of its layer flipped.
fn flipped(e: &Engines, dir: &Path) -> PathBuf {
    let good = saved(e, "seed/base:1.0", dir);
    let mut bytes = std::fs::read(&good).unwrap();
    let mut ar = tar::Archive::new(&bytes[..]);
    let (offset, size) = ar
        .entries()
        .unwrap()
        .map(Result::unwrap)
        .find(|en| en.path().unwrap().to_string_lossy().ends_with("layer.tar"))
        .map(|en| (en.raw_file_position(), en.size()))
        .expect("a layer");
    bytes[usize::try_from(offset + size / 2).unwrap()] ^= 1;
    let bad = dir.join("flipped.tar");
    std::fs::write(&bad, bytes).unwrap();
    Test::new().arg("verify").arg(&bad).run().code(2);
    bad
}

#[test]
fn load_checks_every_blob_and_the_target_commits_nothing_bad() {
    let e = need_engines!();
    let tmp = tempfile::tempdir().unwrap();
    let bad = flipped(e, tmp.path());
    // containerd: stored such an image before (a layer that does not match its config).
    let ns = "safety-flip";
    fresh_namespace(e, ns);
    imgkit(&[dst_ctr(e)])
        .args(["load", "--engine", "ctr", "-n", ns, "-i"])
        .arg(&bad)
        .run()
        .code(2)
        .stderr_has("has sha256")
        .stderr_has("kept nothing");
    assert_eq!(ctr_names(e, ns), Vec::<String>::new());
    // An archive larger than what imgkit holds back (1 MiB), docker ≤24's layout (layers are
    // not named by digest, so ctr cannot check them), flipped early: most of the stream has
    // reached ctr when the check fails; its end never does.
    let big = tmp.path().join("big.tar");
    let data: Vec<u8> = (0..4u32 << 20)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let layer = imgkit_archive::layer_tar(&[("big", &data[..])]);
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64", "os": "linux", "config": {},
        "rootfs": {"type": "layers", "diff_ids": [format!("sha256:{}", sha256(&layer))]},
    }))
    .unwrap();
    let config_name = format!("{}.json", sha256(&config));
    let manifest = serde_json::to_vec(&serde_json::json!([
        {"Config": config_name, "RepoTags": ["safety/big:1"], "Layers": ["layer/layer.tar"]}
    ]))
    .unwrap();
    let mut tar = tar::Builder::new(Vec::new());
    for (name, bytes) in [
        ("layer/layer.tar", &layer),
        (config_name.as_str(), &config),
        ("manifest.json", &manifest),
    ] {
        let mut h = tar::Header::new_ustar();
        h.set_size(bytes.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        tar.append_data(&mut h, name, &bytes[..]).unwrap();
    }
    let mut bytes = tar.into_inner().unwrap();
    bytes[2048] ^= 1;
    std::fs::write(&big, &bytes).unwrap();
    imgkit(&[dst_ctr(e)])
        .args(["load", "--engine", "ctr", "-n", ns, "-i"])
        .arg(&big)
        .run()
        .code(2)
        .stderr_has("has sha256")
        .stderr_has("kept nothing");
    assert_eq!(ctr_names(e, ns), Vec::<String>::new());
    // podman, from stdin too.
    let env = fresh_podman(tmp.path());
    imgkit(&env)
        .args(["load", "--engine", "podman"])
        .stdin(std::fs::read(&bad).unwrap())
        .run()
        .code(2)
        .stderr_has("has sha256");
    assert!(podman_images(&env).is_empty());
    // docker.
    let _guard = lock(&DOCKER_DST);
    let host = e.dst.var("DOCKER_HOST");
    empty_docker(host);
    imgkit(&[dst_docker(e)])
        .args(["load", "--engine", "docker", "-i"])
        .arg(&bad)
        .run()
        .code(2)
        .stderr_has("has sha256");
    assert!(docker_images(host).is_empty());
}

/// An OCI archive whose blobs all match their digests but whose config names another diff_id
/// for its (gzip) layer: ctr imports it, then fails to unpack and exits 1 with the image stored.
fn bad_diff_id_archive(path: &Path, name: &str) {
    let mut layer = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_ustar();
    h.set_size(6);
    h.set_mode(0o644);
    h.set_cksum();
    layer
        .append_data(&mut h, "hello.txt", &b"hello\n"[..])
        .unwrap();
    let layer = layer.into_inner().unwrap();
    let mut gz =
        imgkit_archive::Encoder::new(Vec::new(), imgkit_archive::Compression::Gzip).unwrap();
    gz.write_all(&layer).unwrap();
    let gz = gz.finish().unwrap();
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64", "os": "linux", "config": {},
        "rootfs": {"type": "layers", "diff_ids": [format!("sha256:{}", sha256(b"not the layer"))]},
    }))
    .unwrap();
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": format!("sha256:{}", sha256(&config)), "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": format!("sha256:{}", sha256(&gz)), "size": gz.len()}],
    }))
    .unwrap();
    let index = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": format!("sha256:{}", sha256(&manifest)), "size": manifest.len(),
            "annotations": {"io.containerd.image.name": name}}],
    }))
    .unwrap();
    let mut out = tar::Builder::new(std::fs::File::create(path).unwrap());
    let mut add = |n: &str, data: &[u8]| {
        let mut h = tar::Header::new_ustar();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        out.append_data(&mut h, n, data).unwrap();
    };
    add("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#);
    for blob in [&gz, &config, &manifest] {
        add(&format!("blobs/sha256/{}", sha256(blob)), blob);
    }
    add("index.json", &index);
    out.finish().unwrap();
}

#[test]
fn a_failed_ctr_load_leaves_nothing_and_names_the_real_command() {
    let e = need_engines!();
    let ns = "safety-failed";
    fresh_namespace(e, ns);
    let tmp = tempfile::tempdir().unwrap();
    let archive = tmp.path().join("baddiff.tar");
    bad_diff_id_archive(&archive, "docker.io/safety/baddiff:1");
    // The blobs are sound: only the engine finds the problem.
    Test::new().arg("verify").arg(&archive).run().success();
    // Through the ctr CLI (named): its failed import's leftovers removed.
    let r = imgkit(&[dst_ctr(e), ctr_cli()])
        .args(["load", "--engine", "ctr", "-n", ns, "-i"])
        .arg(&archive)
        .run()
        .code(2)
        .stderr_has("removed what it had left in ctr:safety-failed: docker.io/safety/baddiff:1")
        .stderr_has(&format!("--namespace {ns} images import -"));
    assert!(!r.stderr.contains("kept nothing"), "{}", r.stderr);
    assert!(!r.stderr.contains("ctr:safety-failed load"), "{}", r.stderr);
    assert_eq!(ctr_names(e, ns), Vec::<String>::new());
    // Natively (containerd's API): the diff ID is checked as the layer unpacks, before any
    // name is written.
    imgkit(&[dst_ctr(e)])
        .args(["load", "--engine", "ctr", "-n", ns, "-i"])
        .arg(&archive)
        .run()
        .code(2)
        .stderr_has("it unpacks to")
        .stderr_has("kept nothing");
    assert_eq!(ctr_names(e, ns), Vec::<String>::new());
    // The same through `run`, from an archive. Natively (containerd's API, the default when its
    // socket answers) the layer's diff ID is checked as it unpacks, before any name is written;
    // through the ctr CLI the failed import's leftovers are removed.
    imgkit(&[dst_ctr(e)])
        .args(["run", "--from"])
        .arg(&archive)
        .args(["--to", &format!("ctr:{ns}"), "-f", "all"])
        .run()
        .code(2)
        .stderr_has("it unpacks to")
        .stderr_has("imgkit explain IK171");
    assert_eq!(ctr_names(e, ns), Vec::<String>::new());
    imgkit(&[dst_ctr(e), ctr_cli()])
        .args(["run", "--from"])
        .arg(&archive)
        .args(["--to", &format!("ctr:{ns}"), "-f", "all"])
        .run()
        .code(2)
        .stderr_has("removed what it had left");
    assert_eq!(ctr_names(e, ns), Vec::<String>::new());
}

/// `IMGKIT_CTR_BIN`: `ctr:` through the ctr CLI even where containerd's socket answers.
fn ctr_cli() -> (String, String) {
    let bin = crate::util::on_path("ctr").expect("ctr on PATH");
    kv("IMGKIT_CTR_BIN", bin.to_str().unwrap())
}

#[test]
fn verify_checks_compression_trailers_and_checksums() {
    let plain = std::fs::read(sample_path()).unwrap();
    let packed = |c| {
        let mut enc = imgkit_archive::Encoder::new(Vec::new(), c).unwrap();
        enc.write_all(&plain).unwrap();
        enc.finish().unwrap()
    };
    let gz = packed(imgkit_archive::Compression::Gzip);
    let zst = packed(imgkit_archive::Compression::Zstd);
    let tmp = tempfile::tempdir().unwrap();
    let check = |name: &str, bytes: &[u8], ok: bool| {
        let f = tmp.path().join(name);
        std::fs::write(&f, bytes).unwrap();
        let r = Test::new().arg("verify").arg(&f).run();
        if ok {
            r.success();
        } else {
            r.code(2).stderr_has("compression of the file is damaged");
            // As a stream too.
            Test::new()
                .args(["verify", "-"])
                .stdin(bytes.to_vec())
                .run()
                .code(2);
        }
    };
    check("good.tar.gz", &gz, true);
    check("good.tar.zst", &zst, true);
    check("cut.tar.gz", &gz[..gz.len() - 4], false);
    let mut crc = gz.clone();
    let n = crc.len();
    crc[n - 8] ^= 1;
    check("crc.tar.gz", &crc, false);
    check("cut.tar.zst", &zst[..zst.len() - 4], false);
    let mut sum = zst.clone();
    let n = sum.len();
    sum[n - 2] ^= 1;
    check("sum.tar.zst", &sum, false);
}

// ---- selections ------------------------------------------------------------------------------

#[test]
fn untagged_images_are_selected_written_and_verified_by_id() {
    let e = need_engines!();
    let tmp = tempfile::tempdir().unwrap();
    // The shipped sample holds an untagged image.
    let x = tmp.path().join("x.tar");
    Test::new()
        .args(["run", "--from"])
        .arg(sample_path())
        .arg("--to")
        .arg(&x)
        .args(["-f", "all"])
        .run()
        .success()
        .stderr_has("5 verified by image ID");
    Test::new().arg("verify").arg(&x).run().success();
    Test::new()
        .args(["ls", "--all", "--from"])
        .arg(&x)
        .run()
        .success()
        .stdout_has("4a2be5982e10");
    // docker's untagged images into an archive, verified there by ID.
    let dangling_id = output(docker(e.src.var("DOCKER_HOST")).args([
        "images",
        "-q",
        "--filter",
        "dangling=true",
    ]));
    let dangling_id = dangling_id
        .lines()
        .next()
        .expect("a seeded untagged image")
        .to_owned();
    let d = tmp.path().join("d.tar");
    imgkit(&[src_docker(e)])
        .args(["run", "--from", "docker", "--to"])
        .arg(&d)
        .args(["-f", "dangling"])
        .run()
        .success()
        .stderr_has("verified by image ID");
    Test::new().arg("verify").arg(&d).run().success();
    Test::new()
        .args(["ls", "--all", "--from"])
        .arg(&d)
        .run()
        .success()
        .stdout_has(&dangling_id);
    // … and into podman, verified there by ID.
    let mut env = fresh_podman(tmp.path());
    env.push(src_docker(e));
    let untagged = write_filter(tmp.path(), r#"select(.Repository == "<none>") | .ID"#);
    imgkit(&env)
        .args(["run", "--from", "docker", "--to", "podman", "-f"])
        .arg(&untagged)
        .run()
        .success()
        .stderr_has("1 verified by image ID");
    // `save` takes an image ID as REF (docker writes it under no name).
    let one = tmp.path().join("one.tar");
    imgkit(&[src_docker(e)])
        .args(["save", "--engine", "docker", "-o"])
        .arg(&one)
        .arg(&dangling_id)
        .run()
        .success();
    Test::new()
        .args(["ls", "--all", "--from"])
        .arg(&one)
        .run()
        .success()
        .stdout_is(&format!("{dangling_id}\n"));
}

#[test]
fn an_odd_containerd_name_is_skipped_with_a_warning() {
    let e = need_engines!();
    let ns = "safety-evil";
    fresh_namespace(e, ns);
    let tmp = tempfile::tempdir().unwrap();
    let base = saved(e, "seed/base:1.0", tmp.path());
    ctr_import(e, ns, &base);
    let addr = e.dst.var("CONTAINERD_ADDRESS");
    output(ctr(addr, ns).args(["images", "tag", "docker.io/seed/base:1.0", "a/evil name:1"]));
    imgkit(&[dst_ctr(e)])
        .args(["ls", "--engine", "ctr", "-n", ns])
        .run()
        .success()
        .stdout_is("seed/base:1.0\n")
        .stderr_has("\"a/evil name:1\"");
    let r = imgkit(&[dst_ctr(e)])
        .args(["engines", "--engine", "ctr"])
        .run()
        .success()
        .stderr_has("\"a/evil name:1\"");
    let row = r.stdout.lines().find(|l| l.starts_with("ctr")).unwrap();
    assert!(row.contains(&format!("{ns}: 1")), "{}", r.stdout);
    let r = imgkit(&[dst_ctr(e)])
        .args(["--json", "engines", "--engine", "ctr"])
        .run()
        .success();
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    let warnings = v[0]["warnings"].to_string();
    assert!(warnings.contains("a/evil name:1"), "{}", r.stdout);
    assert!(v[0]["error"].is_null(), "{}", r.stdout);
    fresh_namespace(e, ns);
}

/// An archive whose manifest.json gives `dup/x:1` to two images and one image an invalid name.
fn duplicate_names_archive(path: &Path) {
    let image = |n: u8| imgkit_archive::NewImage {
        names: vec!["dup/x:1".parse().unwrap()],
        created: "2024-01-01T00:00:00Z".into(),
        layers: vec![imgkit_archive::layer_tar(&[("f", &[n][..])])],
        run_config: serde_json::json!({}),
    };
    let mut bytes = Vec::new();
    imgkit_archive::write_images(
        &[image(1), image(2)],
        &mut bytes,
        imgkit_archive::Compression::None,
    )
    .unwrap();
    // Rewrite manifest.json: an invalid RepoTag next to the second image's.
    let mut out = tar::Builder::new(std::fs::File::create(path).unwrap());
    let mut ar = tar::Archive::new(&bytes[..]);
    for entry in ar.entries().unwrap() {
        let mut entry = entry.unwrap();
        let name = entry.path().unwrap().to_string_lossy().into_owned();
        let mut data = Vec::new();
        entry.read_to_end(&mut data).unwrap();
        if name == "manifest.json" {
            let mut v: serde_json::Value = serde_json::from_slice(&data).unwrap();
            v[1]["RepoTags"]
                .as_array_mut()
                .unwrap()
                .push("Bad Name:1".into());
            data = serde_json::to_vec(&v).unwrap();
        }
        let mut h = entry.header().clone();
        h.set_size(data.len() as u64);
        h.set_cksum();
        out.append_data(&mut h, &name, &data[..]).unwrap();
    }
    out.finish().unwrap();
}

#[test]
fn an_archive_naming_two_images_alike_lists_both_and_verify_warns() {
    let tmp = tempfile::tempdir().unwrap();
    let dup = tmp.path().join("dup.tar");
    duplicate_names_archive(&dup);
    let r = Test::new()
        .args(["ls", "--all", "--format", "json", "--from"])
        .arg(&dup)
        .run()
        .success();
    let records: Vec<serde_json::Value> = r
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(records.len(), 2, "{}", r.stdout);
    assert!(
        records
            .iter()
            .all(|v| v["Repository"] == "dup/x" && v["Tag"] == "1")
    );
    assert_ne!(records[0]["ID"], records[1]["ID"]);
    assert!(r.stderr.contains("Bad Name:1"), "{}", r.stderr);
    Test::new()
        .arg("verify")
        .arg(&dup)
        .run()
        .success()
        .stdout_has("2 images, 2 names")
        .stderr_has("docker.io/dup/x:1 names 2 images")
        .stderr_has("\"Bad Name:1\"");
    let r = Test::new()
        .args(["--json", "verify"])
        .arg(&dup)
        .run()
        .success();
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["warnings"].as_array().unwrap().len(), 2, "{}", r.stdout);
}

// ---- one JSON document, -q quiet -------------------------------------------------------------

#[track_caller]
fn one_json_document(text: &str) -> serde_json::Value {
    let mut docs = serde_json::Deserializer::from_str(text).into_iter::<serde_json::Value>();
    let first = docs
        .next()
        .unwrap_or_else(|| panic!("no JSON document in {text:?}"))
        .unwrap();
    assert!(docs.next().is_none(), "more than one JSON document: {text}");
    first
}

#[test]
fn json_prints_exactly_one_document_and_quiet_prints_nothing() {
    let e = need_engines!();
    let tmp = tempfile::tempdir().unwrap();
    let none = write_filter(tmp.path(), "select(false)");
    // Every containerd namespace: one document with one entry per namespace.
    let env = vec![
        kv("CONTAINERD_ADDRESS", e.src.var("CONTAINERD_ADDRESS")),
        dst_docker(e),
    ];
    let r = imgkit(&env)
        .args([
            "--json",
            "run",
            "--from",
            "ctr:all",
            "--to",
            "docker",
            "--dry-run",
        ])
        .run()
        .success();
    let v = one_json_document(&r.stdout);
    assert!(
        v["namespaces"].as_array().unwrap().len() >= 2,
        "{}",
        r.stdout
    );
    let r = imgkit(&env)
        .args(["--json", "run", "--from", "ctr:all", "--to", "docker", "-f"])
        .arg(&none)
        .run()
        .code(1);
    one_json_document(&r.stdout);
    // An empty selection: one document, exit 1.
    let r = imgkit(&[src_docker(e)])
        .args(["--json", "run", "--from", "docker", "--to"])
        .arg(tmp.path().join("n.tar"))
        .arg("-f")
        .arg(&none)
        .run()
        .code(1);
    assert_eq!(one_json_document(&r.stdout)["images"], 0);
    let r = imgkit(&[src_docker(e)])
        .args(["--json", "save", "--engine", "docker", "-o"])
        .arg(tmp.path().join("n.tar"))
        .arg("-f")
        .arg(&none)
        .run()
        .code(1);
    assert_eq!(one_json_document(&r.stdout)["images"], 0);
    // A usage error is an error object too.
    let r = Test::new().args(["--json", "run", "--bogus"]).run().code(2);
    assert!(
        one_json_document(&r.stderr)["error"].is_string(),
        "{}",
        r.stderr
    );
    // -q: nothing but errors (podman's "Loaded image:" included).
    let base = saved(e, "seed/base:1.0", tmp.path());
    let env = fresh_podman(tmp.path());
    let r = imgkit(&env)
        .args(["-q", "load", "--engine", "podman", "-i"])
        .arg(&base)
        .run()
        .success();
    assert_eq!((r.stdout.as_str(), r.stderr.as_str()), ("", ""));
    assert_eq!(podman_images(&env).len(), 1);
}
