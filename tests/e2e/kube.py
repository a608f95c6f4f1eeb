"""Reading objects of the test cluster, for the e2e tests and the benchmarks that use it."""

from __future__ import annotations

import json
from typing import Any

from tests.cluster.launcher import KubeCluster


def get_json(cluster: KubeCluster, *args: str) -> Any:
    """`kubectl get <args> -o json`, parsed. Raises KubectlError when kubectl fails, NotFound
    included: the polls of eventually() take that as "not there yet"."""
    return json.loads(cluster.kubectl("get", *args, "-o", "json").stdout)


def require_requests(cluster: KubeCluster, namespace: str) -> None:
    """A ResourceQuota on requests in `namespace`: the API server then refuses any pod with a
    container that requests no CPU or memory (generous totals: only their presence counts)."""
    cluster.apply(
        {
            "apiVersion": "v1",
            "kind": "ResourceQuota",
            "metadata": {"name": "compute", "namespace": namespace},
            "spec": {"hard": {"requests.cpu": "16", "requests.memory": "32Gi"}},
        }
    )
