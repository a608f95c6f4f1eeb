"""The autoscaler in the ModelDeployment reconcile: the count it decides reaches the
Deployment, status and an Event. The pods' load is a stand-in for their /metrics here; the
real scrape of real pods is in tests/e2e/test_modeldeployment_autoscaling.py."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

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
    assert ("Normal", "Scaled", "4 pods for concurrency 7.0/pod over 1 pods (target 2)") in (
        world.events
    )


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
