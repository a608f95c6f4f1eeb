"""Prometheus metrics of the operator, served on the metrics port (`/metrics`).

Per-ModelDeployment series exist from its first reconcile to its deletion. Counters start at 0
for every result at that first reconcile: a counter that appears already at 1 has no increase
that `increase()` could see, so the first failed rollout would never fire an alert.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime

from prometheus_client import REGISTRY, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

RECONCILES = Counter(
    "mlflow_operator_reconciles_total",
    "Reconciles by kind and result.",
    ["kind", "result"],
)
RECONCILE_SECONDS = Histogram(
    "mlflow_operator_reconcile_duration_seconds",
    "Time one reconcile took.",
    ["kind"],
)
KUBE_REQUESTS = Counter(
    "mlflow_operator_kube_requests_total",
    "Requests the operator's reconciles sent to the Kubernetes API (kopf's own watches and "
    "Events not included), by verb (get, list, apply, create, delete, patch_status) and kind.",
    ["verb", "kind"],
)
LEADING = Gauge(
    "mlflow_operator_leading",
    "1 while this replica acts (it holds the leader Lease, or leader election is off); 0 "
    "while it stands by or refuses to act (another install acts in its namespaces).",
)
REGISTRY_REQUESTS = Counter(
    "mlflow_operator_registry_requests_total",
    "HTTP requests sent to MLflow registries.",
    ["endpoint"],
)
REGISTRY_ERRORS = Counter(
    "mlflow_operator_registry_errors_total",
    "Registry sweeps that failed.",
    ["endpoint"],
)
REGISTRY_SWEEP_SECONDS = Histogram(
    "mlflow_operator_registry_sweep_duration_seconds",
    "Time one sweep of a registry took.",
)
RESOLUTION_LAG_SECONDS = Histogram(
    "mlflow_operator_resolution_lag_seconds",
    "From the sweep (or webhook-triggered sweep) that saw a model change to the rollout start.",
    buckets=(0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300),
)
ACTIVATOR_REQUESTS = Counter(
    "mlflow_operator_activator_requests_total",
    "Requests a Service scaled to zero sent to the operator's activator, by result "
    "(forwarded, timeout, overloaded, unknown_host).",
    ["result"],
)
ACTIVATOR_HOLD_SECONDS = Histogram(
    "mlflow_operator_activator_hold_seconds",
    "From a request's arrival at the activator to the pod's answer (a cold start when the "
    "ModelDeployment had no pod).",
    buckets=(0.05, 0.1, 0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600),
)
WEBHOOK_DELIVERIES = Counter(
    "mlflow_operator_webhook_deliveries_total",
    "MLflow webhook deliveries by outcome (accepted, bad_signature, stale, replayed, ...).",
    ["outcome"],
)


@dataclass(slots=True)
class _ModelDeploymentSeries:
    """What one ModelDeployment's series say; None: the series is absent."""

    created: float  # the counters' `_created`: its first reconcile
    succeeded: int = 0
    failed: int = 0
    rollbacks: int = 0
    differs: int = 0
    suspended: int = 0
    target: float | None = None
    serving: float | None = None
    drifting: int | None = None
    quality_degraded: int | None = None
    live_quality: float | None = None


# name, help, the field it reads; the labels are namespace and name
_GAUGES = (
    ("mlflow_operator_serving_differs_from_target",
     "1 while a ModelDeployment serves another version than the registry selects.", "differs"),
    ("mlflow_operator_modeldeployment_suspended",
     "1 while a ModelDeployment has spec.suspend set (it does not follow the registry).",
     "suspended"),
    ("mlflow_operator_modeldeployment_target_version",
     "The model version the registry selects for a ModelDeployment (absent: none yet).", "target"),
    ("mlflow_operator_modeldeployment_serving_version",
     "The model version every ready pod of a ModelDeployment serves (absent: none yet).",
     "serving"),
    ("mlflow_operator_modeldeployment_drifting_features",
     "Features of the serving version's live traffic above serving.monitoring.thresholds.drift "
     "(its status.monitoring.drifting; absent: no threshold, or no score yet).", "drifting"),
    ("mlflow_operator_modeldeployment_quality_degraded",
     "1 while the serving version's live quality from ground truth is worse than its training "
     "metric by more than serving.monitoring.thresholds.quality (condition QualityDegraded "
     "True), 0 while within it; absent: no threshold, or too few labelled rows.",
     "quality_degraded"),
    ("mlflow_operator_modeldeployment_live_quality",
     "The serving version's live quality from ground truth, in the units of its "
     "serving.monitoring.quality.metric (its status.monitoring.quality.value; absent: too few "
     "labelled rows, or quality off).", "live_quality"),
)  # fmt: skip


class ModelDeploymentCollector(Collector):
    """Every ModelDeployment's series, from one small record each, built at scrape time.

    Not a labelled Counter or Gauge per series: prometheus_client keeps a metric object, a value
    and a lock for each child, 4.4 KB for the 7 series of one ModelDeployment (tracemalloc),
    44 MiB for 10,000; a record here takes some 200 bytes. Scrapes run on the metrics server's
    thread, reconciles on the event loop: the records are changed and read under a lock.
    """

    def __init__(self) -> None:
        self._series: dict[tuple[str, str], _ModelDeploymentSeries] = {}
        self._lock = threading.Lock()

    def record(
        self,
        namespace: str,
        name: str,
        *,
        target: str | None,
        serving: str | None,
        suspended: bool,
        succeeded: bool,
        failed: bool,
        rolled_back: bool,
        drifting: int | None,
        quality_degraded: bool | None,
        live_quality: float | None,
    ) -> None:
        with self._lock:
            series = self._series.get((namespace, name))
            if series is None:
                series = self._series[(namespace, name)] = _ModelDeploymentSeries(time.time())
            series.succeeded += succeeded
            series.failed += failed
            series.rollbacks += rolled_back
            series.differs = int(target not in (None, serving))
            series.suspended = int(suspended)
            series.target, series.serving = _number(target), _number(serving)
            series.drifting = drifting
            series.quality_degraded = None if quality_degraded is None else int(quality_degraded)
            series.live_quality = live_quality

    def forget(self, namespace: str, name: str) -> None:
        with self._lock:
            self._series.pop((namespace, name), None)

    def collect(self) -> Iterator[Metric]:
        rollouts = CounterMetricFamily(
            "mlflow_operator_rollouts",
            "Finished rollouts of a ModelDeployment by result (Succeeded, Failed).",
            labels=["namespace", "name", "result"],
        )
        rollbacks = CounterMetricFamily(
            "mlflow_operator_rollbacks",
            "Rollbacks of a ModelDeployment to its last good version after a failed rollout.",
            labels=["namespace", "name"],
        )
        gauges = [
            (GaugeMetricFamily(metric, help_, labels=["namespace", "name"]), field_)
            for metric, help_, field_ in _GAUGES
        ]
        with self._lock:
            for (namespace, name), series in self._series.items():
                labels, created = [namespace, name], series.created
                rollouts.add_metric([*labels, "Succeeded"], series.succeeded, created=created)
                rollouts.add_metric([*labels, "Failed"], series.failed, created=created)
                rollbacks.add_metric(labels, series.rollbacks, created=created)
                for family, field_ in gauges:
                    value = getattr(series, field_)
                    if value is not None:
                        family.add_metric(labels, value)
        yield rollouts
        yield rollbacks
        for family, _ in gauges:
            yield family


MODEL_DEPLOYMENTS = ModelDeploymentCollector()
REGISTRY.register(MODEL_DEPLOYMENTS)


def record_model_deployment(
    namespace: str,
    name: str,
    *,
    target: str | None,
    serving: str | None,
    suspended: bool,
    succeeded: bool,
    failed: bool,
    rolled_back: bool,
    drifting: int | None = None,
    quality_degraded: bool | None = None,
    live_quality: float | None = None,
) -> None:
    """What one reconcile of a ModelDeployment decided, as its series. The rollout counters
    exist at 0 from the first reconcile (see the module docstring)."""
    MODEL_DEPLOYMENTS.record(
        namespace, name, target=target, serving=serving, suspended=suspended,
        succeeded=succeeded, failed=failed, rolled_back=rolled_back, drifting=drifting,
        quality_degraded=quality_degraded, live_quality=live_quality,
    )  # fmt: skip


def forget_model_deployment(namespace: str, name: str) -> None:
    """The ModelDeployment is gone: its series go too (an alert must not outlive it)."""
    MODEL_DEPLOYMENTS.forget(namespace, name)


def _number(version: str | None) -> float | None:
    """Registry versions are positive integers written as strings."""
    return float(version) if version and version.isdigit() else None


# (endpoint URL, whether its last sweep succeeded, when a sweep last succeeded, the
# ModelDeployments following it as namespace/name)
RegistryHealth = tuple[str, bool, datetime | None, tuple[str, ...]]


class RegistryCollector(Collector):
    """The state of each registry the operator reads, asked of the watchers at scrape time.

    A gauge, not the error counter: sweeps of an unreachable registry back off to one per five
    minutes, so a rate of errors drops to zero between them and an alert's `for` timer starts
    over; "the last sweep failed" stays true until one succeeds. Read at scrape time so that a
    registry nobody follows any more leaves no series behind.
    """

    def __init__(self, source: Callable[[], Iterable[RegistryHealth]]) -> None:
        self._source = source

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily(
            "mlflow_operator_registry_up",
            "1 when the last sweep of an MLflow registry succeeded, 0 when it failed.",
            labels=["endpoint"],
        )
        synced = GaugeMetricFamily(
            "mlflow_operator_registry_last_sync_timestamp_seconds",
            "When a sweep of an MLflow registry last succeeded.",
            labels=["endpoint"],
        )
        followers = GaugeMetricFamily(
            "mlflow_operator_modeldeployment_last_registry_sync_timestamp_seconds",
            "When the registry a ModelDeployment follows was last read (every sweep; its "
            "status.lastRegistrySync is written only with other changes).",
            labels=["namespace", "name"],
        )
        for endpoint, ok, last_sync, keys in self._source():
            up.add_metric([endpoint], 1 if ok else 0)
            if last_sync is not None:
                synced.add_metric([endpoint], last_sync.timestamp())
                for key in keys:
                    followers.add_metric(key.split("/", 1), last_sync.timestamp())
        yield up
        yield synced
        yield followers


def watch_registries(source: Callable[[], Iterable[RegistryHealth]]) -> Callable[[], None]:
    """Serve the registry gauges from source; returns what stops serving them."""
    collector = RegistryCollector(source)
    REGISTRY.register(collector)
    return lambda: REGISTRY.unregister(collector)
