"""Sampled prediction logging: a share of answered requests, with their answers, in MLflow.

`--sample-rate` (the ModelDeployment's `serving.monitoring.sampleRate`) picks that share of
the requests answered 200. Each becomes one JSON line,

    {"request_id": ..., "timestamp": "2026-12-03T10:00:00.123456+00:00", "model": "fraud",
     "version": "8", "inputs": {"dataframe_split": {...}}, "predictions": {...}}

and lines are uploaded in batches to the MLflow artifact store, under the run that logged the
version: `predictions/<version>/<UTC date>/<UTC time>-<pid>-<sequence>.jsonl`.

Why files of JSON lines in the run's artifacts:
- not MLflow traces: a trace is one REST write and database rows per request, on a server that
  also serves the registry; one file per batch is one upload for up to `MAX_BATCH_RECORDS`
  requests, and `pandas.read_json(path, lines=True)` reads it back;
- not Parquet: the requests' shapes differ (columns, tensors, records) and a line keeps each
  as it came, with no schema to settle first;
- in the run, not next to the model: what is in the model's directory every pod downloads.

Callers never wait for it: the request path draws a random number and, for a sampled request,
appends the raw bodies to a list under a lock. Parsing, dropping excluded columns, JSON and the
upload happen on a writer thread. At most `MAX_PENDING_BYTES` of bodies wait; samples beyond
that are dropped and counted (`mlflow_serving_prediction_samples_total{outcome="dropped"}`),
as are batches whose upload failed (`outcome="failed"`); a failed upload is not retried, so
memory stays bounded while MLflow is down.

Only the request's body is kept, never its headers (credentials travel there). Columns named in
`--sample-exclude` (secrets, personal data) are removed from the inputs before anything is
written; a request whose columns have no names (a bare tensor) is kept whole.

Ground truth comes later, from `POST /labels` (labels.py checks the body): `labels(...)` queues
the labels on the same writer, under the same memory bound, and they are written to
`labels/<version>/<UTC date>/<UTC time>-<pid>-<sequence>.jsonl` in the same run, one line each,

    {"request_id": ..., "timestamp": <received>, "model": "fraud", "version": "8", "label": 1}

to be joined with the samples by `request_id`. Labels that do not fit are refused as a whole
(the caller is answered 503 and may retry), not dropped after they were accepted.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
import random
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Literal, Protocol

from mlflow_operator_serve.background import PerProcessThread

if TYPE_CHECKING:  # labels.py imports this module at run time
    from mlflow_operator_serve.labels import Label

_logger = logging.getLogger(__name__)

# Bodies of sampled requests, and labels (their JSON), waiting for the writer, per worker
# process.
MAX_PENDING_BYTES: Final = 32 * 1024 * 1024
# Lines in one uploaded file, and how long a sample may wait for its file.
MAX_BATCH_RECORDS: Final = 1000
# Lines in one file of labels: a label line is some 100 bytes, a sample's kilobytes, so a
# whole post (labels.MAX_LABELS) is one upload.
MAX_LABEL_BATCH: Final = 10_000
FLUSH_SECONDS: Final = 30.0
# On shutdown, how long the last batch may take to upload.
CLOSE_GRACE_SECONDS: Final = 10.0
# Characters of a caller's X-Request-ID kept.
MAX_REQUEST_ID: Final = 200
# At most one warning per this many seconds about failed uploads.
WARN_INTERVAL_SECONDS: Final = 60.0

SampleOutcome = Literal["written", "dropped", "failed", "unreadable"]
LabelOutcome = Literal["written", "failed", "refused"]
# What became of a post of labels: queued, no room now (retry), larger than the bound (split).
Queued = Literal["queued", "full", "too large"]


class SampleCounter(Protocol):
    """Counts samples and labels by outcome (metrics.ServingMetrics)."""

    def prediction_samples(self, outcome: SampleOutcome, count: int) -> None: ...

    def ground_truth_labels(self, outcome: LabelOutcome, count: int) -> None: ...


class Sink(Protocol):
    """Where a batch file goes: `upload(path, artifact_dir)`."""

    def upload(self, path: Path, artifact_dir: str) -> None: ...


@dataclass(frozen=True)
class Sample:
    """One sampled request as the request path left it: raw, unparsed."""

    request_id: str
    timestamp: float
    body: bytes
    content_type: str | None
    answer: bytes


def exclude_columns(payload: Any, excluded: frozenset[str]) -> Any:
    """The request's JSON payload without the excluded columns, in whichever shape it came."""
    if not excluded or not isinstance(payload, dict):
        return payload
    out: dict[str, Any] = {}
    for key, value in payload.items():
        if key == "dataframe_split" and isinstance(value, dict):
            out[key] = _split_without(value, excluded)
        elif key in ("dataframe_records", "instances", "inputs", "params"):
            out[key] = _named_without(value, excluded)
        else:
            out[key] = value
    return out


def _split_without(split: dict[str, Any], excluded: frozenset[str]) -> dict[str, Any]:
    columns = split.get("columns")
    if not isinstance(columns, list):
        return split
    keep = [i for i, name in enumerate(columns) if name not in excluded]
    rows = split.get("data")
    kept_rows = (
        [[row[i] for i in keep if i < len(row)] if isinstance(row, list) else row for row in rows]
        if isinstance(rows, list)
        else rows
    )
    return {**split, "columns": [columns[i] for i in keep], "data": kept_rows}


def _named_without(value: Any, excluded: frozenset[str]) -> Any:
    if isinstance(value, dict):
        return {k: v for k, v in value.items() if k not in excluded}
    if isinstance(value, list):
        return [_named_without(item, excluded) for item in value]
    return value


def read_inputs(body: bytes, content_type: str | None, excluded: frozenset[str]) -> Any:
    """The inputs of a request as a JSON value; CSV becomes the `dataframe_split` shape."""
    if _media_type(content_type) == "text/csv":
        rows = list(csv.reader(io.StringIO(body.decode("utf-8"))))
        split = {"columns": rows[0] if rows else [], "data": rows[1:]}
        return {"dataframe_split": _split_without(split, excluded)}
    return exclude_columns(json.loads(body), excluded)


def sample_line(sample: Sample, model: str, version: str, excluded: frozenset[str]) -> str:
    """One JSON line; ValueError (json, unicode, csv) when a body that must be parsed does not.

    Bodies are parsed only where something has to be taken out or converted (excluded
    columns, CSV): a JSON body the server answered 200 has been parsed by it already, and is
    put in the line as it came: parsing and serializing every sample again takes the GIL and
    CPU from the request path at high rates (docs/monitoring.md has the numbers)."""
    head = json.dumps(
        {
            "request_id": sample.request_id,
            "timestamp": datetime.fromtimestamp(sample.timestamp, UTC).isoformat(),
            "model": model,
            "version": version,
        },
        separators=(",", ":"),
    )
    inputs = None
    if not excluded and _media_type(sample.content_type) == "application/json":
        inputs = _as_one_line(sample.body)
    if inputs is None:
        parsed = read_inputs(sample.body, sample.content_type, excluded)
        inputs = json.dumps(parsed, separators=(",", ":"), allow_nan=True)
    # the server's own answer: JSON it wrote
    predictions = _as_one_line(sample.answer)
    if predictions is None:
        predictions = json.dumps(json.loads(sample.answer), separators=(",", ":"))
    return f'{head[:-1]},"inputs":{inputs},"predictions":{predictions}}}'


def _media_type(content_type: str | None) -> str:
    return (content_type or "").split(";")[0].strip().lower()


def _as_one_line(document: bytes) -> str | None:
    """A JSON document known to be valid, on one line without parsing it: in valid JSON a raw
    line break can only be whitespace between tokens (inside a string it must be escaped)."""
    try:
        text = document.decode("utf-8")
    except UnicodeDecodeError:
        return None  # json.loads also takes UTF-16 and UTF-32: the parsing path handles those
    return text.replace("\r", " ").replace("\n", " ")


def label_line(received: float, label: Label, model: str, version: str) -> str:
    """One JSON line of a label; its value was serialized when the post was checked."""
    head = json.dumps(
        {
            "request_id": label.request_id,
            "timestamp": datetime.fromtimestamp(received, UTC).isoformat(),
            "model": model,
            "version": version,
        },
        separators=(",", ":"),
    )
    return f'{head[:-1]},"label":{label.json}}}'


class PredictionLog:
    """Samples answered requests, takes labels for them, and uploads both in batches from a
    thread of its own."""

    def __init__(
        self,
        *,
        model: str,
        version: str,
        sample_rate: float,
        excluded: Iterable[str],
        sink: Sink,
        counter: SampleCounter,
        rng: Callable[[], float] = random.random,
        flush_seconds: float = FLUSH_SECONDS,
        max_pending_bytes: int = MAX_PENDING_BYTES,
    ) -> None:
        self.model, self.version = model, version
        self.sample_rate = sample_rate
        self.excluded = frozenset(excluded)
        self._sink, self._counter, self._rng = sink, counter, rng
        self._flush_seconds = flush_seconds
        self._max_pending_bytes = max_pending_bytes
        self._pending: list[Sample] = []
        # (time received, label): one bound for both lists, the memory they hold together
        self._pending_labels: list[tuple[float, Label]] = []
        self._pending_bytes = 0
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._closing = False
        self._thread = PerProcessThread(self._write_loop, "prediction-log")
        self._sequence = 0
        self._last_warning = 0.0

    def offer(
        self, body: bytes, content_type: str | None, status: int, answer: bytes,
        request_id: str | None = None,
    ) -> None:  # fmt: skip
        """Called on the request path after the answer is computed: never raises, never waits
        for I/O."""
        if status != 200 or self._rng() >= self.sample_rate:
            return
        size = len(body) + len(answer)
        # a caller's id is kept (so it can find its request), within reason
        given = request_id[:MAX_REQUEST_ID] if request_id else None
        sample = Sample(given or uuid.uuid4().hex, time.time(), body, content_type, answer)
        full = False
        with self._lock:
            if self._closing or self._pending_bytes + size > self._max_pending_bytes:
                dropped = True
            else:
                dropped = False
                self._pending.append(sample)
                self._pending_bytes += size
                full = len(self._pending) >= MAX_BATCH_RECORDS
        if dropped:
            self._counter.prediction_samples("dropped", 1)
            return
        self._thread.ensure_started()
        if full:
            self._wake.set()

    def labels(self, labels: list[Label]) -> Queued:
        """Queue labels for the writer, all or none (so that a refused post can be retried
        whole); called on the request path: never waits for I/O."""
        received = time.time()
        size = sum(label.size for label in labels)
        if size > self._max_pending_bytes:
            self._counter.ground_truth_labels("refused", len(labels))
            return "too large"
        wake = False
        with self._lock:
            full = self._closing or self._pending_bytes + size > self._max_pending_bytes
            if not full:
                self._pending_labels.extend((received, label) for label in labels)
                self._pending_bytes += size
                wake = len(self._pending_labels) >= MAX_LABEL_BATCH
        if full:
            self._counter.ground_truth_labels("refused", len(labels))
            return "full"
        self._thread.ensure_started()
        if wake:
            self._wake.set()
        return "queued"

    def close(self, grace_seconds: float = CLOSE_GRACE_SECONDS) -> None:
        """Upload what is pending (up to `grace_seconds`), then stop the writer."""
        with self._lock:
            self._closing = True
        self._wake.set()
        self._thread.join(grace_seconds)

    def _take(self) -> list[Sample]:
        with self._lock:
            batch = self._pending[:MAX_BATCH_RECORDS]
            del self._pending[:MAX_BATCH_RECORDS]
            self._pending_bytes -= sum(len(s.body) + len(s.answer) for s in batch)
            return batch

    def _take_labels(self) -> list[tuple[float, Label]]:
        with self._lock:
            batch = self._pending_labels[:MAX_LABEL_BATCH]
            del self._pending_labels[:MAX_LABEL_BATCH]
            self._pending_bytes -= sum(label.size for _, label in batch)
            return batch

    def _write_loop(self) -> None:
        while True:
            self._wake.wait(self._flush_seconds)
            self._wake.clear()
            while batch := self._take():
                self._write(batch)
            while labels := self._take_labels():
                self._write_labels(labels)
            with self._lock:
                if self._closing and not self._pending and not self._pending_labels:
                    return

    def _write(self, batch: list[Sample]) -> None:
        lines: list[str] = []
        for sample in batch:
            try:
                lines.append(sample_line(sample, self.model, self.version, self.excluded))
            except (ValueError, UnicodeDecodeError, csv.Error):
                self._counter.prediction_samples("unreadable", 1)
        if not lines:
            return
        if self._upload(lines, "predictions", batch[0].timestamp):
            self._counter.prediction_samples("written", len(lines))
        else:
            self._counter.prediction_samples("failed", len(lines))

    def _write_labels(self, batch: list[tuple[float, Label]]) -> None:
        lines = [label_line(received, label, self.model, self.version) for received, label in batch]
        if self._upload(lines, "labels", batch[0][0]):
            self._counter.ground_truth_labels("written", len(lines))
        else:
            self._counter.ground_truth_labels("failed", len(lines))

    def _upload(
        self, lines: list[str], kind: Literal["predictions", "labels"], first: float
    ) -> bool:
        """One file of lines under `<kind>/<version>/<UTC date of the first>/`; False when the
        store failed (warned at most once a minute: MLflow down fails every upload)."""
        self._sequence += 1
        when = datetime.fromtimestamp(first, UTC)
        name = f"{when:%H%M%S}-{os.getpid()}-{self._sequence}.jsonl"
        artifact_dir = f"{kind}/{self.version}/{when:%Y-%m-%d}"
        try:
            with tempfile.TemporaryDirectory(prefix=f"mlflow-{kind}-") as work:
                path = Path(work) / name
                path.write_text("\n".join(lines) + "\n")
                self._sink.upload(path, artifact_dir)
        except Exception:  # any failure of the store: count, warn, go on
            now = time.monotonic()
            if now - self._last_warning >= WARN_INTERVAL_SECONDS:
                self._last_warning = now
                _logger.warning(
                    "could not upload %d lines to %s (dropped; counted in %s)",
                    len(lines), artifact_dir, _COUNTED_IN[kind], exc_info=True,
                )  # fmt: skip
            return False
        return True


_COUNTED_IN: Final = {
    "predictions": "mlflow_serving_prediction_samples_total",
    "labels": "mlflow_serving_labels_total",
}
