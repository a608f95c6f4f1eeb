"""A ModelDeployment's status outside a rollout decision: read back, refused, invalid, and
whether a new one is worth a write. Pure; `now` is passed in."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from mlflow_operator.api.modeldeployment import ModelDeploymentStatus
from mlflow_operator.core.conditions import INVALID_SPEC, READY, set_condition
from mlflow_operator.core.modeldeployment.conditions import DEGRADED


def not_ready_status(
    last: ModelDeploymentStatus,
    reason: str,
    message: str,
    generation: int | None,
    now: datetime,
    *,
    degraded: bool,
) -> ModelDeploymentStatus:
    """The last status with Ready=False for this reason, and Degraded=True too when a person
    must act (GitOps health reads Degraded); everything else kept as it was."""
    status = last.model_copy(deep=True)
    for type_ in (READY, DEGRADED) if degraded else (READY,):
        status.conditions = set_condition(
            status.conditions, type_, "False" if type_ == READY else "True",
            reason=reason, message=message, generation=generation, now=now,
        )  # fmt: skip
    return status


def invalid_status(
    last: ModelDeploymentStatus, errors: Sequence[str], generation: int | None, now: datetime
) -> ModelDeploymentStatus:
    """An invalid spec: not Ready, Degraded, every error named; this generation observed."""
    status = not_ready_status(last, INVALID_SPEC, "; ".join(errors), generation, now, degraded=True)
    status.observed_generation = generation
    return status


def status_changed(last: ModelDeploymentStatus, new: ModelDeploymentStatus) -> bool:
    """Whether `new` is worth a write: any change but a lastRegistrySync moved alone.

    Every sweep moves the stamp; writing it even hourly would be 10,000 writes an hour for
    10,000 idle objects (issue scale-ha). It goes along with other changes; the live value is
    the metric mlflow_operator_modeldeployment_last_registry_sync_timestamp_seconds, and a
    failed read turns RegistrySynced False at once.
    """
    if last.to_wire() == new.to_wire():
        return False
    old_sync, new_sync = last.last_registry_sync, new.last_registry_sync
    only_stamp = last.model_copy(update={"last_registry_sync": new_sync}).to_wire() == new.to_wire()
    return not (only_stamp and old_sync is not None and new_sync is not None)
