"""The loop every object's kopf daemon runs: reconcile, then sleep until woken or due.

A daemon per object (not kopf's change handlers and timers) so that anything can wake one
object at once: its own watch events, its children's, the registry watcher. One reconcile of
an object runs at a time by construction.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any

import kopf
from lightkube import ApiError

from mlflow_operator.reconcilers.common import ReconcileResult

ERROR_BACKOFF_SECONDS = (1.0, 2.0, 5.0, 10.0, 30.0)


async def reconcile_until_stopped(
    reconcile: Callable[[], Awaitable[ReconcileResult]],
    wake: asyncio.Event,
    stopped: kopf.DaemonStopped,
    logger: Any,
) -> None:
    failures = 0
    while not stopped:
        wake.clear()
        try:
            delay, failures = (await reconcile()).recheck_after, 0
        except ApiError as exc:  # reported in status and Events by the reconciler
            delay = ERROR_BACKOFF_SECONDS[min(failures, len(ERROR_BACKOFF_SECONDS) - 1)]
            failures += 1
            logger.warning(
                "reconcile: Kubernetes API error %s; retrying in %.0fs", exc.status.code, delay
            )
        except Exception:
            delay = ERROR_BACKOFF_SECONDS[min(failures, len(ERROR_BACKOFF_SECONDS) - 1)]
            failures += 1
            logger.exception("reconcile failed; retrying in %.0fs", delay)
        await _sleep_until_woken(wake, stopped, delay)


def wake(memo: kopf.Memo, key: str) -> None:
    """Wake the daemon of `namespace/name`, if it runs."""
    event = memo.wakers.get(key)
    if event is not None:
        event.set()


async def _sleep_until_woken(
    wake: asyncio.Event, stopped: kopf.DaemonStopped, delay: float
) -> None:
    woken = asyncio.ensure_future(wake.wait())
    stopping = asyncio.ensure_future(stopped.wait())
    try:
        await asyncio.wait({woken, stopping}, timeout=delay, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (woken, stopping):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
