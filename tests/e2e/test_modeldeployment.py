"""ModelDeployment end to end: a real control plane, real MLflow on PostgreSQL and MinIO,
the operator running as a process. Pods here are simulated by KWOK (they never run a container):
these tests are about following the registry. Rollouts and rollbacks of real pods are in
test_modeldeployment_pods.py.
"""

from __future__ import annotations

import random
import time

import pytest

from tests.cluster.launcher import KubeCluster
from tests.e2e.conftest import eventually, get_json
from tests.e2e.modeldeployments import (
    condition,
    event_reasons,
    events,
    eventually_condition,
    is_ready_on,
    model_deployment,
    serve_first_version,
    status,
    template_version,
)
from tests.e2e.operator_process import OperatorProcess
from tests.mlflowstack.models import ModelRegistry
from tests.mlflowstack.stack import MlflowStack

pytestmark = [pytest.mark.e2e, pytest.mark.integration]
POLL = 5.0


def test_alias_follow_and_promotion(
    operator: OperatorProcess,
    kube_cluster: KubeCluster,
    mlflow_stack: MlflowStack,
    mlflow_registry: ModelRegistry,
    model_name: str,
    k8s_namespace: str,
) -> None:
    v1 = mlflow_registry.log_version(model_name, c=1.0)
    mlflow_registry.set_alias(model_name, "champion", v1.version)
    kube_cluster.apply(
        model_deployment("fraud", k8s_namespace, model_name, mlflow_stack.tracking_uri)
    )
    eventually(lambda: is_ready_on(kube_cluster, k8s_namespace, "fraud", "1"), 60, "Ready on v1")
    kube_cluster.kubectl(
        "wait", "-n", k8s_namespace, "--for=condition=Ready", "mdep/fraud", "--timeout=5s"
    )
    st = status(kube_cluster, k8s_namespace, "fraud")
    assert st["targetVersion"] == "1"
    assert st["modelUri"] == f"models:/{model_name}/1"
    assert st["runId"] == v1.run_id
    assert st["url"] == f"http://fraud.{k8s_namespace}.svc:80"
    assert st["readyReplicas"] == 2
    assert st["observedGeneration"] == 1
    svc = get_json(kube_cluster, "-n", k8s_namespace, "service", "fraud")
    assert svc["spec"]["selector"]["mlflowops.dev/modeldeployment"] == "fraud"

    v2 = mlflow_registry.log_version(model_name, c=0.01)
    moved = time.monotonic()
    mlflow_registry.set_alias(model_name, "champion", v2.version)
    eventually(
        lambda: is_ready_on(kube_cluster, k8s_namespace, "fraud", "2"),
        POLL + 5,
        "rolled out v2 within pollInterval + 5s",
    )
    print(f"promotion to Ready on v2: {time.monotonic() - moved:.1f}s")
    st = status(kube_cluster, k8s_namespace, "fraud")
    assert st["previousVersion"] == "1"
    assert [h["version"] for h in st["history"]] == ["1", "2"]
    assert {h["result"] for h in st["history"]} == {"Succeeded"}
    messages = [e["message"] for e in events(kube_cluster, k8s_namespace, "fraud")]
    assert "rolling out version 2 (was 1)" in messages
    assert "serving version 2 (was 1)" in messages
    printed = kube_cluster.kubectl("get", "-n", k8s_namespace, "mdep", "fraud").stdout
    assert "alias:champion" in printed
    # MLflow knows where the version serves (write-back, sent off the reconcile path)
    key = f"mlflow-operator.{k8s_namespace}.fraud"
    tagged = eventually(
        lambda: mlflow_registry.get_version(model_name, "2").tags.get(key), 30, "write-back tag"
    )
    assert tagged.startswith("serving since ")


def test_stage_selector_follows_the_newest_version_in_the_stage(
    operator: OperatorProcess,
    kube_cluster: KubeCluster,
    mlflow_stack: MlflowStack,
    mlflow_registry: ModelRegistry,
    model_name: str,
    k8s_namespace: str,
) -> None:
    v1 = mlflow_registry.log_version(model_name)
    mlflow_registry.transition_stage(model_name, v1.version, "Production")
    md = model_deployment(
        "staged", k8s_namespace, model_name, mlflow_stack.tracking_uri,
        selector={"stage": "Production"},
    )  # fmt: skip
    kube_cluster.apply(md)
    eventually(lambda: is_ready_on(kube_cluster, k8s_namespace, "staged", "1"), 60, "v1")
    v2 = mlflow_registry.log_version(model_name)
    mlflow_registry.transition_stage(model_name, v2.version, "Production")
    eventually(lambda: is_ready_on(kube_cluster, k8s_namespace, "staged", "2"), POLL + 5, "v2")
    assert status(kube_cluster, k8s_namespace, "staged")["follows"] == "stage:Production"


def test_selector_follows_version_tags_within_a_semver_range(
    operator: OperatorProcess,
    kube_cluster: KubeCluster,
    mlflow_stack: MlflowStack,
    mlflow_registry: ModelRegistry,
    model_name: str,
    k8s_namespace: str,
) -> None:
    ns = k8s_namespace

    def release(semver: str, **tags: str) -> str:
        version = mlflow_registry.log_version(model_name).version
        for key, value in {"semver": semver, **tags}.items():
            mlflow_registry.tag_version(model_name, version, key, value)
        return version

    v1 = release("2.1.0", stage="prod")
    v2 = release("3.0.0", stage="prod")  # a higher major: outside ^2.1
    md = model_deployment(
        "tagged", ns, model_name, mlflow_stack.tracking_uri,
        selector={"selector": {"tags": {"stage": "prod"}, "semver": "^2.1"}},
    )  # fmt: skip
    kube_cluster.apply(md)
    eventually(lambda: is_ready_on(kube_cluster, ns, "tagged", v1), 60, "Ready on 2.1.0")
    st = status(kube_cluster, ns, "tagged")
    assert st["follows"] == "tags:stage=prod,semver:^2.1"
    assert st["selection"] == (
        f"version {v1}, semver 2.1.0: the newest of 1 READY version(s) matching "
        "tags:stage=prod,semver:^2.1"
    )
    printed = kube_cluster.kubectl("get", "-n", ns, "mdep", "tagged").stdout
    assert "tags:stage=prod,semver:^2.1" in printed

    v3 = release("2.2.0")  # not tagged stage=prod yet: not a candidate
    time.sleep(POLL + 1)
    assert template_version(kube_cluster, ns, "tagged") == v1
    mlflow_registry.tag_version(model_name, v3, "stage", "prod")
    eventually(lambda: is_ready_on(kube_cluster, ns, "tagged", v3), POLL + 5, "tagging moves it")

    mlflow_registry.delete_version_tag(model_name, v3, "stage")
    eventually(lambda: is_ready_on(kube_cluster, ns, "tagged", v1), POLL + 5, "untag moves back")
    assert template_version(kube_cluster, ns, "tagged") == v1
    assert v2 not in [h["version"] for h in status(kube_cluster, ns, "tagged")["history"]]

    # nothing matches any more: said in RegistrySynced, and the pods keep serving v1
    mlflow_registry.delete_version_tag(model_name, v1, "stage")
    synced = eventually_condition(
        kube_cluster, ns, "tagged", "RegistrySynced",
        lambda c: c.get("reason") == "NoMatchingVersion", POLL + 5, "NoMatchingVersion",
    )  # fmt: skip
    assert synced["status"] == "False"
    assert "matches tags:stage=prod,semver:^2.1" in synced["message"]
    assert f"excluded: {v2} (3.0.0 is outside ^2.1)" in synced["message"]
    assert template_version(kube_cluster, ns, "tagged") == v1
    assert condition(status(kube_cluster, ns, "tagged"), "Ready")["status"] == "True"


def test_any_order_of_tag_changes_converges_to_the_best_match(
    operator: OperatorProcess,
    kube_cluster: KubeCluster,
    mlflow_stack: MlflowStack,
    mlflow_registry: ModelRegistry,
    model_name: str,
    k8s_namespace: str,
) -> None:
    """Bursts of tag changes, in shuffled orders and faster than the poll interval: whatever
    the operator saw in between, it ends on the version the final tags select."""
    ns = k8s_namespace
    versions = [mlflow_registry.log_version(model_name).version for _ in range(4)]
    for number, version in enumerate(versions):
        mlflow_registry.tag_version(model_name, version, "semver", f"1.{number}.0")
    mlflow_registry.tag_version(model_name, versions[0], "channel", "stable")
    md = model_deployment(
        "converge", ns, model_name, mlflow_stack.tracking_uri,
        selector={"selector": {"tags": {"channel": "stable"}, "order": "highestSemver"}},
    )  # fmt: skip
    kube_cluster.apply(md)
    eventually(lambda: is_ready_on(kube_cluster, ns, "converge", versions[0]), 60, "first")
    shuffle = random.Random(20261201)
    stable = {versions[0]}
    for burst in range(3):
        wanted = set(shuffle.sample(versions, k=shuffle.randint(1, len(versions))))
        changes = [(v, v in wanted) for v in versions if (v in wanted) != (v in stable)]
        shuffle.shuffle(changes)
        for version, tagged in changes:
            if tagged:
                mlflow_registry.tag_version(model_name, version, "channel", "stable")
            else:
                mlflow_registry.delete_version_tag(model_name, version, "channel")
            time.sleep(shuffle.uniform(0, 2))
        stable = wanted
        best = max(stable, key=versions.index)  # semver grows with the version
        eventually(
            lambda best=best: is_ready_on(kube_cluster, ns, "converge", best),
            2 * POLL + 5,
            f"burst {burst}: {len(changes)} changes end on version {best}",
        )


def test_pinned_version_ignores_registry_moves(
    operator: OperatorProcess,
    kube_cluster: KubeCluster,
    mlflow_stack: MlflowStack,
    mlflow_registry: ModelRegistry,
    model_name: str,
    k8s_namespace: str,
) -> None:
    serve_first_version(
        kube_cluster,
        mlflow_registry,
        mlflow_stack.tracking_uri,
        k8s_namespace,
        "pinned",
        model_name,
        selector={"version": "1"},
    )
    v2 = mlflow_registry.log_version(model_name)
    mlflow_registry.set_alias(model_name, "champion", v2.version)
    mlflow_registry.transition_stage(model_name, v2.version, "Production")
    time.sleep(2 * POLL + 1)
    assert template_version(kube_cluster, k8s_namespace, "pinned") == "1"
    assert is_ready_on(kube_cluster, k8s_namespace, "pinned", "1")


def test_registry_outage_keeps_serving(
    operator: OperatorProcess,
    kube_cluster: KubeCluster,
    mlflow_stack: MlflowStack,
    mlflow_registry: ModelRegistry,
    model_name: str,
    k8s_namespace: str,
) -> None:
    serve_first_version(
        kube_cluster,
        mlflow_registry,
        mlflow_stack.tracking_uri,
        k8s_namespace,
        "out",
        model_name,
    )
    before = event_reasons(kube_cluster, k8s_namespace, "out")
    with mlflow_stack.outage():
        eventually(
            lambda: (
                condition(status(kube_cluster, k8s_namespace, "out"), "RegistrySynced").get(
                    "reason"
                )
                == "RegistryUnreachable"
            ),
            3 * POLL,
            "RegistrySynced=False while MLflow is down",
        )
        assert is_ready_on(kube_cluster, k8s_namespace, "out", "1")
        assert template_version(kube_cluster, k8s_namespace, "out") == "1"
    restored = time.monotonic()
    eventually(
        lambda: (
            condition(status(kube_cluster, k8s_namespace, "out"), "RegistrySynced").get("status")
            == "True"
        ),
        4 * POLL,  # back-off after failures: at most a few intervals
        "RegistrySynced=True after MLflow is back",
    )
    print(f"RegistrySynced back after {time.monotonic() - restored:.1f}s")
    assert event_reasons(kube_cluster, k8s_namespace, "out") == before  # no spurious rollout
    assert template_version(kube_cluster, k8s_namespace, "out") == "1"


def test_operator_killed_mid_rollout_converges(
    operator: OperatorProcess,
    kube_cluster: KubeCluster,
    mlflow_stack: MlflowStack,
    mlflow_registry: ModelRegistry,
    model_name: str,
    k8s_namespace: str,
) -> None:
    serve_first_version(
        kube_cluster,
        mlflow_registry,
        mlflow_stack.tracking_uri,
        k8s_namespace,
        "crash",
        model_name,
    )
    v2 = mlflow_registry.log_version(model_name)
    mlflow_registry.set_alias(model_name, "champion", v2.version)
    eventually(
        lambda: template_version(kube_cluster, k8s_namespace, "crash") == "2", 30, "rollout began"
    )
    operator.kill()
    operator.start()
    eventually(lambda: is_ready_on(kube_cluster, k8s_namespace, "crash", "2"), 60, "converged")
    deployments = get_json(kube_cluster, "-n", k8s_namespace, "deployments")["items"]
    assert [d["metadata"]["name"] for d in deployments] == ["crash"]
    st = status(kube_cluster, k8s_namespace, "crash")
    assert st["previousVersion"] == "1"
    assert [h["version"] for h in st["history"]] == ["1", "2"]


def test_deleting_the_model_deployment_removes_its_children(
    operator: OperatorProcess,
    kube_cluster: KubeCluster,
    mlflow_stack: MlflowStack,
    mlflow_registry: ModelRegistry,
    model_name: str,
    k8s_namespace: str,
) -> None:
    serve_first_version(
        kube_cluster,
        mlflow_registry,
        mlflow_stack.tracking_uri,
        k8s_namespace,
        "gone",
        model_name,
    )
    kube_cluster.kubectl("delete", "-n", k8s_namespace, "mdep", "gone", "--timeout=30s")

    def children() -> int:
        deps = get_json(kube_cluster, "-n", k8s_namespace, "deployments")["items"]
        svcs = get_json(kube_cluster, "-n", k8s_namespace, "services")["items"]
        pods = get_json(kube_cluster, "-n", k8s_namespace, "pods")["items"]
        return len(deps) + len(svcs) + len(pods)

    eventually(lambda: children() == 0, 60, "children garbage-collected")
