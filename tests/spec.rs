//! Claims the README makes that had no test failing without them: the image-ID check after a
//! move, `--rename`'s rule order and whole-reference matching, Rancher Desktop's docker socket,
//! and `--plugin-clock real`. Each test names the behaviour it guards; breaking that behaviour
//! makes it fail (the closing note of issue 21 says how each was checked).

use std::path::PathBuf;

use crate::util::Test;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn sample() -> PathBuf {
    repo().join("examples/images.tar")
}

// ---- --plugin-clock --------------------------------------------------------------------------

/// The wall clock `clock.wat` reads, in seconds since 1970, as it prints it to stderr.
fn plugin_clock(clock: &str) -> u64 {
    let cache = tempfile::tempdir().unwrap();
    let run = Test::new()
        .env("XDG_CACHE_HOME", cache.path())
        .args(["filter", "--plugin"])
        .arg(repo().join("tests/fixtures/plugins/clock.wat"))
        .args(["--plugin-clock", clock])
        .stdin("")
        .run()
        .success();
    let digits: String = run
        .stderr
        .split("clock=")
        .nth(1)
        .unwrap_or_else(|| panic!("no clock= line: {}", run.stderr))
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits
        .parse()
        .unwrap_or_else(|e| panic!("{e}: {}", run.stderr))
}

fn host_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[test]
fn plugin_clock_real_shows_the_hosts_time_and_fixed_the_fixed_one() {
    // fixed: 2026-01-01T00:00:00Z, whatever the host's clock says
    assert_eq!(plugin_clock("fixed"), 1_767_225_600);
    // real: the host's clock (within the time one run takes on a loaded machine)
    let before = host_now();
    let seen = plugin_clock("real");
    let after = host_now();
    assert!(
        seen + 2 >= before && seen <= after + 2,
        "--plugin-clock real showed {seen}; the host's clock read {before}..{after}"
    );
}

// ---- --rename --------------------------------------------------------------------------------

/// `run --dry-run --json` from the sample archive into podman with these `--rename` rules:
/// each selected reference → the names it would get (`as`).
fn planned_names(rules: &[&str]) -> Vec<(String, Vec<String>)> {
    let mut t = Test::new().args(["--json", "run", "--dry-run", "--force", "--from"]);
    t = t.arg(sample()).args(["--to", "podman"]);
    for r in rules {
        t = t.args(["--rename", r]);
    }
    let run = t.run().success();
    let plan: serde_json::Value =
        serde_json::from_str(run.stdout.trim()).unwrap_or_else(|e| panic!("{e}: {}", run.stdout));
    let mut out: Vec<(String, Vec<String>)> = plan["images"]
        .as_array()
        .unwrap_or_else(|| panic!("no images: {plan}"))
        .iter()
        .map(|i| {
            let names = i["as"]
                .as_array()
                .unwrap()
                .iter()
                .map(|n| n.as_str().unwrap().to_owned())
                .collect();
            (i["ref"].as_str().unwrap().to_owned(), names)
        })
        .collect();
    out.sort();
    out
}

fn names_of<'a>(plan: &'a [(String, Vec<String>)], r: &str) -> &'a [String] {
    &plan
        .iter()
        .find(|(x, _)| x == r)
        .unwrap_or_else(|| panic!("{r} not planned: {plan:?}"))
        .1
}

#[test]
fn rename_the_first_matching_rule_wins() {
    let broad = "imgkit.example/(.*)=broad/$1";
    let narrow = "imgkit.example/hello:(.*)=narrow/hello:$1";
    // both rules match imgkit.example/hello:1.0; the one given first names it
    let plan = planned_names(&[narrow, broad]);
    assert_eq!(
        names_of(&plan, "imgkit.example/hello:1.0"),
        ["docker.io/narrow/hello:1.0"]
    );
    assert_eq!(
        names_of(&plan, "imgkit.example/tools:2.1"),
        ["docker.io/broad/tools:2.1"]
    );
    let plan = planned_names(&[broad, narrow]);
    assert_eq!(
        names_of(&plan, "imgkit.example/hello:1.0"),
        ["docker.io/broad/hello:1.0"]
    );
    assert_eq!(
        names_of(&plan, "imgkit.example/hello:latest"),
        ["docker.io/broad/hello:latest"]
    );
}

#[test]
fn rename_rules_must_match_the_whole_reference() {
    // A prefix, a suffix and a middle part of imgkit.example/hello:1.0 rename nothing. (Each
    // would make a valid name if it replaced just the part it matches: other/hello:1.0,
    // imgkit.example/other:2, imgkit.elsewhere/hi:1.0.)
    for rule in [
        "imgkit.example/hello=other/hello",
        "hello:1.0=other:2",
        "example/hello=elsewhere/hi",
    ] {
        let plan = planned_names(&[rule]);
        assert!(
            plan.iter().all(|(_, names)| names.is_empty()),
            "{rule} renamed a reference it matches only in part: {plan:?}"
        );
    }
    // the whole reference, as shown or fully qualified, does
    for rule in [
        "imgkit.example/hello:1.0=other/hello:1",
        "localhost:5000/team/app:1.0=other/app:1",
    ] {
        let plan = planned_names(&[rule]);
        assert_eq!(
            plan.iter().filter(|(_, n)| !n.is_empty()).count(),
            1,
            "{rule}: {plan:?}"
        );
    }
    let plan = planned_names(&["docker.io/(.*)/hello:(.*)=x/$1-$2:1"]);
    assert!(
        plan.iter().all(|(_, n)| n.is_empty()),
        "imgkit.example/hello is not under docker.io: {plan:?}"
    );
}

/// The first matching rule's names are the ones a real engine ends up with.
#[cfg(unix)]
#[test]
fn overlapping_rename_rules_land_in_podman_by_the_first_rule() {
    use crate::transfer::{fresh_podman, imgkit, podman_images};
    if crate::util::tool("podman").is_none() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let env = fresh_podman(tmp.path());
    let filter = crate::transfer::write_filter(
        tmp.path(),
        r#"select(.Repository == "imgkit.example/hello" and .Tag == "1.0") | .Repository + ":" + .Tag"#,
    );
    imgkit(&env)
        .args(["run", "--to", "podman", "-f"])
        .arg(&filter)
        .arg("--from")
        .arg(sample())
        .args([
            "--rename",
            "imgkit.example/hello:(.*)=first/hello:$1",
            "--rename",
            "imgkit.example/(.*)=second/$1",
        ])
        .run()
        .success()
        .stderr_has("1 verified by image ID");
    let names: Vec<String> = podman_images(&env).into_keys().collect();
    assert_eq!(names, ["docker.io/first/hello:1.0"]);
}

// ---- Rancher Desktop's docker socket ---------------------------------------------------------

/// With nothing naming a docker host (no --host, --context, DOCKER_HOST, DOCKER_CONTEXT) and no
/// /var/run/docker.sock, imgkit uses `~/.rd/docker.sock`: here a fake home whose socket is the
/// seeded dockerd's.
#[cfg(unix)]
#[test]
fn rancher_desktops_socket_is_used_when_nothing_else_names_one() {
    let Some(e) = crate::transfer::engines() else {
        return;
    };
    if std::path::Path::new("/var/run/docker.sock").exists() {
        crate::util::skip(
            "/var/run/docker.sock exists here, and it comes before Rancher Desktop's socket",
        );
        return;
    }
    let home = tempfile::tempdir().unwrap();
    std::fs::create_dir(home.path().join(".rd")).unwrap();
    let rd_socket = home.path().join(".rd/docker.sock");
    let real = e
        .src
        .var("DOCKER_HOST")
        .strip_prefix("unix://")
        .expect("a unix socket");
    std::os::unix::fs::symlink(real, &rd_socket).unwrap();
    let base = || {
        Test::new()
            .env("HOME", home.path())
            .env("IMGKIT_DOCKER_BIN", crate::transfer::docker_cli())
            .env_remove("DOCKER_HOST")
            .env_remove("DOCKER_CONTEXT")
            .env_remove("IMGKIT_ENGINE")
    };
    let run = base()
        .args(["-v", "ls", "--engine", "docker"])
        .run()
        .success()
        .stdout_has("seed/app:1.0")
        .stdout_has("seed/multi:latest");
    let shown = format!("unix://{}", rd_socket.display());
    assert!(
        run.stderr.contains(&shown),
        "the engine command does not name {shown}:\n{}",
        run.stderr
    );
    // Anything that names a host comes first.
    base()
        .env("DOCKER_HOST", "unix:///nonexistent/imgkit/docker.sock")
        .args(["ls", "--engine", "docker"])
        .run()
        .code(2)
        .stderr_has("/nonexistent/imgkit/docker.sock");
    base()
        .args([
            "ls",
            "--engine",
            "docker",
            "--host",
            "unix:///nonexistent/imgkit/docker.sock",
        ])
        .run()
        .code(2)
        .stderr_has("/nonexistent/imgkit/docker.sock");
}

// ---- the image-ID check after a move ---------------------------------------------------------

/// A target that ends up holding another image under a name it just loaded (the stand-in
/// engine retags after the real load): exit 2, naming the image and both IDs.
#[cfg(unix)]
#[test]
fn a_target_holding_another_image_after_the_move_fails_verification() {
    use crate::transfer::{DOCKER_DST, docker_cli, docker_images, empty_docker, engines, lock};
    let Some(e) = engines() else { return };
    let _guard = lock(&DOCKER_DST);
    let host = e.dst.var("DOCKER_HOST");
    let tmp = tempfile::tempdir().unwrap();
    let filter = crate::transfer::write_filter(
        tmp.path(),
        r#"select(.Repository == "imgkit.example/hello" and .Tag == "1.0" or .Repository == "imgkit.example/tools") | .Repository + ":" + .Tag"#,
    );
    let fake = repo().join("tests/fixtures/fake-engine");
    let attempt = |swap: Option<&str>| {
        empty_docker(host);
        let mut t = Test::new()
            .env("DOCKER_HOST", host)
            .env("IMGKIT_DOCKER_BIN", &fake)
            .env("IMGKIT_DOCKER_VIA", "cli")
            .env("IMGKIT_FAKE_REAL", docker_cli())
            .args(["run", "--to", "docker", "-f"])
            .arg(&filter)
            .arg("--from")
            .arg(sample());
        if let Some(s) = swap {
            t = t.env("IMGKIT_FAKE_SWAP", s);
        }
        t.run()
    };
    // Without the swap the same move verifies: the stand-in changes nothing else.
    attempt(None).success().stderr_has("2 verified by image ID");
    let loaded = docker_images(host);
    let tools_id = loaded["imgkit.example/tools:2.1"].clone();
    let hello_id = loaded["imgkit.example/hello:1.0"].clone();
    assert_ne!(tools_id, hello_id);

    let run = attempt(Some("imgkit.example/tools:2.1 imgkit.example/hello:1.0"))
        .code(2)
        .stderr_has("the target does not match")
        .stderr_has("1 of 2 images differ")
        .stderr_has(&format!(
            "imgkit.example/hello:1.0: ID {tools_id} in the target, {hello_id} in the source"
        ));
    assert!(
        !run.stderr.contains("imgkit.example/tools:2.1: ID"),
        "the image that did arrive intact is not a problem: {}",
        run.stderr
    );
    // The target really holds the other image (the test's premise).
    assert_eq!(docker_images(host)["imgkit.example/hello:1.0"], tools_id);
}
