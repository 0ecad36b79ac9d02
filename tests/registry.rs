//! Registries as endpoints (`registry:HOST[:PORT][/PATH]`), end to end on real registries
//! (Debian's docker-registry 2.8 as `scripts/engines up DIR registry` starts it: a plain-HTTP
//! one, and a TLS + htpasswd one) and real engines: image IDs survive docker → registry →
//! podman / ctr:k8s.io, manifests survive archive → registry → archive byte for byte, a repeat
//! push sends no blob bytes, skopeo reads what we push and we pull what skopeo pushes, auth and
//! TLS fail clearly and work when configured, a registry killed mid-push fails naming the
//! image and blob and a re-run sends only what is missing, a damaged blob is refused on pull.
//!
//! Each test pushes under its own path in the shared registry (`registry:HOST/t-NAME-PID`) and keeps
//! its own cache dir (IMGKIT_CACHE_DIR), so tests running in parallel never see each other's
//! images. The fault tests start registries of their own.
#![cfg(unix)]

use std::io::Read as _;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::transfer::{
    K8S_DST, SELECT_TWO, ctr_images, docker_cli, empty_ctr, fresh_podman, imgkit, kv, lock, output,
    podman_images, src_docker, want_two, write_filter,
};
use crate::util::{on_path, skip, tool};

/// The plain-HTTP registry of the seeded set (`127.0.0.1:PORT`).
fn plain(e: &crate::transfer::Engines) -> String {
    e.src.var("IMGKIT_REGISTRY").to_owned()
}

/// A repository path of this test run (the shared registry outlives runs).
fn path(name: &str) -> String {
    format!("{name}-{}", std::process::id())
}

/// A fresh cache dir (the test's, not the user's).
fn cache(tmp: &Path) -> (String, String) {
    kv("IMGKIT_CACHE_DIR", &tmp.join("cache").display().to_string())
}

fn json(stdout: &str) -> serde_json::Value {
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

/// `docker (seeded) → registry:R/PATH` of the two selected images, as `--json` says it.
fn push_two(e: &crate::transfer::Engines, tmp: &Path, to: &str) -> serde_json::Value {
    let filter = write_filter(tmp, SELECT_TWO);
    let run = imgkit(&[src_docker(e), cache(tmp)])
        .args(["--json", "run", "--from", "docker", "--to", to, "-f"])
        .arg(&filter)
        .run()
        .success();
    json(&run.stdout)
}

#[test]
fn docker_to_registry_to_podman_and_ctr_k8s_keeps_the_image_ids() {
    let e = need_engines!();
    let tmp = tempfile::tempdir().unwrap();
    let r = plain(e);
    let to = format!("registry:{r}/{}", path("t-ids"));
    let doc = push_two(e, tmp.path(), &to);
    assert_eq!(doc["images"], 2, "{doc}");
    assert_eq!(doc["verified"], 2, "{doc}");
    // docker 20.10 saves uncompressed layers: gzip on the way, and the manifest made is said.
    assert!(doc["layers_compressed"].as_u64().unwrap() >= 2, "{doc}");
    assert_eq!(doc["manifests_made"].as_array().unwrap().len(), 2, "{doc}");

    // ls lists them with the seeded IDs.
    let ls = imgkit(&[])
        .args(["ls", "--all", "--format", "json", "--from", &to])
        .run()
        .success();
    let prefix = format!("{r}/{}/", path("t-ids"));
    for line in ls.stdout.lines() {
        let rec = json(line);
        let name = format!(
            "{}:{}",
            rec["Repository"].as_str().unwrap(),
            rec["Tag"].as_str().unwrap()
        );
        let want = &want_two(e, &prefix)[&name];
        assert!(
            want.contains(rec["ID"].as_str().unwrap()),
            "{rec} vs {want}"
        );
        assert!(
            rec["Digest"].as_str().unwrap().starts_with("sha256:"),
            "{rec}"
        );
    }
    assert_eq!(ls.stdout.lines().count(), 2, "{}", ls.stdout);

    // → podman (fresh storage).
    let env = fresh_podman(tmp.path());
    let pulled = imgkit(&env)
        .args([
            "--json", "run", "--to", "podman", "-f", "all", "--from", &to,
        ])
        .run()
        .success();
    assert_eq!(json(&pulled.stdout)["images"], 2, "{}", pulled.stdout);
    let got = podman_images(&env);
    for (name, id) in want_two(e, &prefix) {
        assert_eq!(got.get(&name), Some(&id), "{got:?}");
    }

    // → ctr:k8s.io of the destination set.
    let _k8s = lock(&K8S_DST);
    let addr = e.dst.var("CONTAINERD_ADDRESS");
    empty_ctr(addr, "k8s.io");
    imgkit(&[kv("CONTAINERD_ADDRESS", addr)])
        .args(["run", "--to", "ctr:k8s.io", "-f", "all", "--from", &to])
        .run()
        .success();
    let got = ctr_images(addr, "k8s.io");
    for (name, id) in want_two(e, &prefix) {
        assert_eq!(got.get(&name), Some(&id), "{got:?}");
    }
    empty_ctr(addr, "k8s.io");
}

#[test]
fn a_repeat_push_sends_no_blob_bytes() {
    let e = need_engines!();
    let tmp = tempfile::tempdir().unwrap();
    let to = format!("registry:{}/{}", plain(e), path("t-repeat"));
    let first = push_two(e, tmp.path(), &to);
    assert!(first["bytes_uploaded"].as_u64().unwrap() > 0, "{first}");
    let again = push_two(e, tmp.path(), &to);
    assert_eq!(again["bytes_uploaded"], 0, "{again}");
    assert_eq!(again["blobs_uploaded"], 0, "{again}");
    assert_eq!(again["verified"], 2, "{again}");
    // Both were found there by name and image ID before anything was saved from docker.
    assert_eq!(
        again["skipped"].as_array().map(Vec::len),
        Some(2),
        "{again}"
    );
    // --force pushes them anyway (and still sends nothing: the registry holds every blob).
    let filter = write_filter(tmp.path(), SELECT_TWO);
    let forced = imgkit(&[src_docker(e), cache(tmp.path())])
        .args([
            "--json", "run", "--force", "--from", "docker", "--to", &to, "-f",
        ])
        .arg(&filter)
        .run()
        .success();
    let forced = json(&forced.stdout);
    assert_eq!(forced["bytes_uploaded"], 0, "{forced}");
    assert_eq!(
        forced["blobs_skipped"].as_u64().map(|n| n > 0),
        Some(true),
        "{forced}"
    );
    // The summary a person reads says so too.
    let filter = write_filter(tmp.path(), SELECT_TWO);
    imgkit(&[src_docker(e), cache(tmp.path())])
        .args(["run", "--from", "docker", "--to", &to, "-f"])
        .arg(&filter)
        .run()
        .success()
        .stderr_has("0 blobs uploaded (0B)");
}

/// The manifest digests an archive's `index.json` names (the sample archive is OCI).
fn index_digests(tar_path: &Path) -> Vec<String> {
    let mut a = tar::Archive::new(std::fs::File::open(tar_path).unwrap());
    for entry in a.entries().unwrap() {
        let mut entry = entry.unwrap();
        if entry.path().unwrap().to_str() == Some("index.json") {
            let mut s = String::new();
            entry.read_to_string(&mut s).unwrap();
            let v = json(&s);
            let mut out: Vec<String> = v["manifests"]
                .as_array()
                .unwrap()
                .iter()
                .map(|m| m["digest"].as_str().unwrap().to_owned())
                .collect();
            out.sort();
            out.dedup();
            return out;
        }
    }
    panic!("no index.json in {}", tar_path.display());
}

#[test]
fn archive_to_registry_to_archive_keeps_the_manifests_byte_for_byte() {
    let e = need_engines!();
    let tmp = tempfile::tempdir().unwrap();
    let to = format!("registry:{}/{}", plain(e), path("t-bytes"));
    let sample = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/images.tar");
    let pushed = imgkit(&[cache(tmp.path())])
        .args([
            "--json",
            "run",
            "-f",
            "all",
            "--compress",
            "none",
            "--to",
            &to,
            "--from",
        ])
        .arg(&sample)
        .run()
        .success();
    let doc = json(&pushed.stdout);
    assert_eq!(doc["manifests_made"].as_array().unwrap().len(), 0, "{doc}");
    // Back into an archive file, and into a layout dir.
    let out = tmp.path().join("back.tar");
    imgkit(&[])
        .args(["run", "-f", "all", "--from", &to, "--to"])
        .arg(&out)
        .run()
        .success();
    let dir = tmp.path().join("back");
    imgkit(&[])
        .args(["run", "-f", "all", "--from", &to, "--to"])
        .arg(format!("{}/", dir.display()))
        .run()
        .success();
    // Every named manifest of the sample comes back with the same digest, so the same bytes.
    let named: Vec<String> = index_digests(&sample);
    let back = index_digests(&out);
    for d in &back {
        assert!(named.contains(d), "{d} was not in the sample: {named:?}");
    }
    assert_eq!(back.len(), 3, "{back:?}");
    for d in &back {
        let hex = d.strip_prefix("sha256:").unwrap();
        let bytes = std::fs::read(dir.join("blobs/sha256").join(hex)).unwrap();
        let again = sha256_hex(&bytes);
        assert_eq!(again, hex);
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    use std::fmt::Write as _;
    sha2::Sha256::digest(bytes)
        .iter()
        .fold(String::new(), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

#[test]
fn skopeo_reads_what_we_push_and_we_pull_what_skopeo_pushes() {
    let e = need_engines!();
    let Some(skopeo) = tool("skopeo") else { return };
    let tmp = tempfile::tempdir().unwrap();
    let r = plain(e);
    let sk = path("t-skopeo");
    let by = path("t-skopeo-by");
    let to = format!("registry:{r}/{sk}");
    push_two(e, tmp.path(), &to);
    let raw = output(Command::new(&skopeo).args([
        "inspect",
        "--tls-verify=false",
        "--raw",
        &format!("docker://{r}/{sk}/seed/app:1.0"),
    ]));
    let m = json(&raw);
    assert_eq!(
        m["config"]["digest"].as_str().unwrap(),
        e.src.seed["SEED_APP_ID"],
        "{m}"
    );
    // skopeo copies it on (registry → registry, its own client), and imgkit pulls that.
    output(Command::new(&skopeo).args([
        "copy",
        "--src-tls-verify=false",
        "--dest-tls-verify=false",
        &format!("docker://{r}/{sk}/seed/base:1.0"),
        &format!("docker://{r}/{by}/base:copied"),
    ]));
    let dir = tmp.path().join("pulled");
    imgkit(&[])
        .args([
            "run",
            "-f",
            "all",
            "--from",
            &format!("registry:{r}/{by}"),
            "--to",
        ])
        .arg(format!("{}/", dir.display()))
        .run()
        .success();
    let ls = imgkit(&[])
        .args(["ls", "--all", "--format", "json", "--from"])
        .arg(format!("{}/", dir.display()))
        .run()
        .success();
    let rec = json(ls.stdout.lines().next().unwrap());
    assert!(
        e.src.seed["SEED_BASE_ID"].contains(rec["ID"].as_str().unwrap()),
        "{rec}"
    );
}

#[test]
fn the_htpasswd_registry_refuses_without_credentials_and_accepts_a_config_json() {
    let e = need_engines!();
    let tmp = tempfile::tempdir().unwrap();
    let r = e.src.var("IMGKIT_REGISTRY_TLS").to_owned();
    let ca = e.src.var("IMGKIT_REGISTRY_CA").to_owned();
    let to = format!("registry:{r}/{}", path("t-auth"));
    let filter = write_filter(tmp.path(), SELECT_TWO);
    let empty = tmp.path().join("no-docker-config");
    std::fs::create_dir_all(&empty).unwrap();
    let refused = imgkit(&[
        src_docker(e),
        cache(tmp.path()),
        kv("DOCKER_CONFIG", &empty.display().to_string()),
    ])
    .args([
        "run",
        "--from",
        "docker",
        "--ca-cert",
        &ca,
        "--to",
        &to,
        "-f",
    ])
    .arg(&filter)
    .run()
    .code(2)
    .stderr_has(&format!("authentication required for {r}"))
    .stderr_has(&format!("docker login {r}"))
    .stderr_has("config.json does not exist");
    assert!(refused.stderr.contains("IK6"), "{}", refused.stderr);
    // Nothing was pushed.
    let cfg = e.src.var("IMGKIT_REGISTRY_DOCKER_CONFIG").to_owned();
    let listed = imgkit(&[kv("DOCKER_CONFIG", &cfg)])
        .args([
            "ls",
            "--all",
            "--format",
            "json",
            "--ca-cert",
            &ca,
            "--from",
            &to,
        ])
        .run();
    assert!(listed.stdout.trim().is_empty(), "{}", listed.stdout);
    // With docker's config.json it goes through.
    let ok = imgkit(&[src_docker(e), cache(tmp.path()), kv("DOCKER_CONFIG", &cfg)])
        .args([
            "--json",
            "run",
            "--from",
            "docker",
            "--ca-cert",
            &ca,
            "--to",
            &to,
            "-f",
        ])
        .arg(&filter)
        .run()
        .success();
    assert_eq!(json(&ok.stdout)["verified"], 2, "{}", ok.stdout);
}

#[test]
fn tls_works_with_the_ca_and_fails_clearly_without_it() {
    let e = need_engines!();
    let r = e.src.var("IMGKIT_REGISTRY_TLS").to_owned();
    let ca = e.src.var("IMGKIT_REGISTRY_CA").to_owned();
    let cfg = e.src.var("IMGKIT_REGISTRY_DOCKER_CONFIG").to_owned();
    let spec = format!("registry:{r}");
    imgkit(&[kv("DOCKER_CONFIG", &cfg)])
        .args(["ls", "--all", "--from", &spec])
        .run()
        .code(2)
        .stderr_has(&format!("TLS with {r} failed"))
        .stderr_has("--ca-cert");
    let ok = imgkit(&[kv("DOCKER_CONFIG", &cfg)])
        .args(["ls", "--all", "--ca-cert", &ca, "--from", &spec])
        .run();
    // 0: it lists images, 1: it holds none yet; either way it was reached.
    assert!(matches!(ok.status, Some(0 | 1)), "{}", ok.stderr);
}

/// A docker-registry of the test's own (for the fault tests), killed when dropped.
struct Own {
    child: Option<Child>,
    dir: tempfile::TempDir,
    port: u16,
    /// Whether the registry writes its access log (to `access.log` in its dir).
    logging: bool,
}

impl Own {
    fn start() -> Option<Own> {
        Self::start_with(false)
    }

    /// A registry writing every request it answers into [`Own::access_log`].
    fn start_logging() -> Option<Own> {
        Self::start_with(true)
    }

    fn access_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("access.log")).unwrap_or_default()
    }

    fn start_with(logging: bool) -> Option<Own> {
        if on_path("docker-registry").is_none() {
            skip("docker-registry is not on PATH (scripts/test installs it)");
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut own = Own {
            child: None,
            dir,
            port,
            logging,
        };
        own.restart();
        Some(own)
    }

    fn restart(&mut self) {
        let config = self.dir.path().join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog: {{level: error, accesslog: {{disabled: {}}}}}\nstorage:\n  filesystem: {{rootdirectory: \"{}\"}}\n  maintenance: {{uploadpurging: {{enabled: false}}}}\nhttp:\n  addr: 127.0.0.1:{}\n",
                !self.logging,
                self.dir.path().join("store").display(),
                self.port
            ),
        )
        .unwrap();
        // The access log goes to the registry's stdout.
        let stdout = if self.logging {
            Stdio::from(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(self.dir.path().join("access.log"))
                    .unwrap(),
            )
        } else {
            Stdio::null()
        };
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config)
            .stdout(stdout)
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "docker-registry did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn spec(&self, path: &str) -> String {
        format!("registry:127.0.0.1:{}/{path}", self.port)
    }

    /// Bytes in uploads the registry has under way.
    fn uploading(&self) -> u64 {
        fn walk(p: &Path) -> u64 {
            let Ok(rd) = std::fs::read_dir(p) else {
                return 0;
            };
            rd.filter_map(Result::ok)
                .map(|e| {
                    let p = e.path();
                    if p.is_dir() {
                        walk(&p)
                    } else if p.file_name().is_some_and(|n| n == "data") {
                        p.metadata().map_or(0, |m| m.len())
                    } else {
                        0
                    }
                })
                .sum()
        }
        walk(
            &self
                .dir
                .path()
                .join("store/docker/registry/v2/repositories"),
        )
    }
}

impl Drop for Own {
    fn drop(&mut self) {
        self.kill();
    }
}

/// An OCI archive of one image: a small layer and a big one of random bytes.
fn big_archive(dir: &Path, mib: usize) -> PathBuf {
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    let mut data = vec![0u8; mib << 20];
    for chunk in data.chunks_mut(8) {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let b = state.to_le_bytes();
        chunk.copy_from_slice(&b[..chunk.len()]);
    }
    let small = imgkit_archive::layer_tar(&[("etc/hello", b"hello\n")]);
    let big = imgkit_archive::layer_tar(&[("data/blob", &data)]);
    drop(data);
    let image = imgkit_archive::NewImage {
        names: vec!["fault/big:1".parse().unwrap()],
        created: "2026-11-29T00:00:00Z".into(),
        layers: vec![small, big],
        run_config: serde_json::json!({}),
    };
    let path = dir.join("big.tar");
    imgkit_archive::write_images(
        &[image],
        std::fs::File::create(&path).unwrap(),
        imgkit_archive::Compression::None,
    )
    .unwrap();
    path
}

#[test]
fn a_registry_killed_mid_push_fails_naming_image_and_blob_and_a_rerun_sends_only_the_rest() {
    let Some(mut reg) = Own::start() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let archive = big_archive(tmp.path(), 160);
    let to = reg.spec("t-kill");
    let mut child = Command::new(crate::util::bin())
        .args([
            "run",
            "-f",
            "all",
            "--compress",
            "none",
            "--to",
            &to,
            "--from",
        ])
        .arg(&archive)
        .env("IMGKIT_CACHE_DIR", tmp.path().join("cache"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Kill the registry once the big layer is on its way.
    let deadline = Instant::now() + Duration::from_mins(2);
    while reg.uploading() < 8 << 20 {
        assert!(Instant::now() < deadline, "no upload started");
        if let Ok(Some(_)) = child.try_wait() {
            panic!("imgkit finished before the registry was killed");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    reg.kill();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("fault/big:1"), "{stderr}");
    assert!(stderr.contains("pushing blob sha256:"), "{stderr}");
    // Back up on the same storage: the re-run sends only what the registry lacks (at least
    // the big layer, which was cut off; never what it holds).
    reg.restart();
    let again = imgkit(&[cache(tmp.path())])
        .args([
            "--json",
            "run",
            "-f",
            "all",
            "--compress",
            "none",
            "--to",
            &to,
            "--from",
        ])
        .arg(&archive)
        .run()
        .success();
    let doc = json(&again.stdout);
    let (up, skipped) = (
        doc["blobs_uploaded"].as_u64().unwrap(),
        doc["blobs_skipped"].as_u64().unwrap(),
    );
    assert_eq!(up + skipped, 3, "{doc}");
    assert!(skipped >= 1, "{doc}");
    let bytes = doc["bytes_uploaded"].as_u64().unwrap();
    assert!(bytes > 160 << 20 && bytes < (160 << 20) + 16384, "{doc}");
}

#[test]
fn a_blob_whose_bytes_do_not_match_its_digest_is_refused_on_pull() {
    let Some(reg) = Own::start() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let sample = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/images.tar");
    let to = reg.spec("t-damaged");
    imgkit(&[cache(tmp.path())])
        .args([
            "run",
            "-f",
            "all",
            "--compress",
            "none",
            "--to",
            &to,
            "--from",
        ])
        .arg(&sample)
        .run()
        .success();
    // Damage every layer in the registry's storage (same length, other bytes).
    let blobs = reg.dir.path().join("store/docker/registry/v2/blobs/sha256");
    let mut damaged = 0;
    for prefix in std::fs::read_dir(&blobs).unwrap() {
        for b in std::fs::read_dir(prefix.unwrap().path()).unwrap() {
            let data = b.unwrap().path().join("data");
            let mut bytes = std::fs::read(&data).unwrap();
            // Layers are tars (ustar at 257); manifests and configs are JSON.
            if bytes.len() > 512 && &bytes[257..262] == b"ustar" {
                let n = bytes.len();
                bytes[n - 700] ^= 0xff;
                std::fs::write(&data, bytes).unwrap();
                damaged += 1;
            }
        }
    }
    assert!(damaged > 0);
    let dir = tmp.path().join("out");
    let run = imgkit(&[])
        .args(["run", "-f", "all", "--from", &to, "--to"])
        .arg(format!("{}/", dir.display()))
        .run()
        .code(2)
        .stderr_has(&format!("from 127.0.0.1:{}/t-damaged/", reg.port))
        .stderr_has("arrived as")
        .stderr_has("IK658");
    assert!(!run.stderr.contains("IK404"), "{}", run.stderr);
    // Nothing was named in the target.
    let index = dir.join("index.json");
    assert!(
        !index.exists() || !std::fs::read_to_string(&index).unwrap().contains("sha256"),
        "an image was named"
    );
}

/// Writes `bytes` as a blob of the layout at `dir`; its descriptor.
fn put(dir: &Path, media_type: &str, bytes: &[u8]) -> serde_json::Value {
    let hex = sha256_hex(bytes);
    std::fs::write(dir.join("blobs/sha256").join(&hex), bytes).unwrap();
    serde_json::json!({"mediaType": media_type, "digest": format!("sha256:{hex}"), "size": bytes.len()})
}

/// An OCI layout holding one two-platform image (linux/amd64, linux/arm64, each with a real
/// layer) named `name`; the index digest and the two manifest digests.
fn two_platform_layout(dir: &Path, name: &str) -> (String, Vec<String>) {
    std::fs::create_dir_all(dir.join("blobs/sha256")).unwrap();
    std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    let mut entries = Vec::new();
    let mut manifests = Vec::new();
    for arch in ["amd64", "arm64"] {
        let layer = imgkit_archive::layer_tar(&[("etc/arch", format!("{arch}\n").as_bytes())]);
        let diff = format!("sha256:{}", sha256_hex(&layer));
        let layer = put(dir, "application/vnd.oci.image.layer.v1.tar", &layer);
        let config = serde_json::json!({
            "architecture": arch, "os": "linux", "created": "2026-11-29T00:00:00Z",
            "config": {}, "rootfs": {"type": "layers", "diff_ids": [diff]},
        });
        let config = put(
            dir,
            "application/vnd.oci.image.config.v1+json",
            &serde_json::to_vec(&config).unwrap(),
        );
        let manifest = serde_json::json!({
            "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": config, "layers": [layer],
        });
        let mut m = put(
            dir,
            "application/vnd.oci.image.manifest.v1+json",
            &serde_json::to_vec(&manifest).unwrap(),
        );
        manifests.push(m["digest"].as_str().unwrap().to_owned());
        m["platform"] = serde_json::json!({"architecture": arch, "os": "linux"});
        entries.push(m);
    }
    let index = serde_json::json!({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": entries,
    });
    let mut top = put(
        dir,
        "application/vnd.oci.image.index.v1+json",
        &serde_json::to_vec(&index).unwrap(),
    );
    let digest = top["digest"].as_str().unwrap().to_owned();
    top["annotations"] = serde_json::json!({
        "org.opencontainers.image.ref.name": name, "io.containerd.image.name": name,
    });
    let layout = serde_json::json!({"schemaVersion": 2, "manifests": [top]});
    std::fs::write(dir.join("index.json"), serde_json::to_vec(&layout).unwrap()).unwrap();
    (digest, manifests)
}

#[test]
fn a_two_platform_index_goes_to_the_registry_and_back_with_the_same_digests() {
    let e = need_engines!();
    let tmp = tempfile::tempdir().unwrap();
    let r = plain(e);
    let src = tmp.path().join("multi");
    let (index, manifests) = two_platform_layout(&src, "docker.io/multi/app:1");
    let to = format!("registry:{r}/{}", path("t-index"));
    imgkit(&[cache(tmp.path())])
        .args(["run", "-f", "all", "--to", &to, "--from"])
        .arg(format!("{}/", src.display()))
        .run()
        .success();
    // The registry holds the index under the tag, byte for byte (skopeo reads it).
    if let Some(skopeo) = tool("skopeo") {
        let raw = output(Command::new(&skopeo).args([
            "inspect",
            "--tls-verify=false",
            "--raw",
            &format!("docker://{r}/{}/multi/app:1", path("t-index")),
        ]));
        assert_eq!(format!("sha256:{}", sha256_hex(raw.as_bytes())), index);
    }
    // The listing shows both platforms; back into a layout, the same index and manifests.
    let ls = imgkit(&[])
        .args(["ls", "--all", "--format", "json", "--from", &to])
        .run()
        .success();
    let rec = json(ls.stdout.lines().next().unwrap());
    assert_eq!(rec["Digest"], index.as_str(), "{rec}");
    assert_eq!(rec["Platforms"], "linux/amd64,linux/arm64", "{rec}");
    let back = tmp.path().join("back");
    imgkit(&[])
        .args(["run", "-f", "all", "--from", &to, "--to"])
        .arg(format!("{}/", back.display()))
        .run()
        .success();
    let v = json(&std::fs::read_to_string(back.join("index.json")).unwrap());
    assert_eq!(v["manifests"][0]["digest"], index.as_str(), "{v}");
    for d in manifests.iter().chain([&index]) {
        let hex = d.strip_prefix("sha256:").unwrap();
        assert!(back.join("blobs/sha256").join(hex).is_file(), "{d} missing");
    }
    // Into an engine: one platform, the host's or --platform's, with that platform's image ID.
    let config_of = |manifest: &str| -> String {
        let hex = manifest.strip_prefix("sha256:").unwrap();
        let m = json(&std::fs::read_to_string(src.join("blobs/sha256").join(hex)).unwrap());
        m["config"]["digest"].as_str().unwrap().to_owned()
    };
    // The layout lists amd64 first, arm64 second.
    let host = usize::from(cfg!(target_arch = "aarch64"));
    let runs = [
        (None, host),
        (Some("linux/arm64"), 1),
        (Some("linux/amd64"), 0),
    ];
    for (i, (asked, slot)) in runs.into_iter().enumerate() {
        let env = crate::transfer::fresh_podman(&tmp.path().join(format!("podman{i}")));
        let mut t = imgkit(&env).args(["run", "-f", "all", "--from", &to, "--to", "podman"]);
        if let Some(p) = asked {
            t = t.args(["--platform", p]);
        }
        t.run().success().stderr_has("left out");
        let images = crate::transfer::podman_images(&env);
        assert_eq!(
            images.get(&format!("{r}/{}/multi/app:1", path("t-index"))),
            Some(&config_of(&manifests[slot])),
            "{asked:?}: {images:?}"
        );
    }
}

/// The digests of the blobs a registry's access log shows fetched (`GET /v2/…/blobs/DIGEST`).
fn blob_gets(log: &str) -> Vec<String> {
    log.lines()
        .filter_map(|l| {
            let req = l.split('"').nth(1)?;
            let path = req.strip_prefix("GET ")?;
            let (_, digest) = path.split_once("/blobs/")?;
            Some(digest.split([' ', '?']).next()?.to_owned())
        })
        .collect()
}

#[test]
fn ls_fetches_each_config_once_however_many_tags_name_it() {
    let Some(reg) = Own::start_logging() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let sample = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/images.tar");
    // The same images under three paths: every config digest is named three times.
    for p in ["a", "b", "c"] {
        imgkit(&[cache(tmp.path())])
            .args(["run", "-f", "all", "--to", &reg.spec(p), "--from"])
            .arg(&sample)
            .run()
            .success();
    }
    let before = reg.access_log().len();
    let ls = imgkit(&[])
        .args(["ls", "--all", "--format", "json", "--from"])
        .arg(format!("registry:127.0.0.1:{}", reg.port))
        .run()
        .success();
    let ids: std::collections::BTreeSet<String> = ls
        .stdout
        .lines()
        .map(|l| json(l)["ID"].as_str().unwrap().to_owned())
        .collect();
    let tags = ls.stdout.lines().count();
    assert!(tags >= 3 && tags.is_multiple_of(3), "{}", ls.stdout);
    // The log is written as requests finish: wait for the last one.
    let deadline = Instant::now() + Duration::from_secs(10);
    let gets = loop {
        let log = reg.access_log();
        let gets = blob_gets(&log[before.min(log.len())..]);
        if gets.len() >= ids.len() || Instant::now() > deadline {
            break gets;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let mut seen = std::collections::BTreeSet::new();
    for d in &gets {
        assert!(seen.insert(d), "config {d} fetched twice: {gets:#?}");
    }
    assert_eq!(seen.len(), ids.len(), "{gets:#?} for IDs {ids:?}");
}

#[test]
fn a_pull_into_an_archive_streams_from_the_registry_without_a_temporary_directory() {
    let Some(reg) = Own::start() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let sample = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/images.tar");
    let to = reg.spec("t-stream-pull");
    imgkit(&[cache(tmp.path())])
        .args([
            "run",
            "-f",
            "all",
            "--compress",
            "none",
            "--to",
            &to,
            "--from",
        ])
        .arg(&sample)
        .run()
        .success();
    // No temporary directory can be made: the registry's blobs go straight into the archive
    // (run's store route), as they would into an engine's load.
    let out = tmp.path().join("back.tar");
    let pulled = imgkit(&[kv(
        "TMPDIR",
        &tmp.path().join("absent").display().to_string(),
    )])
    .args(["--json", "run", "-f", "all", "--from", &to, "--to"])
    .arg(&out)
    .run()
    .success();
    let doc = json(&pulled.stdout);
    // Four names of three images.
    assert_eq!(doc["images"], 4, "{doc}");
    assert_eq!(doc["verified"], 4, "{doc}");
    // The manifests come back byte for byte (the same digests as the sample's).
    let named = index_digests(&sample);
    let back = index_digests(&out);
    assert_eq!(back.len(), 3, "{back:?}");
    for d in &back {
        assert!(named.contains(d), "{d} was not in the sample: {named:?}");
    }
}

#[test]
fn a_push_from_an_engine_streams_its_save_and_a_failed_save_names_no_temporary_archive() {
    let e = need_engines!();
    let Some(reg) = Own::start() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let filter = write_filter(tmp.path(), SELECT_TWO);
    let to = reg.spec("t-stream-push");
    let fake = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/fake-engine");
    // The save dies after 64 KiB: the error is the save's, on its way into the registry (the
    // old route saved into a temporary archive first and named that instead).
    let failed = imgkit(&[src_docker(e), cache(tmp.path())])
        .env("IMGKIT_DOCKER_BIN", &fake)
        .env("IMGKIT_DOCKER_VIA", "cli")
        .env("IMGKIT_FAKE_REAL", docker_cli())
        .env("IMGKIT_FAKE_FAULT", "save-dies")
        .args(["run", "--from", "docker", "--to", &to, "-f"])
        .arg(&filter)
        .run()
        .code(2)
        .stderr_has("save died mid-stream")
        .stderr_has(&to);
    assert!(!failed.stderr.contains("incoming.tar"), "{}", failed.stderr);
    let all = format!("registry:127.0.0.1:{}", reg.port);
    imgkit(&[])
        .args(["ls", "--all", "--from", &all])
        .run()
        .code(1);
    // Whole, the save streams in: both images, verified by ID, layers compressed on the way.
    let doc = push_two(e, tmp.path(), &to);
    assert_eq!(doc["images"], 2, "{doc}");
    assert_eq!(doc["verified"], 2, "{doc}");
    assert!(doc["layers_compressed"].as_u64().unwrap() >= 2, "{doc}");
    assert!(doc["bytes_uploaded"].as_u64().unwrap() > 0, "{doc}");
    let prefix = format!("127.0.0.1:{}/t-stream-push/", reg.port);
    let ls = imgkit(&[])
        .args(["ls", "--all", "--format", "json", "--from", &all])
        .run()
        .success();
    let want = want_two(e, &prefix);
    for line in ls.stdout.lines() {
        let rec = json(line);
        let name = format!(
            "{}:{}",
            rec["Repository"].as_str().unwrap(),
            rec["Tag"].as_str().unwrap()
        );
        assert!(
            want[&name].contains(rec["ID"].as_str().unwrap()),
            "{rec} vs {want:?}"
        );
    }
    assert_eq!(ls.stdout.lines().count(), 2, "{}", ls.stdout);
}

/// Where the first `layer.tar` of docker's save of `refs` ends in the stream (its data and
/// the tar padding after it).
fn end_of_first_layer(e: &crate::transfer::Engines, refs: &[&str]) -> u64 {
    let out = Command::new(docker_cli())
        .env("DOCKER_HOST", e.src.var("DOCKER_HOST"))
        .arg("save")
        .args(refs)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut archive = tar::Archive::new(&out.stdout[..]);
    for entry in archive.entries().unwrap() {
        let entry = entry.unwrap();
        let name = entry.path().unwrap().display().to_string();
        if name.ends_with("/layer.tar") {
            let end = entry.raw_file_position() + entry.size();
            return end.div_ceil(512) * 512;
        }
    }
    panic!("docker's save of {refs:?} has no layer.tar (docker ≥25 saves OCI archives)");
}

/// Blobs the registry of `own` holds (its storage's `blobs/sha256/../<hex>/data`).
fn stored_blobs(own: &Own) -> usize {
    let root = own.dir.path().join("store/docker/registry/v2/blobs/sha256");
    let Ok(prefixes) = std::fs::read_dir(&root) else {
        return 0;
    };
    prefixes
        .flatten()
        .flat_map(|p| std::fs::read_dir(p.path()).into_iter().flatten().flatten())
        .filter(|b| b.path().join("data").is_file())
        .count()
}

#[test]
fn a_push_from_an_engine_uploads_each_layer_while_the_save_goes_on() {
    let e = need_engines!();
    let Some(reg) = Own::start() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let filter = write_filter(tmp.path(), SELECT_TWO);
    let to = reg.spec("t-early");
    let hold = end_of_first_layer(e, &["seed/app:1.0", "seed/base:1.0"]);
    let release = tmp.path().join("release");
    let fake = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/fake-engine");
    let (cache_key, cache_dir) = cache(tmp.path());
    // The save stops after its first layer until the test says so: that layer must reach the
    // registry meanwhile (before, every upload waited for the save's end, where the manifests
    // tell which repository each layer goes to).
    let push = Command::new(crate::util::bin())
        .env("DOCKER_HOST", e.src.var("DOCKER_HOST"))
        .env(cache_key, cache_dir)
        .env("IMGKIT_DOCKER_BIN", &fake)
        .env("IMGKIT_DOCKER_VIA", "cli")
        .env("IMGKIT_FAKE_REAL", docker_cli())
        .env("IMGKIT_FAKE_FAULT", "save-holds")
        .env("IMGKIT_FAKE_HOLD_BYTES", hold.to_string())
        .env("IMGKIT_FAKE_RELEASE", &release)
        .args(["--json", "run", "--from", "docker", "--to", &to, "-f"])
        .arg(&filter)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_mins(1);
    let mut during = 0;
    while Instant::now() < deadline {
        during = stored_blobs(&reg);
        if during > 0 {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    std::fs::write(&release, b"").unwrap();
    let out = push.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        during > 0,
        "the registry held no blob while the save was held after its first layer: {stderr}"
    );
    // The summary means what it meant: all of it went over the wire, nothing was there.
    let doc = json(&stdout);
    assert_eq!(doc["verified"], 2, "{doc}");
    assert_eq!(doc["blobs_skipped"], 0, "{doc}");
    assert!(doc["bytes_uploaded"].as_u64().unwrap() > 0, "{doc}");
    // What the registry stores: the blobs uploaded and the two manifests made.
    assert_eq!(
        doc["blobs_uploaded"].as_u64().unwrap() as usize + 2,
        stored_blobs(&reg),
        "{doc}"
    );
    // A repeat (forced through the save) sends nothing, and says every blob was there.
    let again = imgkit(&[src_docker(e), cache(tmp.path())])
        .args([
            "--json", "run", "--force", "--from", "docker", "--to", &to, "-f",
        ])
        .arg(&filter)
        .run()
        .success();
    let again = json(&again.stdout);
    assert_eq!(again["bytes_uploaded"], 0, "{again}");
    assert_eq!(again["blobs_mounted"], 0, "{again}");
    assert!(again["blobs_skipped"].as_u64().unwrap() > 0, "{again}");
}

/// A docker credential helper (`docker-credential-NAME`, the docker protocol: `get` reads the
/// server URL on stdin, prints `{"ServerURL","Username","Secret"}`) in a directory of its
/// own, answering for `host` only; each server URL it is asked about goes to `asked.log`.
fn credential_helper(dir: &Path, name: &str, host: &str, user: &str, secret: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt as _;
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let log = dir.join("asked.log");
    let script = format!(
        r#"#!/bin/sh
[ "$1" = get ] || {{ echo "unsupported: $1" >&2; exit 1; }}
read -r url
printf '%s %s\n' "{name}" "$url" >>'{log}'
if [ "$url" = '{host}' ]; then
  printf '{{"ServerURL":"%s","Username":"{user}","Secret":"{secret}"}}\n' "$url"
  exit 0
fi
echo "credentials not found in native keychain"
exit 1
"#,
        log = log.display(),
    );
    let helper = bin.join(format!("docker-credential-{name}"));
    std::fs::write(&helper, script).unwrap();
    std::fs::set_permissions(&helper, std::fs::Permissions::from_mode(0o755)).unwrap();
    bin
}

/// PATH with `dir` first.
fn path_with(dir: &Path) -> String {
    let rest = std::env::var("PATH").unwrap_or_default();
    format!("{}:{rest}", dir.display())
}

#[test]
fn credentials_come_from_cred_helpers_and_creds_store_through_a_real_helper() {
    let e = need_engines!();
    let tmp = tempfile::tempdir().unwrap();
    let r = e.src.var("IMGKIT_REGISTRY_TLS").to_owned();
    let ca = e.src.var("IMGKIT_REGISTRY_CA").to_owned();
    let user = e.src.var("IMGKIT_REGISTRY_USER").to_owned();
    let password = e.src.var("IMGKIT_REGISTRY_PASSWORD").to_owned();
    let to = format!("registry:{r}/{}", path("t-helpers"));
    let filter = write_filter(tmp.path(), SELECT_TWO);
    let bin = credential_helper(tmp.path(), "imgkit-keys", &r, &user, &password);
    let asked = tmp.path().join("asked.log");
    // credHelpers names the helper for this host; the auths entry (a wrong password) is not
    // what is used.
    let helpers = tmp.path().join("helpers");
    std::fs::create_dir_all(&helpers).unwrap();
    let wrong = format!("{user}:not-the-password");
    std::fs::write(
        helpers.join("config.json"),
        serde_json::json!({
            "credHelpers": {&r: "imgkit-keys"},
            "auths": {&r: {"auth": base64_of(wrong.as_bytes())}},
        })
        .to_string(),
    )
    .unwrap();
    let pushed = imgkit(&[
        src_docker(e),
        cache(tmp.path()),
        kv("DOCKER_CONFIG", &helpers.display().to_string()),
        kv("PATH", &path_with(&bin)),
    ])
    .args([
        "--json",
        "run",
        "--from",
        "docker",
        "--ca-cert",
        &ca,
        "--to",
        &to,
        "-f",
    ])
    .arg(&filter)
    .run()
    .success();
    assert_eq!(json(&pushed.stdout)["verified"], 2, "{}", pushed.stdout);
    let log = std::fs::read_to_string(&asked).unwrap_or_default();
    assert!(log.contains(&format!("imgkit-keys {r}")), "{log}");
    // credsStore: the helper for every host, here reading what was pushed.
    let store = tmp.path().join("store");
    std::fs::create_dir_all(&store).unwrap();
    std::fs::write(
        store.join("config.json"),
        serde_json::json!({"credsStore": "imgkit-keys"}).to_string(),
    )
    .unwrap();
    std::fs::remove_file(&asked).unwrap();
    let listed = imgkit(&[
        kv("DOCKER_CONFIG", &store.display().to_string()),
        kv("PATH", &path_with(&bin)),
    ])
    .args([
        "ls",
        "--all",
        "--format",
        "refs",
        "--ca-cert",
        &ca,
        "--from",
        &to,
    ])
    .run()
    .success();
    assert_eq!(listed.stdout.lines().count(), 2, "{}", listed.stdout);
    let log = std::fs::read_to_string(&asked).unwrap_or_default();
    assert!(log.contains(&format!("imgkit-keys {r}")), "{log}");
    // A helper that has nothing for the host: refused, naming the helper that was asked.
    let other = credential_helper(
        &tmp.path().join("o"),
        "imgkit-none",
        "elsewhere:1",
        "u",
        "p",
    );
    std::fs::write(
        store.join("config.json"),
        serde_json::json!({"credsStore": "imgkit-none"}).to_string(),
    )
    .unwrap();
    imgkit(&[
        kv("DOCKER_CONFIG", &store.display().to_string()),
        kv("PATH", &path_with(&other)),
    ])
    .args(["ls", "--all", "--ca-cert", &ca, "--from", &to])
    .run()
    .code(2)
    .stderr_has(&format!("authentication required for {r}"))
    .stderr_has("docker-credential-imgkit-none has none");
}

fn base64_of(bytes: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for c in bytes.chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        for (i, shift) in [18, 12, 6, 0].into_iter().enumerate() {
            out.push(if i <= c.len() {
                A[(n >> shift) as usize & 63] as char
            } else {
                '='
            });
        }
    }
    out
}

/// An OCI layout of one image `name` whose manifest has media type `media_type` (otherwise an
/// OCI image manifest: a config and one small layer).
fn layout_of_kind(dir: &Path, name: &str, media_type: &str) {
    std::fs::create_dir_all(dir.join("blobs/sha256")).unwrap();
    std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    let layer = imgkit_archive::layer_tar(&[("etc/kind", b"odd\n")]);
    let diff = format!("sha256:{}", sha256_hex(&layer));
    let layer = put(dir, "application/vnd.oci.image.layer.v1.tar", &layer);
    let config = serde_json::json!({
        "architecture": "amd64", "os": "linux", "created": "2026-11-29T00:00:00Z",
        "config": {}, "rootfs": {"type": "layers", "diff_ids": [diff]},
    });
    let config = put(
        dir,
        "application/vnd.oci.image.config.v1+json",
        &serde_json::to_vec(&config).unwrap(),
    );
    let manifest = serde_json::json!({
        "schemaVersion": 2, "mediaType": media_type, "config": config, "layers": [layer],
    });
    let mut top = put(dir, media_type, &serde_json::to_vec(&manifest).unwrap());
    top["annotations"] = serde_json::json!({"org.opencontainers.image.ref.name": name});
    let layout = serde_json::json!({"schemaVersion": 2, "manifests": [top]});
    std::fs::write(dir.join("index.json"), serde_json::to_vec(&layout).unwrap()).unwrap();
}

#[test]
fn a_manifest_media_type_the_registry_refuses_is_named_with_why_and_nothing_is_tagged() {
    let e = need_engines!();
    let tmp = tempfile::tempdir().unwrap();
    let r = plain(e);
    let repo = path("t-kind");
    // The OCI 1.1 release candidates' artifact manifest, withdrawn since: distribution 2.8
    // does not take it.
    let kind = "application/vnd.oci.artifact.manifest.v1+json";
    let dir = tmp.path().join("layout");
    layout_of_kind(&dir, "odd/kind:1", kind);
    let refused = imgkit(&[cache(tmp.path())])
        .args([
            "run",
            "-f",
            "all",
            "--to",
            &format!("registry:{r}/{repo}"),
            "--from",
        ])
        .arg(format!("{}/", dir.display()))
        .run()
        .code(2)
        .stderr_has(&format!(
            "{r} rejected the manifest of {r}/{repo}/odd/kind:1 ({kind})"
        ))
        .stderr_has(&format!("{kind} is not a manifest type registries take"))
        .stderr_has("IK659");
    assert!(!refused.stderr.contains("({})"), "{}", refused.stderr);
    // Nothing is tagged: the repository has no tag.
    let listed = imgkit(&[])
        .args([
            "ls",
            "--all",
            "--format",
            "refs",
            "--from",
            &format!("registry:{r}"),
        ])
        .run();
    assert!(
        !listed.stdout.contains(&format!("{repo}/odd/kind")),
        "{}",
        listed.stdout
    );
}

#[test]
fn a_local_podman_pulls_from_the_registry_itself_and_the_stream_is_the_fallback() {
    let e = need_engines!();
    if on_path("podman").is_none() {
        skip("podman is not on PATH");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let r = plain(e);
    let to = format!("registry:{r}/{}", path("t-podpull"));
    push_two(e, tmp.path(), &to);
    let prefix = format!("{r}/{}/", path("t-podpull"));
    // podman pulls (-v says so, and shows its command line); the image IDs are checked.
    let env = fresh_podman(&tmp.path().join("pull"));
    let pulled = imgkit(&env)
        .args([
            "-v", "--json", "run", "--to", "podman", "-f", "all", "--from", &to,
        ])
        .run()
        .success()
        .stderr_has("podman pulls from the registry itself");
    assert!(
        pulled
            .stderr
            .lines()
            .any(|l| l.starts_with("+ ") && l.contains(" pull --quiet --tls-verify=false ")),
        "{}",
        pulled.stderr
    );
    assert_eq!(json(&pulled.stdout)["verified"], 2, "{}", pulled.stdout);
    let got = podman_images(&env);
    for (name, id) in want_two(e, &prefix) {
        assert_eq!(got.get(&name), Some(&id), "{got:?}");
    }
    // IMGKIT_REGISTRY_VIA=stream: the images stream into podman load, with the same IDs.
    let env = fresh_podman(&tmp.path().join("stream"));
    let streamed = imgkit(&env)
        .env("IMGKIT_REGISTRY_VIA", "stream")
        .args(["-v", "run", "--to", "podman", "-f", "all", "--from", &to])
        .run()
        .success()
        .stderr_has("streamed into podman load (IMGKIT_REGISTRY_VIA=stream)");
    assert!(
        !streamed.stderr.contains(" pull --quiet"),
        "{}",
        streamed.stderr
    );
    let got = podman_images(&env);
    for (name, id) in want_two(e, &prefix) {
        assert_eq!(got.get(&name), Some(&id), "{got:?}");
    }
}

#[test]
fn podman_pulls_from_the_tls_htpasswd_registry_with_the_ca_and_config_json_imgkit_uses() {
    let e = need_engines!();
    if on_path("podman").is_none() {
        skip("podman is not on PATH");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let r = e.src.var("IMGKIT_REGISTRY_TLS").to_owned();
    let ca = e.src.var("IMGKIT_REGISTRY_CA").to_owned();
    let cfg = e.src.var("IMGKIT_REGISTRY_DOCKER_CONFIG").to_owned();
    let to = format!("registry:{r}/{}", path("t-podtls"));
    let filter = write_filter(tmp.path(), SELECT_TWO);
    imgkit(&[src_docker(e), cache(tmp.path()), kv("DOCKER_CONFIG", &cfg)])
        .args([
            "run",
            "--from",
            "docker",
            "--ca-cert",
            &ca,
            "--to",
            &to,
            "-f",
        ])
        .arg(&filter)
        .run()
        .success();
    let prefix = format!("{r}/{}/", path("t-podtls"));
    let mut env = fresh_podman(&tmp.path().join("pull"));
    env.push(kv("DOCKER_CONFIG", &cfg));
    let pulled = imgkit(&env)
        .args([
            "-v",
            "run",
            "--to",
            "podman",
            "-f",
            "all",
            "--ca-cert",
            &ca,
            "--from",
            &to,
        ])
        .run()
        .success()
        .stderr_has("podman pulls from the registry itself")
        .stderr_has(" pull --quiet --tls-verify=true --cert-dir ")
        .stderr_has(&format!("--authfile {cfg}/config.json"));
    let _ = pulled;
    let got = podman_images(&env);
    for (name, id) in want_two(e, &prefix) {
        assert_eq!(got.get(&name), Some(&id), "{got:?}");
    }
    // A credential from credsStore (which podman does not read): the stream route.
    let user = e.src.var("IMGKIT_REGISTRY_USER").to_owned();
    let password = e.src.var("IMGKIT_REGISTRY_PASSWORD").to_owned();
    let bin = credential_helper(tmp.path(), "imgkit-keys", &r, &user, &password);
    let store = tmp.path().join("store");
    std::fs::create_dir_all(&store).unwrap();
    std::fs::write(
        store.join("config.json"),
        serde_json::json!({"credsStore": "imgkit-keys"}).to_string(),
    )
    .unwrap();
    let mut env = fresh_podman(&tmp.path().join("stream"));
    env.push(kv("DOCKER_CONFIG", &store.display().to_string()));
    env.push(kv("PATH", &path_with(&bin)));
    imgkit(&env)
        .args([
            "-v",
            "run",
            "--to",
            "podman",
            "-f",
            "all",
            "--ca-cert",
            &ca,
            "--from",
            &to,
        ])
        .run()
        .success()
        .stderr_has("streamed into podman load (the credential comes from credsStore");
    let got = podman_images(&env);
    for (name, id) in want_two(e, &prefix) {
        assert_eq!(got.get(&name), Some(&id), "{got:?}");
    }
}

#[test]
fn a_registry_killed_while_the_save_goes_on_fails_naming_image_and_blob_and_a_rerun_sends_the_rest()
{
    let e = need_engines!();
    let Some(mut reg) = Own::start() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let filter = write_filter(tmp.path(), SELECT_TWO);
    let to = reg.spec("t-ekill");
    let hold = end_of_first_layer(e, &["seed/app:1.0", "seed/base:1.0"]);
    let release = tmp.path().join("release");
    let fake = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/fake-engine");
    let (cache_key, cache_dir) = cache(tmp.path());
    let push = Command::new(crate::util::bin())
        .env("DOCKER_HOST", e.src.var("DOCKER_HOST"))
        .env(&cache_key, &cache_dir)
        .env("IMGKIT_DOCKER_BIN", &fake)
        .env("IMGKIT_DOCKER_VIA", "cli")
        .env("IMGKIT_FAKE_REAL", docker_cli())
        .env("IMGKIT_FAKE_FAULT", "save-holds")
        .env("IMGKIT_FAKE_HOLD_BYTES", hold.to_string())
        .env("IMGKIT_FAKE_RELEASE", &release)
        .args(["run", "--from", "docker", "--to", &to, "-f"])
        .arg(&filter)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The first layer is in; the registry dies; the save goes on.
    let deadline = Instant::now() + Duration::from_mins(1);
    while stored_blobs(&reg) == 0 {
        assert!(Instant::now() < deadline, "no layer reached the registry");
        std::thread::sleep(Duration::from_millis(50));
    }
    reg.kill();
    std::fs::write(&release, b"").unwrap();
    let out = push.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("pushing blob sha256:"), "{stderr}");
    assert!(
        stderr.contains("/t-ekill/seed/app:1.0") || stderr.contains("/t-ekill/seed/base:1.0"),
        "{stderr}"
    );
    // Back up on the same storage: the re-run sends the rest, not the layer it holds.
    reg.restart();
    let again = imgkit(&[src_docker(e), cache(tmp.path())])
        .args(["--json", "run", "--from", "docker", "--to", &to, "-f"])
        .arg(&filter)
        .run()
        .success();
    let doc = json(&again.stdout);
    assert_eq!(doc["verified"], 2, "{doc}");
    assert!(doc["blobs_skipped"].as_u64().unwrap() >= 1, "{doc}");
}

/// `--rename` and a filter's `as` into a registry from an engine: the images go in under their
/// new names only, verified by ID; a new name that is not a reference is refused before the
/// save (it used to panic: the names were never checked on this route); a rename from an
/// archive is refused, not dropped; and "all there already" is never decided on the old names.
#[test]
fn a_push_from_docker_takes_renames_and_refuses_a_bad_new_name_before_the_save() {
    let e = need_engines!();
    let tmp = tempfile::tempdir().unwrap();
    let repo = path("t-rename");
    let to = format!("registry:{}/{repo}", plain(e));
    let listed = || {
        // Under this test's path only (other tests' repositories come and go meanwhile).
        let ls = imgkit(&[])
            .args(["ls", "--all", "--format", "json", "--from", &to])
            .run();
        let mut names: Vec<(String, String)> = ls
            .stdout
            .lines()
            .map(json)
            .map(|r| {
                let repository = r["Repository"].as_str().unwrap();
                let own = repository
                    .split_once(&format!("{repo}/"))
                    .map_or(repository, |(_, own)| own);
                (
                    format!("{own}:{}", r["Tag"].as_str().unwrap()),
                    r["ID"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        names.sort();
        names
    };
    // A bad new name from the filter: refused, exit 2, before anything is sent.
    let bad = write_filter(
        tmp.path(),
        r#"select(.Repository == "seed/app" and .Tag == "1.0") | {"ref": (.Repository + ":" + .Tag), "as": ["NOT A NAME!!"]}"#,
    );
    imgkit(&[src_docker(e), cache(tmp.path())])
        .args(["run", "--from", "docker", "--to", &to, "-f"])
        .arg(&bad)
        .run()
        .code(2)
        .stderr_has("is not an image reference");
    assert_eq!(listed(), Vec::<(String, String)>::new());
    // The two seeded images pushed once under their own names...
    let first = push_two(e, tmp.path(), &to);
    assert_eq!(first["verified"], 2, "{first}");
    // ...then again with --rename: "all there already" must not be decided on the old names.
    let filter = write_filter(tmp.path(), SELECT_TWO);
    let run = imgkit(&[src_docker(e), cache(tmp.path())])
        .args([
            "--json",
            "run",
            "--from",
            "docker",
            "--to",
            &to,
            "--rename",
            "seed/(.*)=team/$1",
            "-f",
        ])
        .arg(&filter)
        .run()
        .success();
    let doc = json(&run.stdout);
    assert_eq!(doc["images"], 2, "{doc}");
    assert_eq!(doc["verified"], 2, "{doc}");
    let ids = want_two(e, "");
    let want: Vec<(String, String)> = {
        let mut w: Vec<(String, String)> = ids
            .iter()
            .flat_map(|(name, id)| {
                let renamed = name.replace("seed/", "team/");
                [(name.clone(), id.clone()), (renamed, id.clone())]
            })
            .collect();
        w.sort();
        w
    };
    let got = listed();
    assert_eq!(got.len(), want.len(), "{got:?} vs {want:?}");
    for ((gn, gid), (wn, wid)) in got.iter().zip(&want) {
        assert_eq!(gn, wn, "{got:?}");
        assert!(
            wid.contains(gid.as_str()) || gid.contains(wid.as_str()),
            "{gn}: {gid} vs {wid}"
        );
    }
    // The filter's `as` works the same way, one image under two new names.
    let two = write_filter(
        tmp.path(),
        r#"select(.Repository == "seed/app" and .Tag == "1.0") | {"ref": (.Repository + ":" + .Tag), "as": ["crew/app:1", "crew/app:stable"]}"#,
    );
    imgkit(&[src_docker(e), cache(tmp.path())])
        .args(["run", "--from", "docker", "--to", &to, "-f"])
        .arg(&two)
        .run()
        .success();
    let got = listed();
    for tag in ["crew/app:1", "crew/app:stable"] {
        assert!(got.iter().any(|(n, _)| n == tag), "{tag} missing: {got:?}");
    }
    // From an archive, a rename is refused (IK661), not dropped.
    let sample = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/images.tar");
    imgkit(&[cache(tmp.path())])
        .args(["run", "--from"])
        .arg(&sample)
        .args(["--to", &to, "--rename", "imgkit.example/(.*)=other/$1"])
        .run()
        .code(2)
        .stderr_has("--rename is not applied yet from");
}

/// A push from docker of a big selection runs two saves at once (docker writes a whole save to
/// a temporary directory before its first byte; `IMGKIT_PUSH_SAVES=2` forces the split for
/// these small images): every image arrives once, under its name, verified by ID, and the
/// summary adds up both halves; `IMGKIT_PUSH_SAVES=1` keeps one save.
#[test]
fn a_push_from_docker_in_two_saves_at_once_pushes_every_image_verified() {
    let e = need_engines!();
    let tmp = tempfile::tempdir().unwrap();
    let filter = write_filter(tmp.path(), SELECT_TWO);
    let fake = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/fake-engine");
    let saves = |log: &Path| {
        std::fs::read_to_string(log)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.split_whitespace().any(|w| w == "save"))
            .count()
    };
    for (parts, want_saves) in [("2", 2), ("1", 1)] {
        let repo = path(&format!("t-two-saves-{parts}"));
        let to = format!("registry:{}/{repo}", plain(e));
        let log = tmp.path().join(format!("argv-{parts}.log"));
        // A cache of its own each time (else the second mounts what the first sent).
        let run = imgkit(&[src_docker(e), cache(&tmp.path().join(parts))])
            .env("IMGKIT_DOCKER_BIN", &fake)
            .env("IMGKIT_DOCKER_VIA", "cli")
            .env("IMGKIT_FAKE_REAL", docker_cli())
            .env("IMGKIT_FAKE_LOG", &log)
            .env("IMGKIT_PUSH_SAVES", parts)
            .args(["--json", "run", "--from", "docker", "--to", &to, "-f"])
            .arg(&filter)
            .run()
            .success();
        assert_eq!(saves(&log), want_saves, "IMGKIT_PUSH_SAVES={parts}");
        let doc = json(&run.stdout);
        assert_eq!(doc["images"], 2, "{doc}");
        assert_eq!(doc["verified"], 2, "{doc}");
        assert_eq!(doc["copied"].as_array().map(Vec::len), Some(2), "{doc}");
        assert!(doc["bytes_uploaded"].as_u64().unwrap() > 0, "{doc}");
        let ls = imgkit(&[])
            .args(["ls", "--all", "--format", "json", "--from", &to])
            .run()
            .success();
        let want = want_two(e, "");
        let mut seen = 0;
        for line in ls.stdout.lines() {
            let rec = json(line);
            let repository = rec["Repository"].as_str().unwrap();
            let own = repository
                .split_once(&format!("{repo}/"))
                .map_or(repository, |(_, own)| own);
            let name = format!("{own}:{}", rec["Tag"].as_str().unwrap());
            let id = rec["ID"].as_str().unwrap();
            assert!(
                want[&name].contains(id) || id.contains(want[&name].as_str()),
                "{name}: {id} vs {want:?}"
            );
            seen += 1;
        }
        assert_eq!(seen, 2, "{}", ls.stdout);
    }
}
