"""Prometheus metrics of the operator, served on the metrics port (`/metrics`).

Per-ModelDeployment series exist from its first reconcile to its deletion. Counters start at 0
for every result at that first reconcile: a counter that appears already at 1 has no increase
that `increase()` could see, so the first failed rollout would never fire an alert.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime

from prometheus_client import REGISTRY, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
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
ROLLOUT_RESULTS = ("Succeeded", "Failed")
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
ROLLOUTS = Counter(
    "mlflow_operator_rollouts_total",
    "Finished rollouts of a ModelDeployment by result (Succeeded, Failed).",
    ["namespace", "name", "result"],
)
ROLLBACKS = Counter(
    "mlflow_operator_rollbacks_total",
    "Rollbacks of a ModelDeployment to its last good version after a failed rollout.",
    ["namespace", "name"],
)
VERSION_MISMATCH = Gauge(
    "mlflow_operator_serving_differs_from_target",
    "1 while a ModelDeployment serves another version than the registry selects.",
    ["namespace", "name"],
)
SUSPENDED = Gauge(
    "mlflow_operator_modeldeployment_suspended",
    "1 while a ModelDeployment has spec.suspend set (it does not follow the registry).",
    ["namespace", "name"],
)
TARGET_VERSION = Gauge(
    "mlflow_operator_modeldeployment_target_version",
    "The model version the registry selects for a ModelDeployment (absent: none yet).",
    ["namespace", "name"],
)
SERVING_VERSION = Gauge(
    "mlflow_operator_modeldeployment_serving_version",
    "The model version every ready pod of a ModelDeployment serves (absent: none yet).",
    ["namespace", "name"],
)
DRIFTING_FEATURES = Gauge(
    "mlflow_operator_modeldeployment_drifting_features",
    "Features of the serving version's live traffic above serving.monitoring.thresholds.drift "
    "(its status.monitoring.drifting; absent: no threshold, or no score yet).",
    ["namespace", "name"],
)
QUALITY_DEGRADED = Gauge(
    "mlflow_operator_modeldeployment_quality_degraded",
    "1 while the serving version's live quality from ground truth is worse than its training "
    "metric by more than serving.monitoring.thresholds.quality (condition QualityDegraded "
    "True), 0 while within it; absent: no threshold, or too few labelled rows.",
    ["namespace", "name"],
)
LIVE_QUALITY = Gauge(
    "mlflow_operator_modeldeployment_live_quality",
    "The serving version's live quality from ground truth, in the units of its "
    "serving.monitoring.quality.metric (its status.monitoring.quality.value; absent: too few "
    "labelled rows, or quality off).",
    ["namespace", "name"],
)
_PER_DEPLOYMENT: tuple[Counter | Gauge, ...] = (
    ROLLBACKS,
    VERSION_MISMATCH,
    SUSPENDED,
    TARGET_VERSION,
    SERVING_VERSION,
    DRIFTING_FEATURES,
    QUALITY_DEGRADED,
    LIVE_QUALITY,
)
WEBHOOK_DELIVERIES = Counter(
    "mlflow_operator_webhook_deliveries_total",
    "MLflow webhook deliveries by outcome (accepted, bad_signature, stale, replayed, ...).",
    ["outcome"],
)


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
    """What one reconcile of a ModelDeployment decided, as its series."""
    for result in ROLLOUT_RESULTS:
        ROLLOUTS.labels(namespace, name, result)  # created at 0 (see the module docstring)
    ROLLBACKS.labels(namespace, name)
    if succeeded:
        ROLLOUTS.labels(namespace, name, "Succeeded").inc()
    if failed:
        ROLLOUTS.labels(namespace, name, "Failed").inc()
    if rolled_back:
        ROLLBACKS.labels(namespace, name).inc()
    VERSION_MISMATCH.labels(namespace, name).set(1 if target not in (None, serving) else 0)
    SUSPENDED.labels(namespace, name).set(1 if suspended else 0)
    _set_or_remove(TARGET_VERSION, namespace, name, _number(target))
    _set_or_remove(SERVING_VERSION, namespace, name, _number(serving))
    _set_or_remove(DRIFTING_FEATURES, namespace, name, drifting)
    degraded = None if quality_degraded is None else int(quality_degraded)
    _set_or_remove(QUALITY_DEGRADED, namespace, name, degraded)
    _set_or_remove(LIVE_QUALITY, namespace, name, live_quality)


def forget_model_deployment(namespace: str, name: str) -> None:
    """The ModelDeployment is gone: its series go too (an alert must not outlive it)."""
    for result in ROLLOUT_RESULTS:
        with contextlib.suppress(KeyError):
            ROLLOUTS.remove(namespace, name, result)
    for metric in _PER_DEPLOYMENT:
        with contextlib.suppress(KeyError):  # never reconciled: nothing to remove
            metric.remove(namespace, name)


def _number(version: str | None) -> float | None:
    """Registry versions are positive integers written as strings."""
    return float(version) if version and version.isdigit() else None


def _set_or_remove(gauge: Gauge, namespace: str, name: str, value: float | None) -> None:
    if value is None:
        with contextlib.suppress(KeyError):
            gauge.remove(namespace, name)
    else:
        gauge.labels(namespace, name).set(value)


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
