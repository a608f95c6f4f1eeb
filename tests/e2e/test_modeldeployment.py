"""ModelDeployment end to end: a real control plane, real MLflow on PostgreSQL and MinIO,
the operator running as a process. Pods here are simulated by KWOK (they never run a container):
these tests are about following the registry. Rollouts and rollbacks of real pods are in
test_modeldeployment_pods.py.
"""

from __future__ import annotations

import random
import time
from pathlib import Path

import pytest

from tests.cluster.fixtures import create_namespace
from tests.cluster.launcher import KubeCluster
from tests.e2e.kube import get_json
from tests.e2e.modeldeployments import (
    ModelDeploymentEnv,
    condition,
    event_reasons,
    events,
    eventually_condition,
    is_ready_on,
    model_deployment,
    status,
    template_version,
)
from tests.e2e.operator_process import OperatorProcess
from tests.mlflowstack.models import ModelRegistry
from tests.mlflowstack.stack import MlflowStack
from tests.support.polling import eventually

pytestmark = [pytest.mark.e2e, pytest.mark.integration]
POLL = 5.0


def test_alias_follow_and_promotion(env: ModelDeploymentEnv) -> None:
    v1 = env.registry.log_version(env.model, c=1.0)
    env.registry.set_alias(env.model, "champion", v1.version)
    env.cluster.apply(model_deployment("fraud", env.namespace, env.model, env.tracking_uri))
    eventually(
        lambda: is_ready_on(env.cluster, env.namespace, "fraud", "1"),
        timeout=60,
        what="Ready on v1",
    )
    env.cluster.kubectl(
        "wait", "-n", env.namespace, "--for=condition=Ready", "mdep/fraud", "--timeout=5s"
    )
    st = status(env.cluster, env.namespace, "fraud")
    assert st["targetVersion"] == "1"
    assert st["modelUri"] == f"models:/{env.model}/1"
    assert st["runId"] == v1.run_id
    assert st["url"] == f"http://fraud.{env.namespace}.svc:80"
    assert st["readyReplicas"] == 2
    assert st["observedGeneration"] == 1
    svc = get_json(env.cluster, "-n", env.namespace, "service", "fraud")
    assert svc["spec"]["selector"]["mlflowops.dev/modeldeployment"] == "fraud"

    v2 = env.registry.log_version(env.model, c=0.01)
    moved = time.monotonic()
    env.registry.set_alias(env.model, "champion", v2.version)
    eventually(
        lambda: is_ready_on(env.cluster, env.namespace, "fraud", "2"),
        timeout=POLL + 5,
        what="rolled out v2 within pollInterval + 5s",
    )
    print(f"promotion to Ready on v2: {time.monotonic() - moved:.1f}s")
    st = status(env.cluster, env.namespace, "fraud")
    assert st["previousVersion"] == "1"
    assert [h["version"] for h in st["history"]] == ["1", "2"]
    assert {h["result"] for h in st["history"]} == {"Succeeded"}
    messages = [e["message"] for e in events(env.cluster, env.namespace, "fraud")]
    assert "rolling out version 2 (was 1)" in messages
    assert "serving version 2 (was 1)" in messages
    printed = env.cluster.kubectl("get", "-n", env.namespace, "mdep", "fraud").stdout
    assert "alias:champion" in printed
    # MLflow knows where the version serves (write-back, sent off the reconcile path)
    key = f"mlflow-operator.{env.namespace}.fraud"
    tagged = eventually(
        lambda: env.registry.get_version(env.model, "2").tags.get(key),
        timeout=30,
        what="write-back tag",
    )
    assert tagged.startswith("serving since ")


def test_stage_selector_follows_the_newest_version_in_the_stage(env: ModelDeploymentEnv) -> None:
    v1 = env.registry.log_version(env.model)
    env.registry.transition_stage(env.model, v1.version, "Production")
    md = model_deployment(
        "staged", env.namespace, env.model, env.tracking_uri,
        selector={"stage": "Production"},
    )  # fmt: skip
    env.cluster.apply(md)
    eventually(
        lambda: is_ready_on(env.cluster, env.namespace, "staged", "1"), timeout=60, what="v1"
    )
    v2 = env.registry.log_version(env.model)
    env.registry.transition_stage(env.model, v2.version, "Production")
    eventually(
        lambda: is_ready_on(env.cluster, env.namespace, "staged", "2"), timeout=POLL + 5, what="v2"
    )
    assert status(env.cluster, env.namespace, "staged")["follows"] == "stage:Production"


def test_selector_follows_version_tags_within_a_semver_range(env: ModelDeploymentEnv) -> None:
    ns = env.namespace

    def release(semver: str, **tags: str) -> str:
        version = env.registry.log_version(env.model).version
        for key, value in {"semver": semver, **tags}.items():
            env.registry.tag_version(env.model, version, key, value)
        return version

    v1 = release("2.1.0", stage="prod")
    v2 = release("3.0.0", stage="prod")  # a higher major: outside ^2.1
    md = model_deployment(
        "tagged", ns, env.model, env.tracking_uri,
        selector={"selector": {"tags": {"stage": "prod"}, "semver": "^2.1"}},
    )  # fmt: skip
    env.cluster.apply(md)
    eventually(
        lambda: is_ready_on(env.cluster, ns, "tagged", v1), timeout=60, what="Ready on 2.1.0"
    )
    st = status(env.cluster, ns, "tagged")
    assert st["follows"] == "tags:stage=prod,semver:^2.1"
    assert st["selection"] == (
        f"version {v1}, semver 2.1.0: the newest of 1 READY version(s) matching "
        "tags:stage=prod,semver:^2.1"
    )
    printed = env.cluster.kubectl("get", "-n", ns, "mdep", "tagged").stdout
    assert "tags:stage=prod,semver:^2.1" in printed

    v3 = release("2.2.0")  # not tagged stage=prod yet: not a candidate
    time.sleep(POLL + 1)
    assert template_version(env.cluster, ns, "tagged") == v1
    env.registry.tag_version(env.model, v3, "stage", "prod")
    eventually(
        lambda: is_ready_on(env.cluster, ns, "tagged", v3),
        timeout=POLL + 5,
        what="tagging moves it",
    )

    env.registry.delete_version_tag(env.model, v3, "stage")
    eventually(
        lambda: is_ready_on(env.cluster, ns, "tagged", v1),
        timeout=POLL + 5,
        what="untag moves back",
    )
    assert template_version(env.cluster, ns, "tagged") == v1
    assert v2 not in [h["version"] for h in status(env.cluster, ns, "tagged")["history"]]

    # nothing matches any more: said in RegistrySynced, and the pods keep serving v1
    env.registry.delete_version_tag(env.model, v1, "stage")
    synced = eventually_condition(
        env.cluster, ns, "tagged", "RegistrySynced",
        lambda c: c.get("reason") == "NoMatchingVersion",
        timeout=POLL + 5, what="NoMatchingVersion",
    )  # fmt: skip
    assert synced["status"] == "False"
    assert "matches tags:stage=prod,semver:^2.1" in synced["message"]
    assert f"excluded: {v2} (3.0.0 is outside ^2.1)" in synced["message"]
    assert template_version(env.cluster, ns, "tagged") == v1
    assert condition(status(env.cluster, ns, "tagged"), "Ready")["status"] == "True"


def test_any_order_of_tag_changes_converges_to_the_best_match(env: ModelDeploymentEnv) -> None:
    """Bursts of tag changes, in shuffled orders and faster than the poll interval: whatever
    the operator saw in between, it ends on the version the final tags select."""
    ns = env.namespace
    versions = [env.registry.log_version(env.model).version for _ in range(4)]
    for number, version in enumerate(versions):
        env.registry.tag_version(env.model, version, "semver", f"1.{number}.0")
    env.registry.tag_version(env.model, versions[0], "channel", "stable")
    md = model_deployment(
        "converge", ns, env.model, env.tracking_uri,
        selector={"selector": {"tags": {"channel": "stable"}, "order": "highestSemver"}},
    )  # fmt: skip
    env.cluster.apply(md)
    eventually(
        lambda: is_ready_on(env.cluster, ns, "converge", versions[0]), timeout=60, what="first"
    )
    shuffle = random.Random(20261201)
    stable = {versions[0]}
    for burst in range(3):
        wanted = set(shuffle.sample(versions, k=shuffle.randint(1, len(versions))))
        changes = [(v, v in wanted) for v in versions if (v in wanted) != (v in stable)]
        shuffle.shuffle(changes)
        for version, tagged in changes:
            if tagged:
                env.registry.tag_version(env.model, version, "channel", "stable")
            else:
                env.registry.delete_version_tag(env.model, version, "channel")
            time.sleep(shuffle.uniform(0, 2))
        stable = wanted
        best = max(stable, key=versions.index)  # semver grows with the version
        eventually(
            lambda best=best: is_ready_on(env.cluster, ns, "converge", best),
            timeout=2 * POLL + 5,
            what=f"burst {burst}: {len(changes)} changes end on version {best}",
        )


def test_pinned_version_ignores_registry_moves(env: ModelDeploymentEnv) -> None:
    env.serve_first_version("pinned", selector={"version": "1"})
    v2 = env.registry.log_version(env.model)
    env.registry.set_alias(env.model, "champion", v2.version)
    env.registry.transition_stage(env.model, v2.version, "Production")
    time.sleep(2 * POLL + 1)
    assert template_version(env.cluster, env.namespace, "pinned") == "1"
    assert is_ready_on(env.cluster, env.namespace, "pinned", "1")


def test_registry_outage_keeps_serving(env: ModelDeploymentEnv) -> None:
    env.serve_first_version("out")
    before = event_reasons(env.cluster, env.namespace, "out")
    with env.stack.outage():
        eventually(
            lambda: (
                condition(status(env.cluster, env.namespace, "out"), "RegistrySynced").get("reason")
                == "RegistryUnreachable"
            ),
            timeout=3 * POLL,
            what="RegistrySynced=False while MLflow is down",
        )
        assert is_ready_on(env.cluster, env.namespace, "out", "1")
        assert template_version(env.cluster, env.namespace, "out") == "1"
    restored = time.monotonic()
    eventually(
        lambda: (
            condition(status(env.cluster, env.namespace, "out"), "RegistrySynced").get("status")
            == "True"
        ),
        # The watcher backs off after failed sweeps (the interval doubled per failure), and
        # MLflow's restart at the end of the outage took over a minute on a loaded machine:
        # several failures, so the next sweep can be a minute away (20 s failed once).
        timeout=120,
        what="RegistrySynced=True after MLflow is back",
    )
    print(f"RegistrySynced back after {time.monotonic() - restored:.1f}s")
    assert event_reasons(env.cluster, env.namespace, "out") == before  # no spurious rollout
    assert template_version(env.cluster, env.namespace, "out") == "1"


def test_operator_killed_mid_rollout_converges(env: ModelDeploymentEnv) -> None:
    env.serve_first_version("crash")
    v2 = env.registry.log_version(env.model)
    env.registry.set_alias(env.model, "champion", v2.version)
    eventually(
        lambda: template_version(env.cluster, env.namespace, "crash") == "2",
        timeout=30,
        what="rollout began",
    )
    env.operator.kill()
    env.operator.start()
    eventually(
        lambda: is_ready_on(env.cluster, env.namespace, "crash", "2"), timeout=60, what="converged"
    )
    deployments = get_json(env.cluster, "-n", env.namespace, "deployments")["items"]
    assert [d["metadata"]["name"] for d in deployments] == ["crash"]
    st = status(env.cluster, env.namespace, "crash")
    assert st["previousVersion"] == "1"
    assert [h["version"] for h in st["history"]] == ["1", "2"]


def test_deleting_the_model_deployment_removes_its_children(env: ModelDeploymentEnv) -> None:
    env.serve_first_version("gone")
    env.cluster.kubectl("delete", "-n", env.namespace, "mdep", "gone", "--timeout=30s")

    def children() -> int:
        deps = get_json(env.cluster, "-n", env.namespace, "deployments")["items"]
        svcs = get_json(env.cluster, "-n", env.namespace, "services")["items"]
        pods = get_json(env.cluster, "-n", env.namespace, "pods")["items"]
        return len(deps) + len(svcs) + len(pods)

    eventually(lambda: children() == 0, timeout=60, what="children garbage-collected")


def test_an_idle_model_deployment_writes_nothing_and_a_field_taken_out_goes(
    crds_installed: KubeCluster,
    mlflow_registry: ModelRegistry,
    mlflow_stack: MlflowStack,
    model_name: str,
    tmp_path: Path,
) -> None:
    """Every reconcile re-applied the Deployment and the Service (two writes per object per
    poll interval); skipping unchanged applies must still take out a field the spec dropped.
    At rest it is not even reconciled (issue scale-ha): what changes it wakes it, so a
    Service deleted by hand comes back from the watch event alone."""
    cluster = crds_installed
    ns = create_namespace(cluster, prefix="idle")  # its own operator counts its own writes
    operator = OperatorProcess(kubeconfig=cluster.kubeconfig, workdir=tmp_path, namespaces=(ns,))
    try:
        operator.start()
        v1 = mlflow_registry.log_version(model_name)
        mlflow_registry.set_alias(model_name, "champion", v1.version)
        limits = {"cpu": "2", "memory": "1Gi"}
        cluster.apply(
            model_deployment(
                "idle", ns, model_name, mlflow_stack.tracking_uri,
                serving={"replicas": 1, "resources": {"limits": limits}},
            )
        )  # fmt: skip
        eventually(lambda: is_ready_on(cluster, ns, "idle", v1.version), timeout=60, what="v1")
        time.sleep(POLL)  # the reconciles woken by the rollout's last events
        writes = operator.kube_writes()
        reconciles = operator.reconciles("ModelDeployment")
        time.sleep(3 * POLL)
        idle_writes = operator.kube_writes() - writes
        idle_reconciles = operator.reconciles("ModelDeployment") - reconciles
        print(f"idle {3 * POLL:.0f} s: {idle_writes:.0f} writes, {idle_reconciles:.0f} reconciles")
        assert idle_reconciles == 0  # no timer at rest: the watch and the registry wake it
        assert idle_writes == 0, "an idle ModelDeployment wrote to the API server"

        uid = get_json(cluster, "-n", ns, "service", "idle")["metadata"]["uid"]
        cluster.kubectl("delete", "-n", ns, "service", "idle")
        eventually(
            lambda: get_json(cluster, "-n", ns, "service", "idle")["metadata"]["uid"] != uid,
            timeout=30,
            what="the deleted Service back",
        )

        cluster.kubectl(
            "patch", "-n", ns, "mdep", "idle", "--type=json",
            "-p", '[{"op": "remove", "path": "/spec/serving/resources/limits/memory"}]',
        )  # fmt: skip

        def container_limits() -> dict[str, str]:
            deployment = get_json(cluster, "-n", ns, "deployment", "idle")
            (container,) = deployment["spec"]["template"]["spec"]["containers"]
            found: dict[str, str] = container.get("resources", {}).get("limits", {})
            return found

        eventually(
            lambda: container_limits() == {"cpu": "2"},
            timeout=3 * POLL,
            what="the memory limit gone from the Deployment",
        )
    finally:
        operator.stop()
        cluster.kubectl("delete", "namespace", ns, "--wait=false", check=False)
