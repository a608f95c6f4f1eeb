from __future__ import annotations

import pytest

from mlflow_operator.api.modeldeployment import ModelSelector
from mlflow_operator.core.modeldeployment.resolution import (
    Resolved,
    Unresolved,
    follows,
    resolve_target,
)
from mlflow_operator.core.registry_view import ModelSnapshot, VersionInfo

SNAPSHOT = ModelSnapshot(
    name="fraud",
    aliases={"champion": "3", "challenger": "4"},
    latest_by_stage={"Production": "2", "Staging": "4", "None": "5"},
    versions={
        "2": VersionInfo("2", run_id="r2", current_stage="Production"),
        "3": VersionInfo("3", run_id="r3"),
        "4": VersionInfo("4", status="PENDING_REGISTRATION"),
        "5": VersionInfo("5", status="FAILED_REGISTRATION", status_message="upload failed"),
    },
)


def test_alias_resolves_to_its_version_with_run_id() -> None:
    result = resolve_target(ModelSelector(name="fraud", alias="champion"), SNAPSHOT)
    assert result == Resolved("3", "r3")


def test_stage_resolves_to_newest_version_in_stage() -> None:
    assert resolve_target(ModelSelector(name="fraud", stage="Production"), SNAPSHOT) == Resolved(
        "2", "r2"
    )


def test_pinned_version_resolves_to_itself() -> None:
    assert resolve_target(ModelSelector(name="fraud", version="3"), SNAPSHOT) == Resolved("3", "r3")


@pytest.mark.parametrize(
    ("selector", "reason"),
    [
        (ModelSelector(name="fraud", alias="missing"), "AliasNotFound"),
        (ModelSelector(name="fraud", stage="Archived"), "NoVersionInStage"),
        (ModelSelector(name="fraud", version="99"), "VersionNotFound"),
        (ModelSelector(name="fraud", alias="challenger"), "VersionNotReady"),
        (ModelSelector(name="fraud", version="5"), "VersionNotReady"),
    ],
)
def test_unusable_selections_are_typed_outcomes(selector: ModelSelector, reason: str) -> None:
    result = resolve_target(selector, SNAPSHOT)
    assert isinstance(result, Unresolved)
    assert result.reason == reason
    assert "fraud" in result.message


def test_failed_registration_message_is_passed_on() -> None:
    result = resolve_target(ModelSelector(name="fraud", version="5"), SNAPSHOT)
    assert isinstance(result, Unresolved)
    assert "upload failed" in result.message


def test_missing_model() -> None:
    result = resolve_target(ModelSelector(name="nope", alias="champion"), None)
    assert result == Unresolved("ModelNotFound", "registered model 'nope' does not exist in MLflow")


def test_follows_short_form() -> None:
    assert follows(ModelSelector(name="m", alias="champion")) == "alias:champion"
    assert follows(ModelSelector(name="m", stage="Production")) == "stage:Production"
    assert follows(ModelSelector(name="m", version="7")) == "version:7"
