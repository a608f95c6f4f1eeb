"""The rollout decision, as sequences of reconciles a user would see."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from typing import Any

from mlflow_operator.api.modeldeployment import ModelDeploymentSpec, ModelDeploymentStatus
from mlflow_operator.core.conditions import get_condition
from mlflow_operator.core.modeldeployment.ledger import RolloutLedger
from mlflow_operator.core.modeldeployment.observation import (
    DeploymentObservation,
    observe_deployment,
)
from mlflow_operator.core.modeldeployment.resolution import Resolved, Unresolved
from mlflow_operator.core.modeldeployment.rollout import RolloutPlan, plan_rollout
from mlflow_operator.core.modeldeployment.status import status_changed
from mlflow_operator.core.registry_view import RegistryState
from tests.unit.observations import complete, deployment_object, in_progress
from tests.unit.specs import spec

NOW = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
SYNCED = RegistryState(snapshot=None, synced=True, last_sync=NOW)
DOWN = RegistryState(snapshot=None, synced=False, last_sync=NOW, error="connection refused")
MODEL = "fraud"  # in the model URIs asserted below


def cond(plan: RolloutPlan, type_: str) -> tuple[str, str]:
    c = get_condition(plan.status.conditions, type_)
    assert c is not None
    return c.status, c.reason


def cond_of(status: ModelDeploymentStatus, type_: str) -> tuple[str, str, str]:
    c = get_condition(status.conditions, type_)
    assert c is not None
    return c.status, c.reason, c.message


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
        the_spec or spec(MODEL),
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
    frozen = step(plan.status, Resolved("2"), complete("1"), spec(MODEL, suspend=True))
    assert frozen.deploy_version == "1"
    assert frozen.status.target_version == "2"
    assert cond(frozen, "Progressing") == ("False", "Suspended")


def test_gpu_rollout_that_cannot_schedule_switches_to_replace_in_place() -> None:
    gpu = spec(MODEL, serving={"gpu": {"count": 1}})
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
        spec(MODEL), 7, ModelDeploymentStatus(), SYNCED, Resolved("1"), DeploymentObservation(), NOW
    )
    assert plan.status.observed_generation == 7
    assert {c.observed_generation for c in plan.status.conditions} == {7}


# -- regressions of "rollback that sticks" ---------------------------------------------------


def test_auto_rollback_off_keeps_the_failed_version_on_every_later_reconcile() -> None:
    """Defect 1: the reconcile after the failing one rolled back although autoRollback was off.

    Failed on the code before the fix: the second reconcile planned version 1.
    """
    manual = spec(MODEL, rollout={"autoRollback": False})
    plan = step(ModelDeploymentStatus(serving_version="1"), Resolved("2"), complete("1"), manual)
    assert plan.deploy_version == "2"
    plan = step(plan.status, Resolved("2"), in_progress("2", exceeded=True), manual, minutes=11)
    assert plan.deploy_version == "2"
    assert plan.failed_version == "2"
    assert cond(plan, "Degraded") == ("True", "RolloutFailed")
    assert [(e.type, e.reason) for e in plan.events] == [("Warning", "RolloutFailed")]
    for minute in (12, 13, 60):
        plan = step(plan.status, Resolved("2"), in_progress("2", exceeded=True), manual,
                    minutes=minute)  # fmt: skip
        assert plan.deploy_version == "2", f"the template changed at minute {minute}"
        assert plan.events == ()
        assert cond(plan, "Degraded") == ("True", "RolloutFailed")
    # the registry selects another version: that one rolls out
    plan = step(plan.status, Resolved("3"), in_progress("2", exceeded=True), manual, minutes=61)
    assert plan.deploy_version == "3"


def test_a_stale_deadline_condition_does_not_fail_a_freshly_applied_version() -> None:
    """Defect 2: vN's ProgressDeadlineExceeded, still on the Deployment after vN+1 was applied
    (observedGeneration behind generation), declared vN+1 failed at once.

    Failed on the code before the fix: the plan rolled back to 1 and listed 3 as failed.
    """
    stuck_on_2 = {
        "metadata": {"name": "fraud", "generation": 7},
        "spec": {
            "replicas": 1,
            "template": {"metadata": {"labels": {"mlflowops.dev/model-version": "3"}}},
        },
        "status": {
            "observedGeneration": 6,  # the controller has not seen version 3's template yet
            "replicas": 2,
            "updatedReplicas": 1,
            "availableReplicas": 1,
            "readyReplicas": 1,
            "conditions": [
                {"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable"},
                {"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded"},
            ],
        },
    }
    last = ModelDeploymentStatus(target_version="3", serving_version="1")
    plan = step(last, Resolved("3"), observe_deployment(stuck_on_2))
    assert plan.deploy_version == "3"
    assert plan.failed_version is None
    assert plan.status.failed_versions == []
    assert cond(plan, "Degraded") == ("False", "AsExpected")


def test_progress_counts_wait_for_a_pod_of_the_new_template() -> None:
    """Before the deployment controller has made a pod of the new template, the Deployment's
    counts are the old version's: `1/1 pods updated` of version 1's pod was reported as
    version 2's progress. The message, and so the status, stays the decision's until then: the
    bench's audit log showed that write and a `0/1 pods updated` one in every rollout."""
    decided = step(
        ModelDeploymentStatus(target_version="1", serving_version="1"), Resolved("2"),
        complete("1"),
    ).status  # fmt: skip
    assert cond_of(decided, "Progressing") == ("True", "NewVersion", "rolling out version 2")
    unobserved = dataclasses.replace(complete("1"), version="2", status_current=False)
    no_new_pod = dataclasses.replace(complete("1"), version="2", updated_replicas=0)
    for deployment in (unobserved, no_new_pod):
        plan = step(decided, Resolved("2"), deployment, minutes=1)
        assert cond(plan, "Progressing") == ("True", "NewVersion")
        assert not status_changed(decided, plan.status)

    plan = step(decided, Resolved("2"), in_progress("2"), minutes=1)
    assert cond_of(plan.status, "Progressing") == (
        "True", "RollingOut", "rolling out version 2: 1/1 pods updated, 1 available",
    )  # fmt: skip


def test_a_deleted_deployment_is_recreated_on_the_last_good_version() -> None:
    """Defect 9: with a failed version still selected, a deleted Deployment stayed deleted.

    Failed on the code before the fix: nothing was planned (NoVersion, total outage).
    """
    last = ModelDeploymentStatus(target_version="2", serving_version="1", failed_versions=["2"])
    plan = step(last, Resolved("2"), DeploymentObservation())
    assert plan.deploy_version == "1"
    assert plan.status.failed_versions == ["2"]
    assert cond(plan, "Degraded") == ("True", "RolloutFailed")
    assert cond(plan, "Ready") == ("False", "RollingOut")


ROLLED_BACK = {"mlflowops.dev/failed-versions": "2", "mlflowops.dev/last-good-version": "1"}


def test_a_lost_or_stale_status_does_not_retry_a_failed_version() -> None:
    """Defect 3: failedVersions lived in status only; a status lost (a failed write, a crash)
    or read stale put the failed version back every deadline period. The Deployment's
    ledger, written by the same apply that rolled back, keeps the failure.

    Failed on the code before the fix: both plans deployed version 2 again.
    """
    rolled_back = observe_deployment(deployment_object("1", annotations=ROLLED_BACK))
    lost = ModelDeploymentStatus()
    stale = ModelDeploymentStatus(target_version="1", serving_version="1")
    for last in (lost, stale):
        plan = step(last, Resolved("2"), rolled_back)
        assert plan.deploy_version == "1"
        assert plan.status.failed_versions == ["2"]
        assert plan.status.serving_version == "1"
        assert plan.events == ()
        assert cond(plan, "Degraded") == ("True", "RolloutFailed")


def test_a_success_recorded_before_a_crash_is_not_recorded_again() -> None:
    """Seen once in a full e2e run (history 1, 2, 2): the operator wrote the status with the
    success of 2 and died before the apply that moves the ledger's last good version to 2.
    The next operator trusted the lagging ledger and recorded (and announced) it again.
    The model-based test finds it too, as I7 (core/modeldeployment/invariants.py).
    """
    first = step(ModelDeploymentStatus(), Resolved("1"), DeploymentObservation())
    first = step(first.status, Resolved("1"), complete("1"))
    started = step(first.status, Resolved("2"), complete("1"), minutes=1)
    lagging = observe_deployment(
        deployment_object(
            "2",
            annotations={
                "mlflowops.dev/failed-versions": "",
                "mlflowops.dev/last-good-version": "1",
            },
        )
    )
    recorded = step(started.status, Resolved("2"), lagging, minutes=2)
    assert recorded.events[0].reason == "RolloutSucceeded"
    again = step(recorded.status, Resolved("2"), lagging, minutes=3)  # after the crash
    assert [h.version for h in again.status.history] == ["1", "2"]
    assert again.events == ()
    assert again.succeeded_version is None
    assert again.status.serving_version == "2"
    assert again.ledger.last_good_version == "2"  # the apply of this reconcile catches up


def test_the_apply_that_rolls_back_records_the_failure() -> None:
    plan = step(
        ModelDeploymentStatus(serving_version="1"), Resolved("2"), in_progress("2", exceeded=True)
    )
    assert plan.deploy_version == "1"
    assert plan.ledger == RolloutLedger(failed_versions=("2",), last_good_version="1")


def test_pods_that_could_not_be_created_do_not_fail_the_version() -> None:
    """Defect 11: a missing ServiceAccount (or a quota) kept the pods from being created; the
    version was listed as failed, rolled back and tagged "rollout failed" in MLflow.

    Failed on the code before the fix: version 2 was declared failed.
    """
    refused = {
        "type": "ReplicaFailure",
        "status": "True",
        "reason": "FailedCreate",
        "message": 'pods "fraud-6d4" is forbidden: error looking up service account ml/serving: '
        'serviceaccount "serving" not found',
    }
    exceeded = {"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded"}
    observed = observe_deployment(
        deployment_object("2", conditions=[refused, exceeded], available=0)
    )
    last = ModelDeploymentStatus(target_version="2", serving_version="1")
    plan = step(last, Resolved("2"), observed)
    assert plan.deploy_version == "2"
    assert plan.failed_version is None
    assert plan.status.failed_versions == []
    status, reason = cond(plan, "Degraded")
    assert (status, reason) == ("True", "RolloutBlocked")
    degraded = get_condition(plan.status.conditions, "Degraded")
    assert degraded is not None
    assert 'serviceaccount "serving" not found' in degraded.message
    assert [(e.type, e.reason) for e in plan.events] == [("Warning", "RolloutBlocked")]
    again = step(plan.status, Resolved("2"), observed)
    assert again.events == ()  # one Event per blocker, not one per reconcile


def test_pods_that_cannot_pull_their_image_do_not_fail_the_version() -> None:
    """Defect 11, the pod side: ImagePullBackOff of the new template's pods.

    Failed on the code before the fix: version 2 was declared failed.
    """
    exceeded = {"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded"}
    pod = {
        "metadata": {"name": "fraud-abc", "labels": {"mlflowops.dev/model-version": "2"}},
        "status": {
            "containerStatuses": [
                {
                    "name": "server",
                    "state": {
                        "waiting": {
                            "reason": "ImagePullBackOff",
                            "message": 'Back-off pulling image "registry.local/serve:1"',
                        }
                    },
                }
            ]
        },
    }
    observed = observe_deployment(deployment_object("2", conditions=[exceeded], available=0), [pod])
    plan = step(ModelDeploymentStatus(target_version="2", serving_version="1"), Resolved("2"),
                observed)  # fmt: skip
    assert plan.deploy_version == "2"
    assert plan.status.failed_versions == []
    degraded = get_condition(plan.status.conditions, "Degraded")
    assert degraded is not None
    assert degraded.reason == "RolloutBlocked"
    assert "pod fraud-abc: ImagePullBackOff" in degraded.message


def test_without_the_registry_a_remembered_target_does_not_move_the_template() -> None:
    """A status restored from an old backup (or written before a crash) names a target the
    registry may no longer select; while the registry cannot be read it must not steer.

    Failed on the code before the fix: the template moved from version 3 back to version 1.
    """
    stale = ModelDeploymentStatus(target_version="1", serving_version="1")
    plan = step(stale, None, complete("3"), registry=DOWN)
    assert plan.deploy_version == "3"
    assert "RolloutStarted" not in [e.reason for e in plan.events]
    # what the registry selects again decides
    assert step(plan.status, Resolved("1"), complete("3")).deploy_version == "1"


def test_a_failure_is_remembered_through_a_registry_outage() -> None:
    failed = ModelDeploymentStatus(target_version="2", serving_version="1", failed_versions=["2"])
    plan = step(failed, None, complete("1"), registry=DOWN)
    assert plan.status.failed_versions == ["2"]
    assert plan.deploy_version == "1"
    back = step(plan.status, Resolved("2"), complete("1"))
    assert back.deploy_version == "1"


def test_a_spec_change_that_never_becomes_available_does_not_blame_the_served_version() -> None:
    """Found by the model-based test (seed 116): version 1 served; a spec change (a GPU) gave
    it a new pod template that never became available, and the deadline declared version 1
    itself failed, the only version known to work; a deleted Deployment could then not come
    back on it without breaking I1. Now the stuck spec change is reported, the version is not
    listed as failed.
    """
    gpu = spec(MODEL, serving={"gpu": {"count": 1}})
    served = ModelDeploymentStatus(target_version="1", serving_version="1")
    plan = step(served, Resolved("1"), in_progress("1", exceeded=True), gpu)
    assert plan.deploy_version == "1"
    assert plan.status.failed_versions == []
    assert plan.failed_version is None
    assert cond(plan, "Degraded") == ("True", "SpecRolloutFailed")
    assert cond(plan, "Ready") == ("False", "SpecRolloutFailed")
    assert [(e.type, e.reason) for e in plan.events] == [("Warning", "SpecRolloutFailed")]
    assert not plan.rolling_out
    again = step(plan.status, Resolved("1"), in_progress("1", exceeded=True), gpu)
    assert again.events == ()
    # deleted meanwhile: it comes back on version 1
    assert step(again.status, Resolved("1"), DeploymentObservation(), gpu).deploy_version == "1"


def test_an_annotation_only_generation_counts_as_observed_when_the_spec_generation_is_known() -> (
    None
):
    dep = deployment_object("1")
    dep["metadata"]["generation"] = 4  # the ledger annotations were written after generation 3
    assert not observe_deployment(dep).rollout_complete  # unknown: the generation counts
    assert observe_deployment(dep, spec_generation=3).rollout_complete
    assert not observe_deployment(dep, spec_generation=4).rollout_complete


def test_a_deleted_deployment_of_the_serving_version_is_recreated_not_rolled_out_again() -> None:
    """Found by invariant I7: recreating the Deployment of the version that serves was told as
    a new rollout of it (RolloutStarted, a second Succeeded entry in history)."""
    first = step(ModelDeploymentStatus(), Resolved("1"), DeploymentObservation())
    serving = step(first.status, Resolved("1"), complete("1"))
    gone = step(serving.status, Resolved("1"), DeploymentObservation(), minutes=1)
    assert gone.deploy_version == "1"
    assert [e.reason for e in gone.events] == ["Recreating"]
    back = step(gone.status, Resolved("1"), complete("1"), minutes=2)
    assert [(h.version, h.result) for h in back.status.history] == [("1", "Succeeded")]
    assert back.events == ()
