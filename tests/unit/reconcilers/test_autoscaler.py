"""The autoscaler in the ModelDeployment reconcile: the count it decides reaches the
Deployment, status and an Event. The pods' load is a stand-in for their /metrics here; the
real scrape of real pods is in tests/e2e/test_modeldeployment_autoscaling.py."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from mlflow_operator.activator import Activator
from mlflow_operator.core.modeldeployment.autoscaling import LoadSample, PodLoad
from tests.unit.reconcilers.fakes import settle, template_version
from tests.unit.reconcilers.test_modeldeployment import World


class FakePodMetrics:
    def __init__(self) -> None:
        self.in_flight: list[float] = []

    async def sample(self, pods: Sequence[dict[str, Any]], port: int, now: datetime) -> LoadSample:
        return LoadSample(
            now, tuple(PodLoad(f"p{i}", n, 0, 0) for i, n in enumerate(self.in_flight))
        )

    async def close(self) -> None:
        pass


def autoscaled_world(replicas: int = 7) -> tuple[World, FakePodMetrics]:
    world = World(
        serving={
            "runtime": "batched",
            "replicas": replicas,  # the count to start from (within the bounds), then the load's
            "autoscaling": {"minReplicas": 1, "maxReplicas": 4, "target": {"concurrency": 2}},
        }
    )
    fake = FakePodMetrics()
    world.reconciler.pod_metrics = fake  # type: ignore[assignment]
    return world, fake


async def test_the_load_sets_the_deployments_replicas_and_status_says_why() -> None:
    world, load = autoscaled_world()
    result = await world.reconcile()
    assert world.deployment()["spec"]["replicas"] == 4  # nothing measured: 7 within [1, 4]
    assert result.recheck_after <= 5.0  # the load is sampled every few seconds
    settle(world.kube, "fraud")
    load.in_flight = [1.0, 1.0, 0.0, 0.0]
    await world.reconcile()
    assert world.deployment()["spec"]["replicas"] == 4  # fewer only after scaleDownDelay
    load.in_flight = [5.0, 3.0, 4.0, 4.0]
    await world.reconcile()
    assert world.deployment()["spec"]["replicas"] == 4  # at most maxReplicas
    scaling = world.status["autoscaling"]
    assert scaling["desiredReplicas"] == 4
    assert scaling["load"] == "concurrency 4.0/pod over 4 pods (target 2)"
    body = world.body
    body["spec"]["serving"]["replicas"] = 1  # kubectl scale: the autoscaler's count stays
    world.kube.put(body)
    await world.reconcile()
    assert world.deployment()["spec"]["replicas"] == 4


async def test_a_scale_is_announced_with_the_load_that_wanted_it() -> None:
    world, load = autoscaled_world(replicas=1)
    await world.reconcile()
    assert world.deployment()["spec"]["replicas"] == 1
    load.in_flight = [7.0]
    await world.reconcile()
    assert world.deployment()["spec"]["replicas"] == 4  # ceil(1 pod * 7 / 2)
    assert ("Normal", "Scaled", "1 -> 4 pods for concurrency 7.0/pod over 1 pods (target 2)") in (
        world.events
    )


async def test_a_scale_decided_before_status_knew_the_autoscaler_is_announced_too() -> None:
    """As after a first status write refused with 409: the next reconcile decides from no
    autoscaling status, with the load already known, and the count still changes."""
    world, load = autoscaled_world(replicas=1)
    load.in_flight = [7.0]
    await world.reconcile()
    assert world.deployment()["spec"]["replicas"] == 4
    assert [e for e in world.events if e[1] == "Scaled"] == [
        ("Normal", "Scaled", "1 -> 4 pods for concurrency 7.0/pod over 1 pods (target 2)")
    ]
    await world.reconcile()  # the same count again: nothing new to announce
    assert [e[1] for e in world.events].count("Scaled") == 1


async def test_without_autoscaling_status_forgets_it_and_spec_replicas_count_again() -> None:
    world, load = autoscaled_world()
    load.in_flight = [7.0]
    await world.reconcile()
    body = world.body
    del body["spec"]["serving"]["autoscaling"]
    world.kube.put(body)
    await world.reconcile()
    assert "autoscaling" not in world.status
    assert world.deployment()["spec"]["replicas"] == 7


async def test_a_new_version_rolls_out_on_the_count_the_load_wants() -> None:
    world, load = autoscaled_world(replicas=1)
    await world.reconcile()
    settle(world.kube, "fraud")
    load.in_flight = [5.0]
    await world.reconcile()  # 3 pods wanted
    settle(world.kube, "fraud")
    load.in_flight = [2.0, 2.0, 2.0]
    world.hub.registry.champion = "2"
    await world.reconcile()
    assert template_version(world.kube, "fraud") == "2"
    assert world.deployment()["spec"]["replicas"] == 3


async def test_an_idle_deployment_goes_to_zero_behind_the_activator_and_a_request_wakes_it() -> (
    None
):
    world = World(
        config={"activator_address": "10.0.0.5", "activator_port": 8082},
        serving={
            "runtime": "batched",
            "replicas": 1,
            "autoscaling": {
                "minReplicas": 0, "maxReplicas": 2, "target": {"concurrency": 2},
                "scaleDownDelay": "10s",
            },
        },
    )  # fmt: skip
    load = FakePodMetrics()
    world.reconciler.pod_metrics = load  # type: ignore[assignment]
    waiting = {"ml/fraud": 0}
    activator = Activator(pod_addresses=world.reconciler.activator_pods, wake=print, pod_port=8080)
    activator.waiting = waiting.get  # type: ignore[assignment,method-assign]
    world.reconciler.activator = activator
    await world.reconcile()
    assert world.deployment()["spec"]["replicas"] == 1  # the first version proves itself on a pod
    settle(world.kube, "fraud")
    load.in_flight = [0.0]
    await world.reconcile()
    await world.reconcile()  # two samples with nothing answered between them: idle
    assert world.deployment()["spec"]["replicas"] == 1  # not before scaleDownDelay
    world.reconciler._busy_since["ml/fraud"] -= timedelta(seconds=11)
    await world.reconcile()
    assert world.deployment()["spec"]["replicas"] == 0
    assert world.status["autoscaling"]["desiredReplicas"] == 0
    endpoints = world.kube.stored("EndpointSlice", "fraud-activator")
    assert endpoints is not None, "the Service must send to the activator before the pod goes"
    assert endpoints["metadata"]["labels"]["kubernetes.io/service-name"] == "fraud"
    assert endpoints["endpoints"][0]["addresses"] == ["10.0.0.5"]
    assert endpoints["ports"] == [{"name": "http", "port": 8082, "protocol": "TCP"}]
    assert ("Normal", "Scaled", "1 -> 0 pods for concurrency 0.0/pod over 1 pods (target 2)") in (
        world.events
    )
    assert activator.routes["ml/fraud"].service == "fraud"

    settle(world.kube, "fraud")  # no pod left
    load.in_flight = []
    waiting["ml/fraud"] = 3  # requests held at the activator
    await world.reconcile()
    assert world.deployment()["spec"]["replicas"] == 1
    assert world.kube.stored("EndpointSlice", "fraud-activator") is not None  # not ready yet
    settle(world.kube, "fraud")
    waiting["ml/fraud"] = 0
    await world.reconcile()
    assert world.kube.stored("EndpointSlice", "fraud-activator") is None  # straight to the pod


async def test_without_an_activator_min_replicas_zero_keeps_one_pod_and_says_so() -> None:
    world = World(
        serving={
            "runtime": "batched",
            "replicas": 1,
            "autoscaling": {"minReplicas": 0, "maxReplicas": 2, "target": {"concurrency": 2}},
        },
    )
    load = FakePodMetrics()
    world.reconciler.pod_metrics = load  # type: ignore[assignment]
    await world.reconcile()
    settle(world.kube, "fraud")
    load.in_flight = [0.0]
    for _ in range(3):
        await world.reconcile()
    world.reconciler._busy_since["ml/fraud"] -= timedelta(minutes=6)
    await world.reconcile()
    assert world.deployment()["spec"]["replicas"] == 1
    warnings = [e for e in world.events if e[1] == "ScaleToZeroUnavailable"]
    assert len(warnings) == 1
    assert "keeps one pod" in warnings[0][2]
