//! Archives: the sample archive is reproducible, `verify` and `inspect` work on good archives,
//! hostile archives are refused (`hostile`), and archives round-trip through real engines
//! (`engines`).

#[cfg(unix)]
mod engines;
mod hostile;

use std::path::{Path, PathBuf};

use imgkit_archive::Compression;

use crate::util::Test;

pub(crate) fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub(crate) fn sample_path() -> PathBuf {
    repo_root().join("examples/images.tar")
}

/// The sample archive as the writer produces it now.
pub(crate) fn sample_bytes() -> Vec<u8> {
    let mut out = Vec::new();
    imgkit_archive::write_images(
        &imgkit_archive::sample::images(),
        &mut out,
        Compression::None,
    )
    .unwrap();
    out
}

/// `IMGKIT_BLESS=1` rewrites the committed sample with what the writer produces now, except in
/// CI: there the committed file is the claim under test, never something the run may change.
fn bless(path: &Path, now: &[u8], ci: bool) -> Result<(), String> {
    if ci {
        return Err(format!(
            "IMGKIT_BLESS is set but so is CI: refusing to rewrite {}; regenerate it locally and commit it",
            path.display()
        ));
    }
    std::fs::write(path, now).map_err(|e| format!("{}: {e}", path.display()))
}

#[test]
fn the_sample_archive_is_what_the_writer_produces() {
    let now = sample_bytes();
    if std::env::var_os("IMGKIT_BLESS").is_some_and(|v| !v.is_empty()) {
        bless(&sample_path(), &now, crate::util::in_ci()).unwrap_or_else(|e| panic!("{e}"));
    }
    let committed = std::fs::read(sample_path()).unwrap();
    assert!(
        committed == now,
        "examples/images.tar differs from what the writer produces now; if the change is intended, \
         regenerate it with IMGKIT_BLESS=1 cargo test --test tests archive::the_sample"
    );
    assert!(
        now.len() < 40 * 1024,
        "the sample should stay small: {} bytes",
        now.len()
    );
}

#[test]
fn bless_refuses_to_rewrite_the_sample_in_ci() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("images.tar");
    std::fs::write(&file, b"committed").unwrap();
    let err = bless(&file, b"new", true).unwrap_err();
    assert!(err.contains("refusing to rewrite"), "{err}");
    assert_eq!(std::fs::read(&file).unwrap(), b"committed");
    bless(&file, b"new", false).unwrap();
    assert_eq!(std::fs::read(&file).unwrap(), b"new");
}

#[test]
fn verify_accepts_the_sample() {
    Test::new()
        .args([Path::new("verify"), &sample_path()])
        .run()
        .success()
        .stdout_has("ok — 4 images, 4 names");
}

#[test]
fn verify_json_reports_counts() {
    let run = Test::new()
        .args([Path::new("--json"), Path::new("verify"), &sample_path()])
        .run()
        .success();
    let v: serde_json::Value = serde_json::from_str(run.stdout.trim()).unwrap();
    assert_eq!(v["ok"], true);
    assert_eq!(v["images"], 4);
    assert_eq!(v["blobs_checked"], 13);
}

#[test]
fn verify_reads_a_compressed_stream_from_stdin() {
    let mut zst = Vec::new();
    imgkit_archive::write_images(
        &imgkit_archive::sample::images(),
        &mut zst,
        Compression::Zstd,
    )
    .unwrap();
    Test::new()
        .args(["verify", "-"])
        .stdin(zst)
        .run()
        .success()
        .stdout_has("-: ok — 4 images");
}

#[test]
fn inspect_shows_names_platforms_and_shared_layers() {
    let run = Test::new()
        .args([Path::new("inspect"), &sample_path()])
        .run()
        .success();
    for needle in [
        "imgkit.example/hello:1.0, imgkit.example/hello:latest",
        "localhost:5000/team/app:1.0",
        "<none>",
        "platform linux/amd64",
        "(shared)",
        "shared layers: 1",
    ] {
        assert!(
            run.stdout.contains(needle),
            "inspect lacks {needle:?}:\n{}",
            run.stdout
        );
    }
}

#[test]
fn inspect_json_lists_images_and_shared_layers() {
    let run = Test::new()
        .args([Path::new("inspect"), Path::new("--json"), &sample_path()])
        .run()
        .success();
    let v: serde_json::Value = serde_json::from_str(run.stdout.trim()).unwrap();
    assert_eq!(v["images"].as_array().unwrap().len(), 4);
    assert_eq!(v["images"][0]["names"][0], "imgkit.example/hello:1.0");
    assert_eq!(
        v["shared_layers"][0]["images"],
        serde_json::json!([0, 1, 2])
    );
}

#[test]
fn listing_the_sample_gives_docker_shaped_records() {
    let records = imgkit_archive::list(&sample_path()).unwrap();
    let rows: Vec<(String, String, String)> = records
        .iter()
        .map(|r| (r.repository.clone(), r.tag.clone(), r.created_at.clone()))
        .collect();
    assert_eq!(
        rows,
        [
            (
                "imgkit.example/hello".into(),
                "1.0".into(),
                "2026-11-20 09:12:01 +0000 UTC".into()
            ),
            (
                "imgkit.example/hello".into(),
                "latest".into(),
                "2026-11-20 09:12:01 +0000 UTC".into()
            ),
            (
                "imgkit.example/tools".into(),
                "2.1".into(),
                "2026-11-21 10:00:00 +0000 UTC".into()
            ),
            (
                "localhost:5000/team/app".into(),
                "1.0".into(),
                "2026-11-27 17:40:22 +0000 UTC".into()
            ),
            (
                "<none>".into(),
                "<none>".into(),
                "2026-11-27 18:00:00 +0000 UTC".into()
            ),
        ]
    );
    let line = records[0].to_json_line();
    for key in [
        "Containers",
        "CreatedSince",
        "Digest",
        "ID",
        "SharedSize",
        "Size",
        "UniqueSize",
        "VirtualSize",
    ] {
        assert!(line.contains(&format!("\"{key}\":")), "{line}");
    }
}

#[test]
fn verify_of_a_missing_file_says_so() {
    Test::new()
        .args(["verify", "/nonexistent/images.tar"])
        .run()
        .code(2)
        .stderr_has("cannot read /nonexistent/images.tar");
}

#[test]
fn verify_of_something_else_hints_at_save() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("notes.tar");
    let mut tar = Vec::new();
    hostile::raw_file(&mut tar, "notes.txt", b"hello");
    hostile::end(&mut tar);
    std::fs::write(&f, tar).unwrap();
    Test::new()
        .args([Path::new("verify"), &f])
        .run()
        .code(2)
        .stderr_has("not an image archive")
        .stderr_has("hint:");
}

#[test]
fn ls_from_an_archive_prints_what_the_guide_would_select() {
    // The records `ls --from` selects from are the listing's; the guide's program over them,
    // run by real jq, must name the same images.
    let records = Test::new()
        .args(["ls", "--all", "--format", "json", "--from"])
        .arg(sample_path())
        .run()
        .success();
    let Some(jq) = crate::util::tool("jq") else {
        return;
    };
    let mut jq = std::process::Command::new(jq)
        .args(["-r", "-f"])
        .arg(repo_root().join("filters/default.jq"))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(jq.stdin.as_mut().unwrap(), records.stdout.as_bytes()).unwrap();
    drop(jq.stdin.take());
    let guide = String::from_utf8(jq.wait_with_output().unwrap().stdout).unwrap();
    Test::new()
        .args(["ls", "--from"])
        .arg(sample_path())
        .run()
        .success()
        .stdout_is(&guide);
}

#[test]
fn ls_from_a_missing_archive_names_it() {
    Test::new()
        .args(["ls", "--from", "no-such-archive.tar"])
        .run()
        .code(2)
        .stderr_has("no-such-archive.tar");
}
