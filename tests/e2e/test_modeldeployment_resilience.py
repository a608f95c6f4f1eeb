"""A ModelDeployment keeps its promises when the world around it misbehaves, end to end.

A real control plane (pods simulated by KWOK), the real MLflow stack, the operator as a
process. Each test is the regression test of one defect of the "rollback that sticks" review
and failed against the operator before its fix. The only fake is the fault proxy of the
registry test (tests/support/fault_proxy.py), because a real MLflow cannot answer like an SSO
proxy or a dropped connection does.
"""

from __future__ import annotations

import base64
import copy
import json
import time
from collections.abc import Iterator
from typing import Any

import pytest

from mlflow_operator.core.modeldeployment.invariants import Auditor, Snapshot
from tests.cluster.launcher import KubeCluster
from tests.e2e.conftest import eventually, get_json
from tests.e2e.modeldeployments import (
    condition,
    event_reasons,
    events,
    is_ready_on,
    model_deployment,
    serve_first_version,
    status,
    template_version,
)
from tests.e2e.operator_process import OperatorProcess
from tests.mlflowstack.models import ModelRegistry
from tests.mlflowstack.stack import MlflowStack
from tests.support.counting_proxy import CountingProxy
from tests.support.fault_proxy import FaultProxy

pytestmark = [pytest.mark.e2e, pytest.mark.integration]
POLL = 5.0
VERSION_LABEL = "mlflowops.dev/model-version"


def synced(cluster: KubeCluster, namespace: str, name: str) -> dict[str, Any]:
    return condition(status(cluster, namespace, name), "RegistrySynced")


def deployment(cluster: KubeCluster, namespace: str, name: str) -> dict[str, Any]:
    found: dict[str, Any] = get_json(cluster, "-n", namespace, "deployment", name)
    return found


def create_credentials(cluster: KubeCluster, namespace: str, name: str) -> None:
    def b64(value: str) -> str:
        return base64.b64encode(value.encode()).decode()

    cluster.apply(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": name, "namespace": namespace},
            "data": {
                "MLFLOW_TRACKING_USERNAME": b64("reader"),
                "MLFLOW_TRACKING_PASSWORD": b64("not-checked-by-this-mlflow"),
            },
        }
    )


@pytest.fixture
def fault_proxy(mlflow_stack: MlflowStack) -> Iterator[FaultProxy]:
    proxy = FaultProxy(mlflow_stack.tracking_uri, slow_seconds=25).start()
    yield proxy
    proxy.fault = None
    proxy.stop()


def test_a_vanished_credentials_secret_does_not_restart_the_serving_pods(
    operator: OperatorProcess,
    kube_cluster: KubeCluster,
    mlflow_stack: MlflowStack,
    mlflow_registry: ModelRegistry,
    model_name: str,
    k8s_namespace: str,
) -> None:
    """Defect 4: the Deployment was re-applied without the credential env vars while the
    Secret was missing; every pod restarted unable to reach MLflow."""
    create_credentials(kube_cluster, k8s_namespace, "mlflow-creds")
    serve_first_version(
        kube_cluster, mlflow_registry, mlflow_stack.tracking_uri, k8s_namespace, "creds",
        model_name, credentials="mlflow-creds",
    )  # fmt: skip
    before = deployment(kube_cluster, k8s_namespace, "creds")
    kube_cluster.kubectl("delete", "secret", "mlflow-creds", "-n", k8s_namespace)
    gone = eventually(
        lambda: (
            (s := synced(kube_cluster, k8s_namespace, "creds")).get("reason")
            == "CredentialsNotFound"
            and s
        ),
        3 * POLL,
        "RegistrySynced=False CredentialsNotFound",
    )
    assert "mlflow-creds" in gone["message"]
    time.sleep(2 * POLL)  # a few more reconciles without the Secret
    after = deployment(kube_cluster, k8s_namespace, "creds")
    assert after["metadata"]["generation"] == before["metadata"]["generation"]
    assert after["spec"]["template"] == before["spec"]["template"]
    assert is_ready_on(kube_cluster, k8s_namespace, "creds", "1")
    create_credentials(kube_cluster, k8s_namespace, "mlflow-creds")
    eventually(
        lambda: synced(kube_cluster, k8s_namespace, "creds").get("status") == "True",
        4 * POLL,
        "RegistrySynced=True with the Secret back",
    )
    again = deployment(kube_cluster, k8s_namespace, "creds")
    assert again["metadata"]["generation"] == before["metadata"]["generation"]


def test_registry_faults_are_reported_and_the_watcher_recovers(
    operator: OperatorProcess,
    kube_cluster: KubeCluster,
    mlflow_registry: ModelRegistry,
    fault_proxy: FaultProxy,
    model_name: str,
    k8s_namespace: str,
) -> None:
    """Defect 5: an SSO login page answered with 200 killed the registry watcher while status
    kept saying RegistrySynced=True; no later promotion was ever seen."""
    serve_first_version(
        kube_cluster, mlflow_registry, fault_proxy.url, k8s_namespace, "faulty", model_name
    )
    fault_proxy.fault = "html"
    bad = eventually(
        lambda: (
            (s := synced(kube_cluster, k8s_namespace, "faulty")).get("reason")
            == "RegistryBadResponse"
            and s
        ),
        4 * POLL,
        "RegistrySynced=False RegistryBadResponse",
    )
    assert fault_proxy.url in bad["message"]
    assert "content type text/html" in bad["message"]
    assert is_ready_on(kube_cluster, k8s_namespace, "faulty", "1")  # serving is unchanged
    fault_proxy.fault = None
    eventually(
        lambda: synced(kube_cluster, k8s_namespace, "faulty").get("status") == "True",
        6 * POLL,  # back-off after failures
        "RegistrySynced=True once MLflow answers again",
    )
    v2 = mlflow_registry.log_version(model_name)
    mlflow_registry.set_alias(model_name, "champion", v2.version)
    eventually(
        lambda: is_ready_on(kube_cluster, k8s_namespace, "faulty", v2.version),
        4 * POLL,
        "the watcher still follows the registry: v2 rolled out",
    )
    # a registry that stops answering (the operator's MLflow timeout is 30s): the watchdog
    # says so after 3 poll intervals instead of RegistrySynced=True
    fault_proxy.fault = "slow"
    stalled = eventually(
        lambda: (
            (s := synced(kube_cluster, k8s_namespace, "faulty")).get("reason") == "RegistryStalled"
            and s
        ),
        3 * POLL + 3 * POLL,
        "RegistrySynced=False RegistryStalled",
    )
    assert "3 poll intervals" in stalled["message"]
    fault_proxy.fault = None
    eventually(
        lambda: synced(kube_cluster, k8s_namespace, "faulty").get("status") == "True",
        40,
        "RegistrySynced=True once the slow answers end",
    )


def test_a_new_tracking_uri_unfollows_the_old_endpoint(
    operator: OperatorProcess,
    kube_cluster: KubeCluster,
    mlflow_stack: MlflowStack,
    mlflow_registry: ModelRegistry,
    model_name: str,
    k8s_namespace: str,
) -> None:
    """Defect 8: after trackingUri changed, the old endpoint was polled forever."""
    old = CountingProxy(mlflow_stack.tracking_uri).start()
    new = CountingProxy(mlflow_stack.tracking_uri).start()
    try:
        serve_first_version(
            kube_cluster, mlflow_registry, old.url, k8s_namespace, "moved", model_name
        )
        assert old.total() > 0
        kube_cluster.apply(model_deployment("moved", k8s_namespace, model_name, new.url))
        eventually(lambda: new.total() > 0, 3 * POLL, "the new endpoint is polled")
        time.sleep(1)  # a sweep of the old one may be in flight
        polled = old.total()
        time.sleep(3 * POLL)
        assert old.total() == polled, "the old endpoint is still polled"
        assert new.total() >= 2
        assert synced(kube_cluster, k8s_namespace, "moved").get("status") == "True"
    finally:
        old.stop()
        new.stop()


def test_a_deleted_deployment_comes_back_on_the_last_good_version(
    operator: OperatorProcess,
    kube_cluster: KubeCluster,
    mlflow_stack: MlflowStack,
    mlflow_registry: ModelRegistry,
    model_name: str,
    k8s_namespace: str,
) -> None:
    """Defect 9: a serving Deployment deleted while a failed version was still selected was
    never recreated (total outage, reported as NoVersion).

    The live objects also go through the invariant checks (core/modeldeployment/invariants.py),
    as a test that kills the operator mid-rollout can do.
    """
    auditor = Auditor()

    def audit(selected: str, *, quiet: bool = False) -> None:
        md = get_json(kube_cluster, "-n", k8s_namespace, "mdep", "revived")
        found = kube_cluster.kubectl(
            "get", "-n", k8s_namespace, "deployment", "revived", "-o", "json", check=False
        )
        dep = json.loads(found.stdout) if found.returncode == 0 else None
        auditor.observe(Snapshot(md, dep, selected), settled=quiet, quiet=quiet)
        assert auditor.violations == []

    serve_first_version(
        kube_cluster, mlflow_registry, mlflow_stack.tracking_uri, k8s_namespace, "revived",
        model_name, deadline=10,
    )  # fmt: skip
    audit("1", quiet=True)
    broken = mlflow_registry.log_broken_version(model_name)
    kube_cluster.keep_pods_unready(VERSION_LABEL, [broken])
    try:
        mlflow_registry.set_alias(model_name, "champion", broken)
        audit(broken)

        def rolled_back() -> bool:
            audit(broken)
            return (
                status(kube_cluster, k8s_namespace, "revived").get("failedVersions") == [broken]
                and template_version(kube_cluster, k8s_namespace, "revived") == "1"
            )

        eventually(rolled_back, POLL + 10 + 30, "failed and rolled back")
        kube_cluster.kubectl("delete", "deployment", "revived", "-n", k8s_namespace)
        audit(broken)
        eventually(
            lambda: template_version(kube_cluster, k8s_namespace, "revived") == "1",
            3 * POLL,
            "recreated on version 1",
        )

        def ready_on_previous() -> bool:
            ready = condition(status(kube_cluster, k8s_namespace, "revived"), "Ready")
            return (ready.get("status"), ready.get("reason")) == ("True", "ServingPreviousVersion")

        eventually(ready_on_previous, 30, "Ready on version 1 again")
        assert "Recreating" in event_reasons(kube_cluster, k8s_namespace, "revived")
        # the recreated Deployment carries the failure record again
        annotations = deployment(kube_cluster, k8s_namespace, "revived")["metadata"]["annotations"]
        assert annotations["mlflowops.dev/failed-versions"] == broken
        assert annotations["mlflowops.dev/last-good-version"] == "1"
        time.sleep(2 * POLL)
        assert template_version(kube_cluster, k8s_namespace, "revived") == "1"
        audit(broken, quiet=True)
    finally:
        kube_cluster.reset_unready_rules()


def test_an_api_refusal_is_in_ready_and_in_one_event(
    operator: OperatorProcess,
    kube_cluster: KubeCluster,
    mlflow_stack: MlflowStack,
    mlflow_registry: ModelRegistry,
    model_name: str,
    k8s_namespace: str,
) -> None:
    """Defect 7: a 422 on apply left Ready=True although nothing could be applied."""
    manifest = model_deployment("refused", k8s_namespace, model_name, mlflow_stack.tracking_uri)
    serve_first_version(
        kube_cluster, mlflow_registry, mlflow_stack.tracking_uri, k8s_namespace, "refused",
        model_name,
    )  # fmt: skip
    bad = copy.deepcopy(manifest)
    # the CRD takes any pod labels; the API server refuses this one in the Deployment (422)
    bad["spec"]["serving"]["podTemplate"] = {"labels": {"team": "fraud detection"}}
    kube_cluster.apply(bad)
    ready = eventually(
        lambda: (
            (c := condition(status(kube_cluster, k8s_namespace, "refused"), "Ready")).get("reason")
            == "KubernetesInvalid"
            and c
        ),
        3 * POLL,
        "Ready=False KubernetesInvalid",
    )
    assert ready["status"] == "False"
    assert ready["message"].startswith(
        f"the Kubernetes API refused to apply Deployment {k8s_namespace}/refused (HTTP 422 Invalid)"
    )
    time.sleep(10)  # the daemon retries with back-off meanwhile
    refusals = [
        e
        for e in events(kube_cluster, k8s_namespace, "refused")
        if e["reason"] == "KubernetesInvalid"
    ]
    assert len(refusals) == 1
    assert int(refusals[0].get("count") or 1) == 1
    kube_cluster.apply(manifest)
    eventually(
        lambda: is_ready_on(kube_cluster, k8s_namespace, "refused", "1"),
        3 * POLL,
        "Ready again with the spec fixed",
    )


def test_pods_the_cluster_cannot_create_do_not_fail_the_version(
    operator: OperatorProcess,
    kube_cluster: KubeCluster,
    mlflow_stack: MlflowStack,
    mlflow_registry: ModelRegistry,
    model_name: str,
    k8s_namespace: str,
) -> None:
    """Defect 11: pods refused by the API server (a missing ServiceAccount) after the progress
    deadline put the version in failedVersions and tagged it "rollout failed" in MLflow."""
    v1 = mlflow_registry.log_version(model_name)
    mlflow_registry.set_alias(model_name, "champion", v1.version)
    md = model_deployment(
        "blocked", k8s_namespace, model_name, mlflow_stack.tracking_uri, deadline=10,
        serving={"replicas": 1, "podTemplate": {"serviceAccountName": "serving"}},
    )  # fmt: skip
    kube_cluster.apply(md)
    degraded = eventually(
        lambda: (
            (c := condition(status(kube_cluster, k8s_namespace, "blocked"), "Degraded")).get(
                "reason"
            )
            == "RolloutBlocked"
            and c
        ),
        POLL + 10 + 30,
        "Degraded=True RolloutBlocked after the deadline",
    )
    assert degraded["status"] == "True"
    assert 'serviceaccount "serving" not found' in degraded["message"]
    st = status(kube_cluster, k8s_namespace, "blocked")
    assert st.get("failedVersions", []) == []
    assert "RolloutFailed" not in event_reasons(kube_cluster, k8s_namespace, "blocked")
    key = f"mlflow-operator.{k8s_namespace}.blocked"
    assert key not in mlflow_registry.get_version(model_name, v1.version).tags
    kube_cluster.kubectl("create", "serviceaccount", "serving", "-n", k8s_namespace)
    eventually(
        lambda: is_ready_on(kube_cluster, k8s_namespace, "blocked", v1.version),
        120,  # the ReplicaSet controller retries pod creation with back-off
        "Ready on v1 once the ServiceAccount exists",
    )
