"""Canary and shadow rollouts: shares rounded to pods, judgements with their numbers, steps,
promotion and abort, as the rollout decision carries them (no pod of the version serves everyone
before every step passed; an aborted version is a failed one; a promotion moves
promote.setAlias)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from mlflow_operator.api.modeldeployment import (
    CanaryAnalysis,
    CanaryStatus,
    ModelDeploymentSpec,
    ModelDeploymentStatus,
    ShadowAnalysis,
)
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
    judge_shadow,
    plan_canary,
    share,
    trial_of,
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
    seconds: int = 0, registry: RegistryState = SYNCED, md: ModelDeploymentSpec = CANARY,
) -> RolloutPlan:  # fmt: skip
    return plan_rollout(
        md, 1, last, registry, Resolved(target) if registry.synced else None, deployment,
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


# -- strategy Shadow ---------------------------------------------------------------------------

FAST = {0.01: 95.0, 0.05: 100.0, float("inf"): 100.0}
SHADOW_ANALYSIS = {
    "interval": "10s",
    "minRequests": 20,
    "maxErrorRate": 0.05,
    "maxDisagreementRate": 0.1,
}


def shadow_spec(
    analysis: dict[str, Any] | None = None, set_alias: str | None = "production"
) -> ModelDeploymentSpec:
    return spec(
        "fraud",
        serving={"runtime": "batched", "replicas": 3},
        rollout={
            "strategy": "Shadow",
            "shadow": {"percent": 20, "duration": "60s", "analysis": analysis or SHADOW_ANALYSIS},
        },
        **({"promote": {"setAlias": set_alias}} if set_alias is not None else {}),
    )


SHADOW = shadow_spec()


def compared(differed: float, agreed: float, version: str = "2") -> dict[tuple[str, str], float]:
    """The serving pods' outcomes of the copies they sent a shadow of `version`."""
    return {(version, "disagreed"): differed, (version, "agreed"): agreed}


def shadow_judgement(
    shadow: Traffic, mirrored: dict[tuple[str, str], float], md: ModelDeploymentSpec = SHADOW
) -> Judgement:
    return judge_shadow(
        md.rollout.shadow.analysis, shadow, Traffic(200, 0, FAST, mirrored), version="2"
    )


def shadow_inputs(**kw: Any) -> CanaryInputs:
    base: dict[str, Any] = {
        "stable_pods": 3,
        "canary": CanaryObservation(exists=True, version="2", ready=1),
    }
    return inputs(**(base | kw))


def shadowing(md: ModelDeploymentSpec = SHADOW) -> tuple[ModelDeploymentStatus, CanaryStatus]:
    """Version 1 serves on 3 pods; a shadow of version 2 started at T0."""
    serving = plan_rollout(
        md, 1, ModelDeploymentStatus(), SYNCED, Resolved("1"), complete("1", 3), T0
    ).status
    started = plan_canary(md, None, shadow_inputs(canary=CanaryObservation()), T0)
    status = step(serving, started, complete("1", 3), md=md).status
    assert status.rollout is not None
    return status, status.rollout


def test_a_shadow_is_one_trial_step_that_copies_a_share_and_answers_nobody() -> None:
    trial = trial_of(SHADOW)
    assert trial is not None
    assert (trial.kind, trial.noun, trial.steps) == (
        "Shadow",
        "shadow",
        ((20, timedelta(seconds=60)),),
    )
    assert trial.analysis == SHADOW.rollout.shadow.analysis
    # the share of the stable pods' requests it answers, rounded up, at least one pod
    assert [trial.pods(0, stable) for stable in (0, 1, 3, 5, 6, 10)] == [1, 1, 1, 1, 2, 2]
    half = trial_of(
        spec(
            serving={"runtime": "batched"},
            rollout={"strategy": "Shadow", "shadow": {"percent": 50}},
        )
    )
    assert half is not None
    assert [half.pods(0, stable) for stable in (1, 3, 10)] == [1, 2, 5]
    assert trial.weight(0, 3, 3) == 0  # callers never get a shadow's answers
    assert trial_of(SHADOW.model_copy(update={"suspend": True})) is None


def test_a_good_shadow_runs_its_duration_then_every_pod_moves_and_the_alias_follows() -> None:
    serving = plan_rollout(
        SHADOW, 1, ModelDeploymentStatus(), SYNCED, Resolved("1"), complete("1", 3), T0
    ).status
    started = plan_canary(SHADOW, None, shadow_inputs(canary=CanaryObservation()), T0)
    assert started.status is not None
    assert (started.status.phase, started.status.weight, started.status.step) == ("Shadow", 0, 0)
    assert (started.canary_version, started.canary_replicas, started.hold) == ("2", 1, True)
    assert started.status.canary_replicas == 1  # ceil(3 pods * 20%)
    message = (
        "shadow of version 2: 20% of the requests copied to 1 pod(s), answers never returned "
        "(serving: 1)"
    )
    assert started.events == (("Normal", "RolloutStarted", message),)
    plan = step(serving, started, complete("1", 3), md=SHADOW)
    assert plan.deploy_version == "1"  # the serving pods keep answering everyone
    assert cond(plan, "Ready")[:2] == ("True", "Serving")
    assert cond(plan, "Progressing")[1:] == ("Shadow", message)
    assert [e.reason for e in plan.events] == ["RolloutStarted"]
    assert plan.status.history[-1].version == "2"
    assert plan.status.history[-1].result == "InProgress"
    assert plan.rolling_out
    assert plan.promoted_version is None

    good = shadow_judgement(Traffic(40, 0, FAST), compared(2, 38))
    assert good.verdict == "Passed"
    # passed before its duration: it runs on
    early = plan_canary(
        SHADOW, plan.status.rollout, shadow_inputs(judgement=good), T0 + timedelta(seconds=30)
    )
    assert early.status is not None
    assert (early.status.phase, early.canary_version, early.hold) == ("Shadow", "2", True)
    assert early.status.analysis == f"Passed: {good.message}"
    assert early.status.disagreement_rate == pytest.approx(0.05)
    assert early.events == ()
    assert early.progress == (
        f"shadow of version 2: 20% of the requests copied to 1 pod(s); Passed: {good.message}"
    )
    assert analysis_due(SHADOW, early.status, T0 + timedelta(seconds=35)) is False
    assert analysis_due(SHADOW, early.status, T0 + timedelta(seconds=40)) is True
    # past its duration but short of minRequests answers: it waits
    few = shadow_judgement(Traffic(12, 0, FAST), compared(0, 12))
    assert few.verdict == "Waiting"
    waiting = plan_canary(
        SHADOW, early.status, shadow_inputs(judgement=few), T0 + timedelta(seconds=90)
    )
    assert waiting.status is not None
    assert (waiting.status.phase, waiting.events) == ("Shadow", ())
    # past its duration, enough answers, but its pod not ready: it waits too
    unready = shadow_inputs(judgement=good, canary=CanaryObservation(exists=True, version="2"))
    held = plan_canary(SHADOW, early.status, unready, T0 + timedelta(seconds=90))
    assert held.status is not None
    assert held.status.phase == "Shadow"
    assert held.progress is not None
    assert "; 0/1 shadow pods ready" in held.progress

    promoting = plan_canary(
        SHADOW, early.status, shadow_inputs(judgement=good), T0 + timedelta(seconds=90)
    )
    assert promoting.status is not None
    assert promoting.status.phase == "Promoting"
    assert promoting.events == ((
        "Normal", "CanaryPromoted",
        f"shadow of version 2 passed: promoting it to every pod ({good.message})",
    ),)  # fmt: skip
    assert promoting.promoted is None
    plan = step(plan.status, promoting, complete("1", 3), seconds=90, md=SHADOW)
    assert plan.deploy_version == "2"  # only now: a Replace of a version proven on copies
    assert plan.promoted_version is None

    moving = plan_canary(
        SHADOW, plan.status.rollout, shadow_inputs(current="2", stable_complete=False), T0
    )
    assert moving.status is not None
    assert (moving.status.phase, moving.promoted, moving.events) == ("Promoting", None, ())
    done = plan_canary(SHADOW, plan.status.rollout, shadow_inputs(current="2"), T0)
    assert done.status is not None
    assert (done.status.phase, done.canary_version, done.promoted) == ("Promoted", None, "2")
    assert done.events == ((
        "Normal", "AliasMoved",
        "moving MLflow alias 'production' to version 2 (promote.setAlias)",
    ),)  # fmt: skip
    plan = step(plan.status, done, complete("2", 3), seconds=120, md=SHADOW)
    assert plan.status.serving_version == "2"
    assert plan.succeeded_version == "2"
    assert plan.promoted_version == "2"
    assert "AliasMoved" in [e.reason for e in plan.events]
    # the next reconcile promotes nothing again
    after = plan_canary(SHADOW, plan.status.rollout, shadow_inputs(current="2"), T0)
    assert (after.promoted, after.events) == (None, ())
    assert (
        step(plan.status, after, complete("2", 3), seconds=130, md=SHADOW).promoted_version is None
    )


@pytest.mark.parametrize("md", [shadow_spec(set_alias=None), CANARY], ids=["shadow", "canary"])
def test_a_promotion_without_set_alias_moves_no_alias(md: ModelDeploymentSpec) -> None:
    trial = trial_of(md)
    assert trial is not None
    promoting = CanaryStatus(phase="Promoting", version="2", canary_replicas=1, weight=0)
    done = plan_canary(md, promoting, shadow_inputs(current="2"), T0)
    assert done.status is not None
    assert (done.status.phase, done.promoted, done.events) == ("Promoted", "2", ())


def test_a_canary_promotion_moves_the_alias_of_set_alias_too() -> None:
    md = CANARY.model_copy(update={"promote": SHADOW.promote})
    promoting = CanaryStatus(phase="Promoting", version="2", canary_replicas=2, weight=50)
    done = plan_canary(md, promoting, inputs(current="2"), T0)
    assert done.promoted == "2"
    assert [e[1] for e in done.events] == ["AliasMoved"]


def test_a_shadow_that_fails_on_its_answers_is_aborted_and_its_version_is_a_failed_one() -> None:
    status, rollout = shadowing()
    bad = shadow_judgement(Traffic(40, 10, FAST), compared(1, 29))
    assert bad.verdict == "Failed"
    aborted = plan_canary(SHADOW, rollout, shadow_inputs(judgement=bad), T0 + timedelta(seconds=10))
    assert aborted.status is not None
    assert (aborted.status.phase, aborted.canary_version, aborted.promoted) == (
        "Aborted",
        None,
        None,
    )
    assert aborted.aborted == f"shadow aborted: {bad.message}"
    assert aborted.aborted.startswith("shadow aborted: error rate 25.0% > stable 0.0% + 5%")
    plan = step(status, aborted, complete("1", 3), seconds=10, md=SHADOW)
    assert plan.deploy_version == "1"
    assert plan.status.failed_versions == ["2"]
    assert plan.failed_version == "2"
    assert plan.promoted_version is None
    assert cond(plan, "Degraded")[:2] == ("True", "CanaryAborted")
    assert "AliasMoved" not in [e.reason for e in plan.events]
    # pods that never become available abort it as well, without a weight in the message
    stuck = CanaryObservation(
        exists=True, version="2", deadline_exceeded=True, trouble="pod x: OOMKilled"
    )
    assert plan_canary(SHADOW, rollout, shadow_inputs(canary=stuck), T0).aborted == (
        "shadow aborted: pod x: OOMKilled"
    )


def test_a_shadow_is_aborted_on_disagreement_only_once_min_requests_copies_were_compared() -> None:
    _, rollout = shadowing()
    # 5 of 10 compared differ: far above 10%, but 10 < minRequests 20: not judged yet
    early = shadow_judgement(Traffic(10, 0, FAST), compared(5, 5))
    assert (early.verdict, early.disagreement_rate) == ("Waiting", 0.5)
    assert early.message.startswith("shadow: 10/20 requests")
    kept = plan_canary(SHADOW, rollout, shadow_inputs(judgement=early), T0 + timedelta(seconds=10))
    assert kept.status is not None
    assert (kept.status.phase, kept.status.failures, kept.aborted) == ("Shadow", 0, None)
    assert kept.status.disagreement_rate == 0.5

    # 8 of 40 differ: 20% > 10%
    late = shadow_judgement(Traffic(40, 0, FAST), compared(8, 32))
    assert late == Judgement("Failed", "predictions differ on 20.0% > 10% (8 of 40 compared)", 0.2)
    aborted = plan_canary(
        SHADOW, kept.status, shadow_inputs(judgement=late), T0 + timedelta(seconds=20)
    )
    assert aborted.status is not None
    assert aborted.status.phase == "Aborted"
    assert aborted.status.disagreement_rate == 0.2
    assert aborted.aborted == "shadow aborted: predictions differ on 20.0% > 10% (8 of 40 compared)"
    # exactly at the limit passes; the copies of another shadow version do not count
    at_limit = shadow_judgement(
        Traffic(40, 0, FAST), compared(4, 36) | compared(40, 0, version="3")
    )
    assert (at_limit.verdict, at_limit.disagreement_rate) == ("Passed", 0.1)


def test_a_shadow_is_not_promoted_before_its_disagreement_could_be_judged() -> None:
    """40 answers of the shadow, but the serving pods compared only 19 copies (the rest failed
    on one side, or the serving pods restarted and their counters began again): 15 differ.
    With maxDisagreementRate set it waits for minRequests compared copies."""
    _, rollout = shadowing()
    for mirrored in (compared(15, 4), {}):
        judgement = shadow_judgement(Traffic(40, 0, FAST), mirrored)
        assert judgement.verdict == "Waiting", judgement
        plan = plan_canary(
            SHADOW, rollout, shadow_inputs(judgement=judgement), T0 + timedelta(seconds=90)
        )
        assert plan.status is not None
        assert (plan.status.phase, plan.canary_version, plan.events) == ("Shadow", "2", ())


def test_without_max_disagreement_rate_disagreement_is_reported_not_judged() -> None:
    md = shadow_spec({"interval": "10s", "minRequests": 20, "maxErrorRate": 0.05})
    assert md.rollout.shadow.analysis.max_disagreement_rate is None
    _, rollout = shadowing(md)
    seen = shadow_judgement(Traffic(40, 0, FAST), compared(36, 4), md)
    assert seen == Judgement(
        "Passed",
        "shadow: 40 requests, 0.0% errors (stable 0.0%), p99 50ms; stable p99 50ms (1.0x); "
        "predictions differ on 90.0% (36 of 40 compared)",
        0.9,
    )
    promoting = plan_canary(md, rollout, shadow_inputs(judgement=seen), T0 + timedelta(seconds=60))
    assert promoting.status is not None
    assert promoting.status.phase == "Promoting"
    assert promoting.status.disagreement_rate == 0.9
    assert promoting.status.analysis == f"Passed: {seen.message}"
    # nothing compared: no rate at all
    assert shadow_judgement(Traffic(40, 0, FAST), {}, md).disagreement_rate is None


def test_a_shadow_judgement_names_its_numbers() -> None:
    analysis = ShadowAnalysis(min_requests=20, max_error_rate=0.05, max_disagreement_rate=0.05)
    stable = Traffic(1000, 10, FAST, compared(3, 97))
    assert judge_shadow(analysis, Traffic(12, 0, FAST), stable, "2") == Judgement(
        "Waiting", "shadow: 12/20 requests; predictions differ on 3.0% (3 of 100 compared)", 0.03
    )
    # its own failures come first, with the rate seen beside them
    failed = judge_shadow(analysis, Traffic(100, 20, FAST), stable, "2")
    assert failed.verdict == "Failed"
    assert failed.message == (
        "error rate 20.0% > stable 1.0% + 5% (shadow: 100 requests, 20.0% errors (stable 1.0%), "
        "p99 50ms; stable p99 50ms (1.0x)); predictions differ on 3.0% (3 of 100 compared)"
    )
    differing = Traffic(1000, 10, FAST, compared(8, 92))
    assert judge_shadow(analysis, Traffic(100, 0, FAST), differing, "2") == Judgement(
        "Failed", "predictions differ on 8.0% > 5% (8 of 100 compared)", 0.08
    )
    # enough copies compared fail it even before the shadow's own answers reach minRequests
    assert judge_shadow(analysis, Traffic(12, 0, FAST), differing, "2").verdict == "Failed"
    # a version the serving pods never copied to (they still read the last shadow's config):
    # nothing compared, no rate; its answers pass a canary's judgement, yet the shadow waits,
    # with maxDisagreementRate or without
    alone = judge(analysis, Traffic(100, 0, FAST), stable, noun="shadow")
    assert alone.verdict == "Passed"
    unjudged = analysis.model_copy(update={"max_disagreement_rate": None})
    for limits in (analysis, unjudged):
        unseen = judge_shadow(limits, Traffic(100, 0, FAST), stable, "9")
        assert (unseen.verdict, unseen.disagreement_rate) == ("Waiting", None)
        assert unseen.message == f"{alone.message}; 0/20 copies to version 9 compared"


def test_a_strategy_switched_from_canary_to_shadow_starts_the_version_over_as_a_shadow() -> None:
    status = step(serving_1(), plan_canary(CANARY, None, inputs(), T0), complete("1", 2)).status
    second = plan_canary(
        CANARY, status.rollout, inputs(judgement=PASSED), T0 + timedelta(seconds=40)
    )
    assert second.status is not None
    assert (second.status.phase, second.status.step, second.status.weight) == ("Canary", 1, 50)
    restarted = plan_canary(SHADOW, second.status, shadow_inputs(), T0 + timedelta(seconds=50))
    assert restarted.status is not None
    assert (restarted.status.phase, restarted.status.version) == ("Shadow", "2")
    assert (restarted.status.step, restarted.status.weight, restarted.status.failures) == (0, 0, 0)
    assert restarted.status.step_started == T0 + timedelta(seconds=50)
    assert restarted.status.analysis is None
    assert (restarted.canary_version, restarted.canary_replicas) == ("2", 1)
    assert [e[1] for e in restarted.events] == ["CanaryAborted", "RolloutStarted"]
    assert restarted.events[0][2].startswith("canary of version 2 ended")
    assert restarted.events[1][2].startswith("shadow of version 2: 20% of the requests copied")
    # and back: a shadow switched to Canary starts at the canary's first step
    back = plan_canary(CANARY, restarted.status, inputs(), T0 + timedelta(seconds=60))
    assert back.status is not None
    assert (back.status.phase, back.status.step, back.status.weight) == ("Canary", 0, 33)
    assert back.events[0][2].startswith("shadow of version 2 ended")


def test_a_shadow_holds_while_the_registry_is_down_and_ends_when_it_moves_on() -> None:
    status, rollout = shadowing()
    held = plan_canary(SHADOW, rollout, shadow_inputs(synced=False, target=None), T0)
    assert held.status == rollout
    assert (held.canary_version, held.canary_replicas, held.hold) == ("2", 1, True)
    assert held.progress == "shadow of version 2 holds step 1/1 while the registry cannot be read"
    plan = step(status, held, complete("1", 3), registry=DOWN, md=SHADOW)
    assert plan.deploy_version == "1"
    assert plan.promoted_version is None
    # a passing judgement taken while the registry is down promotes nothing
    good = shadow_judgement(Traffic(40, 0, FAST), compared(0, 40))
    down = shadow_inputs(synced=False, target=None, judgement=good)
    assert plan_canary(SHADOW, rollout, down, T0 + timedelta(seconds=90)).status == rollout

    moved = plan_canary(SHADOW, rollout, shadow_inputs(target="3"), T0)
    assert moved.status is not None
    assert (moved.status.phase, moved.status.version, moved.canary_version) == ("Shadow", "3", "3")
    assert moved.events[0] == (
        "Normal",
        "CanaryAborted",
        "shadow of version 2 ended: the registry selects version 3 now",
    )
    back = plan_canary(SHADOW, rollout, shadow_inputs(target="1"), T0)
    assert back.status is not None
    assert (back.status.phase, back.canary_version, back.aborted) == ("Aborted", None, None)
    assert back.status.analysis == "shadow of version 2 ended: the registry selects version 1 again"


def test_traffic_adds_up_the_copies_sent_to_each_shadow_version() -> None:
    a = Traffic(10, 1, {0.1: 10.0}, {("2", "agreed"): 5.0, ("2", "dropped"): 1.0})
    b = Traffic(
        20, 0, {0.1: 20.0}, {("2", "agreed"): 7.0, ("2", "disagreed"): 2.0, ("3", "agreed"): 4.0}
    )
    total = a + b
    assert (total.requests, total.errors, total.buckets) == (30, 1, {0.1: 30.0})
    assert total.mirrored == {
        ("2", "agreed"): 12.0, ("2", "dropped"): 1.0, ("2", "disagreed"): 2.0, ("3", "agreed"): 4.0,
    }  # fmt: skip
    assert a.mirrored == {("2", "agreed"): 5.0, ("2", "dropped"): 1.0}  # neither is changed
    assert total.disagreement("2") == (2.0, 14.0)  # dropped copies were never compared
    assert total.disagreement("3") == (0.0, 4.0)
    assert Traffic().disagreement("2") == (0.0, 0.0)
    assert (Traffic() + Traffic()).mirrored == {}


def test_the_copies_a_pod_mirrored_are_read_from_its_metrics() -> None:
    registry = CollectorRegistry()
    requests = Counter("mlflow_serving_requests", "", ("model", "status"), registry=registry)
    mirrored = Counter(
        "mlflow_serving_mirrored_requests",
        "",
        ("model", "version", "candidate_version", "outcome"),
        registry=registry,
    )
    requests.labels(model="fraud", status="200").inc(100)
    for candidate, outcome, n in (
        ("2", "agreed", 18), ("2", "disagreed", 2), ("2", "candidate_failed", 1),
        ("2", "dropped", 3), ("3", "disagreed", 4),
    ):  # fmt: skip
        mirrored.labels(
            model="fraud", version="1", candidate_version=candidate, outcome=outcome
        ).inc(n)
    # a second label set of the same outcome (another model label) is summed
    mirrored.labels(model="other", version="1", candidate_version="2", outcome="agreed").inc(2)
    traffic = parse_traffic(generate_latest(registry).decode())
    assert traffic is not None
    assert (traffic.requests, traffic.errors) == (100, 0)  # copies are not answers of this pod
    assert traffic.mirrored == {
        ("2", "agreed"): 20, ("2", "disagreed"): 2, ("2", "candidate_failed"): 1,
        ("2", "dropped"): 3, ("3", "disagreed"): 4,
    }  # fmt: skip
    assert traffic.disagreement("2") == (2, 22)
    plain = CollectorRegistry()
    Counter("mlflow_serving_requests", "", ("status",), registry=plain).labels(status="200").inc()
    alone = parse_traffic(generate_latest(plain).decode())
    assert alone is not None
    assert alone.mirrored == {}


# -- canary.httpRouteRef -----------------------------------------------------------------------

ROUTED = spec(
    "fraud",
    serving={"runtime": "batched", "replicas": 3},
    rollout={
        "strategy": "Canary",
        "canary": {
            "steps": [{"weight": 10, "pause": "30s"}, {"weight": 50, "pause": "30s"}],
            "analysis": {"interval": "10s", "minRequests": 20, "maxErrorRate": 0.05},
            "httpRouteRef": {"name": "fraud-route"},
        },
    },
)


def test_a_routed_canary_is_sized_for_its_share_and_weighs_each_step_exactly() -> None:
    trial = trial_of(ROUTED)
    assert trial is not None
    assert trial.routed
    # ceil(stable * weight / 100), at least one pod; the weight is the step's, whatever the pods
    assert [trial.pods(0, stable) for stable in (0, 1, 3, 10, 11, 100)] == [1, 1, 1, 1, 2, 10]
    assert [trial.pods(1, stable) for stable in (0, 1, 3, 10, 11)] == [1, 1, 2, 5, 6]
    assert [trial.weight(0, pods, 3) for pods in (1, 2, 5)] == [10, 10, 10]
    assert trial.weight(1, 2, 3) == 50
    # by pod count, the same step is a share of all the pods
    unrouted = trial_of(CANARY)
    assert unrouted is not None
    assert not unrouted.routed
    assert unrouted.weight(0, 1, 2) == 33


def test_a_routed_canary_starts_at_the_steps_weight_by_the_routes_weights() -> None:
    started = plan_canary(ROUTED, None, inputs(stable_pods=3, canary=CanaryObservation()), T0)
    assert started.status is not None
    assert (started.status.phase, started.status.weight, started.status.step) == ("Canary", 10, 0)
    assert (started.canary_version, started.canary_replicas) == ("2", 1)
    assert started.status.canary_replicas == 1
    message = "canary of version 2: 10% (1 pod(s), by the HTTPRoute's weights), step 1/2 (was 1)"
    assert started.events == (("Normal", "RolloutStarted", message),)
    assert started.progress == message

    second = plan_canary(
        ROUTED, started.status, inputs(stable_pods=3, judgement=PASSED), T0 + timedelta(seconds=40)
    )
    assert second.status is not None
    assert (second.status.step, second.status.weight) == (1, 50)
    assert (second.status.canary_replicas, second.canary_replicas) == (2, 2)  # ceil(3 * 50%)
    assert [e[1] for e in second.events] == ["CanaryStep"]


def test_a_routes_problem_is_in_the_progress_of_the_running_canary() -> None:
    started = plan_canary(ROUTED, None, inputs(stable_pods=3, canary=CanaryObservation()), T0)
    assert started.status is not None
    problem = "spec.rollout.canary.httpRouteRef: HTTPRoute 'fraud-route' not found in namespace ml"
    held = plan_canary(
        ROUTED, started.status, inputs(stable_pods=3, route_problem=problem),
        T0 + timedelta(seconds=5),
    )  # fmt: skip
    assert held.progress is not None
    assert held.progress.startswith("canary of version 2: step 1/2, 10%")
    assert held.progress.endswith(f"; weights not set: {problem}")
    # with a judgement, the problem comes after it
    judged = plan_canary(
        ROUTED, started.status, inputs(stable_pods=3, judgement=PASSED, route_problem=problem),
        T0 + timedelta(seconds=10),
    )  # fmt: skip
    assert judged.progress is not None
    assert f"; Passed: {PASSED.message}; weights not set: {problem}" in judged.progress
    # no problem: no such words
    fine = plan_canary(ROUTED, started.status, inputs(stable_pods=3), T0 + timedelta(seconds=5))
    assert fine.progress is not None
    assert "weights not set" not in fine.progress
