"""Helpers of the ModelDeployment e2e tests: manifests, status reads, events, and what a test
works with (ModelDeploymentEnv, the `env` and `pods_env` fixtures of conftest.py)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tests.cluster.launcher import KubeCluster
from tests.cluster.realnode import NodeInfo
from tests.e2e.kube import get_json
from tests.e2e.operator_process import OperatorProcess
from tests.mlflowstack.models import ModelRegistry, TrainedVersion
from tests.mlflowstack.stack import MlflowStack
from tests.support.polling import eventually


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
    *,
    timeout: float,
    what: str,
) -> dict[str, Any]:
    """The condition type_ of the ModelDeployment, once check() accepts it."""

    def accepted() -> dict[str, Any] | None:
        found = condition(status(cluster, namespace, name), type_)
        return found if found and check(found) else None

    result: dict[str, Any] = eventually(accepted, timeout=timeout, what=what)
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


@dataclass(frozen=True)
class ModelDeploymentEnv:
    """What a ModelDeployment e2e test works with, as one fixture instead of six: the session's
    operator, cluster and MLflow stack, and the test's own model name and namespace.

    tracking_uri is the MLflow the ModelDeployments follow: the stack's, as the operator (on
    this machine) reaches it, unless the fixture says otherwise.
    """

    operator: OperatorProcess
    cluster: KubeCluster
    stack: MlflowStack
    registry: ModelRegistry
    model: str
    namespace: str
    tracking_uri: str

    def serve_first_version(
        self, name: str, *, tracking_uri: str | None = None, **manifest: Any
    ) -> TrainedVersion:
        """Register v1, point alias champion at it, apply the ModelDeployment `name` (following
        tracking_uri, self.tracking_uri unless given), wait Ready on v1."""
        v1 = self.registry.log_version(self.model)
        self.registry.set_alias(self.model, "champion", v1.version)
        uri = self.tracking_uri if tracking_uri is None else tracking_uri
        self.cluster.apply(model_deployment(name, self.namespace, self.model, uri, **manifest))
        eventually(
            lambda: is_ready_on(self.cluster, self.namespace, name, v1.version),
            timeout=60,
            what=f"{name} Ready on v1",
        )
        return v1


@dataclass(frozen=True)
class RealPodsEnv(ModelDeploymentEnv):
    """The same, for tests whose serving pods run on the cluster's real node: tracking_uri is
    the stack's as those pods reach it (the `pods_tracking_uri` fixture)."""

    node: NodeInfo
