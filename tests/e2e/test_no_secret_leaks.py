"""Secret values never appear in the operator's log, in Events, in status or in pod specs."""

from __future__ import annotations

import base64
import json

import pytest

from tests.cluster.launcher import KubeCluster
from tests.e2e.conftest import eventually
from tests.e2e.modeldeployments import is_ready_on, model_deployment
from tests.e2e.operator_process import OperatorProcess
from tests.mlflowstack.models import ModelRegistry
from tests.mlflowstack.stack import MlflowStack

pytestmark = [pytest.mark.e2e, pytest.mark.integration]


def test_credentials_reach_pods_by_reference_only_and_never_leak(
    operator: OperatorProcess,
    kube_cluster: KubeCluster,
    mlflow_stack: MlflowStack,
    mlflow_registry: ModelRegistry,
    model_name: str,
    k8s_namespace: str,
) -> None:
    auth_server = next((s for s in mlflow_stack.extra_servers if s.auth), None)
    auth_server = auth_server or mlflow_stack.start_basic_auth_server()
    assert auth_server.auth is not None
    password = auth_server.auth.password
    v1 = mlflow_registry.log_version(model_name)
    mlflow_registry.set_alias(model_name, "champion", v1.version)
    kube_cluster.apply(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "mlflow-creds", "namespace": k8s_namespace},
            "data": {
                "MLFLOW_TRACKING_USERNAME": base64.b64encode(
                    auth_server.auth.username.encode()
                ).decode(),
                "MLFLOW_TRACKING_PASSWORD": base64.b64encode(password.encode()).decode(),
            },
        }
    )
    md = model_deployment(
        "authed", k8s_namespace, model_name, auth_server.tracking_uri, credentials="mlflow-creds"
    )
    kube_cluster.apply(md)
    eventually(lambda: is_ready_on(kube_cluster, k8s_namespace, "authed", "1"), 60, "Ready")

    # and a wrong password is a clear condition, with no password in it
    kube_cluster.kubectl(
        "create", "secret", "generic", "wrong-creds", "-n", k8s_namespace,
        "--from-literal=MLFLOW_TRACKING_USERNAME=admin",
        "--from-literal=MLFLOW_TRACKING_PASSWORD=wrong-password-x1",
    )  # fmt: skip
    bad = model_deployment(
        "denied", k8s_namespace, model_name, auth_server.tracking_uri, credentials="wrong-creds"
    )
    kube_cluster.apply(bad)

    def refused() -> bool:
        out = kube_cluster.kubectl(
            "get", "-n", k8s_namespace, "mdep", "denied", "-o", "json"
        ).stdout
        return "refused the credentials (HTTP 401)" in out

    eventually(refused, 30, "RegistrySynced says the credentials were refused")

    visible = "\n".join(
        [
            operator.log(),
            kube_cluster.kubectl("get", "events", "-A", "-o", "json").stdout,
            kube_cluster.kubectl("get", "mdep", "-A", "-o", "json").stdout,
            kube_cluster.kubectl("get", "deploy,rs,pods", "-n", k8s_namespace, "-o", "json").stdout,
        ]
    )
    for secret in (password, "wrong-password-x1", operator.webhook_secret):
        assert secret not in visible
    pod_env = json.loads(
        kube_cluster.kubectl("get", "deploy", "authed", "-n", k8s_namespace, "-o", "json").stdout
    )["spec"]["template"]["spec"]["containers"][0]["env"]
    by_name = {e["name"]: e for e in pod_env}
    assert by_name["MLFLOW_TRACKING_PASSWORD"]["valueFrom"]["secretKeyRef"] == {
        "name": "mlflow-creds", "key": "MLFLOW_TRACKING_PASSWORD", "optional": True,
    }  # fmt: skip
