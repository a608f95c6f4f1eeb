"""Canary analysis from Prometheus: the queries built, and its JSON answers read as Traffic.

tests/integration/test_promquery.py runs these queries against a real Prometheus.
"""

from __future__ import annotations

import math
from typing import Any

import pytest

from mlflow_operator.config import OperatorConfig
from mlflow_operator.core.modeldeployment.canary import Traffic
from mlflow_operator.promquery import (
    PrometheusTraffic,
    buckets_query,
    promql_string,
    requests_query,
    selector,
    traffic_from_answers,
    vector,
)


def answer(label: str, values: dict[str, str], result_type: str = "vector") -> dict[str, Any]:
    """An /api/v1/query answer as Prometheus writes it: values are strings."""
    return {
        "status": "success",
        "data": {
            "resultType": result_type,
            "result": [
                {"metric": {label: key}, "value": [1767225600.123, value]}
                for key, value in values.items()
            ],
        },
    }


def test_label_values_are_quoted_with_go_escapes() -> None:
    assert promql_string("fraud") == '"fraud"'
    assert promql_string('a "b"') == '"a \\"b\\""'
    assert promql_string("C:\\models") == '"C:\\\\models"'
    assert promql_string("two\nlines") == '"two\\nlines"'
    # the backslash first: an escaped quote must not get its backslash escaped again
    assert promql_string('\\"') == '"\\\\\\""'


def test_the_selector_matches_the_version_exactly_in_its_namespace() -> None:
    assert selector(namespace="ml-prod", model_name="fraud.v2", version="8") == (
        '{namespace="ml-prod", model_name="fraud.v2", model_version="8"}'
    )


def test_the_queries_sum_every_pod_of_the_version_over_the_window() -> None:
    labels = selector(namespace="ml", model_name="fraud", version="8")
    assert requests_query(labels, 300) == (
        "sum by (status) (increase(mlflow_serving_requests_total"
        '{namespace="ml", model_name="fraud", model_version="8"}[300s]))'
    )
    assert buckets_query(labels, 60) == (
        "sum by (le) (increase(mlflow_serving_request_duration_seconds_bucket"
        '{namespace="ml", model_name="fraud", model_version="8"}[60s]))'
    )
    with pytest.raises(ValueError, match="at least 1s"):
        requests_query(labels, 0)


def test_answers_become_traffic_with_every_status_but_2xx_an_error() -> None:
    traffic = traffic_from_answers(
        answer("status", {"200": "90", "201": "2.5", "400": "6", "503": "1.5"}),
        answer("le", {"0.05": "80", "0.1": "95", "+Inf": "100"}),
    )
    assert traffic == Traffic(
        requests=100.0, errors=7.5, buckets={0.05: 80.0, 0.1: 95.0, math.inf: 100.0}
    )
    assert traffic.p99() == math.inf


def test_a_series_without_a_status_is_an_error_as_the_pods_own_metrics_count_it() -> None:
    requests = {
        "status": "success",
        "data": {"resultType": "vector", "result": [{"metric": {}, "value": [0, "4"]}]},
    }
    assert traffic_from_answers(requests, answer("le", {})) == Traffic(4.0, 4.0, {})


def test_no_series_at_all_is_no_data_and_zero_answers_are_not() -> None:
    assert traffic_from_answers(answer("status", {}), answer("le", {})) is None
    assert traffic_from_answers(
        answer("status", {"200": "0"}), answer("le", {"+Inf": "0"})
    ) == Traffic(0.0, 0.0, {math.inf: 0.0})


@pytest.mark.parametrize(
    "unusable",
    [
        {"status": "error", "errorType": "bad_data", "error": "parse error"},
        answer("status", {"200": "1"}, result_type="matrix"),
        answer("status", {"200": "many"}),
        answer("status", {"200": "NaN"}),
        {"status": "success", "data": {"resultType": "vector", "result": [{"metric": {}}]}},
        {"status": "success"},
        ["not", "an", "answer"],
        None,
    ],
)
def test_an_unusable_answer_is_no_data(unusable: Any) -> None:
    assert vector(unusable, "status") is None
    assert traffic_from_answers(unusable, answer("le", {"+Inf": "1"})) is None
    assert traffic_from_answers(answer("status", {"200": "1"}), unusable) is None


def test_a_bucket_bound_that_is_not_a_number_is_no_data() -> None:
    assert traffic_from_answers(answer("status", {"200": "1"}), answer("le", {"x": "1"})) is None


def test_the_source_exists_only_with_a_prometheus_url() -> None:
    assert PrometheusTraffic.from_config(OperatorConfig()) is None
    source = PrometheusTraffic.from_config(
        OperatorConfig(prometheus_url="http://prometheus.monitoring.svc:9090")
    )
    assert isinstance(source, PrometheusTraffic)
