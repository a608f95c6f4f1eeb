"""The one way the tests wait for something: poll a check until it holds, or fail saying what.

Everything after the check is keyword-only: there were three copies of this loop, and two of
them took the timeout and the description in opposite orders.

A timeout is how long the test may wait on a loaded CI machine, not how long the thing should
take: timeouts were widened on purpose; never shorten one to make a test fail faster.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from typing import Any

from tests.support.processes import ManagedProcess


def eventually(
    check: Callable[[], Any],
    *,
    timeout: float,
    what: str,
    interval: float = 0.25,
    processes: Sequence[ManagedProcess] = (),
    retry_on: tuple[type[Exception], ...] = (Exception,),
) -> Any:
    """Poll check() until it returns a truthy value, and return that value.

    An exception of a type in retry_on counts as "not yet" (an object that does not exist yet,
    a server still starting) and is kept as the last value seen; any other propagates at once.
    When a process in `processes` exits, there is nothing left to wait for: RuntimeError with
    the tails of the logs of those that exited. After `timeout` seconds, AssertionError with
    the last value seen (and the log tails of `processes`).
    """
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
        except retry_on as exc:
            last = exc
        if last and not isinstance(last, Exception):
            return last
        dead = [p for p in processes if not p.alive()]
        if dead:
            logs = "\n".join(p.log_tail() for p in dead)
            raise RuntimeError(f"{what}: {', '.join(p.name for p in dead)} exited\n{logs}")
        time.sleep(interval)
    logs = "".join(f"\n{p.log_tail()}" for p in processes)
    raise AssertionError(f"{what}: not true after {timeout:.0f}s; last: {last!r}{logs}")


async def eventually_on_loop(check: Callable[[], Any], *, within: float, what: str) -> None:
    """Await until check() is true, on a running event loop (a unit test's own objects: no
    process to watch); AssertionError after `within` seconds."""
    try:
        async with asyncio.timeout(within):
            while not check():  # noqa: ASYNC110  (in-process state: nothing to wait on)
                await asyncio.sleep(0.01)
    except TimeoutError:
        raise AssertionError(f"{what}: not true after {within:.1f}s") from None
