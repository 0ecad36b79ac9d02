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
bench: bench-filter bench-ls bench-transfer

# imgkit ls vs the guide's list+jq vs the engine's own listing, docker and podman, ~1,000 tags.
bench-ls tags="1000":
    scripts/bench-ls {{tags}}

# Real engines with all state under DIR (up, seed, down, env): see scripts/engines.
engines cmd dir:
    scripts/engines {{cmd}} {{dir}}

# imgkit run vs the guide's two steps vs a raw `save | load` pipe, ~1 GiB, docker → podman and
# docker → ctr:k8s.io (root; starts its own engines). Args: RUNS IMAGES MIB_PER_IMAGE.
bench-transfer runs="3" images="8" mib="128":
    scripts/bench-transfer {{runs}} {{images}} {{mib}}
