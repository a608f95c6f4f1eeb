"""What the operator asks of the API server, counted by the API server (its audit log): the
watches of children select the operator's own by label, and an idle operator asks nothing
per object.
"""

from __future__ import annotations

import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import pytest

from mlflow_operator.core.naming import LABEL_MODEL_DEPLOYMENT
from tests.cluster.fixtures import create_namespace
from tests.cluster.launcher import KubeCluster
from tests.e2e.modeldeployments import is_ready_on, model_deployment
from tests.e2e.operator_process import OperatorProcess
from tests.mlflowstack.models import ModelRegistry
from tests.mlflowstack.stack import MlflowStack
from tests.support.audit import (
    AuditedRequest,
    audited_kubeconfig,
    by_kind,
    forget_audited,
    requests_of,
)
from tests.support.polling import eventually

pytestmark = [pytest.mark.e2e, pytest.mark.integration]
DEPLOYMENTS = 20
IDLE_WINDOW = 30.0
SELECTOR = "labelSelector=" + urllib.parse.quote("app.kubernetes.io/managed-by=mlflow-operator")


@pytest.fixture
def audited_operator(
    kube_cluster: KubeCluster, crds_installed: KubeCluster, tmp_path: Path
) -> Iterator[tuple[str, str]]:
    """An operator of its own, run as an audited ServiceAccount, watching a namespace of its own."""
    namespace = create_namespace(kube_cluster, prefix="api")
    name = f"operator-{namespace}"
    kubeconfig, user = audited_kubeconfig(kube_cluster, name, tmp_path / "kubeconfig")
    operator = OperatorProcess(
        kubeconfig=kubeconfig, workdir=tmp_path, namespaces=(namespace,)
    ).start()
    try:
        yield namespace, user
    finally:
        kube_cluster.kubectl(
            "delete", "-n", namespace, "mdep", "--all", "--timeout=60s", check=False
        )
        operator.stop()
        forget_audited(kube_cluster, name)
        kube_cluster.kubectl("delete", "namespace", namespace, "--wait=false", check=False)


def test_children_are_watched_by_label_and_an_idle_operator_asks_little(
    kube_cluster: KubeCluster,
    audited_operator: tuple[str, str],
    mlflow_stack: MlflowStack,
    mlflow_registry: ModelRegistry,
    model_name: str,
) -> None:
    ns, user = audited_operator
    version = mlflow_registry.log_version(model_name).version
    mlflow_registry.set_alias(model_name, "champion", version)
    # someone else's Deployments in the watched namespace: never sent to the operator
    for index in range(3):
        kube_cluster.kubectl("create", "deployment", f"not-ours-{index}", "-n", ns, "--image=x")
    for index in range(DEPLOYMENTS):
        kube_cluster.apply(
            model_deployment(
                f"md-{index}", ns, model_name, mlflow_stack.tracking_uri,
                serving={"replicas": 1},
            )
        )  # fmt: skip
    for index in range(DEPLOYMENTS):
        eventually(
            lambda i=index: is_ready_on(kube_cluster, ns, f"md-{i}", version),
            timeout=120,
            what=f"md-{index} Ready",
        )

    watches = [r for r in requests_of(kube_cluster, user) if r.verb == "watch"]
    kinds = {"deployments", "statefulsets", "jobs", "services", "poddisruptionbudgets", "pods"}
    children = [r for r in watches if r.resource in kinds]
    assert {r.resource for r in children} == kinds, watches
    for watch in children:
        assert SELECTOR in watch.uri, watch.uri  # selected by the API server, not after
    # the rollouts read their pods from the pod watch (reconcilers/watched.py), never a LIST
    pod_lists = [r for r in requests_of(kube_cluster, user) if lists_pods_of_one(r)]
    assert pod_lists == [], by_kind(pod_lists)

    time.sleep(10)  # the rollouts' last status writes
    before = len(requests_of(kube_cluster, user))
    time.sleep(IDLE_WINDOW)
    idle = requests_of(kube_cluster, user)[before:]
    per_second = len(idle) / IDLE_WINDOW
    print(
        f"{DEPLOYMENTS} ModelDeployments at rest: {len(idle)} API requests in "
        f"{IDLE_WINDOW:.0f}s ({per_second:.2f}/s): {by_kind(idle)}"
    )
    # at rest nothing is written, and nothing is read per object: the children come from the
    # watch streams, and nothing is reconciled on a timer (docs/benchmarks.md)
    writes = [r for r in idle if r.verb in ("create", "update", "patch", "delete")]
    assert writes == [], by_kind(writes)
    # (a watch that ends after watchTimeoutSeconds starts again with one list of its kind, by
    # the managed-by label; one ModelDeployment's pods would be listed by its own label)
    per_object = {"modeldeployments", "deployments", "services", "poddisruptionbudgets"}
    reads = [
        r for r in idle if (r.verb == "get" and r.resource in per_object) or lists_pods_of_one(r)
    ]
    assert reads == [], by_kind(reads)


def lists_pods_of_one(request: AuditedRequest) -> bool:
    """A LIST of one ModelDeployment's pods (by its label; the pod watch's own LIST, when it
    starts again, selects by the managed-by label)."""
    uri = urllib.parse.unquote(request.uri)
    return request.resource == "pods" and f"{LABEL_MODEL_DEPLOYMENT}=" in uri


def test_an_idle_install_of_two_replicas_asks_less_than_one_request_a_second(
    kube_cluster: KubeCluster, crds_installed: KubeCluster, tmp_path: Path
) -> None:
    """The chart's default: two replicas, one leads. The leader renews its Lease (one write
    each retry period, 2 s), the standby watches it rather than reading it every 2 s."""
    namespace = create_namespace(kube_cluster, prefix="api")
    replicas, users, names = [], [], []
    try:
        for index in range(2):
            name = f"replica-{index}-{namespace}"
            kubeconfig, user = audited_kubeconfig(kube_cluster, name, tmp_path / f"{index}.kcfg")
            names.append(name)
            users.append(user)
            replica = OperatorProcess(
                kubeconfig=kubeconfig, workdir=tmp_path / str(index), namespaces=(namespace,),
                extra_env={
                    "MLFLOW_OPERATOR_LEADER_ELECTION": "true",
                    "MLFLOW_OPERATOR_LEADER_ELECTION_NAMESPACE": namespace,
                },
            )  # fmt: skip
            (tmp_path / str(index)).mkdir()
            replicas.append(replica.start())
        leader, standby = users
        time.sleep(5)  # the standby has seen the leader's Lease
        before = {user: len(requests_of(kube_cluster, user)) for user in users}
        time.sleep(IDLE_WINDOW)
        idle = {user: requests_of(kube_cluster, user)[before[user] :] for user in users}
        total = sum(len(requests) for requests in idle.values()) / IDLE_WINDOW
        print(
            f"two replicas at rest: {total:.2f} API requests/s; leader {by_kind(idle[leader])}, "
            f"standby {by_kind(idle[standby])}"
        )
        assert [r.what for r in idle[standby]] == [], by_kind(idle[standby])
        assert total <= 1.0, {user: by_kind(requests) for user, requests in idle.items()}
    finally:
        for replica in replicas:
            replica.stop()
        for name in names:
            forget_audited(kube_cluster, name)
        kube_cluster.kubectl("delete", "namespace", namespace, "--wait=false", check=False)
