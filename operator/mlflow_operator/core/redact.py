"""Keep credentials written into URLs (`https://user:password@host`) out of what people read.

The API refuses such URLs (spec.registry.trackingUri), but an object stored before that rule,
or an error message that quotes a URL, can still carry them: every message the operator
writes to status, Events, logs or metric labels passes through here first.
"""

from __future__ import annotations

from mlflow_operator.api.urls import USERINFO


def redact(text: str) -> str:
    """`text` with the userinfo of every URL in it replaced by `***`."""
    return USERINFO.sub(r"\1***@", text)
