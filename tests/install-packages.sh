#!/usr/bin/env bash
# Installs the Debian packages (tests/system-packages.txt) and PyPI tools
# (tests/python-requirements.txt) the tests and the demo use, when any is missing, and
# the Debian base image deploy/Dockerfile builds on (deploy/images/build --base-only).
# The PyPI tools go into a virtualenv of Debian's python3 ($IRONBOOT_VENV, default
# ~/.cache/ironboot/venv); callers put its bin/ first on PATH.
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

venv="${IRONBOOT_VENV:-$HOME/.cache/ironboot/venv}"
[[ -x "$venv/bin/python3" ]] || /usr/bin/python3 -m venv "$venv"
# pip's check of an already satisfied file is quick; a changed pin is installed.
"$venv/bin/pip" install -q --disable-pip-version-check -r tests/python-requirements.txt

if [[ $(id -u) -eq 0 ]] && docker info >/dev/null 2>&1; then
  deploy/images/build --base-only
fi
