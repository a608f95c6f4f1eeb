"""Request mirroring (strategy Shadow): the config file, the comparison, and copies sent over
real HTTP to a real aiohttp server standing in for the candidate."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from click.testing import CliRunner

from mlflow_operator_serve import cli, server
from mlflow_operator_serve.metrics import ServingMetrics
from mlflow_operator_serve.mirror import (
    MAX_IN_FLIGHT,
    Mirror,
    MirrorConfig,
    MirrorConfigFile,
    compare,
    parse_mirror_config,
)
from mlflow_operator_serve.settings import ServeSettings

JSON = "application/json"
METRIC = "mlflow_serving_mirrored_requests_total"
URL = "http://iris-shadow.ml.svc:8080/invocations"


def config_text(url: str = URL, percent: float = 20, version: str = "8") -> str:
    return json.dumps({"url": url, "percent": percent, "version": version})


def mirrored(metrics: ServingMetrics, outcome: str, candidate_version: str = "8") -> float:
    labels = {
        "model_name": "iris",
        "model_version": "3",
        "candidate_version": candidate_version,
        "outcome": outcome,
    }
    return metrics.registry.get_sample_value(METRIC, labels) or 0.0


def replace_file(path: Path, text: str) -> None:
    """As the kubelet updates a ConfigMap volume: a new file swapped in whole."""
    temp = path.with_name(path.name + ".tmp")
    temp.write_text(text)
    os.replace(temp, path)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# --- the file ---------------------------------------------------------------------------------


def test_a_valid_config_is_parsed() -> None:
    assert parse_mirror_config(config_text(percent=12.5)) == MirrorConfig(URL, 12.5, "8")
    # Keys the runtime does not know yet are no reason to stop mirroring.
    text = json.dumps({"url": URL, "percent": 100, "version": "8", "extra": 1})
    assert parse_mirror_config(text) == MirrorConfig(URL, 100.0, "8")


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("{not json", "not JSON"),
        ("[1, 2]", "not a JSON object"),
        (json.dumps({"percent": 5, "version": "8"}), "'url' is missing"),
        (json.dumps({"url": "iris-shadow:8080", "percent": 5, "version": "8"}), "not an http"),
        (json.dumps({"url": "http://[::1/x", "percent": 5, "version": "8"}), "not an http"),
        (json.dumps({"url": URL, "version": "8"}), "'percent' is missing"),
        (json.dumps({"url": URL, "percent": "5", "version": "8"}), "not a number"),
        (json.dumps({"url": URL, "percent": True, "version": "8"}), "not a number"),
        (config_text(percent=101), "not between 0 and 100"),
        (config_text(percent=-1), "not between 0 and 100"),
        ('{"url": "%s", "percent": NaN, "version": "8"}' % URL, "not between 0 and 100"),  # noqa: UP031
        (json.dumps({"url": URL, "percent": 5}), "'version' is missing"),
        (json.dumps({"url": URL, "percent": 5, "version": 8}), "'version' is missing"),
        (config_text(version=""), "'version' is missing"),
    ],
)
def test_an_invalid_config_is_a_problem_not_an_exception(text: str, problem: str) -> None:
    parsed = parse_mirror_config(text)
    assert isinstance(parsed, str)
    assert problem in parsed


@pytest.mark.parametrize("text", [None, "", "  \n"])
def test_a_missing_or_empty_file_is_mirroring_off_without_a_warning(
    tmp_path: Path, text: str | None, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "mirror.json"
    if text is not None:
        path.write_text(text)
    with caplog.at_level(logging.WARNING):
        assert MirrorConfigFile(str(path)).current() is None
    assert caplog.records == []


def test_a_replaced_file_is_read_again_at_most_once_a_second(tmp_path: Path) -> None:
    path = tmp_path / "mirror.json"
    replace_file(path, config_text(percent=20))
    clock = Clock()
    config = MirrorConfigFile(str(path), clock=clock)
    assert config.current() == MirrorConfig(URL, 20.0, "8")

    replace_file(path, config_text(percent=50, version="9"))
    clock.now += 0.5
    assert config.current() == MirrorConfig(URL, 20.0, "8")  # not checked yet
    clock.now += 0.5
    assert config.current() == MirrorConfig(URL, 50.0, "9")

    replace_file(path, "")  # the operator ends the shadow
    clock.now += 1
    assert config.current() is None
    path.unlink()
    clock.now += 1
    assert config.current() is None
    replace_file(path, config_text(percent=5))
    clock.now += 1
    assert config.current() == MirrorConfig(URL, 5.0, "8")


def test_an_invalid_file_warns_once_per_problem_and_turns_mirroring_off(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "mirror.json"
    replace_file(path, config_text())
    clock = Clock()
    config = MirrorConfigFile(str(path), clock=clock)
    assert config.current() is not None

    replace_file(path, config_text(percent=150))
    with caplog.at_level(logging.WARNING, logger="mlflow_operator_serve.mirror"):
        for _ in range(5):
            clock.now += 1
            assert config.current() is None
        replace_file(path, "{")
        for _ in range(5):
            clock.now += 1
            assert config.current() is None
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2, warnings
    assert "not between 0 and 100" in warnings[0]
    assert "not JSON" in warnings[1]

    replace_file(path, config_text(percent=30))
    clock.now += 1
    assert config.current() == MirrorConfig(URL, 30.0, "8")


# --- the comparison ---------------------------------------------------------------------------


def body(value: object) -> bytes:
    return json.dumps(value).encode()


@pytest.mark.parametrize(
    ("stable", "candidate", "outcome"),
    [
        ((200, body({"predictions": [0, 1]})), (200, body({"predictions": [0, 1]})), "agreed"),
        # Whitespace and key order are no difference; floats within 1e-6 relative are equal.
        ((200, b'{"a": 1, "b": [1.0]}'), (200, b'{"b":[1.0000001],"a":1}'), "agreed"),
        ((200, body([1])), (200, body([1.0])), "agreed"),  # int and float by value
        ((200, body([0.0])), (200, body([1e-10])), "agreed"),  # near zero: absolute tolerance
        ((200, b"[NaN]"), (200, b"[NaN]"), "agreed"),
        ((200, body([[1.5, {"x": None}]])), (200, body([[1.5, {"x": None}]])), "agreed"),
        ((200, body([1.0])), (200, body([1.001])), "disagreed"),
        ((200, body([0.0])), (200, body([1e-6])), "disagreed"),
        ((200, body([1])), (200, body([True])), "disagreed"),  # bool is not a number
        ((200, body([True])), (200, body([1])), "disagreed"),
        ((200, body(["1"])), (200, body([1])), "disagreed"),
        ((200, body([None])), (200, body([0])), "disagreed"),
        ((200, body([1, 2])), (200, body([1, 2, 3])), "disagreed"),
        ((200, body({"a": 1})), (200, body({"a": 1, "b": 2})), "disagreed"),
        ((200, body([10**400])), (200, body([1.0])), "disagreed"),  # beyond float's range
        ((200, body([1])), (200, b"1,2\n"), "disagreed"),  # not JSON
        ((200, body([1])), (500, b"Internal Server Error"), "candidate_failed"),
        ((200, body([1])), (404, body({"detail": "Not Found"})), "candidate_failed"),
        ((504, b"Request processing time exceeded limit"), (200, body([1])), "stable_failed"),
        ((400, body({"error_code": "BAD_REQUEST"})), (400, body({})), "both_failed"),
        ((415, b"no"), (500, b"no"), "both_failed"),
    ],
)
def test_compare(stable: tuple[int, bytes], candidate: tuple[int, bytes], outcome: str) -> None:
    assert compare(*stable, *candidate) == outcome


# --- copies over HTTP -------------------------------------------------------------------------


@dataclass
class Candidate:
    """A candidate that answers each copy with the status and body the copy asks for
    (`{"status": ..., "answer": ...}`), optionally only after `release` is set."""

    server: TestServer
    received: list[tuple[bytes, str | None]] = field(default_factory=list)
    release: asyncio.Event | None = None
    arrived: asyncio.Event = field(default_factory=asyncio.Event)
    expected: int = 0

    @property
    def url(self) -> str:
        return str(self.server.make_url("/invocations"))


@pytest.fixture
async def candidate() -> AsyncIterator[Candidate]:
    app = web.Application()
    test_server = TestServer(app, host="127.0.0.1", port=0)
    state = Candidate(test_server)

    async def invocations(request: web.Request) -> web.Response:
        data = await request.read()
        state.received.append((data, request.headers.get("Content-Type")))
        if len(state.received) == state.expected:
            state.arrived.set()
        if state.release is not None:
            await state.release.wait()
        asked = json.loads(data)
        return web.Response(status=asked["status"], body=body(asked["answer"]))

    app.router.add_post("/invocations", invocations)
    await test_server.start_server()
    yield state
    if state.release is not None:
        state.release.set()
    await test_server.close()


def mirror_to(
    tmp_path: Path,
    url: str,
    percent: float,
    metrics: ServingMetrics,
    timeout_seconds: float = 30.0,
) -> Mirror:
    path = tmp_path / "mirror.json"
    replace_file(path, config_text(url=url, percent=percent))
    return Mirror(MirrorConfigFile(str(path)), metrics, timeout_seconds=timeout_seconds)


def asking(status: int, answer: object) -> bytes:
    return body({"status": status, "answer": answer})


async def test_percent_100_mirrors_every_request_and_counts_how_they_compare(
    tmp_path: Path, candidate: Candidate
) -> None:
    metrics = ServingMetrics("iris", "3")
    mirror = mirror_to(tmp_path, candidate.url, 100, metrics)
    stable_ok = body({"predictions": [1.0]})
    copies = [
        (asking(200, {"predictions": [1.0000001]}), 200, stable_ok),  # agreed
        (asking(200, {"predictions": [1.0]}), 200, stable_ok),  # agreed
        (asking(200, {"predictions": [2.0]}), 200, stable_ok),  # disagreed
        (asking(500, {"error": "boom"}), 200, stable_ok),  # candidate_failed
        (asking(400, {"error_code": "BAD_REQUEST"}), 400, body({"error_code": "BAD_REQUEST"})),
        (asking(200, {"predictions": [1.0]}), 504, b"Request processing time exceeded limit"),
    ]
    for request_body, status, reply in copies:
        mirror.offer(request_body, JSON, status, reply)
    await mirror.close(grace=30)

    assert sorted(candidate.received) == sorted((b, JSON) for b, _, _ in copies)
    counts = {
        outcome: mirrored(metrics, outcome)
        for outcome in ("agreed", "disagreed", "candidate_failed", "both_failed", "stable_failed")
    }
    assert counts == {
        "agreed": 2,
        "disagreed": 1,
        "candidate_failed": 1,
        "both_failed": 1,
        "stable_failed": 1,
    }
    assert mirrored(metrics, "dropped") == mirrored(metrics, "unreachable") == 0


async def test_a_request_without_content_type_is_copied_without_one(
    tmp_path: Path, candidate: Candidate
) -> None:
    metrics = ServingMetrics("iris", "3")
    mirror = mirror_to(tmp_path, candidate.url, 100, metrics)
    mirror.offer(asking(500, "no"), None, 500, b"Internal Server Error")
    await mirror.close(grace=30)
    assert candidate.received == [(asking(500, "no"), None)]
    assert mirrored(metrics, "both_failed") == 1


async def test_percent_0_mirrors_nothing(tmp_path: Path, candidate: Candidate) -> None:
    metrics = ServingMetrics("iris", "3")
    mirror = mirror_to(tmp_path, candidate.url, 0, metrics)
    for _ in range(50):
        mirror.offer(asking(200, [1]), JSON, 200, body([1]))
    assert mirror.in_flight == 0
    await mirror.close(grace=30)
    assert candidate.received == []
    assert metrics.registry.get_sample_value(METRIC, {}) is None


async def test_percent_samples_with_the_given_chance(tmp_path: Path, candidate: Candidate) -> None:
    metrics = ServingMetrics("iris", "3")
    path = tmp_path / "mirror.json"
    replace_file(path, config_text(url=candidate.url, percent=20))
    draws = iter([0.05, 0.19, 0.2, 0.5, 0.99])  # below 0.2: copied
    mirror = Mirror(
        MirrorConfigFile(str(path)), metrics, timeout_seconds=30, chance=lambda: next(draws)
    )
    for answer in range(5):
        mirror.offer(asking(200, [answer]), JSON, 200, body([answer]))
    await mirror.close(grace=30)
    assert sorted(candidate.received) == [(asking(200, [0]), JSON), (asking(200, [1]), JSON)]
    assert mirrored(metrics, "agreed") == 2


async def test_an_unreachable_candidate_is_counted(tmp_path: Path) -> None:
    with socket.socket() as sock:  # a port that was free a moment ago, and nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    metrics = ServingMetrics("iris", "3")
    mirror = mirror_to(tmp_path, f"http://127.0.0.1:{port}/invocations", 100, metrics)
    mirror.offer(asking(200, [1]), JSON, 200, body([1]))
    await mirror.close(grace=30)
    assert mirrored(metrics, "unreachable") == 1


async def test_a_candidate_slower_than_the_timeout_is_unreachable(
    tmp_path: Path, candidate: Candidate
) -> None:
    candidate.release = asyncio.Event()  # never set while the copy waits
    metrics = ServingMetrics("iris", "3")
    mirror = mirror_to(tmp_path, candidate.url, 100, metrics, timeout_seconds=0.2)
    mirror.offer(asking(200, [1]), JSON, 200, body([1]))
    await mirror.close(grace=30)
    assert mirrored(metrics, "unreachable") == 1
    assert not candidate.release.is_set()


async def test_at_most_32_copies_in_flight_and_the_caller_never_waits(
    tmp_path: Path, candidate: Candidate
) -> None:
    candidate.release = asyncio.Event()
    candidate.expected = MAX_IN_FLIGHT
    metrics = ServingMetrics("iris", "3")
    mirror = mirror_to(tmp_path, candidate.url, 100, metrics)

    for _ in range(MAX_IN_FLIGHT + 8):
        mirror.offer(asking(200, [1]), JSON, 200, body([1]))
    # offer returned 40 times before any copy was even sent: the first 32 are tasks, the rest
    # were dropped on the spot rather than queued.
    assert candidate.received == []
    assert mirror.in_flight == MAX_IN_FLIGHT
    assert mirrored(metrics, "dropped") == 8

    await asyncio.wait_for(candidate.arrived.wait(), 30)  # all 32 are at the candidate, held
    mirror.offer(asking(200, [1]), JSON, 200, body([1]))  # returns while the candidate blocks
    assert not candidate.release.is_set()
    assert mirrored(metrics, "dropped") == 9
    assert mirrored(metrics, "agreed") == 0

    candidate.release.set()
    await mirror.close(grace=30)
    assert len(candidate.received) == MAX_IN_FLIGHT
    assert mirrored(metrics, "agreed") == MAX_IN_FLIGHT
    assert mirror.in_flight == 0


async def test_close_cancels_copies_that_outlive_the_grace(
    tmp_path: Path, candidate: Candidate
) -> None:
    candidate.release = asyncio.Event()
    candidate.expected = 1
    metrics = ServingMetrics("iris", "3")
    mirror = mirror_to(tmp_path, candidate.url, 100, metrics)
    mirror.offer(asking(200, [1]), JSON, 200, body([1]))
    await asyncio.wait_for(candidate.arrived.wait(), 30)
    await mirror.close(grace=0)
    assert mirror.in_flight == 0
    mirror.offer(asking(200, [1]), JSON, 200, body([1]))  # after shutdown: nothing
    assert mirror.in_flight == 0
    assert metrics.registry.get_sample_value(METRIC, {}) is None


async def test_a_broken_mirror_never_reaches_the_caller(tmp_path: Path) -> None:
    class Broken:
        def mirrored(self, candidate_version: str, outcome: str) -> None:
            raise RuntimeError("the metrics are broken")

    path = tmp_path / "mirror.json"
    replace_file(path, config_text(url="http://127.0.0.1:1/invocations", percent=100))
    mirror = Mirror(MirrorConfigFile(str(path)), Broken(), timeout_seconds=1, max_in_flight=0)
    mirror.offer(b"{}", JSON, 200, b"{}")  # dropped, and counting it raises: swallowed
    await mirror.close()


# --- wiring -----------------------------------------------------------------------------------


def test_the_cli_option_and_its_environment_variable(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    seen: list[ServeSettings] = []

    def fake_run(settings: ServeSettings) -> int:
        seen.append(settings)
        return 0

    monkeypatch.setattr("mlflow_operator_serve.server.run", fake_run)
    path = str(tmp_path / "mirror.json")
    runner = CliRunner()
    assert runner.invoke(cli.serve, ["-m", "m", "-w", "1", "--mirror-config", path]).exit_code == 0
    assert runner.invoke(cli.serve, ["-m", "m", "-w", "1"]).exit_code == 0
    result = runner.invoke(
        cli.serve, ["-m", "m", "-w", "1"], env={"MLFLOW_OPERATOR_SERVE_MIRROR_CONFIG": path}
    )
    assert result.exit_code == 0, result.output
    assert [s.mirror_config for s in seen] == [path, None, path]


def test_the_server_builds_a_mirror_only_when_asked(tmp_path: Path) -> None:
    metrics = ServingMetrics("iris", "3")
    assert server._mirror(ServeSettings("m"), metrics) is None
    path = tmp_path / "mirror.json"  # not there yet: the ConfigMap may come later
    built = server._mirror(ServeSettings("m", mirror_config=str(path)), metrics)
    assert isinstance(built, Mirror)
    assert built.config.current() is None


def test_the_counter_adds_up_over_worker_processes(tmp_path: Path) -> None:
    # prometheus-client picks file-backed values at import: each "worker" is an interpreter.
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}

    def worker(code: str) -> str:
        setup = "from mlflow_operator_serve.metrics import ServingMetrics\n"
        setup += "m = ServingMetrics('iris', '3')\n"
        return subprocess.run(
            [sys.executable, "-c", setup + code],
            capture_output=True,
            text=True,
            check=True,
            env=env,
        ).stdout

    worker("m.mirrored('8', 'agreed')")
    worker("m.mirrored('8', 'agreed'); m.mirrored('8', 'dropped')")
    rendered = worker("print(m.render().decode())")
    labels = 'candidate_version="8",model_name="iris",model_version="3"'
    assert f'{METRIC}{{{labels},outcome="agreed"}} 2.0' in rendered
    assert f'{METRIC}{{{labels},outcome="dropped"}} 1.0' in rendered
