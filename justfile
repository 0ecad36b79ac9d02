# imgkit recipes. `just` is optional: every recipe wraps a plain command or a script in scripts/.

default:
    @just --list

# Build the imgkit binary (release profile: LTO, stripped).
build:
    cargo build --release

# The whole suite on this machine: installs Debian packages, starts real engines, runs every test.
test:
    scripts/test

# Man pages generated from the clap definitions (imgkit.1, imgkit-run.1, …) into DIR.
man dir="target/man":
    cargo run --release --quiet -- __man {{dir}}

# Completion scripts for every shell into DIR (imgkit.bash, _imgkit, imgkit.fish, _imgkit.ps1, …).
completions dir="target/completions":
    mkdir -p {{dir}}
    cargo run --release --quiet -- completions bash > {{dir}}/imgkit.bash
    cargo run --release --quiet -- completions zsh > {{dir}}/_imgkit
    cargo run --release --quiet -- completions fish > {{dir}}/imgkit.fish
    cargo run --release --quiet -- completions powershell > {{dir}}/_imgkit.ps1
    cargo run --release --quiet -- completions elvish > {{dir}}/imgkit.elv

# `cargo check` for Windows (x86_64-pc-windows-gnu); installs the target and mingw on first use.
check-portability:
    scripts/check-portability

# Cold start: imgkit --version and imgkit filter on one record vs `jq -n empty`, same run.
bench-startup runs="300":
    scripts/bench-startup {{runs}}

# Formatting and lints, as CI wants them.
lint:
    cargo fmt --all -- --check
    cargo clippy --workspace --all-targets -- -D warnings

# Every benchmark (each prints ratios against its anchor measured in the same run).
bench: bench-filter bench-ls bench-archive bench-transfer bench-plugin bench-sync

# imgkit ls vs the guide's list+jq vs the engine's own listing, docker and podman, ~1,000 tags.
bench-ls tags="1000":
    scripts/bench-ls {{tags}}

# Real engines with all state under DIR (up, seed, down, env): see scripts/engines.
engines cmd dir:
    scripts/engines {{cmd}} {{dir}}

# `imgkit filter` vs jq vs gojq on a generated listing: LINES lines, RUNS runs each.
bench-filter LINES="1000000" RUNS="3":
    scripts/bench-filter {{LINES}} {{RUNS}}

# --- archives (helper "archive") ---------------------------------------------------------------

# Archive throughput vs `cat` and `sha256sum` in the same run (~1 GiB; RUNS=N for medians of N).
bench-archive size="1024":
    scripts/bench-archive {{size}}

# Fuzz the archive parsers, whole archives and image references for SECS seconds each
# (nightly + cargo-fuzz, installed on first use; not in CI). Findings land in fuzz/artifacts/.
fuzz secs="60":
    command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
    cd fuzz && for t in manifest archive reference; do mkdir -p corpus/$t && cp -n seeds/$t/* corpus/$t/ 2>/dev/null; cargo +nightly fuzz run $t corpus/$t -- -max_total_time={{secs}} || exit 1; done
# imgkit run vs the guide's two steps vs a raw `save | load` pipe, ~1 GiB, docker → podman and
# docker → ctr:k8s.io (root; starts its own engines). Args: RUNS IMAGES MIB_PER_IMAGE.
bench-transfer runs="3" images="8" mib="128":
    scripts/bench-transfer {{runs}} {{images}} {{mib}}

# --- plugins (helper "plugin") ----------------------------------------------------------------

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
# A repeated `imgkit run` (everything already in the target: 0 bytes) vs the guide's method
# repeated, ~1 GiB docker → podman (root; starts its own engines). Args: RUNS IMAGES MIB_PER_IMAGE.
bench-sync runs="5" images="8" mib="128":
    scripts/bench-sync {{runs}} {{images}} {{mib}}
