"""The operator's side of drift (serving.monitoring.drift): the serving runtime's metrics as
the operator parses them, the judgement over pods, and what status, conditions, Events and
MLflow tags say over a sequence of reconciles."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from mlflow_operator.api.modeldeployment import ModelDeploymentSpec, ModelDeploymentStatus
from mlflow_operator.core.conditions import get_condition
from mlflow_operator.core.modeldeployment.monitoring import PodDrift, drifting_count, judge_drift
from mlflow_operator.core.modeldeployment.resolution import Resolved
from mlflow_operator.core.modeldeployment.rollout import RolloutPlan, plan_rollout
from mlflow_operator.core.modeldeployment.write_back import drift_tag_value
from mlflow_operator.core.registry_view import RegistryState
from mlflow_operator.podmetrics import parse_drift
from mlflow_operator_serve.metrics import ServingMetrics
from tests.unit.observations import complete
from tests.unit.specs import spec

NOW = datetime(2026, 12, 3, 10, 0, tzinfo=UTC)
SYNCED = RegistryState(snapshot=None, synced=True, last_sync=NOW)
CALM = PodDrift({("input", "amount"): 0.03, ("output", "prediction"): 0.01}, "live", 1000)


def monitored(**monitoring: Any) -> ModelDeploymentSpec:
    return spec("fraud", serving={"runtime": "batched", "monitoring": monitoring})


def step(
    last: ModelDeploymentStatus, the_spec: ModelDeploymentSpec, readings: list[PodDrift] | None,
    minutes: int = 0,
) -> RolloutPlan:  # fmt: skip
    """One reconcile of a ModelDeployment steadily serving version 1, its pods reading so."""
    monitoring = the_spec.serving.monitoring
    threshold = monitoring.thresholds.drift if monitoring.thresholds else None
    drift = (
        judge_drift("1", readings, threshold, last.monitoring)
        if readings is not None and monitoring.drift_enabled
        else None
    )
    return plan_rollout(
        the_spec, 1, last, SYNCED, Resolved("1"), complete("1"),
        NOW + timedelta(minutes=minutes), drift=drift,
    )  # fmt: skip


def serving() -> ModelDeploymentStatus:
    plan = plan_rollout(spec("fraud"), 1, ModelDeploymentStatus(), SYNCED, Resolved("1"),
                        complete("1"), NOW)  # fmt: skip
    assert plan.status.serving_version == "1"
    return plan.status


def drifting_condition(plan: RolloutPlan) -> tuple[str, str] | None:
    found = get_condition(plan.status.conditions, "Drifting")
    return None if found is None else (found.status, found.reason)


def test_the_runtimes_drift_metrics_are_what_the_operator_reads() -> None:
    metrics = ServingMetrics("fraud", "1")
    metrics.drift_reference("live", 1000)
    metrics.drift_scores({("input", "amount"): 0.31, ("output", "prediction"): 0.02})
    reading = parse_drift(metrics.render().decode())
    assert reading == PodDrift(
        {("input", "amount"): 0.31, ("output", "prediction"): 0.02}, "live", 1000
    )
    assert parse_drift("# no drift here\n") == PodDrift()


def test_the_worst_pod_counts_and_features_above_the_threshold_drift() -> None:
    one = PodDrift({("input", "amount"): 0.05, ("input", "country"): 0.4}, "live", 1000)
    other = PodDrift({("input", "amount"): 0.3, ("input", "country"): 0.1}, "live", 1000)
    verdict = judge_drift("1", [one, other], 0.25, None)
    assert verdict is not None
    assert verdict.status.drifting == ["country", "amount"]
    assert [(f.feature, f.drift) for f in verdict.status.features] == [
        ("country", 0.4), ("amount", 0.3)]  # fmt: skip
    assert verdict.condition is not None
    assert verdict.condition[:2] == ("True", "DriftDetected")
    assert verdict.status.message == (
        "drift above 0.25: country 0.40, amount 0.30 (PSI against the first 1000 rows served)"
    )
    assert verdict.newly_drifting == ("country", "amount")


def test_drift_is_announced_once_then_its_end() -> None:
    the_spec = monitored(thresholds={"drift": 0.25})
    plan = step(serving(), the_spec, [])
    assert drifting_condition(plan) == ("Unknown", "DriftUnknown")
    assert plan.status.monitoring is not None
    assert "no ready serving pod" in plan.status.monitoring.message
    assert drifting_count(plan.status) is None  # no series: the alert has nothing to judge

    plan = step(plan.status, the_spec, [CALM], minutes=1)
    assert drifting_condition(plan) == ("False", "NoDrift")
    assert plan.events == ()
    assert drifting_count(plan.status) == 0

    moved = PodDrift({("input", "amount"): 0.5, ("output", "prediction"): 0.3}, "live", 1000)
    plan = step(plan.status, the_spec, [moved], minutes=2)
    assert drifting_condition(plan) == ("True", "DriftDetected")
    assert drifting_count(plan.status) == 2
    assert [(e.type, e.reason) for e in plan.events] == [("Warning", "DriftDetected")]
    assert plan.events[0].message.startswith("version 1: drift above 0.25: amount 0.50, "
                                             "prediction (output) 0.30")  # fmt: skip
    assert plan.drift_detected is not None
    version, tag = drift_tag_value(plan.drift_detected, NOW)
    assert version == "1"
    assert tag.startswith("drift detected at 2026-12-03T10:00:00Z: drift above 0.25: amount")

    plan = step(plan.status, the_spec, [moved], minutes=3)  # still drifting: no news
    assert plan.events == ()
    assert plan.drift_detected is None
    plan = step(plan.status, the_spec, [], minutes=4)  # the pods did not answer: kept
    assert drifting_condition(plan) == ("True", "DriftDetected")

    plan = step(plan.status, the_spec, [CALM], minutes=5)
    assert drifting_condition(plan) == ("False", "NoDrift")
    assert [(e.type, e.reason) for e in plan.events] == [("Normal", "DriftResolved")]


def test_scores_without_a_threshold_are_shown_and_not_judged() -> None:
    plan = step(serving(), monitored(drift={}), [CALM])
    assert drifting_condition(plan) is None
    assert plan.status.monitoring is not None
    assert plan.status.monitoring.message == (
        "highest drift amount 0.03 (PSI against the first 1000 rows served)"
    )
    assert plan.status.monitoring.drifting == []


def test_turning_drift_off_takes_its_status_and_condition_away() -> None:
    plan = step(serving(), monitored(thresholds={"drift": 0.25}), [CALM])
    assert plan.status.monitoring is not None
    plan = step(plan.status, monitored(), None, minutes=1)
    assert plan.status.monitoring is None
    assert drifting_condition(plan) is None


def test_a_reference_dataset_is_named_and_pods_without_scores_say_why() -> None:
    dataset = PodDrift({("input", "amount"): 0.1}, "dataset", 5000)
    verdict = judge_drift("1", [dataset], None, None)
    assert verdict is not None
    assert verdict.status.reference == "the reference dataset logged with the version (5000 rows)"
    building = judge_drift("2", [PodDrift()], 0.2, None)
    assert building is not None
    assert "still making their reference" in building.status.message
    scoring_soon = judge_drift("2", [PodDrift({}, "live", 1000)], 0.2, None)
    assert scoring_soon is not None
    assert "too few live rows" in scoring_soon.status.message
