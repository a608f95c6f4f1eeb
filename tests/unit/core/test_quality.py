"""The operator's side of ground truth (serving.monitoring.quality): sample and label lines as
the serving runtime writes them, joined by request id in either order; the live metric; and
what status, conditions, Events and MLflow tags say over a sequence of reconciles."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from mlflow_operator.api.modeldeployment import ModelDeploymentSpec, ModelDeploymentStatus
from mlflow_operator.core.conditions import get_condition
from mlflow_operator.core.modeldeployment.monitoring import PodDrift, judge_drift
from mlflow_operator.core.modeldeployment.quality import (
    QualityWindow,
    judge_quality,
    live_metric,
    quality_degraded,
)
from mlflow_operator.core.modeldeployment.resolution import Resolved
from mlflow_operator.core.modeldeployment.rollout import RolloutPlan, plan_rollout
from mlflow_operator.core.modeldeployment.write_back import quality_tag_value
from mlflow_operator.core.registry_view import RegistryState
from tests.unit.observations import complete
from tests.unit.specs import spec

NOW = datetime(2026, 12, 3, 10, 0, tzinfo=UTC)
SYNCED = RegistryState(snapshot=None, synced=True, last_sync=NOW)


def sample(request_id: str, predictions: Any) -> str:
    """A line as serving/mlflow_operator_serve/prediction_log.py writes it."""
    return json.dumps({
        "request_id": request_id, "timestamp": "2026-12-03T10:00:00+00:00", "model": "fraud",
        "version": "1", "inputs": {"dataframe_split": {"columns": ["a"], "data": [[1]]}},
        "predictions": {"predictions": predictions},
    })  # fmt: skip


def label(request_id: str, value: Any) -> str:
    return json.dumps({"request_id": request_id, "timestamp": "2026-12-03T10:05:00+00:00",
                       "model": "fraud", "version": "1", "label": value})  # fmt: skip


def lines(*each: str) -> str:
    return "\n".join(each) + "\n"


def test_samples_and_labels_join_by_request_id_in_either_order_row_by_row() -> None:
    window = QualityWindow(window=100)
    window.add_predictions(lines(sample("a", [0, 1, 2]), sample("b", [1])))
    window.add_labels(lines(label("a", [0, 1, 1]), label("c", 2)))  # c: its sample comes later
    assert list(window.pairs) == [(0, 0), (1, 1), (2, 1)]
    window.add_predictions(lines(sample("c", [{"prediction": 2}])))  # a frame as records
    assert list(window.pairs)[-1] == (2, 2)
    window.add_labels(lines(label("b", 1)))
    assert len(window.pairs) == 5
    assert live_metric("accuracy", window.pairs) == (4 / 5, 5)


def test_rows_that_do_not_match_or_cannot_be_read_are_counted_not_joined() -> None:
    window = QualityWindow(window=100)
    window.add_predictions(lines(sample("a", [1, 2]), sample("d", [[0.1, 0.9]]), "not json"))
    window.add_labels(lines(label("a", [1]), label("d", 1), json.dumps({"label": 1})))
    assert not window.pairs
    # a: 2 predictions for 1 label; d: two values per row; a line that is no JSON; no id
    assert window.unusable == 4


def test_the_window_keeps_the_latest_rows_and_waiting_ids_are_bounded() -> None:
    window = QualityWindow(window=3, max_waiting=2)
    window.add_predictions(lines(*(sample(f"r{i}", [i]) for i in range(5))))
    window.add_labels(lines(*(label(f"r{i}", i) for i in range(5))))
    # r0-r2 were pushed out while waiting: only the two newest samples found their labels
    assert list(window.pairs) == [(3, 3), (4, 4)]
    window.add_predictions(lines(*(sample(f"s{i}", [1]) for i in range(4))))
    window.add_labels(lines(*(label(f"s{i}", 0) for i in range(2, 4))))
    assert list(window.pairs) == [(4, 4), (1, 0), (1, 0)]


def test_accuracy_takes_a_class_as_number_or_text_and_errors_are_rmse_and_mae() -> None:
    assert live_metric("accuracy", [(1, 1.0), ("1", 1), ("cat", "cat"), ("cat", "dog")]) == (
        0.75, 4,
    )  # fmt: skip
    assert live_metric("accuracy", [(None, 1)]) == (None, 0)
    rmse, judged = live_metric("rmse", [(1.0, 2.0), (3.0, 1.0), ("x", 1.0)])
    assert judged == 2
    assert rmse == pytest.approx(math.sqrt((1 + 4) / 2))
    assert live_metric("mae", [(1.0, 2.0), (3.0, 1.0), (float("nan"), 1.0)]) == (1.5, 2)


def monitored(**quality: Any) -> ModelDeploymentSpec:
    threshold = quality.pop("threshold", None)
    monitoring: dict[str, Any] = {"sampleRate": 0.5, "quality": quality}
    if threshold is not None:
        monitoring["thresholds"] = {"quality": threshold}
    return spec("fraud", serving={"runtime": "batched", "monitoring": monitoring})


def window_of(right: int, wrong: int) -> QualityWindow:
    window = QualityWindow(window=1000)
    rows = [1] * (right + wrong)
    window.add_predictions(lines(sample("r", rows)))
    window.add_labels(lines(label("r", [1] * right + [0] * wrong)))
    return window


def step(
    last: ModelDeploymentStatus, the_spec: ModelDeploymentSpec, window: QualityWindow | None,
    training: float | None = 0.95,
) -> RolloutPlan:  # fmt: skip
    """One reconcile of a ModelDeployment steadily serving version 1; `window`: what the
    files read now hold (None: not read now)."""
    monitoring = the_spec.serving.monitoring
    quality = None
    if window is not None and monitoring.quality is not None:
        before = last.monitoring.quality if last.monitoring else None
        quality = judge_quality(
            "1", monitoring.quality, window, training=training,
            threshold=monitoring.thresholds.quality if monitoring.thresholds else None,
            last=before,
        )  # fmt: skip
    return plan_rollout(the_spec, 1, last, SYNCED, Resolved("1"), complete("1"), NOW,
                        quality=quality)  # fmt: skip


def serving() -> ModelDeploymentStatus:
    plan = plan_rollout(spec("fraud"), 1, ModelDeploymentStatus(), SYNCED, Resolved("1"),
                        complete("1"), NOW)  # fmt: skip
    return plan.status


def condition(plan: RolloutPlan) -> tuple[str, str] | None:
    found = get_condition(plan.status.conditions, "QualityDegraded")
    return None if found is None else (found.status, found.reason)


def test_a_drop_below_training_is_announced_once_tagged_and_its_end_told() -> None:
    the_spec = monitored(metric="accuracy", trainingMetric="test_accuracy", minLabelled=50,
                         threshold=0.05)  # fmt: skip
    few = step(serving(), the_spec, window_of(10, 0))
    assert condition(few) == ("Unknown", "QualityUnknown")
    assert few.status.monitoring is not None
    assert few.status.monitoring.quality is not None
    assert few.status.monitoring.quality.labelled == 10
    assert "10 of the 50 labelled rows" in few.status.monitoring.quality.message
    assert quality_degraded(few.status) is None

    fine = step(few.status, the_spec, window_of(92, 8))
    assert condition(fine) == ("False", "QualityHolds")
    assert not fine.events
    assert fine.quality_dropped is None
    assert quality_degraded(fine.status) is False

    dropped = step(fine.status, the_spec, window_of(80, 20))
    assert condition(dropped) == ("True", "QualityDropped")
    quality = dropped.status.monitoring.quality if dropped.status.monitoring else None
    assert quality is not None
    assert (quality.value, quality.training) == (0.8, 0.95)
    assert quality.message == (
        "accuracy 0.8 live over 100 labelled rows, 0.95 in training (test_accuracy): "
        "worse by 0.15, more than 0.05"
    )
    assert [(e.type, e.reason) for e in dropped.events] == [("Warning", "QualityDropped")]
    assert dropped.quality_dropped is not None
    version, value = quality_tag_value(dropped.quality_dropped, NOW)
    assert version == "1"
    assert value.startswith("quality dropped at 2026-12-03T10:00:00Z: accuracy")
    assert Ready(dropped) == "True"  # quality judges traffic, never the rollout

    still = step(dropped.status, the_spec, window_of(79, 21))
    assert condition(still) == ("True", "QualityDropped")
    assert not still.events
    assert still.quality_dropped is None
    kept = step(still.status, the_spec, None)  # not read now: the judgement stays
    assert kept.status.monitoring == still.status.monitoring
    assert condition(kept) == ("True", "QualityDropped")

    back = step(kept.status, the_spec, window_of(95, 5))
    assert condition(back) == ("False", "QualityHolds")
    assert [(e.type, e.reason) for e in back.events] == [("Normal", "QualityRecovered")]


def Ready(plan: RolloutPlan) -> str | None:  # noqa: N802 - the condition's name
    found = get_condition(plan.status.conditions, "Ready")
    return found.status if found else None


def test_lower_is_better_for_errors_and_a_missing_training_metric_is_unknown() -> None:
    the_spec = monitored(metric="rmse", trainingMetric="rmse", minLabelled=3, threshold=0.5)
    window = QualityWindow(window=10)
    window.add_predictions(lines(sample("r", [1.0, 2.0, 3.0])))
    window.add_labels(lines(label("r", [2.0, 3.0, 4.0])))  # rmse 1.0
    assert condition(step(serving(), the_spec, window, training=0.8)) == ("False", "QualityHolds")
    assert condition(step(serving(), the_spec, window, training=0.4)) == ("True", "QualityDropped")
    unknown = step(serving(), the_spec, window, training=None)
    assert condition(unknown) == ("Unknown", "QualityUnknown")
    assert unknown.status.monitoring is not None
    assert unknown.status.monitoring.quality is not None
    assert unknown.status.monitoring.quality.message == (
        "rmse 1 live over 3 labelled rows; the version's run has no metric rmse"
    )


def test_without_a_threshold_the_metric_is_shown_and_nothing_judged() -> None:
    plan = step(serving(), monitored(metric="accuracy", minLabelled=10), window_of(9, 1))
    assert condition(plan) is None
    assert not plan.events
    assert plan.status.monitoring is not None
    assert plan.status.monitoring.quality is not None
    assert plan.status.monitoring.quality.value == 0.9
    assert plan.status.monitoring.quality.message == "accuracy 0.9 live over 10 labelled rows"


def test_quality_and_drift_share_status_monitoring_and_each_goes_alone() -> None:
    both = spec("fraud", serving={"runtime": "batched", "monitoring": {
        "sampleRate": 1, "quality": {"metric": "accuracy", "trainingMetric": "acc",
                                     "minLabelled": 10},
        "thresholds": {"drift": 0.2, "quality": 0.1},
    }})  # fmt: skip
    quality = judge_quality("1", both.serving.monitoring.quality, window_of(10, 0),  # type: ignore[arg-type]
                            training=0.9, threshold=0.1, last=None)  # fmt: skip
    drift = judge_drift("1", [PodDrift({("input", "a"): 0.5}, "live", 1000)], 0.2, None)
    plan = plan_rollout(both, 1, serving(), SYNCED, Resolved("1"), complete("1"), NOW,
                        drift=drift, quality=quality)  # fmt: skip
    monitoring = plan.status.monitoring
    assert monitoring is not None
    assert monitoring.drifting == ["a"]
    assert monitoring.quality is not None
    assert monitoring.quality.value == 1.0
    assert condition(plan) == ("False", "QualityHolds")
    # the next reconcile judges drift only: the quality judgement stays
    again = plan_rollout(both, 1, plan.status, SYNCED, Resolved("1"), complete("1"), NOW,
                         drift=drift)  # fmt: skip
    assert again.status.monitoring == monitoring

    drift_only = both.model_copy(deep=True)
    drift_only.serving.monitoring.quality = None
    drift_only.serving.monitoring.thresholds.quality = None  # type: ignore[union-attr]
    off = plan_rollout(drift_only, 2, again.status, SYNCED, Resolved("1"), complete("1"), NOW)
    assert off.status.monitoring is not None
    assert off.status.monitoring.quality is None
    assert condition(off) is None
    assert off.status.monitoring.drifting == ["a"]

    quality_only = both.model_copy(deep=True)
    quality_only.serving.monitoring.thresholds.drift = None  # type: ignore[union-attr]
    alone = plan_rollout(quality_only, 3, again.status, SYNCED, Resolved("1"), complete("1"),
                         NOW + timedelta(minutes=1))  # fmt: skip
    assert alone.status.monitoring is not None
    assert alone.status.monitoring.features == []
    assert alone.status.monitoring.quality == monitoring.quality
    assert get_condition(alone.status.conditions, "Drifting") is None
