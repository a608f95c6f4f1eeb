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
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest

from mlflow_operator.core.modeldeployment.invariants import Auditor, Snapshot
from tests.cluster.launcher import KubeCluster
from tests.e2e.kube import get_json
from tests.e2e.modeldeployments import (
    ModelDeploymentEnv,
    condition,
    event_reasons,
    events,
    is_ready_on,
    model_deployment,
    status,
    template_version,
)
from tests.mlflowstack.stack import MlflowStack
from tests.support.counting_proxy import CountingProxy
from tests.support.fault_proxy import FaultProxy
from tests.support.polling import eventually

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
    env: ModelDeploymentEnv,
) -> None:
    """Defect 4: the Deployment was re-applied without the credential env vars while the
    Secret was missing; every pod restarted unable to reach MLflow."""
    create_credentials(env.cluster, env.namespace, "mlflow-creds")
    env.serve_first_version("creds", credentials="mlflow-creds")
    before = deployment(env.cluster, env.namespace, "creds")
    env.cluster.kubectl("delete", "secret", "mlflow-creds", "-n", env.namespace)
    gone = eventually(
        lambda: (
            (s := synced(env.cluster, env.namespace, "creds")).get("reason")
            == "CredentialsNotFound"
            and s
        ),
        timeout=3 * POLL,
        what="RegistrySynced=False CredentialsNotFound",
    )
    assert "mlflow-creds" in gone["message"]
    time.sleep(2 * POLL)  # a few more reconciles without the Secret
    after = deployment(env.cluster, env.namespace, "creds")
    assert after["metadata"]["generation"] == before["metadata"]["generation"]
    assert after["spec"]["template"] == before["spec"]["template"]
    assert is_ready_on(env.cluster, env.namespace, "creds", "1")
    create_credentials(env.cluster, env.namespace, "mlflow-creds")
    eventually(
        lambda: synced(env.cluster, env.namespace, "creds").get("status") == "True",
        timeout=4 * POLL,
        what="RegistrySynced=True with the Secret back",
    )
    again = deployment(env.cluster, env.namespace, "creds")
    assert again["metadata"]["generation"] == before["metadata"]["generation"]


def test_registry_faults_are_reported_and_the_watcher_recovers(
    fault_proxy: FaultProxy, env: ModelDeploymentEnv
) -> None:
    """Defect 5: an SSO login page answered with 200 killed the registry watcher while status
    kept saying RegistrySynced=True; no later promotion was ever seen."""
    env.serve_first_version("faulty", tracking_uri=fault_proxy.url)
    fault_proxy.fault = "html"
    bad = eventually(
        lambda: (
            (s := synced(env.cluster, env.namespace, "faulty")).get("reason")
            == "RegistryBadResponse"
            and s
        ),
        timeout=4 * POLL,
        what="RegistrySynced=False RegistryBadResponse",
    )
    assert fault_proxy.url in bad["message"]
    assert "content type text/html" in bad["message"]
    assert is_ready_on(env.cluster, env.namespace, "faulty", "1")  # serving is unchanged
    fault_proxy.fault = None
    eventually(
        lambda: synced(env.cluster, env.namespace, "faulty").get("status") == "True",
        timeout=6 * POLL,  # back-off after failures
        what="RegistrySynced=True once MLflow answers again",
    )
    v2 = env.registry.log_version(env.model)
    env.registry.set_alias(env.model, "champion", v2.version)
    eventually(
        lambda: is_ready_on(env.cluster, env.namespace, "faulty", v2.version),
        timeout=4 * POLL,
        what="the watcher still follows the registry: v2 rolled out",
    )
    # a registry that stops answering (the operator's MLflow timeout is 30s): the watchdog
    # says so after 3 poll intervals instead of RegistrySynced=True
    fault_proxy.fault = "slow"
    stalled = eventually(
        lambda: (
            (s := synced(env.cluster, env.namespace, "faulty")).get("reason") == "RegistryStalled"
            and s
        ),
        timeout=3 * POLL + 3 * POLL,
        what="RegistrySynced=False RegistryStalled",
    )
    assert "3 poll intervals" in stalled["message"]
    fault_proxy.fault = None
    eventually(
        lambda: synced(env.cluster, env.namespace, "faulty").get("status") == "True",
        timeout=40,
        what="RegistrySynced=True once the slow answers end",
    )


def quiet_for(proxy: CountingProxy, seconds: float) -> bool:
    """No request through `proxy` in the next `seconds`."""
    before = Counter(proxy.counts)
    time.sleep(seconds)
    return proxy.counts == before


def test_a_new_tracking_uri_unfollows_the_old_endpoint(env: ModelDeploymentEnv) -> None:
    """Defect 8: after trackingUri changed, the old endpoint was polled forever."""
    old = CountingProxy(env.tracking_uri).start()
    new = CountingProxy(env.tracking_uri).start()
    try:
        env.serve_first_version("moved", tracking_uri=old.url)
        assert old.total() > 0
        env.cluster.apply(model_deployment("moved", env.namespace, env.model, new.url))
        eventually(lambda: new.total() > 0, timeout=3 * POLL, what="the new endpoint is polled")
        # A sweep of the old endpoint that began before the change may still finish, slowly on
        # a busy machine; polled forever, it is never quiet for longer than a poll interval.
        eventually(
            lambda: quiet_for(old, 1.5 * POLL),
            timeout=6 * POLL,
            what="the old endpoint quiet for a poll interval and a half",
        )
        polled = Counter(old.counts)
        time.sleep(3 * POLL)
        assert old.counts == polled, f"the old endpoint is still called: {old.counts - polled}"
        assert new.total() >= 2
        assert synced(env.cluster, env.namespace, "moved").get("status") == "True"
    finally:
        old.stop()
        new.stop()


def test_a_deleted_deployment_comes_back_on_the_last_good_version(env: ModelDeploymentEnv) -> None:
    """Defect 9: a serving Deployment deleted while a failed version was still selected was
    never recreated (total outage, reported as NoVersion).

    The live objects also go through the invariant checks (core/modeldeployment/invariants.py),
    as a test that kills the operator mid-rollout can do.
    """
    auditor = Auditor()

    def audit(selected: str, *, quiet: bool = False) -> None:
        md = get_json(env.cluster, "-n", env.namespace, "mdep", "revived")
        found = env.cluster.kubectl(
            "get", "-n", env.namespace, "deployment", "revived", "-o", "json", check=False
        )
        dep = json.loads(found.stdout) if found.returncode == 0 else None
        auditor.observe(Snapshot(md, dep, selected), settled=quiet, quiet=quiet)
        assert auditor.violations == []

    env.serve_first_version("revived", deadline=10)
    audit("1", quiet=True)
    broken = env.registry.log_broken_version(env.model)
    env.cluster.keep_pods_unready(VERSION_LABEL, [broken])
    try:
        env.registry.set_alias(env.model, "champion", broken)
        audit(broken)

        def rolled_back() -> bool:
            audit(broken)
            return (
                status(env.cluster, env.namespace, "revived").get("failedVersions") == [broken]
                and template_version(env.cluster, env.namespace, "revived") == "1"
            )

        eventually(rolled_back, timeout=POLL + 10 + 30, what="failed and rolled back")
        env.cluster.kubectl("delete", "deployment", "revived", "-n", env.namespace)
        audit(broken)
        eventually(
            lambda: template_version(env.cluster, env.namespace, "revived") == "1",
            timeout=3 * POLL,
            what="recreated on version 1",
        )

        def ready_on_previous() -> bool:
            ready = condition(status(env.cluster, env.namespace, "revived"), "Ready")
            return (ready.get("status"), ready.get("reason")) == ("True", "ServingPreviousVersion")

        eventually(ready_on_previous, timeout=30, what="Ready on version 1 again")
        assert "Recreating" in event_reasons(env.cluster, env.namespace, "revived")
        # the recreated Deployment carries the failure record again
        metadata = deployment(env.cluster, env.namespace, "revived")["metadata"]
        assert metadata["annotations"]["mlflowops.dev/failed-versions"] == broken
        assert metadata["labels"]["mlflowops.dev/last-good-version"] == "1"
        time.sleep(2 * POLL)
        assert template_version(env.cluster, env.namespace, "revived") == "1"
        audit(broken, quiet=True)
    finally:
        env.cluster.reset_unready_rules()


def test_an_api_refusal_is_in_ready_and_in_one_event(env: ModelDeploymentEnv) -> None:
    """Defect 7: a 422 on apply left Ready=True although nothing could be applied."""
    manifest = model_deployment("refused", env.namespace, env.model, env.tracking_uri)
    env.serve_first_version("refused")
    bad = copy.deepcopy(manifest)
    # the CRD takes any pod labels; the API server refuses this one in the Deployment (422)
    bad["spec"]["serving"]["podTemplate"] = {"labels": {"team": "fraud detection"}}
    env.cluster.apply(bad)
    ready = eventually(
        lambda: (
            (c := condition(status(env.cluster, env.namespace, "refused"), "Ready")).get("reason")
            == "KubernetesInvalid"
            and c
        ),
        timeout=3 * POLL,
        what="Ready=False KubernetesInvalid",
    )
    assert ready["status"] == "False"
    assert ready["message"].startswith(
        f"the Kubernetes API refused to apply Deployment {env.namespace}/refused (HTTP 422 Invalid)"
    )
    time.sleep(10)  # the daemon retries with back-off meanwhile
    refusals = [
        e
        for e in events(env.cluster, env.namespace, "refused")
        if e["reason"] == "KubernetesInvalid"
    ]
    assert len(refusals) == 1
    assert int(refusals[0].get("count") or 1) == 1
    env.cluster.apply(manifest)
    eventually(
        lambda: is_ready_on(env.cluster, env.namespace, "refused", "1"),
        timeout=3 * POLL,
        what="Ready again with the spec fixed",
    )


def test_pods_the_cluster_cannot_create_do_not_fail_the_version(env: ModelDeploymentEnv) -> None:
    """Defect 11: pods refused by the API server (a missing ServiceAccount) after the progress
    deadline put the version in failedVersions and tagged it "rollout failed" in MLflow."""
    v1 = env.registry.log_version(env.model)
    env.registry.set_alias(env.model, "champion", v1.version)
    md = model_deployment(
        "blocked", env.namespace, env.model, env.tracking_uri, deadline=10,
        serving={"replicas": 1, "podTemplate": {"serviceAccountName": "serving"}},
    )  # fmt: skip
    env.cluster.apply(md)
    degraded = eventually(
        lambda: (
            (c := condition(status(env.cluster, env.namespace, "blocked"), "Degraded")).get(
                "reason"
            )
            == "RolloutBlocked"
            and c
        ),
        timeout=POLL + 10 + 30,
        what="Degraded=True RolloutBlocked after the deadline",
    )
    assert degraded["status"] == "True"
    assert 'serviceaccount "serving" not found' in degraded["message"]
    st = status(env.cluster, env.namespace, "blocked")
    assert st.get("failedVersions", []) == []
    assert "RolloutFailed" not in event_reasons(env.cluster, env.namespace, "blocked")
    key = f"mlflow-operator.{env.namespace}.blocked"
    assert key not in env.registry.get_version(env.model, v1.version).tags
    env.cluster.kubectl("create", "serviceaccount", "serving", "-n", env.namespace)
    eventually(
        lambda: is_ready_on(env.cluster, env.namespace, "blocked", v1.version),
        timeout=120,  # the ReplicaSet controller retries pod creation with back-off
        what="Ready on v1 once the ServiceAccount exists",
    )
