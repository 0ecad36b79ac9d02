//! Library round trips: write images, read them back, subset them, verify them.

use imgkit_archive::{
    Archive, Compression, NewImage, SubsetWriter, layer_tar, verify, write_images,
};
use imgkit_types::ImageRef;

fn r(s: &str) -> ImageRef {
    s.parse().unwrap()
}

fn sample() -> Vec<NewImage> {
    let base = layer_tar(&[("etc/os-release", b"ID=imgkit\n")]);
    let app = layer_tar(&[("app/hello.txt", b"hello\n")]);
    let tool = layer_tar(&[("bin/tool", b"#!/bin/true\n")]);
    vec![
        NewImage {
            names: vec![
                r("example.com/team/app:1.0"),
                r("example.com/team/app:latest"),
            ],
            created: "2026-11-28T06:34:53Z".into(),
            layers: vec![base.clone(), app],
            run_config: serde_json::json!({"Cmd": ["/bin/true"]}),
        },
        NewImage {
            names: vec![r("tools:2")],
            created: "2026-01-02T03:04:05.5+01:00".into(),
            layers: vec![base, tool],
            run_config: serde_json::json!({}),
        },
    ]
}

#[test]
fn writes_lists_subsets_and_verifies() {
    let dir = tempfile::tempdir().unwrap();
    for c in [Compression::None, Compression::Gzip, Compression::Zstd] {
        let all = dir.path().join(format!("all.tar{}", c.suffix()));
        write_images(&sample(), std::fs::File::create(&all).unwrap(), c).unwrap();
        let archive = Archive::open(&all).unwrap();
        assert_eq!(archive.compression(), c);
        let recs = archive.records_at(1_800_000_000);
        let names: Vec<String> = recs
            .iter()
            .map(|x| format!("{}:{}", x.repository, x.tag))
            .collect();
        assert_eq!(
            names,
            [
                "example.com/team/app:1.0",
                "example.com/team/app:latest",
                "tools:2"
            ]
        );
        assert_eq!(recs[0].created_at, "2026-11-28 06:34:53 +0000 UTC");
        assert_eq!(recs[2].created_at, "2026-01-02 02:04:05 +0000 UTC");
        assert_eq!(recs[0].id.len(), 12);
        let report = verify(&all).unwrap();
        assert_eq!(report.images, 2);

        let sub = dir.path().join(format!("sub.tar{}", c.suffix()));
        let mut w = SubsetWriter::new(&archive);
        w.select(&r("tools:2")).unwrap().compression(c);
        let summary = w.write(std::fs::File::create(&sub).unwrap()).unwrap();
        assert_eq!(summary.images, 1);
        let sub_archive = Archive::open(&sub).unwrap();
        let recs2 = sub_archive.records_at(1_800_000_000);
        assert_eq!(recs2.len(), 1);
        assert_eq!(recs2[0], recs[2]);
        verify(&sub).unwrap();
    }
}

#[test]
fn subset_of_a_subset_is_identical() {
    let dir = tempfile::tempdir().unwrap();
    let all = dir.path().join("all.tar");
    write_images(
        &sample(),
        std::fs::File::create(&all).unwrap(),
        Compression::None,
    )
    .unwrap();
    let archive = Archive::open(&all).unwrap();
    let mut a = Vec::new();
    SubsetWriter::new(&archive)
        .select_all()
        .write(&mut a)
        .unwrap();
    let once = dir.path().join("once.tar");
    std::fs::write(&once, &a).unwrap();
    let mut b = Vec::new();
    SubsetWriter::new(&Archive::open(&once).unwrap())
        .select_all()
        .write(&mut b)
        .unwrap();
    assert_eq!(a, b);
}

#[test]
fn reads_streams_in_one_pass() {
    let mut bytes = Vec::new();
    write_images(&sample(), &mut bytes, Compression::Zstd).unwrap();
    let archive = Archive::from_reader(
        std::io::Cursor::new(bytes.clone()),
        imgkit_archive::Limits::default(),
    )
    .unwrap();
    assert_eq!(archive.images().len(), 2);
    imgkit_archive::verify_reader(
        std::io::Cursor::new(bytes),
        imgkit_archive::Limits::default(),
    )
    .unwrap();
}

#[test]
fn selecting_by_digest_keeps_a_digest_reference() {
    let dir = tempfile::tempdir().unwrap();
    let all = dir.path().join("all.tar");
    write_images(
        &sample(),
        std::fs::File::create(&all).unwrap(),
        Compression::None,
    )
    .unwrap();
    let archive = Archive::open(&all).unwrap();
    let id = archive.images()[1].id().clone();
    let by_digest = r(&format!("tools@{id}"));
    let mut out = Vec::new();
    SubsetWriter::new(&archive)
        .select(&by_digest)
        .unwrap()
        .write(&mut out)
        .unwrap();
    let sub =
        Archive::from_reader(std::io::Cursor::new(out), imgkit_archive::Limits::default()).unwrap();
    assert_eq!(sub.images().len(), 1);
    assert_eq!(sub.images()[0].names, [by_digest.normalized()]);
    let rec = &sub.records_at(0)[0];
    assert_eq!(
        (
            rec.repository.as_str(),
            rec.tag.as_str(),
            rec.digest.as_str()
        ),
        ("tools", "<none>", id.as_str())
    );
    assert!(SubsetWriter::new(&archive).select(&r("nope:1")).is_err());
}
