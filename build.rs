//! Writes the text of `imgkit --version`: imgkit's version and those of the libraries that run
//! user programs (jaq for jq programs, wasmtime for plugins), read from Cargo.lock at build
//! time so that printing it initialises nothing at run time.

use std::env;
use std::fmt::Write as _;
use std::fs;
use std::path::Path;

/// The WASM filter plugin contract (docs/plugins.md): stdin records, stdout references.
const PLUGIN_CONTRACT: u32 = 1;

/// The version of `name` in a Cargo.lock (the highest when several are locked).
fn locked(lock: &str, name: &str) -> Option<String> {
    let mut best: Option<(Vec<u64>, String)> = None;
    for block in lock.split("[[package]]") {
        let mut lines = block.lines().map(str::trim);
        let is_it = lines
            .clone()
            .any(|l| l == format!("name = \"{name}\"").as_str());
        if !is_it {
            continue;
        }
        let Some(version) = lines.find_map(|l| l.strip_prefix("version = \"")) else {
            continue;
        };
        let version = version.trim_end_matches('"').to_owned();
        let key: Vec<u64> = version
            .split(['.', '-', '+'])
            .map(|p| p.parse().unwrap_or(0))
            .collect();
        if best.as_ref().is_none_or(|(k, _)| key > *k) {
            best = Some((key, version));
        }
    }
    best.map(|(_, v)| v)
}

fn main() {
    let root = env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let lock_path = Path::new(&root).join("Cargo.lock");
    println!("cargo:rerun-if-changed={}", lock_path.display());
    println!("cargo:rerun-if-changed=build.rs");
    let lock = fs::read_to_string(&lock_path).unwrap_or_default();
    let v = |name| locked(&lock, name).unwrap_or_else(|| "unknown".to_owned());

    let mut text = String::new();
    let _ = writeln!(
        text,
        "{}",
        env::var("CARGO_PKG_VERSION").unwrap_or_default()
    );
    let _ = writeln!(
        text,
        "jaq-core {}, jaq-std {}, jaq-json {} (jq programs)",
        v("jaq-core"),
        v("jaq-std"),
        v("jaq-json")
    );
    match locked(&lock, "wasmtime") {
        Some(w) => {
            let _ = write!(
                text,
                "wasmtime {w} (WASM filter plugins, contract v{PLUGIN_CONTRACT})"
            );
        }
        None => {
            let _ = write!(
                text,
                "wasmtime: not built in (WASM filter plugins, contract v{PLUGIN_CONTRACT})"
            );
        }
    }
    let out = Path::new(&env::var("OUT_DIR").expect("cargo sets OUT_DIR")).join("long_version.txt");
    fs::write(out, text).expect("write long_version.txt");
}
