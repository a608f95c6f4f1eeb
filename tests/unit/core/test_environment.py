"""serving.envManager uv: a new version's environment is built by a Job before any pod of it
exists (core/modeldeployment/environment.py), and what that does to the rollout decision."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from mlflow_operator.api.modeldeployment import ModelDeploymentStatus
from mlflow_operator.core.conditions import get_condition
from mlflow_operator.core.modeldeployment.environment import (
    EnvironmentVerdict,
    builds_environments,
    environment_job_name,
    environment_versions,
    judge_environment,
)
from mlflow_operator.core.modeldeployment.observation import DeploymentObservation
from mlflow_operator.core.modeldeployment.preflight import INCOMPATIBLE, Preflight
from mlflow_operator.core.modeldeployment.resolution import Resolved
from mlflow_operator.core.modeldeployment.rollout import RolloutPlan, plan_rollout
from mlflow_operator.core.registry_view import RegistryState
from tests.unit.observations import complete
from tests.unit.specs import spec

NOW = datetime(2026, 12, 5, 10, 0, tzinfo=UTC)
SYNCED = RegistryState(snapshot=None, synced=True, last_sync=NOW)
UV = spec("fraud", serving={"envManager": "uv"})
JOB = "fraud-env-2-0a1b2c3d"


def job(*conditions: str, message: str = "") -> dict[str, Any]:
    return {
        "metadata": {"name": JOB},
        "status": {
            "conditions": [
                {"type": c, "status": "True", "reason": "BackoffLimitExceeded", "message": message}
                for c in conditions
            ]
        },
    }


def failed_pod(message: str) -> dict[str, Any]:
    terminated = {"exitCode": 1, "message": message}
    return {
        "metadata": {"name": f"{JOB}-x"},
        "status": {"containerStatuses": [{"name": "build", "state": {"terminated": terminated}}]},
    }


def verdict(*conditions: str, last: ModelDeploymentStatus | None = None) -> EnvironmentVerdict:
    before = last.environment if last is not None else None
    return judge_environment("2", job(*conditions), [], before, NOW)


def serving_1() -> ModelDeploymentStatus:
    built = judge_environment("1", job("Complete"), [], None, NOW)
    first = plan_rollout(UV, 1, ModelDeploymentStatus(), SYNCED, Resolved("1"),
                         DeploymentObservation(), NOW - timedelta(hours=1),
                         environment=built)  # fmt: skip
    return plan_rollout(UV, 1, first.status, SYNCED, Resolved("1"), complete("1"),
                        NOW - timedelta(hours=1)).status  # fmt: skip


def step(
    last: ModelDeploymentStatus,
    environment: EnvironmentVerdict | None,
    deployment: DeploymentObservation | None = None,
    minutes: int = 0,
) -> RolloutPlan:
    return plan_rollout(
        UV, 1, last, SYNCED, Resolved("2"),
        complete("1") if deployment is None else deployment,
        NOW + timedelta(minutes=minutes), environment=environment,
    )  # fmt: skip


def cond(plan: RolloutPlan, type_: str) -> tuple[str, str]:
    c = get_condition(plan.status.conditions, type_)
    assert c is not None
    return c.status, c.reason


def events(plan: RolloutPlan) -> list[tuple[str, str]]:
    return [(e.type, e.reason) for e in plan.events]


def test_only_uv_on_the_operators_image_with_runtime_mlflow_builds_environments() -> None:
    assert builds_environments(UV)
    assert not builds_environments(spec("fraud"))
    assert not builds_environments(spec("fraud", serving={"runtime": "batched"}))


def test_one_job_per_version_and_image_within_kubernetes_name_limits() -> None:
    a = environment_job_name("fraud", "2", "serving:1")
    assert a.startswith("fraud-env-2-")
    assert a != environment_job_name("fraud", "2", "serving:2")
    assert a != environment_job_name("fraud", "3", "serving:1")
    assert len(environment_job_name("x" * 63, "12345", "serving:1")) <= 63


def test_the_new_version_waits_and_the_serving_ones_are_built_without_waiting() -> None:
    last = ModelDeploymentStatus(serving_version="1")
    assert environment_versions("2", complete("1"), last, held_before=False, preflight=None) == (
        "2", ["2", "1"],
    )  # fmt: skip
    # a gate or an incompatible verdict holds it already: nothing new is built
    broken = Preflight("2", INCOMPATIBLE, "no python_function flavor")
    assert environment_versions("2", complete("1"), last, held_before=True, preflight=None) == (
        None, ["1"],
    )  # fmt: skip
    assert environment_versions("2", complete("1"), last, held_before=False, preflight=broken) == (
        None,
        ["1"],
    )
    # a first rollout: only the new one
    first = ModelDeploymentStatus()
    assert environment_versions("1", DeploymentObservation(), first, held_before=False,
                                preflight=None) == ("1", ["1"])  # fmt: skip


def test_a_new_version_gets_no_pod_while_its_environment_is_built() -> None:
    last = serving_1()
    plan = step(last, verdict())
    assert plan.deploy_version == "1"
    assert plan.rolling_out  # looked at again soon
    assert cond(plan, "Progressing") == ("True", "BuildingEnvironment")
    assert cond(plan, "Ready") == ("True", "Serving")
    assert events(plan) == [("Normal", "BuildingEnvironment")]
    assert plan.status.environment is not None
    assert (plan.status.environment.phase, plan.status.environment.job) == ("Building", JOB)
    assert plan.status.environment.started == NOW

    again = step(plan.status, verdict(last=plan.status), minutes=1)
    assert again.events == ()  # one Event per phase
    assert again.status.environment is not None
    assert again.status.environment.started == NOW  # counted from the first sight

    built = step(again.status, verdict("Complete", last=again.status), minutes=2)
    assert built.deploy_version == "2"
    assert events(built)[0] == ("Normal", "EnvironmentBuilt")
    assert built.status.environment is not None
    assert built.status.environment.phase == "Built"
    assert built.status.environment.finished == NOW


def test_a_failed_build_holds_the_version_back_with_the_builders_words() -> None:
    last = serving_1()
    why = "needs inflection==0.5.1: no matching distribution on the index"
    failed = judge_environment("2", job("Failed"), [failed_pod(why)], None, NOW)
    plan = step(last, failed)
    assert plan.deploy_version == "1"  # what serves keeps serving
    assert plan.status.failed_versions == []  # held, not failed: the user may rebuild
    assert cond(plan, "Ready") == ("True", "Serving")
    assert cond(plan, "Progressing") == ("False", "EnvironmentFailed")
    assert events(plan) == [("Warning", "EnvironmentFailed")]
    message = plan.status.environment.message if plan.status.environment else ""
    assert why in message
    assert "delete the Job to build it again" in message


def test_a_first_rollout_waits_too_and_a_failure_leaves_it_not_ready() -> None:
    nothing = DeploymentObservation()
    plan = plan_rollout(UV, 1, ModelDeploymentStatus(), SYNCED, Resolved("2"), nothing, NOW,
                        environment=verdict())  # fmt: skip
    assert plan.deploy_version is None
    assert cond(plan, "Progressing") == ("True", "BuildingEnvironment")
    failed = plan_rollout(UV, 1, plan.status, SYNCED, Resolved("2"), nothing, NOW,
                          environment=verdict("Failed"))  # fmt: skip
    assert failed.deploy_version is None
    assert cond(failed, "Ready") == ("False", "EnvironmentFailed")


def test_a_version_that_serves_already_is_never_held_by_its_environment() -> None:
    last = serving_1()
    plan = plan_rollout(UV, 1, last, SYNCED, Resolved("1"), complete("1"), NOW,
                        environment=judge_environment("1", job(), [], None, NOW))  # fmt: skip
    assert plan.deploy_version == "1"
    assert cond(plan, "Progressing") == ("False", "RolloutComplete")
