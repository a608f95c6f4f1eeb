"""The serving process's metrics: series that exist before the traffic that moves them."""

from __future__ import annotations

from mlflow_operator_serve.metrics import ServingMetrics


def test_queue_depth_is_zero_before_anything_queues() -> None:
    """Requests that find the model idle never pass the queue; the gauge must read 0 for them
    (the dashboard's Queue depth panel), not be absent."""
    metrics = ServingMetrics("iris", "3")
    metrics.request_done(200, 0.01)
    value = metrics.registry.get_sample_value(
        "mlflow_serving_queue_depth", {"model_name": "iris", "model_version": "3"}
    )
    assert value == 0.0


def test_in_flight_counts_requests_not_answered_yet() -> None:
    """What the operator's autoscaler reads as a pod's concurrency."""
    metrics = ServingMetrics("iris", "3")
    labels = {"model_name": "iris", "model_version": "3"}
    assert metrics.registry.get_sample_value("mlflow_serving_in_flight_requests", labels) == 0.0
    metrics.request_started()
    metrics.request_started()
    metrics.request_done(200, 0.01)
    assert metrics.registry.get_sample_value("mlflow_serving_in_flight_requests", labels) == 1.0
