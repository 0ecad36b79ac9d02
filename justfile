# imgkit recipes. `just` is optional: every recipe wraps a plain command or a script in scripts/.

default:
    @just --list

# Build the imgkit binary (release profile: LTO, stripped).
build:
    cargo build --release

# The whole suite on this machine: installs Debian packages, starts real engines, runs every test.
test:
    scripts/test

# Formatting and lints, as CI wants them.
lint:
    cargo fmt --all -- --check
    cargo clippy --all-targets -- -D warnings

# Every benchmark (each prints ratios against its anchor measured in the same run).
bench: bench-filter bench-plugin

# Build the example filter plugins from source: Rust (filters/plugins/*) and C (filters/plugins/c).
# Output: target/plugins/*.wasm. Needs `rustup target add wasm32-wasip1` and, for C, Debian's
# clang, lld, wasi-libc and libclang-rt-14-dev-wasm32 (scripts/test installs them).
plugins:
    cargo build --release --target wasm32-wasip1 --manifest-path filters/plugins/Cargo.toml --target-dir target/plugin-guests
    mkdir -p target/plugins
    cp target/plugin-guests/wasm32-wasip1/release/default.wasm target/plugin-guests/wasm32-wasip1/release/exclude-k8s-system.wasm target/plugin-guests/wasm32-wasip1/release/newest-tag.wasm target/plugins/
    clang --target=wasm32-wasi -O2 -Wall -o target/plugins/by-prefix.wasm filters/plugins/c/by-prefix.c
    @ls -l target/plugins

# Plugin benchmark: the Rust default plugin vs `jq -r` and the jaq default, 1k and 1M records.
bench-plugin:
    scripts/bench-plugin
