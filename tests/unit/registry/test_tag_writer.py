"""The write-back tag writer: in order per endpoint, retried, never blocking the caller; the
alias moves of promote.setAlias go the same way.

The sinks are in-memory stand-ins for MLflow: a registry that fails on demand a set number
of times cannot be made from a real server. The end-to-end tests read the real tags back.
"""

from __future__ import annotations

import asyncio
import logging

import pytest

from mlflow_operator.registry.client import RegistryError
from mlflow_operator.registry.tag_writer import AliasMove, TagWriter, VersionTag


class Sink:
    def __init__(self, failures: int = 0) -> None:
        self.failures = failures
        self.calls = 0
        self.written: list[tuple[str, str]] = []
        self.answering = asyncio.Event()
        self.answering.set()

    async def set_version_tag(self, name: str, version: str, key: str, value: str) -> None:
        self.calls += 1
        await self.answering.wait()
        if self.failures:
            self.failures -= 1
            raise RegistryError("MLflow answered 503", "RegistryUnavailable")
        self.written.append((version, value))

    async def set_model_alias(self, name: str, alias: str, version: str) -> None:
        self.calls += 1
        await self.answering.wait()
        if self.failures:
            self.failures -= 1
            raise RegistryError("MLflow answered 503", "RegistryUnavailable")
        self.written.append((version, f"alias {alias}"))


def tag(version: str, value: str) -> VersionTag:
    return VersionTag("fraud", version, "mlflow-operator.ml.fraud", value)


async def test_submit_returns_at_once_and_the_tags_follow_in_order() -> None:
    sink = Sink()
    sink.answering.clear()
    writer = TagWriter(retry_delays=())
    writer.submit(sink, [tag("1", "serving since a")])
    writer.submit(sink, [tag("2", "serving since b"), tag("1", "replaced by version 2")])
    assert writer.pending == 3
    await asyncio.sleep(0)
    assert sink.written == []
    sink.answering.set()
    await writer.flush()
    assert sink.written == [
        ("1", "serving since a"),
        ("2", "serving since b"),
        ("1", "replaced by version 2"),
    ]
    assert writer.pending == 0


async def test_a_failing_write_is_retried_then_given_up_without_blocking_the_next() -> None:
    sink = Sink(failures=2)
    writer = TagWriter(retry_delays=(0.0,))  # two attempts per tag
    writer.submit(sink, [tag("1", "serving since a"), tag("2", "rollout failed at b")])
    await writer.flush()
    # the first tag failed twice and was given up; the second was written at once
    assert sink.written == [("2", "rollout failed at b")]
    assert sink.calls == 3


async def test_a_retried_write_lands_before_a_later_one() -> None:
    sink = Sink(failures=1)
    writer = TagWriter(retry_delays=(0.01,))
    writer.submit(sink, [tag("1", "serving since a")])
    writer.submit(sink, [tag("1", "replaced by version 2")])
    await writer.flush()
    assert sink.written == [("1", "serving since a"), ("1", "replaced by version 2")]


async def test_close_cancels_what_is_still_waiting_and_a_later_submit_writes_again() -> None:
    sink = Sink()
    sink.answering.clear()
    writer = TagWriter(retry_delays=())
    writer.submit(sink, [tag("1", "serving since a")])
    await asyncio.sleep(0)
    await writer.close()
    assert writer.pending == 1
    sink.answering.set()
    writer.submit(sink, [tag("2", "serving since b")])
    await writer.flush()
    assert sink.written == [("1", "serving since a"), ("2", "serving since b")]


async def test_nothing_to_write_leaves_nothing_behind() -> None:
    sink = Sink()
    writer = TagWriter(retry_delays=())
    writer.submit(sink, [])
    assert writer.pending == 0
    assert writer._pending == {}  # no empty queue kept per client forever
    await writer.flush()
    assert sink.calls == 0


def alias(version: str, name: str = "champion") -> AliasMove:
    return AliasMove("fraud", name, version)


async def test_an_alias_move_goes_out_in_order_with_the_tags() -> None:
    sink = Sink()
    sink.answering.clear()
    writer = TagWriter(retry_delays=())
    writer.submit(sink, [alias("2"), tag("2", "serving since b")])
    writer.submit(sink, [tag("1", "replaced by version 2"), alias("3", "production")])
    assert writer.pending == 4
    await asyncio.sleep(0)
    assert sink.written == []  # submit never waits for MLflow
    sink.answering.set()
    await writer.flush()
    assert sink.written == [
        ("2", "alias champion"),
        ("2", "serving since b"),
        ("1", "replaced by version 2"),
        ("3", "alias production"),
    ]
    assert writer.pending == 0


async def test_a_failing_alias_move_is_retried_like_a_tag_then_given_up(
    caplog: pytest.LogCaptureFixture,
) -> None:
    sink = Sink(failures=1)
    writer = TagWriter(retry_delays=(0.01,))
    writer.submit(sink, [alias("2")])
    writer.submit(sink, [tag("2", "serving since b")])
    await writer.flush()
    # retried before the later tag: the alias lands first
    assert sink.written == [("2", "alias champion"), ("2", "serving since b")]
    assert sink.calls == 3

    given_up = Sink(failures=2)
    writer = TagWriter(retry_delays=(0.0,))  # two attempts per write
    with caplog.at_level(logging.WARNING):
        writer.submit(given_up, [alias("3"), tag("3", "serving since c")])
        await writer.flush()
    assert given_up.written == [("3", "serving since c")]
    assert given_up.calls == 3
    assert "could not move alias champion of fraud to version 3 after 2 attempts" in caplog.text
