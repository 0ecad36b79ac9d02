# imgkit recipes. `just` is optional: each recipe is a plain command you can run yourself.

# Build the release binary.
build:
    cargo build --release

# Install what the tests need and run the whole suite (the same command CI runs).
test:
    scripts/test

# Formatting and lints, as CI checks them.
lint:
    cargo fmt --all --check
    cargo clippy --workspace --all-targets -- -D warnings

# All benchmarks.
bench: bench-filter

# `imgkit filter` vs jq vs gojq on a generated listing: LINES lines, RUNS runs each.
bench-filter LINES="1000000" RUNS="3":
    scripts/bench-filter {{LINES}} {{RUNS}}
