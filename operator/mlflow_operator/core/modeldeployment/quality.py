"""Live quality of the serving version from ground truth (serving.monitoring.quality). Pure:
the reconciler reads the files (reconcilers/quality.py) and hands their text here.

The serving pods write sampled requests with their answers (`predictions/<version>/...jsonl`)
and the labels callers post (`POST /labels`: `labels/<version>/...jsonl`) to MLflow; both
carry the request's id. Joining them row by row gives (prediction, label) pairs; the latest
`window` pairs give the live metric, compared with a metric logged with the version
(`trainingMetric`). Either file may be read first (samples are flushed every 30 s, labels may
come days later), so each side waits for the other, bounded.
"""

from __future__ import annotations

import json
import math
from collections import OrderedDict, deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

from mlflow_operator.api.common import ConditionStatus
from mlflow_operator.api.modeldeployment import (
    ModelDeploymentStatus,
    QualityMonitoring,
    QualityStatus,
)
from mlflow_operator.core.conditions import get_condition
from mlflow_operator.core.modeldeployment.conditions import (
    QUALITY_DEGRADED,
    QUALITY_DROPPED,
    QUALITY_HOLDS,
    QUALITY_RECOVERED,
    QUALITY_UNKNOWN,
)

DECIMALS = 4
# request ids whose prediction (or label) waits for the other side, per side
MAX_WAITING = 100_000

Metric = Literal["accuracy", "rmse", "mae"]


def _rows(value: Any) -> list[Any] | None:
    """A request's answer or label as one value per row; None when it has no such shape."""
    if isinstance(value, dict) and "predictions" in value:
        value = value["predictions"]
    if not isinstance(value, list):
        return [value] if _scalar(value) else None
    rows = [_unwrapped(row) for row in value]
    return rows if all(_scalar(row) for row in rows) else None


def _unwrapped(row: Any) -> Any:
    if isinstance(row, dict) and len(row) == 1:  # a frame of one column, as records
        row = next(iter(row.values()))
    if isinstance(row, list) and len(row) == 1:  # a column vector
        row = row[0]
    return row


def _scalar(value: Any) -> bool:
    return value is None or isinstance(value, str | int | float | bool)


class QualityWindow:
    """Sampled predictions and posted labels joined by request id; the latest `window`
    labelled rows."""

    def __init__(self, window: int, max_waiting: int = MAX_WAITING) -> None:
        self.pairs: deque[tuple[Any, Any]] = deque(maxlen=window)
        self.unusable = 0  # lines whose answer or label has no one-value-per-row shape
        self._max_waiting = max_waiting
        self._predictions: OrderedDict[str, list[Any]] = OrderedDict()
        self._labels: OrderedDict[str, list[Any]] = OrderedDict()

    @property
    def window(self) -> int:
        return self.pairs.maxlen or 0

    def add_predictions(self, text: str) -> None:
        """A file of prediction samples (one JSON line per sampled request)."""
        for request_id, rows in self._lines(text, "predictions"):
            labels = self._labels.pop(request_id, None)
            if labels is None:
                _put(self._predictions, request_id, rows, self._max_waiting)
            else:
                self._join(rows, labels)

    def add_labels(self, text: str) -> None:
        """A file of labels (one JSON line per posted label)."""
        for request_id, rows in self._lines(text, "label"):
            predictions = self._predictions.pop(request_id, None)
            if predictions is None:
                _put(self._labels, request_id, rows, self._max_waiting)
            else:
                self._join(predictions, rows)

    def _lines(self, text: str, field: str) -> Iterable[tuple[str, list[Any]]]:
        for line in text.splitlines():
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except ValueError:
                self.unusable += 1
                continue
            request_id = record.get("request_id") if isinstance(record, dict) else None
            rows = _rows(record.get(field)) if isinstance(record, dict) else None
            if not isinstance(request_id, str) or rows is None:
                self.unusable += 1
                continue
            yield request_id, rows

    def _join(self, predictions: list[Any], labels: list[Any]) -> None:
        if len(predictions) != len(labels):
            self.unusable += 1
            return
        self.pairs.extend(zip(predictions, labels, strict=True))


def _put(waiting: OrderedDict[str, list[Any]], key: str, rows: list[Any], limit: int) -> None:
    waiting[key] = rows
    waiting.move_to_end(key)
    while len(waiting) > limit:
        waiting.popitem(last=False)


def live_metric(metric: Metric, pairs: Iterable[tuple[Any, Any]]) -> tuple[float | None, int]:
    """The metric over the pairs it can judge, and how many those were."""
    if metric == "accuracy":
        judged = [(p, t) for p, t in pairs if p is not None and t is not None]
        if not judged:
            return None, 0
        return sum(_same(p, t) for p, t in judged) / len(judged), len(judged)
    numbers = (_numbers(p, t) for p, t in pairs)
    errors = [p - t for p, t in numbers if p is not None and t is not None]
    if not errors:
        return None, 0
    if metric == "rmse":
        return math.sqrt(sum(e * e for e in errors) / len(errors)), len(errors)
    return sum(abs(e) for e in errors) / len(errors), len(errors)


def _same(prediction: Any, label: Any) -> bool:
    """Class 1 and label 1.0 are one class; "1" and 1 too (labels often come as text)."""
    p, t = _numbers(prediction, label)
    if p is not None and t is not None:
        return p == t
    return str(prediction) == str(label)


def _numbers(prediction: Any, label: Any) -> tuple[float | None, float | None]:
    return _number(prediction), _number(label)


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, int | float):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            return None
        return number if math.isfinite(number) else None
    return None


def lower_is_better(metric: str) -> bool:
    return metric in ("rmse", "mae")


@dataclass(frozen=True)
class QualityVerdict:
    """Status, condition and news of one judgement of the live quality."""

    version: str
    status: QualityStatus
    # the QualityDegraded condition (None: no threshold)
    condition: tuple[ConditionStatus, str, str] | None
    dropped: bool = False  # it crossed thresholds.quality now (an Event, an MLflow tag)
    recovered: bool = False  # it is back within thresholds.quality

    @property
    def events(self) -> list[tuple[Literal["Normal", "Warning"], str, str]]:
        said = f"version {self.version}: {self.status.message}"
        if self.dropped:
            return [("Warning", QUALITY_DROPPED, said)]
        if self.recovered:
            return [("Normal", QUALITY_RECOVERED, said)]
        return []


def judge_quality(
    version: str,
    settings: QualityMonitoring,
    window: QualityWindow,
    *,
    training: float | None,
    threshold: float | None,
    last: QualityStatus | None,
) -> QualityVerdict:
    """The judgement of `version`'s live metric over the window, against its training metric;
    `last`: the status of the last judgement of the same version."""
    metric = settings.metric
    if not settings.training_metric:
        training = None  # nothing to compare with was asked for
    value, labelled = live_metric(metric, window.pairs)
    status = QualityStatus(
        metric=metric, labelled=labelled, threshold=threshold,
        training=round(training, DECIMALS) if training is not None else None,
    )  # fmt: skip
    was_dropped = last is not None and _is_dropped(last)
    if value is None or labelled < settings.min_labelled:
        status.message = (
            f"{labelled} of the {settings.min_labelled} labelled rows needed so far "
            "(labels posted to POST /labels, matched with sampled requests by request id)"
        )
        return QualityVerdict(
            version, status, _condition("Unknown", QUALITY_UNKNOWN, status, threshold)
        )
    status.value = round(value, DECIMALS)
    live = f"{metric} {status.value:g} live over {labelled} labelled rows"
    if training is None:
        why = (
            f"; the version's run has no metric {settings.training_metric}"
            if settings.training_metric
            else ""
        )
        status.message = live + why
        return QualityVerdict(
            version, status, _condition("Unknown", QUALITY_UNKNOWN, status, threshold)
        )
    worse_by = (value - training) if lower_is_better(metric) else (training - value)
    versus = f"{live}, {status.training:g} in training ({settings.training_metric})"
    if threshold is None:
        status.message = versus
        return QualityVerdict(version, status, None)
    if worse_by > threshold:
        status.message = f"{versus}: worse by {worse_by:.4g}, more than {threshold:g}"
        return QualityVerdict(
            version, status, ("True", QUALITY_DROPPED, status.message), dropped=not was_dropped
        )
    status.message = f"{versus}: within {threshold:g}"
    return QualityVerdict(
        version, status, ("False", QUALITY_HOLDS, status.message), recovered=was_dropped
    )


def _is_dropped(status: QualityStatus) -> bool:
    if status.value is None or status.training is None or status.threshold is None:
        return False
    worse_by = (
        status.value - status.training
        if lower_is_better(status.metric)
        else status.training - status.value
    )
    return worse_by > status.threshold


def _condition(
    state: ConditionStatus, reason: str, status: QualityStatus, threshold: float | None
) -> tuple[ConditionStatus, str, str] | None:
    return (state, reason, status.message) if threshold is not None else None


def quality_degraded(status: ModelDeploymentStatus) -> bool | None:
    """Whether the QualityDegraded condition says degraded, for the operator's metric; None
    while it does not judge (no threshold, too few labels)."""
    judged = get_condition(status.conditions, QUALITY_DEGRADED)
    if judged is None or judged.status == "Unknown":
        return None
    return judged.status == "True"
