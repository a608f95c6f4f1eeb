"""The MLflow version tags that record what served where, and when (spec: writeBackTags).

Decided here from the reconcile's plan, sent by registry/tag_writer.py in the background.
"""

from __future__ import annotations

from datetime import datetime

from mlflow_operator.core.modeldeployment.monitoring import DriftVerdict
from mlflow_operator.core.modeldeployment.quality import QualityVerdict
from mlflow_operator.core.modeldeployment.rollout import RolloutPlan

MAX_REASON_CHARS = 4000  # MLflow keeps tag values up to 5,000 characters (8,000 in MLflow 3)


def version_tag_values(plan: RolloutPlan, now: datetime) -> list[tuple[str, str]]:
    """(version, tag value) for each version whose role changed in this reconcile."""
    stamp = now.strftime("%Y-%m-%dT%H:%M:%SZ")
    tags: list[tuple[str, str]] = []
    if plan.succeeded_version:
        tags.append((plan.succeeded_version, f"serving since {stamp}"))
        previous = plan.status.previous_version
        if previous and previous != plan.succeeded_version:
            tags.append((previous, f"replaced by version {plan.succeeded_version} at {stamp}"))
    if plan.failed_version:
        why = f": {plan.failure_message[:MAX_REASON_CHARS]}" if plan.failure_message else ""
        tags.append((plan.failed_version, f"rollout failed at {stamp}{why}"))
    if plan.gate_blocked:
        why = plan.gate_blocked.message[:MAX_REASON_CHARS]
        tags.append((plan.gate_blocked.version, f"blocked by spec.gates at {stamp}: {why}"))
    if plan.incompatible:
        why = plan.incompatible.message[:MAX_REASON_CHARS]
        tags.append(
            (plan.incompatible.version, f"incompatible with the serving image at {stamp}: {why}")
        )
    return tags


def quality_tag_value(quality: QualityVerdict, now: datetime) -> tuple[str, str]:
    """(version, tag value) when the serving version's live quality crossed
    thresholds.quality."""
    stamp = now.strftime("%Y-%m-%dT%H:%M:%SZ")
    value = f"quality dropped at {stamp}: {quality.status.message}"
    return quality.version, value[:MAX_REASON_CHARS]


def drift_tag_value(drift: DriftVerdict, now: datetime) -> tuple[str, str]:
    """(version, tag value) when features of the serving version crossed thresholds.drift:
    the registry records what production traffic did to the version."""
    stamp = now.strftime("%Y-%m-%dT%H:%M:%SZ")
    return drift.status.version, f"drift detected at {stamp}: {drift.status.message}"[
        :MAX_REASON_CHARS
    ]
