"""The daemon loop every object runs (handlers/reconcile_loop.py), on a real event loop: the
reconciles due on a clock share one rate, a wake goes first, a stop ends the loop."""

from __future__ import annotations

import asyncio

from aiolimiter import AsyncLimiter
from kopf._cogs.aiokits import aioenums

from mlflow_operator.handlers.reconcile_loop import reconcile_until_stopped
from mlflow_operator.reconcilers.common import ReconcileResult


class Looping:
    """One object's daemon: counts its reconciles, each asking to be looked at again soon."""

    def __init__(self, recheck_after: float) -> None:
        self.reconciles = 0
        self.recheck_after = recheck_after
        self.wake = asyncio.Event()
        self._stop: aioenums.FlagSetter[object] = aioenums.FlagSetter()
        self.stopped = aioenums.AsyncFlagWaiter(self._stop)

    async def reconcile(self) -> ReconcileResult:
        self.reconciles += 1
        return ReconcileResult(recheck_after=self.recheck_after)

    def run(self, slots: asyncio.Semaphore, timed: AsyncLimiter) -> asyncio.Task[None]:
        return asyncio.create_task(
            reconcile_until_stopped(
                self.reconcile, self.wake, self.stopped, "ns/x", slots=slots, timed=timed
            )
        )

    def stop(self) -> None:
        self._stop.set()


async def test_reconciles_due_on_a_clock_share_one_rate() -> None:
    objects = [Looping(recheck_after=0.01) for _ in range(5)]
    timed = AsyncLimiter(2, time_period=1)  # 2 a second, all objects together
    tasks = [o.run(asyncio.Semaphore(16), timed) for o in objects]
    await asyncio.sleep(1.5)
    for o in objects:
        o.stop()
    await asyncio.wait_for(asyncio.gather(*tasks), timeout=5)
    # each one's first reconcile is not timed; then 2 of burst and 2 a second, not 150 each
    total = sum(o.reconciles for o in objects)
    assert len(objects) <= total <= len(objects) + 2 + 4, total


async def test_a_wake_does_not_wait_for_the_clock_s_turn() -> None:
    timed = AsyncLimiter(1, time_period=100)
    await timed.acquire()  # the budget is spent for the next 100 s
    busy = Looping(recheck_after=0.01)
    task = busy.run(asyncio.Semaphore(16), timed)
    await asyncio.sleep(0.2)
    assert busy.reconciles == 1  # due, and waiting for a turn it will not get soon

    busy.wake.set()
    for _ in range(50):
        if busy.reconciles == 2:
            break
        await asyncio.sleep(0.01)
    assert busy.reconciles == 2

    busy.stop()
    await asyncio.wait_for(task, timeout=1)  # a stop also ends the wait for a turn
