"""The prefetch's decision (core/modeldeployment/prefetch.py): when a rollout waits for the
nodes' caches, and what status says."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from mlflow_operator.core.modeldeployment.observation import DeploymentObservation
from mlflow_operator.core.modeldeployment.prefetch import (
    NodePrefetch,
    equality_selector,
    judge_prefetch,
    prefetch_version,
)

NOW = datetime(2026, 12, 3, 8, 0, tzinfo=UTC)
SERVING_V1 = DeploymentObservation(exists=True, version="1")


def test_only_a_new_version_beside_a_serving_one_is_prefetched() -> None:
    def ask(
        version: str | None, observed: DeploymentObservation = SERVING_V1, **kw: bool
    ) -> str | None:
        flags = {"cache_enabled": True, "cache_configured": True, "held_before": False, **kw}
        return prefetch_version(version, observed, preflight=None, **flags)

    assert ask("2") == "2"
    assert ask(None) is None
    assert ask("1") is None  # what runs already
    assert ask("2", DeploymentObservation()) is None  # a first rollout: nothing serves
    assert ask("2", cache_enabled=False) is None
    assert ask("2", cache_configured=False) is None
    assert ask("2", held_before=True) is None  # a gate holds it: nothing to fetch yet


def test_the_deadline_counts_from_the_first_answer_and_ends_the_wait() -> None:
    running = [NodePrefetch("n1", "Running"), NodePrefetch("n2", "Done", bytes=3 * 1024**3)]
    first = judge_prefetch("2", running, None, NOW, timeout_seconds=60)
    assert first.holds
    assert first.status.started == NOW
    assert first.status.message == "version 2 on 1/2 nodes (3.0 GiB)"

    later = judge_prefetch(
        "2", running, first.status, NOW + timedelta(seconds=61), timeout_seconds=60
    )
    assert not later.holds
    assert later.status.phase == "Incomplete"
    assert later.status.finished == NOW + timedelta(seconds=61)
    assert "not finished within 60s" in later.status.message


def test_no_node_serving_is_done_with_nothing_to_prefetch() -> None:
    verdict = judge_prefetch("2", [], None, NOW, timeout_seconds=60)
    assert verdict.status.phase == "Done"
    assert "nothing to prefetch" in verdict.status.message


def test_a_failed_node_is_named_with_its_reason() -> None:
    nodes = [NodePrefetch("n1", "Unsupported", message="artifacts are not proxied")]
    verdict = judge_prefetch("2", nodes, None, NOW, timeout_seconds=60)
    assert verdict.status.phase == "Incomplete"
    assert "n1: Unsupported (artifacts are not proxied)" in verdict.status.message


@pytest.mark.parametrize(
    ("selector", "labels"),
    [
        ("a=b", {"a": "b"}),
        ("app.kubernetes.io/name=mlflow-model-cache, app.kubernetes.io/instance=x",
         {"app.kubernetes.io/name": "mlflow-model-cache", "app.kubernetes.io/instance": "x"}),
    ],
)  # fmt: skip
def test_the_cache_pod_selector_is_key_value_pairs(selector: str, labels: dict[str, str]) -> None:
    assert equality_selector(selector) == labels


@pytest.mark.parametrize("selector", ["a", "a!=b", "a==b", "a in (b)"])
def test_other_selectors_are_refused(selector: str) -> None:
    with pytest.raises(ValueError, match="only key=value"):
        equality_selector(selector)
