"""Fixtures of the e2e tests: CRDs installed in the test cluster and the operator running."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Generator, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.cluster.fixtures import SESSION_NAMESPACE_PREFIX
from tests.cluster.launcher import KubeCluster
from tests.cluster.realnode import NodeInfo
from tests.e2e.operator_process import OperatorProcess, local_images_env
from tests.mlflowstack.stack import MlflowStack

ROOT = Path(__file__).resolve().parents[2]
_OPERATOR_KEY = pytest.StashKey[OperatorProcess]()


@pytest.fixture(scope="session")
def crds_installed(kube_cluster: KubeCluster) -> KubeCluster:
    """The generated CRDs applied (server-side) and Established."""
    kube_cluster.kubectl("apply", "--server-side", "-f", str(ROOT / "crds"))
    for crd in sorted((ROOT / "crds").glob("*.yaml")):
        name = crd.name.removesuffix(".yaml")
        kube_cluster.kubectl("wait", "--for=condition=Established", f"crd/{name}", "--timeout=60s")
    return kube_cluster


@pytest.fixture(scope="session")
def operator(
    crds_installed: KubeCluster,
    tmp_path_factory: pytest.TempPathFactory,
    request: pytest.FixtureRequest,
) -> Iterator[OperatorProcess]:
    """`mlflow-operator run` against the test cluster, for the whole session.

    It watches the namespaces of `k8s_namespace` (t-*): tests that run an operator of their own
    (installed by helm, or scoped to one namespace) use other names, so no object ever has two.
    """
    process = OperatorProcess(
        kubeconfig=crds_installed.kubeconfig,
        workdir=tmp_path_factory.mktemp("operator"),
        extra_env=local_images_env(crds_installed),
        namespaces=(f"{SESSION_NAMESPACE_PREFIX}-*",),
    )
    request.config.stash[_OPERATOR_KEY] = process
    process.start()
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture(scope="session")
def pods_tracking_uri(
    real_node: NodeInfo, kube_cluster: KubeCluster, mlflow_stack: MlflowStack
) -> str:
    """The local MLflow's URL as real pods (and the operator) reach it: the host's address on the
    node link, forwarded to the loopback port it listens on."""
    port = urlsplit(mlflow_stack.tracking_uri).port
    assert port is not None
    return f"http://{kube_cluster.expose_to_pods(port)}"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, None]:
    """A failed test that used the operator shows the tail of the operator's log."""
    outcome = yield
    report: pytest.TestReport = outcome.get_result()  # type: ignore[attr-defined]
    if report.failed and "operator" in getattr(item, "fixturenames", ()):
        process = item.config.stash.get(_OPERATOR_KEY, None)
        if process is not None:
            report.sections.append(("operator log (tail)", process.log_tail(80)))


def get_json(cluster: KubeCluster, *args: str) -> Any:
    return json.loads(cluster.kubectl("get", *args, "-o", "json").stdout)


def eventually(check: Callable[[], Any], timeout: float, what: str, interval: float = 0.25) -> Any:
    """Poll check() until it returns a truthy value; fail with the last value seen."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
        except Exception as exc:  # noqa: BLE001  (an object that does not exist yet)
            last = exc
        if last and not isinstance(last, Exception):
            return last
        time.sleep(interval)
    raise AssertionError(f"{what}: not true after {timeout:.0f}s; last: {last!r}")
