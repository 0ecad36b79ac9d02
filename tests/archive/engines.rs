//! Round trips through real engines: archives imgkit writes load in docker, containerd
//! (`ctr -n k8s.io`) and podman with the right names and image IDs; archives each engine saves
//! are read by imgkit with the names and IDs that engine lists.
//!
//! docker and containerd are the empty destination engines `scripts/test` starts
//! (`IMGKIT_TRANSFER_DST`), each held under its lock from `tests/transfer.rs` for the whole
//! test: the seeded set (`IMGKIT_ENGINES_DIR`) that other tests select from in parallel stays
//! as seeded. podman needs no daemon: each test gives it its own storage under a temp dir.
//! Without engines a test skips, and fails when `CI` is set (`crate::util::skip`).

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::MutexGuard;

use imgkit_archive::{Archive, Compression, NewImage, SubsetWriter, layer_tar, write_images};
use imgkit_types::ImageRef;

use crate::transfer::{DOCKER_DST, K8S_DST, docker_cli, engines, lock};
use crate::util::skip;

/// Runs a command; its stdout, or its stderr as the error.
fn run(cmd: &mut Command) -> Result<String, String> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{cmd:?}: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "{cmd:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

#[track_caller]
fn ok(cmd: &mut Command) -> String {
    run(cmd).unwrap_or_else(|e| panic!("{e}"))
}

/// The destination docker, and its lock (held until the guard drops).
fn docker() -> Option<(Command, MutexGuard<'static, ()>)> {
    let e = engines()?;
    let guard = lock(&DOCKER_DST);
    let mut cmd = Command::new(docker_cli());
    cmd.env("DOCKER_HOST", e.dst.var("DOCKER_HOST"));
    Some((cmd, guard))
}

/// The destination containerd's `k8s.io`, and its lock.
fn ctr() -> Option<(Command, MutexGuard<'static, ()>)> {
    let e = engines()?;
    let guard = lock(&K8S_DST);
    let mut cmd = Command::new("ctr");
    cmd.arg("-a")
        .arg(e.dst.var("CONTAINERD_ADDRESS"))
        .args(["-n", "k8s.io"]);
    Some((cmd, guard))
}

/// podman with storage of its own under `dir`.
fn podman_in(dir: &Path) -> Option<Command> {
    if let Err(e) = run(Command::new("podman").arg("--version")) {
        skip(&format!(
            "podman is not available ({e}); scripts/engines installs it"
        ));
        return None;
    }
    let mut cmd = Command::new("podman");
    cmd.arg("--root")
        .arg(dir.join("root"))
        .arg("--runroot")
        .arg(dir.join("run"))
        .args([
            "--storage-driver",
            "vfs",
            "--events-backend",
            "none",
            "--cgroup-manager",
            "cgroupfs",
        ]);
    Some(cmd)
}

fn with(base: &Command, args: &[&str]) -> Command {
    let mut c = Command::new(base.get_program());
    c.args(base.get_args()).args(args);
    for (k, v) in base.get_envs() {
        if let Some(v) = v {
            c.env(k, v);
        }
    }
    c
}

fn r(s: &str) -> ImageRef {
    s.parse().unwrap()
}

/// Test images unique to this process (names and content), so parallel tests and runs on
/// shared engines never collide: a short docker.io name, a registry name with a port, and
/// one image under two tags, all sharing a base layer.
fn test_images(tag: &str) -> Vec<NewImage> {
    let pid = std::process::id();
    let unique = format!("{pid}-{tag}-{:?}", std::time::SystemTime::now());
    let base = layer_tar(&[("etc/base", unique.as_bytes())]);
    let mk = |names: Vec<ImageRef>, file: &str| NewImage {
        names,
        created: "2026-11-28T06:34:53Z".into(),
        layers: vec![base.clone(), layer_tar(&[(file, unique.as_bytes())])],
        run_config: serde_json::json!({"Cmd": ["/bin/true"]}),
    };
    vec![
        mk(vec![r(&format!("imgkit-archive-test-{pid}-{tag}:v1"))], "a"),
        mk(
            vec![r(&format!(
                "localhost:5000/imgkit-archive-test/{pid}-{tag}:1.0"
            ))],
            "b",
        ),
        mk(
            vec![
                r(&format!("imgkit.test/archive/{pid}-{tag}/multi:one")),
                r(&format!("imgkit.test/archive/{pid}-{tag}/multi:two")),
            ],
            "c",
        ),
    ]
}

struct Written {
    dir: tempfile::TempDir,
    all: std::path::PathBuf,
    /// A subset: just the second image.
    subset: std::path::PathBuf,
    /// name (normalized, with tag) → config digest, for every name in `all`.
    ids: Vec<(ImageRef, String)>,
    subset_name: ImageRef,
}

fn write_test_archives(tag: &str, compression: Compression) -> Written {
    let dir = tempfile::tempdir().unwrap();
    let images = test_images(tag);
    let all = dir.path().join(format!("all.tar{}", compression.suffix()));
    write_images(&images, std::fs::File::create(&all).unwrap(), compression).unwrap();
    let archive = Archive::open(&all).unwrap();
    let mut ids = Vec::new();
    for im in archive.images() {
        for n in &im.names {
            ids.push((n.normalized(), im.id().to_string()));
        }
    }
    let subset_name = images[1].names[0].clone();
    let subset = dir.path().join("subset.tar");
    let mut w = SubsetWriter::new(&archive);
    w.select(&subset_name).unwrap();
    w.write(std::fs::File::create(&subset).unwrap()).unwrap();
    Written {
        dir,
        all,
        subset,
        ids,
        subset_name: subset_name.normalized(),
    }
}

/// `repo:tag` (familiar) → ID, from imgkit's listing of an archive.
fn listed(path: &Path) -> BTreeSet<(String, String)> {
    imgkit_archive::list(path)
        .unwrap()
        .into_iter()
        .filter(|rec| rec.repository != "<none>")
        .map(|rec| (format!("{}:{}", rec.repository, rec.tag), rec.id))
        .collect()
}

fn familiar(n: &ImageRef) -> String {
    n.familiar().to_string()
}

#[test]
fn docker_loads_imgkit_archives_and_imgkit_reads_docker_save() {
    let Some((docker, _guard)) = docker() else {
        return;
    };
    let w = write_test_archives("docker", Compression::None);
    let names: Vec<String> = w.ids.iter().map(|(n, _)| familiar(n)).collect();
    let cleanup = || {
        let mut c = with(&docker, &["rmi", "-f"]);
        c.args(&names);
        let _ = run(&mut c);
    };
    cleanup();

    // A subset loads just its image.
    ok(&mut with(
        &docker,
        &["load", "-i", w.subset.to_str().unwrap()],
    ));
    for (name, id) in &w.ids {
        let got = run(&mut with(
            &docker,
            &["image", "inspect", "--format", "{{.Id}}", &familiar(name)],
        ));
        if *name == w.subset_name {
            assert_eq!(got.unwrap().trim(), id, "{name}");
        } else {
            assert!(
                got.is_err(),
                "{name} was loaded from a subset that doesn't hold it"
            );
        }
    }
    // The whole archive loads every name with its ID.
    ok(&mut with(&docker, &["load", "-i", w.all.to_str().unwrap()]));
    for (name, id) in &w.ids {
        let got = ok(&mut with(
            &docker,
            &["image", "inspect", "--format", "{{.Id}}", &familiar(name)],
        ));
        assert_eq!(got.trim(), id, "{name}");
    }

    // docker save → imgkit reads the records docker lists (names, IDs, creation times).
    let saved = w.dir.path().join("docker-save.tar");
    let mut save = with(&docker, &["save", "-o", saved.to_str().unwrap()]);
    save.args(&names);
    ok(&mut save);
    let lines = ok(&mut with(
        &docker,
        &["image", "ls", "--format", "{{json .}}"],
    ));
    let mut docker_rows = BTreeSet::new();
    let mut docker_created = BTreeSet::new();
    for line in lines.lines() {
        let rec: imgkit_types::ImageRecord = serde_json::from_str(line).unwrap();
        let name = format!("{}:{}", rec.repository, rec.tag);
        if names.contains(&name) {
            docker_created.insert((name.clone(), rec.created_at.clone()));
            docker_rows.insert((name, rec.id));
        }
    }
    assert_eq!(
        docker_rows.len(),
        names.len(),
        "docker lists all test names"
    );
    assert_eq!(listed(&saved), docker_rows);
    let ours: BTreeSet<(String, String)> = imgkit_archive::list(&saved)
        .unwrap()
        .into_iter()
        .map(|rec| (format!("{}:{}", rec.repository, rec.tag), rec.created_at))
        .collect();
    assert_eq!(ours, docker_created);
    imgkit_archive::verify(&saved).unwrap();
    cleanup();
}

#[test]
fn containerd_imports_imgkit_archives_and_imgkit_reads_ctr_export() {
    let Some((ctr, _guard)) = ctr() else { return };
    let w = write_test_archives("ctr", Compression::None);
    let full: Vec<String> = w.ids.iter().map(|(n, _)| n.to_string()).collect();
    let cleanup = || {
        let mut c = with(&ctr, &["images", "rm"]);
        c.args(&full);
        let _ = run(&mut c);
    };
    cleanup();
    let archive = Archive::open(&w.all).unwrap();
    let manifest_of = |name: &ImageRef| {
        archive
            .find(name)
            .unwrap()
            .target
            .as_ref()
            .unwrap()
            .digest
            .to_string()
    };

    let refs = |ctr: &Command| -> BTreeSet<(String, String)> {
        ok(&mut with(ctr, &["images", "ls"]))
            .lines()
            .skip(1)
            .filter_map(|l| {
                let mut cols = l.split_whitespace();
                let (name, _ty, digest) = (cols.next()?, cols.next()?, cols.next()?);
                full.contains(&name.to_owned())
                    .then(|| (name.to_owned(), digest.to_owned()))
            })
            .collect()
    };
    ok(&mut with(
        &ctr,
        &["images", "import", w.subset.to_str().unwrap()],
    ));
    let want_subset: BTreeSet<_> =
        [(w.subset_name.to_string(), manifest_of(&w.subset_name))].into();
    assert_eq!(
        refs(&ctr),
        want_subset,
        "only the subset's image, under its full name"
    );

    ok(&mut with(
        &ctr,
        &["images", "import", w.all.to_str().unwrap()],
    ));
    let want: BTreeSet<_> = w
        .ids
        .iter()
        .map(|(n, _)| (n.to_string(), manifest_of(n)))
        .collect();
    assert_eq!(refs(&ctr), want);

    // ctr export → imgkit reads the same names, with the config digests as IDs.
    let exported = w.dir.path().join("ctr-export.tar");
    let mut export = with(&ctr, &["images", "export", exported.to_str().unwrap()]);
    export.args(&full);
    ok(&mut export);
    let want_listing: BTreeSet<(String, String)> = w
        .ids
        .iter()
        .map(|(n, id)| (familiar(n), id["sha256:".len()..][..12].to_owned()))
        .collect();
    assert_eq!(listed(&exported), want_listing);
    imgkit_archive::verify(&exported).unwrap();
    cleanup();
}

#[test]
fn podman_loads_imgkit_archives_and_imgkit_reads_podman_save() {
    let store = tempfile::tempdir().unwrap();
    let Some(podman) = podman_in(store.path()) else {
        return;
    };
    let w = write_test_archives("podman", Compression::Zstd);

    let images = |podman: &Command| -> BTreeSet<(String, String)> {
        let out = ok(&mut with(podman, &["images", "--format", "json"]));
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        let mut rows = BTreeSet::new();
        for im in v.as_array().unwrap() {
            for n in im["Names"].as_array().into_iter().flatten() {
                rows.insert((
                    n.as_str().unwrap().to_owned(),
                    format!("sha256:{}", im["Id"].as_str().unwrap()),
                ));
            }
        }
        rows
    };
    // A one-image archive: podman takes the OCI path; names must stay full (no `localhost/`).
    ok(&mut with(
        &podman,
        &["load", "-i", w.subset.to_str().unwrap()],
    ));
    let id_of = |n: &ImageRef| w.ids.iter().find(|(m, _)| m == n).unwrap().1.clone();
    let want_subset: BTreeSet<_> = [(w.subset_name.to_string(), id_of(&w.subset_name))].into();
    assert_eq!(images(&podman), want_subset);

    // A zstd-compressed multi-image archive: every name, full, with its ID.
    ok(&mut with(&podman, &["load", "-i", w.all.to_str().unwrap()]));
    let want: BTreeSet<_> = w
        .ids
        .iter()
        .map(|(n, id)| (n.to_string(), id.clone()))
        .collect();
    assert_eq!(images(&podman), want);

    // The docker.io image alone: podman must not invent `localhost/` (podman#9590).
    let short = &w.ids[0].0;
    let archive = Archive::open(&w.all).unwrap();
    let one = w.dir.path().join("short.tar");
    let mut sw = SubsetWriter::new(&archive);
    sw.select(short).unwrap();
    sw.write(std::fs::File::create(&one).unwrap()).unwrap();
    let store2 = tempfile::tempdir().unwrap();
    let podman2 = podman_in(store2.path()).unwrap();
    ok(&mut with(&podman2, &["load", "-i", one.to_str().unwrap()]));
    assert_eq!(
        images(&podman2),
        [(short.to_string(), w.ids[0].1.clone())].into()
    );

    // podman save (docker-archive, several images) → imgkit reads podman's names and IDs.
    let saved = w.dir.path().join("podman-save.tar");
    let mut save = with(
        &podman,
        &[
            "save",
            "--multi-image-archive",
            "-o",
            saved.to_str().unwrap(),
        ],
    );
    save.args(w.ids.iter().map(|(n, _)| n.to_string()));
    ok(&mut save);
    let want_listing: BTreeSet<(String, String)> = images(&podman)
        .into_iter()
        .map(|(n, id)| (familiar(&r(&n)), id["sha256:".len()..][..12].to_owned()))
        .collect();
    assert_eq!(listed(&saved), want_listing);
    imgkit_archive::verify(&saved).unwrap();

    // podman save --format oci-archive (one image; the name in ref.name). From the store that
    // loaded it as OCI: podman re-serializes a config it converts from docker's format.
    let oci = w.dir.path().join("podman-oci.tar");
    ok(&mut with(
        &podman2,
        &[
            "save",
            "--format",
            "oci-archive",
            "-o",
            oci.to_str().unwrap(),
            &short.to_string(),
        ],
    ));
    let want_oci: BTreeSet<(String, String)> = images(&podman2)
        .into_iter()
        .map(|(n, id)| (familiar(&r(&n)), id["sha256:".len()..][..12].to_owned()))
        .collect();
    assert_eq!(listed(&oci), want_oci);
    imgkit_archive::verify(&oci).unwrap();
}

/// A two-platform image whose arm64 content is absent, as `docker save` / `ctr export` of a
/// pulled multi-platform image leave it.
fn partial_multi_platform(name: &str) -> (Vec<u8>, String) {
    use imgkit_archive::oci;
    use sha2::{Digest as _, Sha256};
    let sha = |b: &[u8]| {
        Sha256::digest(b)
            .iter()
            .fold(String::from("sha256:"), |mut s, x| {
                use std::fmt::Write as _;
                let _ = write!(s, "{x:02x}");
                s
            })
    };
    let unique = format!("{}-{:?}", std::process::id(), std::time::SystemTime::now());
    let layer = layer_tar(&[("multi", unique.as_bytes())]);
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64", "os": "linux", "created": "2026-11-28T06:34:53Z",
        "rootfs": {"type": "layers", "diff_ids": [sha(&layer)]}
    }))
    .unwrap();
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2, "mediaType": oci::MEDIA_OCI_MANIFEST,
        "config": {"mediaType": oci::MEDIA_OCI_CONFIG, "digest": sha(&config), "size": config.len()},
        "layers": [{"mediaType": oci::MEDIA_OCI_LAYER, "digest": sha(&layer), "size": layer.len()}],
    }))
    .unwrap();
    let index = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2, "mediaType": oci::MEDIA_OCI_INDEX,
        "manifests": [
            {"mediaType": oci::MEDIA_OCI_MANIFEST, "digest": sha(&manifest), "size": manifest.len(),
             "platform": {"architecture": "amd64", "os": "linux"}},
            {"mediaType": oci::MEDIA_OCI_MANIFEST, "digest": format!("sha256:{}", "1".repeat(64)), "size": 400,
             "platform": {"architecture": "arm64", "os": "linux"}},
        ],
    }))
    .unwrap();
    let top = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{"mediaType": oci::MEDIA_OCI_INDEX, "digest": sha(&index), "size": index.len(),
            "annotations": {oci::ANNOTATION_IMAGE_NAME: name}}],
    }))
    .unwrap();
    let mut b = tar::Builder::new(Vec::new());
    let mut add = |path: String, data: &[u8]| {
        let mut h = tar::Header::new_ustar();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        b.append_data(&mut h, path, data).unwrap();
    };
    add("oci-layout".into(), br#"{"imageLayoutVersion":"1.0.0"}"#);
    for blob in [&layer, &config, &manifest, &index] {
        add(
            format!("blobs/sha256/{}", &sha(blob)["sha256:".len()..]),
            blob,
        );
    }
    add("index.json".into(), &top);
    (b.into_inner().unwrap(), sha(&config))
}

#[test]
fn containerd_imports_the_present_platform_of_a_partial_multi_platform_archive() {
    let Some((ctr, _guard)) = ctr() else { return };
    let name = format!("imgkit.test/archive/{}-partial:multi", std::process::id());
    let (bytes, config) = partial_multi_platform(&name);
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("partial.tar");
    std::fs::write(&src, bytes).unwrap();
    let archive = Archive::open(&src).unwrap();
    assert_eq!(archive.images()[0].missing_platforms.len(), 1);
    assert_eq!(archive.images()[0].id().to_string(), config);

    // The subset names only content it holds: ctr imports it (no "content digest … not found").
    let sub = dir.path().join("sub.tar");
    let mut w = SubsetWriter::new(&archive);
    w.select(&r(&name)).unwrap();
    w.write(std::fs::File::create(&sub).unwrap()).unwrap();
    let _ = run(&mut with(&ctr, &["images", "rm", &name]));
    ok(&mut with(
        &ctr,
        &["images", "import", sub.to_str().unwrap()],
    ));
    let listing = ok(&mut with(&ctr, &["images", "ls"]));
    let row = listing
        .lines()
        .find(|l| l.starts_with(&format!("{name} ")))
        .expect("imported under its name");
    assert!(row.contains("linux/amd64"), "{row}");
    let _ = run(&mut with(&ctr, &["images", "rm", &name]));
}
