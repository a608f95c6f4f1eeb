"""Kubeconfigs of ServiceAccounts: to run the operator (or kubectl) with exactly a
ServiceAccount's permissions, as it has them in a pod."""

from __future__ import annotations

from pathlib import Path

import yaml

from tests.cluster.launcher import KubeCluster


def service_account_kubeconfig(
    cluster: KubeCluster, namespace: str, service_account: str, path: Path
) -> Path:
    """A kubeconfig of the admin's cluster entry and a token of the ServiceAccount."""
    token = cluster.kubectl(
        "create", "token", service_account, "-n", namespace, "--duration=2h"
    ).stdout.strip()
    admin = yaml.safe_load(cluster.kubeconfig.read_text())
    context = next(c["context"] for c in admin["contexts"] if c["name"] == admin["current-context"])
    entry = next(c for c in admin["clusters"] if c["name"] == context["cluster"])
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [entry],
        "users": [{"name": service_account, "user": {"token": token}}],
        "contexts": [
            {"name": "sa", "context": {"cluster": entry["name"], "user": service_account}}
        ],
        "current-context": "sa",
    }
    path.write_text(yaml.safe_dump(config))
    path.chmod(0o600)
    return path
