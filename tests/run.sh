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
cargo test --locked --release --workspace -- --test-threads=2
echo "== fuzz (each target ${FUZZ_SECONDS:-15} s)" >&2
tests/fuzz.sh "${FUZZ_SECONDS:-15}"
