"""Fixtures of the e2e tests: CRDs installed in the test cluster and the operator running."""

from __future__ import annotations

from collections.abc import Generator, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.cluster.fixtures import SESSION_NAMESPACE_PREFIX
from tests.cluster.launcher import KubeCluster
from tests.cluster.realnode import NodeInfo
from tests.e2e.modeldeployments import ModelDeploymentEnv, RealPodsEnv
from tests.e2e.operator_process import OperatorProcess, local_images_env
from tests.mlflowstack.models import ModelRegistry
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


@pytest.fixture
def env(
    operator: OperatorProcess,
    kube_cluster: KubeCluster,
    mlflow_stack: MlflowStack,
    mlflow_registry: ModelRegistry,
    model_name: str,
    k8s_namespace: str,
) -> ModelDeploymentEnv:
    """The six fixtures nearly every ModelDeployment test asks for, as one.

    Their order here is the order in which they are set up (and, reversed, torn down). A test
    with a fixture of its own in front of MLflow (a proxy) lists it before `env`, so that it is
    started before the test's namespace is created and stopped after its deletion is asked for.
    """
    return ModelDeploymentEnv(
        operator=operator,
        cluster=kube_cluster,
        stack=mlflow_stack,
        registry=mlflow_registry,
        model=model_name,
        namespace=k8s_namespace,
        tracking_uri=mlflow_stack.tracking_uri,
    )


@pytest.fixture
def pods_env(
    operator: OperatorProcess,
    kube_cluster: KubeCluster,
    real_node: NodeInfo,
    pods_tracking_uri: str,
    mlflow_stack: MlflowStack,
    mlflow_registry: ModelRegistry,
    model_name: str,
    k8s_namespace: str,
) -> RealPodsEnv:
    """`env` for the tests whose serving pods run on the real node (skipped without one): the
    ModelDeployments follow MLflow at the address those pods reach it on."""
    return RealPodsEnv(
        operator=operator,
        cluster=kube_cluster,
        stack=mlflow_stack,
        registry=mlflow_registry,
        model=model_name,
        namespace=k8s_namespace,
        tracking_uri=pods_tracking_uri,
        node=real_node,
    )


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
