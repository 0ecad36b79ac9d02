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
bench: bench-filter
