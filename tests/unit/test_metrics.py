"""The operator's metrics as the alerts and the dashboard read them."""

from __future__ import annotations

import sys
import threading
import uuid
from datetime import UTC, datetime

from prometheus_client import REGISTRY, CollectorRegistry, generate_latest

from mlflow_operator import metrics
from mlflow_operator.registry.client import Credentials
from mlflow_operator.registry.watcher import Follower, RegistryHub

SYNC = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)


def value(metric: str, **labels: str) -> float | None:
    return REGISTRY.get_sample_value(metric, labels)


def record(namespace: str, name: str, **facts: object) -> None:
    defaults: dict[str, object] = {
        "target": "8",
        "serving": "8",
        "suspended": False,
        "succeeded": False,
        "failed": False,
        "rolled_back": False,
    }
    metrics.record_model_deployment(namespace, name, **{**defaults, **facts})  # type: ignore[arg-type]


def fresh() -> tuple[str, str]:
    return f"ns-{uuid.uuid4().hex[:6]}", "fraud"


def test_counters_exist_at_zero_from_the_first_reconcile() -> None:
    """increase() sees the first failure only if the series was there before it, at 0."""
    ns, name = fresh()
    record(ns, name)
    labels = {"namespace": ns, "name": name}
    for result in ("Succeeded", "Failed"):
        assert value("mlflow_operator_rollouts_total", **labels, result=result) == 0
    assert value("mlflow_operator_rollbacks_total", **labels) == 0

    record(ns, name, failed=True, rolled_back=True)
    assert value("mlflow_operator_rollouts_total", **labels, result="Failed") == 1
    assert value("mlflow_operator_rollbacks_total", **labels) == 1
    assert value("mlflow_operator_rollouts_total", **labels, result="Succeeded") == 0


def test_versions_suspension_and_sync_per_deployment() -> None:
    ns, name = fresh()
    labels = {"namespace": ns, "name": name}
    record(ns, name, target="9", serving="8", suspended=True)
    assert value("mlflow_operator_modeldeployment_target_version", **labels) == 9
    assert value("mlflow_operator_modeldeployment_serving_version", **labels) == 8
    assert value("mlflow_operator_serving_differs_from_target", **labels) == 1
    assert value("mlflow_operator_modeldeployment_suspended", **labels) == 1

    record(ns, name, target=None, serving=None)  # nothing resolved yet
    assert value("mlflow_operator_modeldeployment_target_version", **labels) is None
    assert value("mlflow_operator_modeldeployment_serving_version", **labels) is None
    assert value("mlflow_operator_serving_differs_from_target", **labels) == 0


def test_drift_and_quality_series_while_judged_and_gone_when_not() -> None:
    ns, name = fresh()
    labels = {"namespace": ns, "name": name}
    record(ns, name, drifting=2, quality_degraded=True, live_quality=0.81)
    assert value("mlflow_operator_modeldeployment_drifting_features", **labels) == 2
    assert value("mlflow_operator_modeldeployment_quality_degraded", **labels) == 1
    assert value("mlflow_operator_modeldeployment_live_quality", **labels) == 0.81
    record(ns, name, drifting=0, quality_degraded=False, live_quality=0.97)
    assert value("mlflow_operator_modeldeployment_quality_degraded", **labels) == 0
    assert value("mlflow_operator_modeldeployment_live_quality", **labels) == 0.97
    record(ns, name)  # no threshold, too few labels: nothing to alert on
    for metric in ("drifting_features", "quality_degraded", "live_quality"):
        assert value(f"mlflow_operator_modeldeployment_{metric}", **labels) is None


def test_a_deleted_deployment_leaves_no_series() -> None:
    ns, name = fresh()
    record(ns, name, target="9", serving="8", failed=True, drifting=1, quality_degraded=True,
           live_quality=0.5)  # fmt: skip
    metrics.forget_model_deployment(ns, name)
    leftovers = [
        sample
        for family in REGISTRY.collect()
        for sample in family.samples
        if sample.labels.get("namespace") == ns
    ]
    assert leftovers == []
    metrics.forget_model_deployment(ns, name)  # twice, or never reconciled: no error


async def test_registry_gauges_come_from_the_watchers_at_scrape_time() -> None:
    hub = RegistryHub()
    # a port nothing listens on: the watcher's sweeps fail at once, without a network
    url = "http://127.0.0.1:9"
    watcher = hub.follow("ml/fraud", f"{url}|-", url, Credentials(), Follower("fraud", 60.0))
    registry = CollectorRegistry()
    registry.register(metrics.RegistryCollector(hub.health))

    # a watcher that has not swept yet, or whose last sweep failed, is down
    assert registry.get_sample_value("mlflow_operator_registry_up", {"endpoint": url}) == (0)
    assert (
        registry.get_sample_value(
            "mlflow_operator_registry_last_sync_timestamp_seconds",
            {"endpoint": url},
        )
        is None
    )

    hub.unfollow("ml/fraud")  # the hub drops idle watchers; a gone endpoint has no series
    assert registry.get_sample_value("mlflow_operator_registry_up", {"endpoint": url}) is None
    await watcher.stop()


def test_registry_collector_reports_what_the_source_says() -> None:
    registry = CollectorRegistry()
    source = [
        ("http://up:5000", True, SYNC, ("ml/fraud", "ml/churn")),
        ("http://down:5000", False, SYNC, ()),
    ]
    registry.register(metrics.RegistryCollector(lambda: source))
    assert registry.get_sample_value("mlflow_operator_registry_up", {"endpoint": "http://up:5000"})
    assert (
        registry.get_sample_value("mlflow_operator_registry_up", {"endpoint": "http://down:5000"})
        == 0
    )
    assert (
        registry.get_sample_value(
            "mlflow_operator_registry_last_sync_timestamp_seconds", {"endpoint": "http://down:5000"}
        )
        == SYNC.timestamp()
    )
    # each ModelDeployment's sync time is its registry's, at every sweep, with no status write
    for name in ("fraud", "churn"):
        assert (
            registry.get_sample_value(
                "mlflow_operator_modeldeployment_last_registry_sync_timestamp_seconds",
                {"namespace": "ml", "name": name},
            )
            == SYNC.timestamp()
        )


def test_scrapes_on_another_thread_while_reconciles_record_and_forget() -> None:
    """The metrics server scrapes on its own thread; reconciles add and drop series meanwhile."""
    ns = f"ns-{uuid.uuid4().hex[:6]}"
    failures: list[BaseException] = []
    done = threading.Event()

    def scrape() -> None:
        while not done.is_set():
            try:
                generate_latest(REGISTRY)
            except BaseException as error:  # noqa: BLE001  (asserted below)
                failures.append(error)
                return

    scraper = threading.Thread(target=scrape)
    switch = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # the threads take turns often: a race shows in one run
    scraper.start()
    try:
        for index in range(3000):
            record(ns, f"md-{index}", succeeded=index % 2 == 0)
            if index % 3 == 0:
                metrics.forget_model_deployment(ns, f"md-{index // 2}")
    finally:
        done.set()
        scraper.join()
        sys.setswitchinterval(switch)
    assert failures == []
    assert value("mlflow_operator_rollouts_total", namespace=ns, name="md-2999",
                 result="Succeeded") == 0  # fmt: skip
    assert value("mlflow_operator_rollouts_total", namespace=ns, name="md-2998",
                 result="Succeeded") == 1  # fmt: skip
