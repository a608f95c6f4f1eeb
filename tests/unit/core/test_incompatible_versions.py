"""What a version the serving image cannot run does to the rollout decision: spec.rollout.
onIncompatible Hold (the default: held back, not failed) and Fail (a failed version of
rollback-that-sticks). Either way it never gets a pod."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from mlflow_operator.api.modeldeployment import ModelDeploymentSpec, ModelDeploymentStatus
from mlflow_operator.core.conditions import get_condition
from mlflow_operator.core.modeldeployment.ledger import RolloutLedger
from mlflow_operator.core.modeldeployment.observation import (
    DeploymentObservation,
    observe_deployment,
)
from mlflow_operator.core.modeldeployment.preflight import (
    COMPATIBLE,
    INCOMPATIBLE,
    Preflight,
    preflight_version,
)
from mlflow_operator.core.modeldeployment.resolution import Resolved
from mlflow_operator.core.modeldeployment.rollout import RolloutPlan, plan_rollout
from mlflow_operator.core.modeldeployment.write_back import version_tag_values
from mlflow_operator.core.registry_view import RegistryState
from tests.unit.observations import complete, deployment_object
from tests.unit.specs import spec

NOW = datetime(2026, 12, 5, 10, 0, tzinfo=UTC)
STAMP = "2026-12-05T10:00:00Z"
SYNCED = RegistryState(snapshot=None, synced=True, last_sync=NOW)
DOWN = RegistryState(snapshot=None, synced=False, last_sync=NOW, error="connection refused")
FAULT = "needs mlflow==2.9.2 (requirements.txt), the image has mlflow 3.17.2: another major version"
BROKEN = Preflight("2", INCOMPATIBLE, FAULT)
HOLD = spec("fraud")
FAIL = spec("fraud", rollout={"onIncompatible": "Fail"})


def step(
    the_spec: ModelDeploymentSpec,
    last: ModelDeploymentStatus,
    deployment: DeploymentObservation,
    preflight: Preflight | None,
    *,
    target: str = "2",
    minutes: int = 0,
    registry: RegistryState = SYNCED,
) -> RolloutPlan:
    """One reconcile; `preflight` as the reconciler passes it: None for a settled version."""
    if preflight is not None:
        assert preflight_version(Resolved(target), deployment, last) == preflight.version
    resolution = Resolved(target) if registry.synced else None  # as the reconciler resolves
    return plan_rollout(
        the_spec, 1, last, registry, resolution, deployment,
        NOW + timedelta(minutes=minutes), preflight=preflight,
    )  # fmt: skip


def serving_1(the_spec: ModelDeploymentSpec) -> ModelDeploymentStatus:
    first = plan_rollout(the_spec, 1, ModelDeploymentStatus(), SYNCED, Resolved("1"),
                         DeploymentObservation(), NOW - timedelta(hours=1))  # fmt: skip
    return plan_rollout(the_spec, 1, first.status, SYNCED, Resolved("1"), complete("1"),
                        NOW - timedelta(hours=1)).status  # fmt: skip


def cond(plan: RolloutPlan, type_: str) -> tuple[str, str, str]:
    c = get_condition(plan.status.conditions, type_)
    assert c is not None
    return c.status, c.reason, c.message


def events(plan: RolloutPlan) -> list[tuple[str, str]]:
    return [(e.type, e.reason) for e in plan.events]


def test_the_default_holds_an_incompatible_version_without_failing_it() -> None:
    assert HOLD.rollout.on_incompatible == "Hold"
    plan = step(HOLD, serving_1(HOLD), complete("1"), BROKEN)
    assert plan.deploy_version == "1"
    assert plan.status.failed_versions == []
    assert plan.ledger.failed_versions == ()
    assert plan.failed_version is None
    assert cond(plan, "Ready")[:2] == ("True", "Serving")
    assert cond(plan, "Progressing")[:2] == ("False", "VersionIncompatible")
    assert cond(plan, "Degraded")[:2] == ("False", "AsExpected")
    assert events(plan) == [("Warning", "VersionIncompatible")]
    assert version_tag_values(plan, NOW) == [
        ("2", f"incompatible with the serving image at {STAMP}: {FAULT}")
    ]
    # not settled: asked again at the next reconcile (after an operator upgrade it may pass)
    assert preflight_version(Resolved("2"), complete("1"), plan.status) == "2"
    again = step(HOLD, plan.status, complete("1"), BROKEN, minutes=1)
    assert again.events == ()
    passed = step(HOLD, again.status, complete("1"), Preflight("2", COMPATIBLE, "ok"), minutes=2)
    assert passed.deploy_version == "2"


def test_with_fail_an_incompatible_version_is_a_failed_one_that_sticks() -> None:
    plan = step(FAIL, serving_1(FAIL), complete("1"), BROKEN)
    assert plan.deploy_version == "1"  # never a pod of it
    assert plan.status.failed_versions == ["2"]
    assert plan.ledger == RolloutLedger(failed_versions=("2",), last_good_version="1")
    why = f"version 2 cannot run on the serving image: {FAULT}"
    assert cond(plan, "Degraded") == (
        "True", "VersionIncompatible",
        f"{why}; serving version 1; waiting for the registry to select another version",
    )  # fmt: skip
    assert cond(plan, "Ready") == ("True", "Serving", "serving version 1")
    assert cond(plan, "Progressing") == ("False", "VersionIncompatible", why)
    assert [(e.type, e.reason, e.message) for e in plan.events] == [
        (
            "Warning", "VersionIncompatible",
            f"{why}; a failed version (rollout.onIncompatible: Fail); version 1 keeps serving; "
            "it is not retried until the registry selects another version",
        )
    ]  # fmt: skip
    entry = plan.status.history[-1]  # no start: it never got a pod
    assert (entry.version, entry.result, entry.started) == ("2", "Failed", None)
    assert entry.finished == NOW
    assert entry.message == f"incompatible with the serving image: {FAULT}"
    assert plan.failed_version == "2"
    assert plan.incompatible is None  # one tag, the failed version's
    assert version_tag_values(plan, NOW) == [
        ("2", f"rollout failed at {STAMP}: incompatible with the serving image: {FAULT}")
    ]

    # settled: the check is not asked again, failedVersions is the memory
    assert preflight_version(Resolved("2"), complete("1"), plan.status) is None
    for minutes in (1, 2):
        again = step(FAIL, plan.status, complete("1"), None, minutes=minutes)
        assert again.deploy_version == "1"
        assert again.status.failed_versions == ["2"]
        assert again.events == ()
        assert version_tag_values(again, NOW) == []
        assert again.status.conditions == plan.status.conditions  # no flapping
        assert again.status.history == plan.status.history

    # the registry moves on to a version the image runs: it rolls out, 2 is forgotten
    good = Preflight("3", COMPATIBLE, "checked")
    moved = step(FAIL, again.status, complete("1"), good, target="3", minutes=3)
    assert moved.deploy_version == "3"
    assert moved.status.failed_versions == []
    assert cond(moved, "Degraded")[:2] == ("False", "AsExpected")
    assert events(moved) == [("Normal", "RolloutStarted")]


def test_a_failure_by_incompatibility_survives_a_lost_status_and_an_outage() -> None:
    plan = step(FAIL, serving_1(FAIL), complete("1"), BROKEN)
    applied = observe_deployment(deployment_object("1", ledger=plan.ledger))
    # status lost: the ledger keeps the failure; the check is asked again, nothing re-announced
    lost = step(FAIL, ModelDeploymentStatus(), applied, BROKEN, minutes=1)
    assert lost.deploy_version == "1"
    assert lost.status.failed_versions == ["2"]
    assert lost.events == ()
    assert lost.failed_version is None
    assert version_tag_values(lost, NOW) == []
    assert cond(lost, "Degraded")[:2] == ("True", "VersionIncompatible")
    # MLflow unreachable: still held, still failed
    down = step(FAIL, plan.status, complete("1"), None, registry=DOWN, minutes=2)
    assert down.deploy_version == "1"
    assert down.status.failed_versions == ["2"]
    assert cond(down, "Degraded")[:2] == ("True", "VersionIncompatible")


def test_clearing_the_record_to_retry_checks_the_version_again() -> None:
    """docs/modeldeployment.md: `kubectl annotate deploy/<name> mlflowops.dev/failed-versions=`
    retries a failed version. One failed by the pre-flight check is checked again first: it
    gets a pod only if the serving image runs it now."""
    plan = step(FAIL, serving_1(FAIL), complete("1"), BROKEN)
    recorded = observe_deployment(deployment_object("1", ledger=plan.ledger))
    assert preflight_version(Resolved("2"), recorded, plan.status) is None
    cleared = observe_deployment(
        deployment_object(
            "1", ledger=plan.ledger, annotations={"mlflowops.dev/failed-versions": ""}
        )
    )
    still = step(FAIL, plan.status, cleared, BROKEN, minutes=1)
    assert still.deploy_version == "1"
    assert still.status.failed_versions == ["2"]
    assert still.events == ()  # told once already
    upgraded = Preflight("2", COMPATIBLE, "checked")
    retried = step(FAIL, plan.status, cleared, upgraded, minutes=2)
    assert retried.deploy_version == "2"
    assert retried.status.failed_versions == []
    assert events(retried) == [("Normal", "RolloutStarted")]


def test_with_fail_a_first_version_the_image_cannot_run_serves_nothing_and_stays_failed() -> None:
    first = Preflight("1", INCOMPATIBLE, FAULT)
    plan = step(FAIL, ModelDeploymentStatus(), DeploymentObservation(), first, target="1")
    assert plan.deploy_version is None
    assert plan.status.failed_versions == ["1"]
    why = f"version 1 cannot run on the serving image: {FAULT}"
    assert cond(plan, "Ready") == ("False", "VersionIncompatible", why)
    assert cond(plan, "Degraded") == (
        "True", "VersionIncompatible",
        f"{why}; no earlier version served, so nothing is deployed; waiting for the registry to "
        "select another version",
    )  # fmt: skip
    assert "nothing serves" in plan.events[0].message
    again = step(FAIL, plan.status, DeploymentObservation(), None, target="1", minutes=1)
    assert again.deploy_version is None
    assert again.status.conditions == plan.status.conditions
    assert again.events == ()


def test_with_fail_and_auto_rollback_off_the_serving_version_stays() -> None:
    the_spec = spec("fraud", rollout={"onIncompatible": "Fail", "autoRollback": False})
    plan = step(the_spec, serving_1(the_spec), complete("1"), BROKEN)
    assert plan.deploy_version == "1"
    again = step(the_spec, plan.status, complete("1"), None, minutes=1)
    assert again.deploy_version == "1"
    assert again.status.failed_versions == ["2"]
    assert cond(again, "Ready")[:2] == ("True", "Serving")
