#!/usr/bin/env python3
"""Runs every service's --check-config in its image with exactly the environment that
deploy/ gives it: compose.yaml + compose/.env (through deploy/ironboot-compose, with the
token files of compose/make-secrets), and each rendered Kubernetes overlay (env, envFrom
ConfigMaps, args, Secret and volume mounts, user and capabilities of the manifest). An
empty variable must count as unset, so `${VAR:-}` lines and blank ConfigMap keys pass.
Also checks that a tokens file the container cannot read is refused naming the path and
the uid.

Usage: check_env.py [RENDERED_K8S_YAML...]   (default: every overlay, rendered with
kubectl kustomize; images: IRONBOOT_VERSION, default e2e)
"""
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import manifests

deploy = Path(__file__).resolve().parent
version = os.environ.get("IRONBOOT_VERSION", "e2e")
services = ["hardware-api", "dhcp-svc", "tftp-svc", "ipxe-http-svc", "syslog-svc"]
failures = []


def run(cmd, env=None):
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)


def report(where, proc, expect_ok=True, needle=None):
    out = proc.stdout + proc.stderr
    ok = (proc.returncode == 0) == expect_ok and (needle is None or needle in out)
    print(f"check-config {'ok  ' if ok else 'FAIL'} {where}")
    if not ok:
        failures.append(where)
        print("    " + out.strip().replace("\n", "\n    "))


def compose_checks(tmp):
    secrets = Path(tmp) / "secrets"
    env = dict(os.environ, IRONBOOT_SECRETS_DIR=str(secrets), IRONBOOT_VERSION=version,
               COMPOSE_PROJECT_NAME=f"ibcheck{os.getpid()}")
    env.pop("COMPOSE_PROFILES", None)
    subprocess.run([str(deploy / "compose/make-secrets")], env=env, check=True, capture_output=True)
    compose = [str(deploy / "ironboot-compose"), "--profile", "all"]
    try:
        for svc in services:
            proc = run(compose + ["run", "--rm", "--no-deps", "-T", svc, "--check-config"], env)
            report(f"compose {svc}", proc)
        # A tokens file made as root with mode 600 (the old instructions): refused, and
        # the message says which file, which uid, and who owns it.
        tokens = secrets / "registry-tokens"
        os.chown(tokens, 0, 0)
        os.chmod(tokens, 0o600)
        proc = run(compose + ["run", "--rm", "--no-deps", "-T", "hardware-api", "--check-config"], env)
        report("compose hardware-api with an unreadable tokens file", proc, expect_ok=False,
               needle="cannot read /run/secrets/registry_tokens as uid 10001")
    finally:
        run(compose + ["down", "-v", "--remove-orphans"], env)


def k8s_container_cmd(doc, pod, c, configmaps, secrets, tmp):
    """docker run arguments that give container `c` what the manifest gives it."""
    env, missing = manifests.container_env(c, configmaps)
    if missing:
        raise SystemExit(f"{c['name']}: missing ConfigMap(s) {missing}")
    sc_pod = pod.get("securityContext", {})
    sc = c.get("securityContext", {})
    uid = sc.get("runAsUser", sc_pod.get("runAsUser", 10001))
    gid = sc.get("runAsGroup", sc_pod.get("runAsGroup", 0))
    cmd = ["docker", "run", "--rm", "--network", "none", "--user", f"{uid}:{gid}",
           "--security-opt", "no-new-privileges"]
    if sc.get("readOnlyRootFilesystem"):
        cmd.append("--read-only")
    caps = sc.get("capabilities", {})
    cmd += [f"--cap-drop={x}" for x in caps.get("drop", [])] + [f"--cap-add={x}" for x in caps.get("add", [])]
    for s in sc_pod.get("sysctls", []):
        cmd += ["--sysctl", f"{s['name']}={s['value']}"]
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    for t in doc["spec"].get("volumeClaimTemplates", []):
        volumes[t["metadata"]["name"]] = {"name": t["metadata"]["name"], "persistentVolumeClaim": {}}
    for m in c.get("volumeMounts", []):
        v = volumes[m["name"]]
        host = Path(tempfile.mkdtemp(dir=tmp))
        if "secret" in v:
            data = secrets[v["secret"]["secretName"]]
            items = v["secret"].get("items") or [{"key": k, "path": k} for k in data]
            for it in items:
                (host / it["path"]).write_text(data[it["key"]])
                os.chmod(host / it["path"], 0o644)  # a Secret volume's default mode
        os.chown(host, uid, 0)
        cmd += ["-v", f"{host}:{m['mountPath']}" + (":ro" if m.get("readOnly") else "")]
    for k, v in env.items():
        cmd += ["-e", f"{k}={v}"]
    image = c["image"].rsplit(":", 1)[0] + f":{version}"
    return cmd + [image] + c.get("args", []) + ["--check-config"]


def k8s_checks(rendered, tmp):
    docs = manifests.load(rendered)
    configmaps = manifests.configmaps(docs)
    # The token Secret the operator creates (README): dummy tokens of the right shape.
    op, svc = "k8s-check-operator-token-0123456789", "k8s-check-services-token-0123456789"
    secrets = {"ironboot-registry-tokens": {
        "tokens": f"write {op} operator\nread {svc} boot-services\n",
        "services.token": svc + "\n", "operator.token": op + "\n"}}
    for d, pod, c in manifests.containers(docs):
        proc = run(k8s_container_cmd(d, pod, c, configmaps, secrets, tmp))
        report(f"{Path(rendered).stem} {d['kind']}/{d['metadata']['name']}", proc)


with tempfile.TemporaryDirectory() as tmp:
    os.chmod(tmp, 0o755)
    compose_checks(tmp)
    rendered = sys.argv[1:]
    if not rendered:
        for o in sorted((deploy / "k8s/overlays").iterdir()):
            out = Path(tmp) / f"{o.name}.yaml"
            out.write_text(subprocess.run(["kubectl", "kustomize", str(o)], capture_output=True, text=True, check=True).stdout)
            rendered.append(str(out))
    for r in rendered:
        k8s_checks(r, tmp)
print(f"check-config under deploy/'s environments: {len(failures)} failure(s)")
sys.exit(1 if failures else 0)
