#!/bin/sh
# Runs every check and test of hoist: formatting, clippy, unit tests and the VM tests
# (real kernel, containerd, crun or runc, and QEMU). Installs missing Debian packages first.
# Usage (as root): tests/run.sh
set -eu
cd "$(dirname "$0")/.."
tests/install-deps.sh
echo "== fmt" >&2
cargo fmt --all -- --check
echo "== clippy" >&2
cargo clippy --locked --release --workspace --all-targets -- -D warnings
echo "== build" >&2
cargo build --locked --release --workspace --bins
echo "== tests (unit + VM; at most 2 at a time on 2 cores)" >&2
# cargo-nextest (on the CI machines) packs tests from every binary into the 2 slots; cargo
# test runs one binary at a time, leaving a core idle beside a binary's last test.
if cargo nextest --version >/dev/null 2>&1; then
    cargo nextest run --locked --release --workspace -j 2 --no-tests=pass
else
    cargo test --locked --release --workspace -- --test-threads=2
fi
echo "== fuzz (each target ${FUZZ_SECONDS:-15} s)" >&2
tests/fuzz.sh "${FUZZ_SECONDS:-15}"
