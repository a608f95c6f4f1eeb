"""Drift of the serving version's live traffic, judged from what its pods report
(serving.monitoring.drift). Pure: the reconciler reads each ready pod's /metrics
(podmetrics.py) and hands the readings here.

The pods score (serving/mlflow_operator_serve/drift.py); the operator only gathers: the
largest score any pod reports per feature (a drift on one pod's share of the traffic is a
drift), compared with `thresholds.drift`. Scores are kept to two decimals in status, so that
a ModelDeployment whose traffic does not move is not rewritten at every reconcile.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from mlflow_operator.api.common import ConditionStatus
from mlflow_operator.api.modeldeployment import (
    FeatureDrift,
    ModelDeploymentStatus,
    MonitoringStatus,
)
from mlflow_operator.core.conditions import get_condition
from mlflow_operator.core.modeldeployment.conditions import (
    DRIFT_DETECTED,
    DRIFT_RESOLVED,
    DRIFT_UNKNOWN,
    DRIFTING,
    NO_DRIFT,
)

SHOWN_FEATURES = 10
DECIMALS = 2


@dataclass(frozen=True)
class PodDrift:
    """One pod's drift metrics: scores per (kind, feature), and its reference."""

    scores: dict[tuple[str, str], float] = field(default_factory=dict)
    reference_source: str | None = None
    reference_rows: int = 0


@dataclass(frozen=True)
class DriftVerdict:
    """Status, condition and news of one judgement."""

    status: MonitoringStatus
    # the Drifting condition (None: no threshold, nothing judged)
    condition: tuple[ConditionStatus, str, str] | None
    # features that crossed the threshold since the last judgement (an Event, an MLflow tag)
    newly_drifting: tuple[str, ...] = ()
    resolved: bool = False  # nothing drifts any more, where something did

    @property
    def events(self) -> list[tuple[Literal["Normal", "Warning"], str, str]]:
        if self.newly_drifting:
            return [("Warning", DRIFT_DETECTED, f"version {self.status.version}: "
                     f"{self.status.message}")]  # fmt: skip
        if self.resolved:
            return [("Normal", DRIFT_RESOLVED, f"version {self.status.version}: "
                     f"{self.status.message}")]  # fmt: skip
        return []


def feature_label(kind: str, feature: str) -> str:
    return f"{feature} (output)" if kind == "output" else feature


def judge_drift(
    version: str,
    readings: list[PodDrift],
    threshold: float | None,
    last: MonitoringStatus | None,
) -> DriftVerdict | None:
    """The judgement of `version`'s drift from its pods' readings; None to keep `last` as it
    is (no pod answered with scores this time, but it judged this version before: a pod
    restarting or a scrape timing out must not flip the condition)."""
    before = last if last is not None and last.version == version else None
    scored = [r for r in readings if r.scores]
    if not scored:
        if before is not None and before.features:
            return None
        return _unknown(version, readings, threshold)
    worst: dict[tuple[str, str], float] = {}
    for reading in scored:
        for key, score in reading.scores.items():
            worst[key] = max(worst.get(key, 0.0), score)
    ranked = sorted(worst.items(), key=lambda item: (-item[1], item[0]))
    features = [
        FeatureDrift(feature=feature, kind="output" if kind == "output" else "input",
                     drift=round(score, DECIMALS))
        for (kind, feature), score in ranked[:SHOWN_FEATURES]
    ]  # fmt: skip
    drifting = [
        feature_label(kind, feature)
        for (kind, feature), score in ranked
        if threshold is not None and score > threshold
    ]
    reference = _reference(scored)
    status = MonitoringStatus(
        version=version, reference=reference, threshold=threshold, drifting=drifting,
        features=features, message=_message(ranked, drifting, threshold, reference),
    )  # fmt: skip
    if threshold is None:
        return DriftVerdict(status, None)
    was = set(before.drifting) if before is not None else set()
    newly = tuple(f for f in drifting if f not in was)
    if drifting:
        return DriftVerdict(status, ("True", DRIFT_DETECTED, status.message), newly)
    return DriftVerdict(status, ("False", NO_DRIFT, status.message), resolved=bool(was))


def _unknown(version: str, readings: list[PodDrift], threshold: float | None) -> DriftVerdict:
    if not readings:
        why = "no ready serving pod of it reports drift metrics (runtime batched with --drift)"
    else:
        rows = max((r.reference_rows for r in readings), default=0)
        why = (
            "its pods are still making their reference of the first rows served"
            if not rows
            else "its pods have a reference and too few live rows since to score (100)"
        )
    status = MonitoringStatus(version=version, threshold=threshold, message=f"no scores yet: {why}")
    condition: tuple[ConditionStatus, str, str] | None = (
        ("Unknown", DRIFT_UNKNOWN, status.message) if threshold is not None else None
    )
    return DriftVerdict(status, condition)


def _reference(readings: list[PodDrift]) -> str | None:
    best = max(readings, key=lambda r: r.reference_rows)
    if best.reference_source == "dataset":
        return f"the reference dataset logged with the version ({best.reference_rows} rows)"
    if best.reference_source == "live":
        return f"the first {best.reference_rows} rows served"
    return None


def _message(
    ranked: list[tuple[tuple[str, str], float]],
    drifting: list[str],
    threshold: float | None,
    reference: str | None,
) -> str:
    against = f" against {reference}" if reference else ""
    if threshold is None:
        (kind, feature), score = ranked[0]
        return f"highest drift {feature_label(kind, feature)} {score:.2f} (PSI{against})"
    if not drifting:
        (kind, feature), score = ranked[0]
        return (
            f"no feature above {threshold:g}: highest {feature_label(kind, feature)} "
            f"{score:.2f} (PSI{against})"
        )
    above = [(k, s) for k, s in ranked if s > threshold]
    shown = ", ".join(f"{feature_label(kind, feature)} {score:.2f}"
                      for (kind, feature), score in above[:5])  # fmt: skip
    more = f" and {len(above) - 5} more" if len(above) > 5 else ""
    return f"drift above {threshold:g}: {shown}{more} (PSI{against})"


def drifting_count(status: ModelDeploymentStatus) -> int | None:
    """Features above thresholds.drift while the Drifting condition judges (True or False), for
    the operator's metric; None otherwise (no threshold, no score yet)."""
    judged = get_condition(status.conditions, DRIFTING)
    if judged is None or judged.status == "Unknown" or status.monitoring is None:
        return None
    return len(status.monitoring.drifting)
