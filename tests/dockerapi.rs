//! docker over its Engine API, end to end on real dockerd: the records the API path makes equal
//! the CLI path's, byte for byte (the seeded set, and 1,000 tags of the test's own in the
//! destination docker); the fallback to the CLI when the socket is not there; a daemon that does
//! not answer; and no CLI needed at all when the socket is there. The whole suite runs a second
//! time with `IMGKIT_DOCKER_VIA=cli` (scripts/test), so every docker test passes on both paths.
#![cfg(unix)]

use std::io::Read;
use std::path::Path;

use crate::transfer::{DOCKER_DST, docker, docker_cli, empty_docker, lock, output};
use crate::util::{Run, Test};

/// `imgkit -v ls --all --format json` on `host`, through `via` (`api` or `cli`).
fn listed(host: &str, via: &str) -> Run {
    Test::new()
        .env("DOCKER_HOST", host)
        .env("IMGKIT_DOCKER_BIN", docker_cli())
        .env("IMGKIT_DOCKER_VIA", via)
        // Both print CreatedAt in UTC (the CLI in local time: see the time-zone test)
        .env("TZ", "UTC")
        .env_remove("DOCKER_CONTEXT")
        .args([
            "-v", "ls", "--engine", "docker", "--all", "--format", "json",
        ])
        .run()
        .success()
}

fn sorted_lines(run: &Run) -> Vec<String> {
    let mut v: Vec<String> = run.stdout.lines().map(str::to_owned).collect();
    v.sort();
    v
}

/// The API path's records equal the CLI path's, line for line (sorted: docker's CLI orders the
/// rows of one image by a Go map). CreatedSince moves with the clock, so the API listing is
/// taken between two CLI listings and must equal one of them.
fn api_records_equal_cli_records(host: &str) -> usize {
    let cli_before = listed(host, "cli");
    let api = listed(host, "api");
    let cli_after = listed(host, "cli");
    assert!(
        api.stderr.contains("+ docker API ") && api.stderr.contains("/images/json"),
        "the API path did not list over the API:\n{}",
        api.stderr
    );
    assert!(
        !api.stderr.contains(" image ls "),
        "the API path ran the CLI:\n{}",
        api.stderr
    );
    assert!(
        cli_before.stderr.contains(" image ls --digests"),
        "the forced CLI path did not run the CLI:\n{}",
        cli_before.stderr
    );
    let (a, b, c) = (
        sorted_lines(&cli_before),
        sorted_lines(&api),
        sorted_lines(&cli_after),
    );
    if b != a && b != c {
        let only_api: Vec<&String> = b.iter().filter(|l| !c.contains(l)).take(5).collect();
        let only_cli: Vec<&String> = c.iter().filter(|l| !b.contains(l)).take(5).collect();
        panic!(
            "API records ({}) differ from the CLI's ({}):\nonly from the API: {only_api:#?}\nonly from the CLI: {only_cli:#?}",
            b.len(),
            c.len()
        );
    }
    b.len()
}

#[test]
fn api_records_equal_the_clis_on_the_seeded_set() {
    let e = need_engines!();
    let n = api_records_equal_cli_records(e.src.var("DOCKER_HOST"));
    // seed/many's five tags, the dangling row and the digest-only row are all there
    assert!(n >= 10, "{n} records");
}

/// 1,000 names on one image, in four spellings docker shortens differently (`docker.io/library`
/// and registries with ports), loaded in one `docker load` of a rewritten save.
#[test]
fn api_records_equal_the_clis_on_1000_tags() {
    let e = need_engines!();
    let _guard = lock(&DOCKER_DST);
    let host = e.dst.var("DOCKER_HOST");
    empty_docker(host);
    let tmp = tempfile::tempdir().unwrap();
    let saved = tmp.path().join("base.tar");
    output(
        docker(e.src.var("DOCKER_HOST"))
            .args(["save", "-o"])
            .arg(&saved)
            .arg("seed/base:1.0"),
    );
    let names: Vec<String> = (0..1000)
        .map(|i| match i % 4 {
            0 => format!("many/r{}:t{i}", i % 7),
            1 => format!("localhost:5000/team/r{}:v{i}", i % 5),
            2 => format!("docker.io/library/lib{}:{i}", i % 3),
            _ => format!("registry.example.com:5000/a/b/c{}:x{i}", i % 2),
        })
        .collect();
    let tagged = tmp.path().join("tagged.tar");
    retag(&saved, &tagged, &names);
    output(docker(host).args(["load", "-i"]).arg(&tagged));
    let n = api_records_equal_cli_records(host);
    assert_eq!(n, 1000);
    empty_docker(host);
}

/// A copy of the docker-save tar `from` whose one image is named `names`.
fn retag(from: &Path, to: &Path, names: &[String]) {
    let mut archive = tar::Archive::new(std::fs::File::open(from).unwrap());
    let mut builder = tar::Builder::new(std::fs::File::create(to).unwrap());
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let path = entry.path().unwrap().into_owned();
        let mut data = Vec::new();
        entry.read_to_end(&mut data).unwrap();
        let mut header = entry.header().clone();
        if path == Path::new("manifest.json") {
            let mut m: serde_json::Value = serde_json::from_slice(&data).unwrap();
            m[0]["RepoTags"] = serde_json::json!(names);
            data = serde_json::to_vec(&m).unwrap();
        } else if path == Path::new("repositories") {
            continue;
        }
        header.set_size(data.len() as u64);
        header.set_cksum();
        builder.append(&header, &data[..]).unwrap();
    }
    builder.finish().unwrap();
}

/// A socket that is not there: the CLI is used (and says why under -v); forced onto the API,
/// the same daemon-down error comes from the API path.
#[test]
fn a_socket_that_is_not_there_falls_back_to_the_cli() {
    let _e = need_engines!();
    let host = "unix:///nonexistent/imgkit/docker.sock";
    let run = Test::new()
        .env("DOCKER_HOST", host)
        .env("IMGKIT_DOCKER_BIN", docker_cli())
        .env_remove("IMGKIT_DOCKER_VIA")
        .args(["-v", "ls", "--engine", "docker"])
        .run()
        .code(2)
        .stderr_has("docker through its CLI: unix:///nonexistent/imgkit/docker.sock is not there")
        .stderr_has("cannot reach the docker daemon at unix:///nonexistent/imgkit/docker.sock")
        .stderr_has("IK104");
    assert!(run.stderr.contains(" image ls --digests"), "{}", run.stderr);
    let run = Test::new()
        .env("DOCKER_HOST", host)
        .env("IMGKIT_DOCKER_BIN", docker_cli())
        .env("IMGKIT_DOCKER_VIA", "api")
        .args(["-v", "ls", "--engine", "docker"])
        .run()
        .code(2)
        .stderr_has("cannot reach the docker daemon at unix:///nonexistent/imgkit/docker.sock")
        .stderr_has("IK104");
    assert!(!run.stderr.contains(" image ls "), "{}", run.stderr);
}

/// A socket nobody listens on (a daemon that died): the API path says the daemon is down.
#[test]
fn a_dead_daemons_socket_is_daemon_down() {
    let tmp = tempfile::tempdir().unwrap();
    let sock = tmp.path().join("d.sock");
    drop(std::os::unix::net::UnixListener::bind(&sock).unwrap());
    let url = format!("unix://{}", sock.display());
    Test::new()
        .env("DOCKER_HOST", &url)
        .env_remove("IMGKIT_DOCKER_VIA")
        .args(["ls", "--engine", "docker"])
        .run()
        .code(2)
        .stderr_has(&format!("cannot reach the docker daemon at {url}"))
        .stderr_has("IK104");
}

/// With the socket there, no docker CLI is needed (Docker Desktop, Rancher Desktop): listing,
/// saving and loading all go over the API with an empty PATH and no IMGKIT_DOCKER_BIN.
#[test]
fn no_cli_is_needed_when_the_socket_is_there() {
    let e = need_engines!();
    let _guard = lock(&DOCKER_DST);
    let dst = e.dst.var("DOCKER_HOST");
    empty_docker(dst);
    let tmp = tempfile::tempdir().unwrap();
    let empty = tmp.path().join("empty-path");
    std::fs::create_dir(&empty).unwrap();
    let no_cli = |host: &str| {
        Test::new()
            .env("PATH", &empty)
            .env("DOCKER_HOST", host)
            .env_remove("IMGKIT_DOCKER_BIN")
            .env_remove("IMGKIT_DOCKER_VIA")
    };
    no_cli(e.src.var("DOCKER_HOST"))
        .args(["ls", "--engine", "docker"])
        .run()
        .success()
        .stdout_has("seed/app:1.0");
    let tar = tmp.path().join("two.tar");
    no_cli(e.src.var("DOCKER_HOST"))
        .args(["save", "--engine", "docker", "-o"])
        .arg(&tar)
        .args(["seed/app:1.0", "seed/base:1.0"])
        .run()
        .success();
    let run = no_cli(dst)
        .args(["load", "--engine", "docker", "-i"])
        .arg(&tar)
        .run()
        .success()
        .stdout_has("Loaded image: seed/app:1.0")
        .stdout_has("Loaded image: seed/base:1.0");
    drop(run);
    let ids = crate::transfer::docker_images(dst);
    assert_eq!(ids.get("seed/app:1.0"), Some(&e.src.seed["SEED_APP_ID"]));
    empty_docker(dst);
}

/// A load the daemon refuses (a name it cannot take: `UPPER/case:1`): its message is the
/// error, as a failed load (IK303), and no name is left behind.
#[test]
fn a_refused_load_says_the_daemons_message() {
    let e = need_engines!();
    let _guard = lock(&DOCKER_DST);
    let dst = e.dst.var("DOCKER_HOST");
    empty_docker(dst);
    let tmp = tempfile::tempdir().unwrap();
    let saved = tmp.path().join("base.tar");
    output(
        docker(e.src.var("DOCKER_HOST"))
            .args(["save", "-o"])
            .arg(&saved)
            .arg("seed/base:1.0"),
    );
    let bad = tmp.path().join("bad.tar");
    retag(&saved, &bad, &["UPPER/case:1".to_owned()]);
    Test::new()
        .env("DOCKER_HOST", dst)
        .env_remove("IMGKIT_DOCKER_VIA")
        .args(["load", "--engine", "docker", "-i"])
        .arg(&bad)
        .run()
        .code(2)
        .stderr_has("the target load failed: docker load (Engine API at")
        .stderr_has("the daemon failed the load: invalid reference format: repository name must be lowercase")
        .stderr_has("IK303");
    let names = crate::transfer::docker_images(dst);
    assert!(names.keys().all(|n| n == "<none>:<none>"), "{names:?}");
    empty_docker(dst);
}

/// The current docker context, read from docker's own context store (`docker context create`
/// and `docker context use` write it): the API goes to its socket. An ssh:// context is left
/// to the docker CLI, and `-v` says why.
#[test]
fn the_current_context_comes_from_dockers_own_store() {
    let e = need_engines!();
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("docker-config");
    let host = e.src.var("DOCKER_HOST");
    let cli = |args: &[&str]| {
        let mut c = std::process::Command::new(docker_cli());
        c.arg("--config")
            .arg(&config)
            .args(args)
            .env_remove("DOCKER_HOST");
        output(&mut c)
    };
    cli(&[
        "context",
        "create",
        "seeded",
        "--docker",
        &format!("host={host}"),
    ]);
    cli(&[
        "context",
        "create",
        "far",
        "--docker",
        "host=ssh://nobody@127.0.0.1:1",
    ]);
    cli(&["context", "use", "seeded"]);
    let base = || {
        Test::new()
            .env("DOCKER_CONFIG", &config)
            .env_remove("DOCKER_HOST")
            .env_remove("DOCKER_CONTEXT")
            .env_remove("IMGKIT_DOCKER_VIA")
            .env("IMGKIT_DOCKER_BIN", docker_cli())
    };
    base()
        .args(["-v", "ls", "--engine", "docker"])
        .run()
        .success()
        .stdout_has("seed/app:1.0")
        .stderr_has(&format!("+ docker API {host}: GET /v1.41/images/json"));
    // --context and DOCKER_CONTEXT name one too; an ssh:// one goes through the CLI.
    let run = base()
        .args(["-v", "ls", "--engine", "docker", "--context", "far"])
        .run()
        .code(2)
        .stderr_has("docker through its CLI: ssh://nobody@127.0.0.1:1 is an ssh:// host");
    assert!(run.stderr.contains("--context far"), "{}", run.stderr);
    base()
        .env("DOCKER_CONTEXT", "seeded")
        .args(["-v", "ls", "--engine", "docker"])
        .run()
        .success()
        .stderr_has(&format!("+ docker API {host}: "));
    // A context the store does not have: the CLI is left to say so.
    base()
        .args(["-v", "ls", "--engine", "docker", "--context", "nosuch"])
        .run()
        .code(2)
        .stderr_has("docker through its CLI: context \"nosuch\": cannot read");
}

/// docker's CLI prints CreatedAt in local time; the API path prints UTC. Where the local zone is
/// not UTC, the listing goes through the CLI (and `-v` says why), so the records stay docker's.
#[test]
fn a_local_time_zone_lists_through_the_cli() {
    let e = need_engines!();
    if !Path::new("/usr/share/zoneinfo/Europe/Paris").exists() {
        crate::util::skip("no tzdata here (/usr/share/zoneinfo/Europe/Paris)");
        return;
    }
    let host = e.src.var("DOCKER_HOST");
    let run = Test::new()
        .env("DOCKER_HOST", host)
        .env("TZ", "Europe/Paris")
        .env("IMGKIT_DOCKER_BIN", docker_cli())
        .env_remove("IMGKIT_DOCKER_VIA")
        .args([
            "-v", "ls", "--engine", "docker", "--all", "--format", "json",
        ])
        .run()
        .success()
        .stderr_has("docker lists through its CLI: the local time zone is not UTC");
    assert!(
        run.stdout.contains(" +0100 CET\"") || run.stdout.contains(" +0200 CEST\""),
        "{}",
        run.stdout
    );
    // TZ=UTC: the API lists.
    Test::new()
        .env("DOCKER_HOST", host)
        .env("TZ", "UTC")
        .env_remove("IMGKIT_DOCKER_VIA")
        .args(["-v", "ls", "--engine", "docker"])
        .run()
        .success()
        .stderr_has("+ docker API ");
}

/// dockerd over plain tcp:// (`--host tcp://127.0.0.1:PORT`): a forwarder in the test relays
/// each connection to the real daemon's unix socket; the records equal the unix socket's.
#[test]
fn a_tcp_host_is_spoken_to_over_tcp() {
    use std::net::{Shutdown, TcpListener};
    use std::os::unix::net::UnixStream;
    let e = need_engines!();
    let host = e.src.var("DOCKER_HOST");
    let socket = host
        .strip_prefix("unix://")
        .expect("a unix socket")
        .to_owned();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(tcp) = conn else { return };
            let Ok(unix) = UnixStream::connect(&socket) else {
                return;
            };
            let (mut t1, mut u1) = (tcp.try_clone().unwrap(), unix.try_clone().unwrap());
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut t1, &mut u1);
                let _ = u1.shutdown(Shutdown::Write);
            });
            let (mut t2, mut u2) = (tcp, unix);
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut u2, &mut t2);
                let _ = t2.shutdown(Shutdown::Write);
            });
        }
    });
    let tcp = format!("tcp://127.0.0.1:{port}");
    // CreatedSince moves with the clock: the unix listings bracket the tcp one.
    let before = sorted_lines(&listed(host, "api"));
    let over_tcp = Test::new()
        .env("TZ", "UTC")
        .env_remove("IMGKIT_DOCKER_VIA")
        .env_remove("DOCKER_HOST")
        .args([
            "-v", "ls", "--engine", "docker", "--all", "--format", "json", "--host",
        ])
        .arg(&tcp)
        .run()
        .success()
        .stderr_has(&format!("+ docker API {tcp}: GET /v1.41/images/json"));
    let after = sorted_lines(&listed(host, "api"));
    let over_tcp = sorted_lines(&over_tcp);
    assert!(over_tcp == before || over_tcp == after, "{over_tcp:#?}");
}
