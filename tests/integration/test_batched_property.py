"""Property: under concurrency, every response equals the response to that request alone.

Random mixes of requests (formats, row counts, schema errors, extra columns, params) are sent
to `mlflow-operator-serve` all at once, so that they queue and get merged, and then one at a
time, so that each runs alone. Status and body must be the same for every request.
"""

from __future__ import annotations

import io
import json
import re
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.bench.serving_servers import (
    RawResponse,
    Server,
    request,
    save_iris_classifier,
    save_mixed_regressor,
    start_batched,
    wait_ready,
)

IRIS = ["sepal length (cm)", "sepal width (cm)", "petal length (cm)", "petal width (cm)"]
MIXED = ["size", "rooms", "city"]


@dataclass(frozen=True)
class Req:
    body: bytes
    content_type: str


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Server]]:
    root = tmp_path_factory.mktemp("batched-property")
    models = {
        "iris": save_iris_classifier(root / "iris"),
        "mixed": save_mixed_regressor(root / "mixed"),
    }
    started = {
        name: start_batched(
            str(path), root, ["--workers", "1", "--max-batch-size", "16"], {"PYTHONHASHSEED": "0"}
        )
        for name, path in models.items()
    }
    try:
        for server in started.values():
            wait_ready(server)
        yield started
    finally:
        for server in started.values():
            server.stop()


def encode(frame: pd.DataFrame, fmt: str, params: dict[str, object] | None) -> Req:
    if fmt == "csv":
        return Req(frame.to_csv(index=False).encode(), "text/csv")
    if fmt == "parquet":
        out = io.BytesIO()
        frame.to_parquet(out)
        return Req(out.getvalue(), "application/vnd.apache.parquet")
    if fmt == "split":
        payload: dict[str, object] = {
            "dataframe_split": json.loads(frame.to_json(orient="split", index=False))
        }
    else:
        payload = {"dataframe_records": json.loads(frame.to_json(orient="records"))}
    if params is not None:
        payload["params"] = params
    return Req(json.dumps(payload).encode(), "application/json")


finite = st.floats(min_value=-10, max_value=200, allow_nan=False, allow_infinity=False, width=32)
formats = st.sampled_from(["split", "records", "csv", "parquet"])


@st.composite
def iris_request(draw: st.DrawFn) -> Req:
    rows = draw(st.lists(st.lists(finite, min_size=4, max_size=4), min_size=1, max_size=5))
    frame = pd.DataFrame(rows, columns=IRIS)
    variant = draw(st.sampled_from(["plain"] * 6 + ["extra", "missing", "ints", "params"]))
    if variant == "extra":
        frame["note"] = "x"
    elif variant == "missing":
        frame = frame.drop(columns=[IRIS[1]])
    elif variant == "ints":
        frame = frame.round().astype("int64")
    params = {"p": 1} if variant == "params" else None
    return encode(frame, draw(formats), params)


@st.composite
def mixed_request(draw: st.DrawFn) -> Req:
    n = draw(st.integers(1, 5))
    frame = pd.DataFrame(
        {
            "size": draw(st.lists(finite, min_size=n, max_size=n)),
            "rooms": draw(st.lists(st.integers(1, 6), min_size=n, max_size=n)),
            "city": draw(
                st.lists(st.sampled_from(["ams", "ber", "par", "oslo"]), min_size=n, max_size=n)
            ),
        }
    )
    variant = draw(st.sampled_from(["plain"] * 6 + ["float rooms", "bad size", "reordered"]))
    if variant == "float rooms":
        frame["rooms"] = frame["rooms"] + 0.5
    elif variant == "bad size":
        frame["size"] = "big"
    elif variant == "reordered":
        frame = frame[["city", "size", "rooms"]]
    return encode(frame, draw(formats), None)


def send(server: Server, req: Req) -> RawResponse:
    return request(
        server.port, "POST", "/invocations", body=req.body, content_type=req.content_type
    )


def concurrently(server: Server, reqs: list[Req]) -> list[RawResponse]:
    start = threading.Barrier(len(reqs))

    def go(req: Req) -> RawResponse:
        start.wait()
        return send(server, req)

    with ThreadPoolExecutor(len(reqs)) as pool:
        return list(pool.map(go, reqs))


def check(server: Server, reqs: list[Req]) -> None:
    together = concurrently(server, reqs)
    alone = [send(server, req) for req in reqs]
    for req, mixed, single in zip(reqs, together, alone, strict=True):
        assert (mixed.status, mixed.body) == (single.status, single.body), req


SETTINGS = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@SETTINGS
@given(reqs=st.lists(iris_request(), min_size=2, max_size=24))
def test_iris_concurrent_equals_alone(servers: dict[str, Server], reqs: list[Req]) -> None:
    check(servers["iris"], reqs)


@SETTINGS
@given(reqs=st.lists(mixed_request(), min_size=2, max_size=24))
def test_mixed_concurrent_equals_alone(servers: dict[str, Server], reqs: list[Req]) -> None:
    check(servers["mixed"], reqs)


def test_requests_were_actually_merged(servers: dict[str, Server]) -> None:
    """The properties above mean something only if batches of several requests happened."""
    for server in servers.values():
        metrics = request(server.port, "GET", "/metrics").body.decode()
        single = re.search(
            r'mlflow_serving_batch_size_requests_bucket\{le="1\.0"[^}]*\} (\S+)', metrics
        )
        total = re.search(r"mlflow_serving_batch_size_requests_count\{[^}]*\} (\S+)", metrics)
        assert single is not None
        assert total is not None
        assert float(total[1]) > float(single[1]), f"{server.name}: no merged batch"
