"""Request mirroring: the runtime half of strategy Shadow.

A shadow rollout wants to know how a candidate model version would answer live traffic before
any caller sees its answers. With no service mesh to copy traffic, the stable pods do it
themselves: after a request is answered, a share of them (`percent`) is sent again, with the
same body and Content-Type, to the candidate's Service, and the candidate's answer is compared
with the one the caller got. The operator writes the target into a ConfigMap mounted as a file
(`--mirror-config`) and reads the outcomes from `mlflow_serving_mirrored_requests_total`.

Callers must never notice: a copy is a fire-and-forget task started after the caller's reply
is computed, at most `MAX_IN_FLIGHT` copies are in flight per process (more are dropped and
counted, not queued), each copy has a short timeout, and no error of the mirror reaches the
request handler. The file is re-checked lazily from the request path, at most once a second,
so mirroring needs no thread of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, Literal, Protocol, get_args
from urllib.parse import urlsplit

import aiohttp

_logger = logging.getLogger(__name__)

# Copies in flight per worker process. A slow or hung candidate can cost the stable pod at most
# this many sockets and tasks; the copies beyond it are dropped, never queued behind callers.
MAX_IN_FLIGHT: Final = 32
# A copy never waits longer than this, even when the request timeout is longer: a candidate
# that slow is as good as unreachable for the comparison, and holds a slot meanwhile.
MAX_TIMEOUT_SECONDS: Final = 10.0
# The kubelet updates a mounted ConfigMap within about a minute; a second more costs nothing,
# and one stat a second keeps the request path free of file-system calls otherwise.
CHECK_INTERVAL_SECONDS: Final = 1.0
# Larger bodies are compared in a thread, so that parsing them does not stall other
# connections of this process (the same trade-off as server.INLINE_PARSE_BYTES).
INLINE_COMPARE_BYTES: Final = 64 * 1024
# How long shutdown lets copies still in flight finish before cancelling them.
CLOSE_GRACE_SECONDS: Final = 1.0

Outcome = Literal[
    "agreed",
    "disagreed",
    "candidate_failed",
    "stable_failed",
    "both_failed",
    "unreachable",
    "dropped",
]
OUTCOMES: Final[tuple[Outcome, ...]] = get_args(Outcome)

# Numbers that went through predict, JSON and back may differ in the last bits (BLAS, batch
# shape, float formatting); those are the same answer.
REL_TOL: Final = 1e-6
ABS_TOL: Final = 1e-9


@dataclass(frozen=True)
class MirrorConfig:
    """Where copies go, how many, and the candidate's version for the metric's label."""

    url: str
    percent: float
    version: str


def parse_mirror_config(text: str) -> MirrorConfig | str:
    """The config in the file's text, or what is wrong with it (a line for a warning)."""
    try:
        data: Any = json.loads(text)
    except ValueError as error:
        return f"not JSON ({error})"
    if not isinstance(data, dict):
        return "not a JSON object"
    url: Any = data.get("url")
    percent: Any = data.get("percent")
    version: Any = data.get("version")
    if problem := _url_problem(url) or _percent_problem(percent) or _version_problem(version):
        return problem
    return MirrorConfig(url=url, percent=float(percent), version=version)


def _url_problem(url: Any) -> str | None:
    if not isinstance(url, str) or not url:
        return "'url' is missing or not a string"
    try:
        parts = urlsplit(url)
        valid = parts.scheme in {"http", "https"} and bool(parts.hostname) and parts.port != 0
    except ValueError:  # a bracketed host that is no IPv6 address, a port out of range
        valid = False
    return None if valid else f"'url' is not an http(s) URL: {url!r}"


def _percent_problem(percent: Any) -> str | None:
    # bool is an int to Python, but `true` is no percentage.
    if isinstance(percent, bool) or not isinstance(percent, int | float):
        return "'percent' is missing or not a number"
    if not 0 <= percent <= 100:  # also refuses NaN, which JSON parsing lets through
        return f"'percent' is not between 0 and 100: {percent}"
    return None


def _version_problem(version: Any) -> str | None:
    if not isinstance(version, str) or not version:
        return "'version' is missing or not a non-empty string"
    return None


_FileKey = tuple[int, int, int]


class MirrorConfigFile:
    """The mirror config file, re-read when it changes, checked at most once per interval.

    `os.stat` follows symlinks: the kubelet updates a ConfigMap volume by swapping its `..data`
    symlink, so a new version is a new inode even when size and mtime happen to match.
    """

    def __init__(
        self,
        path: str,
        *,
        check_interval: float = CHECK_INTERVAL_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.path = path
        self._check_interval = check_interval
        self._clock = clock
        self._next_check = -math.inf
        self._key: _FileKey | None = None
        self._config: MirrorConfig | None = None
        self._problem: str | None = None

    def current(self) -> MirrorConfig | None:
        """The config in force; None: no mirroring (no file, empty file, or an invalid one)."""
        now = self._clock()
        if now >= self._next_check:
            self._next_check = now + self._check_interval
            self._check()
        return self._config

    def _check(self) -> None:
        try:
            stat = os.stat(self.path)
        except FileNotFoundError:
            key = None
        except OSError as error:
            self._key = None
            self._set(None, f"cannot stat the file ({error})")
            return
        else:
            key = (stat.st_ino, stat.st_mtime_ns, stat.st_size)
        if key == self._key:
            return
        self._key = key
        if key is None:
            self._set(None, None)
        else:
            self._load()

    def _load(self) -> None:
        try:
            with open(self.path, encoding="utf-8") as file:
                text = file.read()
        except (OSError, UnicodeDecodeError) as error:
            # Read again at the next check rather than trusting a key we could not read for.
            self._key = None
            self._set(None, f"cannot read the file ({error})")
            return
        if not text.strip():
            self._set(None, None)  # the operator's way of saying "no shadow now"
            return
        parsed = parse_mirror_config(text)
        if isinstance(parsed, str):
            self._set(None, parsed)
        else:
            self._set(parsed, None)

    def _set(self, config: MirrorConfig | None, problem: str | None) -> None:
        if problem is not None and problem != self._problem:
            # Once per problem, not per request: the file is re-read only when it changes.
            _logger.warning("mirror config %s: %s; mirroring is off", self.path, problem)
        elif problem is None and config != self._config:
            if config is None:
                _logger.info("mirroring is off (%s is missing or empty)", self.path)
            else:
                _logger.info(
                    "mirroring %g%% of requests to version %s at %s",
                    config.percent,
                    config.version,
                    config.url,
                )
        self._problem = problem
        self._config = config


def compare(
    stable_status: int, stable_body: bytes, candidate_status: int, candidate_body: bytes
) -> Outcome:
    """How the candidate's answer to a copy compares with the reply the caller got."""
    stable_ok = 200 <= stable_status < 300
    candidate_ok = 200 <= candidate_status < 300
    if not stable_ok:
        return "stable_failed" if candidate_ok else "both_failed"
    if not candidate_ok:
        return "candidate_failed"
    if stable_body == candidate_body:  # the usual case needs no parsing
        return "agreed"
    try:
        equal = json_equal(json.loads(stable_body), json.loads(candidate_body))
    except (ValueError, RecursionError):  # not JSON, or nested deeper than we follow
        return "disagreed"
    return "agreed" if equal else "disagreed"


def json_equal(a: Any, b: Any) -> bool:
    """Equality of decoded JSON, with numbers equal when close (int and float by value)."""
    if _is_number(a) and _is_number(b):
        return _numbers_equal(a, b)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(json_equal(a[key], b[key]) for key in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(json_equal(x, y) for x, y in zip(a, b, strict=True))
    if _is_number(a) or _is_number(b):
        return False  # a number and a bool, string or null are different answers
    return type(a) is type(b) and bool(a == b)


def _numbers_equal(a: float, b: float) -> bool:
    if a == b:
        return True
    try:
        if math.isnan(a) and math.isnan(b):
            return True  # both models answered NaN (MLflow writes it): the same answer
        return math.isclose(a, b, rel_tol=REL_TOL, abs_tol=ABS_TOL)
    except OverflowError:  # an int beyond float's range, and not equal to the other
        return False


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


class MirrorObserver(Protocol):
    """Where outcomes are counted; ServingMetrics in the server."""

    def mirrored(self, candidate_version: str, outcome: str) -> None: ...


class Mirror:
    """Decides which requests to copy, sends the copies and counts how they compare.

    One per worker process. Everything runs on the process's event loop.
    """

    def __init__(
        self,
        config: MirrorConfigFile,
        observer: MirrorObserver,
        *,
        timeout_seconds: float,
        max_in_flight: int = MAX_IN_FLIGHT,
        chance: Callable[[], float] = random.random,
    ) -> None:
        self.config = config
        self._observer = observer
        self._timeout = aiohttp.ClientTimeout(total=min(timeout_seconds, MAX_TIMEOUT_SECONDS))
        self._max_in_flight = max_in_flight
        self._chance = chance
        # The event loop keeps only weak references to tasks; without these a copy in flight
        # could be garbage-collected half-way.
        self._tasks: set[asyncio.Task[None]] = set()
        self._session: aiohttp.ClientSession | None = None
        self._logged_unexpected = False
        self._closed = False

    @property
    def in_flight(self) -> int:
        return len(self._tasks)

    def offer(
        self, body: bytes, content_type: str | None, stable_status: int, stable_body: bytes
    ) -> None:
        """Maybe copy a request whose reply is ready. Returns at once and never raises."""
        try:
            if self._closed:
                return
            config = self.config.current()
            if config is None or self._chance() >= config.percent / 100:
                return
            if len(self._tasks) >= self._max_in_flight:
                self._observer.mirrored(config.version, "dropped")
                return
            loop = asyncio.get_running_loop()
            task = loop.create_task(
                self._send(config, body, content_type, stable_status, stable_body)
            )
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        except Exception:  # noqa: BLE001 - the caller's request must not fail for a copy
            self._log_unexpected()

    def _client(self) -> aiohttp.ClientSession:
        # Created on first use: a ClientSession belongs to the running loop, and a worker's
        # loop exists only once it serves.
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                timeout=self._timeout,
                connector=aiohttp.TCPConnector(limit=self._max_in_flight),
            )
        return self._session

    async def _send(
        self,
        config: MirrorConfig,
        body: bytes,
        content_type: str | None,
        stable_status: int,
        stable_body: bytes,
    ) -> None:
        try:
            outcome = await self._exchange(config, body, content_type, stable_status, stable_body)
        except Exception:  # noqa: BLE001 - a task's exception would only be logged by asyncio
            self._log_unexpected()
            return
        self._observer.mirrored(config.version, outcome)

    async def _exchange(
        self,
        config: MirrorConfig,
        body: bytes,
        content_type: str | None,
        stable_status: int,
        stable_body: bytes,
    ) -> Outcome:
        headers = {} if content_type is None else {"Content-Type": content_type}
        # Without a Content-Type the caller got MLflow's answer to none; aiohttp would add
        # application/octet-stream and the candidate would answer another question.
        skip = () if content_type is not None else ("Content-Type",)
        try:
            async with self._client().post(
                config.url, data=body, headers=headers, skip_auto_headers=skip
            ) as response:
                candidate_status = response.status
                candidate_body = await response.read()
        except (aiohttp.ClientError, TimeoutError, OSError):
            return "unreachable"
        if max(len(stable_body), len(candidate_body)) <= INLINE_COMPARE_BYTES:
            return compare(stable_status, stable_body, candidate_status, candidate_body)
        return await asyncio.to_thread(
            compare, stable_status, stable_body, candidate_status, candidate_body
        )

    def _log_unexpected(self) -> None:
        if not self._logged_unexpected:  # once per process: it would repeat for every copy
            self._logged_unexpected = True
            _logger.warning("mirroring a request failed unexpectedly", exc_info=True)

    async def close(self, grace: float = CLOSE_GRACE_SECONDS) -> None:
        """Let copies in flight finish for up to `grace` seconds, cancel the rest, close the
        connections."""
        self._closed = True
        if self._tasks:
            _, pending = await asyncio.wait(set(self._tasks), timeout=grace)
            for task in pending:
                task.cancel()
            for task in pending:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        if self._session is not None:
            await self._session.close()
            self._session = None
