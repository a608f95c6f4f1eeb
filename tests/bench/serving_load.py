"""A closed-loop HTTP load generator for the serving benchmark (aiohttp, keep-alive).

`concurrency` clients each send one request, wait for the answer, and send the next, for a
fixed time; throughput and latency percentiles come from the answers that arrived.

One asyncio process tops out at a few thousand requests per second; `processes` > 1 spreads
the clients over that many processes (spawned), which start warming up together (a barrier)
and whose answers are counted together (requests summed, percentiles over all latencies).
"""

from __future__ import annotations

import asyncio
import multiprocessing
import queue
import time
from dataclasses import dataclass
from typing import Any

import aiohttp


@dataclass(frozen=True)
class LoadResult:
    concurrency: int
    requests: int
    errors: int
    seconds: float
    p50_ms: float
    p99_ms: float

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


def percentile(sorted_values: list[float], fraction: float) -> float:
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, round(fraction * (len(sorted_values) - 1)))
    return sorted_values[index]


@dataclass(frozen=True)
class _Raw:
    """What one load process measured: every latency (seconds, unsorted), errors, window;
    or why it could not (failure)."""

    latencies: list[float]
    errors: int
    seconds: float
    failure: str = ""


def _summarize(concurrency: int, raws: list[_Raw]) -> LoadResult:
    latencies = sorted(latency for raw in raws for latency in raw.latencies)
    return LoadResult(
        concurrency,
        len(latencies),
        sum(raw.errors for raw in raws),
        max(raw.seconds for raw in raws),  # the windows overlap: the longest is the whole load
        percentile(latencies, 0.50) * 1000,
        percentile(latencies, 0.99) * 1000,
    )


async def _run(
    url: str, body: bytes, content_type: str, *, concurrency: int, seconds: float, warmup: float
) -> _Raw:
    connector = aiohttp.TCPConnector(limit=concurrency, force_close=False)
    headers = {"Content-Type": content_type}
    latencies: list[float] = []
    errors = 0
    recording = False
    async with aiohttp.ClientSession(connector=connector) as session:
        stop_at = 0.0

        async def client() -> None:
            nonlocal errors
            while time.perf_counter() < stop_at:
                started = time.perf_counter()
                async with session.post(url, data=body, headers=headers) as response:
                    await response.read()
                    ok = response.status == 200
                if recording:
                    if ok:
                        latencies.append(time.perf_counter() - started)
                    else:
                        errors += 1

        stop_at = time.perf_counter() + warmup
        await asyncio.gather(*(client() for _ in range(concurrency)))
        recording = True
        began = time.perf_counter()
        stop_at = began + seconds
        await asyncio.gather(*(client() for _ in range(concurrency)))
        elapsed = time.perf_counter() - began
    return _Raw(latencies, errors, elapsed)


def split(concurrency: int, processes: int) -> list[int]:
    """concurrency clients over at most `processes` processes, as evenly as can be (no process
    without a client): split(64, 4) == [16, 16, 16, 16], split(6, 4) == [2, 2, 1, 1]."""
    used = max(1, min(processes, concurrency))
    return [concurrency // used + (1 if i < concurrency % used else 0) for i in range(used)]


def _load_process(
    results: Any,
    barrier: Any,
    url: str,
    body: bytes,
    content_type: str,
    concurrency: int,
    seconds: float,
    warmup: float,
) -> None:
    """One of the load processes: wait for the others, then load and send back what it saw."""
    try:
        barrier.wait(timeout=120)
        raw = asyncio.run(
            _run(url, body, content_type, concurrency=concurrency, seconds=seconds, warmup=warmup)
        )
    except BaseException as exc:
        results.put(_Raw([], 0, 0.0, failure=f"{type(exc).__name__}: {exc}"))
        raise
    results.put(raw)


def _run_in_processes(
    url: str,
    body: bytes,
    content_type: str,
    *,
    clients: list[int],
    seconds: float,
    warmup: float,
) -> list[_Raw]:
    context = multiprocessing.get_context("spawn")  # no fork of a process with threads
    results = context.Queue()
    barrier = context.Barrier(len(clients))
    workers = [
        context.Process(
            target=_load_process,
            args=(results, barrier, url, body, content_type, n, seconds, warmup),
            name=f"load-{i}",
            daemon=True,
        )
        for i, n in enumerate(clients)
    ]
    for worker in workers:
        worker.start()
    raws: list[_Raw] = []
    # start (imports) + barrier + warmup + window + the slowest answer
    deadline = time.monotonic() + 120 + warmup + seconds + 60
    try:
        while len(raws) < len(workers):
            try:
                got: _Raw = results.get(timeout=1)
            except queue.Empty:
                dead = [w.name for w in workers if w.exitcode not in (None, 0)]
                if dead and results.empty():
                    raise RuntimeError(f"load processes died: {dead}") from None
                if time.monotonic() > deadline:
                    raise RuntimeError("the load processes did not finish in time") from None
                continue
            if got.failure:
                raise RuntimeError(f"a load process failed: {got.failure}")
            raws.append(got)
    finally:
        for worker in workers:
            worker.join(timeout=5)
            if worker.is_alive():
                worker.terminate()
                worker.join()
    return raws


def run_load(
    url: str,
    body: bytes,
    content_type: str,
    *,
    concurrency: int,
    seconds: float = 5.0,
    warmup: float = 1.0,
    processes: int = 1,
) -> LoadResult:
    """Closed-loop load from `concurrency` clients; in this process when processes is 1 (or
    concurrency is), else spread over that many spawned processes."""
    clients = split(concurrency, processes)
    if len(clients) == 1:
        raws = [
            asyncio.run(
                _run(
                    url, body, content_type, concurrency=concurrency, seconds=seconds, warmup=warmup
                )
            )
        ]
    else:
        raws = _run_in_processes(
            url, body, content_type, clients=clients, seconds=seconds, warmup=warmup
        )
    return _summarize(concurrency, raws)
