"""Sampled prediction logging (mlflow_operator_serve.prediction_log): what a sample holds, what
it leaves out, and that the request path never waits or fails for it."""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from mlflow_operator_serve.labels import parse_labels
from mlflow_operator_serve.prediction_log import (
    LabelOutcome,
    PredictionLog,
    SampleOutcome,
    exclude_columns,
    read_inputs,
)

SECRET = frozenset({"ssn", "token"})
JSON = "application/json"
ANSWER = json.dumps({"predictions": [1, 0]}).encode()


class Outcomes:
    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.labels: Counter[str] = Counter()

    def prediction_samples(self, outcome: SampleOutcome, count: int) -> None:
        self.counts[outcome] += count

    def ground_truth_labels(self, outcome: LabelOutcome, count: int) -> None:
        self.labels[outcome] += count


class Uploads:
    """Keeps what would have gone to MLflow: (artifact dir, file name, lines)."""

    def __init__(self, fail: bool = False, hold: threading.Event | None = None) -> None:
        self.files: list[tuple[str, str, list[dict[str, Any]]]] = []
        self.fail, self.hold = fail, hold

    def upload(self, path: Path, artifact_dir: str) -> None:
        if self.hold is not None:
            self.hold.wait(10)
        if self.fail:
            raise ConnectionError("MLflow is down")
        lines = [json.loads(line) for line in path.read_text().splitlines()]
        self.files.append((artifact_dir, path.name, lines))

    def lines(self) -> list[dict[str, Any]]:
        return [line for _, _, lines in self.files for line in lines]


def make_log(
    sink: Uploads,
    outcomes: Outcomes,
    rate: float = 1.0,
    excluded: frozenset[str] = SECRET,
    **kwargs: Any,
) -> PredictionLog:
    return PredictionLog(
        model="fraud", version="8", sample_rate=rate, excluded=excluded, sink=sink,
        counter=outcomes, **kwargs,
    )  # fmt: skip


def split_body(**columns: list[Any]) -> bytes:
    names = list(columns)
    rows = [list(row) for row in zip(*columns.values(), strict=True)]
    return json.dumps({"dataframe_split": {"columns": names, "data": rows}}).encode()


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        (
            {"dataframe_split": {"columns": ["a", "ssn", "b"], "data": [[1, "x", 2], [3, "y", 4]]}},
            {"dataframe_split": {"columns": ["a", "b"], "data": [[1, 2], [3, 4]]}},
        ),
        (
            {"dataframe_records": [{"a": 1, "token": "t"}, {"a": 2}]},
            {"dataframe_records": [{"a": 1}, {"a": 2}]},
        ),
        ({"inputs": {"a": [1, 2], "ssn": ["x", "y"]}}, {"inputs": {"a": [1, 2]}}),
        ({"instances": [{"a": 1, "ssn": "x"}]}, {"instances": [{"a": 1}]}),
        # a bare tensor names no column: kept whole
        ({"inputs": [[1.0, 2.0], [3.0, 4.0]]}, {"inputs": [[1.0, 2.0], [3.0, 4.0]]}),
        (
            {"inputs": {"a": [1]}, "params": {"token": "t", "k": 3}},
            {"inputs": {"a": [1]}, "params": {"k": 3}},
        ),
    ],
)
def test_excluded_columns_leave_every_request_shape(payload: Any, expected: Any) -> None:
    assert exclude_columns(payload, SECRET) == expected


def test_csv_inputs_are_kept_in_the_split_shape_without_excluded_columns() -> None:
    body = b"a,ssn,b\n1,x,2\n3,y,4\n"
    assert read_inputs(body, "text/csv; charset=utf-8", SECRET) == {
        "dataframe_split": {"columns": ["a", "b"], "data": [["1", "2"], ["3", "4"]]}
    }


def test_a_sampled_request_is_written_with_its_answer_id_and_time_under_the_version() -> None:
    sink, outcomes = Uploads(), Outcomes()
    log = make_log(sink, outcomes)
    before = time.time()
    log.offer(split_body(a=[1, 3], ssn=["x", "y"]), JSON, 200, ANSWER, "req-1")
    log.offer(split_body(a=[5], ssn=["z"]), JSON, 200, ANSWER)
    log.close()

    (directory, name, lines), = sink.files  # fmt: skip
    assert directory.startswith("predictions/8/")
    assert name.endswith(".jsonl")
    first, second = lines
    assert first["request_id"] == "req-1"
    assert len(second["request_id"]) == 32
    assert (first["model"], first["version"]) == ("fraud", "8")
    assert first["inputs"] == {"dataframe_split": {"columns": ["a"], "data": [[1], [3]]}}
    assert first["predictions"] == {"predictions": [1, 0]}
    stamped = first["timestamp"]
    assert stamped.endswith("+00:00")
    from datetime import datetime

    assert before - 1 <= datetime.fromisoformat(stamped).timestamp() <= time.time()
    assert "ssn" not in json.dumps(lines)
    assert outcomes.counts == {"written": 2}


def test_with_nothing_excluded_a_json_body_is_written_as_it_came_on_one_line() -> None:
    sink, outcomes = Uploads(), Outcomes()
    log = make_log(sink, outcomes, excluded=frozenset())
    payload = {"dataframe_split": {"columns": ["a", "note"], "data": [[1.5, "two\nlines"]]}}
    # pretty-printed: line breaks between tokens, and an escaped one inside a string
    log.offer(json.dumps(payload, indent=2).encode(), JSON, 200, b'{\n"predictions": [1]}\n')
    log.close()
    (_, _, lines), = sink.files  # fmt: skip
    (line,) = lines
    assert line["inputs"] == payload
    assert line["predictions"] == {"predictions": [1]}
    assert outcomes.counts == {"written": 1}


def test_only_answered_requests_and_only_the_sampled_share_are_kept() -> None:
    sink, outcomes = Uploads(), Outcomes()
    draws = iter([0.05, 0.5, 0.09, 0.95])
    log = make_log(sink, outcomes, rate=0.1, rng=lambda: next(draws))
    for i in range(4):
        log.offer(split_body(a=[i]), JSON, 200, ANSWER, f"r{i}")
    log.offer(split_body(a=[9]), JSON, 400, b'{"error_code": "BAD_REQUEST"}', "refused")
    log.close()
    assert [line["request_id"] for line in sink.lines()] == ["r0", "r2"]


def test_a_store_that_is_down_costs_callers_nothing_and_the_samples_are_counted() -> None:
    sink, outcomes = Uploads(fail=True), Outcomes()
    body = split_body(a=[1])
    # room for two samples: once their upload failed, two more fit again
    log = make_log(
        sink, outcomes, flush_seconds=0.1, max_pending_bytes=2 * (len(body) + len(ANSWER))
    )
    log.offer(body, JSON, 200, ANSWER)
    log.offer(body, JSON, 200, ANSWER)
    deadline = time.monotonic() + 5
    while outcomes.counts["failed"] < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert outcomes.counts == {"failed": 2}
    sink.fail = False
    log.offer(body, JSON, 200, ANSWER)
    log.offer(body, JSON, 200, ANSWER)
    log.close()
    assert outcomes.counts == {"failed": 2, "written": 2}


def test_samples_beyond_the_memory_bound_are_dropped_not_queued() -> None:
    hold = threading.Event()
    sink, outcomes = Uploads(hold=hold), Outcomes()
    body = split_body(a=list(range(100)))
    log = make_log(sink, outcomes, max_pending_bytes=3 * (len(body) + len(ANSWER)))
    started = time.perf_counter()
    for _ in range(10):
        log.offer(body, JSON, 200, ANSWER)
    offered = time.perf_counter() - started
    assert outcomes.counts["dropped"] == 7
    assert offered < 1.0  # the writer never ran: nothing on the request path waited for it
    hold.set()
    log.close()
    assert outcomes.counts == {"dropped": 7, "written": 3}


def test_a_body_that_does_not_parse_is_counted_and_the_rest_of_its_batch_written() -> None:
    sink, outcomes = Uploads(), Outcomes()
    log = make_log(sink, outcomes)
    log.offer(b"{not json", JSON, 200, ANSWER)
    log.offer(split_body(a=[1]), JSON, 200, ANSWER)
    log.close()
    assert outcomes.counts == {"unreadable": 1, "written": 1}
    assert len(sink.lines()) == 1


def test_samples_wait_at_most_the_flush_interval() -> None:
    sink, outcomes = Uploads(), Outcomes()
    log = make_log(sink, outcomes, flush_seconds=0.2)
    log.offer(split_body(a=[1]), JSON, 200, ANSWER)
    deadline = time.monotonic() + 5
    while not sink.files and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(sink.lines()) == 1
    log.close()


# --- ground-truth labels ------------------------------------------------------------------------


def labels_body(*pairs: tuple[str, Any]) -> bytes:
    return json.dumps({"labels": [{"request_id": r, "label": v} for r, v in pairs]}).encode()


def test_labels_are_written_next_to_the_samples_with_their_request_id_and_time() -> None:
    sink, outcomes = Uploads(), Outcomes()
    log = make_log(sink, outcomes)
    log.offer(split_body(a=[1, 3]), JSON, 200, ANSWER, "req-1")
    before = time.time()
    assert log.labels(parse_labels(labels_body(("req-1", [1, 0]), ("req-2", "fraud")))) == "queued"
    assert log.labels(parse_labels(labels_body(("req-3", 0.25)))) == "queued"
    log.close()

    (samples,), (labels,) = (
        [f for f in sink.files if f[0].startswith(kind)] for kind in ("predictions/", "labels/")
    )
    # same version, same UTC date: the day's labels sit next to the day's samples
    assert labels[0] == samples[0].replace("predictions/", "labels/")
    assert labels[0].startswith("labels/8/")
    assert labels[1].endswith(".jsonl")
    lines = labels[2]
    assert [(line["request_id"], line["label"]) for line in lines] == [
        ("req-1", [1, 0]),
        ("req-2", "fraud"),
        ("req-3", 0.25),
    ]
    from datetime import datetime

    for line in lines:
        assert set(line) == {"request_id", "timestamp", "model", "version", "label"}
        assert (line["model"], line["version"]) == ("fraud", "8")
        assert line["timestamp"].endswith("+00:00")
        assert before - 1 <= datetime.fromisoformat(line["timestamp"]).timestamp() <= time.time()
    assert outcomes.labels == {"written": 3}
    assert outcomes.counts == {"written": 1}


def test_labels_beyond_the_memory_bound_are_refused_whole_and_later_ones_fit_again() -> None:
    hold = threading.Event()
    sink, outcomes = Uploads(hold=hold), Outcomes()
    three = parse_labels(labels_body(("a", 1), ("b", 2), ("c", 3)))
    log = make_log(sink, outcomes, max_pending_bytes=sum(label.size for label in three) + 2)
    assert log.labels(three) == "queued"
    # one more would pass the bound: the whole post is refused, none of it half-queued
    assert log.labels(parse_labels(labels_body(("d", 4), ("e", 5)))) == "full"
    assert outcomes.labels == {"refused": 2}
    # larger than the bound by itself: never fits, whatever is waiting
    big = parse_labels(labels_body(*[(f"r{i}", i) for i in range(10)]))
    assert log.labels(big) == "too large"
    hold.set()
    log.close()
    assert [line["request_id"] for line in sink.lines()] == ["a", "b", "c"]
    assert outcomes.labels == {"refused": 12, "written": 3}


def test_labels_and_samples_share_the_memory_bound() -> None:
    hold = threading.Event()
    sink, outcomes = Uploads(hold=hold), Outcomes()
    body = split_body(a=[1])
    log = make_log(sink, outcomes, max_pending_bytes=len(body) + len(ANSWER) + 5)
    log.offer(body, JSON, 200, ANSWER, "req-1")
    assert log.labels(parse_labels(labels_body(("req-1", 1)))) == "full"
    hold.set()
    log.close()
    assert outcomes.counts == {"written": 1}
    assert outcomes.labels == {"refused": 1}


def test_labels_of_a_store_that_is_down_are_counted_failed() -> None:
    sink, outcomes = Uploads(fail=True), Outcomes()
    log = make_log(sink, outcomes)
    assert log.labels(parse_labels(labels_body(("a", True), ("b", False)))) == "queued"
    log.close()
    assert outcomes.labels == {"failed": 2}


def test_labels_wait_at_most_the_flush_interval() -> None:
    sink, outcomes = Uploads(), Outcomes()
    log = make_log(sink, outcomes, flush_seconds=0.2)
    log.labels(parse_labels(labels_body(("a", 1))))
    deadline = time.monotonic() + 5
    while not sink.files and time.monotonic() < deadline:
        time.sleep(0.05)
    assert [line["label"] for line in sink.lines()] == [1]
    log.close()


def test_labels_posted_after_close_are_refused() -> None:
    sink, outcomes = Uploads(), Outcomes()
    log = make_log(sink, outcomes)
    log.close()
    assert log.labels(parse_labels(labels_body(("a", 1)))) == "full"
    assert outcomes.labels == {"refused": 1}
    assert sink.files == []
