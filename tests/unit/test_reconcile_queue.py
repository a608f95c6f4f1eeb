"""The queue every object's reconciles go through (handlers/reconcile_queue.py), on a real event
loop: one reconcile of an object at a time, a wake goes first, the reconciles due on a clock
share one rate, a dropped object is not reconciled again, an object at rest holds no task."""

from __future__ import annotations

import asyncio
import contextvars
import itertools
from collections.abc import Callable, Mapping
from typing import Any

from aiolimiter import AsyncLimiter
from lightkube import ApiError

from mlflow_operator.handlers import reconcile_queue
from mlflow_operator.handlers.reconcile_queue import ReconcileQueue
from mlflow_operator.reconcilers.common import ReconcileResult
from tests.support.polling import eventually_on_loop


class Objects:
    """Reconciles that count themselves, see which body they got, and may take a while."""

    def __init__(self, recheck_after: float = 300.0, takes: float = 0.0) -> None:
        self.recheck_after = recheck_after
        self.takes = takes
        self.reconciles: dict[str, int] = {}
        self.bodies: list[Mapping[str, Any]] = []
        self.running: set[str] = set()
        self.overlapped = False
        self.wakes: dict[str, Callable[[], None]] = {}

    async def reconcile(
        self, key: str, body: Mapping[str, Any], wake: Callable[[], None]
    ) -> ReconcileResult:
        self.overlapped |= key in self.running
        self.running.add(key)
        self.reconciles[key] = self.reconciles.get(key, 0) + 1
        self.bodies.append(body)
        self.wakes[key] = wake
        try:
            await asyncio.sleep(self.takes)
        finally:
            self.running.discard(key)
        return ReconcileResult(recheck_after=self.recheck_after)


def queue(slots: int = 16, per_second: float = 1000) -> ReconcileQueue:
    return ReconcileQueue(slots=slots, timed=AsyncLimiter(per_second, time_period=1))


async def until(condition: Callable[[], bool], wait: float = 2.0) -> None:
    await eventually_on_loop(condition, within=wait, what="the reconciles")


async def test_an_offer_reconciles_the_latest_body_once_at_a_time() -> None:
    objects, q = Objects(takes=0.1), queue()
    q.offer("ns/a", {"v": 1}, objects.reconcile)
    await until(lambda: objects.reconciles.get("ns/a") == 1)
    q.offer("ns/a", {"v": 2}, objects.reconcile)  # while the first one runs
    q.offer("ns/a", {"v": 3}, objects.reconcile)
    await until(lambda: objects.reconciles["ns/a"] == 2)
    await asyncio.sleep(0.3)
    # the two offers during a reconcile are one more reconcile, of the latest, never two at once
    assert objects.reconciles["ns/a"] == 2
    assert [b["v"] for b in objects.bodies] == [1, 3]
    assert not objects.overlapped
    await q.close()


async def test_an_object_at_rest_holds_no_task() -> None:
    objects, q = Objects(recheck_after=300), queue()
    for i in range(50):
        q.offer(f"ns/{i}", {}, objects.reconcile)
    await until(lambda: sum(objects.reconciles.values()) == 50)
    await asyncio.sleep(0.05)
    named = {t.get_name() for t in asyncio.all_tasks()}
    assert not named & set(q.queued())
    await q.close()


async def test_reconciles_due_on_a_clock_share_one_rate() -> None:
    objects, q = Objects(recheck_after=0.01), queue(per_second=2)  # 2 a second, all together
    for i in range(5):
        q.offer(f"ns/{i}", {}, objects.reconcile)
    await asyncio.sleep(1.5)
    await q.close()
    # each one's first reconcile is not timed; then 2 of burst and 2 a second, not 150 each
    total = sum(objects.reconciles.values())
    assert 5 <= total <= 5 + 2 + 4, total


async def test_a_wake_does_not_wait_for_the_clock_s_turn() -> None:
    objects, q = Objects(recheck_after=0.01), queue(per_second=1)
    q.offer("ns/busy", {}, objects.reconcile)
    await until(lambda: objects.reconciles.get("ns/busy") == 2)  # the burst's one turn
    await asyncio.sleep(0.3)
    assert objects.reconciles["ns/busy"] == 2  # due, and waiting for a turn a second away

    objects.wakes["ns/busy"]()  # as the registry watcher wakes it
    await until(lambda: objects.reconciles["ns/busy"] == 3, wait=0.5)
    await q.close()


async def test_at_most_slots_reconcile_at_once() -> None:
    objects, q = Objects(takes=0.2), queue(slots=3)
    for i in range(9):
        q.offer(f"ns/{i}", {}, objects.reconcile)
    await asyncio.sleep(0.1)
    assert len(objects.running) == 3
    await until(lambda: sum(objects.reconciles.values()) == 9)
    await q.close()


async def test_a_dropped_object_is_not_reconciled_again() -> None:
    objects, q = Objects(recheck_after=0.05, takes=0.2), queue(slots=1)
    q.offer("ns/first", {}, objects.reconcile)
    q.offer("ns/gone", {}, objects.reconcile)  # waits for the one slot
    await asyncio.sleep(0.05)
    await q.drop("ns/gone")
    q.wake("ns/gone")
    await asyncio.sleep(0.5)
    assert "ns/gone" not in objects.reconciles
    assert "ns/gone" not in q.queued()
    await q.close()


async def test_a_drop_waits_for_the_reconcile_in_flight() -> None:
    objects, q = Objects(takes=0.3), queue()
    q.offer("ns/a", {}, objects.reconcile)
    await until(lambda: "ns/a" in objects.running)
    await q.drop("ns/a")
    assert "ns/a" not in objects.running  # it finished, not cancelled halfway
    assert objects.reconciles["ns/a"] == 1


async def test_a_failing_reconcile_is_retried_with_backoff(monkeypatch: Any) -> None:
    monkeypatch.setattr(reconcile_queue, "ERROR_BACKOFF_SECONDS", (0.05, 0.1))
    calls: list[float] = []

    async def failing(key: str, body: Mapping[str, Any], wake: Callable[[], None]) -> Any:
        calls.append(asyncio.get_running_loop().time())
        if len(calls) == 1:
            raise ApiError(response=FakeResponse(500))  # type: ignore[arg-type]
        if len(calls) < 4:
            raise RuntimeError("the registry said no")
        return ReconcileResult(recheck_after=300)

    q = queue()
    q.offer("ns/a", {}, failing)
    await until(lambda: len(calls) == 4)
    await asyncio.sleep(0.3)
    assert len(calls) == 4  # succeeded: not retried any more
    gaps = [b - a for a, b in itertools.pairwise(calls)]
    assert gaps[0] >= 0.04, gaps
    assert min(gaps[1:]) >= 0.09, gaps
    await q.close()


class FakeResponse:
    """Just enough of an httpx response for lightkube's ApiError (a fault the API server
    gives under load; a unit test cannot make a real one answer 500 at will)."""

    def __init__(self, code: int) -> None:
        self.status_code = code

    def json(self) -> dict[str, Any]:
        return {"kind": "Status", "code": self.status_code, "message": "boom"}


POSTING = contextvars.ContextVar[str]("POSTING")  # stands for kopf's queue of Events to post


async def test_a_reconcile_woken_from_elsewhere_runs_in_the_offering_context() -> None:
    seen: list[str | None] = []

    async def reconcile(key: str, body: Mapping[str, Any], wake: Callable[[], None]) -> Any:
        seen.append(POSTING.get(None))
        return ReconcileResult(recheck_after=300)

    q = queue()
    POSTING.set("kopf's event queue")  # what kopf's event handlers have
    q.offer("ns/a", {}, reconcile)
    await until(lambda: len(seen) == 1)

    async def registry_watcher() -> None:  # a task of its own, started without it
        assert POSTING.get(None) is None
        q.wake("ns/a")

    await asyncio.create_task(registry_watcher(), context=contextvars.Context())
    await until(lambda: len(seen) == 2)
    assert seen == ["kopf's event queue", "kopf's event queue"]
    await q.close()
