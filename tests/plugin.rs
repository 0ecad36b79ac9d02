//! WASM filter plugins end to end: the example plugins built from source (Rust and C), parity
//! of the Rust default plugin with `jq -r -f filters/default.jq`, the module cache, and hostile
//! plugins — each contained with the right typed error while imgkit itself exits normally.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use crate::util::{Run, Test};

/// Assertions this theme adds to `Run`.
trait RunExt: Sized {
    fn stderr_lacks(self, needle: &str) -> Self;
}

impl RunExt for Run {
    #[track_caller]
    fn stderr_lacks(self, needle: &str) -> Self {
        assert!(
            !self.stderr.contains(needle),
            "stderr has {needle:?}:\n{}",
            self.stderr
        );
        self
    }
}

const LISTING: &str = include_str!("../examples/listing.jsonl");
/// `imgkit filter --plugin` exit codes (jq's): 3 the module cannot be loaded, 5 a run failed.
const LOAD_FAILED: i32 = 3;
const RUN_FAILED: i32 = 5;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The cargo target dir the tests were built in (`…/target/debug/imgkit` → `…/target`).
fn target_dir() -> PathBuf {
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_imgkit"));
    bin.ancestors().nth(2).expect("target dir").to_path_buf()
}

fn fixture(name: &str) -> PathBuf {
    root().join("tests/fixtures/plugins").join(name)
}

/// Paths of the plugins built from source, once per test run (cargo and clang keep their own
/// caches in the target dir, so later runs only check freshness).
struct Guests {
    default: PathBuf,
    exclude_k8s: PathBuf,
    newest_tag: PathBuf,
    hostile: PathBuf,
    c_by_prefix: PathBuf,
}

fn guests() -> Option<&'static Guests> {
    static GUESTS: OnceLock<Option<Guests>> = OnceLock::new();
    GUESTS
        .get_or_init(|| match build_guests() {
            Ok(g) => Some(g),
            Err(why) => {
                crate::util::skip(&format!(
                    "cannot build the test plugins ({why}); run scripts/test, or \
                     `rustup target add wasm32-wasip1` and install clang, lld, wasi-libc and \
                     libclang-rt-14-dev-wasm32"
                ));
                None
            }
        })
        .as_ref()
}

fn build_guests() -> Result<Guests, String> {
    let dir = target_dir().join("plugin-guests");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    for manifest in [
        "filters/plugins/Cargo.toml",
        "tests/fixtures/plugins/hostile/Cargo.toml",
    ] {
        let status = Command::new(&cargo)
            .args([
                "build",
                "--quiet",
                "--locked",
                "--release",
                "--target",
                "wasm32-wasip1",
                "--manifest-path",
            ])
            .arg(root().join(manifest))
            .env("CARGO_TARGET_DIR", &dir)
            .env_remove("RUSTFLAGS")
            .status()
            .map_err(|e| format!("cargo: {e}"))?;
        if !status.success() {
            return Err(format!("cargo build of {manifest} failed"));
        }
    }
    let c_out = dir.join("c");
    std::fs::create_dir_all(&c_out).map_err(|e| e.to_string())?;
    let c_wasm = c_out.join("by-prefix.wasm");
    let status = Command::new("clang")
        .args(["--target=wasm32-wasi", "-O2", "-Wall", "-o"])
        .arg(&c_wasm)
        .arg(root().join("filters/plugins/c/by-prefix.c"))
        .status()
        .map_err(|e| format!("clang: {e}"))?;
    if !status.success() {
        return Err("clang --target=wasm32-wasi failed".into());
    }
    let wasm = dir.join("wasm32-wasip1/release");
    Ok(Guests {
        default: wasm.join("default.wasm"),
        exclude_k8s: wasm.join("exclude-k8s-system.wasm"),
        newest_tag: wasm.join("newest-tag.wasm"),
        hostile: wasm.join("hostile.wasm"),
        c_by_prefix: c_wasm,
    })
}

/// imgkit with its module cache in the target dir (shared by the tests: a module compiles once).
fn imgkit() -> Test {
    Test::new().env("XDG_CACHE_HOME", target_dir().join("plugin-test-cache"))
}

fn filter(plugin: &Path, extra: &[&str]) -> Test {
    imgkit()
        .args(["filter", "--plugin"])
        .args([plugin])
        .args(extra)
}

/// `imgkit filter --plugin hostile.wasm --plugin-arg mode=MODE EXTRA…` on the sample listing;
/// `None` (skipped) without the wasm toolchain outside CI.
pub(crate) fn hostile(mode: &str, extra: &[&str]) -> Option<Run> {
    let g = guests()?;
    let mode = format!("mode={mode}");
    Some(
        filter(&g.hostile, extra)
            .args(["--plugin-arg", mode.as_str()])
            .stdin(LISTING)
            .run(),
    )
}

// ---- the examples ------------------------------------------------------------------------

#[test]
fn default_plugin_matches_the_default_program_on_the_sample() {
    let Some(g) = guests() else { return };
    let want = imgkit()
        .args(["filter", "-r", "-f", "default.jq"])
        .stdin(LISTING)
        .run()
        .success();
    filter(&g.default, &[])
        .stdin(LISTING)
        .run()
        .success()
        .stdout_is(&want.stdout);
}

#[test]
fn exclude_k8s_system_drops_cluster_images() {
    let Some(g) = guests() else { return };
    filter(&g.exclude_k8s, &[])
        .stdin(LISTING)
        .run()
        .success()
        .stdout_is("alpine:3.20\nalpine:latest\nlocalhost:5000/team/app:v1.2.0\n");
    filter(&g.exclude_k8s, &["--plugin-arg", "drop=alpine"])
        .stdin(LISTING)
        .run()
        .success()
        .stdout_is("localhost:5000/team/app:v1.2.0\n");
}

#[test]
fn newest_tag_keeps_one_tag_per_repository() {
    let Some(g) = guests() else { return };
    filter(&g.newest_tag, &[])
        .stdin(LISTING)
        .run()
        .success()
        .stdout_is("alpine:latest\nlocalhost:5000/team/app:v1.2.0\nrancher/mirrored-coredns-coredns:1.11.3\n");
}

#[test]
fn c_plugin_selects_by_prefix() {
    let Some(g) = guests() else { return };
    filter(
        &g.c_by_prefix,
        &[
            "--plugin-arg",
            "prefix=rancher/",
            "--plugin-arg",
            "prefix=local",
        ],
    )
    .stdin(LISTING)
    .run()
    .success()
    .stdout_is("localhost:5000/team/app:v1.2.0\nrancher/mirrored-coredns-coredns:1.11.3\n");
}

#[test]
fn plugin_check_runs_the_sample() {
    let Some(g) = guests() else { return };
    imgkit()
        .args(["plugin", "check"])
        .args([&g.default])
        .run()
        .success()
        .stdout_has("ran on 6 records")
        .stdout_has("  alpine:3.20\n");
    // A reference the listing does not name fails the check.
    imgkit()
        .args(["plugin", "check", "--plugin-arg", "mode=unlisted"])
        .args([&g.hostile])
        .run()
        .code(2)
        .stderr_has("name no image of the listing: evil.example/backdoor:latest");
}

// ---- parity ------------------------------------------------------------------------------

/// `n` docker-shaped lines with every case default.jq distinguishes: tagged, `<none>` tag
/// (digest-only rows), `<none>` repository, registries with ports, nested paths.
fn generated_listing(n: usize) -> String {
    let repos = [
        "alpine",
        "library/busybox",
        "ghcr.io/org/app",
        "localhost:5000/team/svc",
        "registry.k8s.io/pause",
        "rancher/mirrored-coredns-coredns",
        "<none>",
        "quay.io/a/b-c_d.e",
    ];
    let tags = [
        "latest",
        "3.20",
        "v1.2.0-rc.1",
        "<none>",
        "1.11.3",
        "2026-11-28",
        "x_y",
    ];
    let mut out = String::with_capacity(n * 300);
    let mut state: u64 = 0x2545_f491_4f6c_dd1d;
    for i in 0..n {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let repo = repos[(state % repos.len() as u64) as usize];
        let tag = tags[((state >> 8) % tags.len() as u64) as usize];
        let repo = if repo == "<none>" || state & 0x300 != 0 {
            repo.to_string()
        } else {
            format!("{repo}{}", i % 97)
        };
        let digest = if tag == "<none>" {
            format!("sha256:{state:064x}")
        } else {
            "<none>".into()
        };
        let _ = writeln!(
            out,
            "{{\"Containers\":\"N/A\",\"CreatedAt\":\"2026-11-{:02} 0{}:12:01 +0000 UTC\",\"CreatedSince\":\"{} days ago\",\"Digest\":\"{digest}\",\"ID\":\"{:012x}\",\"Repository\":\"{repo}\",\"SharedSize\":\"N/A\",\"Size\":\"{}.{}MB\",\"Tag\":\"{tag}\",\"UniqueSize\":\"N/A\",\"VirtualSize\":\"{}MB\"}}",
            1 + i % 28,
            i % 10,
            i % 30,
            state & 0xffff_ffff_ffff,
            i % 900,
            i % 10,
            i % 1000
        );
    }
    out
}

#[test]
fn default_plugin_is_byte_identical_to_jq_on_100k_lines() {
    let Some(g) = guests() else { return };
    let listing = generated_listing(100_000);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("listing.jsonl");
    std::fs::write(&path, &listing).unwrap();
    let Some(jq) = crate::util::tool("jq") else {
        return;
    };
    let jq = Command::new(jq)
        .args(["-r", "-f"])
        .arg(root().join("filters/default.jq"))
        .arg(&path)
        .output()
        .unwrap();
    assert!(jq.status.success(), "jq failed: {jq:?}");
    let jq = jq.stdout;
    // Timing is not under test here: a loaded CI machine may need more than the default 10 s.
    let ours = filter(&g.default, &["--plugin-timeout", "300s"])
        .args([&path])
        .run()
        .success();
    assert_eq!(ours.stdout.len(), jq.len(), "output sizes differ");
    assert!(ours.stdout.as_bytes() == jq.as_slice(), "outputs differ");
    assert!(jq.len() > 1_000_000, "the listing exercises the filter");
}

// ---- sandbox -----------------------------------------------------------------------------

#[test]
fn sandbox_shows_only_name_args_fixed_clock() {
    let Some(g) = guests() else { return };
    filter(
        &g.hostile,
        &["--plugin-arg", "mode=introspect", "--plugin-arg", "k=v w"],
    )
    .stdin(LISTING)
    .env("IMGKIT_SECRET", "hunter2")
    .run()
    .success()
    .stdout_is("")
    .stderr_has(r#"argv=["hostile.wasm", "mode=introspect", "k=v w"]"#)
    .stderr_has("clock=1767225600")
    .stderr_has(&format!("stdin={} bytes", LISTING.len()));
    filter(
        &g.hostile,
        &["--plugin-arg", "mode=introspect", "--plugin-clock", "real"],
    )
    .stdin("")
    .run()
    .success()
    .stderr_lacks("clock=1767225600");
}

#[test]
fn hostile_reading_etc_passwd_finds_no_file_system() {
    let Some(run) = hostile("passwd", &[]) else {
        return;
    };
    run.code(RUN_FAILED)
        .stdout_is("")
        .stderr_has("cannot read /etc/passwd")
        .stderr_has("hostile.wasm exited with code 1")
        .stderr_lacks("root:");
}

#[test]
fn hostile_listing_root_finds_no_file_system() {
    let Some(run) = hostile("list-root", &[]) else {
        return;
    };
    run.code(RUN_FAILED)
        .stdout_is("")
        .stderr_has("cannot list /")
        .stderr_has("exited with code 1");
}

#[test]
fn hostile_reading_env_finds_none() {
    let Some(g) = guests() else { return };
    filter(&g.hostile, &["--plugin-arg", "mode=env"])
        .stdin(LISTING)
        .env("IMGKIT_SECRET", "hunter2")
        .run()
        .success()
        .stdout_is("")
        .stderr_has("0 environment variables")
        .stderr_lacks("hunter2");
}

#[test]
fn hostile_socket_cannot_connect() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = format!("port={}", listener.local_addr().unwrap().port());
    let Some(run) = hostile("socket", &["--plugin-arg", port.as_str()]) else {
        return;
    };
    run.code(RUN_FAILED)
        .stdout_is("")
        .stderr_has("cannot connect")
        .stderr_has("exited with code 1");
    assert!(
        listener.accept().is_err(),
        "the plugin reached the host's socket"
    );
}

// ---- limits and typed failures -----------------------------------------------------------

#[test]
fn hostile_loop_runs_out_of_fuel() {
    let Some(run) = hostile("loop", &[]) else {
        return;
    };
    out_of_fuel(
        &run.code(RUN_FAILED)
            .stderr_has("hint: raise with --plugin-fuel"),
        "hostile.wasm",
    );
}

/// The plugin `name` ran out of fuel, and the error names a budget that matches the records it
/// counted. The budget grows with the records fed so far (50M + 200k each), and a plugin that
/// loops before reading may start before the feeding thread has handed over all 6.
fn out_of_fuel(run: &Run, name: &str) {
    let re = regex::Regex::new(&format!(
        r"{} used its CPU budget of (\d+) units on (\d+) records",
        regex::escape(name)
    ))
    .unwrap();
    let caps = re
        .captures(&run.stderr)
        .unwrap_or_else(|| panic!("no CPU-budget error in: {}", run.stderr));
    let budget: u64 = caps[1].parse().unwrap();
    let records: u64 = caps[2].parse().unwrap();
    assert!(records <= 6, "{}", run.stderr);
    assert_eq!(budget, 50_000_000 + 200_000 * records, "{}", run.stderr);
}

#[test]
fn hostile_loop_with_fuel_raised_hits_the_deadline() {
    let Some(run) = hostile(
        "loop",
        &[
            "--plugin-fuel",
            "1000000000000000",
            "--plugin-timeout",
            "1s",
        ],
    ) else {
        return;
    };
    run.code(RUN_FAILED)
        .stderr_has("hostile.wasm ran past its time limit of 1s")
        .stderr_has("hint: raise with --plugin-timeout");
}

#[test]
fn hostile_4gib_allocation_hits_the_memory_limit() {
    // Filling the hoard costs fuel (a byte loop unless the guest's memset is `memory.fill`):
    // give it CPU to spare, so the memory limit is what stops it, whatever the compiler chose.
    let Some(run) = hostile("alloc", &["--plugin-fuel", "100000000"]) else {
        return;
    };
    run.code(RUN_FAILED)
        .stderr_has("hostile.wasm asked for")
        .stderr_has("over the limit of 67108864 bytes")
        .stderr_has("hint: raise with --plugin-memory");
}

#[test]
fn hostile_printing_forever_hits_the_output_cap() {
    let Some(run) = hostile("print", &[]) else {
        return;
    };
    let cap = LISTING.len() + 64 * 1024;
    run.code(RUN_FAILED)
        .stdout_is("")
        .stderr_has(&format!("hostile.wasm printed more than {cap} bytes"));
}

#[test]
fn hostile_panic_is_a_trap_with_its_message() {
    let Some(run) = hostile("panic", &[]) else {
        return;
    };
    run.code(RUN_FAILED)
        .stderr_has("boom: this plugin panics on purpose")
        .stderr_has("hostile.wasm crashed: unreachable instruction");
}

#[test]
fn hostile_deep_recursion_is_a_trap() {
    let Some(run) = hostile("recurse", &[]) else {
        return;
    };
    run.code(RUN_FAILED)
        .stderr_has("hostile.wasm crashed:")
        .stderr_has("stack");
}

#[test]
fn hostile_exit_42_is_reported_with_stderr() {
    let Some(run) = hostile("exit42", &[]) else {
        return;
    };
    run.code(RUN_FAILED)
        .stderr_has("hostile.wasm exited with code 42")
        .stderr_has("| exiting with 42");
}

#[test]
fn hostile_flag_shaped_output_is_rejected() {
    let Some(run) = hostile("flag", &[]) else {
        return;
    };
    run.code(RUN_FAILED).stdout_is("").stderr_has(
        r#"hostile.wasm printed "--output=/x" on line 1, which is not an image reference"#,
    );
}

// .wat fixtures: no toolchain needed.

fn wat(name: &str, extra: &[&str]) -> Run {
    filter(&fixture(name), extra).stdin(LISTING).run()
}

#[test]
fn wat_hello_works() {
    wat("hello.wat", &[]).success().stdout_is("alpine:latest\n");
}

#[test]
fn wat_loop_out_of_fuel_then_deadline() {
    out_of_fuel(&wat("loop.wat", &[]).code(RUN_FAILED), "loop.wat");
    wat(
        "loop.wat",
        &[
            "--plugin-fuel",
            "100000000000000",
            "--plugin-timeout",
            "300ms",
        ],
    )
    .code(RUN_FAILED)
    .stderr_has("loop.wat ran past its time limit of 300ms");
}

#[test]
fn wat_grow_4gib_hits_the_memory_limit() {
    wat("grow-4gib.wat", &[]).code(RUN_FAILED).stderr_has(
        "grow-4gib.wat asked for 4294967296 bytes of memory, over the limit of 67108864 bytes",
    );
}

#[test]
fn wat_print_forever_hits_the_output_cap() {
    wat("print-forever.wat", &["--plugin-max-output", "1KiB"])
        .code(RUN_FAILED)
        .stdout_is("")
        .stderr_has("print-forever.wat printed more than 1024 bytes");
}

#[test]
fn wat_exit_42() {
    wat("exit42.wat", &[])
        .code(RUN_FAILED)
        .stderr_has("exit42.wat exited with code 42");
}

#[test]
fn wat_recursion_is_a_stack_overflow() {
    wat("recurse.wat", &[])
        .code(RUN_FAILED)
        .stderr_has("recurse.wat crashed: stack overflow");
}

#[test]
fn wat_flag_output_is_rejected() {
    wat("flag.wat", &[])
        .code(RUN_FAILED)
        .stderr_has("not an image reference");
}

#[test]
fn invalid_modules_are_rejected_before_running() {
    wat("no-start.wat", &[])
        .code(LOAD_FAILED)
        .stderr_has("no-start.wat has no `_start` function");
    wat("wrong-import.wat", &[])
        .code(LOAD_FAILED)
        .stderr_has("wrong-import.wat imports `env::system`, which the sandbox does not provide");
    let dir = tempfile::tempdir().unwrap();
    let text = dir.path().join("notes.wasm");
    std::fs::write(&text, "this is not wasm\n").unwrap();
    filter(&text, &[])
        .stdin(LISTING)
        .run()
        .code(LOAD_FAILED)
        .stderr_has("notes.wasm is not a WebAssembly module");
    let broken = dir.path().join("broken.wasm");
    std::fs::write(&broken, b"\0asm\x01\0\0\0\x01\x05garbage").unwrap();
    filter(&broken, &[])
        .stdin(LISTING)
        .run()
        .code(LOAD_FAILED)
        .stderr_has("broken.wasm is not a valid WebAssembly module");
}

#[test]
fn a_50mb_module_is_refused_by_size() {
    let dir = tempfile::tempdir().unwrap();
    let big = dir.path().join("big.wasm");
    let f = std::fs::File::create(&big).unwrap();
    f.set_len(50 << 20).unwrap();
    drop(f);
    filter(&big, &[])
        .stdin(LISTING)
        .run()
        .code(LOAD_FAILED)
        .stderr_has(&format!(
            "big.wasm is {} bytes, over the module size limit of 10485760 bytes",
            50 << 20
        ))
        .stderr_has("hint: raise with --plugin-max-module");
}

// ---- the compiled-module cache -----------------------------------------------------------

#[test]
fn cache_hits_and_survives_corrupt_files() {
    let cache = tempfile::tempdir().unwrap();
    let check = || {
        Test::new()
            .env("XDG_CACHE_HOME", cache.path())
            .args(["plugin", "check"])
            .args([fixture("hello.wat")])
            .run()
            .success()
    };
    check().stdout_has("compiled and cached");
    check().stdout_has("loaded from the cache");
    let dir = cache.path().join("imgkit/plugins");
    let files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    // Corrupt it: flip a byte of the payload.
    let mut bytes = std::fs::read(&files[0]).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&files[0], &bytes).unwrap();
    check().stdout_has("a bad cache file was replaced");
    check().stdout_has("loaded from the cache");
    // A foreign file (say, another tool's cwasm) under our name is never deserialized.
    std::fs::write(&files[0], b"\x7fELF not ours").unwrap();
    check().stdout_has("a bad cache file was replaced");
}

// ---- plugins as the selection step of ls and run ------------------------------------------

fn sample() -> PathBuf {
    root().join("examples/images.tar")
}

#[test]
fn ls_selects_with_a_plugin_as_with_the_default_program() {
    let Some(g) = guests() else { return };
    let want = imgkit()
        .args(["ls", "--from"])
        .arg(sample())
        .run()
        .success();
    assert!(!want.stdout.is_empty());
    imgkit()
        .args(["ls", "--from"])
        .arg(sample())
        .arg("--filter")
        .arg(&g.default)
        .run()
        .success()
        .stdout_is(&want.stdout);
}

#[test]
fn a_plugin_after_a_jq_step_sees_only_the_records_that_passed() {
    let Some(g) = guests() else { return };
    let dir = tempfile::tempdir().unwrap();
    let jq = dir.path().join("tools.jq");
    std::fs::write(&jq, r#"select(.Repository == "imgkit.example/tools")"#).unwrap();
    imgkit()
        .args(["ls", "--from"])
        .arg(sample())
        .arg("--filter")
        .arg(&jq)
        .arg("--filter")
        .arg(&g.default)
        .run()
        .success()
        .stdout_is("imgkit.example/tools:2.1\n");
}

#[test]
fn run_with_a_plugin_writes_exactly_its_selection() {
    let Some(g) = guests() else { return };
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.tar");
    imgkit()
        .args(["run", "--from"])
        .arg(sample())
        .arg("--to")
        .arg(&out)
        .arg("--filter")
        .arg(&g.default)
        .run()
        .success();
    let want = imgkit()
        .args(["ls", "--from"])
        .arg(sample())
        .run()
        .success();
    imgkit()
        .args(["ls", "--from"])
        .arg(&out)
        .run()
        .success()
        .stdout_is(&want.stdout);
}

/// In `imgkit run`, a failing plugin means nothing is saved or loaded.
#[test]
fn run_with_a_failing_plugin_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.tar");
    for (plugin, error) in [
        ("loop.wat", "used its CPU budget"),
        ("exit42.wat", "exited with code 42"),
        ("flag.wat", "not an image reference"),
        (
            "hello.wat",
            "\"alpine:latest\", which names no image of this listing",
        ),
    ] {
        imgkit()
            .args(["run", "--from"])
            .arg(sample())
            .arg("--to")
            .arg(&out)
            .arg("--filter")
            .arg(fixture(plugin))
            .run()
            .code(2)
            .stderr_has(error);
        let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert!(left.is_empty(), "{plugin}: left {left:?}");
    }
}

#[test]
fn a_plugin_must_be_the_last_filter() {
    imgkit()
        .args(["ls", "--from"])
        .arg(sample())
        .arg("--filter")
        .arg(fixture("hello.wat"))
        .args(["--filter", "default"])
        .run()
        .code(2)
        .stderr_has("is not the last --filter");
}
