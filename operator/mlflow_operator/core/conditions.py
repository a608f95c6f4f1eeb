"""Conditions in the metav1.Condition shape, folded purely: old list + new fact -> new list."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from mlflow_operator.api.common import Condition, ConditionStatus

# The summary condition of both kinds (`kubectl wait --for=condition=Ready`).
READY = "Ready"
# Both kinds: the spec breaks a rule the API server could not check (or an older CRD let in).
INVALID_SPEC = "InvalidSpec"
# The operator itself (an Event on a claim Lease): a second install refuses to act there.
INSTALL_CONFLICT = "InstallConflict"


def set_condition(
    conditions: Sequence[Condition],
    type_: str,
    status: ConditionStatus,
    *,
    reason: str,
    message: str,
    generation: int | None,
    now: datetime,
) -> list[Condition]:
    """Return conditions with `type_` set; lastTransitionTime moves only when status changes."""
    previous = get_condition(conditions, type_)
    changed = previous is None or previous.status != status
    updated = Condition(
        type=type_,
        status=status,
        reason=reason,
        message=message,
        last_transition_time=now if changed or previous is None else previous.last_transition_time,
        observed_generation=generation,
    )
    others = [c for c in conditions if c.type != type_]
    if previous is None:
        return [*others, updated]
    return [updated if c.type == type_ else c for c in conditions]


def get_condition(conditions: Sequence[Condition], type_: str) -> Condition | None:
    return next((c for c in conditions if c.type == type_), None)
