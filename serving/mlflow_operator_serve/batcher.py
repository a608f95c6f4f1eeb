"""Adaptive batching: merge requests that queue up while the model is busy.

There is no fixed wait. A request that finds the model idle is predicted at once, alone, so a
lone client sees the latency of an unbatched server. Requests that arrive while a predict runs
queue up; when the model frees up, the queued requests that can be merged with the oldest one
go into one predict call (up to `max_batch_size` rows), and the rest wait for the next round.
Under load the batch size thus follows the arrival rate by itself: the slower the model, the
more requests pile up and the larger (and cheaper per row) the next batch.

This module knows nothing about MLflow or pandas; a `BatchModel` says which items can be merged,
how many rows they hold, and how to predict one item or a merged group.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Hashable, Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Generic, Protocol, TypeVar

_logger = logging.getLogger(__name__)

ItemT = TypeVar("ItemT")
ResultT = TypeVar("ResultT")
ItemT_contra = TypeVar("ItemT_contra", contravariant=True)
ResultT_co = TypeVar("ResultT_co", covariant=True)


class BatchModel(Protocol[ItemT_contra, ResultT_co]):
    """What the batcher needs from a model. The predict methods block; they run in a thread."""

    def merge_key(self, item: ItemT_contra) -> Hashable | None:
        """Items with equal keys may be merged into one predict call; None: always alone."""

    def size(self, item: ItemT_contra) -> int:
        """Rows in the item, counted against `max_batch_size`."""

    def predict_one(self, item: ItemT_contra) -> ResultT_co:
        """Predict one item alone; exceptions go to that item's caller."""

    def predict_merged(self, items: Sequence[ItemT_contra]) -> Sequence[ResultT_co]:
        """Predict several items in one call and split the result, one entry per item.

        Raising (anything) makes the batcher predict each item alone instead, so that every
        caller gets exactly what it would have got alone, its own error included.
        """


class BatchObserver(Protocol):
    """Metrics hooks; called on the event loop."""

    def batch_done(self, requests: int, rows: int, seconds: float) -> None: ...

    def queue_depth(self, depth: int) -> None: ...


class _NoObserver:
    def batch_done(self, requests: int, rows: int, seconds: float) -> None:
        pass

    def queue_depth(self, depth: int) -> None:
        pass


@dataclass(eq=False)
class _Job(Generic[ItemT, ResultT]):
    item: ItemT
    key: Hashable | None
    rows: int
    future: asyncio.Future[ResultT] = field(repr=False)


@dataclass
class _Outcome(Generic[ResultT]):
    result: ResultT | None = None
    error: BaseException | None = None


class AdaptiveBatcher(Generic[ItemT, ResultT]):
    """Queues items and feeds them to one model, one predict call at a time."""

    def __init__(
        self,
        model: BatchModel[ItemT, ResultT],
        *,
        max_batch_size: int,
        max_batch_delay: float = 0.0,
        observer: BatchObserver | None = None,
        executor: Executor | None = None,
    ) -> None:
        if max_batch_size < 1:
            raise ValueError(f"max_batch_size must be at least 1, got {max_batch_size}")
        if max_batch_delay < 0:
            raise ValueError(f"max_batch_delay must not be negative, got {max_batch_delay}")
        self._model = model
        self._max_batch_size = max_batch_size
        self._max_batch_delay = max_batch_delay
        self._observer: BatchObserver = observer or _NoObserver()
        # One thread: the model sees one predict at a time. Many models are not thread-safe,
        # and under the GIL parallel predicts would mostly take turns anyway; parallelism
        # comes from worker processes.
        self._owns_executor = executor is None
        self._executor = executor or ThreadPoolExecutor(1, thread_name_prefix="predict")
        self._pending: deque[_Job[ItemT, ResultT]] = deque()
        self._wakeup = asyncio.Event()
        self._closing = False
        # True while a predict call runs (from the queue or from the idle fast path).
        self._busy = False
        # Whether requests arrived during the last predict call: we are under load.
        self._backlogged = False
        self._task: asyncio.Task[None] | None = None

    @property
    def queue_depth(self) -> int:
        return len(self._pending)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="batcher")

    async def submit(self, item: ItemT) -> ResultT:
        """Predict one item, merged with others when they queue up together."""
        if self._closing:
            raise RuntimeError("the batcher is closed")
        self.start()
        if not self._busy and not self._pending:
            return await self._predict_now(item)
        key = self._model.merge_key(item) if self._max_batch_size > 1 else None
        job: _Job[ItemT, ResultT] = _Job(
            item=item,
            key=key,
            rows=self._model.size(item),
            future=asyncio.get_running_loop().create_future(),
        )
        self._pending.append(job)
        self._observer.queue_depth(len(self._pending))
        self._wakeup.set()
        return await job.future

    async def _predict_now(self, item: ItemT) -> ResultT:
        """The idle model predicts this item at once, from the caller's own task.

        Going through the queue would cost two extra task switches per request for nothing;
        requests that arrive meanwhile queue up and the batching loop takes them afterwards.
        """
        self._busy = True
        started = time.perf_counter()
        try:
            loop = asyncio.get_running_loop()
            outcome = await loop.run_in_executor(self._executor, self._predict_alone, item)
        finally:
            # On cancellation (timeout) the predict call may still run in its thread; the
            # single-thread executor keeps the next one waiting until it finishes.
            self._busy = False
            self._backlogged = bool(self._pending)
            if self._pending:
                self._wakeup.set()
        self._observer.batch_done(1, self._model.size(item), time.perf_counter() - started)
        if outcome.error is not None:
            raise outcome.error
        return outcome.result  # type: ignore[return-value]

    async def close(self) -> None:
        """Finish what is queued, then stop."""
        self._closing = True
        self._wakeup.set()
        if self._task is not None:
            await self._task
        if self._owns_executor:
            self._executor.shutdown(wait=True)

    async def _run(self) -> None:
        while True:
            while not self._pending or self._busy:
                if self._closing and not self._pending:
                    return
                self._wakeup.clear()
                await self._wakeup.wait()
            batch = self._take_batch()
            if not batch:
                continue
            self._busy = True
            try:
                await self._run_batch(batch, self._backlogged)
            finally:
                self._busy = False
            self._backlogged = bool(self._pending)

    async def _run_batch(self, batch: list[_Job[ItemT, ResultT]], backlogged: bool) -> None:
        if backlogged and self._max_batch_delay > 0:
            await self._fill(batch)
        self._observer.queue_depth(len(self._pending))
        started = time.perf_counter()
        outcomes = await self._predict(batch)
        self._observer.batch_done(
            len(batch), sum(job.rows for job in batch), time.perf_counter() - started
        )
        for job, outcome in zip(batch, outcomes, strict=True):
            if job.future.done():  # the caller gave up (timeout, disconnect)
                continue
            if outcome.error is not None:
                job.future.set_exception(outcome.error)
            else:
                job.future.set_result(outcome.result)  # type: ignore[arg-type]

    def _take_batch(self) -> list[_Job[ItemT, ResultT]]:
        """The oldest live job plus the queued jobs that merge with it, in arrival order."""
        while self._pending and self._pending[0].future.done():
            self._pending.popleft()
        if not self._pending:
            return []
        head = self._pending.popleft()
        batch = [head]
        if head.key is not None:
            self._take_mergeable(batch)
        return batch

    def _take_mergeable(self, batch: list[_Job[ItemT, ResultT]]) -> None:
        head = batch[0]
        rows = sum(job.rows for job in batch)
        if rows >= self._max_batch_size:
            return
        kept: deque[_Job[ItemT, ResultT]] = deque()
        while self._pending:
            job = self._pending.popleft()
            if job.future.done():
                continue
            if job.key == head.key and rows + job.rows <= self._max_batch_size:
                batch.append(job)
                rows += job.rows
            else:
                kept.append(job)
            if rows >= self._max_batch_size:
                break
        kept.extend(self._pending)
        self._pending = kept

    async def _fill(self, batch: list[_Job[ItemT, ResultT]]) -> None:
        """Under load, wait up to max_batch_delay for more mergeable jobs."""
        if batch[0].key is None:
            return
        deadline = time.monotonic() + self._max_batch_delay
        while sum(job.rows for job in batch) < self._max_batch_size:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            self._wakeup.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), remaining)
            self._take_mergeable(batch)

    async def _predict(self, batch: list[_Job[ItemT, ResultT]]) -> list[_Outcome[ResultT]]:
        items = [job.item for job in batch]
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._predict_blocking, items)

    def _predict_blocking(self, items: list[ItemT]) -> list[_Outcome[ResultT]]:
        if len(items) > 1:
            try:
                results = self._model.predict_merged(items)
                if len(results) == len(items):
                    return [_Outcome(result=result) for result in results]
                _logger.debug("merged predict returned %d parts for %d", len(results), len(items))
            except Exception:  # noqa: BLE001 - any failure: predict each alone, exact errors
                _logger.debug("merged predict of %d items failed; one at a time", len(items))
        return [self._predict_alone(item) for item in items]

    def _predict_alone(self, item: ItemT) -> _Outcome[ResultT]:
        try:
            return _Outcome(result=self._model.predict_one(item))
        except Exception as error:  # noqa: BLE001 - handed to the caller's future
            return _Outcome(error=error)
