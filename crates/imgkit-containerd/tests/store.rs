//! The store against real containerd 1.6, as `scripts/engines` starts it: the seeded set
//! (`IMGKIT_ENGINES_DIR`, read only) and the empty destination set (`IMGKIT_TRANSFER_DST`),
//! written in namespaces of these tests' own. Without them the tests skip (and fail when `CI`
//! is set).
#![cfg(unix)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};

use imgkit_containerd::{Address, Client, Error, ImportOptions, Store};
use imgkit_engine::{Engine, EngineKind, EngineOptions};
use imgkit_store::{BlobInfo, Destination, Source, copy};
use imgkit_types::Digest;

fn socket_of(var: &str) -> Option<String> {
    let dir = std::env::var_os(var).filter(|v| !v.is_empty())?;
    let p = PathBuf::from(dir).join("containerd/containerd.sock");
    p.exists().then(|| p.display().to_string())
}

fn sockets() -> Option<(String, String)> {
    let s = socket_of("IMGKIT_ENGINES_DIR").zip(socket_of("IMGKIT_TRANSFER_DST"));
    if s.is_none() {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI: these tests need real engines (scripts/test sets IMGKIT_ENGINES_DIR and IMGKIT_TRANSFER_DST)"
        );
        eprintln!("skipped: needs real engines; run scripts/test");
    }
    s
}

macro_rules! need {
    () => {
        match sockets() {
            Some(s) => s,
            None => return,
        }
    };
}

fn addr(path: &str) -> Address {
    Address {
        path: path.to_owned(),
        how: "--address",
    }
}

fn store(path: &str, ns: &str) -> Store {
    Store::new(
        Client::connect(&addr(path), ns).expect("connect"),
        ImportOptions::default(),
    )
}

fn ctr(addr: &str, ns: &str, args: &[&str]) -> String {
    let out = Command::new("ctr")
        .args(["-a", addr, "-n", ns])
        .args(args)
        .output()
        .expect("ctr");
    assert!(
        out.status.success(),
        "ctr {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A namespace of this test's own in the destination containerd, emptied at the end.
struct Scratch {
    addr: String,
    ns: String,
}

impl Scratch {
    fn new(addr: &str, name: &str) -> Self {
        let ns = format!("imgkit-t-{name}-{}", std::process::id());
        Scratch {
            addr: addr.to_owned(),
            ns,
        }
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let out = Command::new("ctr")
            .args(["-a", &self.addr, "-n", &self.ns, "images", "ls", "-q"])
            .output();
        if let Ok(out) = out {
            let names: Vec<String> = String::from_utf8_lossy(&out.stdout)
                .lines()
                .map(str::to_owned)
                .collect();
            if !names.is_empty() {
                let _ = Command::new("ctr")
                    .args(["-a", &self.addr, "-n", &self.ns, "images", "rm", "--sync"])
                    .args(&names)
                    .output();
            }
        }
    }
}

#[test]
fn lists_what_the_ctr_cli_lists_with_creation_times() {
    let (src, _) = need!();
    for ns in ["k8s.io", "default"] {
        let native = store(&src, ns).list().expect("list");
        let cli = Engine::new(
            EngineKind::Ctr,
            EngineOptions {
                address: Some(src.clone()),
                namespace: Some(ns.to_owned()),
                ..EngineOptions::default()
            },
        )
        .unwrap()
        .list_noting()
        .expect("ctr images ls");
        assert_eq!(native.1, cli.1, "warnings");
        assert_eq!(native.0.len(), cli.0.len(), "{ns}: one record per name");
        for (n, c) in native.0.iter().zip(&cli.0) {
            assert_ne!(n.created_at, "N/A", "{ns}: {n:?} has the config's time");
            assert!(n.created_since.ends_with(" ago"), "{n:?}");
            let mut n = n.clone();
            assert_eq!(n.extra.remove("Namespace"), Some(ns.into()));
            n.created_at = c.created_at.clone();
            n.created_since = c.created_since.clone();
            assert_eq!(&n, c, "{ns}: the record of {}", c.extra["Name"]);
        }
    }
}

#[test]
fn an_unknown_namespace_is_named_with_those_that_exist() {
    let (src, _) = need!();
    let e = store(&src, "no-such-ns").list().unwrap_err();
    assert!(matches!(e, Error::UnknownNamespace { .. }), "{e}");
    assert!(e.to_string().contains("k8s.io"), "{e}");
}

fn ids(addr: &str, ns: &str) -> BTreeMap<String, String> {
    // name → config digest, through `ctr images check`'s neighbour: the manifest's config.
    let s = store(addr, ns);
    let (records, _) = s.list().unwrap();
    let refs: Vec<_> = records
        .iter()
        .filter_map(|r| r.extra["Name"].as_str()?.parse().ok())
        .collect();
    s.image_ids_of(&refs)
        .unwrap()
        .into_iter()
        .map(|(r, id)| (r.to_string(), id.map(|d| d.to_string()).unwrap_or_default()))
        .collect()
}

#[test]
fn copies_between_containerds_unpacked_and_sends_only_what_is_missing() {
    let (src, dst) = need!();
    let scratch = Scratch::new(&dst, "copy");
    let from = store(&src, "k8s.io");
    from.list().unwrap();
    let images = from.images().unwrap();
    let pick = |name: &str| {
        images
            .iter()
            .filter(|i| i.names.iter().any(|n| n.to_string() == name))
            .cloned()
            .collect::<Vec<_>>()
    };
    let multi = pick("docker.io/seed/multi:latest");
    assert_eq!(multi.len(), 1, "{images:#?}");
    let mut to = store(&dst, &scratch.ns);
    let r = copy(&from, &mut to, &multi).unwrap();
    assert_eq!(r.blobs_skipped, 0, "{r:?}");
    assert_eq!(r.blobs_written, 5, "config, three layers, manifest: {r:?}");
    assert_eq!(to.unpack_report().applied, 3);
    let check = ctr(&dst, &scratch.ns, &["images", "check"]);
    let line = check
        .lines()
        .find(|l| l.starts_with("docker.io/seed/multi:latest "))
        .unwrap_or_else(|| panic!("{check}"));
    assert!(
        line.contains("complete (4/4)") && line.trim_end().ends_with("true"),
        "{line}"
    );
    let snaps = ctr(&dst, &scratch.ns, &["snapshots", "ls"]);
    assert_eq!(
        snaps.lines().filter(|l| l.contains("Committed")).count(),
        3,
        "{snaps}"
    );
    // The base shares multi's first layer: only its config and manifest move.
    let base = pick("docker.io/seed/base:1.0");
    let mut to = store(&dst, &scratch.ns);
    let r = copy(&from, &mut to, &base).unwrap();
    assert_eq!((r.blobs_written, r.blobs_skipped), (2, 1), "{r:?}");
    assert_eq!(
        to.unpack_report(),
        imgkit_containerd::UnpackReport {
            applied: 0,
            present: 1
        }
    );
    let want = ids(&src, "k8s.io");
    let got = ids(&dst, &scratch.ns);
    for (name, id) in &got {
        assert_eq!(want.get(name), Some(id), "{name}");
    }
    assert_eq!(got.len(), 2, "{got:?}");
    // What it imported exports again with the same manifest digest.
    let exported = ctr(&dst, &scratch.ns, &["images", "ls"]);
    assert!(
        exported.contains(multi[0].manifest.digest.as_str()),
        "{exported}"
    );
    // No lease is left behind.
    let leases = ctr(&dst, &scratch.ns, &["leases", "ls"]);
    assert_eq!(leases.lines().count(), 1, "{leases}");
}

#[test]
fn a_damaged_blob_is_refused_and_nothing_is_named() {
    let (_, dst) = need!();
    let scratch = Scratch::new(&dst, "damaged");
    let mut to = store(&dst, &scratch.ns);
    let content = b"hello, containerd".to_vec();
    let digest: Digest = format!("sha256:{}", "0".repeat(64)).parse().unwrap();
    let blob = BlobInfo {
        digest: digest.clone(),
        size: content.len() as u64,
        media_type: "application/octet-stream".into(),
    };
    let e = to.put_blob(&blob, &mut content.as_slice()).unwrap_err();
    assert!(e.to_string().contains("digest"), "{e}");
    assert!(!to.has_blob(&digest));
    // Short content: refused before containerd commits anything.
    let right = BlobInfo {
        digest: format!("sha256:{}", sha(&content)).parse().unwrap(),
        size: content.len() as u64 + 1,
        media_type: "application/octet-stream".into(),
    };
    let e = to.put_blob(&right, &mut content.as_slice()).unwrap_err();
    assert!(e.to_string().contains("descriptor says"), "{e}");
    assert!(!to.has_blob(&right.digest));
    // The right one goes in, and reads back.
    let ok = BlobInfo {
        size: content.len() as u64,
        ..right
    };
    to.put_blob(&ok, &mut content.as_slice()).unwrap();
    assert!(to.has_blob(&ok.digest));
    let mut back = Vec::new();
    to.read_blobs(std::slice::from_ref(&ok), &mut |_, r| {
        r.read_to_end(&mut back).unwrap();
        Ok(())
    })
    .unwrap();
    assert_eq!(back, content);
}

fn sha(b: &[u8]) -> String {
    use sha2::Digest as _;
    use std::fmt::Write as _;
    sha2::Sha256::digest(b)
        .iter()
        .fold(String::new(), |mut s, x| {
            let _ = write!(s, "{x:02x}");
            s
        })
}

#[test]
fn a_missing_or_dead_socket_is_said_plainly() {
    let e = Client::connect(&addr("/nonexistent/containerd.sock"), "default").unwrap_err();
    assert!(matches!(e, Error::NoSocket { .. }), "{e}");
    assert!(e.is_connection());
    let dir = tempfile::tempdir().unwrap();
    let dead = dir.path().join("c.sock");
    drop(std::os::unix::net::UnixListener::bind(&dead).unwrap());
    let e = Client::connect(&addr(dead.to_str().unwrap()), "default").unwrap_err();
    assert!(matches!(e, Error::Unreachable { .. }), "{e}");
    assert!(e.hint().is_some());
    let _ = Path::new("");
}

#[test]
fn an_index_exports_the_platform_whose_content_is_here_and_names_the_rest() {
    let (src, dst) = need!();
    let scratch = Scratch::new(&dst, "index");
    let from = store(&src, "k8s.io");
    from.list().unwrap();
    let app = from
        .images()
        .unwrap()
        .into_iter()
        .find(|i| {
            i.names
                .iter()
                .any(|n| n.to_string() == "docker.io/seed/app:1.0")
        })
        .unwrap();
    let mut to = store(&dst, &scratch.ns);
    copy(&from, &mut to, std::slice::from_ref(&app)).unwrap();
    let absent = format!("sha256:{}", "ab".repeat(32));
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [
            {"mediaType": app.manifest.media_type, "digest": app.manifest.digest.to_string(), "size": app.manifest.size,
             "platform": {"os": "linux", "architecture": "amd64"}},
            {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": absent, "size": 500,
             "platform": {"os": "linux", "architecture": "arm64", "variant": "v8"}},
        ]
    })
    .to_string()
    .into_bytes();
    let desc = BlobInfo {
        digest: format!("sha256:{}", sha(&index)).parse().unwrap(),
        size: index.len() as u64,
        media_type: "application/vnd.oci.image.index.v1+json".into(),
    };
    to.put_blob(&desc, &mut index.as_slice()).unwrap();
    to.name_target("docker.io/seed/multiarch:1", &desc).unwrap();
    drop(to);
    let s = store(&dst, &scratch.ns);
    let (records, _) = s.list().unwrap();
    let rec = records
        .iter()
        .find(|r| r.repository == "seed/multiarch")
        .unwrap_or_else(|| panic!("{records:#?}"));
    assert_eq!(rec.extra["Platform"], "linux/amd64,linux/arm64/v8");
    let notes = s.notes();
    assert_eq!(notes.len(), 1, "{notes:?}");
    assert!(
        notes[0].contains("only linux/amd64") && notes[0].contains("linux/arm64/v8 is not"),
        "{notes:?}"
    );
    let img = s
        .images()
        .unwrap()
        .into_iter()
        .find(|i| {
            i.names
                .iter()
                .any(|n| n.to_string() == "docker.io/seed/multiarch:1")
        })
        .unwrap();
    assert_eq!(img.manifest, app.manifest);
    assert_eq!(img.id(), app.id());
}

/// A store whose notes (the path blobs are read by) are kept.
fn noted(path: &str, ns: &str, api_only: bool) -> (Store, Arc<Mutex<Vec<String>>>) {
    let client = Client::connect(&addr(path), ns).expect("connect");
    if api_only {
        client.read_over_api_only();
    }
    let notes = Arc::new(Mutex::new(Vec::new()));
    let n = notes.clone();
    client.on_note(move |m| n.lock().unwrap().push(m.to_owned()));
    (Store::new(client, ImportOptions::default()), notes)
}

/// The blob file of `digest` in the content store of the containerd at `socket`.
fn blob_file(socket: &str, digest: &Digest) -> PathBuf {
    Path::new(socket)
        .parent()
        .unwrap()
        .join("root/io.containerd.content.v1.content/blobs/sha256")
        .join(digest.hex())
}

/// Blobs read from the content store's files (containerd on this machine) and over the API (in
/// ranges, several at once), each into a layout directory, the receiver that checks digests:
/// the same bytes either way, the path said once per run; and a blob file damaged behind
/// containerd's back is caught by the receiver on both paths, naming the blob, nothing kept.
#[test]
fn large_blobs_read_from_files_or_in_ranges_and_a_damaged_store_is_caught() {
    let (_, dst) = need!();
    let scratch = Scratch::new(&dst, "ranges");
    let mut to = store(&dst, &scratch.ns);
    // 9 MiB and a bit: read over the API as several ranges at once.
    let mut content = vec![0u8; (9 << 20) + 12345];
    let mut x: u32 = 0x92d6_8ca2 ^ std::process::id();
    for b in &mut content {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        *b = x as u8;
    }
    let blob = BlobInfo {
        digest: format!("sha256:{}", sha(&content)).parse().unwrap(),
        size: content.len() as u64,
        media_type: "application/octet-stream".into(),
    };
    to.put_blob(&blob, &mut content.as_slice()).unwrap();
    let copy_out = |s: &Store| -> imgkit_store::Result<Vec<u8>> {
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("out");
        let mut layout = imgkit_store::LayoutDir::create(&out)?;
        s.read_blobs(std::slice::from_ref(&blob), &mut |b, r| {
            layout.put_blob(b, r)
        })?;
        Ok(std::fs::read(out.join("blobs/sha256").join(blob.digest.hex())).unwrap())
    };
    for api in [false, true] {
        let (s, notes) = noted(&dst, &scratch.ns, api);
        assert!(
            copy_out(&s).unwrap() == content,
            "the blob came back changed"
        );
        assert!(
            copy_out(&s).unwrap() == content,
            "the blob came back changed"
        );
        let notes = notes.lock().unwrap().clone();
        assert_eq!(notes.len(), 1, "one note per run: {notes:?}");
        let want = if api {
            "blobs read over containerd's API"
        } else {
            "blobs read from containerd's content files under"
        };
        assert!(notes[0].contains(want), "{notes:?}");
    }
    // Damage the stored file (same size) behind containerd's back: the copy fails.
    let file = blob_file(&dst, &blob.digest);
    let _restore = Restore(&file, &content);
    let mut damaged = content.clone();
    damaged[5 << 20] ^= 0xff;
    std::fs::write(&file, &damaged).unwrap();
    for api in [false, true] {
        let (s, _) = noted(&dst, &scratch.ns, api);
        let e = copy_out(&s).unwrap_err().to_string();
        assert!(
            e.contains(blob.digest.as_str()) && e.contains("damaged"),
            "api: {api}: {e}"
        );
    }
}

#[test]
fn a_blob_of_unknown_digest_is_hashed_as_it_streams_and_written_once() {
    let (_, dst) = need!();
    let scratch = Scratch::new(&dst, "hashed");
    let mut to = store(&dst, &scratch.ns);
    let content = format!("a layer.tar of its own {}", std::process::id()).into_bytes();
    let (b, new) = to
        .put_blob_hashed(
            content.len() as u64,
            "application/vnd.docker.image.rootfs.diff.tar",
            &mut content.as_slice(),
        )
        .unwrap();
    assert!(new);
    assert_eq!(b.digest.hex(), sha(&content));
    assert_eq!(b.size, content.len() as u64);
    assert!(to.has_blob(&b.digest));
    let (again, new) = to
        .put_blob_hashed(
            content.len() as u64,
            "application/vnd.docker.image.rootfs.diff.tar",
            &mut content.as_slice(),
        )
        .unwrap();
    assert!(!new, "written twice");
    assert_eq!(again, b);
}

/// Whether the namespace has a committed snapshot named `name` in overlayfs.
fn has_snapshot(addr: &str, ns: &str, name: &str) -> bool {
    Command::new("ctr")
        .args(["-a", addr, "-n", ns, "snapshots", "info", name])
        .output()
        .is_ok_and(|o| {
            o.status.success() && String::from_utf8_lossy(&o.stdout).contains("Committed")
        })
}

/// Polls `f` (up to a minute: a wait for containerd, not a timing).
fn eventually(mut f: impl FnMut() -> bool) -> bool {
    for _ in 0..600 {
        if f() {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    false
}

/// An uncompressed layer tar holding one file `name`: its bytes.
fn layer_tar(dir: &Path, name: &str) -> Vec<u8> {
    let d = dir.join(name);
    std::fs::create_dir_all(&d).unwrap();
    std::fs::write(
        d.join(name),
        format!("{name} {}\n", std::process::id()).repeat(1000),
    )
    .unwrap();
    let tar = dir.join(format!("{name}.tar"));
    let out = Command::new("tar")
        .arg("-C")
        .arg(&d)
        .arg("-cf")
        .arg(&tar)
        .arg(name)
        .output()
        .unwrap();
    assert!(out.status.success());
    std::fs::read(tar).unwrap()
}

/// Told an image's diff IDs before its stream, the store unpacks each layer as soon as its
/// blob is in the content store and its parent is unpacked: the first layer's snapshot is
/// committed while the rest of the "stream" (the second layer, the config, the manifest) has
/// not come, and no image is named; the image is named only at commit, unpacked whole.
#[test]
fn layers_unpack_as_they_arrive_and_the_image_is_named_last() {
    let (_, dst) = need!();
    let scratch = Scratch::new(&dst, "ahead");
    let tmp = tempfile::tempdir().unwrap();
    let layers = [
        layer_tar(tmp.path(), "first"),
        layer_tar(tmp.path(), "second"),
    ];
    let diff_ids: Vec<Digest> = layers
        .iter()
        .map(|l| format!("sha256:{}", sha(l)).parse().unwrap())
        .collect();
    let chains =
        imgkit_containerd::chain_ids(&diff_ids.iter().map(ToString::to_string).collect::<Vec<_>>());
    let mut to = store(&dst, &scratch.ns);
    to.unpack_as_layers_arrive(std::slice::from_ref(&diff_ids))
        .unwrap();
    let media = "application/vnd.docker.image.rootfs.diff.tar";
    let (first, new) = to
        .put_blob_hashed(layers[0].len() as u64, media, &mut layers[0].as_slice())
        .unwrap();
    assert!(new);
    assert!(
        eventually(|| has_snapshot(&dst, &scratch.ns, &chains[0])),
        "the first layer was not unpacked before the rest came"
    );
    assert!(!has_snapshot(&dst, &scratch.ns, &chains[1]));
    assert_eq!(ctr(&dst, &scratch.ns, &["images", "ls", "-q"]), "");
    let (second, _) = to
        .put_blob_hashed(layers[1].len() as u64, media, &mut layers[1].as_slice())
        .unwrap();
    assert!(
        eventually(|| has_snapshot(&dst, &scratch.ns, &chains[1])),
        "the second layer was not unpacked on the first"
    );
    assert_eq!(ctr(&dst, &scratch.ns, &["images", "ls", "-q"]), "");
    let ids: Vec<String> = diff_ids.iter().map(ToString::to_string).collect();
    let config = serde_json::json!({
        "architecture": "amd64",
        "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": ids},
    })
    .to_string()
    .into_bytes();
    let config = (
        BlobInfo {
            digest: format!("sha256:{}", sha(&config)).parse().unwrap(),
            size: config.len() as u64,
            media_type: "application/vnd.docker.container.image.v1+json".into(),
        },
        config,
    );
    to.put_blob(&config.0, &mut config.1.as_slice()).unwrap();
    let layer_descs: Vec<serde_json::Value> = [&first, &second]
        .iter()
        .map(|l| serde_json::json!({"mediaType": media, "digest": l.digest.to_string(), "size": l.size}))
        .collect();
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
        "config": {"mediaType": config.0.media_type, "digest": config.0.digest.to_string(), "size": config.0.size},
        "layers": layer_descs,
    })
    .to_string()
    .into_bytes();
    let mdesc = BlobInfo {
        digest: format!("sha256:{}", sha(&manifest)).parse().unwrap(),
        size: manifest.len() as u64,
        media_type: "application/vnd.docker.distribution.manifest.v2+json".into(),
    };
    to.put_blob(&mdesc, &mut manifest.as_slice()).unwrap();
    let image = imgkit_store::StoredImage::single(
        vec!["imgkit-t/ahead:1".parse().unwrap()],
        mdesc,
        manifest,
        config.0,
        vec![first, second],
    );
    to.commit(std::slice::from_ref(&image)).unwrap();
    let report = to.unpack_report();
    assert_eq!((report.applied, report.present), (2, 0), "{report:?}");
    let listed = ctr(&dst, &scratch.ns, &["images", "check"]);
    let line = listed
        .lines()
        .find(|l| l.starts_with("docker.io/imgkit-t/ahead:1"))
        .unwrap_or_else(|| panic!("{listed}"));
    assert!(
        line.contains(" complete ") && line.trim_end().ends_with("true"),
        "{line}"
    );
}

/// Writes a file's content back when dropped (a test that damaged it may fail midway).
struct Restore<'a>(&'a Path, &'a [u8]);

impl Drop for Restore<'_> {
    fn drop(&mut self) {
        std::fs::write(self.0, self.1).unwrap();
    }
}
