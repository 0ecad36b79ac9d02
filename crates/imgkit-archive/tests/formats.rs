//! Layouts beyond imgkit's own: Docker ≤24 saves (layer directories, symlinked shared
//! layers), multi-platform indexes with platforms missing, and OCI layout directories.

use imgkit_archive::{Archive, SubsetWriter, layer_tar, oci, verify};
use sha2::{Digest as _, Sha256};

fn sha(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    Sha256::digest(bytes)
        .iter()
        .fold(String::new(), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

struct TarBuilder(tar::Builder<Vec<u8>>);

impl TarBuilder {
    fn new() -> Self {
        Self(tar::Builder::new(Vec::new()))
    }

    fn file(&mut self, name: &str, data: &[u8]) -> &mut Self {
        let mut h = tar::Header::new_ustar();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_entry_type(tar::EntryType::Regular);
        self.0.append_data(&mut h, name, data).unwrap();
        self
    }

    fn dir(&mut self, name: &str) -> &mut Self {
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(tar::EntryType::Directory);
        h.set_mode(0o755);
        h.set_size(0);
        self.0.append_data(&mut h, name, &[][..]).unwrap();
        self
    }

    fn symlink(&mut self, name: &str, target: &str) -> &mut Self {
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_size(0);
        self.0.append_link(&mut h, name, target).unwrap();
        self
    }

    fn finish(self) -> Vec<u8> {
        self.0.into_inner().unwrap()
    }
}

fn config(diff_ids: &[&str], arch: &str) -> Vec<u8> {
    let ids: Vec<String> = diff_ids.iter().map(|d| format!("sha256:{d}")).collect();
    serde_json::to_vec(&serde_json::json!({
        "architecture": arch, "os": "linux", "created": "2026-11-28T06:34:53.123456789Z",
        "rootfs": {"type": "layers", "diff_ids": ids}
    }))
    .unwrap()
}

#[test]
fn reads_a_docker_24_save_with_a_symlinked_shared_layer() {
    let base = layer_tar(&[("etc/base", b"base\n")]);
    let top = layer_tar(&[("app", b"app\n")]);
    let (b, t) = (sha(&base), sha(&top));
    let cfg1 = config(&[&b], "amd64");
    let cfg2 = config(&[&b, &t], "amd64");
    let (c1, c2) = (sha(&cfg1), sha(&cfg2));
    let manifest = serde_json::json!([
        {"Config": format!("{c1}.json"), "RepoTags": ["base:1"], "Layers": ["aaa/layer.tar"]},
        {"Config": format!("{c2}.json"), "RepoTags": ["app:2", "app:latest"], "Layers": ["bbb/layer.tar", "ccc/layer.tar"]},
    ]);
    let mut tb = TarBuilder::new();
    tb.dir("aaa/")
        .file("aaa/VERSION", b"1.0")
        .file("aaa/json", b"{}")
        .file("aaa/layer.tar", &base)
        .dir("bbb/")
        .symlink("bbb/layer.tar", "../aaa/layer.tar")
        .dir("ccc/")
        .file("ccc/layer.tar", &top)
        .file(&format!("{c1}.json"), &cfg1)
        .file(&format!("{c2}.json"), &cfg2)
        .file("manifest.json", &serde_json::to_vec(&manifest).unwrap())
        .file("repositories", br#"{"base":{"1":"aaa"}}"#);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("d24.tar");
    std::fs::write(&path, tb.finish()).unwrap();

    let archive = Archive::open(&path).unwrap();
    let rows: Vec<(String, String, String)> = archive
        .records_at(1_800_000_000)
        .into_iter()
        .map(|r| (format!("{}:{}", r.repository, r.tag), r.id, r.created_at))
        .collect();
    assert_eq!(
        rows,
        [
            (
                "base:1".into(),
                c1[..12].to_owned(),
                "2026-11-28 06:34:53 +0000 UTC".into()
            ),
            (
                "app:2".into(),
                c2[..12].to_owned(),
                "2026-11-28 06:34:53 +0000 UTC".into()
            ),
            (
                "app:latest".into(),
                c2[..12].to_owned(),
                "2026-11-28 06:34:53 +0000 UTC".into()
            ),
        ]
    );
    let report = verify(&path).unwrap();
    assert_eq!(report.images, 2);

    // A subset of both: the shared layer once, under its digest.
    let mut out = Vec::new();
    let summary = SubsetWriter::new(&archive)
        .select_all()
        .write(&mut out)
        .unwrap();
    assert_eq!(
        summary.blobs,
        2 + 2 + 2,
        "2 layers, 2 configs, 2 synthesized manifests"
    );
    let sub = dir.path().join("sub.tar");
    std::fs::write(&sub, &out).unwrap();
    verify(&sub).unwrap();
    let again = Archive::open(&sub).unwrap();
    assert_eq!(
        again.records_at(1_800_000_000),
        archive.records_at(1_800_000_000)
    );

    // A layer whose bytes don't match the config's diff_id is named by verify.
    let bad = dir.path().join("bad.tar");
    let mut tb = TarBuilder::new();
    tb.file("aaa/layer.tar", &top)
        .file(&format!("{c1}.json"), &cfg1)
        .file(
            "manifest.json",
            &serde_json::to_vec(&serde_json::json!([manifest[0]])).unwrap(),
        );
    std::fs::write(&bad, tb.finish()).unwrap();
    let err = verify(&bad).unwrap_err().to_string();
    assert!(err.contains("aaa/layer.tar"), "{err}");
}

#[test]
fn a_multi_platform_index_with_a_missing_platform_is_listed_and_subset_to_what_is_present() {
    let layer = layer_tar(&[("x", b"x\n")]);
    let l = sha(&layer);
    let cfg = config(&[&l], "amd64");
    let c = sha(&cfg);
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2, "mediaType": oci::MEDIA_OCI_MANIFEST,
        "config": {"mediaType": oci::MEDIA_OCI_CONFIG, "digest": format!("sha256:{c}"), "size": cfg.len()},
        "layers": [{"mediaType": oci::MEDIA_OCI_LAYER, "digest": format!("sha256:{l}"), "size": layer.len()}],
    }))
    .unwrap();
    let m = sha(&manifest);
    let absent = "0".repeat(64);
    let index = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2, "mediaType": oci::MEDIA_OCI_INDEX,
        "manifests": [
            {"mediaType": oci::MEDIA_OCI_MANIFEST, "digest": format!("sha256:{m}"), "size": manifest.len(),
             "platform": {"architecture": "amd64", "os": "linux"}},
            {"mediaType": oci::MEDIA_OCI_MANIFEST, "digest": format!("sha256:{absent}"), "size": 500,
             "platform": {"architecture": "arm64", "os": "linux", "variant": "v8"}},
        ],
    }))
    .unwrap();
    let i = sha(&index);
    let top = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{"mediaType": oci::MEDIA_OCI_INDEX, "digest": format!("sha256:{i}"), "size": index.len(),
            "annotations": {oci::ANNOTATION_IMAGE_NAME: "docker.io/library/multi:1", oci::ANNOTATION_REF_NAME: "1"}}],
    }))
    .unwrap();
    let mut tb = TarBuilder::new();
    tb.file("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#)
        .file(&format!("blobs/sha256/{l}"), &layer)
        .file(&format!("blobs/sha256/{c}"), &cfg)
        .file(&format!("blobs/sha256/{m}"), &manifest)
        .file(&format!("blobs/sha256/{i}"), &index)
        .file("index.json", &top);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("multi.tar");
    std::fs::write(&path, tb.finish()).unwrap();

    let archive = Archive::open(&path).unwrap();
    let image = &archive.images()[0];
    assert_eq!(image.platforms.len(), 1);
    assert_eq!(image.missing_platforms.len(), 1);
    assert_eq!(
        image.missing_platforms[0]
            .platform
            .as_ref()
            .unwrap()
            .to_string(),
        "linux/arm64/v8"
    );
    assert_eq!(image.ref_names, ["1"]);
    let recs = archive.records_at(1_800_000_000);
    assert_eq!(
        (recs[0].repository.as_str(), recs[0].tag.as_str()),
        ("multi", "1")
    );
    assert_eq!(verify(&path).unwrap().missing_platforms.len(), 1);
    assert!(
        archive
            .find(&format!("multi@sha256:{i}").parse().unwrap())
            .is_some()
    );

    // The subset points at the present platform's manifest, not at an index naming absent content.
    let mut out = Vec::new();
    SubsetWriter::new(&archive)
        .select_all()
        .write(&mut out)
        .unwrap();
    let sub = dir.path().join("sub.tar");
    std::fs::write(&sub, &out).unwrap();
    let again = Archive::open(&sub).unwrap();
    assert_eq!(again.images()[0].target.as_ref().unwrap().digest.hex(), m);
    assert!(again.images()[0].missing_platforms.is_empty());
    verify(&sub).unwrap();
}

#[test]
fn reads_an_oci_layout_directory() {
    let dir = tempfile::tempdir().unwrap();
    let mut bytes = Vec::new();
    imgkit_archive::write_images(
        &imgkit_archive::sample::images(),
        &mut bytes,
        imgkit_archive::Compression::None,
    )
    .unwrap();
    let layout = dir.path().join("layout");
    tar::Archive::new(&bytes[..]).unpack(&layout).unwrap();
    let from_dir = Archive::open(&layout).unwrap();
    let from_tar = Archive::from_reader(
        std::io::Cursor::new(bytes),
        imgkit_archive::Limits::default(),
    )
    .unwrap();
    assert_eq!(from_dir.records_at(0), from_tar.records_at(0));
    verify(&layout).unwrap();
    let mut out = Vec::new();
    SubsetWriter::new(&from_dir)
        .select_all()
        .write(&mut out)
        .unwrap();

    // A symlink that leaves the layout is refused.
    #[cfg(unix)]
    {
        std::os::unix::fs::symlink("../../../etc/passwd", layout.join("blobs/sha256/evil"))
            .unwrap();
        let err = Archive::open(&layout).unwrap_err().to_string();
        assert!(err.contains("outside"), "{err}");
    }
}
