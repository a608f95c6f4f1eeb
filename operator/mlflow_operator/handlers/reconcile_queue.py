"""One queue for every object's reconciles: reconcile, then wait until woken or due.

controller-runtime's workqueue, for kopf: the kopf glue hands it each object's latest watch
event (`offer`), anything can wake an object at once (its children's watch events, the registry
watcher, the activator), and one reconcile of an object runs at a time by construction.

Not a kopf daemon per object, which this was: a daemon is a task for the life of its object,
with kopf's stopper, logger and the three tasks of each wait, ~7 KB per ModelDeployment at rest
(gc histogram of bench_scale's operator, docs/benchmarks.md). Here an object at rest is its
latest body and one timer; a task exists only while it waits for its turn or reconciles.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from aiolimiter import AsyncLimiter
from lightkube import ApiError

from mlflow_operator.reconcilers.common import ReconcileResult

logger = logging.getLogger(__name__)
ERROR_BACKOFF_SECONDS = (1.0, 2.0, 5.0, 10.0, 30.0)
# How long a reconcile in flight may finish after its object went or the operator stops
# (kopf's daemon cancellation_timeout, which this replaced)
STOP_TIMEOUT_SECONDS = 10.0

Reconcile = Callable[[str, Mapping[str, Any], Callable[[], None]], Awaitable[ReconcileResult]]


@dataclass(slots=True, eq=False)
class _Queued:
    """One object: its latest body, how to reconcile it, and where it is in the queue."""

    body: Mapping[str, Any]
    reconcile: Reconcile  # the same function for every object of a kind
    wake: Callable[[], None]
    task: asyncio.Task[None] | None = None  # waiting for its turn, for a slot, or reconciling
    turn: asyncio.Future[None] | None = None  # its wait for a timed turn, ended by a wake
    woken: bool = False  # woken since its reconcile started: reconcile again at once
    timer: asyncio.TimerHandle | None = None  # due on the clock
    failures: int = 0
    dropped: bool = False


class ReconcileQueue:
    """Reconciles of every object, at most `slots` at once.

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

    Every reconcile runs in a copy of the context of the first `offer` (a kopf event handler's):
    `kopf.event` finds its queue of Events to post in a context variable that only kopf's tasks
    carry, and a reconcile woken from the registry watcher's task would have lost its Events.
    """

    def __init__(self, *, slots: int, timed: AsyncLimiter) -> None:
        self._slots = asyncio.Semaphore(slots)
        self._timed = timed
        self._queued: dict[str, _Queued] = {}
        self._context: contextvars.Context | None = None

    def offer(self, key: str, body: Mapping[str, Any], reconcile: Reconcile) -> None:
        """`body` is the object's latest version: reconcile it now (after the one in flight)."""
        if self._context is None:
            self._context = contextvars.copy_context()
        queued = self._queued.get(key)
        if queued is None:
            wake = functools.partial(self.wake, key)
            self._queued[key] = queued = _Queued(body=body, reconcile=reconcile, wake=wake)
        queued.body = body
        self.wake(key)

    def wake(self, key: str) -> None:
        """Reconcile `key` now, or again right after the reconcile in flight; unknown: nothing."""
        queued = self._queued.get(key)
        if queued is None or queued.dropped:
            return
        if queued.task is None:
            self._start(key, queued, timed=False)
        elif queued.turn is not None:
            queued.turn.cancel()  # a turn cancelled in the limiter's queue spends nothing
        else:
            queued.woken = True

    def queued(self) -> list[str]:
        """The keys of every object it follows."""
        return list(self._queued)

    async def drop(self, key: str) -> None:
        """No more reconciles of `key` (it went); returns once the one in flight ended."""
        queued = self._queued.pop(key, None)
        if queued is not None:
            await self._stop(queued)

    async def close(self) -> None:
        """No more reconciles of anything; returns once those in flight ended."""
        queued, self._queued = list(self._queued.values()), {}
        await asyncio.gather(*(self._stop(q) for q in queued))

    @staticmethod
    async def _stop(queued: _Queued) -> None:
        queued.dropped = True
        if queued.timer is not None:
            queued.timer.cancel()
        if queued.turn is not None:
            queued.turn.cancel()
        task = queued.task
        if task is not None:
            with contextlib.suppress(asyncio.CancelledError, asyncio.TimeoutError):
                await asyncio.wait_for(asyncio.shield(task), STOP_TIMEOUT_SECONDS)
            if not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    def _start(self, key: str, queued: _Queued, *, timed: bool) -> None:
        if queued.timer is not None:
            queued.timer.cancel()
            queued.timer = None
        context = self._context.copy() if self._context is not None else None
        run = self._run(key, queued, timed=timed)
        queued.task = asyncio.create_task(run, name=key, context=context)

    def _due(self, key: str, queued: _Queued) -> None:
        queued.timer = None
        if not queued.dropped and queued.task is None:
            self._start(key, queued, timed=True)

    async def _run(self, key: str, queued: _Queued, *, timed: bool) -> None:
        try:
            if timed:
                queued.turn = asyncio.ensure_future(self._timed.acquire())
                try:
                    await asyncio.wait([queued.turn])  # done, or cancelled by a wake
                finally:
                    queued.turn.cancel()
                    queued.turn = None
            delay = 0.0
            while not queued.dropped:
                async with self._slots:
                    if queued.dropped:  # it went while this waited for a slot
                        return
                    queued.woken = False  # what woke it so far is seen by this reconcile
                    delay = await self._reconcile(key, queued)
                if not queued.woken:
                    break
        finally:
            queued.task = None
        if not queued.dropped:
            queued.timer = asyncio.get_running_loop().call_later(delay, self._due, key, queued)

    @staticmethod
    async def _reconcile(key: str, queued: _Queued) -> float:
        """One reconcile; the seconds until the next unless woken sooner."""
        try:
            result = await queued.reconcile(key, queued.body, queued.wake)
        except ApiError as exc:  # reported in status and Events by the reconciler
            delay = _backoff(queued)
            logger.warning(
                "reconcile %s: Kubernetes API error %s; retrying in %.0fs",
                key, exc.status.code, delay,
            )  # fmt: skip
            return delay
        except Exception:
            delay = _backoff(queued)
            logger.exception("reconcile %s failed; retrying in %.0fs", key, delay)
            return delay
        queued.failures = 0
        return result.recheck_after


def _backoff(queued: _Queued) -> float:
    delay = ERROR_BACKOFF_SECONDS[min(queued.failures, len(ERROR_BACKOFF_SECONDS) - 1)]
    queued.failures += 1
    return delay
