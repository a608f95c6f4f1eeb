"""Canary rollouts: shares rounded to pods, judgements with their numbers, steps, promotion and
abort, as the rollout decision carries them (no pod of the version serves everyone before every
step passed; an aborted version is a failed one)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from mlflow_operator.api.modeldeployment import CanaryAnalysis, ModelDeploymentStatus
from mlflow_operator.core.conditions import get_condition
from mlflow_operator.core.modeldeployment.canary import (
    CanaryInputs,
    CanaryObservation,
    CanaryPlan,
    Judgement,
    Traffic,
    analysis_due,
    canary_pods,
    judge,
    plan_canary,
    share,
)
from mlflow_operator.core.modeldeployment.resolution import Resolved
from mlflow_operator.core.modeldeployment.rollout import RolloutPlan, plan_rollout
from mlflow_operator.core.modeldeployment.write_back import version_tag_values
from mlflow_operator.core.registry_view import RegistryState
from mlflow_operator.podmetrics import parse_traffic
from tests.unit.observations import complete, in_progress
from tests.unit.specs import spec

T0 = datetime(2026, 12, 2, 10, 0, tzinfo=UTC)
SYNCED = RegistryState(snapshot=None, synced=True, last_sync=T0)
DOWN = RegistryState(snapshot=None, synced=False, last_sync=T0, error="connection refused")
CANARY = spec(
    "fraud",
    serving={"runtime": "batched", "replicas": 2},
    rollout={
        "strategy": "Canary",
        "canary": {
            "steps": [{"weight": 10, "pause": "30s"}, {"weight": 50, "pause": "30s"}],
            "analysis": {"interval": "10s", "minRequests": 20, "maxErrorRate": 0.05},
        },
    },
)
PASSED = Judgement(
    "Passed", "canary: 40 requests, 0.0% errors (stable 0.0%), p99 10ms; stable p99 10ms (1.0x)"
)
FAILED = Judgement("Failed", "error rate 12.5% > stable 0.0% + 5% (canary: 40 requests, ...)")


def inputs(**kw: Any) -> CanaryInputs:
    base: dict[str, Any] = {
        "target": "2",
        "current": "1",
        "target_failed": False,
        "synced": True,
        "stable_pods": 2,
        "stable_complete": True,
        "canary": CanaryObservation(exists=True, version="2", ready=1),
        "judgement": None,
    }
    base.update(kw)
    return CanaryInputs(**base)


def serving_1() -> ModelDeploymentStatus:
    return plan_rollout(
        CANARY, 1, ModelDeploymentStatus(), SYNCED, Resolved("1"), complete("1", 2), T0
    ).status


def step(
    last: ModelDeploymentStatus, canary: CanaryPlan, deployment: Any, target: str = "2",
    seconds: int = 0, registry: RegistryState = SYNCED,
) -> RolloutPlan:  # fmt: skip
    return plan_rollout(
        CANARY, 1, last, registry, Resolved(target) if registry.synced else None, deployment,
        T0 + timedelta(seconds=seconds), canary=canary,
    )  # fmt: skip


def cond(plan: RolloutPlan, type_: str) -> tuple[str, str, str]:
    c = get_condition(plan.status.conditions, type_)
    assert c is not None
    return c.status, c.reason, c.message


def test_weights_are_rounded_to_whole_pods_beside_the_stable_ones() -> None:
    assert [canary_pods(w, 2) for w in (10, 34, 50, 90)] == [1, 1, 2, 18]
    assert [canary_pods(w, 10) for w in (10, 50)] == [1, 10]
    assert share(1, 2) == 33
    assert share(1, 9) == 10


def test_a_judgement_names_the_numbers_and_waits_for_enough_requests() -> None:
    analysis = CanaryAnalysis(min_requests=20, max_error_rate=0.05, max_p99_latency_ratio=1.5)
    fast = {0.01: 95.0, 0.05: 100.0, float("inf"): 100.0}
    slow = {0.01: 10.0, 0.05: 50.0, 0.1: 100.0, float("inf"): 100.0}
    assert judge(analysis, Traffic(12, 0, fast), Traffic(100, 0, fast)) == Judgement(
        "Waiting", "canary: 12/20 requests"
    )
    # 2 failures in 12 answers: below 20 answers, yet at least 10% over 20 > 5%: no need to wait
    assert judge(analysis, Traffic(12, 2, fast), Traffic(100, 0, fast)) == Judgement(
        "Failed",
        "error rate at least 10.0% over 20 answers (2 of the first 12 failed) > stable 0.0% + 5%",
    )
    assert judge(analysis, Traffic(12, 1, fast), Traffic(100, 0, fast)).verdict == "Waiting"
    assert judge(analysis, Traffic(100, 7, fast), Traffic(100, 0, fast)) == Judgement(
        "Failed",
        "error rate 7.0% > stable 0.0% + 5% (canary: 100 requests, 7.0% errors (stable 0.0%), "
        "p99 50ms; stable p99 50ms (1.0x))",
    )
    latency = judge(analysis, Traffic(100, 0, slow), Traffic(100, 0, fast))
    assert latency.verdict == "Failed"
    assert latency.message.startswith("p99 latency 2.0x the stable pods' > 1.5x")
    assert judge(analysis, Traffic(100, 1, fast), Traffic(100, 0, fast)).verdict == "Passed"
    # a client's malformed requests fail on every pod: only the excess counts
    assert judge(analysis, Traffic(100, 9, fast), Traffic(1000, 50, fast)).verdict == "Passed"


def test_the_runtimes_metrics_are_summed_into_traffic() -> None:
    registry = CollectorRegistry()
    requests = Counter("mlflow_serving_requests", "", ("status",), registry=registry)
    seconds = Histogram(
        "mlflow_serving_request_duration_seconds", "", ("status",),
        buckets=(0.01, 0.1), registry=registry,
    )  # fmt: skip
    for status, value, n in (("200", 0.005, 30), ("500", 0.05, 10)):
        requests.labels(status=status).inc(n)
        for _ in range(n):
            seconds.labels(status=status).observe(value)
    traffic = parse_traffic(generate_latest(registry).decode())
    assert traffic is not None
    assert (traffic.requests, traffic.errors) == (40, 10)  # every status but 2xx: errors
    assert traffic.buckets == {0.01: 30, 0.1: 40, float("inf"): 40}
    assert traffic.p99() == 0.1
    assert parse_traffic("# nothing of the runtime's\n") is None


def test_a_good_canary_walks_its_steps_then_every_pod_moves_and_the_canary_goes() -> None:
    status = serving_1()
    started = plan_canary(CANARY, None, inputs(canary=CanaryObservation()), T0)
    assert (started.canary_version, started.canary_replicas, started.hold) == ("2", 1, True)
    plan = step(status, started, complete("1", 2))
    assert plan.deploy_version == "1"  # the serving pods stay where they are
    assert cond(plan, "Ready")[:2] == ("True", "Serving")
    assert cond(plan, "Progressing")[:2] == ("True", "Canary")
    assert [e.message for e in plan.events] == [
        "canary of version 2: 33% (1 of 3 pods), step 1/2 (was 1)"
    ]
    assert plan.status.history[-1].version == "2"
    assert plan.status.history[-1].result == "InProgress"
    assert plan.rolling_out  # looked at again soon

    # judged too early (pause 30s) or on too few requests: the step stays
    early = plan_canary(
        CANARY, plan.status.rollout, inputs(judgement=PASSED), T0 + timedelta(seconds=10)
    )
    assert early.status is not None
    assert early.status.step == 0
    assert early.status.analysis == f"Passed: {PASSED.message}"
    assert analysis_due(CANARY, early.status, T0 + timedelta(seconds=15)) is False
    assert analysis_due(CANARY, early.status, T0 + timedelta(seconds=20)) is True

    second = plan_canary(CANARY, early.status, inputs(judgement=PASSED), T0 + timedelta(seconds=40))
    assert second.status is not None
    assert (second.status.step, second.canary_replicas, second.status.weight) == (1, 2, 50)
    assert [e[1] for e in second.events] == ["CanaryStep"]
    plan = step(plan.status, second, complete("1", 2), seconds=40)
    assert plan.deploy_version == "1"

    ready = inputs(judgement=PASSED, canary=CanaryObservation(exists=True, version="2", ready=2))
    last = plan_canary(CANARY, second.status, ready, T0 + timedelta(seconds=80))
    assert last.status is not None
    assert last.status.phase == "Promoting"
    assert [e[1] for e in last.events] == ["CanaryPromoted"]
    assert last.canary_version == "2"  # the canary pods serve until the serving ones moved
    plan = step(plan.status, last, complete("1", 2), seconds=80)
    assert plan.deploy_version == "2"  # only now: a Replace of a proven version

    moving = plan_canary(
        CANARY, plan.status.rollout, inputs(current="2", stable_complete=False), T0
    )
    assert moving.canary_version == "2"
    done = plan_canary(CANARY, plan.status.rollout, inputs(current="2"), T0)
    assert done.status is not None
    assert (done.status.phase, done.canary_version) == ("Promoted", None)
    plan = step(plan.status, done, complete("2", 2), seconds=120)
    assert plan.status.serving_version == "2"
    assert plan.succeeded_version == "2"
    assert [h.result for h in plan.status.history if h.version == "2"] == ["Succeeded"]


def test_a_bad_canary_is_aborted_and_its_version_is_a_failed_one() -> None:
    status = step(serving_1(), plan_canary(CANARY, None, inputs(), T0), complete("1", 2)).status
    aborted = plan_canary(
        CANARY, status.rollout, inputs(judgement=FAILED), T0 + timedelta(seconds=10)
    )
    assert aborted.status is not None
    assert aborted.status.phase == "Aborted"
    assert aborted.canary_version is None  # its pods go
    assert aborted.aborted == f"canary aborted at 33%: {FAILED.message}"
    plan = step(status, aborted, complete("1", 2), seconds=10)
    assert plan.deploy_version == "1"
    assert plan.status.failed_versions == ["2"]
    assert plan.failed_version == "2"
    assert cond(plan, "Degraded")[:2] == ("True", "CanaryAborted")
    assert cond(plan, "Ready")[:2] == ("True", "ServingPreviousVersion")
    (event,) = plan.events
    assert (event.type, event.reason) == ("Warning", "CanaryAborted")
    assert event.message.startswith(f"canary aborted at 33%: {FAILED.message}; traffic back on")
    (tag,) = version_tag_values(plan, T0)
    assert tag == ("2", f"rollout failed at 2026-12-02T10:00:00Z: {aborted.aborted}")
    assert plan.status.history[-1].result == "RolledBack"

    # the failed version is never canaried again while the registry selects it
    again = plan_canary(CANARY, plan.status.rollout, inputs(target_failed=True), T0)
    assert again.canary_version is None
    later = step(plan.status, again, complete("1", 2), seconds=20)
    assert later.events == ()
    assert later.deploy_version == "1"


def test_canary_pods_that_never_become_available_abort_it() -> None:
    status = step(serving_1(), plan_canary(CANARY, None, inputs(), T0), complete("1", 2)).status
    stuck = CanaryObservation(
        exists=True, version="2", deadline_exceeded=True, trouble="pod x: CrashLoopBackOff"
    )
    aborted = plan_canary(CANARY, status.rollout, inputs(canary=stuck), T0)
    assert aborted.aborted == "canary aborted at 33%: pod x: CrashLoopBackOff"


def test_the_canary_holds_its_step_while_the_registry_is_down_and_ends_when_it_moves_on() -> None:
    status = step(serving_1(), plan_canary(CANARY, None, inputs(), T0), complete("1", 2)).status
    held = plan_canary(CANARY, status.rollout, inputs(synced=False, target=None), T0)
    assert held.status == status.rollout
    assert (held.canary_version, held.hold) == ("2", True)
    plan = step(status, held, complete("1", 2), registry=DOWN)
    assert plan.deploy_version == "1"

    moved = plan_canary(CANARY, status.rollout, inputs(target="3"), T0)
    assert moved.status is not None
    assert (moved.status.version, moved.status.step, moved.canary_version) == ("3", 0, "3")
    assert [e[1] for e in moved.events] == ["CanaryAborted", "RolloutStarted"]
    back = plan_canary(CANARY, status.rollout, inputs(target="1"), T0)
    assert back.status is not None
    assert (back.status.phase, back.canary_version, back.aborted) == ("Aborted", None, None)


def test_the_first_version_and_the_replace_strategy_have_no_canary() -> None:
    first = plan_canary(CANARY, None, inputs(current=None, target="1"), T0)
    assert (first.status, first.canary_version, first.hold) == (None, None, False)
    replace = spec("fraud", serving={"runtime": "batched"})
    assert plan_canary(replace, None, inputs(), T0).canary_version is None
    plan = step(serving_1(), first, in_progress("1"))
    assert plan.status.rollout is None
