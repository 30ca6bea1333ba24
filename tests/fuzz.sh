#!/bin/sh
# Builds hoist's fuzz targets (fuzz/: libFuzzer through libfuzzer-sys, on the pinned
# stable toolchain with sanitizer-coverage flags) and runs each for SECONDS (default 30)
# from its corpus in fuzz/corpus/TARGET. Inputs found on the way go to a scratch
# directory, so the corpus in the repo stays small; FUZZ_MERGE=1 merges those that add
# coverage into it. A crash stops the script, its input saved in fuzz/artifacts/TARGET/
# (replay: fuzz/target/x86_64-unknown-linux-gnu/release/TARGET FILE).
# Usage: tests/fuzz.sh [SECONDS] [TARGET...]
set -eu
secs=${1:-30}
[ $# -gt 0 ] && shift
targets=${*:-config oci_layout docker_archive cpio api volume dhcp}
# cargo reads a relative CARGO_TARGET_DIR from where it runs: make it absolute first.
case ${CARGO_TARGET_DIR:-} in ''|/*) ;; *) export CARGO_TARGET_DIR="$PWD/$CARGO_TARGET_DIR" ;; esac
cd "$(dirname "$0")/../fuzz"
triple=$(rustc -vV | sed -n 's/^host: //p')
# --target keeps these flags off build scripts and proc macros.
export RUSTFLAGS="--cfg fuzzing -Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares"
echo "== fuzz: build" >&2
cargo build --locked --release --target "$triple" --bins
bin=${CARGO_TARGET_DIR:-$PWD/target}/$triple/release
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
for t in $targets; do
    mkdir -p "corpus/$t" "artifacts/$t" "$scratch/$t"
    # Inputs bigger than a few KiB add time, not coverage; images are chunked JSON + tar.
    case $t in oci_layout|docker_archive) max_len=16384 ;; *) max_len=4096 ;; esac
    log=$scratch/$t.log
    if ! "$bin/$t" -max_total_time="$secs" -max_len=$max_len -rss_limit_mb=2048 -malloc_limit_mb=1024 \
        -timeout=10 -artifact_prefix="artifacts/$t/" -print_final_stats=1 \
        "$scratch/$t" "corpus/$t" >"$log" 2>&1; then
        tail -n 40 "$log" >&2
        echo "fuzz: $t FAILED; input in fuzz/artifacts/$t/" >&2
        exit 1
    fi
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
    cov=$(grep -o 'cov: [0-9]*' "$log" | tail -n 1)
    echo "fuzz: $t ok: $runs runs in ${secs}s, $cov" >&2
    if [ "${FUZZ_MERGE:-0}" = 1 ]; then
        "$bin/$t" -merge=1 -max_len=$max_len "corpus/$t" "$scratch/$t" >/dev/null 2>&1
    fi
done
