#!/usr/bin/env bash
# Builds every fuzz target of the workspace (each service's fuzz/ directory) with
# libFuzzer coverage instrumentation on the stable toolchain, and runs each for a
# bounded time (FUZZ_SECONDS, default 20). A crash fails the script and leaves the
# reproducer in <crate>/fuzz/artifacts/.
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${FUZZ_SECONDS:-20}"
export CARGO_TARGET_DIR="$PWD/target/fuzz"
export RUSTFLAGS="--cfg fuzzing -Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
 -Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
 -Cllvm-args=-sanitizer-coverage-trace-compares -Cdebug-assertions -Coverflow-checks"
# With an explicit --target, RUSTFLAGS apply to the fuzzed code but not to build
# scripts and proc-macros (which must not be instrumented).
triple=$(rustc -vV | sed -n 's/^host: //p')
status=0
for manifest in */fuzz/Cargo.toml; do
  dir=$(dirname "$manifest")
  targets=$(sed -n 's/^name = "\(.*\)"$/\1/p' "$manifest" | tail -n +2)
  cargo build --release --quiet --manifest-path "$manifest" --bins --target "$triple"
  for t in $targets; do
    mkdir -p "$dir/corpus/$t" "$dir/artifacts/$t"
    echo "fuzz: $dir $t for ${secs}s"
    if ! "$CARGO_TARGET_DIR/$triple/release/$t" -max_total_time="$secs" -rss_limit_mb=2048 \
        -artifact_prefix="$dir/artifacts/$t/" "$dir/corpus/$t" 2> "$CARGO_TARGET_DIR/$t.log"; then
      echo "fuzz: $t FAILED (see $CARGO_TARGET_DIR/$t.log and $dir/artifacts/$t/)"; tail -30 "$CARGO_TARGET_DIR/$t.log"; status=1
    else
      grep -E "^(Done|#[0-9]+ +DONE)" "$CARGO_TARGET_DIR/$t.log" | tail -1 || true
    fi
  done
done
exit $status
