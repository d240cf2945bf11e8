"""What rendered Kubernetes manifests give each container: the workloads' containers and
the environment their env and envFrom ConfigMaps add up to. Shared by check_refs.py and
check_env.py."""
from pathlib import Path

import yaml

WORKLOADS = ("Deployment", "StatefulSet", "DaemonSet")


def load(rendered):
    """The documents of one rendered overlay."""
    return [d for d in yaml.safe_load_all(Path(rendered).read_text()) if d]


def configmaps(docs):
    return {d["metadata"]["name"]: d.get("data", {}) for d in docs if d["kind"] == "ConfigMap"}


def containers(docs):
    """(workload document, pod spec, container) for every workload container."""
    for d in docs:
        if d["kind"] in WORKLOADS:
            pod = d["spec"]["template"]["spec"]
            for c in pod["containers"]:
                yield d, pod, c


def container_env(c, cms):
    """The container's environment (envFrom ConfigMaps first, then env, as Kubernetes
    applies them) and the names of required ConfigMaps that are missing. A reference
    matches a ConfigMap of its name or, unrewritten, one with kustomize's hash suffix."""
    env, missing = {}, []
    for ef in c.get("envFrom", []):
        ref = ef.get("configMapRef", {})
        name = ref.get("name", "")
        match = [v for k, v in cms.items() if k == name or k.startswith(name + "-")]
        if not match and not ref.get("optional"):
            missing.append(name)
        for data in match:
            env.update(data)
    for e in c.get("env", []):
        env[e["name"]] = e.get("value", "")
    return env, missing
