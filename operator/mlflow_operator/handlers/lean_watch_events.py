"""Watch events lose what nobody here reads before kopf keeps them.

The reconcile queue keeps the latest watch event's object of every ModelDeployment and
MLflowServer (handlers/reconcile_queue.py) for as long as the object exists, and
each decoded event has its own copy of every key and label value. So the object of every event
loses its `metadata.managedFields` (server-side apply's bookkeeping, read by no handler here;
controller-runtime's informers drop it too, with `TransformStripManagedFields`), and the
objects of the operator's own kinds are `compact`ed (keys and short strings shared). A
tracemalloc snapshot of bench_scale's operator at 1,000 ModelDeployments found these kept
bodies the largest part of its memory (26 MiB of 125 MiB traced).

No kopf setting or public hook transforms events (kopf 1.45); the hook is the one
watcher_readiness.py uses: kopf's `queueing.watcher`, wrapped to wrap the processor it is
given. kopf is pinned below 1.46; `tests/unit/test_lean_watch_events.py` runs kopf's watcher.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Coroutine, Mapping
from typing import Any

from kopf._core.reactor import queueing

from mlflow_operator.api import API_GROUP
from mlflow_operator.reconcilers.watched import compact_object

_PATCHED = "_mlflow_operator_leans_watch_events"


def lean_object(obj: Mapping[str, Any], *, compact: bool) -> dict[str, Any]:
    """The object without managedFields; `compact` too when asked (kept for long)."""
    metadata = obj.get("metadata") or {}
    lean = {**obj, "metadata": {k: v for k, v in metadata.items() if k != "managedFields"}}
    return compact_object(lean) if compact else lean


def lean_watch_events() -> None:
    """Wrap kopf's watcher so that every event it hands on is lean. Idempotent."""
    original: Callable[..., Coroutine[Any, Any, None]] = queueing.watcher
    if getattr(original, _PATCHED, False):
        return

    @functools.wraps(original)
    async def watcher(*args: Any, **kwargs: Any) -> None:
        resource = kwargs.get("resource")
        processor = kwargs.get("processor")
        if processor is not None:
            own_kind = getattr(resource, "group", None) == API_GROUP
            kwargs["processor"] = _leaning(processor, compact=own_kind)
        await original(*args, **kwargs)

    setattr(watcher, _PATCHED, True)
    queueing.watcher = watcher


def _leaning(
    processor: Callable[..., Coroutine[Any, Any, Any]], *, compact: bool
) -> Callable[..., Coroutine[Any, Any, Any]]:
    async def process(*, raw_event: Mapping[str, Any], **kwargs: Any) -> Any:
        obj = raw_event.get("object")
        if isinstance(obj, Mapping):
            raw_event = {**raw_event, "object": lean_object(obj, compact=compact)}
        return await processor(raw_event=raw_event, **kwargs)

    return process
