"""Prometheus metrics of the serving process, on `/metrics`.

With several worker processes each one counts on its own; prometheus-client's multiprocess
mode (PROMETHEUS_MULTIPROC_DIR, set by `server.run` before the workers fork) adds them up so
that any worker answers `/metrics` for all.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client import multiprocess as prometheus_multiprocess
from prometheus_client.exposition import CONTENT_TYPE_LATEST

if TYPE_CHECKING:
    from mlflow_operator_serve.drift_profile import Kind

LATENCY_BUCKETS = (
    0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0,
)  # fmt: skip
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)

CONTENT_TYPE = CONTENT_TYPE_LATEST


def _multiprocess_dir() -> str | None:
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


class ServingMetrics:
    """The metrics of one served model; also the batcher's observer."""

    def __init__(self, model_name: str, model_version: str) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        model_labels = ("model_name", "model_version")
        self.model_name, self.model_version = model_name, model_version
        self._model = {"model_name": model_name, "model_version": model_version}
        self.requests = Counter(
            "mlflow_serving_requests",
            "Scoring requests answered, by HTTP status.",
            (*model_labels, "status"),
            registry=self.registry,
        )
        self.request_seconds = Histogram(
            "mlflow_serving_request_duration_seconds",
            "Time from request received to response ready, by HTTP status.",
            (*model_labels, "status"),
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.batch_rows = Histogram(
            "mlflow_serving_batch_size_rows",
            "Rows per predict call (one call serves one or more merged requests).",
            model_labels,
            buckets=BATCH_BUCKETS,
            registry=self.registry,
        )
        self.batch_requests = Histogram(
            "mlflow_serving_batch_size_requests",
            "Requests merged into one predict call.",
            model_labels,
            buckets=BATCH_BUCKETS,
            registry=self.registry,
        )
        self.predict_seconds = Histogram(
            "mlflow_serving_predict_duration_seconds",
            "Time of one predict call (merged batch or single request).",
            model_labels,
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.queue = Gauge(
            "mlflow_serving_queue_depth",
            "Requests parsed and waiting for the model.",
            model_labels,
            multiprocess_mode="livesum",
            registry=self.registry,
        )
        self.in_flight = Gauge(
            "mlflow_serving_in_flight_requests",
            "Scoring requests received and not answered yet (queued or being predicted): the "
            "concurrency the operator's autoscaler targets.",
            model_labels,
            multiprocess_mode="livesum",
            registry=self.registry,
        )
        self.load_seconds = Gauge(
            "mlflow_serving_model_load_seconds",
            "Seconds from process start to the model loaded and warmed up.",
            model_labels,
            multiprocess_mode="max",
            registry=self.registry,
        )
        self.input_parsing = Counter(
            "mlflow_serving_input_parsing",
            "Scoring requests by how their body became model input: fast (JSON rows straight "
            "into the signature's frame, enforced once per batch by construction, or "
            "inputs/instances straight into the signature's tensor) or mlflow (MLflow's parser "
            "and schema enforcement: the fallback for anything else).",
            (*model_labels, "path"),
            registry=self.registry,
        )
        self.mirrored_requests = Counter(
            "mlflow_serving_mirrored_requests",
            "Copies of scoring requests mirrored to a candidate version (strategy Shadow), by "
            "how the candidate's answer compared with this pod's: agreed, disagreed, "
            "candidate_failed, stable_failed, both_failed, unreachable, or dropped (not sent: "
            "too many copies in flight).",
            (*model_labels, "candidate_version", "outcome"),
            registry=self.registry,
        )
        self.prediction_samples_total = Counter(
            "mlflow_serving_prediction_samples",
            "Sampled requests (--sample-rate) by what became of them: written to MLflow, "
            "dropped (too many waiting for the writer), failed (their upload failed), "
            "unreadable (a body that did not parse).",
            (*model_labels, "outcome"),
            registry=self.registry,
        )
        self.labels_total = Counter(
            "mlflow_serving_labels",
            "Ground-truth labels posted to /labels by what became of them: written to MLflow, "
            "failed (their upload failed), refused (too many waiting for the writer: the post "
            "was answered 503, or 400 when larger than that bound by itself).",
            (*model_labels, "outcome"),
            registry=self.registry,
        )
        self.feature_drift = Gauge(
            "mlflow_serving_feature_drift",
            "Population Stability Index of a feature's live values (the last 1,000 rows or "
            "so) against the version's reference (--drift): under 0.1 stable, 0.1-0.25 a "
            "shift, above 0.25 significant. kind: input (a request column) or output (the "
            "model's answer). The largest of the worker processes'.",
            (*model_labels, "kind", "feature"),
            multiprocess_mode="livemax",
            registry=self.registry,
        )
        self.drift_reference_rows = Gauge(
            "mlflow_serving_drift_reference_rows",
            "Rows the drift reference was made of, by source: dataset (logged with the "
            "version) or live (the first rows served, by this pod or an earlier one).",
            (*model_labels, "source"),
            multiprocess_mode="livemax",
            registry=self.registry,
        )
        self.drift_window_rows = Gauge(
            "mlflow_serving_drift_window_rows",
            "Live rows the drift scores cover now (summed over worker processes).",
            model_labels,
            multiprocess_mode="livesum",
            registry=self.registry,
        )
        self.drift_rows_total = Counter(
            "mlflow_serving_drift_rows",
            "Rows handed to drift scoring, by outcome: observed (binned), dropped (too many "
            "waiting), skipped (not tabular: no columns to score), failed (could not be "
            "binned).",
            (*model_labels, "outcome"),
            registry=self.registry,
        )
        # A series from the start: requests that find the model idle skip the queue, so without
        # this a quiet pod has no queue_depth at all and a dashboard shows "no data", not 0.
        self.queue.labels(**self._model).set(0)
        self.in_flight.labels(**self._model).set(0)
        for path in ("fast", "mlflow"):
            self.input_parsing.labels(**self._model, path=path)

    def request_started(self) -> None:
        self.in_flight.labels(**self._model).inc()

    def request_done(self, status: int, seconds: float) -> None:
        self.in_flight.labels(**self._model).dec()
        labels = {**self._model, "status": str(status)}
        self.requests.labels(**labels).inc()
        self.request_seconds.labels(**labels).observe(seconds)

    def input_parsed(self, fast: bool) -> None:
        self.input_parsing.labels(**self._model, path="fast" if fast else "mlflow").inc()

    def batch_done(self, requests: int, rows: int, seconds: float) -> None:
        self.batch_requests.labels(**self._model).observe(requests)
        self.batch_rows.labels(**self._model).observe(rows)
        self.predict_seconds.labels(**self._model).observe(seconds)

    def queue_depth(self, depth: int) -> None:
        self.queue.labels(**self._model).set(depth)

    def model_loaded(self, seconds: float) -> None:
        self.load_seconds.labels(**self._model).set(seconds)

    def mirrored(self, candidate_version: str, outcome: str) -> None:
        self.mirrored_requests.labels(
            **self._model, candidate_version=candidate_version, outcome=outcome
        ).inc()

    def prediction_samples(self, outcome: str, count: int) -> None:
        self.prediction_samples_total.labels(**self._model, outcome=outcome).inc(count)

    def ground_truth_labels(self, outcome: str, count: int) -> None:
        self.labels_total.labels(**self._model, outcome=outcome).inc(count)

    def drift_rows(self, outcome: str, count: int) -> None:
        self.drift_rows_total.labels(**self._model, outcome=outcome).inc(count)

    def drift_reference(self, source: str, rows: int) -> None:
        self.drift_reference_rows.labels(**self._model, source=source).set(rows)

    def drift_window(self, rows: int) -> None:
        self.drift_window_rows.labels(**self._model).set(rows)

    def drift_scores(self, scores: dict[tuple[Kind, str], float]) -> None:
        for (kind, feature), score in scores.items():
            self.feature_drift.labels(**self._model, kind=kind, feature=feature).set(score)

    def render(self) -> bytes:
        """The text exposition format, of all workers when there are several."""
        if _multiprocess_dir():
            registry = CollectorRegistry()
            prometheus_multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
            return generate_latest(registry)
        return generate_latest(self.registry)
