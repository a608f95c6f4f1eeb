"""A watcher that stops before its first listing must not hold kopf's readiness forever.

kopf (1.45.2, the newest) holds every handler of the operator until each watch of an indexed
resource has listed once (`operator_indexed`). With a namespace pattern (`t-*`), every
namespace that appears gets its own watches, each with such a hold, dropped when its listing
ends. When the namespace is deleted first, kopf stops those watches
(`orchestration.terminate_redundancies`) without dropping their holds: from then on no handler
of any object in any namespace runs again until the operator restarts. It happens at start
when matching namespaces are terminating (found by the e2e: an MLflowServer never got its
StatefulSet after a run of tests that each delete their namespace), and whenever a namespace
is deleted within its first listing.

No kopf setting or public hook reaches it; the fix is one `finally` around kopf's watcher, at
the one place kopf calls it (`queueing.watcher`, looked up on the module at each call). kopf is
pinned below 1.46 (pyproject.toml); `tests/unit/test_watcher_readiness.py` runs
kopf's own orchestration to check the shape this relies on.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Coroutine
from typing import Any

from kopf._core.reactor import queueing

_PATCHED = "_mlflow_operator_drops_readiness"


def drop_readiness_when_a_watcher_stops() -> None:
    """Wrap kopf's watcher so that its readiness hold is dropped whenever it ends. Idempotent."""
    original: Callable[..., Coroutine[Any, Any, None]] = queueing.watcher
    if getattr(original, _PATCHED, False):
        return

    @functools.wraps(original)
    async def watcher(*args: Any, **kwargs: Any) -> None:
        try:
            await original(*args, **kwargs)
        finally:
            indexed = kwargs.get("operator_indexed")
            hold = kwargs.get("resource_indexed")
            if indexed is not None and hold is not None:
                await indexed.drop_toggle(hold)  # a no-op when the listing already dropped it

    setattr(watcher, _PATCHED, True)
    queueing.watcher = watcher
