"""Pytest fixtures for the Kubernetes test cluster (loaded as a plugin by tests/conftest.py).

- ``kube_cluster`` (session): a ``KubeCluster`` with ``.kubeconfig`` (Path), ``.server`` (URL),
  ``.kubectl(*args, input=None, check=True)``, ``.apply(manifests)``,
  ``.keep_pods_unready(label, values)`` and ``.reset_unready_rules()``. The embedded control
  plane by default; the cluster of ``$KUBECONFIG`` when ``MLFLOW_OPERATOR_TEST_CLUSTER=existing``.
- ``kubectl`` (session): ``kube_cluster.kubectl``.
- ``k8s_namespace`` (function): a fresh namespace that enforces Pod Security "restricted"
  (the API server refuses any pod that would not pass), deleted after the test.
- ``real_node`` (session): the ``NodeInfo`` of the cluster's real node (name, addresses,
  ``placement`` for pod specs, the local image tags); skips the test when the cluster has none.

Under `make test` two pytest processes share the embedded cluster (tests/cluster/sharing.py):
the hooks below give each its modules and keep tests marked ``exclusive`` apart from the
other process's.

A failing test that used the cluster gets the tail of each component's log in its report.
"""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Callable, Generator, Iterator
from pathlib import Path

import pytest

from tests.cluster import sharing
from tests.cluster.launcher import REAL_NODE_ENV, ControlPlane, KubeCluster, kubectl_binary
from tests.cluster.realnode import NodeInfo

MODE_ENV = "MLFLOW_OPERATOR_TEST_CLUSTER"
# k8s_namespace's names: t-<random> (u-<random> in the second process of a shared cluster)
SESSION_NAMESPACE_PREFIX = os.environ.get(sharing.NAMESPACE_PREFIX_ENV, "t")
# Every namespace a test creates enforces the profile every pod the operator makes must pass.
POD_SECURITY_LABELS = {
    f"pod-security.kubernetes.io/{mode}": "restricted" for mode in ("enforce", "warn", "audit")
}
_CLUSTER_KEY = pytest.StashKey[KubeCluster]()


def existing_cluster() -> KubeCluster:
    """The cluster $KUBECONFIG points at (its current context), for the "existing" mode."""
    kubeconfig = os.environ.get("KUBECONFIG", "")
    if not kubeconfig:
        raise pytest.UsageError(f"{MODE_ENV}=existing needs KUBECONFIG to name a kubeconfig file")
    path = Path(kubeconfig.split(os.pathsep)[0]).expanduser()
    server = subprocess.run(
        [
            kubectl_binary(),
            "--kubeconfig",
            str(path),
            "config",
            "view",
            "--minify",
            "-o",
            "jsonpath={.clusters[0].cluster.server}",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    return KubeCluster(kubeconfig=path, server=server, embedded=False)


@pytest.fixture(scope="session")
def kube_cluster(request: pytest.FixtureRequest) -> Iterator[KubeCluster]:
    mode = os.environ.get(MODE_ENV, "embedded")
    share = sharing.role()
    if mode == "existing":
        cluster = existing_cluster()
        request.config.stash[_CLUSTER_KEY] = cluster
        yield cluster
        return
    if mode != "embedded":
        raise pytest.UsageError(
            f"{MODE_ENV} must be 'embedded' (default) or 'existing', not {mode!r}"
        )
    if share == "guest":
        cluster = sharing.published_cluster(sharing.share_dir())
        request.config.stash[_CLUSTER_KEY] = cluster
        try:
            yield cluster
        finally:
            for helper in cluster.helpers:
                helper.stop(timeout=5)
        return
    plane = ControlPlane()
    published = False
    try:
        cluster = plane.start()
        request.config.stash[_CLUSTER_KEY] = cluster
        if share == "owner":
            sharing.publish(cluster, sharing.share_dir())
            published = True
        yield cluster
    finally:
        if published:
            sharing.wait_for_guest(sharing.share_dir())
        # Stops every process by PID even when the session failed or was interrupted.
        plane.cleanup()


@pytest.fixture(scope="session")
def kubectl(kube_cluster: KubeCluster) -> Callable[..., subprocess.CompletedProcess[str]]:
    return kube_cluster.kubectl


@pytest.fixture(scope="session")
def real_node(kube_cluster: KubeCluster) -> NodeInfo:
    if kube_cluster.node is None:
        pytest.skip(
            "the test cluster has no real node (a cluster brought by the user, or "
            f"{REAL_NODE_ENV}=0)"
        )
    return kube_cluster.node


def create_namespace(cluster: KubeCluster, prefix: str = SESSION_NAMESPACE_PREFIX) -> str:
    """A fresh namespace enforcing Pod Security "restricted"."""
    name = f"{prefix}-{uuid.uuid4().hex[:8]}"
    labels = [f"{key}={value}" for key, value in POD_SECURITY_LABELS.items()]
    cluster.kubectl("create", "namespace", name)
    cluster.kubectl("label", "namespace", name, *labels)
    return name


@pytest.fixture
def k8s_namespace(kube_cluster: KubeCluster) -> Iterator[str]:
    """A namespace of its own for one test; deleted (without waiting) afterwards."""
    name = create_namespace(kube_cluster)
    yield name
    kube_cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, None]:
    """Add the tail of each component's log to the report of a failed test using the cluster."""
    outcome = yield
    report: pytest.TestReport = outcome.get_result()
    if not report.failed or "kube_cluster" not in getattr(item, "fixturenames", ()):
        return
    cluster = item.config.stash.get(_CLUSTER_KEY, None)
    tails = cluster.log_tails() if cluster is not None else ""
    if tails:
        report.sections.append(("test cluster logs (tail)", tails))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """In a shared cluster's process, only the modules that run there (sharing.GUEST_MODULES);
    the owner's exclusive tests last, as they wait for the guest to end."""
    share = sharing.role()
    if share is None:
        return
    kept = [item for item in items if sharing.runs_in(item.nodeid.split("::")[0], share)]
    if share == "guest":
        for item in kept:
            try:
                sharing.check_guest_item(item.nodeid, _exclusive(item))
            except ValueError as refused:
                raise pytest.UsageError(str(refused)) from None
    if len(kept) < len(items):
        config.hook.pytest_deselected(items=[item for item in items if item not in kept])
    items[:] = sharing.exclusive_last(kept, _exclusive) if share == "owner" else kept


def _exclusive(item: pytest.Item) -> bool:
    return item.get_closest_marker(sharing.EXCLUSIVE_MARKER) is not None


# tryfirst: the wait comes before pytest-timeout's wrapper starts the test's clock
@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[None]:
    """In a shared cluster, an exclusive test of the owner runs once the guest has ended."""
    if sharing.role() == "owner" and _exclusive(item):
        sharing.wait_for_guest(sharing.share_dir())
    yield
