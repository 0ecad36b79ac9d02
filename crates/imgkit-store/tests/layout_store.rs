//! The store interface on real files: archives written by imgkit-archive, copied into OCI
//! layout directories and read back.

use std::fs;
use std::io::Read;
use std::path::Path;

use imgkit_archive::{Compression, NewImage, layer_tar, write_images};
use imgkit_store::{
    ArchiveSource, BlobInfo, Destination, Error, LayoutDir, Source, StoredImage, copy,
};
use imgkit_types::ImageRef;

fn image(name: &str, shared: &[u8], own: &[u8]) -> NewImage {
    NewImage {
        names: vec![ImageRef::parse(name).unwrap()],
        created: "2024-01-01T00:00:00Z".into(),
        layers: vec![layer_tar(&[("shared", shared)]), layer_tar(&[("own", own)])],
        run_config: serde_json::json!({"Cmd": ["/own"]}),
    }
}

fn archive(dir: &Path, images: &[NewImage]) -> std::path::PathBuf {
    let path = dir.join("in.tar");
    write_images(images, fs::File::create(&path).unwrap(), Compression::None).unwrap();
    path
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
fn a_layout_holds_each_blob_once_and_a_repeat_writes_none() {
    let tmp = tempfile::tempdir().unwrap();
    let tar = archive(
        tmp.path(),
        &[
            image("example.com/a:1", b"base", b"a"),
            image("example.com/b:1", b"base", b"b"),
        ],
    );
    let src = ArchiveSource::open(&tar).unwrap();
    let images = src.images().unwrap();
    let dir = tmp.path().join("oci");
    let mut dst = LayoutDir::create(&dir).unwrap();
    let first = copy(&src, &mut dst, &images).unwrap();
    // 2 configs + 3 distinct layers + 2 manifests; the shared base layer once.
    assert_eq!(first.images, 2);
    assert_eq!(first.blobs_written, 7);
    assert_eq!(first.blobs_skipped, 0);
    assert_eq!(blob_files(&dir), 7);
    assert!(dir.join("oci-layout").is_file());

    let again = copy(&src, &mut dst, &images).unwrap();
    assert_eq!(again.blobs_written, 0);
    assert_eq!(again.bytes_written, 0);
    assert_eq!(again.blobs_skipped, 7);

    // Read back through the interface: the same images under the same names.
    let back = ArchiveSource::open(&dir).unwrap();
    let mut ids: Vec<_> = back
        .images()
        .unwrap()
        .iter()
        .map(|i| i.id().clone())
        .collect();
    let mut want: Vec<_> = images.iter().map(|i| i.id().clone()).collect();
    ids.sort();
    want.sort();
    assert_eq!(ids, want);
    let mut names: Vec<String> = back
        .records()
        .iter()
        .map(|r| format!("{}:{}", r.repository, r.tag))
        .collect();
    names.sort();
    assert_eq!(names, ["example.com/a:1", "example.com/b:1"]);
    let mut dst_ids = dst.image_ids().unwrap();
    dst_ids.sort();
    assert_eq!(dst_ids, want);
    // index.json names each image twice over: for skopeo and for containerd.
    let index: serde_json::Value =
        serde_json::from_slice(&fs::read(dir.join("index.json")).unwrap()).unwrap();
    let entries = index["manifests"].as_array().unwrap();
    assert_eq!(entries.len(), 2);
    for e in entries {
        let a = &e["annotations"];
        assert_eq!(
            a["org.opencontainers.image.ref.name"],
            a["io.containerd.image.name"]
        );
    }
}

#[test]
fn a_name_written_again_moves_to_the_new_image() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("oci");
    let mut dst = LayoutDir::create(&dir).unwrap();
    for own in [&b"one"[..], b"two"] {
        let sub = tempfile::tempdir_in(tmp.path()).unwrap();
        let tar = archive(sub.path(), &[image("example.com/a:1", b"base", own)]);
        let src = ArchiveSource::open(&tar).unwrap();
        copy(&src, &mut dst, &src.images().unwrap()).unwrap();
    }
    let back = ArchiveSource::open(&dir).unwrap();
    assert_eq!(back.images().unwrap().len(), 1);
}

/// A source whose blob bytes are not what it described.
struct Lying(ArchiveSource);

impl Source for Lying {
    fn describe(&self) -> String {
        "a damaged source".into()
    }
    fn records(&self) -> Vec<imgkit_types::ImageRecord> {
        self.0.records()
    }
    fn images(&self) -> imgkit_store::Result<Vec<StoredImage>> {
        self.0.images()
    }
    fn read_blobs(
        &self,
        wanted: &[BlobInfo],
        f: &mut dyn FnMut(&BlobInfo, &mut dyn Read) -> imgkit_store::Result<()>,
    ) -> imgkit_store::Result<()> {
        self.0.read_blobs(wanted, &mut |b, r| {
            let mut bytes = Vec::new();
            r.read_to_end(&mut bytes).unwrap();
            if b.media_type.contains("layer") {
                bytes[0] ^= 1;
            }
            f(b, &mut bytes.as_slice())
        })
    }
}

#[test]
fn a_damaged_blob_is_refused_and_nothing_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    let tar = archive(tmp.path(), &[image("example.com/a:1", b"base", b"a")]);
    let src = Lying(ArchiveSource::open(&tar).unwrap());
    let images = src.images().unwrap();
    let dir = tmp.path().join("oci");
    let mut dst = LayoutDir::create(&dir).unwrap();
    let err = copy(&src, &mut dst, &images).unwrap_err();
    assert!(matches!(err, Error::DigestMismatch { .. }), "{err}");
    assert!(!dir.join("index.json").exists());
    // No temporary file and no damaged blob left behind.
    for e in fs::read_dir(dir.join("blobs/sha256")).unwrap() {
        let e = e.unwrap();
        let name = e.file_name().to_string_lossy().into_owned();
        assert!(!name.starts_with('.'), "left {name}");
        assert!(
            images[0].layers.iter().all(|l| l.digest.hex() != name),
            "kept layer {name}"
        );
    }
}

#[test]
fn a_directory_of_other_files_is_not_written_into() {
    let tmp = tempfile::tempdir().unwrap();
    fs::write(tmp.path().join("notes.txt"), b"mine").unwrap();
    let err = LayoutDir::create(tmp.path()).unwrap_err();
    assert!(matches!(err, Error::NotLayout { .. }), "{err}");
}

#[test]
fn concurrent_writers_of_one_layout_lose_no_name() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("oci");
    LayoutDir::create(&dir).unwrap();
    let sources: Vec<ArchiveSource> = (0..8)
        .map(|i| {
            let sub = tmp.path().join(format!("src{i}"));
            fs::create_dir(&sub).unwrap();
            let own = format!("own{i}");
            let tar = archive(
                &sub,
                &[image(
                    &format!("example.com/n{i}:1"),
                    b"base",
                    own.as_bytes(),
                )],
            );
            ArchiveSource::open(&tar).unwrap()
        })
        .collect();
    std::thread::scope(|s| {
        for src in &sources {
            let dir = dir.clone();
            s.spawn(move || {
                let mut dst = LayoutDir::create(&dir).unwrap();
                copy(src, &mut dst, &src.images().unwrap()).unwrap();
            });
        }
    });
    let back = ArchiveSource::open(&dir).unwrap();
    assert_eq!(back.images().unwrap().len(), 8);
}

#[test]
fn a_commit_without_its_blobs_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let tar = archive(tmp.path(), &[image("example.com/a:1", b"base", b"a")]);
    let src = ArchiveSource::open(&tar).unwrap();
    let dir = tmp.path().join("oci");
    let mut dst = LayoutDir::create(&dir).unwrap();
    let err = dst.commit(&src.images().unwrap()).unwrap_err();
    assert!(matches!(err, Error::Incomplete { .. }), "{err}");
    assert!(!dir.join("index.json").exists());
}

#[test]
fn a_layout_copied_into_another_keeps_its_manifests() {
    let tmp = tempfile::tempdir().unwrap();
    let tar = archive(tmp.path(), &[image("example.com/a:1", b"base", b"a")]);
    let src = ArchiveSource::open(&tar).unwrap();
    let one = tmp.path().join("one");
    copy(
        &src,
        &mut LayoutDir::create(&one).unwrap(),
        &src.images().unwrap(),
    )
    .unwrap();
    let from = ArchiveSource::open(&one).unwrap();
    let images = from.images().unwrap();
    let two = tmp.path().join("two");
    let report = copy(&from, &mut LayoutDir::create(&two).unwrap(), &images).unwrap();
    assert_eq!(report.blobs_written, 4);
    assert_eq!(
        fs::read(one.join("index.json")).unwrap(),
        fs::read(two.join("index.json")).unwrap()
    );
    assert_eq!(ArchiveSource::open(&two).unwrap().images().unwrap(), images);
}

#[test]
fn a_layout_tags_and_untags_without_copying_and_names_what_it_holds() {
    let tmp = tempfile::tempdir().unwrap();
    let tar = archive(tmp.path(), &[image("example.com/a:1", b"base", b"a")]);
    let src = ArchiveSource::open(&tar).unwrap();
    let images = src.images().unwrap();
    let dir = tmp.path().join("oci");
    let mut dst = LayoutDir::create(&dir).unwrap();
    copy(&src, &mut dst, &images).unwrap();
    let id = images[0].id().clone();
    let p = |s: &str| ImageRef::parse(s).unwrap().normalized();
    dst.tag(&images[0].manifest.digest, &p("example.com/b:2"))
        .unwrap();
    let mut names = dst.names().unwrap();
    names.sort_by_key(|(n, _)| n.to_string());
    assert_eq!(
        names,
        [
            (p("example.com/a:1"), id.clone()),
            (p("example.com/b:2"), id.clone())
        ]
    );
    dst.untag(&p("example.com/a:1")).unwrap();
    assert_eq!(dst.names().unwrap(), [(p("example.com/b:2"), id)]);
    // An image it does not hold cannot be tagged.
    assert!(matches!(
        dst.tag(&images[0].layers[0].digest, &p("example.com/c:3")),
        Err(Error::NoSuchImage { .. })
    ));
}

#[test]
fn a_killed_writers_temporary_file_is_swept_and_a_live_ones_is_not() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("oci");
    LayoutDir::create(&dir).unwrap();
    let blobs = dir.join("blobs/sha256");
    let dead = blobs.join(".hashing.imgkit-1-0.tmp");
    let live = blobs.join(".hashing.imgkit-2-0.tmp");
    let young = blobs.join(".hashing.imgkit-3-0.tmp");
    let old = std::time::SystemTime::now() - std::time::Duration::from_hours(1);
    for (path, text) in [(&dead, "half a layer"), (&live, "being written")] {
        fs::write(path, text).unwrap();
        let f = fs::OpenOptions::new().write(true).open(path).unwrap();
        f.set_modified(old).unwrap();
    }
    fs::write(&young, b"just created").unwrap();
    let writer = fs::OpenOptions::new().write(true).open(&live).unwrap();
    writer.lock().unwrap();
    LayoutDir::create(&dir).unwrap();
    assert!(!dead.exists(), "nobody holds it: swept");
    assert!(live.exists(), "its writer holds it: kept");
    assert!(
        young.exists(),
        "its writer may not have locked it yet: kept"
    );
    drop(writer);
    LayoutDir::create(&dir).unwrap();
    assert!(!live.exists());
}
