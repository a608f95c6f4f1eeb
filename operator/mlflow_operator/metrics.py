"""Prometheus metrics of the operator, served on the metrics port (`/metrics`)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

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
ROLLOUTS = Counter(
    "mlflow_operator_rollouts_total",
    "Finished rollouts by result (Succeeded, Failed, RolledBack).",
    ["result"],
)
VERSION_MISMATCH = Gauge(
    "mlflow_operator_serving_differs_from_target",
    "1 while a ModelDeployment serves another version than the registry selects.",
    ["namespace", "name"],
)
WEBHOOK_DELIVERIES = Counter(
    "mlflow_operator_webhook_deliveries_total",
    "MLflow webhook deliveries by outcome (accepted, bad_signature, stale, replayed, ...).",
    ["outcome"],
)
