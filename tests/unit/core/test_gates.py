"""Promotion gates: which version is judged, the verdict with its numbers, and what a blocked
version does to the rollout decision (no pod of it; what serves keeps serving)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from mlflow_operator.api.modeldeployment import ModelDeploymentStatus
from mlflow_operator.core.conditions import get_condition
from mlflow_operator.core.modeldeployment.gates import (
    GateQuestion,
    GateVerdict,
    RunMetrics,
    gate_question,
    judge,
)
from mlflow_operator.core.modeldeployment.observation import DeploymentObservation
from mlflow_operator.core.modeldeployment.resolution import Resolved, Unresolved
from mlflow_operator.core.modeldeployment.rollout import RolloutPlan, plan_rollout
from mlflow_operator.core.modeldeployment.write_back import version_tag_values
from mlflow_operator.core.registry_view import ModelSnapshot, RegistryState, VersionInfo
from tests.unit.observations import complete
from tests.unit.specs import spec

NOW = datetime(2026, 12, 2, 10, 0, tzinfo=UTC)
SYNCED = RegistryState(snapshot=None, synced=True, last_sync=NOW)
GATES: dict[str, Any] = {
    "requireTags": {"validation_status": "approved"},
    "metrics": [{"name": "accuracy", "min": 0.9}],
    "notWorseThanServing": [{"metric": "accuracy", "tolerance": 0.01}],
}
GATED = spec("fraud", gates=GATES)


def question(version: str = "3", tags: dict[str, str] | None = None, **kw: Any) -> GateQuestion:
    base: dict[str, Any] = {
        "version": version,
        "run_id": f"run{version}",
        "tags": {"validation_status": "approved"} if tags is None else tags,
        "serving_version": "2",
        "serving_run_id": "run2",
    }
    base.update(kw)
    return GateQuestion(**base)


def metrics(run_id: str, **values: float) -> RunMetrics:
    return RunMetrics(run_id, values)


def test_an_approved_version_better_than_the_serving_one_passes_and_says_why() -> None:
    assert GATED.gates is not None
    verdict = judge(
        GATED.gates, question(), metrics("run3", accuracy=0.95), metrics("run2", accuracy=0.93)
    )
    assert verdict.passed
    assert verdict.message == (
        "version 3 passed: tag validation_status=approved; accuracy 0.95 within >= 0.9; "
        "accuracy 0.95 vs 0.93 of serving version 2 (tolerance 0.01)"
    )


def test_every_failing_gate_is_named_with_its_values() -> None:
    assert GATED.gates is not None
    verdict = judge(
        GATED.gates,
        question(tags={"validation_status": "pending"}),
        metrics("run3", accuracy=0.85),
        metrics("run2", accuracy=0.93),
    )
    assert not verdict.passed
    assert verdict.message == (
        "version 3 is blocked: tag validation_status is 'pending', not 'approved' "
        "(spec.gates.requireTags); accuracy 0.85 < min 0.9 (spec.gates.metrics[0]); "
        "accuracy 0.85 vs 0.93 of serving version 2: worse by 0.08, more than the tolerance "
        "0.01 (higher is better; spec.gates.notWorseThanServing[0])"
    )


def test_within_the_tolerance_passes_and_lower_is_better_turns_the_comparison() -> None:
    gates = spec("fraud", gates={"notWorseThanServing": [
        {"metric": "rmse", "tolerance": 0.5, "better": "lower"},
    ]}).gates  # fmt: skip
    assert gates is not None
    worse = judge(gates, question(), metrics("run3", rmse=3.0), metrics("run2", rmse=2.0))
    assert not worse.passed
    assert "rmse 3 vs 2 of serving version 2: worse by 1" in worse.message
    close = judge(gates, question(), metrics("run3", rmse=2.4), metrics("run2", rmse=2.0))
    assert close.passed


def test_a_missing_tag_metric_or_run_blocks_and_says_which() -> None:
    assert GATED.gates is not None
    verdict = judge(GATED.gates, question(tags={}, run_id=""), None, metrics("run2", loss=1.0))
    assert not verdict.passed
    assert "tag validation_status is not set" in verdict.message
    assert "version 3 has no MLflow run, so no accuracy (spec.gates.metrics[0])" in verdict.message
    assert "serving version 2's run run2 has no metric accuracy" in verdict.message


def test_an_unreadable_run_blocks_with_the_error_and_no_serving_version_compares_with_nothing() -> (
    None
):
    assert GATED.gates is not None
    unreadable = RunMetrics("run3", {}, error="MLflow at http://m answered HTTP 500")
    verdict = judge(
        GATED.gates, question(serving_version=None, serving_run_id=""), unreadable, None
    )
    assert not verdict.passed
    assert "the metrics of version 3's run run3 cannot be read: MLflow at http://m" in (
        verdict.message
    )
    assert "no version serves yet to compare with" not in verdict.message  # it passed that one
    first = judge(
        GATED.gates, question(serving_version=None, serving_run_id=""),
        metrics("run3", accuracy=0.91), None,
    )  # fmt: skip
    assert first.passed
    assert "accuracy: no version serves yet to compare with" in first.message


def test_only_a_version_new_here_is_judged_and_only_the_runs_the_gates_need_are_read() -> None:
    snapshot = ModelSnapshot(
        "fraud",
        aliases={"champion": "3"},
        versions={
            "2": VersionInfo("2", run_id="run2"),
            "3": VersionInfo("3", run_id="run3", tags={"validation_status": "approved"}),
        },
    )
    asked = gate_question(GATED, Resolved("3", "run3"), snapshot, {"2", None}, "2")
    assert asked == question()
    assert asked.runs_to_read(GATED.gates) == ["run3", "run2"]  # type: ignore[arg-type]
    tags_only = spec("fraud", gates={"requireTags": {"validation_status": "approved"}})
    assert asked.runs_to_read(tags_only.gates) == []  # type: ignore[arg-type]
    # rolled out here already, not resolved, or no gates: nothing to judge
    assert gate_question(GATED, Resolved("3"), snapshot, {"3"}, "3") is None
    assert gate_question(GATED, Unresolved("AliasNotFound", "x"), snapshot, set(), "2") is None
    assert gate_question(spec("fraud"), Resolved("3"), snapshot, set(), "2") is None


def _step(
    last: ModelDeploymentStatus,
    deployment: DeploymentObservation,
    gate: GateVerdict | None,
    *,
    target: str = "3",
    minutes: int = 0,
) -> RolloutPlan:
    return plan_rollout(
        GATED, 1, last, SYNCED, Resolved(target), deployment, NOW + timedelta(minutes=minutes),
        gate=gate,
    )  # fmt: skip


def _serving_2() -> ModelDeploymentStatus:
    plan = plan_rollout(spec("fraud"), 1, ModelDeploymentStatus(), SYNCED, Resolved("2"),
                        complete("2"), NOW)  # fmt: skip
    return plan.status


def cond(plan: RolloutPlan, type_: str) -> tuple[str, str, str]:
    c = get_condition(plan.status.conditions, type_)
    assert c is not None
    return c.status, c.reason, c.message


def test_a_blocked_version_gets_no_pod_ready_stays_and_it_is_told_once() -> None:
    blocked = GateVerdict("3", False, "version 3 is blocked: tag validation_status is not set")
    plan = _step(_serving_2(), complete("2"), blocked)
    assert plan.deploy_version == "2"  # the template keeps pinning the serving version
    assert plan.status.target_version == "3"
    assert cond(plan, "Ready")[:2] == ("True", "Serving")
    assert cond(plan, "Progressing") == ("False", "GateBlocked", blocked.message)
    assert [(e.type, e.reason, e.message) for e in plan.events] == [
        ("Warning", "GateBlocked", blocked.message)
    ]
    assert plan.status.gates is not None
    assert (plan.status.gates.version, plan.status.gates.verdict) == ("3", "Blocked")
    assert version_tag_values(plan, NOW) == [
        ("3", f"blocked by spec.gates at 2026-12-02T10:00:00Z: {blocked.message}")
    ]

    again = _step(plan.status, complete("2"), blocked, minutes=1)
    assert again.events == ()
    assert version_tag_values(again, NOW) == []

    approved = GateVerdict("3", True, "version 3 passed: tag validation_status=approved")
    rolled = _step(again.status, complete("2"), approved, minutes=2)
    assert rolled.deploy_version == "3"
    assert [e.reason for e in rolled.events] == ["RolloutStarted"]
    assert rolled.status.gates is not None
    assert rolled.status.gates.verdict == "Passed"


def test_a_blocked_first_version_serves_nothing_and_ready_says_why() -> None:
    blocked = GateVerdict("1", False, "version 1 is blocked: accuracy 0.5 < min 0.9")
    plan = _step(ModelDeploymentStatus(), DeploymentObservation(), blocked, target="1")
    assert plan.deploy_version is None
    assert cond(plan, "Ready") == ("False", "GateBlocked", blocked.message)
    assert cond(plan, "Progressing")[:2] == ("False", "GateBlocked")


def test_removing_the_gates_clears_their_status() -> None:
    blocked = GateVerdict("3", False, "version 3 is blocked: x")
    plan = _step(_serving_2(), complete("2"), blocked)
    ungated = plan_rollout(spec("fraud"), 2, plan.status, SYNCED, Resolved("3"), complete("2"), NOW)
    assert ungated.status.gates is None
    assert ungated.deploy_version == "3"
