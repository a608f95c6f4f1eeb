"""The status patch: a JSON merge patch that leaves nothing of the status it replaces."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from mlflow_operator.api.modeldeployment import CanaryStatus, ModelDeploymentStatus
from mlflow_operator.reconcilers.common import status_patch


def merge(target: Any, patch: Any) -> Any:
    """RFC 7386, as the API server applies a merge patch to status."""
    if not isinstance(patch, dict):
        return patch
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge(result.get(key), value)
    return result


def test_a_new_canary_keeps_nothing_of_the_last_ones_numbers() -> None:
    judged = ModelDeploymentStatus(
        serving_version="1",
        rollout=CanaryStatus(
            phase="Aborted", version="2", analysis="Failed: error rate 50.0%",
            disagreement_rate=1.0, last_analysis=datetime(2026, 12, 2, tzinfo=UTC), failures=1,
        ),
    )  # fmt: skip
    fresh = ModelDeploymentStatus(
        serving_version="1", rollout=CanaryStatus(phase="Shadow", version="3")
    )
    stored = merge(judged.to_wire(), status_patch(fresh))
    assert stored == fresh.to_wire()
    assert "disagreementRate" not in stored["rollout"]
    assert "analysis" not in stored["rollout"]


def test_a_status_without_a_rollout_removes_the_stored_one() -> None:
    stored = merge(
        ModelDeploymentStatus(rollout=CanaryStatus(phase="Canary", version="2")).to_wire(),
        status_patch(ModelDeploymentStatus()),
    )
    assert "rollout" not in stored
