//! The registry store against a real registry: Debian's `docker-registry` (distribution 2.8),
//! started by each test on a free loopback port with its storage in a temporary directory.
//! Without `docker-registry` on PATH the tests say so and pass, except under CI=true, where a
//! missing registry fails them.

use std::io::Read as _;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use imgkit_archive::{Compression, write_images};
use imgkit_registry::{Compress, Options, Registry, RegistrySpec};
use imgkit_store::{ArchiveSource, Destination, LayoutDir, Source, StoredImage, copy};

/// A docker-registry process, killed when dropped.
struct Served {
    child: Child,
    dir: tempfile::TempDir,
    port: u16,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn serve() -> Option<Served> {
    if Command::new("docker-registry")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_err()
    {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "docker-registry is not installed (apt-get install docker-registry)"
        );
        eprintln!("skipped: docker-registry is not installed");
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = dir.path().join("config.yml");
    std::fs::write(
        &config,
        format!(
            "version: 0.1\nlog: {{level: error, accesslog: {{disabled: true}}}}\nstorage:\n  filesystem: {{rootdirectory: \"{}\"}}\n  delete: {{enabled: true}}\nhttp:\n  addr: 127.0.0.1:{port}\n",
            dir.path().join("store").display()
        ),
    )
    .unwrap();
    let child = Command::new("docker-registry")
        .arg("serve")
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let served = Served { child, dir, port };
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "docker-registry did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    Some(served)
}

/// One cache for the tests of this binary, not the user's.
fn cache_dir() -> PathBuf {
    static DIR: std::sync::OnceLock<tempfile::TempDir> = std::sync::OnceLock::new();
    DIR.get_or_init(|| tempfile::tempdir().unwrap())
        .path()
        .to_owned()
}

fn registry(s: &Served, compress: Compress) -> Registry {
    registry_cached(s, compress, cache_dir())
}

fn registry_cached(s: &Served, compress: Compress, cache: PathBuf) -> Registry {
    let spec = RegistrySpec::parse(&format!("registry:127.0.0.1:{}", s.port)).unwrap();
    Registry::open(
        &spec,
        Options {
            compress,
            cache_dir: Some(cache),
            ..Options::default()
        },
    )
    .unwrap()
}

/// The sample images as an OCI archive (uncompressed layers, as docker 25 saves them).
fn sample_archive(dir: &Path) -> PathBuf {
    let path = dir.join("sample.tar");
    let f = std::fs::File::create(&path).unwrap();
    write_images(&imgkit_archive::sample::images(), f, Compression::None).unwrap();
    path
}

fn named(reg: &Registry, images: Vec<StoredImage>) -> Vec<StoredImage> {
    images
        .into_iter()
        .filter(|i| !i.names.is_empty())
        .map(|mut i| {
            i.names = imgkit_registry::target_names(reg.spec(), &i.names).unwrap();
            i
        })
        .collect()
}

fn push(reg: &Registry, src: &dyn Source, images: &[StoredImage]) -> imgkit_registry::PushStats {
    let mut dest = reg.destination().unwrap();
    dest.expect(images).unwrap();
    if let Err(e) = copy(src, &mut dest, images) {
        panic!("{e}: {:?}", dest.take_error());
    }
    let held = dest.image_ids().unwrap();
    for i in images {
        assert!(held.contains(i.id()), "{} not held", i.id());
    }
    dest.stats()
}

#[test]
fn pushed_manifests_come_back_byte_for_byte_and_a_repeat_sends_nothing() {
    let Some(s) = serve() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let src = ArchiveSource::open(&sample_archive(tmp.path())).unwrap();
    let reg = registry(&s, Compress::None);
    let images = named(&reg, src.images().unwrap());
    assert_eq!(images.len(), 3);
    let first = push(&reg, &src, &images);
    // 4 distinct layers + 3 configs; the shared base goes up once and is mounted twice.
    assert_eq!(first.blobs_uploaded, 7, "{first:?}");
    assert_eq!(first.blobs_mounted, 2, "{first:?}");
    assert!(first.manifests_made.is_empty(), "{first:?}");
    let again = push(&reg, &src, &images);
    assert_eq!(
        (again.blobs_uploaded, again.bytes_uploaded),
        (0, 0),
        "{again:?}"
    );

    // Listed as records, and pulled into a layout with the same manifests.
    let pulled = reg.source().unwrap();
    let records = pulled.records();
    let hello = records
        .iter()
        .find(|r| r.repository == format!("127.0.0.1:{}/hello", s.port))
        .unwrap_or_else(|| panic!("{records:?}"));
    assert_eq!(hello.tag, "1.0");
    let pimages = pulled.images().unwrap();
    for i in &images {
        let p = pimages
            .iter()
            .find(|p| p.manifest.digest == i.manifest.digest)
            .expect("same manifest digest");
        assert_eq!(p.manifest_bytes, i.manifest_bytes);
        assert_eq!(p.id(), i.id());
        assert!(
            records
                .iter()
                .any(|r| r.digest == i.manifest.digest.to_string() && r.id == i.id().short_id())
        );
    }
    let out = tmp.path().join("out");
    let mut layout = LayoutDir::create(&out).unwrap();
    copy(&pulled, &mut layout, &pimages).unwrap();
    let ids = layout.image_ids().unwrap();
    for i in &images {
        assert!(ids.contains(i.id()));
    }
}

#[test]
fn uncompressed_layers_are_compressed_and_the_made_manifest_is_said() {
    let Some(s) = serve() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let src = ArchiveSource::open(&sample_archive(tmp.path())).unwrap();
    let reg = registry(&s, Compress::Gzip);
    let images = named(&reg, src.images().unwrap());
    let first = push(&reg, &src, &images);
    assert_eq!(first.layers_compressed, 4, "{first:?}");
    assert_eq!(first.manifests_made.len(), 4, "{first:?}");
    let pulled = reg.source().unwrap();
    let pimages = pulled.images().unwrap();
    for p in &pimages {
        let i = images.iter().find(|i| i.id() == p.id()).unwrap();
        assert_ne!(p.manifest.digest, i.manifest.digest);
        assert!(
            p.layers
                .iter()
                .all(|l| l.media_type == "application/vnd.oci.image.layer.v1.tar+gzip")
        );
        assert!(
            first
                .manifests_made
                .iter()
                .any(|(_, d)| d == &p.manifest.digest.to_string())
        );
    }
    // The compressed layers read back as gzip of the same tars (the config's diff_ids hold).
    let mut seen = 0;
    pulled
        .read_blobs(&pimages[0].layers, &mut |_, r| {
            let mut gz = flate2_decoder(r);
            let mut out = Vec::new();
            gz.read_to_end(&mut out).unwrap();
            assert!(out.len() >= 512);
            seen += 1;
            Ok(())
        })
        .unwrap();
    assert_eq!(seen, pimages[0].layers.len());
    // A repeat finds the compressed layers through the cache and HEAD: nothing is sent.
    let again = push(&reg, &src, &images);
    assert_eq!(
        (
            again.blobs_uploaded,
            again.bytes_uploaded,
            again.layers_compressed
        ),
        (0, 0, 0),
        "{again:?}"
    );
}

fn flate2_decoder(r: &mut dyn std::io::Read) -> Box<dyn std::io::Read> {
    // The archive crate decompresses by magic bytes.
    let mut head = Vec::new();
    r.read_to_end(&mut head).unwrap();
    imgkit_archive::decompress(std::io::Cursor::new(head)).unwrap()
}

#[test]
fn a_damaged_blob_in_the_registry_is_refused_on_pull() {
    let Some(s) = serve() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let src = ArchiveSource::open(&sample_archive(tmp.path())).unwrap();
    let reg = registry(&s, Compress::None);
    let images = named(&reg, src.images().unwrap());
    push(&reg, &src, &images);
    // Flip bytes of one layer in the registry's own storage (same length).
    let layer = &images[0].layers[1];
    let data = s
        .dir
        .path()
        .join("store/docker/registry/v2/blobs/sha256")
        .join(&layer.digest.hex()[..2])
        .join(layer.digest.hex())
        .join("data");
    let mut bytes = std::fs::read(&data).unwrap();
    let n = bytes.len();
    bytes[n - 600] ^= 0xff;
    std::fs::write(&data, bytes).unwrap();
    let pulled = reg.source().unwrap();
    let pimages = pulled.images().unwrap();
    // The reader itself refuses it: read to the end into nothing, it ends in an error.
    let mut refused = None;
    let res = pulled.read_blobs(std::slice::from_ref(layer), &mut |_, r| {
        if let Err(e) = std::io::copy(r, &mut std::io::sink()) {
            refused = Some(e.to_string());
        }
        Ok(())
    });
    assert!(res.is_ok());
    let refused = refused.expect("the damaged blob was read to its end without an error");
    assert!(refused.contains("arrived as"), "{refused}");
    let out = tmp.path().join("out");
    let mut layout = LayoutDir::create(&out).unwrap();
    let err = copy(&pulled, &mut layout, &pimages)
        .unwrap_err()
        .to_string();
    assert!(err.contains(layer.digest.as_str()), "{err}");
    assert!(!out.join("blobs/sha256").join(layer.digest.hex()).exists());
    assert!(layout.image_ids().unwrap().is_empty(), "nothing named");
}

#[test]
fn a_registry_that_is_not_there_is_named() {
    let port = free_port();
    let spec = RegistrySpec::parse(&format!("registry:127.0.0.1:{port}")).unwrap();
    let err = Registry::open(&spec, Options::default()).unwrap_err();
    assert!(
        matches!(err, imgkit_registry::Error::Connect { .. }),
        "{err}"
    );
    assert!(
        err.to_string().contains(&format!("127.0.0.1:{port}")),
        "{err}"
    );
    // A non-loopback host is never spoken to over plain HTTP without being named.
    let spec = RegistrySpec::parse("registry:10.255.255.1:5000").unwrap();
    assert!(!spec.is_loopback());
}

#[test]
fn an_unknown_repository_is_named() {
    let Some(s) = serve() else { return };
    let reg = registry(&s, Compress::None);
    let err = reg
        .source_of(vec!["no/such".into()])
        .unwrap_err()
        .to_string();
    assert!(err.contains("no/such"), "{err}");
    let _ = Destination::describe(&reg.destination().unwrap());
}
