"""Helpers of the ModelDeployment e2e tests: manifests, status reads, events."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tests.cluster.launcher import KubeCluster
from tests.e2e.conftest import eventually, get_json
from tests.mlflowstack.models import ModelRegistry, TrainedVersion


def model_deployment(
    name: str,
    namespace: str,
    model: str,
    tracking_uri: str,
    *,
    selector: dict[str, Any] | None = None,
    poll: str = "5s",
    deadline: int = 600,
    serving: dict[str, Any] | None = None,
    rollout: dict[str, Any] | None = None,
    credentials: str | None = None,
) -> dict[str, Any]:
    registry: dict[str, Any] = {"trackingUri": tracking_uri, "pollInterval": poll}
    if credentials:
        registry["credentialsSecretRef"] = {"name": credentials}
    return {
        "apiVersion": "mlflowops.dev/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "model": {"name": model, **(selector or {"alias": "champion"})},
            "registry": registry,
            "serving": serving or {"replicas": 2},
            "rollout": {"progressDeadlineSeconds": deadline, **(rollout or {})},
        },
    }


def status(cluster: KubeCluster, namespace: str, name: str) -> dict[str, Any]:
    result: dict[str, Any] = get_json(cluster, "-n", namespace, "mdep", name).get("status", {})
    return result


def condition(st: dict[str, Any], type_: str) -> dict[str, Any]:
    return next((c for c in st.get("conditions", []) if c["type"] == type_), {})


def eventually_condition(
    cluster: KubeCluster,
    namespace: str,
    name: str,
    type_: str,
    check: Callable[[dict[str, Any]], bool],
    timeout: float,
    what: str,
) -> dict[str, Any]:
    """The condition type_ of the ModelDeployment, once check() accepts it."""

    def accepted() -> dict[str, Any] | None:
        found = condition(status(cluster, namespace, name), type_)
        return found if found and check(found) else None

    result: dict[str, Any] = eventually(accepted, timeout, what)
    return result


def is_ready_on(cluster: KubeCluster, namespace: str, name: str, version: str) -> bool:
    st = status(cluster, namespace, name)
    return (
        st.get("servingVersion") == version
        and condition(st, "Ready").get("status") == "True"
        and condition(st, "Ready").get("reason") == "Serving"
    )


def template_version(cluster: KubeCluster, namespace: str, name: str) -> str | None:
    dep = get_json(cluster, "-n", namespace, "deployment", name)
    labels: dict[str, str] = dep["spec"]["template"]["metadata"]["labels"]
    return labels.get("mlflowops.dev/model-version")


def events(cluster: KubeCluster, namespace: str, name: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = get_json(
        cluster,
        "-n",
        namespace,
        "events",
        "--field-selector",
        f"involvedObject.kind=ModelDeployment,involvedObject.name={name}",
    )["items"]
    return items


def event_reasons(cluster: KubeCluster, namespace: str, name: str) -> list[str]:
    return [e["reason"] for e in events(cluster, namespace, name)]


def serve_first_version(
    cluster: KubeCluster,
    registry: ModelRegistry,
    tracking_uri: str,
    namespace: str,
    name: str,
    model: str,
    **manifest: Any,
) -> TrainedVersion:
    """Register v1, point alias champion at it, apply the ModelDeployment, wait Ready on v1."""
    v1 = registry.log_version(model)
    registry.set_alias(model, "champion", v1.version)
    cluster.apply(model_deployment(name, namespace, model, tracking_uri, **manifest))
    eventually(lambda: is_ready_on(cluster, namespace, name, v1.version), 60, f"{name} Ready on v1")
    return v1
