"""Events of an object a reconcile is about, posted by kopf."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal, cast

import kopf

from mlflow_operator.reconcilers.common import EventSink


def events_of(body: Mapping[str, Any]) -> EventSink:
    """The reconcilers' Event sink for `body` (the reconcile queue keeps it as a plain dict)."""

    def emit(type_: Literal["Normal", "Warning"], reason: str, message: str) -> None:
        kopf.event(kopf.Body(cast(Any, body)), type=type_, reason=reason, message=message)

    return emit
