#!/usr/bin/env python3
"""Checks that deploy/ only references things that exist: every environment variable and
flag that compose.yaml and the rendered Kubernetes manifests give a service is one its
binary accepts (read from the binary's --help), and every binary the Dockerfile copies is
a binary of the workspace. Usage: check_refs.py BIN_DIR RENDERED_K8S_YAML..."""
import re
import subprocess
import sys
from pathlib import Path

import yaml

import manifests

root = Path(__file__).resolve().parent
bin_dir = Path(sys.argv[1])
errors = []


def accepted(binary):
    """Env vars and long flags from a binary's --help (clap prints `[env: NAME=]`)."""
    out = subprocess.run([str(bin_dir / binary), "--help"], capture_output=True, text=True, check=True).stdout
    envs = set(re.findall(r"\[env: ([A-Z0-9_]+)=", out))
    flags = set(re.findall(r"--([a-z0-9-]+)", out))
    return envs, flags


def check(where, binary, env_names, args):
    envs, flags = accepted(binary)
    for e in env_names:
        if e not in envs:
            errors.append(f"{where}: {binary} does not accept environment variable {e}")
    for a in args:
        if a.startswith("--"):
            flag = a[2:].split("=")[0]
            if flag not in flags:
                errors.append(f"{where}: {binary} has no flag --{flag}")


# Compose: the service name is the binary name (hardware-import runs hwctl).
compose = yaml.safe_load((root / "compose.yaml").read_text())
for name, svc in compose["services"].items():
    binary = (svc.get("entrypoint") or [name])[0]
    env = svc.get("environment") or {}
    names = env.keys() if isinstance(env, dict) else [e.split("=")[0] for e in env]
    check(f"compose.yaml service {name}", binary, names, [c for c in svc.get("command", []) if isinstance(c, str)])

# Kubernetes: container name = binary name; env, envFrom ConfigMap literals and args.
for rendered in sys.argv[2:]:
    docs = manifests.load(rendered)
    cms = manifests.configmaps(docs)
    for d, _pod, c in manifests.containers(docs):
        env, missing = manifests.container_env(c, cms)
        for cm in missing:
            errors.append(f"{rendered}: {c['name']} uses missing ConfigMap {cm}")
        check(f"{rendered} {d['kind']}/{d['metadata']['name']}", c["name"], env.keys(), c.get("args", []))

# Dockerfile: the binaries it copies out of the build stage exist in the workspace.
dockerfile = (root / "Dockerfile").read_text()
copied = set(re.findall(r"target/\$\{PROFILE\}/([a-z0-9-]+)", dockerfile))
if not copied:
    errors.append("Dockerfile: no target/${PROFILE}/<binary> COPY found")
for b in copied:
    if not (bin_dir / b).exists():
        errors.append(f"Dockerfile copies {b}, which the workspace does not build")

for e in errors:
    print("deploy check:", e)
print(f"deploy references: {len(errors)} problem(s)")
sys.exit(1 if errors else 0)
