//! `imgkit run`, `save` and `load` end to end, on real engines: every direction between docker,
//! podman and containerd (`ctr:k8s.io`), to and from archive files, the faults (a source dying
//! mid-stream, a failing load, an unwritable or full output, Ctrl-C) and hostile selections.
//!
//! The engines come from `scripts/test` (via `scripts/engines`): the seeded set every engine
//! test reads (`IMGKIT_ENGINES_DIR`), used here only as a source, and an empty docker and
//! containerd that only these tests load into (`IMGKIT_TRANSFER_DST`), one test at a time per
//! engine. podman targets get fresh storage per test. Without those variables the tests skip
//! (and fail when `CI` is set: `crate::util::skip`).
#![cfg(unix)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use crate::util::{Run, Test, bin, docker_bin, skip};

/// The docker CLI: `IMGKIT_DOCKER_BIN` from the engines' env, else `docker` on `PATH`.
pub(crate) fn docker_cli() -> &'static Path {
    static CLI: OnceLock<PathBuf> = OnceLock::new();
    CLI.get_or_init(docker_bin)
}

/// What the tests select: two images sharing nothing, named as every engine lists them.
pub(crate) const SELECT_TWO: &str = r#"select((.Repository == "seed/app" or .Repository == "seed/base") and .Tag == "1.0") | .Repository + ":" + .Tag"#;

pub(crate) struct Set {
    dir: PathBuf,
    env: BTreeMap<String, String>,
    pub(crate) seed: BTreeMap<String, String>,
}

impl Set {
    fn load(dir: PathBuf) -> Set {
        let env = read_vars(&dir.join("env"));
        let seed = read_vars(&dir.join("seed.env"));
        Set { dir, env, seed }
    }

    pub(crate) fn var(&self, k: &str) -> &str {
        self.env.get(k).map_or_else(
            || panic!("{} lacks {k}", self.dir.display()),
            String::as_str,
        )
    }
}

/// `export K='V'` and `K=V` lines.
fn read_vars(path: &Path) -> BTreeMap<String, String> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return BTreeMap::new();
    };
    text.lines()
        .filter_map(|l| l.trim().strip_prefix("export ").or(Some(l.trim())))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.trim_matches('\'').to_owned()))
        .collect()
}

pub(crate) struct Engines {
    pub(crate) src: Set,
    pub(crate) dst: Set,
}

/// The seeded set and the empty destination set, when both are named; `None` (and a skip by
/// [`skip`], a failure in CI) otherwise.
pub(crate) fn engines() -> Option<&'static Engines> {
    static ENGINES: OnceLock<Option<Engines>> = OnceLock::new();
    let e = ENGINES
        .get_or_init(|| {
            let src = std::env::var_os("IMGKIT_ENGINES_DIR").filter(|v| !v.is_empty());
            let dst = std::env::var_os("IMGKIT_TRANSFER_DST").filter(|v| !v.is_empty());
            Some(Engines {
                src: Set::load(PathBuf::from(src?)),
                dst: Set::load(PathBuf::from(dst?)),
            })
        })
        .as_ref();
    if e.is_none() {
        skip(
            "this test needs real engines; run scripts/test (as root), which starts them and sets IMGKIT_ENGINES_DIR and IMGKIT_TRANSFER_DST",
        );
    }
    e
}

/// One engine at a time may be a shared target.
pub(crate) fn lock(m: &'static Mutex<()>) -> MutexGuard<'static, ()> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}
pub(crate) static DOCKER_DST: Mutex<()> = Mutex::new(());
pub(crate) static K8S_DST: Mutex<()> = Mutex::new(());

pub(crate) fn output(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub(crate) fn docker(host: &str) -> Command {
    let mut c = Command::new(docker_cli());
    c.args(["-H", host]);
    c
}

pub(crate) fn ctr(addr: &str, ns: &str) -> Command {
    let mut c = Command::new("ctr");
    c.args(["-a", addr, "-n", ns]);
    c
}

/// `repo:tag → config digest` in a docker.
pub(crate) fn docker_images(host: &str) -> BTreeMap<String, String> {
    output(docker(host).args([
        "image",
        "ls",
        "-a",
        "--no-trunc",
        "--format",
        "{{.Repository}}:{{.Tag}} {{.ID}}",
    ]))
    .lines()
    .filter_map(|l| l.split_once(' '))
    .map(|(r, id)| (r.to_owned(), id.to_owned()))
    .collect()
}

pub(crate) fn empty_docker(host: &str) {
    // A parent listed before its child cannot go first (images made in the same second list
    // in either order): what is left is removed again, children having gone.
    for _ in 0..5 {
        let ids = output(docker(host).args(["image", "ls", "-aq", "--no-trunc"]));
        let ids: Vec<&str> = ids.lines().collect();
        if ids.is_empty() {
            return;
        }
        let _ = docker(host).args(["rmi", "-f"]).args(&ids).output();
    }
    let left = output(docker(host).args(["image", "ls", "-a"]));
    panic!("docker at {host} still holds images:\n{left}");
}

/// `name → config digest` in a containerd namespace (config digests read from the manifests).
pub(crate) fn ctr_images(addr: &str, ns: &str) -> BTreeMap<String, String> {
    let table = output(ctr(addr, ns).args(["images", "ls"]));
    let mut out = BTreeMap::new();
    for line in table.lines().skip(1) {
        let cols: Vec<&str> = line.split_whitespace().collect();
        let (name, digest) = (cols[0], cols[2]);
        let manifest = output(ctr(addr, ns).args(["content", "get", digest]));
        let v: serde_json::Value = serde_json::from_str(&manifest).unwrap();
        let config = v["config"]["digest"]
            .as_str()
            .unwrap_or("(index)")
            .to_owned();
        out.insert(name.to_owned(), config);
    }
    out
}

pub(crate) fn empty_ctr(addr: &str, ns: &str) {
    let names = output(ctr(addr, ns).args(["images", "ls", "-q"]));
    let names: Vec<&str> = names.lines().collect();
    if !names.is_empty() {
        output(ctr(addr, ns).args(["images", "rm"]).args(&names));
    }
}

/// Fresh, empty podman storage under `dir`: the env vars that point podman at it.
pub(crate) fn fresh_podman(dir: &Path) -> Vec<(String, String)> {
    let p = dir.join("podman");
    for sub in ["root", "run", "tmp"] {
        std::fs::create_dir_all(p.join(sub)).unwrap();
    }
    let storage = p.join("storage.conf");
    std::fs::write(
        &storage,
        format!(
            "[storage]\ndriver = \"vfs\"\ngraphroot = \"{0}/root\"\nrunroot = \"{0}/run\"\n",
            p.display()
        ),
    )
    .unwrap();
    let conf = p.join("containers.conf");
    std::fs::write(
        &conf,
        format!(
            "[engine]\ntmp_dir = \"{0}/tmp\"\nevents_logger = \"file\"\nevents_logfile_path = \"{0}/events.log\"\ncgroup_manager = \"cgroupfs\"\n",
            p.display()
        ),
    )
    .unwrap();
    vec![
        (
            "CONTAINERS_STORAGE_CONF".to_owned(),
            storage.display().to_string(),
        ),
        ("CONTAINERS_CONF".to_owned(), conf.display().to_string()),
    ]
}

pub(crate) fn podman_images(env: &[(String, String)]) -> BTreeMap<String, String> {
    let mut c = Command::new("podman");
    c.args([
        "images",
        "--no-trunc",
        "--format",
        "{{.Repository}}:{{.Tag}} {{.ID}}",
    ]);
    c.envs(env.iter().map(|(k, v)| (k, v)));
    output(&mut c)
        .lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(r, id)| {
            (
                r.to_owned(),
                if id.starts_with("sha256:") {
                    id.to_owned()
                } else {
                    format!("sha256:{id}")
                },
            )
        })
        .collect()
}

/// imgkit with the source's and target's environment.
pub(crate) fn imgkit(env: &[(String, String)]) -> Test {
    let mut t = Test::new().env("IMGKIT_DOCKER_BIN", docker_cli());
    for (k, v) in env {
        t = t.env(k, v);
    }
    t
}

pub(crate) fn kv(k: &str, v: &str) -> (String, String) {
    (k.to_owned(), v.to_owned())
}

pub(crate) fn write_filter(dir: &Path, program: &str) -> PathBuf {
    let f = dir.join("select.jq");
    std::fs::write(&f, program).unwrap();
    f
}

/// The seeded IDs of what SELECT_TWO selects.
pub(crate) fn want_two(e: &Engines, prefix: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (
            format!("{prefix}seed/app:1.0"),
            e.src.seed["SEED_APP_ID"].clone(),
        ),
        (
            format!("{prefix}seed/base:1.0"),
            e.src.seed["SEED_BASE_ID"].clone(),
        ),
    ])
}

pub(crate) fn src_docker(e: &Engines) -> (String, String) {
    kv("DOCKER_HOST", e.src.var("DOCKER_HOST"))
}

pub(crate) fn src_podman(e: &Engines) -> Vec<(String, String)> {
    vec![
        kv(
            "CONTAINERS_STORAGE_CONF",
            e.src.var("CONTAINERS_STORAGE_CONF"),
        ),
        kv("CONTAINERS_CONF", e.src.var("CONTAINERS_CONF")),
    ]
}

fn no_partials(dir: &Path) {
    let left: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| {
            let ext = Path::new(n)
                .extension()
                .and_then(|e| e.to_str())
                .unwrap_or_default();
            // `FILE.partial` of old, `.FILE.XXXXXXXX.imgkit-partial` now.
            ext.eq_ignore_ascii_case("tar") || ext.to_ascii_lowercase().ends_with("partial")
        })
        .collect();
    assert!(
        left.is_empty(),
        "left behind in {}: {left:?}",
        dir.display()
    );
}

// ---- engine to engine ------------------------------------------------------------------------

#[test]
fn docker_to_podman_moves_exactly_the_selection() {
    let e = need_engines!();
    let tmp = tempfile::tempdir().unwrap();
    let filter = write_filter(tmp.path(), SELECT_TWO);
    let mut env = fresh_podman(tmp.path());
    env.push(src_docker(e));
    imgkit(&env)
        .args(["run", "--from", "docker", "--to", "podman", "-f"])
        .arg(&filter)
        .run()
        .success()
        .stderr_has("moved 2 images from docker to podman")
        .stderr_has("2 verified by image ID");
    assert_eq!(podman_images(&env), want_two(e, "docker.io/"));
}

#[test]
fn docker_to_ctr_k8s_moves_exactly_the_selection() {
    let e = need_engines!();
    let _guard = lock(&K8S_DST);
    let addr = e.dst.var("CONTAINERD_ADDRESS");
    empty_ctr(addr, "k8s.io");
    let tmp = tempfile::tempdir().unwrap();
    let filter = write_filter(tmp.path(), SELECT_TWO);
    let env = vec![src_docker(e), kv("CONTAINERD_ADDRESS", addr)];
    imgkit(&env)
        .args(["run", "--from", "docker", "--to", "ctr:k8s.io", "-f"])
        .arg(&filter)
        .run()
        .success()
        .stderr_has("2 verified by image ID");
    assert_eq!(ctr_images(addr, "k8s.io"), want_two(e, "docker.io/"));
}

#[test]
fn podman_to_docker_moves_exactly_the_selection() {
    let e = need_engines!();
    let _guard = lock(&DOCKER_DST);
    let host = e.dst.var("DOCKER_HOST");
    empty_docker(host);
    let tmp = tempfile::tempdir().unwrap();
    let filter = write_filter(tmp.path(), SELECT_TWO);
    let mut env = src_podman(e);
    env.push(kv("DOCKER_HOST", host));
    imgkit(&env)
        .args(["run", "--from", "podman", "--to", "docker", "-f"])
        .arg(&filter)
        .run()
        .success()
        .stderr_has("2 verified by image ID");
    assert_eq!(docker_images(host), want_two(e, ""));
}

#[test]
fn ctr_k8s_to_docker_moves_exactly_the_selection() {
    let e = need_engines!();
    let _guard = lock(&DOCKER_DST);
    let host = e.dst.var("DOCKER_HOST");
    empty_docker(host);
    let tmp = tempfile::tempdir().unwrap();
    let filter = write_filter(tmp.path(), SELECT_TWO);
    let env = vec![
        kv("CONTAINERD_ADDRESS", e.src.var("CONTAINERD_ADDRESS")),
        kv("DOCKER_HOST", host),
    ];
    imgkit(&env)
        .args(["run", "--from", "ctr:k8s.io", "--to", "docker", "-f"])
        .arg(&filter)
        .run()
        .success()
        .stderr_has("2 verified by image ID");
    assert_eq!(docker_images(host), want_two(e, ""));
}

#[test]
fn via_keeps_the_archive_while_loading() {
    let e = need_engines!();
    let tmp = tempfile::tempdir().unwrap();
    let filter = write_filter(tmp.path(), SELECT_TWO);
    let via = tmp.path().join("kept.tar");
    let mut env = fresh_podman(tmp.path());
    env.push(src_docker(e));
    imgkit(&env)
        .args(["run", "--from", "docker", "--to", "podman", "-f"])
        .arg(&filter)
        .arg("--via")
        .arg(&via)
        .run()
        .success();
    assert_eq!(podman_images(&env), want_two(e, "docker.io/"));
    // The kept archive is the stream itself: loading it elsewhere gives the same images.
    let tmp2 = tempfile::tempdir().unwrap();
    let env2 = fresh_podman(tmp2.path());
    imgkit(&env2)
        .args(["load", "--engine", "podman", "-i"])
        .arg(&via)
        .run()
        .success()
        .stdout_has("Loaded image: docker.io/seed/app:1.0");
    assert_eq!(podman_images(&env2), want_two(e, "docker.io/"));
}

// ---- archives --------------------------------------------------------------------------------

#[test]
fn each_engine_saves_an_archive_that_loads_elsewhere() {
    let e = need_engines!();
    let tmp = tempfile::tempdir().unwrap();
    let filter = write_filter(tmp.path(), SELECT_TWO);
    let sources: Vec<(&str, Vec<(String, String)>)> = vec![
        ("docker", vec![src_docker(e)]),
        ("podman", src_podman(e)),
        (
            "ctr:k8s.io",
            vec![kv("CONTAINERD_ADDRESS", e.src.var("CONTAINERD_ADDRESS"))],
        ),
    ];
    for (from, env) in sources {
        let archive = tmp.path().join(format!("{}.tar", from.replace(':', "-")));
        imgkit(&env)
            .args(["run", "--from", from, "-f"])
            .arg(&filter)
            .arg("--to")
            .arg(&archive)
            .run()
            .success()
            .stderr_has("moved 2 images");
        assert!(archive.is_file() && std::fs::metadata(&archive).unwrap().len() > 700_000);
        let name = archive.file_name().unwrap().to_str().unwrap();
        assert_eq!(temp_of(tmp.path(), name), None);

        let _guard = lock(&DOCKER_DST);
        let host = e.dst.var("DOCKER_HOST");
        empty_docker(host);
        imgkit(&[kv("DOCKER_HOST", host)])
            .args(["run", "--to", "docker", "--from"])
            .arg(&archive)
            .run()
            .success()
            .stderr_has("2 verified by image ID");
        assert_eq!(
            docker_images(host),
            want_two(e, ""),
            "{from} → archive → docker"
        );
    }
}

/// Archives as endpoints of `run`: everything into one archive, a compressed subset of it
/// (only the selected images' blobs), and that subset into podman and containerd.
#[test]
fn archives_are_endpoints_of_run() {
    let e = need_engines!();
    let tmp = tempfile::tempdir().unwrap();
    let filter = write_filter(tmp.path(), SELECT_TWO);
    let all = tmp.path().join("all.tar");
    let subset = tmp.path().join("two.tar.zst");
    imgkit(&[src_docker(e)])
        .args(["run", "--from", "docker", "--to"])
        .arg(&all)
        .run()
        .success()
        .stderr_has("verified by image ID");
    imgkit(&[])
        .args(["run", "--from"])
        .arg(&all)
        .arg("--to")
        .arg(&subset)
        .arg("-f")
        .arg(&filter)
        .run()
        .success()
        .stderr_has("moved 2 images")
        .stderr_has("2 verified by image ID");
    assert_eq!(
        std::fs::read(&subset).unwrap()[..4],
        [0x28, 0xb5, 0x2f, 0xfd],
        "zstd output"
    );

    let env = fresh_podman(tmp.path());
    imgkit(&env)
        .args(["run", "--to", "podman", "--from"])
        .arg(&subset)
        .run()
        .success()
        .stderr_has("2 verified by image ID");
    assert_eq!(podman_images(&env), want_two(e, "docker.io/"));

    let _guard = lock(&K8S_DST);
    let addr = e.dst.var("CONTAINERD_ADDRESS");
    empty_ctr(addr, "k8s.io");
    imgkit(&[kv("CONTAINERD_ADDRESS", addr)])
        .args(["run", "--to", "ctr:k8s.io", "--from"])
        .arg(&subset)
        .run()
        .success()
        .stderr_has("2 verified by image ID");
    assert_eq!(ctr_images(addr, "k8s.io"), want_two(e, "docker.io/"));
}

#[test]
fn an_archive_loads_into_ctr_k8s_and_podman_also_compressed() {
    let e = need_engines!();
    let tmp = tempfile::tempdir().unwrap();
    let filter = write_filter(tmp.path(), SELECT_TWO);
    let archive = tmp.path().join("two.tar");
    imgkit(&[src_docker(e)])
        .args(["save", "--engine", "docker", "-f"])
        .arg(&filter)
        .arg("-o")
        .arg(&archive)
        .run()
        .success();

    {
        let _guard = lock(&K8S_DST);
        let addr = e.dst.var("CONTAINERD_ADDRESS");
        empty_ctr(addr, "k8s.io");
        imgkit(&[kv("CONTAINERD_ADDRESS", addr)])
            .args(["load", "--engine", "ctr", "-n", "k8s.io", "-i"])
            .arg(&archive)
            .run()
            .success();
        assert_eq!(ctr_images(addr, "k8s.io"), want_two(e, "docker.io/"));
    }

    let gz = tmp.path().join("two.tar.gz");
    let gz_file = std::fs::File::create(&gz).unwrap();
    let status = Command::new("gzip")
        .arg("-c")
        .arg(&archive)
        .stdout(gz_file)
        .status()
        .unwrap();
    assert!(status.success());
    let env = fresh_podman(tmp.path());
    imgkit(&env)
        .args(["load", "--engine", "podman", "-i"])
        .arg(&gz)
        .run()
        .success();
    assert_eq!(podman_images(&env).len(), 2);
}

#[test]
fn save_to_stdout_streams_the_archive() {
    let e = need_engines!();
    let out = Command::new(bin())
        .args(["save", "--engine", "docker", "-o", "-", "seed/app:1.0"])
        .env("IMGKIT_DOCKER_BIN", docker_cli())
        .env("DOCKER_HOST", e.src.var("DOCKER_HOST"))
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.stdout.len() > 250_000, "{} bytes", out.stdout.len());
    assert_eq!(&out.stdout[257..262], b"ustar", "a tar on stdout");
}

// ---- plans, empty selections, hostile selections ------------------------------------------

/// Runs imgkit against the source docker through the logging stand-in CLI; returns the run and
/// every argv the "engine" was called with.
fn logged(e: &Engines, dir: &Path, args: &[&str], fault: Option<&str>) -> (Run, String) {
    let log = dir.join("engine.log");
    let _ = std::fs::remove_file(&log);
    let fake = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/fake-engine");
    let mut t = imgkit(&[src_docker(e)])
        .env("IMGKIT_DOCKER_BIN", &fake)
        .env("IMGKIT_DOCKER_VIA", "cli")
        .env("IMGKIT_FAKE_REAL", docker_cli())
        .env("IMGKIT_FAKE_LOG", &log)
        .current_dir(dir)
        .args(args);
    if let Some(f) = fault {
        t = t.env("IMGKIT_FAKE_FAULT", f);
    }
    let run = t.run();
    (run, std::fs::read_to_string(&log).unwrap_or_default())
}

/// The stand-in's log shows the source listing ran (so "no save in the log" means the engine
/// was reached and refused, not that the log stayed empty for another reason).
#[track_caller]
fn listing_ran(log: &str) {
    assert!(
        log.lines().any(|l| l.contains("image ls")),
        "the stand-in engine never listed (is IMGKIT_DOCKER_BIN honoured?): {log:?}"
    );
}

#[test]
fn hostile_selections_are_rejected_before_any_engine_moves_a_byte() {
    let e = need_engines!();
    let tmp = tempfile::tempdir().unwrap();
    let marker = tmp.path().join("pwned");
    let flag_target = tmp.path().join("x");
    let cases = [
        (
            format!("\"--output={}\"", flag_target.display()),
            "would be read as a flag",
        ),
        ("\"a b\"".to_owned(), "not an image reference"),
        (
            format!("\"$(touch {})\"", marker.display()),
            "not an image reference",
        ),
        ("\"x;rm -rf /\"".to_owned(), "not an image reference"),
        (
            "[range(10240)] | map(\"a\") | join(\"\")".to_owned(),
            "too long",
        ),
        ("\"nope/none:1\"".to_owned(), "names no image"),
    ];
    for (program, message) in cases {
        write_filter(tmp.path(), &program);
        let (run, log) = logged(
            e,
            tmp.path(),
            &[
                "run",
                "--from",
                "docker",
                "--to",
                "out.tar",
                "-f",
                "select.jq",
            ],
            None,
        );
        let run = run.code(2).stderr_has(message);
        assert!(
            run.stderr.contains("refusing to run any engine"),
            "{}",
            run.stderr
        );
        listing_ran(&log);
        assert!(
            !log.contains("save"),
            "an engine ran save for {program}: {log}"
        );
        assert!(
            !marker.exists() && !flag_target.exists(),
            "{program} created something"
        );
        assert!(
            !tmp.path().join("out.tar").exists() && !tmp.path().join("out.tar.partial").exists()
        );
    }
    // The same gate for references given on the command line.
    let (run, log) = logged(
        e,
        tmp.path(),
        &[
            "save",
            "--engine",
            "docker",
            "-o",
            "out.tar",
            "--",
            "--output=/tmp/x",
        ],
        None,
    );
    run.code(2).stderr_has("would be read as a flag");
    assert!(log.is_empty(), "an engine ran: {log}");
    // …and that empty log is a refusal, not a stand-in left out: an `ls` through it is logged.
    let (_, log) = logged(e, tmp.path(), &["ls", "--engine", "docker"], None);
    listing_ran(&log);
}

#[test]
fn an_empty_selection_exits_1_and_does_nothing() {
    let e = need_engines!();
    let tmp = tempfile::tempdir().unwrap();
    write_filter(tmp.path(), "select(false)");
    let (run, log) = logged(
        e,
        tmp.path(),
        &["run", "--from", "docker", "-f", "select.jq"],
        None,
    );
    run.code(1).stderr_has("selected no image");
    listing_ran(&log);
    assert!(!log.contains("save"), "{log}");
    no_partials(tmp.path());
}

#[test]
fn dry_run_prints_the_plan_and_touches_nothing() {
    let e = need_engines!();
    let tmp = tempfile::tempdir().unwrap();
    write_filter(tmp.path(), SELECT_TWO);
    let (run, log) = logged(
        e,
        tmp.path(),
        &[
            "run",
            "--from",
            "docker",
            "--to",
            "podman",
            "-f",
            "select.jq",
            "--dry-run",
            // the seeded podman has both images already: without --force nothing would move
            "--force",
        ],
        None,
    );
    let run = run.success();
    assert!(run.stdout.contains("would move 2 images"), "{}", run.stdout);
    assert!(
        run.stdout.contains("seed/app:1.0") && run.stdout.contains("save: "),
        "{}",
        run.stdout
    );
    listing_ran(&log);
    assert!(!log.contains("save"), "{log}");
    no_partials(tmp.path());
}

// ---- faults ----------------------------------------------------------------------------------

#[test]
fn a_source_dying_mid_stream_leaves_no_file_and_no_image() {
    let e = need_engines!();
    let tmp = tempfile::tempdir().unwrap();
    write_filter(tmp.path(), SELECT_TWO);
    let args = [
        "run",
        "--from",
        "docker",
        "--to",
        "out.tar",
        "-f",
        "select.jq",
    ];
    let (run, _) = logged(e, tmp.path(), &args, Some("save-dies"));
    run.code(2)
        .stderr_has("the source save failed")
        .stderr_has("save died mid-stream");
    no_partials(tmp.path());

    // Into podman, with --via: nothing loaded, nothing kept.
    let mut podman = fresh_podman(tmp.path());
    let fake = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/fake-engine");
    podman.push(src_docker(e));
    imgkit(&podman)
        .env("IMGKIT_DOCKER_BIN", &fake)
        .env("IMGKIT_DOCKER_VIA", "cli")
        .env("IMGKIT_FAKE_REAL", docker_cli())
        .env("IMGKIT_FAKE_FAULT", "save-dies")
        .current_dir(tmp.path())
        .args([
            "run",
            "--from",
            "docker",
            "--to",
            "podman",
            "-f",
            "select.jq",
            "--via",
            "via.tar",
        ])
        .run()
        .code(2)
        .stderr_has("the source save failed");
    assert!(
        podman_images(&podman).is_empty(),
        "a half image reached podman"
    );
    no_partials(tmp.path());
}

#[test]
fn a_failing_load_is_named_and_leaves_nothing() {
    let e = need_engines!();
    let tmp = tempfile::tempdir().unwrap();
    let junk = tmp.path().join("junk.tar");
    std::fs::write(&junk, vec![0x5a; 300_000]).unwrap();
    let env = fresh_podman(tmp.path());
    imgkit(&env)
        .args(["load", "--engine", "podman", "-i"])
        .arg(&junk)
        .run()
        .code(2)
        // imgkit verifies what it loads: junk stops the load before podman sees its end.
        .stderr_has("the load into podman did not complete; podman kept nothing from it");
    assert!(podman_images(&env).is_empty());
    let _ = e;
}

#[test]
fn an_unwritable_output_directory_fails_before_saving() {
    let e = need_engines!();
    let tmp = tempfile::tempdir().unwrap();
    let ro = tmp.path().join("ro");
    std::fs::create_dir(&ro).unwrap();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "ro,size=1m", "tmpfs"])
        .arg(&ro)
        .status();
    if !mounted.is_ok_and(|s| s.success()) {
        skip("mounting a tmpfs needs root");
        return;
    }
    write_filter(tmp.path(), SELECT_TWO);
    let (run, log) = logged(
        e,
        tmp.path(),
        &[
            "save",
            "--engine",
            "docker",
            "-f",
            "select.jq",
            "-o",
            "ro/out.tar",
        ],
        None,
    );
    let _ = Command::new("umount").arg(&ro).status();
    run.code(2)
        .stderr_has("cannot write an archive to ro/out.tar: no file can be created in ro")
        .stderr_has("hint:");
    // The output is checked before any engine runs: not even the listing.
    assert!(
        log.trim().is_empty(),
        "the engine ran although the output can't be created: {log}"
    );
    // Control: the same command into the (now writable) directory goes through the stand-in.
    let (run, log) = logged(
        e,
        tmp.path(),
        &[
            "save",
            "--engine",
            "docker",
            "-f",
            "select.jq",
            "-o",
            "ro/out.tar",
        ],
        None,
    );
    run.success();
    listing_ran(&log);
    assert!(log.contains("save"), "{log}");
}

#[test]
fn a_full_disk_fails_cleanly() {
    let e = need_engines!();
    let tmp = tempfile::tempdir().unwrap();
    let small = tmp.path().join("small");
    std::fs::create_dir(&small).unwrap();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=256k", "tmpfs"])
        .arg(&small)
        .status();
    if !mounted.is_ok_and(|s| s.success()) {
        skip("mounting a tmpfs needs root");
        return;
    }
    write_filter(tmp.path(), SELECT_TWO);
    let (run, _) = logged(
        e,
        tmp.path(),
        &[
            "run",
            "--from",
            "docker",
            "--to",
            "small/out.tar",
            "-f",
            "select.jq",
        ],
        None,
    );
    let left: Vec<_> = std::fs::read_dir(&small)
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.file_name())
        .collect();
    let _ = Command::new("umount").arg(&small).status();
    run.code(2)
        .stderr_has("could not write")
        .stderr_has("disk is full");
    assert!(left.is_empty(), "left on the full disk: {left:?}");
}

/// A ~200 MB image in the target docker (whose lock the caller holds), so a transfer lasts
/// long enough to interrupt. The seeded source set stays as seeded.
pub(crate) fn big_image(e: &Engines) -> &'static str {
    {
        let host = e.dst.var("DOCKER_HOST");
        if docker_images(host).contains_key("transfer/big:1") {
            return "transfer/big:1";
        }
        let tmp = tempfile::tempdir().unwrap();
        let data = tmp.path().join("root/data");
        std::fs::create_dir_all(&data).unwrap();
        let status = Command::new("head")
            .args(["-c", "200000000", "/dev/urandom"])
            .stdout(std::fs::File::create(data.join("blob")).unwrap())
            .status()
            .unwrap();
        assert!(status.success());
        let tar = tmp.path().join("big.tar");
        output(
            Command::new("tar")
                .arg("-C")
                .arg(tmp.path().join("root"))
                .arg("-cf")
                .arg(&tar)
                .arg("data"),
        );
        output(docker(host).arg("import").arg(&tar).arg("transfer/big:1"));
    }
    "transfer/big:1"
}

#[test]
fn ctrl_c_stops_both_sides_and_cleans_up() {
    interrupt_mid_transfer("-INT");
}

/// The temporary imgkit writes `name` through in `dir`, if there is one.
pub(crate) fn temp_of(dir: &Path, name: &str) -> Option<PathBuf> {
    std::fs::read_dir(dir)
        .ok()?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| {
            p.file_name().and_then(|n| n.to_str()).is_some_and(|n| {
                n.starts_with(&format!(".{name}.")) && n.ends_with(".imgkit-partial")
            })
        })
}

/// `kill SIGNAL` once bytes flow from docker to podman (with a `--via` file): exit 2,
/// "cancelled", nothing left behind, no half image in podman.
pub(crate) fn interrupt_mid_transfer(signal: &str) {
    let e = need_engines!();
    let _guard = lock(&DOCKER_DST);
    let big = big_image(e);
    let tmp = tempfile::tempdir().unwrap();
    let env = fresh_podman(tmp.path());
    let mut child = Command::new(bin())
        .args([
            "run", "--from", "docker", "--to", "podman", "--via", "via.tar", "--filter",
        ])
        .arg(write_filter(
            tmp.path(),
            &format!("select(.Repository + \":\" + .Tag == \"{big}\") | \"{big}\""),
        ))
        .envs(env.iter().map(|(k, v)| (k, v)))
        .env("DOCKER_HOST", e.dst.var("DOCKER_HOST"))
        .env("IMGKIT_DOCKER_BIN", docker_cli())
        .env("NO_COLOR", "1")
        .current_dir(tmp.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Interrupt once bytes flow.
    let deadline = Instant::now() + Duration::from_mins(1);
    while temp_of(tmp.path(), "via.tar")
        .and_then(|p| std::fs::metadata(p).ok())
        .map_or(0, |m| m.len())
        < 1_000_000
    {
        assert!(Instant::now() < deadline, "no bytes flowed within 60 s");
        assert!(
            child.try_wait().unwrap().is_none(),
            "imgkit ended before it could be interrupted"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    output(Command::new("kill").args([signal, &child.id().to_string()]));
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("cancelled"), "{stderr}");
    no_partials(tmp.path());
    assert!(
        podman_images(&env).is_empty(),
        "a half image reached podman"
    );
}
