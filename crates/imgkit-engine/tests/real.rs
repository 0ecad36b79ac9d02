//! The engine API against real engines started by `scripts/engines` (scripts/test exports
//! DIR/env): image IDs for verification, and save argv that work, digest-only images included.
//! Skipped with a message when the engines are not up; a failure when `CI` is set.

use std::ffi::OsString;
use std::io::Read;
use std::path::PathBuf;
use std::process::Stdio;

use imgkit_engine::{Engine, EngineKind, EngineOptions};
use imgkit_types::{Digest, ImageRef};

fn seed_env(var: &str) -> Option<PathBuf> {
    let dir = std::env::var_os("IMGKIT_ENGINES_DIR").map(PathBuf::from);
    match dir {
        Some(d) if std::env::var_os(var).is_some() && d.join("seed.env").is_file() => Some(d),
        _ => {
            let msg = format!("{var} / IMGKIT_ENGINES_DIR unset or not seeded: run scripts/test");
            assert!(
                std::env::var_os("CI").is_none_or(|v| v.is_empty()),
                "CI is set: {msg}"
            );
            eprintln!("skipped: {msg}");
            None
        }
    }
}

fn seed(dir: &std::path::Path, key: &str) -> String {
    let text = std::fs::read_to_string(dir.join("seed.env")).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{key}=")))
        .unwrap()
        .to_owned()
}

fn r(s: &str) -> ImageRef {
    s.parse().unwrap()
}

/// Runs `save_args(refs)` and returns the number of tar bytes written to stdout.
fn saved_bytes(engine: &Engine, refs: &[ImageRef]) -> usize {
    let args: Vec<OsString> = engine.save_args(refs);
    let mut child = engine
        .command(&args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut buf = Vec::new();
    child.stdout.take().unwrap().read_to_end(&mut buf).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{:?}: {}",
        args,
        String::from_utf8_lossy(&out.stderr)
    );
    buf.len()
}

#[test]
fn image_ids_are_config_digests() {
    let engines = [
        (EngineKind::Docker, "DOCKER_HOST"),
        (EngineKind::Podman, "CONTAINERS_STORAGE_CONF"),
        (EngineKind::Ctr, "CONTAINERD_ADDRESS"),
    ];
    for (kind, var) in engines {
        let Some(dir) = seed_env(var) else { continue };
        let app: Digest = seed(&dir, "SEED_APP_ID").parse().unwrap();
        let base: Digest = seed(&dir, "SEED_BASE_ID").parse().unwrap();
        let engine = Engine::new(kind, EngineOptions::default()).unwrap();
        let ids = engine
            .image_ids(&[
                r("seed/app:1.0"),
                r("registry.example.com:5000/a/b/c:nested"),
                r("seed/base:1.0"),
                r("seed/nope:1"),
            ])
            .unwrap();
        let got: Vec<Option<Digest>> = ids.into_iter().map(|(_, d)| d).collect();
        assert_eq!(
            got,
            [
                Some(app.clone()),
                Some(app.clone()),
                Some(base.clone()),
                None
            ],
            "{kind}"
        );
    }
}

#[test]
fn digest_only_images_save_by_digest() {
    if let Some(dir) = seed_env("DOCKER_HOST") {
        let engine = Engine::new(EngineKind::Docker, EngineOptions::default()).unwrap();
        let pinned = r(&format!("seed/pinned@{}", seed(&dir, "SEED_PINNED_DIGEST")));
        assert!(saved_bytes(&engine, &[pinned]) > 10_000);
    }
    if let Some(dir) = seed_env("CONTAINERD_ADDRESS") {
        let engine = Engine::new(
            EngineKind::Ctr,
            EngineOptions {
                namespace: Some("k8s.io".into()),
                ..Default::default()
            },
        )
        .unwrap();
        let pinned = r(&format!(
            "seed/pinned@{}",
            seed(&dir, "SEED_K8S_PINNED_DIGEST")
        ));
        assert!(saved_bytes(&engine, &[engine.native_ref(&pinned)]) > 10_000);
    }
    if seed_env("CONTAINERS_STORAGE_CONF").is_some() {
        let engine = Engine::new(EngineKind::Podman, EngineOptions::default()).unwrap();
        let refs = [r("seed/app:1.0"), r("seed/base:1.0")].map(|x| engine.native_ref(&x));
        // both images: podman needs --multi-image-archive for more than one
        assert!(saved_bytes(&engine, &refs) > saved_bytes(&engine, &refs[..1]));
    }
}
