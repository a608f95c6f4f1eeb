"""The adaptive batcher with a fake model: merging, splitting, idle fast path, limits."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field

import pytest

from mlflow_operator_serve.batcher import AdaptiveBatcher


@dataclass(frozen=True)
class Rows:
    """A request: some numbers, and a 'schema' that decides what merges."""

    values: tuple[int, ...]
    schema: str = "a"
    mergeable: bool = True


@dataclass
class FakeModel:
    """Doubles every value; records each call; can be slowed down or made to fail."""

    delay: float = 0.0
    calls: list[list[Rows]] = field(default_factory=list)
    fail_merged: bool = False
    release: threading.Event | None = None

    def merge_key(self, item: Rows) -> Hashable | None:
        return item.schema if item.mergeable else None

    def size(self, item: Rows) -> int:
        return len(item.values)

    def predict_one(self, item: Rows) -> list[int]:
        self._call([item])
        if any(v < 0 for v in item.values):
            raise ValueError(f"negative input {item.values}")
        return [2 * v for v in item.values]

    def predict_merged(self, items: Sequence[Rows]) -> Sequence[list[int]]:
        self._call(list(items))
        if self.fail_merged or any(v < 0 for item in items for v in item.values):
            raise ValueError("merged predict failed")
        return [[2 * v for v in item.values] for item in items]

    def _call(self, items: list[Rows]) -> None:
        self.calls.append(items)
        if self.release is not None:
            self.release.wait(5)
        if self.delay:
            time.sleep(self.delay)


def batcher(
    model: FakeModel, size: int = 64, delay: float = 0.0
) -> AdaptiveBatcher[Rows, list[int]]:
    return AdaptiveBatcher(model, max_batch_size=size, max_batch_delay=delay)


async def test_idle_model_runs_a_request_at_once() -> None:
    model = FakeModel()
    b = batcher(model, delay=5.0)  # the delay must not apply to an idle model
    started = time.perf_counter()
    assert await b.submit(Rows((1, 2))) == [2, 4]
    assert time.perf_counter() - started < 0.5
    assert model.calls == [[Rows((1, 2))]]
    await b.close()


async def test_requests_queued_while_busy_are_merged_and_split_back() -> None:
    model = FakeModel(release=threading.Event())
    b = batcher(model)
    first = asyncio.create_task(b.submit(Rows((1,))))
    await asyncio.sleep(0.05)  # the model is now busy with the first request
    queued = [asyncio.create_task(b.submit(Rows((i, i + 1)))) for i in (10, 20, 30)]
    await asyncio.sleep(0.05)
    assert model.release is not None
    model.release.set()
    assert await first == [2]
    assert [await t for t in queued] == [[20, 22], [40, 42], [60, 62]]
    assert [len(call) for call in model.calls] == [1, 3]
    await b.close()


async def test_max_batch_size_counts_rows() -> None:
    model = FakeModel(release=threading.Event())
    b = batcher(model, size=4)
    first = asyncio.create_task(b.submit(Rows((0,))))
    await asyncio.sleep(0.05)
    queued = [asyncio.create_task(b.submit(Rows((i, i)))) for i in range(1, 6)]
    await asyncio.sleep(0.05)
    assert model.release is not None
    model.release.set()
    await first
    results = [await t for t in queued]
    assert results == [[2 * i, 2 * i] for i in range(1, 6)]
    # 5 requests of 2 rows with at most 4 rows per call: 2 + 2 + 1 requests.
    assert [len(call) for call in model.calls[1:]] == [2, 2, 1]
    await b.close()


async def test_a_request_larger_than_the_limit_still_runs_alone() -> None:
    model = FakeModel()
    b = batcher(model, size=2)
    assert await b.submit(Rows((1, 2, 3))) == [2, 4, 6]
    await b.close()


async def test_unmergeable_and_different_requests_run_alone() -> None:
    model = FakeModel(release=threading.Event())
    b = batcher(model)
    first = asyncio.create_task(b.submit(Rows((0,))))
    await asyncio.sleep(0.05)
    items = [
        Rows((1,), schema="a"),
        Rows((2,), schema="b"),
        Rows((3,), schema="a"),
        Rows((4,), mergeable=False),
        Rows((5,), schema="b"),
    ]
    tasks = [asyncio.create_task(b.submit(item)) for item in items]
    await asyncio.sleep(0.05)
    assert model.release is not None
    model.release.set()
    await first
    assert [await t for t in tasks] == [[2], [4], [6], [8], [10]]
    batches = [[item.values[0] for item in call] for call in model.calls[1:]]
    # Oldest first; each batch takes what merges with its oldest request.
    assert batches == [[1, 3], [2, 5], [4]]
    await b.close()


async def test_a_failing_batch_gives_each_request_its_own_outcome() -> None:
    model = FakeModel(release=threading.Event())
    b = batcher(model)
    first = asyncio.create_task(b.submit(Rows((0,))))
    await asyncio.sleep(0.05)
    good = asyncio.create_task(b.submit(Rows((1,))))
    bad = asyncio.create_task(b.submit(Rows((-1,))))
    also_good = asyncio.create_task(b.submit(Rows((3,))))
    await asyncio.sleep(0.05)
    assert model.release is not None
    model.release.set()
    await first
    assert await good == [2]
    with pytest.raises(ValueError, match="negative input"):
        await bad
    assert await also_good == [6]
    await b.close()


async def test_max_batch_size_one_turns_batching_off() -> None:
    model = FakeModel(delay=0.02)
    b = batcher(model, size=1)
    results = await asyncio.gather(*(b.submit(Rows((i,))) for i in range(5)))
    assert results == [[2 * i] for i in range(5)]
    assert all(len(call) == 1 for call in model.calls)
    await b.close()


async def test_under_load_the_delay_lets_a_batch_fill() -> None:
    model = FakeModel(delay=0.05)
    b = batcher(model, size=8, delay=0.2)
    first = asyncio.create_task(b.submit(Rows((0,))))
    await asyncio.sleep(0.01)
    second = asyncio.create_task(b.submit(Rows((1,))))  # queued: we are now under load
    await asyncio.sleep(0.06)  # first predict done; the second batch waits to fill
    late = [asyncio.create_task(b.submit(Rows((i,)))) for i in (2, 3)]
    await asyncio.gather(first, second, *late)
    assert [len(call) for call in model.calls] == [1, 3]
    await b.close()


async def test_a_caller_that_gives_up_is_skipped() -> None:
    model = FakeModel(release=threading.Event())
    b = batcher(model)
    first = asyncio.create_task(b.submit(Rows((0,))))
    await asyncio.sleep(0.05)
    abandoned = asyncio.create_task(b.submit(Rows((1,))))
    kept = asyncio.create_task(b.submit(Rows((2,))))
    await asyncio.sleep(0.01)
    abandoned.cancel()
    assert model.release is not None
    model.release.set()
    await first
    assert await kept == [4]
    assert [[i.values[0] for i in call] for call in model.calls] == [[0], [2]]
    await b.close()


async def test_close_finishes_queued_work() -> None:
    model = FakeModel(delay=0.02)
    b = batcher(model)
    tasks = [asyncio.create_task(b.submit(Rows((i,)))) for i in range(3)]
    await asyncio.sleep(0)
    await b.close()
    assert [t.result() for t in tasks] == [[0], [2], [4]]
    with pytest.raises(RuntimeError, match="closed"):
        await b.submit(Rows((1,)))
