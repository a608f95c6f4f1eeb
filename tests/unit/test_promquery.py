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
    mirrored_query,
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


def test_the_copies_to_a_shadow_are_selected_by_its_version_and_summed_by_outcome() -> None:
    labels = selector(
        namespace="ml", model_name="fraud", version="8", extra={"candidate_version": "9"}
    )
    assert labels == (
        '{namespace="ml", model_name="fraud", model_version="8", candidate_version="9"}'
    )
    assert mirrored_query(labels, 120) == (
        "sum by (outcome) (increase(mlflow_serving_mirrored_requests_total"
        '{namespace="ml", model_name="fraud", model_version="8", candidate_version="9"}[120s]))'
    )
    # an extra label's value is quoted like the others
    assert selector(namespace="ml", model_name="m", version="1", extra={"x": 'a"b'}).endswith(
        'x="a\\"b"}'
    )


class AnsweringPrometheus(PrometheusTraffic):
    """A PrometheusTraffic whose queries are answered from a table (by the metric queried):
    the JSON Prometheus would send, or None (no answer)."""

    def __init__(self, answers: dict[str, Any]) -> None:
        super().__init__("http://prometheus.test:9090")
        self.answers = answers
        self.queries: list[str] = []

    async def _query(self, expr: str) -> Any:
        self.queries.append(expr)
        metric = next(m for m in self.answers if f"({m}{{" in expr)
        return self.answers[metric]


STABLE_ANSWERS = {
    "mlflow_serving_requests_total": answer("status", {"200": "100"}),
    "mlflow_serving_request_duration_seconds_bucket": answer("le", {"+Inf": "100"}),
}


async def test_the_copies_sent_to_a_shadow_become_traffic_mirrored_by_version_and_outcome() -> None:
    prometheus = AnsweringPrometheus({
        **STABLE_ANSWERS,
        "mlflow_serving_mirrored_requests_total": answer(
            "outcome", {"agreed": "36.5", "disagreed": "3.5", "dropped": "2"}
        ),
    })  # fmt: skip
    traffic = await prometheus.traffic(
        namespace="ml", model_name="fraud", version="1", window_seconds=300, mirrored_to="2"
    )
    assert traffic == Traffic(
        requests=100.0, errors=0.0, buckets={math.inf: 100.0},
        mirrored={("2", "agreed"): 36.5, ("2", "disagreed"): 3.5, ("2", "dropped"): 2.0},
    )  # fmt: skip
    assert traffic.disagreement("2") == (3.5, 40.0)
    assert sorted(prometheus.queries) == sorted([
        requests_query(selector(namespace="ml", model_name="fraud", version="1"), 300),
        buckets_query(selector(namespace="ml", model_name="fraud", version="1"), 300),
        mirrored_query(
            selector(namespace="ml", model_name="fraud", version="1",
                     extra={"candidate_version": "2"}),
            300,
        ),
    ])  # fmt: skip


async def test_without_mirrored_to_no_copies_are_asked_for() -> None:
    prometheus = AnsweringPrometheus(dict(STABLE_ANSWERS))
    traffic = await prometheus.traffic(
        namespace="ml", model_name="fraud", version="1", window_seconds=60
    )
    assert traffic == Traffic(100.0, 0.0, {math.inf: 100.0})
    assert traffic.mirrored == {}
    assert len(prometheus.queries) == 2
    assert not any("mirrored" in q for q in prometheus.queries)


async def test_no_copies_in_prometheus_is_nothing_mirrored_and_no_answer_is_no_data() -> None:
    no_series = AnsweringPrometheus({
        **STABLE_ANSWERS, "mlflow_serving_mirrored_requests_total": answer("outcome", {}),
    })  # fmt: skip
    traffic = await no_series.traffic(
        namespace="ml", model_name="fraud", version="1", window_seconds=60, mirrored_to="2"
    )
    assert traffic is not None
    assert traffic.mirrored == {}
    assert traffic.disagreement("2") == (0.0, 0.0)
    # Prometheus did not answer the copies' query: no data at all, the judgement waits
    unanswered = AnsweringPrometheus({
        **STABLE_ANSWERS, "mlflow_serving_mirrored_requests_total": None,
    })  # fmt: skip
    assert (
        await unanswered.traffic(
            namespace="ml", model_name="fraud", version="1", window_seconds=60, mirrored_to="2"
        )
        is None
    )
