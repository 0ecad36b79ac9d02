//! A small builder for running the real binary: `Test::new().args([..]).stdin(..).run()`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

pub(crate) fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_imgkit"))
}

// ---- the skip policy -------------------------------------------------------------------------

/// `CI` is set to something (`.ci/run` sets `CI=true`); `CI=` (empty) does not count.
pub(crate) fn in_ci() -> bool {
    ci_value(std::env::var_os("CI").as_deref())
}

fn ci_value(v: Option<&std::ffi::OsStr>) -> bool {
    v.is_some_and(|v| !v.is_empty())
}

/// The one policy for a test that cannot run here (no engines, no jq, no wasm toolchain, …):
/// outside CI it prints why and the caller returns; in CI it fails with the same reason, so a
/// CI run can never pass by skipping.
#[track_caller]
pub(crate) fn skip(why: &str) {
    assert!(
        !in_ci(),
        "CI is set, so a missing prerequisite is a failure, not a skip: {why}"
    );
    eprintln!("skipped: {why}");
}

/// `name` as found on `PATH` (the first executable file of that name), like a shell finds it.
pub(crate) fn on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| is_executable(p))
}

#[cfg(unix)]
fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    p.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(not(unix))]
fn is_executable(p: &Path) -> bool {
    p.is_file() || p.with_extension("exe").is_file()
}

/// A reference tool the tests compare against or drive (`jq`, `gojq`): found on `PATH`, or
/// skipped by [`skip`] (a failure in CI).
pub(crate) fn tool(name: &str) -> Option<PathBuf> {
    let found = on_path(name);
    if found.is_none() {
        skip(&format!(
            "{name} is not on PATH (scripts/test installs it from Debian)"
        ));
    }
    found
}

/// The docker CLI the tests drive: `IMGKIT_DOCKER_BIN` (scripts/engines writes the client
/// that matches its dockerd into DIR/env), else `docker` on `PATH`.
pub(crate) fn docker_bin() -> PathBuf {
    std::env::var_os("IMGKIT_DOCKER_BIN")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| on_path("docker"))
        .unwrap_or_else(|| PathBuf::from("docker"))
}

#[test]
fn an_empty_ci_variable_is_not_ci() {
    use std::ffi::OsStr;
    assert!(!ci_value(None));
    assert!(!ci_value(Some(OsStr::new(""))));
    assert!(ci_value(Some(OsStr::new("true"))));
    assert!(ci_value(Some(OsStr::new("1"))));
}

/// One invocation of imgkit, built up and then run.
pub(crate) struct Test {
    cmd: Command,
    stdin: Vec<u8>,
}

/// The finished invocation.
pub(crate) struct Run {
    pub(crate) status: Option<i32>,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
}

impl Test {
    pub(crate) fn new() -> Self {
        let mut cmd = Command::new(bin());
        cmd.env_remove("IMGKIT_LOG").env("NO_COLOR", "1");
        Self {
            cmd,
            stdin: Vec::new(),
        }
    }

    pub(crate) fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        self.cmd.args(args);
        self
    }

    pub(crate) fn arg(mut self, arg: impl AsRef<std::ffi::OsStr>) -> Self {
        self.cmd.arg(arg);
        self
    }

    pub(crate) fn env(mut self, k: &str, v: impl AsRef<std::ffi::OsStr>) -> Self {
        self.cmd.env(k, v);
        self
    }

    pub(crate) fn env_remove(mut self, k: &str) -> Self {
        self.cmd.env_remove(k);
        self
    }

    pub(crate) fn current_dir(mut self, dir: impl AsRef<std::path::Path>) -> Self {
        self.cmd.current_dir(dir);
        self
    }

    pub(crate) fn stdin(mut self, input: impl Into<Vec<u8>>) -> Self {
        self.stdin = input.into();
        self
    }

    pub(crate) fn run(mut self) -> Run {
        let mut child = self
            .cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn imgkit");
        let mut stdin = child.stdin.take().unwrap();
        let input = std::mem::take(&mut self.stdin);
        let writer = std::thread::spawn(move || {
            let _ = stdin.write_all(&input);
        });
        let Output {
            status,
            stdout,
            stderr,
        } = child.wait_with_output().expect("wait imgkit");
        writer.join().unwrap();
        Run {
            status: status.code(),
            stdout: String::from_utf8_lossy(&stdout).into_owned(),
            stderr: String::from_utf8_lossy(&stderr).into_owned(),
        }
    }
}

impl Run {
    /// Asserts the exit code, showing both streams when it differs.
    #[track_caller]
    pub(crate) fn code(self, want: i32) -> Self {
        assert_eq!(
            self.status,
            Some(want),
            "exit code\n--- stdout\n{}\n--- stderr\n{}",
            self.stdout,
            self.stderr
        );
        self
    }

    #[track_caller]
    pub(crate) fn success(self) -> Self {
        self.code(0)
    }

    #[track_caller]
    pub(crate) fn stdout_is(self, want: &str) -> Self {
        assert_eq!(self.stdout, want, "stdout\n--- stderr\n{}", self.stderr);
        self
    }

    #[track_caller]
    pub(crate) fn stdout_has(self, needle: &str) -> Self {
        assert!(
            self.stdout.contains(needle),
            "stdout lacks {needle:?}:\n{}\n--- stderr\n{}",
            self.stdout,
            self.stderr
        );
        self
    }

    #[track_caller]
    pub(crate) fn stderr_has(self, needle: &str) -> Self {
        assert!(
            self.stderr.contains(needle),
            "stderr lacks {needle:?}:\n{}",
            self.stderr
        );
        self
    }
}
