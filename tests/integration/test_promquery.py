"""Canary analysis from a real Prometheus (mlflow_operator/promquery.py).

A real `prometheus` (tests/prometheus) scrapes, every second, two targets served by a small
HTTP server on loopback: the serving runtime's exposition text of two versions of one model,
as the pods of namespace ml-prod export it, and that of the same model in ml-staging. Each
target carries the namespace in a static label, as a Prometheus Operator target carries it.
The counters are 0 for the first scrapes, as a fresh pod's are, then jump to their final
values; PrometheusTraffic must find each version's answers, and only its namespace's.

The same server fronts Prometheus under /prometheus with basic auth, as an authenticating
proxy would: the operator is given a URL with a path prefix and credentials.
"""

from __future__ import annotations

import base64
import logging
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import requests
import yaml
from aiohttp import web

from mlflow_operator.core.modeldeployment.canary import Traffic
from mlflow_operator.promquery import PrometheusTraffic
from tests.prometheus.build import ensure_built
from tests.support.polling import eventually
from tests.support.processes import ManagedProcess, free_port
from tests.support.threaded_app import ThreadedApp

pytestmark = pytest.mark.integration

# quotes, a backslash and a regex dot: the selector must quote them and match them exactly
MODEL = 'fraud.eu "gbm" \\ 2'
STABLE, CANARY = "7", "8"
BOUNDS = ("0.01", "0.1", "+Inf")
# (namespace, version, status) -> answers per bucket bound, cumulative as `le` counts
FINAL: dict[tuple[str, str, str], tuple[int, int, int]] = {
    ("ml-prod", STABLE, "200"): (100, 118, 120),
    ("ml-prod", STABLE, "500"): (0, 1, 3),
    ("ml-prod", CANARY, "200"): (10, 35, 40),
    ("ml-prod", CANARY, "400"): (10, 10, 10),
    # the same model and version elsewhere: never part of ml-prod's answers
    ("ml-staging", CANARY, "200"): (900, 990, 1000),
}
USER, PASSWORD = "reader", "s3cret-pw"
WINDOW = 300  # longer than the test: every sample since the first scrape is in it
# increase() reads at least this many samples of each series before it is asked (see
# test_each_version_gets_its_own_answers)
SAMPLES = 12


def exposition(namespace: str, final: bool) -> str:
    """The serving runtime's /metrics (mlflow_operator_serve/metrics.py) in that namespace."""

    def quoted(value: str) -> str:  # the text format's escapes
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'

    lines = [
        "# HELP mlflow_serving_requests_total Scoring requests answered, by HTTP status.",
        "# TYPE mlflow_serving_requests_total counter",
    ]
    buckets = []
    for (ns, version, status), counts in FINAL.items():
        if ns != namespace:
            continue
        served = counts if final else (0, 0, 0)
        labels = (
            f"model_name={quoted(MODEL)},model_version={quoted(version)},status={quoted(status)}"
        )
        lines.append(f"mlflow_serving_requests_total{{{labels}}} {served[-1]}")
        buckets += [
            f"mlflow_serving_request_duration_seconds_bucket{{{labels},le={quoted(le)}}} {count}"
            for le, count in zip(BOUNDS, served, strict=True)
        ]
        buckets.append(f"mlflow_serving_request_duration_seconds_count{{{labels}}} {served[-1]}")
        buckets.append(f"mlflow_serving_request_duration_seconds_sum{{{labels}}} {served[-1] / 50}")
    lines += [
        "# HELP mlflow_serving_request_duration_seconds Time from request received to response.",
        "# TYPE mlflow_serving_request_duration_seconds histogram",
        *buckets,
    ]
    return "\n".join(lines) + "\n"


def expected(version: str) -> Traffic:
    """What ml-prod's pods of `version` answered between the first scrape and the last."""
    total = Traffic()
    for (ns, v, status), counts in FINAL.items():
        if ns == "ml-prod" and v == version:
            errors = 0 if status.startswith("2") else counts[-1]
            buckets = {float(le): float(c) for le, c in zip(BOUNDS, counts, strict=True)}
            total += Traffic(counts[-1], errors, buckets)
    return total


@dataclass
class Targets:
    """The serving pods' /metrics, and an authenticating proxy in front of Prometheus."""

    prometheus: str = ""
    final: bool = False
    _server: ThreadedApp | None = None

    @property
    def port(self) -> int:
        assert self._server is not None
        return self._server.port

    @property
    def url(self) -> str:
        assert self._server is not None
        return self._server.url

    def start(self) -> Targets:
        self._server = ThreadedApp(self._app).start()
        return self

    async def _app(self) -> web.Application:
        async def metrics(request: web.Request) -> web.Response:
            return web.Response(text=exposition(request.match_info["namespace"], self.final))

        async def proxy(request: web.Request) -> web.Response:
            token = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
            if request.headers.get("Authorization") != f"Basic {token}":
                return web.Response(status=401, text="Unauthorized")
            async with (
                aiohttp.ClientSession() as session,
                session.get(
                    f"{self.prometheus}/{request.match_info['tail']}", params=request.query
                ) as resp,
            ):
                return web.Response(
                    status=resp.status, body=await resp.read(), content_type=resp.content_type
                )

        app = web.Application()
        app.router.add_get("/metrics/{namespace}", metrics)
        app.router.add_get("/prometheus/{tail:.*}", proxy)
        return app

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()


def query(prometheus: str, expr: str) -> list[dict[str, Any]]:
    session = requests.Session()
    session.trust_env = False  # loopback, never through a proxy
    body = session.get(f"{prometheus}/api/v1/query", params={"query": expr}, timeout=10).json()
    assert body["status"] == "success", (expr, body)
    result: list[dict[str, Any]] = body["data"]["result"]
    return result


def fewest_samples(prometheus: str) -> int:
    """The fewest samples that any ml-prod series has in the window."""
    counts = query(
        prometheus,
        f'count_over_time(mlflow_serving_requests_total{{namespace="ml-prod"}}[{WINDOW}s])',
    )
    return min((int(float(series["value"][1])) for series in counts), default=0)


@pytest.fixture(scope="module")
def scraped(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Targets]]:
    """Prometheus after it has read the counters at 0 and at least SAMPLES times since."""
    tmp_path: Path = tmp_path_factory.mktemp("promquery")
    targets = Targets().start()
    port = free_port()
    config = tmp_path / "prometheus.yml"
    config.write_text(
        yaml.safe_dump(
            {
                "global": {"scrape_interval": "1s", "scrape_timeout": "1s"},
                "scrape_configs": [
                    {
                        "job_name": f"serving-{namespace}",
                        "metrics_path": f"/metrics/{namespace}",
                        "static_configs": [
                            {
                                "targets": [f"127.0.0.1:{targets.port}"],
                                "labels": {"namespace": namespace, "pod": f"fraud-{namespace}"},
                            }
                        ],
                    }
                    for namespace in ("ml-prod", "ml-staging")
                ],
            }
        )
    )
    process = ManagedProcess(
        "prometheus",
        [
            str(ensure_built("prometheus", quiet=True)),
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp_path / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        tmp_path / "prometheus.log",
    ).start()
    prometheus = targets.prometheus = f"http://127.0.0.1:{port}"
    try:
        # the zeros first: a series' first sample is 0, as a fresh pod's counter is. Of both
        # namespaces: each is a target of its own, first scraped at its own offset, and one
        # whose first sample is already final has no increase to find
        eventually(
            lambda: len(query(prometheus, "mlflow_serving_requests_total")) == len(FINAL),
            timeout=60,
            what="prometheus has read the counters of both namespaces at 0",
            processes=[process],
        )
        targets.final = True
        eventually(
            lambda: (
                fewest_samples(prometheus) >= SAMPLES
                and query(prometheus, "sum(mlflow_serving_requests_total)")[0]["value"][1] == "1173"
            ),
            timeout=60,
            what=f"{SAMPLES} samples, the last ones the final counts",
            processes=[process],
        )
        yield prometheus, targets
    finally:
        process.stop()
        targets.stop()


async def test_each_version_gets_its_own_answers(scraped: tuple[str, Targets]) -> None:
    prometheus, _ = scraped
    # increase() reads the change from 0 to the final count over the sampled interval S
    # (first to last sample, n samples, 1 s apart on average) and extrapolates it to the edges
    # of the window. Not to the start: the first sample is 0, so the counter started there.
    # To the end, by the time since the last sample if that is under 1.1 average intervals,
    # else by half of one: at most 1.1 * S / (n - 1) more. So every count is its true value
    # times one factor f, the same for every series of the target (they share their sample
    # times), with 1 <= f <= 1 + 1.1 / (n - 1); n only grows between here and the query.
    bound = 1 + 1.1 / (fewest_samples(prometheus) - 1)
    source = PrometheusTraffic(prometheus, timeout_seconds=10)
    try:
        for version in (STABLE, CANARY):
            got = await source.traffic(
                namespace="ml-prod", model_name=MODEL, version=version, window_seconds=WINDOW
            )
            want = expected(version)
            assert got is not None, version
            factor = got.requests / want.requests
            assert 1 - 1e-9 <= factor <= bound, (version, got, want, bound)
            assert got.errors == pytest.approx(want.errors * factor, rel=1e-9), (version, got)
            # the buckets come from their own query, evaluated a moment apart: their own factor
            assert set(got.buckets) == {0.01, 0.1, math.inf}
            bucket_factor = got.buckets[math.inf] / want.buckets[math.inf]
            assert 1 - 1e-9 <= bucket_factor <= bound, (version, got, want, bound)
            for le, count in want.buckets.items():
                assert got.buckets[le] == pytest.approx(count * bucket_factor, rel=1e-9), le
    finally:
        await source.close()


async def test_only_the_window_counts(scraped: tuple[str, Targets]) -> None:
    """The counters have not moved for SAMPLES seconds: nothing was answered in the last 3 s,
    which is zero answers, not "no data"."""
    prometheus, _ = scraped
    source = PrometheusTraffic(prometheus, timeout_seconds=10)
    try:
        got = await source.traffic(
            namespace="ml-prod", model_name=MODEL, version=CANARY, window_seconds=3
        )
    finally:
        await source.close()
    assert got == Traffic(0.0, 0.0, {0.01: 0.0, 0.1: 0.0, math.inf: 0.0})


async def test_no_series_is_no_data(scraped: tuple[str, Targets]) -> None:
    prometheus, _ = scraped
    source = PrometheusTraffic(prometheus, timeout_seconds=10)
    try:
        for namespace, model, version in (
            ("ml-prod", MODEL, "9"),  # a version no pod serves
            ("ml-dev", MODEL, CANARY),  # a namespace with no such pods
            ("ml-prod", "fraud.*", CANARY),  # a regex would have matched the model
        ):
            assert (
                await source.traffic(
                    namespace=namespace, model_name=model, version=version, window_seconds=WINDOW
                )
                is None
            ), (namespace, model, version)
    finally:
        await source.close()


async def test_a_prometheus_behind_a_prefix_and_basic_auth(scraped: tuple[str, Targets]) -> None:
    _, targets = scraped
    base = targets.url.replace("http://", f"http://{USER}:{PASSWORD}@") + "/prometheus/"
    source = PrometheusTraffic(base, timeout_seconds=10)
    try:
        got = await source.traffic(
            namespace="ml-staging", model_name=MODEL, version=CANARY, window_seconds=WINDOW
        )
    finally:
        await source.close()
    assert got is not None
    assert got.errors == 0
    assert got.requests >= 1000


async def test_no_answer_is_no_data_and_logs_no_credentials(
    scraped: tuple[str, Targets], caplog: pytest.LogCaptureFixture
) -> None:
    _, targets = scraped
    caplog.set_level(logging.DEBUG, logger="mlflow_operator.promquery")
    for url in (
        f"http://{USER}:{PASSWORD}@127.0.0.1:{free_port()}",  # nothing listens
        f"http://{USER}:wrong@{targets.url.removeprefix('http://')}/prometheus",  # 401, not JSON
        targets.url,  # a server that is not Prometheus: 404 on /api/v1/query
    ):
        source = PrometheusTraffic(url, timeout_seconds=5)
        try:
            got = await source.traffic(
                namespace="ml-prod", model_name=MODEL, version=CANARY, window_seconds=WINDOW
            )
        finally:
            await source.close()
        assert got is None, url
    assert caplog.records, "each failure is logged at debug level"
    assert PASSWORD not in caplog.text
    assert "wrong" not in caplog.text
