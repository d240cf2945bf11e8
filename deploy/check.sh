#!/usr/bin/env bash
# Validates deploy/ without a Docker engine or a cluster: compose file against the
# compose schema, every rendered Kubernetes overlay with kubectl kustomize and
# kubernetes-validate --strict (offline schemas), hadolint on the Dockerfile, yamllint,
# ShellCheck on scripts, and check_refs.py (flags/env/binaries exist). check_env.py (run
# by tests/run.sh) needs Docker and the images: it runs each --check-config for real. Needs the
# workspace binaries (BIN_DIR, default $CARGO_TARGET_DIR/debug or target/debug) and the PyPI tools listed in
# tests/python-requirements.txt.
set -euo pipefail
cd "$(dirname "$0")"
bin_dir="${BIN_DIR:-${CARGO_TARGET_DIR:-../target}/debug}"
venv="${IRONBOOT_VENV:-$HOME/.cache/ironboot/venv}"
[[ -d "$venv/bin" ]] && export PATH="$venv/bin:$PATH"
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT

check-jsonschema --builtin-schema vendor.compose-spec compose.yaml
for o in k8s/overlays/*/; do
  name=$(basename "$o")
  kubectl kustomize "$o" > "$tmp/$name.yaml"
  kubernetes-validate --strict --quiet "$tmp/$name.yaml"
  echo "k8s overlay $name: $(grep -c '^kind:' "$tmp/$name.yaml") resources valid"
done
hadolint --failure-threshold warning Dockerfile
yamllint -s -c yamllint.yaml compose.yaml k8s examples
shellcheck local/ironboot-up check.sh ironboot-compose images/build compose/make-secrets \
  ../tests/run.sh ../tests/fuzz.sh ../tests/install-packages.sh ../tftp-svc/bench/tftp-bench.sh
python3 check_refs.py "$bin_dir" "$tmp"/*.yaml
# check_env.py only parsed here (it runs in tests/run.sh), without writing __pycache__.
python3 -c 'import ast, sys; ast.parse(open(sys.argv[1]).read(), sys.argv[1])' check_env.py
echo "deploy checks passed"
