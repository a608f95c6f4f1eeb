"""Decide, from spec, last status, registry and the observed Deployment, what to serve next.

Level-triggered: the decision depends only on these inputs, never on having seen an event, so a
restarted operator reaches the same decision. The Deployment's pod template (the version label)
is the record of what is being rolled out; status holds what served and what failed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from mlflow_operator.api.common import ConditionStatus
from mlflow_operator.api.modeldeployment import (
    ModelDeploymentSpec,
    ModelDeploymentStatus,
    RolloutRecord,
)
from mlflow_operator.core.conditions import set_condition
from mlflow_operator.core.observation import DeploymentObservation
from mlflow_operator.core.registry_view import RegistryState
from mlflow_operator.core.resolution import Resolution, Resolved, follows

HISTORY_LIMIT = 10

READY = "Ready"
PROGRESSING = "Progressing"
DEGRADED = "Degraded"
REGISTRY_SYNCED = "RegistrySynced"


@dataclass(frozen=True)
class PlannedEvent:
    type: Literal["Normal", "Warning"]
    reason: str
    message: str


@dataclass(frozen=True)
class RolloutPlan:
    """What the reconcile does: which version the pod template pins, and the new status."""

    deploy_version: str | None  # None: nothing to serve yet, create no Deployment
    replace_in_place: bool  # maxSurge 0 / maxUnavailable 1: new pods cannot get GPUs otherwise
    status: ModelDeploymentStatus
    events: tuple[PlannedEvent, ...] = ()
    succeeded_version: str | None = None  # a rollout finished now (tag it in MLflow)
    failed_version: str | None = None  # a rollout failed now (tag it in MLflow)
    rolling_out: bool = False


@dataclass
class _Draft:
    """The status being built, with the events that go with it."""

    status: ModelDeploymentStatus
    generation: int | None
    now: datetime
    events: list[PlannedEvent] = field(default_factory=list)

    def condition(self, type_: str, status: ConditionStatus, reason: str, message: str) -> None:
        self.status.conditions = set_condition(
            self.status.conditions,
            type_,
            status,
            reason=reason,
            message=message,
            generation=self.generation,
            now=self.now,
        )

    def event(self, type_: Literal["Normal", "Warning"], reason: str, message: str) -> None:
        self.events.append(PlannedEvent(type_, reason, message))

    def record(self, version: str, result: str) -> None:
        """Close the open history entry of version (or add one) with result."""
        history = self.status.history
        open_entry = next(
            (h for h in reversed(history) if h.version == version and h.result == "InProgress"),
            None,
        )
        if open_entry is None:
            open_entry = RolloutRecord(version=version, started=self.now, result="InProgress")
            history.append(open_entry)
        open_entry.result = result  # type: ignore[assignment]
        open_entry.finished = self.now

    def start(self, version: str) -> None:
        for entry in self.status.history:
            if entry.result == "InProgress" and entry.version != version:
                entry.result = "Superseded"
                entry.finished = self.now
        if not any(h.version == version and h.result == "InProgress" for h in self.status.history):
            self.status.history.append(
                RolloutRecord(version=version, started=self.now, result="InProgress")
            )
        del self.status.history[:-HISTORY_LIMIT]


def plan_rollout(  # noqa: PLR0917  (the inputs of one decision, all needed)
    spec: ModelDeploymentSpec,
    generation: int | None,
    last: ModelDeploymentStatus,
    registry: RegistryState,
    resolution: Resolution | None,
    deployment: DeploymentObservation,
    now: datetime,
) -> RolloutPlan:
    """The whole decision of one reconcile. Pure."""
    draft = _Draft(last.model_copy(deep=True), generation, now)
    status = draft.status
    status.observed_generation = generation
    status.follows = follows(spec.model)
    _registry_conditions(draft, registry, resolution)

    if isinstance(resolution, Resolved):
        status.target_version = resolution.version
        if resolution.run_id:
            status.run_id = resolution.run_id
    target = status.target_version
    current = deployment.version
    last_good = status.serving_version
    # A failed version is blocked only while the registry still selects it.
    status.failed_versions = [v for v in status.failed_versions if v == target]

    if spec.suspend or target is None:
        deploy = current
    elif target in status.failed_versions:
        deploy = last_good if current == target and last_good else current
    else:
        deploy = target

    succeeded = failed = None
    if deploy is not None and deploy == current and deployment.exists:
        if deployment.rollout_complete:
            succeeded = _complete(draft, deploy)
        elif (
            deployment.progress_deadline_exceeded
            and deploy == target
            and target not in status.failed_versions  # already failed: decided before
            and not spec.suspend
        ):
            failed = target
            deploy = _fail(draft, spec, target, last_good)
    if deploy is not None and deploy != current:
        if target in status.failed_versions and deploy != target:
            if failed is None:  # the failure was decided before (e.g. by an operator that died)
                draft.event("Normal", "RollingBack", f"returning to version {deploy}")
        else:
            _start(draft, deploy, current)

    rolling_out = deploy is not None and (deploy != current or not deployment.rollout_complete)
    replace_in_place = (
        rolling_out
        and spec.serving.gpu.count > 0
        and bool(deployment.unschedulable_message)
        and deploy == current
    )
    _rollout_conditions(draft, spec, deploy, deployment, rolling_out)
    status.model_uri = f"models:/{spec.model.name}/{deploy}" if deploy else None
    status.replicas = deployment.replicas if deployment.exists else 0
    status.ready_replicas = deployment.ready_replicas if deployment.exists else 0
    return RolloutPlan(
        deploy_version=deploy,
        replace_in_place=replace_in_place,
        status=status,
        events=tuple(draft.events),
        succeeded_version=succeeded,
        failed_version=failed,
        rolling_out=rolling_out,
    )


def _registry_conditions(
    draft: _Draft, registry: RegistryState, resolution: Resolution | None
) -> None:
    if registry.last_sync is not None:
        draft.status.last_registry_sync = registry.last_sync
    if not registry.synced:
        draft.condition(
            REGISTRY_SYNCED,
            "False",
            "RegistryUnreachable",
            f"cannot read the MLflow registry ({registry.error}); serving is unchanged",
        )
    elif resolution is None or isinstance(resolution, Resolved):
        version = resolution.version if resolution else draft.status.target_version
        draft.condition(
            REGISTRY_SYNCED, "True", "Resolved", f"{draft.status.follows} is version {version}"
        )
    else:
        draft.condition(REGISTRY_SYNCED, "False", resolution.reason, resolution.message)


def _complete(draft: _Draft, version: str) -> str | None:
    """The Deployment serves `version` on every pod. Returns it when that is news."""
    status = draft.status
    # It became available after all (e.g. GPUs were freed): it is no longer a failed version.
    status.failed_versions = [v for v in status.failed_versions if v != version]
    if status.serving_version == version:
        if any(h.version == version and h.result == "InProgress" for h in status.history):
            draft.record(version, "Succeeded")
        return None
    if status.serving_version is not None:
        status.previous_version = status.serving_version
    before = status.serving_version
    status.serving_version = version
    draft.record(version, "Succeeded")
    was = f" (was {before})" if before else ""
    draft.event("Normal", "RolloutSucceeded", f"serving version {version}{was}")
    return version


def _fail(
    draft: _Draft, spec: ModelDeploymentSpec, target: str, last_good: str | None
) -> str | None:
    """The target did not become available in time. Returns the version to deploy now."""
    status = draft.status
    status.failed_versions = [target]
    deadline = spec.rollout.progress_deadline_seconds
    if spec.rollout.auto_rollback and last_good and last_good != target:
        draft.record(target, "RolledBack")
        draft.event(
            "Warning",
            "RolloutFailed",
            f"version {target} was not available within {deadline}s; rolling back to "
            f"version {last_good}; it is not retried until the registry selects another version",
        )
        return last_good
    draft.record(target, "Failed")
    why = "autoRollback is off" if not spec.rollout.auto_rollback else "no earlier version served"
    draft.event(
        "Warning",
        "RolloutFailed",
        f"version {target} was not available within {deadline}s; {why}",
    )
    return target


def _start(draft: _Draft, version: str, current: str | None) -> None:
    draft.start(version)
    if current is None:
        draft.event("Normal", "RolloutStarted", f"deploying version {version}")
    else:
        draft.event("Normal", "RolloutStarted", f"rolling out version {version} (was {current})")


def _rollout_conditions(
    draft: _Draft,
    spec: ModelDeploymentSpec,
    deploy: str | None,
    deployment: DeploymentObservation,
    rolling_out: bool,
) -> None:
    status = draft.status
    failed = bool(status.failed_versions)
    if failed:
        version = status.failed_versions[0]
        serving_note = f"serving version {status.serving_version}" if status.serving_version else ""
        draft.condition(
            DEGRADED,
            "True",
            "RolloutFailed",
            f"version {version} did not become available within "
            f"{spec.rollout.progress_deadline_seconds}s"
            + (f"; {serving_note}" if serving_note else "")
            + "; waiting for the registry to select another version",
        )
    else:
        draft.condition(DEGRADED, "False", "AsExpected", "no failed rollout")

    if spec.suspend:
        draft.condition(
            PROGRESSING, "False", "Suspended", "suspended: the registry is not followed"
        )
    elif rolling_out and deploy is not None:
        draft.condition(PROGRESSING, "True", *_progress(deploy, deployment))
    elif deploy is None:
        draft.condition(PROGRESSING, "False", "NoVersion", "no version resolved yet")
    else:
        draft.condition(PROGRESSING, "False", "RolloutComplete", f"version {deploy} rolled out")

    if deploy is not None and not rolling_out and deployment.exists:
        if failed:
            draft.condition(READY, "True", "ServingPreviousVersion", f"serving version {deploy}")
        else:
            draft.condition(READY, "True", "Serving", f"serving version {deploy}")
    elif deploy is None:
        draft.condition(
            READY, "False", "NoVersion", "waiting for the registry to resolve a version"
        )
    else:
        serving = status.serving_version
        meanwhile = f"; version {serving} serves meanwhile" if serving else ""
        draft.condition(READY, "False", "RollingOut", f"rolling out version {deploy}{meanwhile}")


def _progress(version: str, deployment: DeploymentObservation) -> tuple[str, str]:
    if deployment.unschedulable_message:
        return (
            "PodsUnschedulable",
            f"rolling out version {version}: new pods cannot be scheduled: "
            f"{deployment.unschedulable_message}",
        )
    if deployment.version != version:
        return "NewVersion", f"rolling out version {version}"
    return (
        "RollingOut",
        f"rolling out version {version}: {deployment.updated_replicas}/"
        f"{deployment.desired_replicas} pods updated, {deployment.available_replicas} available",
    )
