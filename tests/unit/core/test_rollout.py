"""The rollout decision, as sequences of reconciles a user would see."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from mlflow_operator.api.modeldeployment import ModelDeploymentSpec, ModelDeploymentStatus
from mlflow_operator.core.conditions import get_condition
from mlflow_operator.core.observation import DeploymentObservation
from mlflow_operator.core.registry_view import RegistryState
from mlflow_operator.core.resolution import Resolved, Unresolved
from mlflow_operator.core.rollout import RolloutPlan, plan_rollout
from tests.unit.observations import complete, in_progress

NOW = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
SYNCED = RegistryState(snapshot=None, synced=True, last_sync=NOW)
DOWN = RegistryState(snapshot=None, synced=False, last_sync=NOW, error="connection refused")


def spec(**overrides: Any) -> ModelDeploymentSpec:
    body: dict[str, Any] = {
        "model": {"name": "fraud", "alias": "champion"},
        "registry": {"serverRef": {"name": "mlflow"}},
    }
    body.update(overrides)
    return ModelDeploymentSpec.model_validate(body)


def cond(plan: RolloutPlan, type_: str) -> tuple[str, str]:
    c = get_condition(plan.status.conditions, type_)
    assert c is not None
    return c.status, c.reason


def step(
    last: ModelDeploymentStatus,
    resolution: Any,
    deployment: DeploymentObservation,
    the_spec: ModelDeploymentSpec | None = None,
    *,
    registry: RegistryState = SYNCED,
    minutes: int = 0,
) -> RolloutPlan:
    return plan_rollout(
        the_spec or spec(),
        1,
        last,
        registry,
        resolution,
        deployment,
        NOW + timedelta(minutes=minutes),
    )


def test_first_deployment_then_promotion_then_success() -> None:
    plan = step(ModelDeploymentStatus(), Resolved("1", "run1"), DeploymentObservation())
    assert plan.deploy_version == "1"
    assert cond(plan, "Ready") == ("False", "RollingOut")
    assert cond(plan, "Progressing") == ("True", "NewVersion")
    assert [e.reason for e in plan.events] == ["RolloutStarted"]
    assert plan.status.follows == "alias:champion"
    assert plan.status.run_id == "run1"

    plan = step(plan.status, Resolved("1"), complete("1"), minutes=1)
    assert plan.status.serving_version == "1"
    assert plan.status.previous_version is None
    assert plan.succeeded_version == "1"
    assert cond(plan, "Ready") == ("True", "Serving")
    assert cond(plan, "Progressing") == ("False", "RolloutComplete")
    assert plan.status.history[-1].result == "Succeeded"

    plan = step(plan.status, Resolved("2"), complete("1"), minutes=2)
    assert plan.deploy_version == "2"
    assert plan.events[0].message == "rolling out version 2 (was 1)"
    plan = step(plan.status, Resolved("2"), complete("2"), minutes=3)
    assert plan.status.serving_version == "2"
    assert plan.status.previous_version == "1"
    assert plan.events[0].reason == "RolloutSucceeded"
    assert plan.status.model_uri == "models:/fraud/2"


def test_steady_state_emits_nothing() -> None:
    plan = step(ModelDeploymentStatus(), Resolved("1"), DeploymentObservation())
    plan = step(plan.status, Resolved("1"), complete("1"))
    again = step(plan.status, Resolved("1"), complete("1"), minutes=5)
    assert again.events == ()
    assert again.status.conditions == plan.status.conditions  # lastTransitionTime kept


def test_failed_version_rolls_back_and_is_not_retried_until_registry_moves() -> None:
    plan = step(ModelDeploymentStatus(), Resolved("1"), DeploymentObservation())
    plan = step(plan.status, Resolved("1"), complete("1"))
    plan = step(plan.status, Resolved("2"), complete("1"))
    assert plan.deploy_version == "2"
    plan = step(plan.status, Resolved("2"), in_progress("2", exceeded=True), minutes=11)
    assert plan.deploy_version == "1"
    assert plan.failed_version == "2"
    assert plan.status.failed_versions == ["2"]
    assert cond(plan, "Degraded") == ("True", "RolloutFailed")
    assert plan.events[0].type == "Warning"
    assert plan.status.history[-1].result == "RolledBack"

    # the Deployment goes back to 1; the registry still says 2: nothing is retried
    plan = step(plan.status, Resolved("2"), complete("1"), minutes=12)
    assert plan.deploy_version == "1"
    assert plan.events == ()
    assert cond(plan, "Ready") == ("True", "ServingPreviousVersion")
    assert cond(plan, "Degraded") == ("True", "RolloutFailed")

    # the registry moves on to 3: rolled out, failure forgotten once it succeeds
    plan = step(plan.status, Resolved("3"), complete("1"), minutes=13)
    assert plan.deploy_version == "3"
    assert plan.status.failed_versions == []
    plan = step(plan.status, Resolved("3"), complete("3"), minutes=14)
    assert cond(plan, "Ready") == ("True", "Serving")
    assert cond(plan, "Degraded") == ("False", "AsExpected")
    assert plan.status.previous_version == "1"


def test_restart_in_the_middle_of_a_rollback_converges() -> None:
    failed = ModelDeploymentStatus(target_version="2", serving_version="1", failed_versions=["2"])
    # the operator died after recording the failure but before changing the template
    plan = step(failed, Resolved("2"), in_progress("2", exceeded=True))
    assert plan.deploy_version == "1"
    assert [e.reason for e in plan.events] == ["RollingBack"]  # no second RolloutFailed


def test_first_version_failing_has_nothing_to_roll_back_to() -> None:
    plan = step(ModelDeploymentStatus(), Resolved("1"), DeploymentObservation())
    plan = step(plan.status, Resolved("1"), in_progress("1", exceeded=True))
    assert plan.deploy_version == "1"
    assert "no earlier version" in plan.events[0].message
    again = step(plan.status, Resolved("1"), in_progress("1", exceeded=True))
    assert again.events == ()


def test_registry_down_keeps_serving_and_says_so() -> None:
    plan = step(ModelDeploymentStatus(), Resolved("1"), DeploymentObservation())
    plan = step(plan.status, Resolved("1"), complete("1"))
    down = step(plan.status, None, complete("1"), registry=DOWN)
    assert down.deploy_version == "1"
    assert cond(down, "RegistrySynced") == ("False", "RegistryUnreachable")
    assert "connection refused" in get_condition(down.status.conditions, "RegistrySynced").message  # type: ignore[union-attr]
    assert cond(down, "Ready") == ("True", "Serving")
    back = step(down.status, Resolved("1"), complete("1"))
    assert cond(back, "RegistrySynced") == ("True", "Resolved")
    assert back.events == ()


def test_alias_deleted_keeps_serving_and_reports_why() -> None:
    plan = step(ModelDeploymentStatus(), Resolved("1"), DeploymentObservation())
    plan = step(plan.status, Resolved("1"), complete("1"))
    gone = step(plan.status, Unresolved("AliasNotFound", "no alias"), complete("1"))
    assert gone.deploy_version == "1"
    assert cond(gone, "RegistrySynced") == ("False", "AliasNotFound")


def test_suspend_freezes_the_served_version() -> None:
    plan = step(ModelDeploymentStatus(), Resolved("1"), DeploymentObservation())
    plan = step(plan.status, Resolved("1"), complete("1"))
    frozen = step(plan.status, Resolved("2"), complete("1"), spec(suspend=True))
    assert frozen.deploy_version == "1"
    assert frozen.status.target_version == "2"
    assert cond(frozen, "Progressing") == ("False", "Suspended")


def test_gpu_rollout_that_cannot_schedule_switches_to_replace_in_place() -> None:
    gpu = spec(serving={"gpu": {"count": 1}})
    plan = step(ModelDeploymentStatus(serving_version="1"), Resolved("2"), complete("1"), gpu)
    assert not plan.replace_in_place
    msg = "0/5 nodes are available: 2 Insufficient nvidia.com/gpu."
    plan = step(plan.status, Resolved("2"), in_progress("2", unschedulable=msg), gpu)
    assert plan.replace_in_place
    assert cond(plan, "Progressing") == ("True", "PodsUnschedulable")
    assert (
        "Insufficient nvidia.com/gpu"
        in get_condition(plan.status.conditions, "Progressing").message
    )  # type: ignore[union-attr]


def test_history_is_bounded() -> None:
    status = ModelDeploymentStatus()
    deployed = None
    for version in range(1, 30):
        plan = step(
            status,
            Resolved(str(version)),
            complete(deployed) if deployed else DeploymentObservation(),
        )
        plan = step(plan.status, Resolved(str(version)), complete(str(version)))
        status, deployed = plan.status, str(version)
    assert len(status.history) == 10
    assert status.history[-1].version == "29"
    assert all(h.result == "Succeeded" for h in status.history)


def test_observed_generation_on_status_and_conditions() -> None:
    plan = plan_rollout(
        spec(), 7, ModelDeploymentStatus(), SYNCED, Resolved("1"), DeploymentObservation(), NOW
    )
    assert plan.status.observed_generation == 7
    assert {c.observed_generation for c in plan.status.conditions} == {7}
