"""Write-back tags (and promote.setAlias's alias moves) sent to MLflow off the reconcile path.

The tags ("serving since ...", "rollout failed at ...") are an audit trail for people who
look at a version in MLflow; they are not state the operator reads back. Neither is an alias
the operator moves after a promotion (a ModelDeployment that follows it reads it like any). A
slow or failing MLflow must therefore never hold up a reconcile: an awaited write behind a
registry that answers in 25 s kept status (RegistryStalled, rollouts) frozen for as long as
it took.
Writes to one endpoint go out one at a time, in the order they were asked for, so a later
value for the same version can never be overwritten by an earlier one that was retried.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

from mlflow_operator.registry.client import RegistryError

logger = logging.getLogger(__name__)
RETRY_DELAYS_SECONDS = (5.0, 30.0)


class TagSink(Protocol):
    async def set_version_tag(self, name: str, version: str, key: str, value: str) -> None: ...

    async def set_model_alias(self, name: str, alias: str, version: str) -> None: ...


@dataclass(frozen=True)
class VersionTag:
    model: str
    version: str
    key: str
    value: str

    async def send(self, client: TagSink) -> None:
        await client.set_version_tag(self.model, self.version, self.key, self.value)

    def __str__(self) -> str:
        return f"tag {self.model} version {self.version}"


@dataclass(frozen=True)
class AliasMove:
    model: str
    alias: str
    version: str

    async def send(self, client: TagSink) -> None:
        await client.set_model_alias(self.model, self.alias, self.version)

    def __str__(self) -> str:
        return f"move alias {self.alias} of {self.model} to version {self.version}"


RegistryWrite = VersionTag | AliasMove


class TagWriter:
    """One background writer per MLflow client; retried a few times, then given up (logged)."""

    def __init__(self, retry_delays: Sequence[float] = RETRY_DELAYS_SECONDS) -> None:
        self._retry_delays = tuple(retry_delays)
        self._pending: dict[TagSink, deque[RegistryWrite]] = {}
        self._writers: dict[TagSink, asyncio.Task[None]] = {}

    def submit(self, client: TagSink, tags: Iterable[RegistryWrite]) -> None:
        wanted = list(tags)
        if not wanted:
            return
        queue = self._pending.setdefault(client, deque())
        queue.extend(wanted)
        if client not in self._writers:
            self._writers[client] = asyncio.get_running_loop().create_task(
                self._drain(client, queue), name="mlflow write-back tags"
            )

    @property
    def pending(self) -> int:
        """Tags not written yet (for tests and shutdown logs)."""
        return sum(len(queue) for queue in self._pending.values())

    async def flush(self) -> None:
        """Wait until every tag asked for so far was written or given up."""
        while self._writers:
            await asyncio.gather(*self._writers.values(), return_exceptions=True)

    async def close(self) -> None:
        for task in self._writers.values():
            task.cancel()
        for task in list(self._writers.values()):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self.pending:
            logger.info("%d write-back tag(s) not written at shutdown", self.pending)

    async def _drain(self, client: TagSink, queue: deque[RegistryWrite]) -> None:
        try:
            while queue:
                await self._write(client, queue[0])
                queue.popleft()
        finally:
            # no await between the last check of the queue and this: a submit() made while
            # the writer ran is never left without one
            self._writers.pop(client, None)
            if not queue:
                self._pending.pop(client, None)

    async def _write(self, client: TagSink, tag: RegistryWrite) -> None:
        for attempt, delay in enumerate((*self._retry_delays, None), start=1):
            try:
                await tag.send(client)
            except RegistryError as exc:
                if delay is None:
                    logger.warning("could not %s after %d attempts: %s", tag, attempt, exc)
                    return
                await asyncio.sleep(delay)
            else:
                return
