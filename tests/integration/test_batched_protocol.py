"""MLflow's scoring protocol: `mlflow-operator-serve` answers exactly as `mlflow models serve`.

Both servers run as real processes on the same saved model; every request goes to both, and
status, Content-Type and body must be identical. The one deliberate difference - MLflow puts
a Python stack trace in some error bodies, we do not - is asserted explicitly.
"""

from __future__ import annotations

import io
import json
import re
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest

from mlflow_operator.podmetrics import parse_load
from tests.bench.serving_servers import (
    RawResponse,
    Server,
    request,
    save_iris_classifier,
    save_iris_tensor_classifier,
    start_batched,
    start_mlflow_serve,
    wait_ready,
)

COLUMNS = ["sepal length (cm)", "sepal width (cm)", "petal length (cm)", "petal width (cm)"]
ROWS = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.1, 4.4, 1.4], [6.3, 3.3, 6.0, 2.5]]
JSON = "application/json"


def dumps(value: object) -> bytes:
    return json.dumps(value).encode()


def parquet(frame: pd.DataFrame) -> bytes:
    out = io.BytesIO()
    frame.to_parquet(out)
    return out.getvalue()


RECORDS = [dict(zip(COLUMNS, row, strict=True)) for row in ROWS]
FRAME = pd.DataFrame(ROWS, columns=COLUMNS)
CSV = FRAME.to_csv(index=False).encode()


@dataclass(frozen=True)
class Case:
    name: str
    method: str = "POST"
    path: str = "/invocations"
    body: bytes | None = None
    content_type: str | None = JSON


CASES = [
    Case("ping", "GET", "/ping", content_type=None),
    Case("health", "GET", "/health", content_type=None),
    Case("version", "GET", "/version", content_type=None),
    Case("unknown path", "GET", "/nope", content_type=None),
    Case("GET invocations", "GET", "/invocations", content_type=None),
    Case("dataframe_split", body=dumps({"dataframe_split": {"columns": COLUMNS, "data": ROWS}})),
    Case("dataframe_records", body=dumps({"dataframe_records": RECORDS})),
    Case("instances", body=dumps({"instances": RECORDS})),
    Case(
        "inputs as columns",
        body=dumps({"inputs": {c: [r[i] for r in ROWS] for i, c in enumerate(COLUMNS)}}),
    ),
    Case("inputs as records", body=dumps({"inputs": RECORDS})),
    Case("inputs as list of lists", body=dumps({"inputs": ROWS})),
    Case(
        "split with params",
        body=dumps({"dataframe_split": {"columns": COLUMNS, "data": ROWS}, "params": {"a": 1}}),
    ),
    Case(
        "json charset",
        body=dumps({"dataframe_records": RECORDS}),
        content_type=f"{JSON}; charset=UTF-8",
    ),
    Case("csv", body=CSV, content_type="text/csv"),
    Case("csv charset", body=CSV, content_type="text/csv; charset=utf-8"),
    Case("parquet", body=parquet(FRAME), content_type="application/vnd.apache.parquet"),
    Case(
        "ints for doubles",
        body=dumps({"dataframe_split": {"columns": COLUMNS, "data": [[5, 3, 1, 0]]}}),
    ),
    Case(
        "extra column",
        body=dumps({"dataframe_records": [{**RECORDS[0], "color": "red"}]}),
    ),
    Case(
        "missing column",
        body=dumps({"dataframe_split": {"columns": COLUMNS[:3], "data": [r[:3] for r in ROWS]}}),
    ),
    Case(
        "string for double",
        body=dumps({"dataframe_records": [{**RECORDS[0], "sepal width (cm)": "wide"}]}),
    ),
    Case("bad json", body=b'{"dataframe_split": '),
    Case("json list", body=dumps([RECORDS])),
    Case("json scalar", body=b"42"),
    Case("mlflow 1 format", body=dumps({"columns": COLUMNS, "data": ROWS})),
    Case(
        "two input fields",
        body=dumps({"dataframe_records": RECORDS, "instances": RECORDS}),
    ),
    Case("no input field", body=dumps({"params": {"a": 1}})),
    Case("invalid utf-8 json", body=b'{"dataframe_records": [{"\xff": 1}]}'),
    Case("empty body", body=b""),
    Case("unknown content type", body=b"<x/>", content_type="text/xml"),
    Case("latin-1 charset", body=CSV, content_type="text/csv; charset=latin-1"),
    Case("unknown parameter", body=CSV, content_type="text/csv; format=pandas-split"),
    Case("no content type", body=CSV, content_type=None),
    Case("invalid utf-8 csv", body=b"\xff\xfe,1\n", content_type="text/csv"),
]

# MLflow answers these with a `stack_trace` field in the JSON body; we do not.
STACK_TRACE_CASES = [
    Case(
        "model raises (NaN input)",
        body=b'{"dataframe_split": {"columns": %s, "data": [[NaN, 1, 1, 1]]}}'
        % json.dumps(COLUMNS).encode(),
    ),
    Case(
        "csv that does not fit the schema",
        body=(",".join(COLUMNS) + "\nwide,1,1,1\n").encode(),
        content_type="text/csv",
    ),
    Case("not parquet", body=b"PAR1 nonsense", content_type="application/vnd.apache.parquet"),
]


# A tensor signature (float32, (-1, 4)): `inputs`/`instances` take signature_tensors' fast
# path where they hold plain numbers, MLflow's path otherwise; the answers must not tell.
TENSOR_CASES = [
    Case("tensor inputs", body=dumps({"inputs": ROWS})),
    Case("tensor instances", body=dumps({"instances": ROWS})),
    Case("tensor one row", body=dumps({"inputs": ROWS[:1]})),
    Case("tensor ints and bools", body=dumps({"inputs": [[5, 3, True, 0], [6, 3.5, 4, False]]})),
    Case("tensor flat row", body=dumps({"inputs": ROWS[0]})),
    Case("tensor too narrow", body=dumps({"inputs": [row[:3] for row in ROWS]})),
    Case("tensor ragged", body=dumps({"inputs": [ROWS[0], ROWS[1][:3]]})),
    Case("tensor one level deeper", body=dumps({"inputs": [ROWS]})),
    Case("tensor int beyond 64 bits", body=dumps({"inputs": [[5, 3, 1, 10**30]]})),
    Case("tensor string", body=dumps({"inputs": [["5.1", 3.5, 1.4, 0.2]]})),
    Case("tensor empty", body=dumps({"inputs": []})),
    Case("tensor with params", body=dumps({"inputs": ROWS, "params": {"a": 1}})),
    Case("tensor both fields", body=dumps({"inputs": ROWS, "instances": ROWS})),
    Case("tensor as dataframe_split", body=dumps({"dataframe_split": {"data": ROWS}})),
]
# The model raises on these (infinity in float32, NaN): MLflow's body has a stack trace.
TENSOR_STACK_TRACE_CASES = [
    Case("tensor float beyond float32", body=dumps({"inputs": [[5, 3, 1, 1e300]]})),
    Case("tensor NaN", body=b'{"inputs": [[NaN, 3.5, 1.4, 0.2]]}'),
]


def serve_both(model_dir: Path, root: Path) -> Iterator[tuple[Server, Server]]:
    """`mlflow models serve` and `mlflow-operator-serve -w 1` on one model, until closed."""
    # MLflow's messages list a set of field names, whose order follows string hashing.
    same_hashing = {"PYTHONHASHSEED": "0"}
    mlflow_server = start_mlflow_serve(str(model_dir), root, env=same_hashing)
    batched = start_batched(str(model_dir), root, ["--workers", "1"], env=same_hashing)
    try:
        wait_ready(mlflow_server)
        wait_ready(batched)
        yield mlflow_server, batched
    finally:
        batched.stop()
        mlflow_server.stop()


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, Server]]:
    root = tmp_path_factory.mktemp("batched-protocol")
    yield from serve_both(save_iris_classifier(root / "iris"), root)


@pytest.fixture(scope="module")
def tensor_servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, Server]]:
    root = tmp_path_factory.mktemp("batched-protocol-tensor")
    yield from serve_both(save_iris_tensor_classifier(root / "iris-tensor"), root)


def both(servers: tuple[Server, Server], case: Case) -> tuple[RawResponse, RawResponse]:
    with ThreadPoolExecutor(2) as pool:
        theirs, ours = pool.map(
            lambda s: request(
                s.port, case.method, case.path, body=case.body, content_type=case.content_type
            ),
            servers,
        )
    return theirs, ours


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_same_response_as_mlflow(servers: tuple[Server, Server], case: Case) -> None:
    theirs, ours = both(servers, case)
    assert (ours.status, ours.content_type) == (theirs.status, theirs.content_type)
    assert ours.body == theirs.body


@pytest.mark.parametrize("case", TENSOR_CASES, ids=[c.name for c in TENSOR_CASES])
def test_same_response_as_mlflow_for_a_tensor_signature(
    tensor_servers: tuple[Server, Server], case: Case
) -> None:
    theirs, ours = both(tensor_servers, case)
    assert (ours.status, ours.content_type) == (theirs.status, theirs.content_type)
    assert ours.body == theirs.body


def test_tensor_requests_take_the_fast_path_and_merge(
    tensor_servers: tuple[Server, Server],
) -> None:
    """Plain-number `inputs` skip MLflow's parser (counted) and 32 at once are merged into
    fewer predict calls, each answered as MLflow answers it alone."""
    mlflow_server, batched = tensor_servers
    bodies = [dumps({"inputs": [[5.0 + i / 10, 3.0, 1.0 + i / 8, i / 16]]}) for i in range(32)]

    def fast_and_calls() -> tuple[float, float]:
        text = request(batched.port, "GET", "/metrics").body.decode()
        fast = re.search(r'mlflow_serving_input_parsing_total\{[^}]*path="fast"\} (\S+)', text)
        calls = re.search(r"mlflow_serving_batch_size_requests_count\{[^}]*\} (\S+)", text)
        assert fast is not None
        assert calls is not None
        return float(fast[1]), float(calls[1])

    fast_before, calls_before = fast_and_calls()
    with ThreadPoolExecutor(32) as pool:
        ours = list(pool.map(lambda b: request(batched.port, "POST", "/invocations", body=b,
                                               content_type=JSON), bodies))  # fmt: skip
    theirs = [request(mlflow_server.port, "POST", "/invocations", body=b, content_type=JSON)
              for b in bodies]  # fmt: skip
    fast_after, calls_after = fast_and_calls()

    assert [r.body for r in ours] == [r.body for r in theirs]
    assert all(r.status == 200 for r in ours)
    assert fast_after - fast_before == 32
    assert calls_after - calls_before < 32


@pytest.mark.parametrize("case", STACK_TRACE_CASES, ids=[c.name for c in STACK_TRACE_CASES])
def test_same_error_without_the_stack_trace(servers: tuple[Server, Server], case: Case) -> None:
    assert_same_error_without_the_stack_trace(*both(servers, case))


@pytest.mark.parametrize(
    "case", TENSOR_STACK_TRACE_CASES, ids=[c.name for c in TENSOR_STACK_TRACE_CASES]
)
def test_same_error_without_the_stack_trace_for_a_tensor_signature(
    tensor_servers: tuple[Server, Server], case: Case
) -> None:
    assert_same_error_without_the_stack_trace(*both(tensor_servers, case))


def assert_same_error_without_the_stack_trace(theirs: RawResponse, ours: RawResponse) -> None:
    assert (ours.status, ours.content_type) == (theirs.status, theirs.content_type)
    assert theirs.status == 400
    their_error, our_error = json.loads(theirs.body), json.loads(ours.body)
    assert "Traceback" in their_error.pop("stack_trace")
    assert "stack_trace" not in our_error
    assert our_error == their_error
    assert b"Traceback" not in ours.body


def test_metrics_count_requests_by_status(servers: tuple[Server, Server]) -> None:
    _, batched = servers
    body = dumps({"dataframe_records": RECORDS})
    assert request(batched.port, "POST", "/invocations", body=body, content_type=JSON).status == 200
    text = request(batched.port, "GET", "/metrics").body.decode()
    assert 'mlflow_serving_requests_total{model_name="iris",model_version="",status="200"}' in text
    for name in (
        "mlflow_serving_request_duration_seconds_bucket",
        "mlflow_serving_batch_size_rows_bucket",
        "mlflow_serving_queue_depth",
        "mlflow_serving_model_load_seconds",
    ):
        assert name in text
    # what the operator's autoscaler reads from it: every request answered, none in flight
    load = parse_load("pod", text)
    assert load is not None
    assert load.in_flight == 0
    assert load.answered >= 1


def test_model_load_log_mentions_the_warm_up(servers: tuple[Server, Server]) -> None:
    _, batched = servers
    assert "warm-up predict took" in Path(batched.process.log_path).read_text()
