"""Two pytest processes on one test cluster (tests/cluster/sharing.py): who runs what, the
cluster's description handed over, and the locks that keep exclusive tests alone."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from tests.cluster import sharing
from tests.cluster.launcher import KubeCluster
from tests.cluster.realnode import NodeInfo


def test_each_module_runs_in_exactly_one_process() -> None:
    for module in (*sharing.GUEST_MODULES, "tests/e2e/test_quickstart.py"):
        assert sharing.runs_in(module, "owner") != sharing.runs_in(module, "guest")
    assert sharing.runs_in("tests/e2e/test_quickstart.py", "owner")
    assert sharing.runs_in("tests/e2e/test_mlflowserver.py", "guest")


def test_the_guest_sees_the_cluster_the_owner_published(tmp_path: Path) -> None:
    node = NodeInfo(
        name="node-1",
        node_ip="10.0.0.2",
        host_ip="10.0.0.1",
        pod_cidr="10.244.0.0/24",
        service_cidr="10.96.0.0/16",
        images={"serving-cpu": "localhost/serving-cpu:abc"},
        ctr=("ctr", "--address", "/run/containerd.sock"),
    )
    owned = KubeCluster(
        kubeconfig=tmp_path / "kubeconfig", server="https://10.0.0.1:6443", node=node
    )
    sharing.publish(owned, tmp_path)
    seen = sharing.published_cluster(tmp_path)
    assert (seen.kubeconfig, seen.server, seen.node) == (owned.kubeconfig, owned.server, node)
    assert seen.processes == []  # the owner's to stop, not the guest's
    with pytest.raises(RuntimeError, match="exclusive"):
        seen.keep_pods_unready("mlflowops.dev/model-version", ["2"])
    with pytest.raises(RuntimeError, match="exclusive"):
        seen.restart_apiserver()


def test_an_exclusive_test_in_a_guest_module_is_refused() -> None:
    sharing.check_guest_item("tests/e2e/test_mlflowserver.py::test_a", exclusive=False)
    with pytest.raises(ValueError, match="GUEST_MODULES"):
        sharing.check_guest_item("tests/e2e/test_mlflowserver.py::test_b", exclusive=True)


def _in_thread(target: object) -> threading.Thread:
    thread = threading.Thread(target=target, daemon=True)  # type: ignore[arg-type]
    thread.start()
    return thread


def test_the_owners_exclusive_tests_go_last_in_their_order() -> None:
    tests = ["a", "quickstart", "b", "chaos", "c"]
    assert sharing.exclusive_last(tests, lambda t: t in ("quickstart", "chaos")) == [
        "a", "b", "c", "quickstart", "chaos",
    ]  # fmt: skip


def test_the_owner_stops_the_cluster_only_once_the_guest_is_gone(tmp_path: Path) -> None:
    held = sharing.open_session_lock(tmp_path)  # as tests/suite.py hands it to the guest
    waited = threading.Event()
    waiter = _in_thread(lambda: (sharing.wait_for_guest(tmp_path), waited.set()))
    assert not waited.wait(0.3)
    os.close(held)  # the guest exits
    assert waited.wait(5)
    waiter.join(5)


def test_a_guest_reports_the_logs_of_the_cluster_it_did_not_start(tmp_path: Path) -> None:
    for log, text in {
        "logs/kube-apiserver.log": "apiserver line",
        "logs/audit.log": "a request",
        "logs/forward-1234.log": "forwarded",
        "node/logs/kubelet.log": "kubelet line",
    }.items():
        (tmp_path / log).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / log).write_text(text + "\n")
    seen = KubeCluster(
        kubeconfig=tmp_path / "kubeconfig", server="https://10.0.0.1:6443", borrowed=True
    )
    tails = seen.log_tails()
    assert "apiserver line" in tails
    assert "kubelet line" in tails
    assert "a request" not in tails
    assert "forwarded" not in tails
