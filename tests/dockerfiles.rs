//! docker → an image store without `docker save`: layers rebuilt from dockerd's own files
//! (`crates/imgkit-docker-files`), end to end on real engines (`scripts/engines`: dockerd 20.10
//! with the vfs driver, containerd 1.6). The route gives the save route's bytes (same manifest
//! digests), never asks dockerd for a save, reads nothing the store holds, and a layer changed
//! behind dockerd's back fails the run naming it, with nothing named in the target.
#![cfg(unix)]

use std::path::{Path, PathBuf};

use crate::containerd::{base_and_top, check, json_of, manifest_of};
use crate::transfer::{
    DOCKER_DST, K8S_DST, ctr, docker, empty_ctr, empty_docker, fresh_podman, imgkit, kv, lock,
    output, podman_images,
};
use crate::util::Test;

/// The destination set's dockerd (and containerd's k8s.io, when `k8s`) emptied and held for
/// one test, with an image `top` on a base of `mib` MiB (`containerd::base_and_top`); emptied
/// again at the end.
struct Fresh {
    host: &'static str,
    addr: &'static str,
    tmp: tempfile::TempDir,
    base: String,
    top: String,
    k8s: bool,
    _locks: Vec<std::sync::MutexGuard<'static, ()>>,
}

impl Fresh {
    fn new(e: &'static crate::transfer::Engines, k8s: bool, mib: usize) -> Self {
        let mut locks = vec![lock(&DOCKER_DST)];
        let (host, addr) = (e.dst.var("DOCKER_HOST"), e.dst.var("CONTAINERD_ADDRESS"));
        empty_docker(host);
        if k8s {
            locks.push(lock(&K8S_DST));
            empty_ctr(addr, "k8s.io");
        }
        let tmp = tempfile::tempdir().unwrap();
        let (base, top) = base_and_top(e, tmp.path(), mib);
        Self {
            host,
            addr,
            tmp,
            base,
            top,
            k8s,
            _locks: locks,
        }
    }

    /// DOCKER_HOST (and CONTAINERD_ADDRESS) for imgkit.
    fn env(&self) -> Vec<(String, String)> {
        let mut env = vec![kv("DOCKER_HOST", self.host)];
        if self.k8s {
            env.push(kv("CONTAINERD_ADDRESS", self.addr));
        }
        env
    }
}

impl Drop for Fresh {
    fn drop(&mut self) {
        if std::thread::panicking() {
            return;
        }
        if self.k8s {
            empty_ctr(self.addr, "k8s.io");
        }
        empty_docker(self.host);
    }
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
    let f = Fresh::new(e, true, 4);
    let (addr, tmp) = (f.addr, f.tmp.path());
    let top = &f.top;
    let env = f.env();
    let run = |t: Test| t.arg("-f").arg(only(tmp, top)).run();
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
    let (lf, ls) = (tmp.join("files"), tmp.join("save"));
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
        .env("IMGKIT_DOCKER_READ", "stream")
        .args(["-v", "run", "--from", "docker", "--to"])
        .arg(&to_ls))
    .success()
    .stderr_has("docker save (IMGKIT_DOCKER_READ=stream)");
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
}

#[test]
fn a_held_base_is_never_read_and_json_counts_it_skipped() {
    let e = need_engines!();
    let f = Fresh::new(e, true, 8);
    let (host, addr, tmp) = (f.host, f.addr, f.tmp.path());
    let (base, top) = (&f.base, &f.top);
    let env = f.env();
    imgkit(&env)
        .args(["-q", "run", "--from", "docker", "--to", "ctr:k8s.io", "-f"])
        .arg(only(tmp, base))
        .run()
        .success();
    // The base's files made unreadable: a run that read them would fail.
    let r = while_zeroed(&layer_file(host, base, "blob"), || {
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
            .arg(only(tmp, top))
            .run()
    })
    .success();
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
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// `run()` while `file` holds zeros (its size kept): a run that read it would fail on its
/// digest. The file's content is back afterwards.
fn while_zeroed<T>(file: &Path, run: impl FnOnce() -> T) -> T {
    let saved = std::fs::read(file).unwrap();
    std::fs::write(file, vec![0u8; saved.len()]).unwrap();
    let out = run();
    std::fs::write(file, &saved).unwrap();
    out
}

/// The file `name` of `image`'s last layer in dockerd's store (vfs or overlay2).
fn layer_file(host: &str, image: &str, name: &str) -> PathBuf {
    let info = output(docker(host).args(["info", "--format", "{{.DockerRootDir}} {{.Driver}}"]));
    let (root, driver) = info.trim().rsplit_once(' ').unwrap();
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
        chain = format!("sha256:{}", hex(&h));
    }
    let hex = chain.trim_start_matches("sha256:");
    let root = Path::new(root);
    let db = root
        .join("image")
        .join(driver)
        .join("layerdb/sha256")
        .join(hex);
    let cache = std::fs::read_to_string(db.join("cache-id")).unwrap();
    let cache = cache.trim();
    match driver {
        "vfs" => root.join("vfs/dir").join(cache).join(name),
        "overlay2" => root.join("overlay2").join(cache).join("diff").join(name),
        other => panic!("dockerd's storage driver {other} is not one these tests know"),
    }
}

#[test]
fn a_layer_changed_behind_dockers_back_fails_naming_it_and_names_nothing() {
    let e = need_engines!();
    let f = Fresh::new(e, true, 2);
    let (host, addr, tmp) = (f.host, f.addr, f.tmp.path());
    let (_, top) = (&f.base, &f.top);
    let env = f.env();
    let blob = layer_file(host, "imgkit-t/base:1", "blob");
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
    let out = tmp.join("out");
    let mut to = out.clone().into_os_string();
    to.push("/");
    imgkit(&env)
        .args(["run", "--from", "docker", "--to"])
        .arg(&to)
        .arg("-f")
        .arg(only(tmp, top))
        .run()
        .code(2)
        .stderr_has(layer)
        .stderr_has("docker's store at")
        .stderr_has("is damaged");
    assert!(!out.exists(), "a layout directory was left behind");
    imgkit(&env)
        .args(["run", "--from", "docker", "--to", "ctr:k8s.io", "-f"])
        .arg(only(tmp, top))
        .run()
        .code(2)
        .stderr_has(layer);
    let names = output(ctr(addr, "k8s.io").args(["images", "ls", "-q"]));
    assert!(names.trim().is_empty(), "containerd names {names}");
}

/// Kubernetes nodes hold their bases as containerd pulled them: compressed, with the
/// `containerd.io/uncompressed` label its unpacker sets. An image on such a base goes in
/// without the base: its manifest names the compressed blob containerd holds (the config, and
/// so the image ID, unchanged), the base is not sent, and the image is complete and unpacked.
#[test]
fn a_base_containerd_pulled_compressed_is_named_as_it_is_not_sent() {
    let e = need_engines!();
    let f = Fresh::new(e, true, 4);
    let (host, addr, tmp) = (f.host, f.addr, f.tmp.path());
    let (base, top) = (&f.base, &f.top);
    let registry = e.src.var("IMGKIT_REGISTRY");
    let repo = format!("cmp{}", std::process::id());
    let env = f.env();
    imgkit(&env)
        .args(["-q", "run", "--from", "docker", "--to"])
        .arg(format!("registry:{registry}/{repo}"))
        .arg("-f")
        .arg(only(tmp, base))
        .run()
        .success();
    output(
        ctr(addr, "k8s.io")
            .args(["images", "pull", "--plain-http"])
            .arg(format!("{registry}/{repo}/{base}")),
    );
    let diff = output(docker(host).args([
        "image",
        "inspect",
        "--format",
        "{{index .RootFS.Layers 0}}",
        base,
    ]));
    let diff = diff.trim();
    let held = |d: &str| {
        output(ctr(addr, "k8s.io").args(["content", "ls", "-q"]))
            .lines()
            .any(|l| l.trim() == d)
    };
    assert!(
        !held(diff),
        "containerd holds the base uncompressed already"
    );
    let r = imgkit(&env)
        .args([
            "--json",
            "-v",
            "run",
            "--from",
            "docker",
            "--to",
            "ctr:k8s.io",
            "-f",
        ])
        .arg(only(tmp, top))
        .run()
        .success()
        .stderr_has("holds compressed");
    let doc = json_of(&r.stdout);
    assert!(
        doc["bytes"].as_u64().unwrap_or(u64::MAX) < 1 << 20,
        "the base was sent: {doc}"
    );
    assert!(!held(diff), "the base was written uncompressed");
    let name = format!("docker.io/{top}");
    assert_eq!(check(addr, "k8s.io", &name), (true, true), "{name}");
}

/// Layers with everything a tar-split record has to rebuild exactly: files deleted in a later
/// layer (whiteouts), a directory removed and made again, hard links, a symlink, a FIFO, a
/// setuid bit, an empty file, a name that is not UTF-8, a file grown in a later layer, a 3 MiB
/// file (each step its own RUN, in exec form: no shell).
/// The files route writes the same bytes as the save route, blob for blob.
#[test]
fn odd_layers_are_rebuilt_byte_for_byte() {
    use std::os::unix::ffi::OsStrExt as _;
    let e = need_engines!();
    let busybox = Path::new("/bin/busybox");
    if !busybox.is_file() {
        crate::util::skip("no /bin/busybox (Debian's busybox-static) to build layers with");
        return;
    }
    let _d = lock(&DOCKER_DST);
    let host = e.dst.var("DOCKER_HOST");
    let tmp = tempfile::tempdir().unwrap();
    let tmp = tmp.path();
    let base = tmp.join("base");
    for d in ["d/sub", "opq"] {
        std::fs::create_dir_all(base.join(d)).unwrap();
    }
    std::fs::write(base.join("d/a"), b"a\n").unwrap();
    std::fs::write(base.join("d/sub/b"), b"b\n").unwrap();
    std::fs::write(base.join("gone"), b"gone\n").unwrap();
    std::fs::write(base.join("opq/x"), b"x\n").unwrap();
    std::fs::write(base.join("empty"), b"").unwrap();
    std::fs::write(
        base.join(std::ffi::OsStr::from_bytes(b"n\xe9ame")),
        b"latin-1\n",
    )
    .unwrap();
    std::os::unix::fs::symlink("d/a", base.join("link")).unwrap();
    std::fs::hard_link(base.join("d/a"), base.join("hard")).unwrap();
    std::fs::copy(busybox, base.join("busybox")).unwrap();
    let tar = tmp.join("base.tar");
    output(
        std::process::Command::new("tar")
            .arg("-C")
            .arg(&base)
            .arg("-cf")
            .arg(&tar)
            .arg("."),
    );
    output(
        docker(host)
            .arg("import")
            .arg(&tar)
            .arg("imgkit-t/odd-base:1"),
    );
    let ctx = tmp.join("ctx");
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(ctx.join("y"), b"new\n").unwrap();
    std::fs::write(
        ctx.join("Dockerfile"),
        r#"FROM imgkit-t/odd-base:1
RUN ["/busybox", "rm", "/gone", "/d/sub/b"]
RUN ["/busybox", "rm", "-rf", "/opq"]
RUN ["/busybox", "mkdir", "/opq"]
COPY y /opq/y
RUN ["/busybox", "sed", "-i", "$ a more", "/d/a"]
RUN ["/busybox", "ln", "/d/a", "/d/a2"]
RUN ["/busybox", "mkfifo", "/fifo"]
RUN ["/busybox", "chmod", "4755", "/d/a2"]
RUN ["/busybox", "dd", "if=/dev/zero", "of=/big", "bs=1M", "count=3"]
COPY Dockerfile /copied
"#,
    )
    .unwrap();
    output(
        docker(host)
            .env("DOCKER_BUILDKIT", "0")
            .args(["build", "-q", "-t", "imgkit-t/odd:1"])
            .arg(&ctx),
    );
    let env = vec![kv("DOCKER_HOST", host)];
    let (lf, ls) = (tmp.join("files"), tmp.join("save"));
    let slash = |p: &Path| {
        let mut s = p.as_os_str().to_owned();
        s.push("/");
        s
    };
    imgkit(&env)
        .args(["-v", "run", "--from", "docker", "--to"])
        .arg(slash(&lf))
        .arg("-f")
        .arg(only(tmp, "imgkit-t/odd:1"))
        .run()
        .success()
        .stderr_has(FILES);
    imgkit(&env)
        .env("IMGKIT_DOCKER_READ", "stream")
        .args(["-q", "run", "--from", "docker", "--to"])
        .arg(slash(&ls))
        .arg("-f")
        .arg(only(tmp, "imgkit-t/odd:1"))
        .run()
        .success();
    let (a, b) = (tree(&lf), tree(&ls));
    assert!(
        a.len() >= 4 + 8,
        "index, oci-layout, manifest, config and a layer per step: {}",
        a.len()
    );
    assert!(a == b, "the two routes wrote different bytes");
    output(docker(host).args(["rmi", "imgkit-t/odd:1", "imgkit-t/odd-base:1"]));
}

/// docker → podman: the tar podman loads is written from docker's files (no save asked of
/// dockerd), the image verified by ID; `--via` keeps the save stream (the file it tees is
/// docker's own); a layer changed behind dockerd's back fails the run naming it, and podman
/// keeps nothing of the load.
#[test]
fn docker_to_podman_loads_a_tar_written_from_dockers_files() {
    let e = need_engines!();
    let f = Fresh::new(e, false, 2);
    let (host, tmp) = (f.host, f.tmp.path());
    let (_, top) = (&f.base, &f.top);
    let mut env = vec![kv("DOCKER_HOST", host)];
    env.extend(fresh_podman(tmp));
    let filter = only(tmp, top);
    let r = imgkit(&env)
        .args(["-v", "run", "--from", "docker", "--to", "podman", "-f"])
        .arg(&filter)
        .run()
        .success()
        .stderr_has(FILES)
        .stderr_has("1 verified by image ID");
    assert!(!r.stderr.contains(SAVE_REQUEST), "{}", r.stderr);
    let id = output(docker(host).args(["image", "inspect", "--format", "{{.Id}}", top]));
    assert_eq!(
        podman_images(&env).get(&format!("docker.io/{top}")),
        Some(&id.trim().to_owned())
    );
    let via = tmp.join("via.tar");
    let r = imgkit(&env)
        .args([
            "-v", "run", "--force", "--from", "docker", "--to", "podman", "--via",
        ])
        .arg(&via)
        .arg("-f")
        .arg(&filter)
        .run()
        .success();
    assert!(
        r.stderr.contains(SAVE_REQUEST) && via.is_file(),
        "{}",
        r.stderr
    );
    let env: Vec<(String, String)> = vec![kv("DOCKER_HOST", host)]
        .into_iter()
        .chain(fresh_podman(&tmp.join("again")))
        .collect();
    let blob = layer_file(host, "imgkit-t/base:1", "blob");
    let mut bytes = std::fs::read(&blob).unwrap();
    bytes[4096] ^= 0xff;
    std::fs::write(&blob, &bytes).unwrap();
    imgkit(&env)
        .args(["run", "--from", "docker", "--to", "podman", "-f"])
        .arg(&filter)
        .run()
        .code(2)
        .stderr_has("is damaged");
    assert!(podman_images(&env).is_empty(), "{:?}", podman_images(&env));
}

/// docker → a registry: no save asked of dockerd; the images go in verified by ID; a second
/// image on a base the registry holds reads nothing of the base (its file zeroed during the
/// run: a push that read it would fail on its digest).
#[test]
fn docker_to_a_registry_pushes_from_dockers_files_reading_only_what_it_lacks() {
    let e = need_engines!();
    let f = Fresh::new(e, false, 4);
    let (host, tmp) = (f.host, f.tmp.path());
    let (base, top) = (&f.base, &f.top);
    let to = format!(
        "registry:{}/files-{}",
        e.src.var("IMGKIT_REGISTRY"),
        std::process::id()
    );
    let env = vec![
        kv("DOCKER_HOST", host),
        kv("IMGKIT_CACHE_DIR", &tmp.join("cache").display().to_string()),
    ];
    let r = imgkit(&env)
        .args(["-v", "--json", "run", "--from", "docker", "--to", &to, "-f"])
        .arg(only(tmp, base))
        .run()
        .success()
        .stderr_has(FILES);
    assert!(!r.stderr.contains(SAVE_REQUEST), "{}", r.stderr);
    assert_eq!(json_of(&r.stdout)["verified"], 1, "{}", r.stdout);
    let r = while_zeroed(&layer_file(host, base, "blob"), || {
        imgkit(&env)
            .args(["--json", "run", "--from", "docker", "--to", &to, "-f"])
            .arg(only(tmp, top))
            .run()
    });
    let doc = json_of(&r.success().stdout);
    assert_eq!(doc["verified"], 1, "{doc}");
    assert!(
        doc["bytes_uploaded"].as_u64().unwrap_or(u64::MAX) < 1 << 20,
        "the base was sent again: {doc}"
    );
}

/// `run --dry-run` says where the run would read: docker's own files (no save line), or the
/// save when that is the way (`IMGKIT_DOCKER_READ=stream`, `--via`); `--json` as `read_files`.
#[test]
fn a_dry_run_says_it_would_read_dockers_files() {
    let e = need_engines!();
    let f = Fresh::new(e, false, 1);
    let (host, tmp) = (f.host, f.tmp.path());
    let mut env = f.env();
    env.extend(fresh_podman(tmp));
    let filter = only(tmp, &f.top);
    let dry = |extra: &[&str], stream: bool| {
        let mut t = imgkit(&env);
        if stream {
            t = t.env("IMGKIT_DOCKER_READ", "stream");
        }
        t.args([
            "run",
            "--dry-run",
            "--from",
            "docker",
            "--to",
            "podman",
            "-f",
        ])
        .arg(&filter)
        .args(extra)
        .run()
        .success()
        .stdout
    };
    let out = dry(&[], false);
    assert!(
        out.contains("read: docker's own files at") && !out.contains("\nsave: "),
        "{out}"
    );
    let out = dry(&[], true);
    assert!(out.contains("\nsave: "), "{out}");
    let via = tmp.join("via.tar");
    let out = dry(&["--via", via.to_str().unwrap()], false);
    assert!(out.contains("\nsave: "), "{out}");
    let doc = imgkit(&env)
        .args(["--json", "run", "--dry-run", "--from", "docker", "--to"])
        .arg(format!("{}/", tmp.join("layout").display()))
        .arg("-f")
        .arg(&filter)
        .run()
        .success();
    let doc = json_of(&doc.stdout);
    let root = output(docker(host).args(["info", "--format", "{{.DockerRootDir}}"]));
    assert_eq!(doc["read_files"], root.trim(), "{doc}");
    assert!(doc["save"].is_null(), "{doc}");
    // Into a registry the plan is drawn through a stand-in file; the run reads the files.
    imgkit(&env)
        .args(["run", "--dry-run", "--from", "docker", "--to"])
        .arg(format!("registry:{}/dry", e.src.var("IMGKIT_REGISTRY")))
        .arg("-f")
        .arg(&filter)
        .run()
        .success()
        .stderr_has("from docker no save runs");
}
