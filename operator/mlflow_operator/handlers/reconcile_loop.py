"""The loop every object's kopf daemon runs: reconcile, then sleep until woken or due.

A daemon per object (not kopf's change handlers and timers) so that anything can wake one
object at once: its own watch events, its children's, the registry watcher. One reconcile of
an object runs at a time by construction.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

import kopf
from aiolimiter import AsyncLimiter
from lightkube import ApiError

from mlflow_operator.reconcilers.common import ReconcileResult

logger = logging.getLogger(__name__)
ERROR_BACKOFF_SECONDS = (1.0, 2.0, 5.0, 10.0, 30.0)


async def reconcile_until_stopped(
    reconcile: Callable[[], Awaitable[ReconcileResult]],
    wake: asyncio.Event,
    stopped: kopf.DaemonStopped,
    key: str,
    *,
    slots: asyncio.Semaphore,
    timed: AsyncLimiter,
) -> None:
    """Reconcile `key` until kopf stops its daemon, in one of `slots` (shared by every object).

    The slots are controller-runtime's MaxConcurrentReconciles: a registry move that wakes
    1,000 ModelDeployments at once must not start 1,000 reconciles at once, which waited for
    the client's connections until they timed out and the API server answered 429
    (bench_scale); queued, they finish sooner.

    A reconcile due on a clock rather than woken (a rollout looked at again for what its pods
    do, a poll interval) also waits for its turn in `timed`, a rate shared by every object:
    1,000 rollouts each looked at every 2 s asked 500 reconciles a second of 16 slots, and the
    ones woken by real progress (their Deployments' watch events) queued behind them. A wake
    ends that wait at once.

    Retries are logged on this module's logger, not kopf's object logger: kopf posts that
    one's warnings as Events, and the reconcilers report refusals in Events themselves.
    """
    failures = 0
    while not stopped:
        wake.clear()
        try:
            async with slots:
                result = await reconcile()
            delay, failures = result.recheck_after, 0
        except ApiError as exc:  # reported in status and Events by the reconciler
            delay = ERROR_BACKOFF_SECONDS[min(failures, len(ERROR_BACKOFF_SECONDS) - 1)]
            failures += 1
            logger.warning(
                "reconcile %s: Kubernetes API error %s; retrying in %.0fs",
                key, exc.status.code, delay,
            )  # fmt: skip
        except Exception:
            delay = ERROR_BACKOFF_SECONDS[min(failures, len(ERROR_BACKOFF_SECONDS) - 1)]
            failures += 1
            logger.exception("reconcile %s failed; retrying in %.0fs", key, delay)
        await _first(wake, stopped, delay=delay)
        if not wake.is_set() and not stopped:
            await _first(wake, stopped, turn=timed.acquire())


def wake(memo: kopf.Memo, key: str) -> None:
    """Wake the daemon of `namespace/name`, if it runs."""
    event = memo.wakers.get(key)
    if event is not None:
        event.set()


async def _first(
    wake: asyncio.Event,
    stopped: kopf.DaemonStopped,
    *,
    delay: float | None = None,
    turn: Awaitable[None] | None = None,
) -> None:
    """Wait until woken, stopped, `turn` done or `delay` passed, whichever comes first;
    the others are cancelled (a turn cancelled in the limiter's queue spends nothing)."""
    waits = [asyncio.ensure_future(wake.wait()), asyncio.ensure_future(stopped.wait())]
    if turn is not None:
        waits.append(asyncio.ensure_future(turn))
    try:
        await asyncio.wait(waits, timeout=delay, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in waits:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
