"""A ModelDeployment's status outside a rollout decision, and the write-back tags."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from mlflow_operator.api.base import StatusModel
from mlflow_operator.api.mlflowserver import MLflowServerStatus
from mlflow_operator.api.modeldeployment import ModelDeploymentStatus
from mlflow_operator.core.conditions import get_condition
from mlflow_operator.core.modeldeployment.rollout import RolloutPlan
from mlflow_operator.core.modeldeployment.status import (
    invalid_status,
    not_ready_status,
    status_changed,
)
from mlflow_operator.core.modeldeployment.write_back import version_tag_values

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize("kind", [ModelDeploymentStatus, MLflowServerStatus])
def test_a_status_of_another_shape_reads_as_empty(kind: type[StatusModel]) -> None:
    assert kind.of({"status": {"observedGeneration": 3}}) == kind(observed_generation=3)
    assert kind.of({"status": {"conditions": "not a list"}}) == kind()
    assert kind.of({}) == kind()


def test_an_invalid_spec_is_not_ready_and_degraded_with_every_error() -> None:
    last = ModelDeploymentStatus(serving_version="2")
    status = invalid_status(last, ["spec.model: required", "spec.x: bad"], 4, NOW)
    ready, degraded = (get_condition(status.conditions, t) for t in ("Ready", "Degraded"))
    assert ready is not None
    assert degraded is not None
    assert (ready.status, ready.reason) == ("False", "InvalidSpec")
    assert (degraded.status, degraded.reason) == ("True", "InvalidSpec")
    assert ready.message == "spec.model: required; spec.x: bad"
    assert status.observed_generation == 4
    assert status.serving_version == "2"  # what serves is not forgotten
    assert last.conditions == []  # the input is not changed


def test_a_refusal_that_needs_no_person_leaves_degraded_alone() -> None:
    status = not_ready_status(
        ModelDeploymentStatus(), "KubernetesConflict", "busy", 1, NOW, degraded=False
    )
    assert [c.type for c in status.conditions] == ["Ready"]


def test_a_sync_stamp_alone_is_never_worth_a_write() -> None:
    last = ModelDeploymentStatus(serving_version="2", last_registry_sync=NOW)
    moved = last.model_copy(update={"last_registry_sync": NOW + timedelta(seconds=30)})
    days = last.model_copy(update={"last_registry_sync": NOW + timedelta(days=3)})
    assert not status_changed(last, last)
    assert not status_changed(last, moved)
    assert not status_changed(last, days)
    assert status_changed(last, moved.model_copy(update={"serving_version": "3"}))
    assert status_changed(ModelDeploymentStatus(serving_version="2"), moved)  # the first one


def test_write_back_tags_name_the_new_the_replaced_and_the_failed_version() -> None:
    status = ModelDeploymentStatus(previous_version="2")
    plan = RolloutPlan(
        deploy_version="3",
        replace_in_place=False,
        status=status,
        succeeded_version="3",
        failed_version="4",
    )
    assert version_tag_values(plan, NOW) == [
        ("3", "serving since 2026-12-01T12:00:00Z"),
        ("2", "replaced by version 3 at 2026-12-01T12:00:00Z"),
        ("4", "rollout failed at 2026-12-01T12:00:00Z"),
    ]
    quiet = RolloutPlan(deploy_version="3", replace_in_place=False, status=status)
    assert version_tag_values(quiet, NOW) == []
