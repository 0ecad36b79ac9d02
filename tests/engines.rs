//! `imgkit ls` and `imgkit engines` against real engines: dockerd, containerd (ctr, namespaces
//! `default` and `k8s.io`) and podman, started and seeded by `scripts/engines` (scripts/test does
//! it and exports DIR/env). When `CI` is set a missing engine fails the test; elsewhere the test
//! is skipped with a message. Faults a real engine can't show on demand (garbage output) use a
//! small fake engine script.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::util::{Test, docker_bin, skip};
#[cfg(unix)]
use crate::util::{bin, on_path};

/// The shared seed images: every engine has these (scripts/engines seed).
const SHARED: [&str; 10] = [
    "seed/base:1.0",
    "seed/multi:latest",
    "seed/app:1.0",
    "seed/many:v1",
    "seed/many:v2",
    "seed/many:v3",
    "seed/many:v4",
    "seed/many:v5",
    "localhost:5000/team/app:1.0",
    "registry.example.com:5000/a/b/c:nested",
];

/// The engines' directory from scripts/engines, when this engine is up; else skip (or fail in CI).
fn engines_dir(engine: &str) -> Option<PathBuf> {
    let var = match engine {
        "docker" => "DOCKER_HOST",
        "ctr" => "CONTAINERD_ADDRESS",
        "podman" => "CONTAINERS_STORAGE_CONF",
        _ => unreachable!(),
    };
    let dir = std::env::var_os("IMGKIT_ENGINES_DIR").map(PathBuf::from);
    match dir {
        Some(d) if std::env::var_os(var).is_some() && d.join("seed.env").is_file() => Some(d),
        _ => {
            skip(&format!(
                "{engine} is not up ({var} / IMGKIT_ENGINES_DIR unset or not seeded): run scripts/test, \
                 or `scripts/engines up DIR && scripts/engines seed DIR && . DIR/env` first"
            ));
            None
        }
    }
}

/// A value from DIR/seed.env (`SEED_PINNED_DIGEST=sha256:…`).
fn seed(dir: &Path, key: &str) -> String {
    let text = std::fs::read_to_string(dir.join("seed.env")).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{key}=")))
        .unwrap_or_else(|| panic!("{key} missing from seed.env"))
        .to_owned()
}

/// Only the seed images (other tests may add images to the same engines meanwhile).
fn seed_refs(stdout: &str) -> BTreeSet<String> {
    stdout
        .lines()
        .filter(|l| {
            l.starts_with("seed/")
                || l.starts_with("localhost:5000/team/")
                || l.starts_with("registry.example.com:5000/")
        })
        .map(str::to_owned)
        .collect()
}

fn shared() -> BTreeSet<String> {
    SHARED.iter().map(|s| (*s).to_owned()).collect()
}

fn ls(args: &[&str]) -> crate::util::Run {
    Test::new()
        .args(std::iter::once("ls").chain(args.iter().copied()))
        .run()
}

#[test]
fn docker_refs_equal_the_guides_pipeline_except_the_digest_only_row() {
    let Some(dir) = engines_dir("docker") else {
        return;
    };
    let ours = ls(&["--engine", "docker"]).success();
    let listing = Command::new(docker_bin())
        .args(["image", "ls", "--format", "{{json .}}"])
        .output()
        .unwrap();
    assert!(listing.status.success());
    // The guide's jq step, run by imgkit filter (byte-for-byte jq -r, tested in its own module).
    let guide = Test::new()
        .args(["filter", "-r", "-f", "default.jq"])
        .stdin(listing.stdout)
        .run()
        .success();
    let pinned = seed(&dir, "SEED_PINNED_DIGEST");
    let mut want = seed_refs(&guide.stdout);
    // the fix: the guide prints a bare `seed/pinned` (docker save: every tag; nerdctl: :latest)
    assert!(
        want.remove("seed/pinned"),
        "the guide's bare name: {:?}",
        guide.stdout
    );
    want.insert(format!("seed/pinned@{pinned}"));
    assert_eq!(seed_refs(&ours.stdout), want);
}

#[test]
fn the_same_images_give_the_same_refs_on_every_engine() {
    let shared = shared();
    if let Some(dir) = engines_dir("docker") {
        let mut want = shared.clone();
        want.insert(format!("seed/pinned@{}", seed(&dir, "SEED_PINNED_DIGEST")));
        assert_eq!(
            seed_refs(&ls(&["--engine", "docker"]).success().stdout),
            want,
            "docker"
        );
    }
    if engines_dir("podman").is_some() {
        assert_eq!(
            seed_refs(&ls(&["--engine", "podman"]).success().stdout),
            shared,
            "podman"
        );
    }
    if let Some(dir) = engines_dir("ctr") {
        assert_eq!(
            seed_refs(&ls(&["--engine", "ctr"]).success().stdout),
            shared,
            "ctr default"
        );
        // k8s.io: CRI's alias refs (repo@digest, sha256:<config>) add nothing; the digest-only
        // image is selected by digest.
        let mut want = shared.clone();
        want.insert(format!(
            "seed/pinned@{}",
            seed(&dir, "SEED_K8S_PINNED_DIGEST")
        ));
        assert_eq!(
            seed_refs(&ls(&["--engine", "ctr", "-n", "k8s.io"]).success().stdout),
            want,
            "ctr k8s.io"
        );
    }
}

#[test]
fn records_have_dockers_shape_on_every_engine() {
    let docker_keys = [
        "Containers",
        "CreatedAt",
        "CreatedSince",
        "Digest",
        "ID",
        "Repository",
        "SharedSize",
        "Size",
        "Tag",
        "UniqueSize",
        "VirtualSize",
    ];
    for (engine, extra) in [
        ("docker", &[][..]),
        ("podman", &[][..]),
        ("ctr", &["BlobSize", "Name", "Platform"][..]),
    ] {
        if engines_dir(engine).is_none() {
            continue;
        }
        let run = ls(&["--engine", engine, "--all", "--format", "json"]).success();
        let mut ids = BTreeSet::new();
        for line in run.stdout.lines() {
            let v: serde_json::Map<String, serde_json::Value> = serde_json::from_str(line).unwrap();
            let keys: BTreeSet<&str> = v.keys().map(String::as_str).collect();
            let want: BTreeSet<&str> = docker_keys.iter().chain(extra).copied().collect();
            assert_eq!(keys, want, "{engine}: {line}");
            assert!(
                v.values().all(serde_json::Value::is_string),
                "{engine}: {line}"
            );
            ids.insert(v["ID"].as_str().unwrap().to_owned());
            let size = v["Size"].as_str().unwrap();
            assert!(
                size.ends_with("kB") || size.ends_with("MB") || size.ends_with('B'),
                "{engine}: {size}"
            );
        }
        assert!(ids.iter().all(|id| id.len() == 12), "{engine}: {ids:?}");
        // the seed: many tags on one ID
        let app = run
            .stdout
            .lines()
            .filter(|l| l.contains("\"Repository\":\"seed/many\""))
            .count();
        assert_eq!(app, 5, "{engine}: {}", run.stdout);
    }
}

#[test]
fn docker_and_podman_agree_on_ids_and_sizes() {
    if engines_dir("docker").is_none() || engines_dir("podman").is_none() {
        return;
    }
    let pick = |engine: &str| -> BTreeSet<(String, String, String)> {
        let out = ls(&["--engine", engine, "--format", "json"])
            .success()
            .stdout;
        out.lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .filter(|v| {
                SHARED.iter().any(|s| {
                    *s == format!(
                        "{}:{}",
                        v["Repository"].as_str().unwrap(),
                        v["Tag"].as_str().unwrap()
                    )
                })
            })
            .map(|v| {
                (
                    v["Repository"].as_str().unwrap().to_owned(),
                    v["Tag"].as_str().unwrap().to_owned(),
                    v["ID"].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    };
    assert_eq!(pick("docker"), pick("podman"));
}

#[test]
fn engines_shows_versions_sockets_and_namespaces() {
    let (Some(_), Some(_), Some(_)) = (
        engines_dir("docker"),
        engines_dir("podman"),
        engines_dir("ctr"),
    ) else {
        return;
    };
    let run = Test::new().args(["engines", "--json"]).run().success();
    let probes: Vec<serde_json::Value> = serde_json::from_str(&run.stdout).unwrap();
    let get = |name: &str| probes.iter().find(|p| p["engine"] == name).unwrap().clone();
    let docker = get("docker");
    assert_eq!(docker["reachable"], true);
    assert!(
        docker["version"].as_str().unwrap().starts_with("20.10"),
        "{docker}"
    );
    assert_eq!(docker["endpoint"], std::env::var("DOCKER_HOST").unwrap());
    assert_eq!(get("podman")["reachable"], true);
    let ctr = get("ctr");
    let ns: Vec<&str> = ctr["namespaces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["name"].as_str().unwrap())
        .collect();
    assert!(ns.contains(&"default") && ns.contains(&"k8s.io"), "{ctr}");
    assert!(
        ctr["namespaces"]
            .as_array()
            .unwrap()
            .iter()
            .all(|n| n["images"].as_u64().unwrap() >= 10),
        "{ctr}"
    );
    let table = Test::new().args(["engines"]).run().success();
    assert!(table.stdout.contains("k8s.io: "), "{}", table.stdout);
}

#[test]
fn several_reachable_engines_ask_which_one() {
    if engines_dir("docker").is_none() || engines_dir("podman").is_none() {
        return;
    }
    ls(&[])
        .code(2)
        .stderr_has("several engines are reachable")
        .stderr_has("--engine");
}

#[test]
fn programs_select_and_an_empty_selection_exits_1() {
    if engines_dir("podman").is_none() {
        return;
    }
    let run = ls(&[
        "--engine",
        "podman",
        "-e",
        r#"select(.Repository == "seed/many") | .Repository + ":" + .Tag"#,
    ])
    .success();
    assert_eq!(
        run.stdout,
        "seed/many:v1\nseed/many:v2\nseed/many:v3\nseed/many:v4\nseed/many:v5\n"
    );
    ls(&["--engine", "podman", "-e", "empty"])
        .code(1)
        .stdout_is("");
    // a filter can select; it cannot invent
    ls(&["--engine", "podman", "-e", r#""evil/image:1""#])
        .code(2)
        .stderr_has("\"evil/image:1\"")
        .stderr_has("names no image");
    // -v shows the engine command lines
    Test::new()
        .args(["-v", "ls", "--engine", "podman"])
        .run()
        .success()
        .stderr_has("images --format");
    let table = ls(&["--engine", "podman", "--format", "table"]).success();
    assert!(table.stdout.starts_with("IMAGE"), "{}", table.stdout);
}

#[test]
fn error_the_engine_binary_is_missing() {
    ls(&["--engine", "podman", "--engine-bin", "/nonexistent/podman"])
        .code(2)
        .stderr_has("/nonexistent/podman")
        .stderr_has("hint:");
    // containerd not answering either (natively, no ctr binary is needed).
    Test::new()
        .args(["ls", "--engine", "ctr"])
        .env("PATH", "/nonexistent")
        .env("IMGKIT_CTR_BIN", "")
        .env("CONTAINERD_ADDRESS", "/nonexistent/imgkit/containerd.sock")
        .run()
        .code(2)
        .stderr_has("ctr is not installed here")
        .stderr_has("IMGKIT_CTR_BIN");
}

#[test]
fn error_the_daemon_is_not_reachable() {
    if engines_dir("docker").is_some() {
        ls(&[
            "--engine",
            "docker",
            "--host",
            "unix:///nonexistent/imgkit/docker.sock",
        ])
        .code(2)
        .stderr_has("cannot reach the docker daemon at unix:///nonexistent/imgkit/docker.sock")
        .stderr_has("try --engine podman");
    }
    if engines_dir("ctr").is_some() {
        ls(&[
            "--engine",
            "ctr",
            "--address",
            "/nonexistent/imgkit/containerd.sock",
        ])
        .code(2)
        .stderr_has("cannot reach the ctr daemon at /nonexistent/imgkit/containerd.sock")
        .stderr_has("CONTAINERD_ADDRESS");
    }
}

#[cfg(unix)]
#[test]
fn error_permission_denied_on_the_socket() {
    use std::os::unix::fs::PermissionsExt;
    let Some(dir) = engines_dir("docker") else {
        return;
    };
    // Root passes any permission check; run imgkit as nobody (the engines' dir is 0700).
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout == b"0\n");
    if !root || on_path("setpriv").is_none() {
        skip("needs root and setpriv to run imgkit as another user");
        return;
    }
    let mut argv = vec!["--reuid=65534", "--regid=65534", "--clear-groups", "--"];
    // A copy nobody can run wherever the build tree lives (a 0700 home, a private target dir).
    let public = tempfile::tempdir().unwrap();
    std::fs::set_permissions(public.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let imgkit = public.path().join("imgkit");
    std::fs::copy(bin(), &imgkit).unwrap();
    std::fs::set_permissions(&imgkit, std::fs::Permissions::from_mode(0o755)).unwrap();
    argv.push(imgkit.to_str().unwrap());
    for (engine, flag, socket) in [
        (
            "docker",
            "--host",
            format!("unix://{}/docker/docker.sock", dir.display()),
        ),
        (
            "ctr",
            "--address",
            format!("{}/containerd/containerd.sock", dir.display()),
        ),
    ] {
        if engines_dir(engine).is_none() {
            continue;
        }
        let bin_env = format!("IMGKIT_{}_BIN", engine.to_uppercase());
        // nobody's PATH may differ: name the engine CLI found here.
        let engine_bin = if engine == "docker" {
            docker_bin()
        } else {
            on_path(engine).unwrap_or_else(|| engine.into())
        };
        let out = Command::new("setpriv")
            .args(&argv)
            .args(["ls", "--engine", engine, flag, &socket])
            .env(&bin_env, engine_bin)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        if out.status.code() == Some(126)
            || stderr.contains("Permission denied (os error 13)") && stderr.contains("imgkit")
        {
            skip(&format!(
                "nobody cannot run {} ({stderr})",
                imgkit.display()
            ));
            return;
        }
        assert_eq!(out.status.code(), Some(2), "{engine}: {stderr}");
        assert!(
            stderr.contains(&format!("permission denied on the {engine} socket")),
            "{engine}: {stderr}"
        );
        assert!(stderr.contains("hint: run as root"), "{engine}: {stderr}");
    }
}

#[test]
fn error_unknown_namespace() {
    if engines_dir("ctr").is_none() {
        return;
    }
    ls(&["--engine", "ctr", "-n", "no-such-ns"])
        .code(2)
        .stderr_has("containerd namespace \"no-such-ns\" does not exist")
        .stderr_has("k8s.io");
}

/// A fake engine printing garbage: the one fault a real engine won't show on demand.
#[cfg(unix)]
fn fake_engine(dir: &Path, name: &str, stdout: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join(name);
    let script = format!("#!/bin/sh\ncat <<'EOF'\n{stdout}\nEOF\n");
    std::fs::write(&path, script).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

#[cfg(unix)]
#[test]
fn error_output_that_does_not_parse_quotes_the_first_bad_line() {
    let tmp = tempfile::tempdir().unwrap();
    let good = r#"{"Containers":"N/A","CreatedAt":"2026-11-28 08:21:51 +0000 UTC","CreatedSince":"1 hour ago","Digest":"<none>","ID":"5b6b8000f179","Repository":"seed/multi","SharedSize":"N/A","Size":"721kB","Tag":"latest","UniqueSize":"N/A","VirtualSize":"720.9kB"}"#;
    let docker = fake_engine(
        tmp.path(),
        "docker",
        &format!("{good}\nWARNING: this is not JSON\n{good}"),
    );
    Test::new()
        .args(["ls", "--engine", "docker", "--engine-bin"])
        .args([&docker])
        .run()
        .code(2)
        .stderr_has("at line 2")
        .stderr_has("WARNING: this is not JSON");
    let ctr = fake_engine(
        tmp.path(),
        "ctr",
        "REF TYPE DIGEST SIZE PLATFORMS LABELS\ndocker.io/x/y:1 application/vnd.oci.image.manifest.v1+json sha256:abc 1.0 KiB linux/amd64 -",
    );
    Test::new()
        .args(["ls", "--engine", "ctr", "--address", "/", "--engine-bin"])
        .args([&ctr])
        .run()
        .code(2)
        .stderr_has("line 2")
        .stderr_has("docker.io/x/y:1 application/vnd.oci.image.manifest.v1+json sha256:abc");
    let podman = fake_engine(tmp.path(), "podman", "Error: storage is corrupt");
    Test::new()
        .args(["ls", "--engine", "podman", "--engine-bin"])
        .args([&podman])
        .run()
        .code(2)
        .stderr_has("Error: storage is corrupt");
}
