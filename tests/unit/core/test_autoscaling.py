"""The autoscaler's decisions (core/modeldeployment/autoscaling.py) and the metrics it reads."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from mlflow_operator.api.modeldeployment import AutoscalingSpec, AutoscalingStatus
from mlflow_operator.core.modeldeployment.autoscaling import (
    Load,
    LoadSample,
    PodLoad,
    decide_replicas,
    measured_load,
    rollout_needs_a_pod,
    scale_message,
    wanted_replicas,
)
from mlflow_operator.podmetrics import parse_load, ready_pod_addresses

T0 = datetime(2026, 12, 2, 10, 0, tzinfo=UTC)


def autoscaling(**target: int) -> AutoscalingSpec:
    return AutoscalingSpec.model_validate(
        {"minReplicas": 1, "maxReplicas": 5, "target": target or {"concurrency": 4},
         "scaleDownDelay": "60s"}
    )  # fmt: skip


def pods(*in_flight: float, answered: float = 0.0) -> tuple[PodLoad, ...]:
    return tuple(PodLoad(f"p{i}", n, 0.0, answered) for i, n in enumerate(in_flight))


def test_the_average_per_ready_pod_against_the_target_as_an_hpa() -> None:
    spec = autoscaling(concurrency=4)
    load = measured_load(spec, LoadSample(T0, pods(10, 6)), None)
    assert load == Load(8.0, 2, "concurrency", 4)
    assert wanted_replicas(spec, 2, load) == 4  # ceil(2 pods * 8/4)
    assert wanted_replicas(spec, 2, Load(4.3, 2, "concurrency", 4)) == 2  # within 10 %
    assert wanted_replicas(spec, 2, Load(40, 2, "concurrency", 4)) == 5  # maxReplicas
    assert wanted_replicas(spec, 3, Load(0, 3, "concurrency", 4)) == 1  # minReplicas
    assert wanted_replicas(spec, 3, None) == 3  # nothing measured: no change


def test_requests_per_second_is_a_rate_between_two_samples_of_the_same_pods() -> None:
    spec = autoscaling(requestsPerSecond=10)
    first = LoadSample(T0, pods(0, 0, answered=100))
    assert measured_load(spec, first, None) is None
    later = LoadSample(
        T0 + timedelta(seconds=5),
        (PodLoad("p0", 0, 0, 300), PodLoad("p1", 0, 0, 50), PodLoad("new", 0, 0, 9)),
    )
    # p0: 40/s; p1 restarted (its counter went back): no rate; the new pod has no rate yet
    assert measured_load(spec, later, first) == Load(40.0, 1, "requestsPerSecond", 10)


def test_more_pods_at_once_fewer_only_after_the_delay() -> None:
    spec = autoscaling(concurrency=4)
    busy = Load(12, 1, "concurrency", 4)
    up, since = decide_replicas(spec, None, 1, busy, busy_since=None, now=T0)
    assert (up.desired_replicas, up.last_scale_time) == (3, T0)
    quiet = Load(0, 3, "concurrency", 4)
    steps = [T0 + timedelta(seconds=s) for s in (5, 30, 59)]
    status = up
    for now in steps:
        status, since = decide_replicas(spec, status, 1, quiet, busy_since=since, now=now)
        assert status.desired_replicas == 3
    down, since = decide_replicas(
        spec, status, 1, quiet, busy_since=since, now=T0 + timedelta(seconds=61)
    )
    assert down.desired_replicas == 1
    assert down.last_scale_time == T0 + timedelta(seconds=61)
    assert down.load == "concurrency 0.0/pod over 3 pods (target 4)"


def test_a_busy_moment_restarts_the_wait() -> None:
    spec = autoscaling(concurrency=4)
    status = AutoscalingStatus(desired_replicas=3)
    quiet, busy = Load(0, 3, "concurrency", 4), Load(4, 3, "concurrency", 4)
    status, since = decide_replicas(spec, status, 1, quiet, busy_since=None, now=T0)
    status, since = decide_replicas(
        spec, status, 1, busy, busy_since=since, now=T0 + timedelta(seconds=50)
    )
    status, since = decide_replicas(
        spec, status, 1, quiet, busy_since=since, now=T0 + timedelta(seconds=70)
    )
    assert status.desired_replicas == 3  # 20 s since the last busy sample, not 60


def test_new_bounds_apply_at_once() -> None:
    spec = autoscaling(concurrency=4)
    status, _ = decide_replicas(
        spec, AutoscalingStatus(desired_replicas=9), 1, None, busy_since=None, now=T0
    )
    assert status.desired_replicas == 5


METRICS = """# HELP mlflow_serving_in_flight_requests x
# TYPE mlflow_serving_in_flight_requests gauge
mlflow_serving_in_flight_requests{model_name="iris",model_version="3"} 2.0
# TYPE mlflow_serving_queue_depth gauge
mlflow_serving_queue_depth{model_name="iris",model_version="3"} 1.0
# TYPE mlflow_serving_requests counter
mlflow_serving_requests_total{model_name="iris",model_version="3",status="200"} 40.0
mlflow_serving_requests_total{model_name="iris",model_version="3",status="400"} 2.0
"""


def test_the_load_is_read_from_the_runtimes_metrics() -> None:
    assert parse_load("p", METRICS) == PodLoad("p", 2.0, 1.0, 42.0)
    assert parse_load("p", "# TYPE other gauge\nother 1\n") is None  # not the batched runtime
    assert parse_load("p", "<html>") is None


def pod(name: str, ready: str, ip: str = "10.0.0.1", **meta: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": name, **meta},
        "status": {"podIP": ip, "conditions": [{"type": "Ready", "status": ready}]},
    }


def test_only_ready_pods_that_are_not_going_away_are_read() -> None:
    found = ready_pod_addresses(
        [pod("a", "True"), pod("b", "False"), pod("c", "True", deletionTimestamp="x")]
    )
    assert found == {"a": "10.0.0.1"}


def test_a_change_of_the_count_in_effect_is_announced_once() -> None:
    decision = AutoscalingStatus(desired_replicas=3, load="concurrency 6.0/pod over 1 pods")
    kept = AutoscalingStatus(desired_replicas=3, load="concurrency 4.0/pod over 3 pods")
    assert scale_message(None, 1, decision) == "1 -> 3 pods for concurrency 6.0/pod over 1 pods"
    assert scale_message(None, 3, decision) is None  # spec's count, kept
    assert scale_message(kept, 1, decision) is None  # status's count, kept
    assert scale_message(decision, 3, AutoscalingStatus(desired_replicas=1)) == (
        "3 -> 1 pods within minReplicas and maxReplicas"
    )


def zero_to(n: int, **target: int) -> AutoscalingSpec:
    return AutoscalingSpec.model_validate(
        {"minReplicas": 0, "maxReplicas": n, "target": target or {"concurrency": 4},
         "scaleDownDelay": "60s"}
    )  # fmt: skip


def test_only_an_idle_load_takes_the_count_to_zero_after_the_delay() -> None:
    spec = zero_to(3)
    before = LoadSample(T0, (PodLoad("p0", 0, 0, 10),))
    same = LoadSample(T0 + timedelta(seconds=5), (PodLoad("p0", 0, 0, 10),))
    answered = LoadSample(T0 + timedelta(seconds=5), (PodLoad("p0", 0, 0, 12),))
    idle = measured_load(spec, same, before)
    between_requests = measured_load(spec, answered, before)  # nothing in flight right now
    assert idle is not None
    assert idle.idle
    assert between_requests is not None
    assert not between_requests.idle
    assert wanted_replicas(spec, 1, between_requests) == 1
    assert wanted_replicas(spec, 1, idle) == 0
    status = AutoscalingStatus(desired_replicas=1)
    down, _ = decide_replicas(spec, status, 1, idle, busy_since=T0, now=T0 + timedelta(59))
    assert down.desired_replicas == 0  # 59 days: long past the delay
    kept, _ = decide_replicas(spec, status, 1, idle, busy_since=T0, now=T0 + timedelta(seconds=59))
    assert kept.desired_replicas == 1


def test_a_waiting_request_or_a_new_version_wants_a_pod_at_once() -> None:
    spec = zero_to(3)
    zero = AutoscalingStatus(desired_replicas=0)
    woken, _ = decide_replicas(spec, zero, 1, None, busy_since=T0, now=T0, floor=1)
    assert woken.desired_replicas == 1
    assert woken.last_scale_time == T0
    asleep, _ = decide_replicas(spec, zero, 1, None, busy_since=T0, now=T0)
    assert asleep.desired_replicas == 0
    assert rollout_needs_a_pod("1", [], target="2", template="1")
    assert rollout_needs_a_pod("1", [], target="1", template="2")  # a rollout under way
    assert not rollout_needs_a_pod("1", ["2"], target="2", template="1")  # 2 failed: stays off
    assert not rollout_needs_a_pod("1", [], target=None, template="1")


def test_no_pod_is_removed_while_one_is_still_loading_its_model() -> None:
    spec = zero_to(3)
    idle = Load(0, 2, "concurrency", 4, idle=True)
    status = AutoscalingStatus(desired_replicas=3)
    late = T0 + timedelta(minutes=10)
    held, _ = decide_replicas(spec, status, 1, idle, busy_since=T0, now=late, settling=True)
    assert held.desired_replicas == 3
    down, _ = decide_replicas(spec, status, 1, idle, busy_since=T0, now=late)
    assert down.desired_replicas == 0
