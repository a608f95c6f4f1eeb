"""Watch events lose what nobody here reads before kopf keeps them.

The reconcile queue keeps the latest watch event's object of every ModelDeployment and
MLflowServer (handlers/reconcile_queue.py) for as long as the object exists, and
each decoded event has its own copy of every key and label value. So the object of every event
loses its `metadata.managedFields` (server-side apply's bookkeeping, read by no handler here;
controller-runtime's informers drop it too, with `TransformStripManagedFields`), and the
objects of the operator's own kinds are `compact`ed (keys, short strings and equal parts shared). A
tracemalloc snapshot of bench_scale's operator at 1,000 ModelDeployments found these kept
bodies the largest part of its memory (26 MiB of 125 MiB traced).

Leaned as the watch stream yields them, before kopf's watcher queues them: while its
`worker_limit` workers per kind are busy (an apply of thousands), kopf keeps reading and queues
the raw event of every other object in an unbounded queue of its own.

No kopf setting or public hook transforms events (kopf 1.45); the hook is the stream kopf's
watcher reads, `watching.infinite_watch` (its only caller is `queueing.watcher`), wrapped.
kopf is pinned below 1.46; `tests/unit/test_lean_watch_events.py` runs kopf's watcher.
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

from kopf._cogs.clients import watching

from mlflow_operator.api import API_GROUP
from mlflow_operator.reconcilers.watched import compact_object

_PATCHED = "_mlflow_operator_leans_watch_events"


def lean_object(obj: Mapping[str, Any], *, compact: bool) -> dict[str, Any]:
    """The object without managedFields; `compact` too when asked (kept for long)."""
    metadata = obj.get("metadata") or {}
    lean = {**obj, "metadata": {k: v for k, v in metadata.items() if k != "managedFields"}}
    return compact_object(lean) if compact else lean


def lean_watch_events() -> None:
    """Wrap kopf's watch stream so that every event it yields is lean. Idempotent."""
    original: Callable[..., AsyncIterator[Any]] = watching.infinite_watch
    if getattr(original, _PATCHED, False):
        return

    @functools.wraps(original)
    async def infinite_watch(*args: Any, **kwargs: Any) -> AsyncIterator[Any]:
        compact = getattr(kwargs.get("resource"), "group", None) == API_GROUP
        async for event in original(*args, **kwargs):
            # kopf's Bookmarks (not dicts) and BOOKMARK events (no object) pass as they are
            obj = event.get("object") if isinstance(event, dict) else None
            if isinstance(obj, Mapping):
                yield {**event, "object": lean_object(obj, compact=compact)}
            else:
                yield event

    setattr(infinite_watch, _PATCHED, True)
    watching.infinite_watch = infinite_watch
