"""Ground-truth labels (mlflow_operator_serve.labels and `POST /labels`): what a post may hold,
every refusal with the place at fault, and the endpoint's answers through aiohttp's client."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from mlflow_operator_serve import server
from mlflow_operator_serve.labels import MAX_LABELS, LabelError, is_json, parse_labels
from mlflow_operator_serve.metrics import ServingMetrics
from mlflow_operator_serve.prediction_log import MAX_REQUEST_ID, PredictionLog
from tests.unit.serve.test_prediction_log import Uploads

JSON = "application/json"
METRIC = "mlflow_serving_labels_total"


def post(*items: Any) -> bytes:
    return json.dumps({"labels": list(items)}).encode()


# --- parsing ----------------------------------------------------------------------------------


def test_scalars_and_lists_of_scalars_are_taken_in_order() -> None:
    labels = parse_labels(
        post(
            {"request_id": "a", "label": 1},
            {"request_id": "b", "label": 0.5},
            {"request_id": "c", "label": "fraud"},
            {"request_id": "d", "label": True},
            {"request_id": "e", "label": [1, "x", False, 2.5]},
            {"label": -3, "request_id": "x" * MAX_REQUEST_ID},
        )
    )
    assert [(label.request_id[:1], label.value) for label in labels] == [
        ("a", 1),
        ("b", 0.5),
        ("c", "fraud"),
        ("d", True),
        ("e", [1, "x", False, 2.5]),
        ("x", -3),
    ]
    assert [label.json for label in labels][-2:] == ['[1,"x",false,2.5]', "-3"]
    assert labels[0].size == len("a") + len("1")


def test_as_many_labels_as_the_limit_are_taken() -> None:
    items = [{"request_id": f"r{i}", "label": i % 2} for i in range(MAX_LABELS)]
    assert len(parse_labels(post(*items))) == MAX_LABELS


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"{not json", "body: not valid JSON"),
        (b"\xff\xfe{", "body: not valid JSON"),
        (b"[]", "body: must be a JSON object"),
        (b'{"labels": [], "extra": 1}', "body: unknown field 'extra'"),
        (b"{}", "labels: required"),
        (b'{"labels": {"request_id": "a", "label": 1}}', "labels: required, a list"),
        (b'{"labels": []}', "labels: 0 items; a post holds 1 to 10000"),
        (post({"request_id": "a", "label": 1}, "b"), "labels[1]: must be an object"),
        (post({"request_id": "a", "label": 1, "note": "x"}), "labels[0]: unknown field 'note'"),
        (post({"label": 1}), "labels[0].request_id: required"),
        (post({"request_id": 7, "label": 1}), "labels[0].request_id: required, a string"),
        (post({"request_id": "", "label": 1}), "labels[0].request_id: 0 characters"),
        (
            post({"request_id": "a", "label": 1}, {"request_id": "x" * 201, "label": 1}),
            "labels[1].request_id: 201 characters; must be 1 to 200",
        ),
        (post({"request_id": "a"}), "labels[0].label: required"),
        (post({"request_id": "a", "label": None}), "labels[0].label: must be a number"),
        (post({"request_id": "a", "label": {"y": 1}}), "labels[0].label: must be a number"),
        (post({"request_id": "a", "label": []}), "labels[0].label: must be a number"),
        (post({"request_id": "a", "label": [1, [2]]}), "labels[0].label[1]: must be a number"),
        (post({"request_id": "a", "label": [1, None]}), "labels[0].label[1]: must be a number"),
        (b'{"labels": [{"request_id": "a", "label": NaN}]}', "labels[0].label: NaN and Infinity"),
        (
            b'{"labels": [{"request_id": "a", "label": [1, -Infinity]}]}',
            "labels[0].label[1]: NaN and Infinity",
        ),
        # too large for a float: Python reads it as infinity
        (b'{"labels": [{"request_id": "a", "label": 1e999}]}', "labels[0].label: NaN and"),
    ],
)
def test_anything_else_is_refused_naming_the_item_and_field(body: bytes, message: str) -> None:
    with pytest.raises(LabelError) as refused:
        parse_labels(body)
    assert str(refused.value).startswith(message), str(refused.value)
    assert isinstance(refused.value, ValueError)


def test_more_than_the_limit_is_refused() -> None:
    items = [{"request_id": f"r{i}", "label": 1} for i in range(MAX_LABELS + 1)]
    with pytest.raises(LabelError, match=r"^labels: 10001 items; a post holds 1 to 10000"):
        parse_labels(post(*items))


@pytest.mark.parametrize(
    ("content_type", "taken"),
    [
        ("application/json", True),
        ("Application/JSON; charset=UTF-8", True),
        ('application/json; charset="utf-8"', True),
        ("application/json; charset=latin-1", False),
        ("application/json; format=pandas-split", False),
        ("text/csv", False),
        ("text/plain", False),
        (None, False),
    ],
)
def test_only_utf8_json_is_read(content_type: str | None, taken: bool) -> None:
    assert is_json(content_type) is taken


# --- the endpoint -----------------------------------------------------------------------------


class Answer:
    def __init__(self, status: int, content_type: str, body: bytes) -> None:
        self.status, self.content_type, self.body = status, content_type, body

    def json(self) -> Any:
        return json.loads(self.body)


class Client:
    """The runtime's aiohttp app with only what `/labels` uses (no model, no batcher)."""

    def __init__(self, client: TestClient[Any, Any], metrics: ServingMetrics) -> None:
        self.client, self.metrics = client, metrics

    async def post(self, body: bytes, content_type: str | None = JSON) -> Answer:
        headers = {"Content-Type": content_type} if content_type is not None else {}
        async with self.client.post("/labels", data=body, headers=headers) as response:
            return Answer(response.status, response.content_type, await response.read())

    def counted(self, outcome: str) -> float:
        labels = {"model_name": "fraud", "model_version": "8", "outcome": outcome}
        return self.metrics.registry.get_sample_value(METRIC, labels) or 0.0


async def start(log: PredictionLog | None, metrics: ServingMetrics) -> Client:
    state: Any = server.ServingState(None, None, metrics, 30.0, prediction_log=log)
    client: TestClient[Any, Any] = TestClient(TestServer(server.build_app(state)))
    await client.start_server()
    return Client(client, metrics)


def prediction_log(sink: Uploads, metrics: ServingMetrics, **kwargs: Any) -> PredictionLog:
    return PredictionLog(
        model="fraud", version="8", sample_rate=1.0, excluded=(), sink=sink, counter=metrics,
        **kwargs,
    )  # fmt: skip


@pytest.fixture
def sink() -> Uploads:
    return Uploads()


async def test_accepted_labels_are_answered_202_and_written_by_the_log(sink: Uploads) -> None:
    metrics = ServingMetrics("fraud", "8")
    log = prediction_log(sink, metrics)
    api = await start(log, metrics)
    try:
        body = post({"request_id": "req-1", "label": 1}, {"request_id": "req-2", "label": [0, 1]})
        answer = await api.post(body, "application/json; charset=utf-8")
        assert (answer.status, answer.content_type) == (202, JSON)
        assert answer.json() == {"accepted": 2}
    finally:
        await api.client.close()
    log.close()
    assert [(line["request_id"], line["label"]) for line in sink.lines()] == [
        ("req-1", 1),
        ("req-2", [0, 1]),
    ]
    assert sink.files[0][0].startswith("labels/8/")
    assert api.counted("written") == 2


async def test_without_sampling_the_endpoint_says_why_it_is_not_there() -> None:
    api = await start(None, ServingMetrics("fraud", "8"))
    try:
        answer = await api.post(post({"request_id": "a", "label": 1}))
        also_csv = await api.post(b"a\n1\n", "text/csv")
    finally:
        await api.client.close()
    assert (answer.status, answer.content_type) == (404, JSON)
    assert answer.json()["error_code"] == "ENDPOINT_NOT_FOUND"
    assert "serving.monitoring.sampleRate > 0" in answer.json()["message"]
    assert "sampled requests" in answer.json()["message"]
    assert also_csv.status == 404


async def test_a_bad_body_is_400_with_the_place_at_fault_and_nothing_queued(sink: Uploads) -> None:
    metrics = ServingMetrics("fraud", "8")
    log = prediction_log(sink, metrics)
    api = await start(log, metrics)
    try:
        body = post({"request_id": "a", "label": 1}, {"request_id": "b", "label": None})
        answer = await api.post(body)
        not_json = await api.post(b"{", JSON)
    finally:
        await api.client.close()
    log.close()
    assert (answer.status, answer.content_type) == (400, JSON)
    assert answer.json()["error_code"] == "BAD_REQUEST"
    assert answer.json()["message"].startswith("labels[1].label: must be a number")
    assert not_json.status == 400
    assert not_json.json()["message"].startswith("body: not valid JSON")
    assert sink.files == []


@pytest.mark.parametrize("content_type", ["text/csv", "application/json; charset=latin-1", None])
async def test_a_body_that_is_not_json_is_415_as_invocations_answers(
    sink: Uploads, content_type: str | None
) -> None:
    metrics = ServingMetrics("fraud", "8")
    log = prediction_log(sink, metrics)
    api = await start(log, metrics)
    try:
        answer = await api.post(post({"request_id": "a", "label": 1}), content_type)
    finally:
        await api.client.close()
    log.close()
    assert (answer.status, answer.content_type) == (415, "text/plain")
    assert b"application/json" in answer.body
    assert sink.files == []


async def test_labels_that_do_not_fit_are_503_as_a_whole_and_counted_refused(
    sink: Uploads,
) -> None:
    hold = threading.Event()
    sink.hold = hold
    metrics = ServingMetrics("fraud", "8")
    first = post({"request_id": "a", "label": 1})
    log = prediction_log(sink, metrics, max_pending_bytes=len("a1") + 1)
    api = await start(log, metrics)
    try:
        assert (await api.post(first)).status == 202
        refused = await api.post(post({"request_id": "b", "label": 2}))
        too_large = await api.post(post(*[{"request_id": f"r{i}", "label": i} for i in range(5)]))
    finally:
        await api.client.close()
        hold.set()
    log.close()
    assert (refused.status, refused.content_type) == (503, JSON)
    assert refused.json()["error_code"] == "TEMPORARILY_UNAVAILABLE"
    assert "retry" in refused.json()["message"]
    # larger than the bound alone: retrying would never help, so not 503
    assert too_large.status == 400
    assert too_large.json()["message"].startswith("labels: more than this server holds")
    assert [line["request_id"] for line in sink.lines()] == ["a"]
    assert (api.counted("written"), api.counted("refused")) == (1, 6)


async def test_a_large_post_is_parsed_off_the_event_loop_and_accepted(sink: Uploads) -> None:
    metrics = ServingMetrics("fraud", "8")
    log = prediction_log(sink, metrics)
    api = await start(log, metrics)
    items = [{"request_id": f"request-{i:06d}", "label": [i, i + 1]} for i in range(MAX_LABELS)]
    body = post(*items)
    assert len(body) > server.INLINE_PARSE_BYTES
    try:
        answer = await api.post(body)
    finally:
        await api.client.close()
    log.close()
    assert answer.json() == {"accepted": MAX_LABELS}
    assert len(sink.files) == 1  # a whole post is one file
    assert len(sink.lines()) == MAX_LABELS


def test_the_labels_counter_adds_up_over_worker_processes(tmp_path: Path) -> None:
    # prometheus-client picks file-backed values at import: each "worker" is an interpreter.
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}

    def worker(code: str) -> str:
        setup = "from mlflow_operator_serve.metrics import ServingMetrics\n"
        setup += "m = ServingMetrics('fraud', '8')\n"
        return subprocess.run(
            [sys.executable, "-c", setup + code], capture_output=True, text=True, check=True,
            env=env,
        ).stdout  # fmt: skip

    worker("m.ground_truth_labels('written', 3)")
    worker("m.ground_truth_labels('written', 2); m.ground_truth_labels('refused', 4)")
    rendered = worker("print(m.render().decode())")
    labels = 'model_name="fraud",model_version="8"'
    assert f'{METRIC}{{{labels},outcome="written"}} 5.0' in rendered
    assert f'{METRIC}{{{labels},outcome="refused"}} 4.0' in rendered
