"""GPU serving on the simulated GPU node pool (2 nodes x 4 nvidia.com/gpu, tainted)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.cluster.launcher import KubeCluster
from tests.e2e.kube import get_json
from tests.e2e.modeldeployments import (
    ModelDeploymentEnv,
    condition,
    is_ready_on,
    model_deployment,
    status,
)
from tests.support.polling import eventually

pytestmark = [pytest.mark.e2e, pytest.mark.integration]
GPU = "nvidia.com/gpu"


def pods(cluster: KubeCluster, namespace: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = get_json(cluster, "-n", namespace, "pods")["items"]
    return items


def gpu_nodes(cluster: KubeCluster) -> set[str]:
    nodes = get_json(cluster, "nodes", "-l", "nvidia.com/gpu.present=true")["items"]
    return {n["metadata"]["name"] for n in nodes}


def gpus_in_use(cluster: KubeCluster) -> int:
    used = 0
    for pod in get_json(cluster, "pods", "--all-namespaces")["items"]:
        if pod["status"].get("phase") in ("Succeeded", "Failed") or not pod["spec"].get("nodeName"):
            continue
        for c in pod["spec"]["containers"]:
            used += int(c.get("resources", {}).get("limits", {}).get(GPU, 0))
    return used


def test_gpu_model_lands_on_a_gpu_node_with_the_limit(env: ModelDeploymentEnv) -> None:
    env.serve_first_version("gpu", serving={"replicas": 1, "gpu": {"count": 1}})
    (pod,) = pods(env.cluster, env.namespace)
    assert pod["spec"]["nodeName"] in gpu_nodes(env.cluster)
    assert pod["spec"]["containers"][0]["resources"]["limits"][GPU] == "1"
    assert pod["spec"]["containers"][0]["image"].endswith(":0.1.0")
    assert "serving-gpu" in pod["spec"]["containers"][0]["image"]


def test_more_gpus_than_any_node_has_is_reported_not_hidden(env: ModelDeploymentEnv) -> None:
    v1 = env.registry.log_version(env.model)
    env.registry.set_alias(env.model, "champion", v1.version)
    md = model_deployment(
        "huge", env.namespace, env.model, env.tracking_uri,
        serving={"replicas": 1, "gpu": {"count": 8}},
    )  # fmt: skip
    env.cluster.apply(md)

    def reported() -> dict[str, Any] | None:
        progressing = condition(status(env.cluster, env.namespace, "huge"), "Progressing")
        return progressing if progressing.get("reason") == "PodsUnschedulable" else None

    progressing = eventually(
        reported, timeout=30, what="Progressing says why the pods cannot be scheduled"
    )
    assert progressing["status"] == "True"
    assert f"Insufficient {GPU}" in progressing["message"]
    assert condition(status(env.cluster, env.namespace, "huge"), "Ready")["status"] == "False"


def test_rollout_that_fills_every_gpu_completes_without_surge_deadlock(
    env: ModelDeploymentEnv,
) -> None:
    eventually(
        lambda: gpus_in_use(env.cluster) == 0, timeout=60, what="GPUs of earlier tests released"
    )
    v1 = env.registry.log_version(env.model)
    env.registry.set_alias(env.model, "champion", v1.version)
    # 2 pods x 4 GPUs: every GPU of the cluster; a surge pod can never be scheduled
    md = model_deployment(
        "full", env.namespace, env.model, env.tracking_uri,
        serving={"replicas": 2, "gpu": {"count": 4}},
    )  # fmt: skip
    env.cluster.apply(md)
    eventually(
        lambda: is_ready_on(env.cluster, env.namespace, "full", "1"),
        timeout=60,
        what="v1 on 8 GPUs",
    )
    v2 = env.registry.log_version(env.model)
    env.registry.set_alias(env.model, "champion", v2.version)
    eventually(
        lambda: is_ready_on(env.cluster, env.namespace, "full", "2"),
        timeout=90,
        what="v2 on 8 GPUs",
    )
    st = status(env.cluster, env.namespace, "full")
    assert st["previousVersion"] == "1"
    assert st.get("failedVersions", []) == []
