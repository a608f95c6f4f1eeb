"""A closed-loop HTTP load generator for the serving benchmark (aiohttp, keep-alive).

`concurrency` clients each send one request, wait for the answer, and send the next, for a
fixed time; throughput and latency percentiles come from the answers that arrived.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

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


async def _run(
    url: str, body: bytes, content_type: str, *, concurrency: int, seconds: float, warmup: float
) -> LoadResult:
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
    latencies.sort()
    return LoadResult(
        concurrency,
        len(latencies),
        errors,
        elapsed,
        percentile(latencies, 0.50) * 1000,
        percentile(latencies, 0.99) * 1000,
    )


def run_load(
    url: str,
    body: bytes,
    content_type: str,
    *,
    concurrency: int,
    seconds: float = 5.0,
    warmup: float = 1.0,
) -> LoadResult:
    return asyncio.run(
        _run(url, body, content_type, concurrency=concurrency, seconds=seconds, warmup=warmup)
    )
