"""The ModelDeployment reconcile's glue: what it reads, in which order it writes, what it skips.

Against an in-memory API server (tests/unit/reconcilers/fakes.py). The decisions themselves
are tested in tests/unit/core/; here it is the order of acts that keeps them durable.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from lightkube import ApiError

from mlflow_operator.config import OperatorConfig
from mlflow_operator.core.modeldeployment.canary import Traffic
from mlflow_operator.core.modeldeployment.prefetch import NodePrefetch
from mlflow_operator.core.modeldeployment.preflight import ModelFiles, contents_from_lock
from mlflow_operator.core.modeldeployment.recheck import ROLLOUT_RECHECK_SECONDS
from mlflow_operator.core.naming import ANNOTATION_MIRROR_CONFIG, LABEL_MODEL_VERSION
from mlflow_operator.reconcilers.common import CONFLICT_RETRY_SECONDS, ReconcileResult
from mlflow_operator.reconcilers.modeldeployment import ModelDeploymentReconciler
from mlflow_operator.reconcilers.watched import Watched, watched_pod
from tests.unit.reconcilers.fakes import (
    NAMESPACE,
    FakeHub,
    FakeKube,
    api_error,
    credentials_secret,
    model_deployment,
    put_mlflow_server,
    settle,
    template_version,
)


class World:
    def __init__(
        self, write_back_tags: bool = False, config: dict[str, Any] | None = None, **spec: Any
    ) -> None:
        self.kube = FakeKube()
        self.hub = FakeHub()
        self.reconciler = ModelDeploymentReconciler(
            self.kube,  # type: ignore[arg-type]
            self.hub,  # type: ignore[arg-type]
            OperatorConfig(write_back_tags=write_back_tags, **(config or {})),
        )
        self.events: list[tuple[str, str, str]] = []
        self.kube.put(credentials_secret())
        self.kube.put(model_deployment(**spec))

    @property
    def body(self) -> dict[str, Any]:
        found = self.kube.stored("ModelDeployment", "fraud")
        assert found is not None
        return copy.deepcopy(found)

    @property
    def status(self) -> dict[str, Any]:
        result: dict[str, Any] = self.body.get("status", {})
        return result

    def condition(self, type_: str) -> dict[str, Any]:
        return next((c for c in self.status.get("conditions", []) if c["type"] == type_), {})

    async def reconcile(self, body: dict[str, Any] | None = None) -> ReconcileResult:
        def emit(type_: str, reason: str, message: str) -> None:
            self.events.append((type_, reason, message))

        return await self.reconciler.reconcile(body or self.body, emit, lambda: None)  # type: ignore[arg-type]

    def deployment(self) -> dict[str, Any]:
        found = self.kube.stored("Deployment", "fraud")
        assert found is not None
        return copy.deepcopy(found)


async def serve_v1(world: World) -> None:
    """The first version rolled out and available: what every move below starts from."""
    await world.reconcile()
    settle(world.kube, "fraud")
    await world.reconcile()
    assert world.status["servingVersion"] == "1"


async def serving_v1_failing_v2(**spec: Any) -> World:
    """v1 served; the alias moved to v2, whose pods never became available in time."""
    world = World(**spec)
    await serve_v1(world)
    world.hub.registry.champion = "2"
    await world.reconcile()
    assert template_version(world.kube, "fraud") == "2"
    settle(world.kube, "fraud", available=False, exceeded=True)
    return world


async def test_a_failed_status_write_does_not_lose_the_failure() -> None:
    """Defect 3: the rollback was applied before status was written; when that write failed,
    failedVersions was lost and version 2 came back at the next reconcile.

    Failed on the code before the fix: the rollback was applied although the failure could
    not be recorded.
    """
    world = await serving_v1_failing_v2()
    world.kube.fail["status"] = api_error(500, "InternalError", "etcdserver: request timed out")
    with pytest.raises(ApiError):
        await world.reconcile()
    assert template_version(world.kube, "fraud") == "2"  # nothing acted on an unrecorded decision
    await world.reconcile()
    assert template_version(world.kube, "fraud") == "1"
    settle(world.kube, "fraud")
    for _ in range(3):
        await world.reconcile()
        assert template_version(world.kube, "fraud") == "1"
    assert world.status["failedVersions"] == ["2"]
    metadata = world.deployment()["metadata"]
    assert metadata["annotations"]["mlflowops.dev/failed-versions"] == "2"
    assert metadata["labels"]["mlflowops.dev/last-good-version"] == "1"


async def test_status_is_written_before_the_deployment_changes() -> None:
    world = await serving_v1_failing_v2()
    world.kube.writes.clear()
    await world.reconcile()
    assert world.kube.writes[:2] == ["status", "apply:Deployment"]


async def test_a_deployment_deleted_during_a_reconcile_is_recreated_with_an_event() -> None:
    """The reconcile read the Deployment, then someone deleted it, then the apply created it
    anew. Found by the e2e (test_a_deleted_deployment_comes_back_on_the_last_good_version):
    the Deployment came back in silence, with no Recreating Event.
    """
    world = World()
    await world.reconcile()
    settle(world.kube, "fraud")
    await world.reconcile()
    before = world.deployment()["metadata"]["uid"]
    apply = world.kube.apply

    async def apply_after_a_deletion(manifest: dict[str, Any]) -> dict[str, Any]:
        if manifest["kind"] == "Deployment":
            world.kube.drop("Deployment", "fraud")
        return await apply(manifest)

    world.kube.apply = apply_after_a_deletion  # type: ignore[method-assign]
    world.events.clear()
    # a person scaled it by hand, so this reconcile applies (an idle one writes nothing)
    world.kube.objects[("Deployment", NAMESPACE, "fraud")]["spec"]["replicas"] = 5
    await world.reconcile()
    assert world.deployment()["metadata"]["uid"] != before
    assert template_version(world.kube, "fraud") == "1"
    assert [(reason, message) for _, reason, message in world.events] == [
        (
            "Recreating",
            "the serving Deployment was deleted during a reconcile; recreating it on version 1",
        )
    ]


async def test_a_stale_body_from_kopf_is_not_decided_from() -> None:
    """Defect 3: the reconcile decided from kopf's body, which may be older than the status the
    operator last wrote.

    Failed on the code before the fix: the stale body's status (no failure) put version 2 back.
    """
    world = await serving_v1_failing_v2()
    before_failure = world.body
    await world.reconcile()
    settle(world.kube, "fraud")
    # a Deployment written by an operator version without the ledger: status is the only record
    dep = world.kube.objects[("Deployment", "ml", "fraud")]
    dep["metadata"]["annotations"] = {}
    await world.reconcile(before_failure)
    assert template_version(world.kube, "fraud") == "1"


async def test_a_concurrent_change_refuses_the_status_write_and_nothing_acts() -> None:
    """The status write carries the resourceVersion it was decided from.

    Failed on the code before the fix: the rollback was applied over the concurrent change.
    """
    world = await serving_v1_failing_v2()
    kube = world.kube
    seen = world.body  # what the watch told
    kube._bump(kube.objects[("ModelDeployment", NAMESPACE, "fraud")])  # a person edits it now
    kube.writes.clear()
    world.events.clear()
    result = await world.reconcile(seen)
    assert kube.writes == []
    assert world.events == []  # nothing to report: the next reconcile decides again, at once
    assert result.recheck_after == CONFLICT_RETRY_SECONDS
    assert template_version(kube, "fraud") == "2"


async def test_a_vanished_secret_leaves_the_deployment_exactly_as_it_is() -> None:
    """Defect 4: while the credentials Secret was missing, the Deployment was re-applied
    without the credential env vars, restarting every pod unable to reach MLflow. The pods
    name the Secret and never hold its values, so the template is the same as before: the
    Deployment does not change (same generation, same resourceVersion).

    Failed on the code before the fix: the pod template lost MLFLOW_TRACKING_PASSWORD.
    """
    world = World()
    await world.reconcile()
    settle(world.kube, "fraud")
    await world.reconcile()
    before = world.deployment()
    world.kube.drop("Secret", "mlflow-creds")
    await world.reconcile()
    assert world.deployment() == before
    synced = world.condition("RegistrySynced")
    assert (synced["status"], synced["reason"]) == ("False", "CredentialsNotFound")
    assert "mlflow-creds" in synced["message"]
    assert world.condition("Ready")["status"] == "True"  # what served still serves
    assert world.hub.following == {}  # the registry is not read with credentials now gone
    world.kube.put(credentials_secret())
    await world.reconcile()
    assert world.deployment()["spec"] == before["spec"]
    assert world.condition("RegistrySynced")["status"] == "True"


async def test_an_api_refusal_reaches_ready_and_one_event() -> None:
    """Defect 7: a 403/422/409 on apply left Ready as it was (possibly True).

    Failed on the code before the fix: Ready stayed True, and the reconciler posted no Event.
    """
    world = World()
    await world.reconcile()
    settle(world.kube, "fraud")
    await world.reconcile()
    assert world.condition("Ready")["status"] == "True"
    world.hub.registry.champion = "2"
    refused = api_error(
        403,
        "Forbidden",
        'deployments.apps "fraud" is forbidden: User "system:serviceaccount:ops:mlflow-operator" '
        'cannot patch resource "deployments" in API group "apps" in the namespace "ml"',
    )
    for _ in range(3):  # the daemon retries; the report stays one
        world.kube.fail["apply:Deployment"] = refused
        with pytest.raises(ApiError):
            await world.reconcile()
    ready = world.condition("Ready")
    assert (ready["status"], ready["reason"]) == ("False", "KubernetesForbidden")
    assert ready["message"].startswith(
        "the Kubernetes API refused to apply Deployment ml/fraud (HTTP 403 Forbidden): "
    )
    warnings = [e for e in world.events if e[1] == "KubernetesForbidden"]
    assert len(warnings) == 1
    # another error is news
    world.kube.fail["apply:Deployment"] = api_error(422, "Invalid", "spec.replicas: Invalid")
    with pytest.raises(ApiError):
        await world.reconcile()
    assert world.condition("Ready")["reason"] == "KubernetesInvalid"
    assert [e[1] for e in world.events].count("KubernetesInvalid") == 1
    # permission back: the reconcile proceeds and Ready says what is true again
    await world.reconcile()
    assert world.condition("Ready")["reason"] == "RollingOut"
    assert template_version(world.kube, "fraud") == "2"


async def test_a_refused_status_write_still_posts_one_event() -> None:
    world = World()
    refused = api_error(403, "Forbidden", "cannot patch modeldeployments/status")
    for _ in range(2):
        world.kube.fail["status"] = refused
        with pytest.raises(ApiError):
            await world.reconcile()
    assert [e[1] for e in world.events] == ["KubernetesForbidden"]
    assert world.kube.stored("Deployment", "fraud") is None  # nothing acted on it


async def test_a_stored_tracking_uri_with_credentials_leaks_nowhere(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Defect 10: credentials in trackingUri userinfo reached status messages, logs, metric
    labels and pod env. The API refuses them now; an object stored before that rule is an
    invalid spec, reported without the URL, and nothing is built from it.

    Failed on the code before the fix: the password was in the pod template's env.
    """
    world = World(
        registry={"trackingUri": "https://admin:hunter2-pw@mlflow.example.com"},
    )
    await world.reconcile()
    children = {k: v for k, v in world.kube.objects.items() if k[0] != "ModelDeployment"}
    written = repr(world.status) + repr(children) + repr(world.events) + caplog.text
    assert "hunter2-pw" not in written
    assert world.kube.stored("Deployment", "fraud") is None
    degraded = world.condition("Degraded")
    assert (degraded["status"], degraded["reason"]) == ("True", "InvalidSpec")
    assert degraded["message"].startswith(
        "spec.registry.trackingUri: trackingUri must not contain credentials"
    )


async def test_a_vanished_mlflowserver_leaves_the_deployment_untouched() -> None:
    """Defect 4, the other half: without the MLflowServer the endpoint (its URL, its admin
    Secret) cannot be determined; no template is built and the live one stays as it is."""
    world = World(registry={"serverRef": {"name": "mlflow"}})
    put_mlflow_server(world.kube)
    await world.reconcile()
    settle(world.kube, "fraud")
    await world.reconcile()
    before = world.deployment()
    world.kube.drop("MLflowServer", "mlflow")
    world.kube.writes.clear()
    await world.reconcile()
    assert "apply:Deployment" not in world.kube.writes
    assert world.deployment() == before
    synced = world.condition("RegistrySynced")
    assert (synced["status"], synced["reason"]) == ("False", "ServerNotFound")
    assert world.condition("Ready")["status"] == "True"


async def test_a_refused_rollback_still_announces_the_failure_once() -> None:
    world = await serving_v1_failing_v2()
    world.kube.fail["apply:Deployment"] = api_error(403, "Forbidden", "cannot patch")
    with pytest.raises(ApiError):
        await world.reconcile()
    await world.reconcile()
    assert template_version(world.kube, "fraud") == "1"
    assert [e[1] for e in world.events].count("RolloutFailed") == 1


async def test_a_failed_best_match_is_not_retried_nor_replaced_by_the_second_best() -> None:
    """spec.model.selector keeps the rollback that sticks: the failed version stays failed
    while it is the best match, and the operator does not pick the next best by itself."""
    world = World(model={"name": "fraud", "selector": {"tags": {"stage": "prod"}}})
    world.hub.registry.tags = {"1": {"stage": "prod"}}
    await serve_v1(world)
    assert world.status["follows"] == "tags:stage=prod"

    world.hub.registry.tags = {"1": {"stage": "prod"}, "2": {"stage": "prod"}}
    await world.reconcile()
    assert template_version(world.kube, "fraud") == "2"
    settle(world.kube, "fraud", available=False, exceeded=True)
    await world.reconcile()
    assert world.status["failedVersions"] == ["2"]
    assert template_version(world.kube, "fraud") == "1"
    settle(world.kube, "fraud")
    for _ in range(2):
        await world.reconcile()
        assert template_version(world.kube, "fraud") == "1"
        assert world.status["targetVersion"] == "2"  # still the best match, still failed

    world.hub.registry.tags = {**world.hub.registry.tags, "3": {"stage": "prod"}}
    await world.reconcile()
    assert template_version(world.kube, "fraud") == "3"
    assert world.status["failedVersions"] == []


async def test_a_slow_mlflow_does_not_hold_up_the_reconcile_with_write_back_tags() -> None:
    """A write-back tag awaited in the reconcile behind an MLflow that answered in 25 s kept
    status frozen that long (the end-to-end RegistryStalled check timed out on it)."""
    world = World(write_back_tags=True)
    registry = world.hub.client
    registry.answering.clear()
    await world.reconcile()
    settle(world.kube, "fraud")
    await world.reconcile()  # returns with the tag still unwritten
    assert world.status["servingVersion"] == "1"
    assert registry.tags == []
    assert world.reconciler.tag_writer.pending == 1
    registry.answering.set()
    await world.reconciler.tag_writer.flush()
    assert [(v, value.split(" since ")[0]) for v, _, value in registry.tags] == [("1", "serving")]
    assert registry.tags[0][1] == "mlflow-operator.ml.fraud"


async def test_the_ledger_written_after_a_rollout_does_not_make_it_look_unfinished() -> None:
    """The API server bumps a Deployment's generation when its annotations change. The last
    good version, written once a rollout succeeded, was an annotation: the next reconcile saw
    an unobserved generation, and Ready went False (Argo CD: Progressing) after every
    successful rollout (seen in e2e); the deployment controller rewrote the ReplicaSet for it
    (bench_scale: generation 4 after one move). It is a label now, which bumps nothing."""
    world = World()
    await world.reconcile()
    settle(world.kube, "fraud")
    await world.reconcile()
    assert world.condition("Ready")["status"] == "True"
    dep = world.deployment()
    assert dep["metadata"]["labels"]["mlflowops.dev/last-good-version"] == "1"
    assert dep["metadata"]["generation"] == dep["status"]["observedGeneration"] == 1
    await world.reconcile()
    assert world.condition("Ready")["status"] == "True"
    assert world.condition("Progressing")["reason"] == "RolloutComplete"
    # a real change of the template is still waited for
    world.hub.registry.champion = "2"
    await world.reconcile()
    assert template_version(world.kube, "fraud") == "2"
    assert world.condition("Progressing")["status"] == "True"


async def test_a_namespace_being_deleted_gets_no_status_and_no_event() -> None:
    """Each Warning Event posted into a terminating namespace is refused, and kopf retried it
    for about 90 s in its one posting queue: every other object's Events waited (an e2e test
    missed a `Recreating` Event behind them)."""
    world = World()
    world.kube.fail["apply:Deployment"] = api_error(
        403,
        "Forbidden",
        'deployments.apps "fraud" is forbidden: unable to create new content in namespace ml '
        "because it is being terminated",
    )
    result = await world.reconcile()
    assert not any(type_ == "Warning" for type_, _, _ in world.events)
    assert world.condition("Ready").get("reason") != "KubernetesForbidden"
    assert result.recheck_after >= 60


async def test_an_idle_reconcile_writes_nothing() -> None:
    """Every reconcile re-applied the Deployment and the Service, changed or not: two writes
    per object per poll interval."""
    world = World()
    await world.reconcile()
    settle(world.kube, "fraud")
    await world.reconcile()
    world.kube.writes.clear()
    await world.reconcile()
    assert world.kube.writes == []


async def test_a_limit_taken_out_of_the_spec_is_taken_out_of_the_deployment() -> None:
    world = World(serving={"resources": {"limits": {"cpu": "2", "memory": "1Gi"}}})
    await world.reconcile()
    settle(world.kube, "fraud")
    await world.reconcile()
    body = world.kube.objects[("ModelDeployment", NAMESPACE, "fraud")]
    body["spec"]["serving"] = {"resources": {"limits": {"cpu": "2"}}}
    await world.reconcile()
    (container,) = world.deployment()["spec"]["template"]["spec"]["containers"]
    assert container["resources"] == {"limits": {"cpu": "2"}, "requests": {"memory": "256Mi"}}


async def test_a_budget_comes_with_a_second_replica_and_goes_with_it() -> None:
    """Node drains evict one serving pod at a time once there are two; an idle reconcile of a
    deployment with its budget still writes nothing."""
    world = World(serving={"replicas": 2})
    await world.reconcile()
    settle(world.kube, "fraud")
    await world.reconcile()
    pdb = world.kube.stored("PodDisruptionBudget", "fraud")
    assert pdb is not None
    assert (
        pdb["spec"]["selector"]["matchLabels"]
        == world.deployment()["spec"]["selector"]["matchLabels"]
    )
    world.kube.writes.clear()
    await world.reconcile()
    assert world.kube.writes == []
    body = world.kube.objects[("ModelDeployment", NAMESPACE, "fraud")]
    body["spec"]["serving"] = {"replicas": 1}
    await world.reconcile()
    assert world.kube.stored("PodDisruptionBudget", "fraud") is None
    assert "delete:PodDisruptionBudget" in world.kube.writes


async def test_status_carries_the_pod_selector_that_the_scale_subresource_reads() -> None:
    world = World()
    await world.reconcile()
    selector = world.status["selector"]
    labels = dict(pair.split("=") for pair in selector.split(","))
    assert labels == world.deployment()["spec"]["selector"]["matchLabels"]


async def test_where_the_platform_assigns_ids_the_serving_pods_set_none() -> None:
    world = World(config={"openshift": True})
    await world.reconcile()
    pod = world.deployment()["spec"]["template"]["spec"]
    assert not {"runAsUser", "runAsGroup", "fsGroup"} & set(pod["securityContext"])
    assert pod["securityContext"]["runAsNonRoot"] is True


async def test_with_network_policies_serving_pods_take_connections_on_their_port_only() -> None:
    world = World(config={"network_policies": True})
    await world.reconcile()
    settle(world.kube, "fraud")
    await world.reconcile()
    policy = world.kube.stored("NetworkPolicy", "fraud")
    assert policy is not None
    selector = policy["spec"]["podSelector"]["matchLabels"]
    # every pod of the ModelDeployment: the serving ones, and a canary's or shadow's beside
    assert selector == {"mlflowops.dev/modeldeployment": "fraud"}
    serving_pods = world.deployment()["spec"]["template"]["metadata"]["labels"]
    assert selector.items() <= serving_pods.items()
    assert policy["spec"]["ingress"] == [{"ports": [{"protocol": "TCP", "port": "http"}]}]
    world.kube.writes.clear()
    await world.reconcile()
    assert world.kube.writes == []  # at rest, still nothing written


async def test_gates_read_a_runs_metrics_once_per_version_and_tags_and_hold_it_without_a_pod() -> (
    None
):
    """spec.gates: a version that fails them never reaches the pod template; run metrics are
    read once per version and tag set (not per reconcile), again when its tags change."""
    world = World(
        write_back_tags=True,
        gates={
            "requireTags": {"validation_status": "approved"},
            "notWorseThanServing": [{"metric": "accuracy", "tolerance": 0.01}],
        },
    )
    world.hub.registry.tags = {"1": {"validation_status": "approved"}, "2": {}}
    world.hub.client.run_values = {"run-1": {"accuracy": 0.9}, "run-2": {"accuracy": 0.95}}
    await serve_v1(world)

    world.hub.registry.champion = "2"
    for _ in range(3):
        await world.reconcile()
    assert template_version(world.kube, "fraud") == "1"
    progressing = world.condition("Progressing")
    assert progressing["reason"] == "GateBlocked"
    assert progressing["message"].startswith("version 2 is blocked: tag validation_status is not")
    assert [e[1] for e in world.events].count("GateBlocked") == 1
    reads = [c for c in world.hub.client.calls if c.startswith("GET runs/get")]
    assert sorted(reads) == ["GET runs/get run-1", "GET runs/get run-2"]
    await world.reconciler.tag_writer.flush()
    tagged = next(value for version, _, value in world.hub.client.tags if version == "2")
    assert tagged.startswith("blocked by spec.gates at ")

    world.hub.registry.tags["2"] = {"validation_status": "approved"}
    await world.reconcile()
    assert template_version(world.kube, "fraud") == "2"
    assert world.status["gates"]["verdict"] == "Passed"
    reads = [c for c in world.hub.client.calls if c.startswith("GET runs/get")]
    assert reads.count("GET runs/get run-2") == 2  # its tags changed: read again
    assert reads.count("GET runs/get run-1") == 1  # the serving version's run: cached


class FakePodTraffic:
    """The serving pods' /metrics, by the version label of the pods asked about."""

    def __init__(self, by_version: dict[str, Traffic]) -> None:
        self.by_version = by_version

    async def traffic(self, pods: list[dict[str, Any]], port: int) -> Traffic:
        total = Traffic()
        for pod in pods:
            total += self.by_version.get(pod["metadata"]["labels"][LABEL_MODEL_VERSION], Traffic())
        return total


def serving_pod(name: str, version: str, track: dict[str, str] | None = None) -> dict[str, Any]:
    labels = {
        "mlflowops.dev/modeldeployment": "fraud",
        "app.kubernetes.io/component": "serving",
        LABEL_MODEL_VERSION: version,
        **(track or {}),
    }
    return {"metadata": {"name": name, "namespace": NAMESPACE, "labels": labels}, "status": {}}


class PodIndex(Mapping[tuple[str, str], list[dict[str, Any]]]):
    """kopf's pod index (handlers/modeldeployment.py) over the fake's pods, as the watch would
    keep them: by namespace and ModelDeployment, each as watched_pod keeps it."""

    def __init__(self, kube: Any) -> None:
        self.kube = kube

    def _grouped(self) -> dict[tuple[str, str], list[dict[str, Any]]]:
        grouped: dict[tuple[str, str], list[dict[str, Any]]] = {}
        for pod in self.kube.pods:
            meta = pod["metadata"]
            key = (meta["namespace"], meta["labels"]["mlflowops.dev/modeldeployment"])
            grouped.setdefault(key, []).append(watched_pod(pod))
        return grouped

    def __getitem__(self, key: tuple[str, str]) -> list[dict[str, Any]]:
        return self._grouped()[key]

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return iter(self._grouped())

    def __len__(self) -> int:
        return len(self._grouped())


@pytest.mark.parametrize("pods_watched", [False, True], ids=["pods-listed", "pods-watched"])
async def test_a_canary_gets_a_deployment_of_its_own_and_an_abort_removes_it(
    pods_watched: bool,
) -> None:
    """With pods watched (the operator's case) its pods are read from the pod index, never
    listed (bench_scale: a pod LIST per reconcile while a pod started was a quarter of a
    rollout's requests)."""
    world = World(
        serving={"runtime": "batched", "replicas": 2},
        rollout={
            "strategy": "Canary",
            "canary": {"steps": [{"weight": 10}], "analysis": {"minRequests": 10}},
        },
    )
    listed: list[str] = []
    list_objects = world.kube.list

    async def counting_list(api_version: str, kind: str, *args: Any) -> list[dict[str, Any]]:
        listed.append(kind)
        return await list_objects(api_version, kind, *args)

    world.kube.list = counting_list  # type: ignore[method-assign]
    if pods_watched:
        world.reconciler.watched = Watched({"Pod": PodIndex(world.kube)})
    await world.reconcile()
    settle(world.kube, "fraud")
    await world.reconcile()
    world.hub.registry.champion = "2"
    world.kube.writes.clear()
    await world.reconcile()
    assert template_version(world.kube, "fraud") == "1"
    canary = world.kube.stored("Deployment", "fraud-canary")
    assert canary is not None
    assert canary["spec"]["replicas"] == 1
    assert canary["spec"]["selector"]["matchLabels"]["mlflowops.dev/track"] == "canary"
    labels = canary["spec"]["template"]["metadata"]["labels"]
    assert (labels["mlflowops.dev/modeldeployment"], labels[LABEL_MODEL_VERSION]) == ("fraud", "2")
    assert world.kube.writes.index("status") < world.kube.writes.index("apply:Deployment")
    assert world.status["rollout"]["phase"] == "Canary"
    assert world.condition("Progressing")["reason"] == "Canary"

    world.kube.pods = [
        serving_pod("fraud-a", "1"),
        serving_pod("fraud-b", "1"),
        serving_pod("fraud-canary-a", "2", {"mlflowops.dev/track": "canary"}),
    ]
    world.reconciler.pod_metrics = FakePodTraffic(  # type: ignore[assignment]
        {"1": Traffic(200, 0), "2": Traffic(40, 10)}
    )
    await world.reconcile()
    assert world.kube.stored("Deployment", "fraud-canary") is None
    assert template_version(world.kube, "fraud") == "1"
    assert world.status["failedVersions"] == ["2"]
    assert world.status["rollout"]["phase"] == "Aborted"
    assert world.condition("Degraded")["reason"] == "CanaryAborted"
    assert "error rate 25.0% > stable 0.0% + 2%" in world.condition("Degraded")["message"]
    assert [e[1] for e in world.events].count("CanaryAborted") == 1
    assert ("Pod" in listed) is not pods_watched


async def test_with_pods_watched_a_crash_looping_pod_of_the_new_version_is_named() -> None:
    world = World()
    world.reconciler.watched = Watched({"Pod": PodIndex(world.kube)})
    await serve_v1(world)
    world.hub.registry.champion = "2"
    await world.reconcile()
    settle(world.kube, "fraud", available=False)
    crashing = serving_pod("fraud-new", "2")
    crashing["status"] = {
        "containerStatuses": [
            {
                "name": "serve",
                "ready": False,
                "restartCount": 3,
                "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                "lastState": {"terminated": {"exitCode": 1, "message": "ModuleNotFoundError"}},
            }
        ]
    }
    world.kube.pods = [serving_pod("fraud-old", "1"), crashing]
    await world.reconcile()
    message = world.condition("Progressing")["message"]
    assert "pod fraud-new: CrashLoopBackOff: exit code 1: ModuleNotFoundError" in message


SHADOW_TRIAL = {
    "strategy": "Shadow",
    "shadow": {
        "percent": 50,
        "duration": "0s",
        "analysis": {"minRequests": 10, "maxDisagreementRate": 0.1},
    },
}


def shadow_pod(name: str, version: str) -> dict[str, Any]:
    pod = serving_pod(name, version, {"mlflowops.dev/track": "shadow"})
    pod["metadata"]["labels"]["app.kubernetes.io/component"] = "shadow"
    return pod


async def shadowing_v2(**spec: Any) -> World:
    """v1 served on two pods; the alias moved to v2, which runs as a shadow."""
    world = World(serving={"runtime": "batched", "replicas": 2}, rollout=SHADOW_TRIAL, **spec)
    await world.reconcile()
    settle(world.kube, "fraud")
    await world.reconcile()
    world.hub.registry.champion = "2"
    world.kube.writes.clear()
    await world.reconcile()
    world.kube.pods = [
        serving_pod("fraud-a", "1"),
        serving_pod("fraud-b", "1"),
        shadow_pod("fraud-shadow-a", "2"),
    ]
    return world


def shadow_objects(world: World) -> list[str]:
    return [
        kind
        for kind in ("Deployment", "Service", "ConfigMap")
        if world.kube.stored(kind, "fraud-shadow") is not None
    ]


async def test_a_shadow_gets_a_deployment_service_and_mirror_config_and_an_abort_removes_them() -> (
    None
):
    world = await shadowing_v2()
    assert template_version(world.kube, "fraud") == "1"
    assert world.kube.stored("Deployment", "fraud-canary") is None
    shadow = world.kube.stored("Deployment", "fraud-shadow")
    assert shadow is not None
    assert shadow["spec"]["replicas"] == 1  # half of the two serving pods' requests
    labels = shadow["spec"]["template"]["metadata"]["labels"]
    assert labels["app.kubernetes.io/component"] == "shadow"
    assert labels[LABEL_MODEL_VERSION] == "2"
    service = world.kube.stored("Service", "fraud-shadow")
    assert service is not None
    assert service["spec"]["selector"]["app.kubernetes.io/component"] == "shadow"
    serving_service = world.kube.stored("Service", "fraud")
    assert serving_service is not None
    assert serving_service["spec"]["selector"]["app.kubernetes.io/component"] == "serving"
    mirror = world.kube.stored("ConfigMap", "fraud-shadow")
    assert mirror is not None
    assert json.loads(mirror["data"]["mirror.json"]) == {
        "url": f"http://fraud-shadow.{NAMESPACE}.svc:8080/invocations",
        "percent": 50,
        "version": "2",
    }
    # the serving pods mount it (optional: it comes and goes with the shadow)
    volumes = world.deployment()["spec"]["template"]["spec"]["volumes"]
    assert {"name": "mirror", "configMap": {"name": "fraud-shadow", "optional": True}} in volumes
    assert world.kube.writes.index("status") < world.kube.writes.index("apply:Deployment")
    assert world.status["rollout"]["phase"] == "Shadow"
    assert world.status["rollout"]["weight"] == 0
    assert world.condition("Progressing")["message"].startswith("shadow of version 2: 50%")

    # its answers to the copies fail: aborted, and all three go
    world.reconciler.pod_metrics = FakePodTraffic(  # type: ignore[assignment]
        {"1": Traffic(200, 0, mirrored={("2", "agreed"): 40}), "2": Traffic(40, 10)}
    )
    await world.reconcile()
    assert shadow_objects(world) == []
    assert world.kube.stored("Deployment", "fraud-canary") is None
    assert template_version(world.kube, "fraud") == "1"
    assert world.status["failedVersions"] == ["2"]
    assert world.status["rollout"]["phase"] == "Aborted"
    assert world.condition("Degraded")["reason"] == "CanaryAborted"
    assert "shadow aborted: error rate 25.0%" in world.condition("Degraded")["message"]
    assert [e[1] for e in world.events].count("CanaryAborted") == 1
    await world.reconciler.tag_writer.flush()
    assert world.hub.client.aliases == []


async def test_the_serving_pods_are_annotated_whenever_their_mirror_config_changes() -> None:
    """The annotation makes the kubelet refresh the ConfigMap's files at once (tested for real
    in the shadow e2e); here: which pods get it, and when."""
    world = World(serving={"runtime": "batched", "replicas": 2}, rollout=SHADOW_TRIAL)
    await world.reconcile()
    settle(world.kube, "fraud")
    await world.reconcile()
    mirroring = {"spec": {"volumes": world.deployment()["spec"]["template"]["spec"]["volumes"]}}
    world.kube.pods = [
        {**serving_pod("fraud-a", "1"), **mirroring},
        {**serving_pod("fraud-b", "1"), **mirroring},
        serving_pod("fraud-old", "1"),  # of a template before the strategy was Shadow
        shadow_pod("fraud-shadow-a", "2"),  # the shadow's own: no mirror
    ]
    world.hub.registry.champion = "2"
    world.kube.writes.clear()
    await world.reconcile()

    def annotations() -> dict[str, str | None]:
        return {
            p["metadata"]["name"]: (p["metadata"].get("annotations") or {}).get(
                ANNOTATION_MIRROR_CONFIG
            )
            for p in world.kube.pods
        }

    started = annotations()
    assert started["fraud-a"] == started["fraud-b"] != "none"
    assert started["fraud-a"] is not None
    assert started["fraud-old"] is None
    assert started["fraud-shadow-a"] is None
    assert world.kube.writes.count("annotate:Pod") == 2

    world.reconciler.pod_metrics = FakePodTraffic(  # type: ignore[assignment]
        {"1": Traffic(200, 0, mirrored={("2", "agreed"): 40}), "2": Traffic(40, 10)}
    )
    await world.reconcile()  # aborted: the ConfigMap goes, the pods are told
    assert world.kube.stored("ConfigMap", "fraud-shadow") is None
    assert annotations() == {
        "fraud-a": "none",
        "fraud-b": "none",
        "fraud-old": None,
        "fraud-shadow-a": None,
    }
    world.kube.writes.clear()
    await world.reconcile()  # nothing changed: no write
    assert "annotate:Pod" not in world.kube.writes


async def test_a_refused_annotation_leaves_the_shadow_to_the_kubelets_own_sync() -> None:
    world = World(serving={"runtime": "batched", "replicas": 2}, rollout=SHADOW_TRIAL)
    await world.reconcile()
    settle(world.kube, "fraud")
    await world.reconcile()
    mirroring = {"spec": {"volumes": world.deployment()["spec"]["template"]["spec"]["volumes"]}}
    world.kube.pods = [{**serving_pod("fraud-a", "1"), **mirroring}]
    world.kube.fail["annotate:Pod"] = api_error(403, "Forbidden", "pods is forbidden")
    world.hub.registry.champion = "2"
    await world.reconcile()
    assert world.kube.stored("ConfigMap", "fraud-shadow") is not None
    assert world.status["rollout"]["phase"] == "Shadow"
    assert "Degraded" not in {c["type"] for c in world.status["conditions"]} or (
        world.condition("Degraded")["status"] == "False"
    )


async def test_a_shadow_that_disagrees_too_often_is_aborted() -> None:
    world = await shadowing_v2(promote={"setAlias": "production"})
    # each of the two serving pods compared 20 copies, 5 of which differed
    world.reconciler.pod_metrics = FakePodTraffic(  # type: ignore[assignment]
        {"1": Traffic(200, 0, mirrored={("2", "agreed"): 15, ("2", "disagreed"): 5}),
         "2": Traffic(40, 0)}
    )  # fmt: skip
    await world.reconcile()
    assert shadow_objects(world) == []
    assert world.status["rollout"]["phase"] == "Aborted"
    assert world.status["rollout"]["disagreementRate"] == 0.25
    assert (
        "predictions differ on 25.0% > 10% (10 of 40 compared)"
        in (world.condition("Degraded")["message"])
    )
    await world.reconciler.tag_writer.flush()
    assert world.hub.client.aliases == []


async def promote_shadow(world: World) -> None:
    """The shadow answers well: promoted, the serving pods roll to v2, the promotion ends."""
    settle(world.kube, "fraud-shadow")
    world.reconciler.pod_metrics = FakePodTraffic(  # type: ignore[assignment]
        {"1": Traffic(200, 0, mirrored={("2", "agreed"): 40}), "2": Traffic(40, 0)}
    )
    await world.reconcile()
    assert world.status["rollout"]["phase"] == "Promoting"
    assert world.status["rollout"]["disagreementRate"] == 0.0
    assert template_version(world.kube, "fraud") == "2"
    # promoting it is a Replace: the shadow's objects go at once
    assert shadow_objects(world) == []
    settle(world.kube, "fraud")
    await world.reconcile()
    assert world.status["rollout"]["phase"] == "Promoted"
    assert world.status["servingVersion"] == "2"
    await world.reconcile()
    await world.reconciler.tag_writer.flush()


async def test_a_promoted_shadow_moves_the_alias_of_set_alias_once() -> None:
    world = await shadowing_v2(promote={"setAlias": "production"})
    await promote_shadow(world)
    assert shadow_objects(world) == []
    assert world.hub.client.aliases == [("production", "2")]
    assert [e[1] for e in world.events].count("AliasMoved") == 1
    moved = next(e for e in world.events if e[1] == "AliasMoved")
    assert moved[2] == "moving MLflow alias 'production' to version 2 (promote.setAlias)"
    # written-back tags are off here: the alias moves all the same, and nothing else is written
    assert world.hub.client.tags == []


async def test_a_promoted_shadow_without_set_alias_moves_no_alias() -> None:
    world = await shadowing_v2()
    await promote_shadow(world)
    assert world.hub.client.aliases == []
    assert "AliasMoved" not in [e[1] for e in world.events]


async def test_with_write_back_tags_the_alias_moves_in_order_with_the_tags() -> None:
    world = await shadowing_v2(write_back_tags=True, promote={"setAlias": "production"})
    await promote_shadow(world)
    assert world.hub.client.aliases == [("production", "2")]
    assert any(
        v == "2" and value.startswith("serving since") for v, _, value in world.hub.client.tags
    )


async def test_a_promoted_shadow_never_gets_a_canary_deployment() -> None:
    world = await shadowing_v2()
    settle(world.kube, "fraud-shadow")
    world.reconciler.pod_metrics = FakePodTraffic(  # type: ignore[assignment]
        {"1": Traffic(200, 0, mirrored={("2", "agreed"): 40}), "2": Traffic(40, 0)}
    )
    await world.reconcile()
    assert world.status["rollout"]["phase"] == "Promoting"
    assert world.kube.stored("Deployment", "fraud-canary") is None


# -- canary.httpRouteRef -----------------------------------------------------------------------

ROUTED_TRIAL = {
    "strategy": "Canary",
    "canary": {
        "steps": [{"weight": 10, "pause": "0s"}, {"weight": 50, "pause": "0s"}],
        "analysis": {"minRequests": 10, "interval": "0s"},  # judged at every reconcile
        "httpRouteRef": {"name": "fraud-public"},
    },
}
PUBLIC_MATCH = [{"path": {"type": "PathPrefix", "value": "/invocations"}}]


def http_route(*backends: dict[str, Any]) -> dict[str, Any]:
    """The user's route: one rule to Service fraud (and whatever else is given)."""
    return {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": "fraud-public", "namespace": NAMESPACE},
        "spec": {
            "parentRefs": [{"name": "public", "namespace": "gateways"}],
            "rules": [
                {"matches": PUBLIC_MATCH, "backendRefs": [{"name": "fraud", "port": 80}, *backends]}
            ],
        },
    }


def route_backends(world: World) -> dict[str, int]:
    route = world.kube.stored("HTTPRoute", "fraud-public")
    assert route is not None
    (rule,) = route["spec"]["rules"]
    assert rule["matches"] == PUBLIC_MATCH
    return {ref["name"]: ref.get("weight", 1) for ref in rule["backendRefs"]}


async def routed_v1(route: bool = True) -> World:
    """v1 served on three pods, with canary.httpRouteRef (and its route, when `route`)."""
    world = World(serving={"runtime": "batched", "replicas": 3}, rollout=ROUTED_TRIAL)
    if route:
        world.kube.put(http_route())
    await serve_v1(world)
    # the canary's Service exists before any canary: the route can send to it from the start
    assert world.kube.stored("Service", "fraud-canary") is not None
    assert world.kube.stored("Service", "fraud-stable") is None  # <name> is the stable one
    return world


def pod_of(world: World, deployment: str, name: str) -> dict[str, Any]:
    """A pod as the Deployment's template labels it."""
    dep = world.kube.stored("Deployment", deployment)
    assert dep is not None, deployment
    labels = copy.deepcopy(dep["spec"]["template"]["metadata"]["labels"])
    return {"metadata": {"name": name, "namespace": NAMESPACE, "labels": labels}, "status": {}}


def selects(service: dict[str, Any] | None, pod: dict[str, Any]) -> bool:
    assert service is not None
    labels = pod["metadata"]["labels"]
    return all(labels.get(key) == value for key, value in service["spec"]["selector"].items())


async def routed_canary_of_v2(route: bool = True) -> World:
    world = await routed_v1(route)
    world.hub.registry.champion = "2"
    world.kube.writes.clear()
    await world.reconcile()
    assert world.kube.stored("Deployment", "fraud-canary") is not None
    settle(world.kube, "fraud-canary")  # its pod is ready: the route may send it its share
    await world.reconcile()  # no answers yet: the step waits
    # the canary's pods as its Deployment makes them: outside Service fraud, judged all the same
    world.kube.pods = [
        *(pod_of(world, "fraud", f"fraud-{i}") for i in "abc"),
        pod_of(world, "fraud-canary", "fraud-canary-a"),
    ]
    return world


async def test_a_routed_canary_gets_a_canary_service_and_the_routes_weight_of_its_step() -> None:
    world = await routed_canary_of_v2()
    assert world.status["rollout"]["phase"] == "Canary"
    assert world.status["rollout"]["weight"] == 10
    canary = world.kube.stored("Deployment", "fraud-canary")
    assert canary is not None
    assert canary["spec"]["replicas"] == 1  # ceil(3 * 10%)
    service = world.kube.stored("Service", "fraud-canary")
    assert service is not None
    assert service["spec"]["selector"] == {
        "mlflowops.dev/modeldeployment": "fraud",
        "mlflowops.dev/track": "canary",
    }
    assert service["spec"]["ports"][0]["port"] == 80
    assert world.kube.stored("Service", "fraud-stable") is None
    # Service fraud sends to the stable pods alone, fraud-canary to the canary's alone
    serving = world.kube.stored("Service", "fraud")
    stable_pod, canary_pod = world.kube.pods[0], world.kube.pods[-1]
    assert (selects(serving, stable_pod), selects(serving, canary_pod)) == (True, False)
    assert (selects(service, stable_pod), selects(service, canary_pod)) == (False, True)
    assert "mlflowops.dev/track" not in stable_pod["metadata"]["labels"]
    assert canary_pod["metadata"]["labels"]["app.kubernetes.io/component"] == "canary"
    assert route_backends(world) == {"fraud": 90, "fraud-canary": 10}
    route = world.kube.stored("HTTPRoute", "fraud-public")
    assert route is not None
    assert "apply:HTTPRoute" in world.kube.writes
    # the route is weighted after the decision was recorded
    writes = world.kube.writes
    assert writes.index("status") < writes.index("apply:HTTPRoute")
    started = [e[2] for e in world.events if e[1] == "RolloutStarted"]
    assert started[-1] == (
        "canary of version 2: 10% (1 pod(s), by the HTTPRoute's weights), step 1/2 (was 1)"
    )
    assert "weights not set" not in world.condition("Progressing")["message"]
    assert "HTTPRouteUnusable" not in [e[1] for e in world.events]

    # the next step: 50% exactly, on ceil(3 * 50%) = 2 pods
    settle(world.kube, "fraud-canary")
    world.reconciler.pod_metrics = FakePodTraffic(  # type: ignore[assignment]
        {"1": Traffic(200, 0), "2": Traffic(40, 0)}
    )
    await world.reconcile()
    assert (world.status["rollout"]["step"], world.status["rollout"]["weight"]) == (1, 50)
    canary = world.kube.stored("Deployment", "fraud-canary")
    assert canary is not None
    assert canary["spec"]["replicas"] == 2
    world.reconciler.pod_metrics = FakePodTraffic({})  # type: ignore[assignment]
    settle(world.kube, "fraud-canary")  # both its pods ready
    await world.reconcile()
    assert (world.status["rollout"]["phase"], world.status["rollout"]["step"]) == ("Canary", 1)
    assert route_backends(world) == {"fraud": 50, "fraud-canary": 50}


async def test_an_idle_reconcile_writes_nothing_to_a_route_already_weighted() -> None:
    world = await routed_canary_of_v2()
    assert route_backends(world) == {"fraud": 90, "fraud-canary": 10}
    settle(world.kube, "fraud-canary")
    before = world.kube.stored("HTTPRoute", "fraud-public")
    for _ in range(3):
        world.kube.writes.clear()
        await world.reconcile()  # no pod_metrics data yet: the step waits
        assert "apply:HTTPRoute" not in world.kube.writes
        assert world.status["rollout"]["step"] == 0
    assert world.kube.stored("HTTPRoute", "fraud-public") == before
    # at rest before any canary too: the route goes to the stable pods and stays untouched
    rest = await routed_v1()
    assert route_backends(rest) == {"fraud": 100}
    rest.kube.writes.clear()
    await rest.reconcile()
    assert rest.kube.writes == []


async def test_an_aborted_routed_canary_sends_everything_back_to_the_stable_pods() -> None:
    world = await routed_canary_of_v2()
    other = {"name": "legacy", "port": 80, "weight": 5}
    world.kube.objects[("HTTPRoute", NAMESPACE, "fraud-public")]["spec"]["rules"][0][
        "backendRefs"
    ].append(other)  # the user added a backend of theirs meanwhile
    world.reconciler.pod_metrics = FakePodTraffic(  # type: ignore[assignment]
        {"1": Traffic(200, 0), "2": Traffic(40, 10)}
    )
    world.kube.writes.clear()
    await world.reconcile()
    assert world.status["rollout"]["phase"] == "Aborted"
    assert world.kube.stored("Deployment", "fraud-canary") is None
    assert route_backends(world) == {"legacy": 5, "fraud": 100}
    assert world.status["rollout"]["weight"] == 0
    # and it stays so
    world.kube.writes.clear()
    await world.reconcile()
    assert "apply:HTTPRoute" not in world.kube.writes
    assert route_backends(world) == {"legacy": 5, "fraud": 100}


async def test_an_abort_moves_the_routes_weight_off_the_canary_before_its_pods_go() -> None:
    """Else the Gateway sends the step's share to a Service whose pods are going, until it
    sees the new weights."""
    world = await routed_canary_of_v2()
    assert route_backends(world) == {"fraud": 90, "fraud-canary": 10}
    world.reconciler.pod_metrics = FakePodTraffic(  # type: ignore[assignment]
        {"1": Traffic(200, 0), "2": Traffic(40, 10)}
    )
    world.kube.writes.clear()
    await world.reconcile()
    assert world.status["rollout"]["phase"] == "Aborted"
    writes = world.kube.writes
    assert writes.index("apply:HTTPRoute") < writes.index("delete:Deployment")


async def test_a_missing_route_is_one_warning_and_the_canary_goes_on_by_pod_count() -> None:
    world = await routed_canary_of_v2(route=False)
    assert world.status["rollout"]["phase"] == "Canary"
    assert world.kube.stored("Deployment", "fraud-canary") is not None
    for _ in range(3):
        await world.reconcile()
    warnings = [e for e in world.events if e[1] == "HTTPRouteUnusable"]
    assert len(warnings) == 1
    (kind, _, message) = warnings[0]
    assert kind == "Warning"
    assert message.startswith("spec.rollout.canary.httpRouteRef: ")
    assert "'fraud-public' not found" in message
    progressing = world.condition("Progressing")
    assert (progressing["status"], progressing["reason"]) == ("True", "Canary")
    assert f"weights not set: {message}" in progressing["message"]
    assert world.kube.stored("HTTPRoute", "fraud-public") is None  # nothing created in its place

    # the route appears: weighted at the next reconcile, and the message loses the problem
    world.kube.put(http_route())
    await world.reconcile()  # weights the route; the message was decided before it
    await world.reconcile()
    assert route_backends(world) == {"fraud": 90, "fraud-canary": 10}
    assert "weights not set" not in world.condition("Progressing")["message"]
    assert len([e for e in world.events if e[1] == "HTTPRouteUnusable"]) == 1


async def test_a_route_that_never_sends_to_the_model_deployment_is_told_once_and_left_alone() -> (
    None
):
    world = await routed_v1(route=False)
    foreign = http_route()
    foreign["spec"]["rules"][0]["backendRefs"] = [{"name": "other", "port": 80}]
    world.kube.put(foreign)
    world.hub.registry.champion = "2"
    for _ in range(3):
        await world.reconcile()
    unusable = [e[2] for e in world.events if e[1] == "HTTPRouteUnusable"]
    # one for the missing route before, one for the route that has no rule of ours now
    assert unusable[-1] == (
        "spec.rollout.canary.httpRouteRef: no rule of HTTPRoute 'fraud-public' sends to Service "
        "'fraud' (or its -canary Service)"
    )
    assert unusable.count(unusable[-1]) == 1
    route = world.kube.stored("HTTPRoute", "fraud-public")
    assert route is not None
    assert route["spec"]["rules"] == foreign["spec"]["rules"]


async def test_removing_http_route_ref_leaves_the_route_on_the_service_of_the_serving_pods() -> (
    None
):
    """The operator leaves the route as it was (100 on fraud); Service fraud selects the serving
    pods with or without httpRouteRef, so the route keeps its endpoints."""
    world = await routed_v1()
    assert route_backends(world) == {"fraud": 100}
    body = world.kube.objects[("ModelDeployment", NAMESPACE, "fraud")]
    del body["spec"]["rollout"]["canary"]["httpRouteRef"]
    world.kube.writes.clear()
    await world.reconcile()
    settle(world.kube, "fraud")
    await world.reconcile()
    assert "apply:HTTPRoute" not in world.kube.writes
    assert route_backends(world) == {"fraud": 100}
    pod = pod_of(world, "fraud", "fraud-a")
    for name, weight in route_backends(world).items():
        if weight:
            assert selects(world.kube.stored("Service", name), pod), name


# -- judged from Prometheus (prometheus_url) ---------------------------------------------------


@dataclass
class FakePrometheus:
    """PrometheusTraffic's answers by version (None: no data), and the questions asked."""

    by_version: dict[str, Traffic | None]
    asked: list[dict[str, Any]] = field(default_factory=list)

    async def traffic(
        self,
        *,
        namespace: str,
        model_name: str,
        version: str,
        window_seconds: int,
        mirrored_to: str | None = None,
    ) -> Traffic | None:
        self.asked.append({
            "namespace": namespace, "model_name": model_name, "version": version,
            "window_seconds": window_seconds, "mirrored_to": mirrored_to,
        })  # fmt: skip
        return self.by_version.get(version)


class NoPodMetrics:
    """The pods' /metrics, which must not be read while Prometheus is the source."""

    async def traffic(self, pods: list[dict[str, Any]], port: int) -> Traffic:
        raise AssertionError("the pods' /metrics were read although Prometheus is configured")


async def canary_of_v2_judged_by(prometheus: FakePrometheus) -> World:
    world = World(
        serving={"runtime": "batched", "replicas": 2},
        rollout={
            "strategy": "Canary",
            "canary": {
                "steps": [{"weight": 10, "pause": "0s"}],
                "analysis": {"minRequests": 10, "interval": "0s"},
            },
        },
    )
    world.reconciler.prometheus = prometheus  # type: ignore[assignment]
    world.reconciler.pod_metrics = NoPodMetrics()  # type: ignore[assignment]
    await world.reconcile()
    settle(world.kube, "fraud")
    await world.reconcile()
    world.hub.registry.champion = "2"
    await world.reconcile()
    assert world.status["rollout"]["phase"] == "Canary"
    world.kube.pods = [
        serving_pod("fraud-a", "1"),
        serving_pod("fraud-b", "1"),
        serving_pod("fraud-canary-a", "2", {"mlflowops.dev/track": "canary"}),
    ]
    return world


async def test_with_prometheus_a_canary_is_judged_from_its_answers_not_the_pods() -> None:
    prometheus = FakePrometheus({"1": Traffic(200, 0), "2": Traffic(40, 10)})
    world = await canary_of_v2_judged_by(prometheus)
    prometheus.asked.clear()
    await world.reconcile()
    assert world.status["rollout"]["phase"] == "Aborted"
    assert world.status["failedVersions"] == ["2"]
    assert "error rate 25.0% > stable 0.0% + 2%" in world.condition("Degraded")["message"]
    assert world.kube.stored("Deployment", "fraud-canary") is None
    # the candidate and the stable version, in the ModelDeployment's namespace, by model name
    assert prometheus.asked == [
        {"namespace": NAMESPACE, "model_name": "fraud", "version": version,
         "window_seconds": 60, "mirrored_to": None}
        for version in ("2", "1")
    ]  # fmt: skip


async def test_with_prometheus_a_passing_canary_is_promoted() -> None:
    prometheus = FakePrometheus({"1": Traffic(200, 0), "2": Traffic(40, 0)})
    world = await canary_of_v2_judged_by(prometheus)
    settle(world.kube, "fraud-canary")  # its pod is ready
    await world.reconcile()
    assert world.status["rollout"]["phase"] == "Promoting"
    assert world.status["rollout"]["analysis"].startswith("Passed: canary: 40 requests")


async def test_no_data_in_prometheus_is_a_waiting_judgement() -> None:
    prometheus = FakePrometheus({"1": Traffic(200, 0), "2": None})
    world = await canary_of_v2_judged_by(prometheus)
    for _ in range(2):
        await world.reconcile()
    rollout = world.status["rollout"]
    assert rollout["phase"] == "Canary"
    assert rollout["analysis"] == "Waiting: no data in Prometheus for versions 2 and 1 yet"
    assert world.kube.stored("Deployment", "fraud-canary") is not None
    assert "CanaryAborted" not in [e[1] for e in world.events]
    # no data of the stable version is no judgement either
    prometheus.by_version = {"1": None, "2": Traffic(40, 10)}
    await world.reconcile()
    assert world.status["rollout"]["phase"] == "Canary"
    assert world.status["rollout"]["analysis"].startswith("Waiting: no data in Prometheus")


@pytest.mark.parametrize(
    ("age", "window"),
    [(0, (60, 60)), (30, (60, 60)), (300, (300, 310)), (-120, (60, 60))],
    ids=["new", "younger-than-a-minute", "five-minutes", "created-in-the-future"],
)
async def test_the_prometheus_window_is_the_candidates_life_and_at_least_a_minute(
    age: int, window: tuple[int, int]
) -> None:
    prometheus = FakePrometheus({"1": None, "2": None})
    world = await canary_of_v2_judged_by(prometheus)
    created = datetime.now(UTC) - timedelta(seconds=age)
    canary = world.kube.objects[("Deployment", NAMESPACE, "fraud-canary")]
    canary["metadata"]["creationTimestamp"] = created.strftime("%Y-%m-%dT%H:%M:%SZ")
    prometheus.asked.clear()
    await world.reconcile()
    asked = {a["window_seconds"] for a in prometheus.asked}
    assert len(asked) == 1, prometheus.asked  # both versions over the same window
    (seconds,) = asked
    assert window[0] <= seconds <= window[1]


async def test_with_prometheus_a_shadow_asks_for_the_copies_the_stable_pods_sent_it() -> None:
    prometheus = FakePrometheus({
        "1": Traffic(200, 0, mirrored={("2", "agreed"): 40}), "2": Traffic(40, 0),
    })  # fmt: skip
    world = World(serving={"runtime": "batched", "replicas": 2}, rollout=SHADOW_TRIAL)
    world.reconciler.prometheus = prometheus  # type: ignore[assignment]
    world.reconciler.pod_metrics = NoPodMetrics()  # type: ignore[assignment]
    await world.reconcile()
    settle(world.kube, "fraud")
    await world.reconcile()
    world.hub.registry.champion = "2"
    await world.reconcile()
    assert world.status["rollout"]["phase"] == "Shadow"
    world.kube.pods = [
        serving_pod("fraud-a", "1"),
        serving_pod("fraud-b", "1"),
        shadow_pod("fraud-shadow-a", "2"),
    ]
    settle(world.kube, "fraud-shadow")
    prometheus.asked.clear()
    await world.reconcile()
    assert [(a["version"], a["mirrored_to"]) for a in prometheus.asked] == [
        ("2", None),  # the shadow's own answers to the copies
        ("1", "2"),  # the serving pods' answers, and the copies they sent version 2
    ]
    assert all(a["window_seconds"] >= 60 for a in prometheus.asked)
    assert world.status["rollout"]["phase"] == "Promoting"
    assert world.status["rollout"]["disagreementRate"] == 0.0

    # copies that disagree, as Prometheus counts them, abort the next shadow
    world = await shadowing_v2()
    world.reconciler.prometheus = FakePrometheus({  # type: ignore[assignment]
        "1": Traffic(200, 0, mirrored={("2", "agreed"): 30, ("2", "disagreed"): 10}),
        "2": Traffic(40, 0),
    })  # fmt: skip
    world.reconciler.pod_metrics = NoPodMetrics()  # type: ignore[assignment]
    await world.reconcile()
    assert world.status["rollout"]["phase"] == "Aborted"
    assert world.status["rollout"]["disagreementRate"] == 0.25


GOOD_MLMODEL = """flavors:
  python_function:
    loader_module: mlflow.sklearn
    model_path: model.skops
    python_version: 3.11.7
  sklearn:
    sklearn_version: 1.9.1
mlflow_version: 3.17.2
"""
IMAGE_LOCK = (
    "mlflow==3.17.2 \\\n    --hash=sha256:00\nscikit-learn==1.9.1 \\\n    --hash=sha256:11\n"
)


def model_files(version: str, requirements: str) -> ModelFiles:
    where = f"mlflow-artifacts:/7/models/m-{version}/artifacts"
    return ModelFiles(where, GOOD_MLMODEL, requirements, "python: 3.11.7\n")


def world_with_image_contents(tmp_path: Path, **spec: Any) -> World:
    contents = tmp_path / "serving-images.json"
    contents.write_text(
        json.dumps({"images": {"serving-cpu": contents_from_lock(IMAGE_LOCK, "3.11").to_json()}})
    )
    world = World(write_back_tags=True, config={"serving_image_contents": str(contents)}, **spec)
    world.hub.client.files = {
        "1": model_files("1", "mlflow==3.17.2\nscikit-learn==1.9.1\n"),
        "2": model_files("2", "mlflow==2.9.2\nscikit-learn==1.9.1\n"),
        "3": model_files("3", "mlflow==3.17.2\nscikit-learn==1.8.0\n"),
    }
    return world


async def test_a_version_the_serving_image_cannot_run_gets_no_pod_and_is_told_once(
    tmp_path: Path,
) -> None:
    world = world_with_image_contents(tmp_path)
    await serve_v1(world)
    assert world.status["preflight"]["verdict"] == "Compatible"

    world.hub.registry.champion = "2"
    for _ in range(3):
        await world.reconcile()
    assert template_version(world.kube, "fraud") == "1"
    assert world.condition("Ready")["reason"] == "Serving"
    progressing = world.condition("Progressing")
    assert progressing["reason"] == "VersionIncompatible"
    assert (
        "needs mlflow==2.9.2 (requirements.txt), the image has mlflow 3.17.2"
        in (progressing["message"])
    )
    assert world.status["preflight"]["version"] == "2"
    assert world.status["preflight"]["verdict"] == "Incompatible"
    assert [e[1] for e in world.events].count("VersionIncompatible") == 1
    assert world.hub.client.files_read == ["1", "2"]  # once per version, not per reconcile
    assert "2" not in world.status["failedVersions"]  # not a failed rollout: it never started
    await world.reconciler.tag_writer.flush()
    tagged = next(value for version, _, value in world.hub.client.tags if version == "2")
    assert tagged.startswith("incompatible with the serving image at ")

    # a minor difference is only a note: version 3 rolls out
    world.hub.registry.champion = "3"
    await world.reconcile()
    assert template_version(world.kube, "fraud") == "3"
    assert world.status["preflight"]["verdict"] == "Compatible"
    assert world.status["preflight"]["notes"] == ["wants scikit-learn==1.8.0, the image has 1.9.1"]


async def test_with_on_incompatible_fail_a_version_the_image_cannot_run_is_a_failed_one(
    tmp_path: Path,
) -> None:
    world = world_with_image_contents(tmp_path, rollout={"onIncompatible": "Fail"})
    await serve_v1(world)

    world.hub.registry.champion = "2"
    for _ in range(3):
        await world.reconcile()
    assert template_version(world.kube, "fraud") == "1"  # never a pod of it
    assert world.status["failedVersions"] == ["2"]
    metadata = world.deployment()["metadata"]
    assert metadata["annotations"]["mlflowops.dev/failed-versions"] == "2"
    assert metadata["labels"]["mlflowops.dev/last-good-version"] == "1"
    degraded = world.condition("Degraded")
    assert (degraded["status"], degraded["reason"]) == ("True", "VersionIncompatible")
    assert degraded["message"].startswith(
        "version 2 cannot run on the serving image: needs mlflow==2.9.2 (requirements.txt), "
        "the image has mlflow 3.17.2"
    )
    assert (world.condition("Ready")["reason"], world.condition("Ready")["message"]) == (
        "Serving", "serving version 1",
    )  # fmt: skip
    assert world.status["history"][-1]["version"] == "2"
    assert world.status["history"][-1]["result"] == "Failed"
    assert [e[1] for e in world.events].count("VersionIncompatible") == 1
    assert "RolloutFailed" not in [e[1] for e in world.events]
    assert world.hub.client.files_read == ["1", "2"]  # settled: not checked again
    await world.reconciler.tag_writer.flush()
    tagged = [value for version, _, value in world.hub.client.tags if version == "2"]
    assert len(tagged) == 1
    assert tagged[0].startswith("rollout failed at ")
    assert ": incompatible with the serving image: needs mlflow==2.9.2" in tagged[0]

    # the registry moves on to a version the image runs: it rolls out, 2 is forgotten
    world.hub.registry.champion = "3"
    await world.reconcile()
    assert template_version(world.kube, "fraud") == "3"
    assert world.status["failedVersions"] == []
    settle(world.kube, "fraud")
    await world.reconcile()
    assert world.status["servingVersion"] == "3"
    assert world.condition("Degraded")["reason"] == "AsExpected"
    assert world.deployment()["metadata"]["annotations"]["mlflowops.dev/failed-versions"] == ""


async def test_without_image_contents_a_version_is_checked_and_rolled_out_as_unknown() -> None:
    world = World(config={"serving_image_contents": ""})
    world.hub.client.files = {"1": model_files("1", "mlflow==3.17.2\n")}
    await world.reconcile()
    assert template_version(world.kube, "fraud") == "1"
    assert world.status["preflight"]["verdict"] == "Unknown"
    assert "is not one of the operator's serving images" in world.status["preflight"]["message"]


async def test_a_model_no_image_can_serve_is_held_even_on_an_image_of_the_users() -> None:
    world = World(serving={"image": "registry.example.com/team/serving:7"})
    world.hub.client.files = {"1": ModelFiles("mlflow-artifacts:/7/models/m-1/artifacts")}
    await world.reconcile()
    assert world.kube.stored("Deployment", "fraud") is None
    ready = world.condition("Ready")
    assert ready["reason"] == "VersionIncompatible"
    assert (
        "artifacts missing: no MLmodel at mlflow-artifacts:/7/models/m-1/artifacts"
        in (ready["message"])
    )


async def test_files_that_cannot_be_read_from_mlflow_are_asked_for_again_unless_they_never_will(
    tmp_path: Path,
) -> None:
    """A canary keeps its version new here for minutes: an artifact store the operator cannot
    read (not proxied) is asked about once; a failed read at every reconcile."""
    world = world_with_image_contents(
        tmp_path,
        serving={"runtime": "batched", "replicas": 2},
        rollout={"strategy": "Canary", "canary": {"steps": [{"weight": 50}]}},
    )
    await world.reconcile()
    settle(world.kube, "fraud")
    await world.reconcile()
    s3 = "s3://elsewhere/models/m-2/artifacts"
    world.hub.client.files["2"] = ModelFiles(s3, error="not proxied", lasting=True)
    world.hub.client.files["3"] = ModelFiles(s3, error="MLflow did not answer")
    for version in ("2", "3"):
        world.hub.registry.champion = version
        for _ in range(3):
            await world.reconcile()
        assert world.kube.stored("Deployment", "fraud-canary") is not None  # Unknown: it runs
        assert world.status["preflight"]["verdict"] == "Unknown"
    assert world.hub.client.files_read.count("2") == 1
    assert world.hub.client.files_read.count("3") == 3


# -- serving.cache: prefetch of a new version onto the nodes' model caches -------------------

CACHE_CONFIG = {"model_cache_url": "http://cache.ops.svc:8090", "model_cache_namespace": "ops"}


def node_pod(name: str, node: str, labels: dict[str, str], ip: str = "") -> dict[str, Any]:
    ready = [{"type": "Ready", "status": "True"}] if ip else []
    status = {"podIP": ip, "conditions": ready} if ip else {}
    return {
        "metadata": {"name": name, "namespace": NAMESPACE, "labels": labels},
        "spec": {"nodeName": node},
        "status": status,
    }


class FakeCaches:
    """The model cache pods' answers to a prefetch, per node, in turn (the last one repeats)."""

    def __init__(self, answers: dict[str, list[str]]) -> None:
        self.answers = answers
        self.asked: list[tuple[str, str, str]] = []  # (node, address, version)

    async def ask(
        self, node: str, address: str | None, spec: Any, version: str, client: Any
    ) -> NodePrefetch:
        if address is None:
            return NodePrefetch(node, "NoCache", message="no ready model cache pod there")
        self.asked.append((node, address, version))
        states = self.answers[node]
        state = states.pop(0) if len(states) > 1 else states[0]
        return NodePrefetch(node, state, bytes=1024 if state == "Done" else 0)


async def cached_world(
    answers: dict[str, list[str]], caches_on: tuple[str, ...] = ("n1", "n2"), **config: Any
) -> tuple[World, FakeCaches]:
    """v1 serves on two pods, on nodes n1 and n2, with serving.cache on."""
    world = World(config={**CACHE_CONFIG, **config}, serving={"cache": {"enabled": True}})
    caches = FakeCaches(answers)
    world.reconciler.prefetches._ask = caches.ask  # type: ignore[method-assign]
    await serve_v1(world)
    serving = {"mlflowops.dev/modeldeployment": "fraud", "app.kubernetes.io/component": "serving"}
    cache = {"app.kubernetes.io/component": "model-cache"}
    world.kube.pods = [
        node_pod("fraud-a", "n1", serving, "10.0.1.5"),
        node_pod("fraud-b", "n2", serving, "10.0.2.5"),
        *(node_pod(f"cache-{n}", n, cache, f"10.0.{n[1]}.9") for n in caches_on),
    ]
    return world, caches


def tracking_uri(world: World) -> str:
    container = world.deployment()["spec"]["template"]["spec"]["containers"][0]
    return next(e["value"] for e in container["env"] if e["name"] == "MLFLOW_TRACKING_URI")


async def test_a_new_version_gets_no_pod_until_every_node_that_serves_has_it_cached() -> None:
    world, caches = await cached_world({"n1": ["Running", "Done"], "n2": ["Running", "Done"]})
    assert tracking_uri(world).startswith("http://cache.ops.svc:8090/upstream/")
    assert world.status.get("prefetch") is None  # a first rollout has no node to prefetch to

    world.hub.registry.champion = "2"
    result = await world.reconcile()
    assert result.recheck_after == ROLLOUT_RECHECK_SECONDS  # its progress is asked for soon
    assert template_version(world.kube, "fraud") == "1"
    assert world.condition("Progressing")["reason"] == "Prefetching"
    assert world.condition("Ready")["reason"] == "Serving"
    prefetch = world.status["prefetch"]
    assert (prefetch["version"], prefetch["phase"]) == ("2", "Running")
    assert sorted(caches.asked) == [("n1", "10.0.1.9", "2"), ("n2", "10.0.2.9", "2")]

    await world.reconcile()
    assert template_version(world.kube, "fraud") == "2"
    prefetch = world.status["prefetch"]
    assert prefetch["phase"] == "Done"
    assert [n["phase"] for n in prefetch["nodes"]] == ["Done", "Done"]
    assert "version 2 on 2/2 nodes (2.0 KiB)" in prefetch["message"]
    assert [e[1] for e in world.events].count("Prefetching") == 1
    assert [e[1] for e in world.events].count("Prefetched") == 1

    asked = len(caches.asked)
    settle(world.kube, "fraud")
    await world.reconcile()
    assert len(caches.asked) == asked  # a finished prefetch is not asked again


async def test_a_node_without_a_ready_cache_does_not_hold_the_rollout_and_is_told() -> None:
    world, _ = await cached_world({"n1": ["Done"]}, caches_on=("n1",))
    world.hub.registry.champion = "2"
    await world.reconcile()
    assert template_version(world.kube, "fraud") == "2"
    prefetch = world.status["prefetch"]
    assert prefetch["phase"] == "Incomplete"
    assert "n2: NoCache (no ready model cache pod there)" in prefetch["message"]
    warning = next(e for e in world.events if e[1] == "PrefetchIncomplete")
    assert warning[0] == "Warning"


async def test_a_prefetch_past_its_deadline_lets_the_rollout_go_on() -> None:
    world, _ = await cached_world(
        {"n1": ["Running"], "n2": ["Done"]}, prefetch_timeout_seconds=0.001
    )
    world.hub.registry.champion = "2"
    await world.reconcile()
    assert world.status["prefetch"]["phase"] == "Running"  # it starts: the clock starts
    await world.reconcile()
    assert template_version(world.kube, "fraud") == "2"
    assert world.status["prefetch"]["phase"] == "Incomplete"
    assert "not finished within 0.001s" in world.status["prefetch"]["message"]


async def test_a_rollback_to_the_last_good_version_is_never_held_by_a_prefetch() -> None:
    world, caches = await cached_world({"n1": ["Done"], "n2": ["Done"]})
    world.hub.registry.champion = "2"
    await world.reconcile()
    assert template_version(world.kube, "fraud") == "2"
    settle(world.kube, "fraud", available=False, exceeded=True)
    asked = len(caches.asked)
    await world.reconcile()
    assert template_version(world.kube, "fraud") == "1"  # rolled back at once
    assert len(caches.asked) == asked


async def test_cache_asked_for_without_an_operator_cache_is_one_warning_and_a_direct_download() -> (
    None
):
    world = World(serving={"cache": {"enabled": True}})
    for _ in range(2):
        await world.reconcile()
    assert tracking_uri(world) == "http://mlflow.ml.svc:5000"
    warnings = [e for e in world.events if e[1] == "ModelCacheUnavailable"]
    assert len(warnings) == 1
    assert "modelCache.enabled" in warnings[0][2]


async def test_children_written_a_moment_ago_are_read_as_written_until_the_watch_tells() -> None:
    """Children are read from the watch (reconcilers/watched.py), which tells a write a moment
    after it returns; a reconcile woken meanwhile (by its own status write) applied the same
    Deployment again, several times per rollout in bench_scale."""
    world = World()
    late: dict[tuple[str, str], list[dict[str, Any]]] = {}  # a watch that has told nothing yet
    world.reconciler.watched = Watched(
        {"Deployment": late, "Service": late, "PodDisruptionBudget": late}
    )
    await world.reconcile()
    assert world.kube.writes.count("apply:Deployment") == 1
    await world.reconcile()
    await world.reconcile()
    assert world.kube.writes.count("apply:Deployment") == 1
    assert world.kube.writes.count("apply:Service") == 1

    # the watch tells someone else's change: that is what is read from then on
    changed = world.deployment()
    changed["metadata"]["resourceVersion"] = "elsewhere"
    changed["spec"]["template"]["spec"]["containers"][0]["image"] = "someone/else"
    late[NAMESPACE, "fraud"] = [changed]
    await world.reconcile()
    assert world.kube.writes.count("apply:Deployment") == 2  # put back as built


def environment_jobs(world: World) -> dict[str, dict[str, Any]]:
    return {name: obj for (kind, _, name), obj in world.kube.objects.items() if kind == "Job"}


def finish_job(world: World, name: str, condition: str) -> None:
    job = copy.deepcopy(environment_jobs(world)[name])
    job["status"] = {"conditions": [{"type": condition, "status": "True", "message": "x"}]}
    world.kube.put(job)


async def test_with_uv_a_version_gets_a_pod_only_after_its_environment_job_succeeded() -> None:
    world = World(serving={"envManager": "uv"})
    await world.reconcile()
    jobs = environment_jobs(world)
    (name,) = jobs
    assert name.startswith("fraud-env-1-")
    assert world.kube.stored("Deployment", "fraud") is None  # a first rollout waits too
    assert world.condition("Progressing")["reason"] == "BuildingEnvironment"
    assert world.status["environment"]["phase"] == "Building"

    await world.reconcile()
    assert len(environment_jobs(world)) == 1  # one Job, not one per reconcile
    finish_job(world, name, "Complete")
    await world.reconcile()
    assert template_version(world.kube, "fraud") == "1"
    assert world.status["environment"]["phase"] == "Built"
    settle(world.kube, "fraud")
    await world.reconcile()
    world.kube.fail["get:Job"] = api_error(500, "InternalError", "not asked at rest")
    await world.reconcile()
    assert "get:Job" in world.kube.fail  # a built environment's Job is not read again
    del world.kube.fail["get:Job"]

    world.hub.registry.champion = "2"
    await world.reconcile()
    assert template_version(world.kube, "fraud") == "1"  # v2 waits; v1 keeps serving
    assert world.condition("Ready")["reason"] == "Serving"
    v2 = next(n for n in environment_jobs(world) if n.startswith("fraud-env-2-"))
    finish_job(world, v2, "Failed")
    await world.reconcile()
    assert template_version(world.kube, "fraud") == "1"
    assert world.condition("Progressing")["reason"] == "EnvironmentFailed"
    assert [e[1] for e in world.events].count("EnvironmentFailed") == 1
    assert world.status["failedVersions"] == []  # held back, not failed: a rebuilt one goes


async def test_without_uv_no_environment_job_is_made() -> None:
    world = World()
    await serve_v1(world)
    assert environment_jobs(world) == {}
