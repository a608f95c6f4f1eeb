"""Secret values never appear in the operator's log, in Events, in status or in pod specs."""

from __future__ import annotations

import base64
import json

import pytest

from tests.e2e.modeldeployments import ModelDeploymentEnv, is_ready_on, model_deployment
from tests.support.polling import eventually

pytestmark = [pytest.mark.e2e, pytest.mark.integration]


def test_credentials_reach_pods_by_reference_only_and_never_leak(env: ModelDeploymentEnv) -> None:
    auth_server = next((s for s in env.stack.extra_servers if s.auth), None)
    auth_server = auth_server or env.stack.start_basic_auth_server()
    assert auth_server.auth is not None
    password = auth_server.auth.password
    v1 = env.registry.log_version(env.model)
    env.registry.set_alias(env.model, "champion", v1.version)
    env.cluster.apply(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "mlflow-creds", "namespace": env.namespace},
            "data": {
                "MLFLOW_TRACKING_USERNAME": base64.b64encode(
                    auth_server.auth.username.encode()
                ).decode(),
                "MLFLOW_TRACKING_PASSWORD": base64.b64encode(password.encode()).decode(),
            },
        }
    )
    md = model_deployment(
        "authed", env.namespace, env.model, auth_server.tracking_uri, credentials="mlflow-creds"
    )
    env.cluster.apply(md)
    eventually(
        lambda: is_ready_on(env.cluster, env.namespace, "authed", "1"), timeout=60, what="Ready"
    )

    # and a wrong password is a clear condition, with no password in it
    env.cluster.kubectl(
        "create", "secret", "generic", "wrong-creds", "-n", env.namespace,
        "--from-literal=MLFLOW_TRACKING_USERNAME=admin",
        "--from-literal=MLFLOW_TRACKING_PASSWORD=wrong-password-x1",
    )  # fmt: skip
    bad = model_deployment(
        "denied", env.namespace, env.model, auth_server.tracking_uri, credentials="wrong-creds"
    )
    env.cluster.apply(bad)

    def refused() -> bool:
        out = env.cluster.kubectl("get", "-n", env.namespace, "mdep", "denied", "-o", "json").stdout
        return "refused the credentials (HTTP 401)" in out

    eventually(refused, timeout=30, what="RegistrySynced says the credentials were refused")

    visible = "\n".join(
        [
            env.operator.log(),
            env.cluster.kubectl("get", "events", "-A", "-o", "json").stdout,
            env.cluster.kubectl("get", "mdep", "-A", "-o", "json").stdout,
            env.cluster.kubectl("get", "deploy,rs,pods", "-n", env.namespace, "-o", "json").stdout,
        ]
    )
    for secret in (password, "wrong-password-x1", env.operator.webhook_secret):
        assert secret not in visible
    pod_env = json.loads(
        env.cluster.kubectl("get", "deploy", "authed", "-n", env.namespace, "-o", "json").stdout
    )["spec"]["template"]["spec"]["containers"][0]["env"]
    by_name = {e["name"]: e for e in pod_env}
    assert by_name["MLFLOW_TRACKING_PASSWORD"]["valueFrom"]["secretKeyRef"] == {
        "name": "mlflow-creds", "key": "MLFLOW_TRACKING_PASSWORD", "optional": True,
    }  # fmt: skip
