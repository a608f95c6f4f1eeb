"""The invariant checks themselves: each one fires on a history that breaks it, and only then.

They take the objects as an API server holds them, so that an e2e test can feed them what
kubectl returns (core/modeldeployment/invariants.py).
"""

from __future__ import annotations

from typing import Any

from mlflow_operator.core.modeldeployment.invariants import Auditor, Snapshot, disagreements


def md(status: dict[str, Any] | None = None, **rollout: Any) -> dict[str, Any]:
    return {
        "spec": {"model": {"name": "fraud"}, "rollout": {"progressDeadlineSeconds": 60, **rollout}},
        "status": status or {},
    }


def dep(
    version: str,
    *,
    complete: bool = True,
    failed: str = "",
    good: str = "",
    replicas: int = 1,
) -> dict[str, Any]:
    ready = replicas if complete else 0
    return {
        "metadata": {
            "generation": 2,
            "annotations": {
                "mlflowops.dev/failed-versions": failed,
                "mlflowops.dev/last-good-version": good,
            },
        },
        "spec": {
            "replicas": replicas,
            "template": {"metadata": {"labels": {"mlflowops.dev/model-version": version}}},
        },
        "status": {
            "observedGeneration": 2,
            "replicas": replicas,
            "updatedReplicas": replicas,
            "readyReplicas": ready,
            "availableReplicas": ready,
        },
    }


def serving(version: str, failed: list[str] | None = None) -> dict[str, Any]:
    return {
        "servingVersion": version,
        "failedVersions": failed or [],
        "modelUri": f"models:/fraud/{version}",
        "replicas": 1,
        "readyReplicas": 1,
        "conditions": [{"type": "Ready", "status": "True", "reason": "Serving"}],
    }


def test_a_good_rollback_history_keeps_every_guarantee() -> None:
    auditor = Auditor()
    auditor.observe(Snapshot(md(serving("1")), dep("1", good="1"), "1"), quiet=True)
    auditor.observe(Snapshot(md(serving("1")), dep("1", good="1"), "2"))
    auditor.observe(Snapshot(md(serving("1")), dep("2", complete=False, good="1"), "2"))
    rolled_back = md(serving("1", failed=["2"]))
    auditor.observe(Snapshot(rolled_back, dep("1", failed="2", good="1"), "2"), quiet=True)
    auditor.observe(Snapshot(rolled_back, dep("1", failed="2", good="1"), "2"), quiet=True)
    auditor.observe(Snapshot(md(serving("1")), dep("1", good="1"), "3"))
    auditor.observe(Snapshot(md(serving("1")), dep("3", complete=False, good="1"), "3"))
    assert auditor.violations == []


def test_i1_a_failed_version_deployed_again_while_selected() -> None:
    auditor = Auditor()
    status = serving("1", failed=["2"])
    auditor.observe(Snapshot(md(status), dep("1", failed="2", good="1"), "2"))
    auditor.observe(Snapshot(md({}), dep("1", failed="2", good="1"), "2"), restored=True)
    found = auditor.observe(Snapshot(md({}), dep("2", complete=False), "2"))
    assert found == ["I1: version 2 was deployed again while failed and still selected"]


def test_i1_the_registry_moving_away_and_back_allows_a_retry() -> None:
    auditor = Auditor()
    auditor.observe(Snapshot(md(serving("1", ["2"])), dep("1", failed="2", good="1"), "2"))
    auditor.observe(Snapshot(md(serving("1")), dep("1", good="1"), "3"))
    auditor.observe(Snapshot(md(serving("1")), dep("1", good="1"), "2"))
    assert auditor.observe(Snapshot(md(serving("1")), dep("2", complete=False), "2")) == []


def test_i2_a_failed_rollout_that_does_not_go_back() -> None:
    auditor = Auditor()
    status = serving("1", failed=["2"])
    found = auditor.observe(
        Snapshot(md(status), dep("2", complete=False, failed="2", good="1"), "2"), quiet=True
    )
    assert any(f.startswith("I2: version 2 failed with autoRollback on") for f in found)


def test_i3_autoRollback_off_never_moves_off_the_failed_version() -> None:  # noqa: N802
    auditor = Auditor()
    status = serving("1", failed=["2"])
    off = {"autoRollback": False}
    auditor.observe(Snapshot(md(status, **off), dep("2", complete=False, failed="2"), "2"))
    found = auditor.observe(Snapshot(md(status, **off), dep("1", failed="2", good="1"), "2"))
    assert found == ["I3: autoRollback is off, but the template moved from failed version 2 to 1"]


def test_i4_declared_failed_before_its_deadline() -> None:
    history = [
        {"version": "3", "started": "2026-01-01T10:00:00Z", "finished": "2026-01-01T10:00:02Z",
         "result": "RolledBack"},
        {"version": "2", "started": "2026-01-01T09:00:00Z", "finished": "2026-01-01T09:01:05Z",
         "result": "RolledBack"},
        {"version": "4", "finished": "2026-01-01T11:00:00Z", "result": "Failed"},
    ]  # fmt: skip
    found = Auditor().observe(Snapshot(md({"history": history}), dep("1"), "3"))
    assert found == [
        "I4: version 3 was declared failed 2s after its rollout started, before its deadline of 60s"
    ]


def test_i5_a_good_version_known_and_no_deployment() -> None:
    found = Auditor().observe(Snapshot(md(serving("1")), None, "1"), settled=True)
    assert found == ["I5: version 1 is known to be good, but no serving Deployment exists"]
    suspended = md(serving("1")) | {"spec": {"suspend": True}}
    assert Auditor().observe(Snapshot(suspended, None, "1"), settled=True) == []


def test_i6_status_and_deployment_disagree() -> None:
    assert disagreements(Snapshot(md(serving("1")), dep("1", good="1"), "1")) == []
    found = disagreements(Snapshot(md(serving("1", ["2"])), dep("2", complete=False), "2"))
    assert "status.modelUri models:/fraud/1 but the template pins 2" in found
    assert any(f.startswith("Ready is True but the Deployment (version 2)") for f in found)
    assert any(f.startswith("status.failedVersions ['2']") for f in found)
