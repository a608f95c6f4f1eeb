"""What the reconcilers of both kinds share: the result, the Event sink, the status patch."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from mlflow_operator.api.base import StatusModel

EventSink = Callable[[Literal["Normal", "Warning"], str, str], None]
# A status write refused with 409 Conflict: the object changed after it was read, nothing acted
# on the decision, and the next reconcile decides again from the new object, at once.
CONFLICT_RETRY_SECONDS = 0.5


@dataclass(frozen=True)
class ReconcileResult:
    recheck_after: float  # seconds until the next reconcile unless something wakes it sooner


def status_patch(status: StatusModel) -> dict[str, Any]:
    """A merge patch that makes status exactly `status`: unset fields become explicit nulls, in
    nested objects too (a merge patch merges those: a field the new one lacks would keep the
    old object's value, e.g. the last canary's numbers under a new canary)."""
    wire = status.to_wire()
    for name, info in type(status).model_fields.items():
        key = info.alias or name
        value = getattr(status, name)
        if isinstance(value, StatusModel):
            wire[key] = status_patch(value)
        wire.setdefault(key, None)
    return wire


@dataclass
class ToldOnce:
    """The problem last told (a Warning Event, a log line) per object: told when it is new,
    not at every reconcile that still sees it, and again once it went away and came back."""

    _last: dict[str, str] = field(default_factory=dict)

    def news(self, key: str, problem: str | None) -> bool:
        """Record the object's problem now (None: it has none); whether it is one to tell."""
        if problem is None:
            self._last.pop(key, None)
            return False
        new = self._last.get(key) != problem
        self._last[key] = problem
        return new

    def current(self, key: str) -> str | None:
        return self._last.get(key)

    def forget(self, key: str) -> None:
        self._last.pop(key, None)
