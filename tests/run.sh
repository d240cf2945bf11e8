#!/usr/bin/env bash
# Runs every test of the workspace on a fresh Debian machine: installs the system
# packages and tools the tests use (tests/install-packages.sh), then formatting, unit,
# integration and end-to-end tests (QEMU machines booting through the services, as
# processes and as the compose stack in Docker), the deploy/ checks, --check-config
# under every deploy/ environment, and bounded fuzzing. Needs cargo; run as root (network
# namespaces, Docker).
set -euo pipefail
cd "$(dirname "$0")/.."

export IRONBOOT_VENV="${IRONBOOT_VENV:-$HOME/.cache/ironboot/venv}"
tests/install-packages.sh
export PATH="$IRONBOOT_VENV/bin:$PATH"

cargo fmt --all --check
cargo clippy --workspace --all-targets --locked -- -D warnings

log=$(mktemp); trap 'rm -f "$log"' EXIT
# Binaries first: the end-to-end lab and deploy checks run them from target/debug.
cargo build --workspace --locked --bins
set +e
# --no-fail-fast: one failing test binary must not hide the results of the others.
cargo test --workspace --locked --no-fail-fast "$@" 2>&1 | tee "$log"
tests_status=${PIPESTATUS[0]}
set -e
deploy/check.sh
# The images the compose suite built (from these debug binaries), under the exact
# environment of compose and of each Kubernetes overlay.
IRONBOOT_VERSION=e2e IRONBOOT_BINARIES=debug deploy/images/build
python3 deploy/check_env.py
FUZZ_SECONDS="${FUZZ_SECONDS:-20}" tests/fuzz.sh

awk '/^test result:/ { for (i = 2; i <= NF; i++) { if ($i ~ /^passed;/) p += $(i-1); if ($i ~ /^failed;/) f += $(i-1) } }
     END { printf "cargo tests: %d passed, %d failed\n", p, f }' "$log"
exit "$tests_status"
