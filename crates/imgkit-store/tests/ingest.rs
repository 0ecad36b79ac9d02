//! Streams into stores and stores into streams: an image tar read once into a layout
//! directory (the OCI shape imgkit and docker ≥25 write, and docker ≤24's legacy shape with
//! `layer.tar`s named by no digest), a store's images written back as a tar, and a
//! multi-platform index kept whole.

use std::fs;
use std::io::Cursor;
use std::path::Path;

use imgkit_archive::{Compression, NewImage, layer_tar, write_images};
use imgkit_store::{ArchiveSource, Destination, Error, LayoutDir, Source, copy, ingest, write_tar};
use imgkit_types::ImageRef;
use sha2::Digest as _;

fn image(name: &str, shared: &[u8], own: &[u8]) -> NewImage {
    NewImage {
        names: vec![ImageRef::parse(name).unwrap()],
        created: "2024-01-01T00:00:00Z".into(),
        layers: vec![layer_tar(&[("shared", shared)]), layer_tar(&[("own", own)])],
        run_config: serde_json::json!({"Cmd": ["/own"]}),
    }
}

fn oci_stream() -> Vec<u8> {
    let mut out = Vec::new();
    write_images(
        &[
            image("example.com/a:1", b"base", b"a"),
            image("example.com/b:1", b"base", b"b"),
        ],
        &mut out,
        Compression::None,
    )
    .unwrap();
    out
}

fn hex(bytes: &[u8]) -> String {
    sha2::Sha256::digest(bytes)
        .iter()
        .fold(String::new(), |mut s, b| {
            use std::fmt::Write as _;
            let _ = write!(s, "{b:02x}");
            s
        })
}

fn blob_files(layout: &Path) -> usize {
    fs::read_dir(layout.join("blobs/sha256"))
        .unwrap()
        .filter(|e| {
            !e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with('.')
        })
        .count()
}

#[test]
fn an_oci_stream_goes_into_a_layout_blob_by_blob_and_a_repeat_writes_none() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("oci");
    let mut dst = LayoutDir::create(&dir).unwrap();
    let got = ingest(Cursor::new(oci_stream()), &mut dst, "a stream").unwrap();
    assert_eq!(got.images.len(), 2);
    // 2 configs, 3 distinct layers, 2 manifests.
    assert_eq!(got.report.blobs_written, 7, "{:?}", got.report);
    assert_eq!(got.report.blobs_skipped, 0, "{:?}", got.report);
    dst.commit(&got.images).unwrap();
    assert_eq!(blob_files(&dir), 7);
    let back = ArchiveSource::open(&dir).unwrap();
    let mut ids: Vec<_> = back.image_ids().unwrap();
    let mut want: Vec<_> = got.images.iter().map(|i| i.id().clone()).collect();
    ids.sort();
    want.sort();
    assert_eq!(ids, want);

    let again = ingest(Cursor::new(oci_stream()), &mut dst, "a stream").unwrap();
    assert_eq!(again.report.blobs_written, 0, "{:?}", again.report);
    assert_eq!(again.report.blobs_skipped, 7, "{:?}", again.report);
}

/// A docker ≤24 `docker save`: `<id>/layer.tar` (named by no digest), `<id>/json`,
/// `<config hex>.json`, `manifest.json`, `repositories`; layers before the config, as a
/// lexical walk may give them.
fn legacy_stream(layers: &[Vec<u8>], damage: bool) -> (Vec<u8>, String) {
    let diff_ids: Vec<String> = layers
        .iter()
        .map(|l| format!("sha256:{}", hex(l)))
        .collect();
    let config = serde_json::json!({
        "architecture": "amd64", "os": "linux", "created": "2024-01-01T00:00:00Z",
        "config": {}, "rootfs": {"type": "layers", "diff_ids": diff_ids},
    });
    let config = serde_json::to_vec(&config).unwrap();
    let config_hex = hex(&config);
    let mut b = tar::Builder::new(Vec::new());
    let mut add = |name: &str, data: &[u8]| {
        let mut h = tar::Header::new_ustar();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        b.append_data(&mut h, name, data).unwrap();
    };
    let mut paths = Vec::new();
    for (i, l) in layers.iter().enumerate() {
        let id = format!("{:064x}", i + 1);
        let mut bytes = l.clone();
        if damage && i == 0 {
            let n = bytes.len() / 2;
            bytes[n] ^= 1;
        }
        add(&format!("{id}/VERSION"), b"1.0");
        add(&format!("{id}/json"), br#"{"id":"x"}"#);
        add(&format!("{id}/layer.tar"), &bytes);
        paths.push(format!("{id}/layer.tar"));
    }
    add(&format!("{config_hex}.json"), &config);
    let manifest = serde_json::json!([{
        "Config": format!("{config_hex}.json"),
        "RepoTags": ["example.com/legacy:1"],
        "Layers": paths,
    }]);
    add("manifest.json", &serde_json::to_vec(&manifest).unwrap());
    add("repositories", br#"{"example.com/legacy":{"1":"x"}}"#);
    (b.into_inner().unwrap(), format!("sha256:{config_hex}"))
}

#[test]
fn a_legacy_docker_save_is_hashed_as_it_streams_and_checked_against_its_config() {
    let layers = vec![
        layer_tar(&[("bin/a", &[7u8; 70_000][..])]),
        layer_tar(&[("etc/b", b"b")]),
    ];
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("oci");
    let mut dst = LayoutDir::create(&dir).unwrap();
    let (stream, id) = legacy_stream(&layers, false);
    let got = ingest(Cursor::new(stream.clone()), &mut dst, "docker").unwrap();
    assert_eq!(got.images.len(), 1);
    assert_eq!(got.images[0].id().to_string(), id);
    // 2 layers, the config, a manifest made up for it.
    assert_eq!(got.report.blobs_written, 4, "{:?}", got.report);
    assert_eq!(got.report.blobs_skipped, 0, "{:?}", got.report);
    dst.commit(&got.images).unwrap();
    let back = ArchiveSource::open(&dir).unwrap();
    assert_eq!(back.image_ids().unwrap()[0].to_string(), id);
    for l in &layers {
        assert!(dir.join("blobs/sha256").join(hex(l)).is_file());
    }
    // Nothing temporary is left beside the blobs.
    assert_eq!(fs::read_dir(dir.join("blobs/sha256")).unwrap().count(), 4);
    let again = ingest(Cursor::new(stream), &mut dst, "docker").unwrap();
    assert_eq!(again.report.blobs_written, 0, "{:?}", again.report);
    assert_eq!(again.report.blobs_skipped, 4, "{:?}", again.report);

    // A layer that is not the one its config names is refused.
    let other = tmp.path().join("other");
    let mut dst = LayoutDir::create(&other).unwrap();
    let (damaged, _) = legacy_stream(&layers, true);
    let err = ingest(Cursor::new(damaged), &mut dst, "docker").unwrap_err();
    assert!(matches!(err, Error::LayerMismatch { .. }), "{err}");
}

#[test]
fn a_stream_cut_short_is_an_error() {
    let tmp = tempfile::tempdir().unwrap();
    let mut dst = LayoutDir::create(&tmp.path().join("oci")).unwrap();
    let mut s = oci_stream();
    s.truncate(s.len() / 2);
    assert!(ingest(Cursor::new(s), &mut dst, "a stream").is_err());
}

#[test]
fn a_store_written_as_a_tar_reads_back_the_same() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("oci");
    let mut dst = LayoutDir::create(&dir).unwrap();
    let got = ingest(Cursor::new(oci_stream()), &mut dst, "a stream").unwrap();
    dst.commit(&got.images).unwrap();
    let src = ArchiveSource::open(&dir).unwrap();
    let images = src.images().unwrap();
    let tar = tmp.path().join("out.tar");
    write_tar(
        &src,
        &images,
        fs::File::create(&tar).unwrap(),
        Compression::None,
    )
    .unwrap();
    let back = ArchiveSource::open(&tar).unwrap();
    let back = back.images().unwrap();
    assert_eq!(back.len(), 2);
    for (a, b) in images.iter().zip(&back) {
        assert_eq!(a.manifest, b.manifest);
        assert_eq!(a.names, b.names);
    }
}

/// A layout holding one image as a two-platform index (the same layers, two configs).
fn two_platform(dir: &Path) -> imgkit_types::Digest {
    let tmp = tempfile::tempdir().unwrap();
    let single = tmp.path().join("single");
    let mut dst = LayoutDir::create(&single).unwrap();
    let got = ingest(Cursor::new(oci_stream()), &mut dst, "a stream").unwrap();
    dst.commit(&got.images).unwrap();
    let one = &got.images[0];
    fs::create_dir_all(dir.join("blobs/sha256")).unwrap();
    fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    let put = |bytes: &[u8]| {
        let h = hex(bytes);
        fs::write(dir.join("blobs/sha256").join(&h), bytes).unwrap();
        (format!("sha256:{h}"), bytes.len())
    };
    let copy_blob = |d: &imgkit_types::Digest| {
        fs::copy(
            single.join("blobs/sha256").join(d.hex()),
            dir.join("blobs/sha256").join(d.hex()),
        )
        .unwrap();
    };
    let config: serde_json::Value = serde_json::from_slice(
        &fs::read(single.join("blobs/sha256").join(one.config.digest.hex())).unwrap(),
    )
    .unwrap();
    let manifest: serde_json::Value = serde_json::from_slice(&one.manifest_bytes).unwrap();
    let mut children = Vec::new();
    for arch in ["amd64", "arm64"] {
        let mut c = config.clone();
        c["architecture"] = serde_json::json!(arch);
        let (cd, cs) = put(&serde_json::to_vec(&c).unwrap());
        let mut m = manifest.clone();
        m["config"]["digest"] = serde_json::json!(cd);
        m["config"]["size"] = serde_json::json!(cs);
        for l in &one.layers {
            copy_blob(&l.digest);
        }
        let (md, ms) = put(&serde_json::to_vec(&m).unwrap());
        children.push(serde_json::json!({
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": md, "size": ms,
            "platform": {"architecture": arch, "os": "linux"},
        }));
    }
    let (id, is) = put(&serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": children,
    }))
    .unwrap());
    let name = "example.com/multi:1";
    fs::write(
        dir.join("index.json"),
        serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "manifests": [{
                "mediaType": "application/vnd.oci.image.index.v1+json",
                "digest": id, "size": is,
                "annotations": {"io.containerd.image.name": name, "org.opencontainers.image.ref.name": name},
            }],
        }))
        .unwrap(),
    )
    .unwrap();
    id.parse().unwrap()
}

#[test]
fn a_two_platform_index_is_kept_whole_through_a_layout_and_a_tar() {
    let tmp = tempfile::tempdir().unwrap();
    let from = tmp.path().join("multi");
    let index = two_platform(&from);
    let src = ArchiveSource::open(&from).unwrap();
    let images = src.images().unwrap();
    assert_eq!(images.len(), 1);
    assert!(images[0].is_index());
    assert_eq!(images[0].manifest.digest, index);
    assert_eq!(images[0].platforms.len(), 2);
    // The index, 2 manifests, 2 configs, 2 layers.
    let to = tmp.path().join("copy");
    let mut dst = LayoutDir::create(&to).unwrap();
    let report = copy(&src, &mut dst, &images).unwrap();
    assert_eq!(report.blobs_written, 7, "{report:?}");
    let back = ArchiveSource::open(&to).unwrap().images().unwrap();
    assert_eq!(back[0].manifest.digest, index);
    assert_eq!(back[0].platforms, images[0].platforms);

    // Through a tar (what an engine load or an archive file gets) and into a layout again.
    let mut tar = Vec::new();
    write_tar(&src, &images, &mut tar, Compression::None).unwrap();
    let again = tmp.path().join("again");
    let mut dst = LayoutDir::create(&again).unwrap();
    let got = ingest(Cursor::new(tar), &mut dst, "a tar").unwrap();
    assert_eq!(got.images[0].manifest.digest, index);
    assert_eq!(got.report.blobs_written, 7, "{:?}", got.report);
}
