#!/usr/bin/env bash
# Runs every test of the workspace on a fresh Debian machine: installs the system
# packages the tests use (tests/system-packages.txt), then unit, integration and
# end-to-end tests. Needs cargo; run as root for the network-namespace tests.
set -euo pipefail
cd "$(dirname "$0")/.."

tests/install-packages.sh

log=$(mktemp); trap 'rm -f "$log"' EXIT
# Binaries first: the end-to-end lab and deploy checks run them from target/debug.
cargo build --workspace --locked --bins
set +e
# --no-fail-fast: one failing test binary must not hide the results of the others.
cargo test --workspace --locked --no-fail-fast "$@" 2>&1 | tee "$log"
tests_status=${PIPESTATUS[0]}
set -e
deploy/check.sh
FUZZ_SECONDS="${FUZZ_SECONDS:-20}" tests/fuzz.sh

awk '/^test result:/ { for (i = 2; i <= NF; i++) { if ($i ~ /^passed;/) p += $(i-1); if ($i ~ /^failed;/) f += $(i-1) } }
     END { printf "cargo tests: %d passed, %d failed\n", p, f }' "$log"
exit "$tests_status"
