"""Installing the operator as users do, into the test cluster: `helm install/upgrade/uninstall`,
and the chart's RBAC as the only permissions of an operator that runs the ModelDeployment flow.

The operator's own pod is simulated by KWOK (it becomes Ready, runs nothing). To exercise the
chart's RBAC for real, the tests run `mlflow-operator run` locally, authenticated with a token
of the chart's ServiceAccount instead of the admin certificate.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.cluster.launcher import KubeCluster, KubectlError
from tests.cluster.service_accounts import service_account_kubeconfig
from tests.e2e.kube import get_json
from tests.e2e.modeldeployments import is_ready_on, model_deployment
from tests.e2e.operator_process import OperatorProcess
from tests.helm.argocd import MODELDEPLOYMENT_HEALTH, run_health
from tests.helm.chart import CHART, helm, value_args
from tests.mlflowstack.models import ModelRegistry
from tests.mlflowstack.stack import MlflowStack
from tests.support.polling import eventually

pytestmark = pytest.mark.e2e

CHART_NAME = "mlflow-operator"
SERVER_IMAGE = "ghcr.io/mlflow-operator/mlflow-server:3.17.2"
# Verbs a ServiceAccount may hold on Secrets in a watched namespace (read named ones, create
# generated ones, delete a serving pods' one left on an old server); never list, watch, change.
SECRET_VERBS = {"get", "create", "delete"}


# -- helpers --------------------------------------------------------------------------------


def fullname(release: str) -> str:
    return release if CHART_NAME in release else f"{release}-{CHART_NAME}"


def helm_in(cluster: KubeCluster, *args: str, check: bool = True) -> Any:
    return helm(*args, kubeconfig=cluster.kubeconfig, check=check)


def install(
    cluster: KubeCluster,
    release: str,
    namespace: str,
    values: dict[str, Any] | None = None,
    *,
    command: str = "install",
    wait: bool = True,
) -> None:
    args = [command, release, str(CHART), "--namespace", namespace, *value_args(values)]
    if wait:
        args += ["--wait", "--timeout", "180s"]
    helm_in(cluster, *args)


def exists(cluster: KubeCluster, *args: str) -> bool:
    return cluster.kubectl("get", *args, "-o", "name", check=False).returncode == 0


def container_env(cluster: KubeCluster, namespace: str, name: str) -> dict[str, str]:
    deployment = get_json(cluster, "-n", namespace, "deployment", name)
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return {e["name"]: e.get("value", "") for e in container["env"]}


def can_i_list(cluster: KubeCluster, user: str, namespace: str) -> dict[str, set[str]]:
    """`kubectl auth can-i --list`: resource (with group) -> verbs, for one namespace."""
    out = cluster.kubectl("auth", "can-i", "--list", f"--as={user}", "-n", namespace).stdout
    rules: dict[str, set[str]] = {}
    for line in out.splitlines()[1:]:
        if not line.strip():
            continue
        resource = line.split()[0]
        verbs = line[line.rindex("[") + 1 : line.rindex("]")].split()
        rules.setdefault(resource, set()).update(verbs)
    return rules


def new_namespace(cluster: KubeCluster) -> str:
    # Not t-*: the session's operator watches those, and two operators on one object flap.
    name = f"inst-{uuid.uuid4().hex[:8]}"
    cluster.kubectl("create", "namespace", name)
    return name


@pytest.fixture
def other_namespace(kube_cluster: KubeCluster) -> Iterator[str]:
    name = new_namespace(kube_cluster)
    yield name
    kube_cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)


# -- helm install, upgrade, uninstall -------------------------------------------------------


def test_helm_install_upgrade_uninstall(kube_cluster: KubeCluster, k8s_namespace: str) -> None:
    release = f"op-{k8s_namespace}"
    name = fullname(release)
    install(kube_cluster, release, k8s_namespace)

    # the operator's two pods are Ready (simulated: one leads, one stands by) and the CRDs
    # are served
    deployment = get_json(kube_cluster, "-n", k8s_namespace, "deployment", name)
    assert deployment["status"]["readyReplicas"] == 2
    assert deployment["spec"]["strategy"]["type"] == "RollingUpdate"
    assert exists(kube_cluster, "-n", k8s_namespace, "poddisruptionbudget", name)
    kube_cluster.kubectl(
        "wait", "-n", k8s_namespace, "--for=condition=Ready", "pod",
        "-l", f"app.kubernetes.io/instance={release}", "--timeout=60s",
    )  # fmt: skip
    assert exists(kube_cluster, "clusterrolebinding", name)
    rules = can_i_list(kube_cluster, f"system:serviceaccount:{k8s_namespace}:{name}", "default")
    assert all("*" not in verbs for verbs in rules.values()), rules
    assert rules["secrets"] == SECRET_VERBS

    # people with Kubernetes' default roles: edit manages and scales them, view only reads
    for role in ("edit", "view"):
        kube_cluster.kubectl(
            "create", "rolebinding", f"{role}-user", "-n", k8s_namespace,
            f"--clusterrole={role}", f"--serviceaccount={k8s_namespace}:{role}-user",
        )  # fmt: skip

    def can(role: str, verb: str, resource: str, *subresource: str) -> bool:
        answer = kube_cluster.kubectl(
            "auth", "can-i", verb, resource, *subresource, "-n", k8s_namespace,
            f"--as=system:serviceaccount:{k8s_namespace}:{role}-user", check=False,
        )  # fmt: skip
        return answer.stdout.strip() == "yes"

    eventually(  # the cluster aggregates the chart's roles into the default ones
        lambda: can("edit", "patch", "modeldeployments", "--subresource=scale"),
        timeout=30,
        what="edit may scale ModelDeployments",
    )
    assert can("edit", "create", "mlflowservers")
    assert can("view", "list", "modeldeployments")
    assert not can("view", "create", "modeldeployments")
    assert not can("view", "patch", "modeldeployments", "--subresource=scale")

    # a ModelDeployment is accepted; a wrong one is refused by the CRD's schema
    kube_cluster.apply(
        model_deployment("accepted", k8s_namespace, "fraud", "http://mlflow.example:5000")
    )
    assert exists(kube_cluster, "-n", k8s_namespace, "mdep", "accepted")
    wrong = model_deployment("refused", k8s_namespace, "fraud", "http://mlflow.example:5000")
    wrong["spec"]["serving"] = {"replicas": "two"}
    with pytest.raises(KubectlError) as refused:
        kube_cluster.apply(wrong)
    assert "spec.serving.replicas" in refused.value.stderr

    # upgrade with changed values: namespaced RBAC, debug logs; the pods are replaced
    install(
        kube_cluster,
        release,
        k8s_namespace,
        {"watchNamespaces": [k8s_namespace], "operator": {"logLevel": "debug"}},
        command="upgrade",
    )
    env = container_env(kube_cluster, k8s_namespace, name)
    assert env["MLFLOW_OPERATOR_LOG_LEVEL"] == "debug"
    assert env["MLFLOW_OPERATOR_NAMESPACES"] == k8s_namespace
    assert exists(kube_cluster, "-n", k8s_namespace, "rolebinding", name)
    assert not exists(kube_cluster, "clusterrolebinding", name)
    deployment = get_json(kube_cluster, "-n", k8s_namespace, "deployment", name)
    assert deployment["status"]["readyReplicas"] == 2
    assert deployment["status"]["updatedReplicas"] == 2
    history = json.loads(
        helm_in(kube_cluster, "history", release, "-n", k8s_namespace, "-o", "json").stdout
    )
    assert [h["status"] for h in history] == ["superseded", "deployed"]

    # uninstall removes what the release created; CRDs and users' objects stay
    helm_in(kube_cluster, "uninstall", release, "-n", k8s_namespace, "--wait", "--timeout=120s")
    for kind in ("deployment", "serviceaccount", "service", "rolebinding"):
        assert not exists(kube_cluster, "-n", k8s_namespace, kind, name), kind
    for kind in ("clusterrole", "clusterrolebinding"):
        assert not exists(kube_cluster, kind, name), kind
    assert exists(kube_cluster, "crd", "modeldeployments.mlflowops.dev")
    assert exists(kube_cluster, "-n", k8s_namespace, "mdep", "accepted")


def test_helm_install_with_an_mlflowserver_keeps_it_on_uninstall(
    kube_cluster: KubeCluster, k8s_namespace: str
) -> None:
    release = f"stack-{k8s_namespace}"
    values = {"mlflowServer": {"enabled": True, "name": "mlflow"}}
    install(kube_cluster, release, k8s_namespace, values, wait=False)
    server = get_json(kube_cluster, "-n", k8s_namespace, "mlflowserver", "mlflow")
    assert server["spec"]["artifactStore"]["bucket"] == "mlflow"
    helm_in(kube_cluster, "uninstall", release, "-n", k8s_namespace)
    assert exists(kube_cluster, "-n", k8s_namespace, "mlflowserver", "mlflow")
    assert not exists(kube_cluster, "-n", k8s_namespace, "deployment", fullname(release))
    # no operator of this release is left to remove a finalizer: let the namespace go
    kube_cluster.kubectl(
        "patch", "-n", k8s_namespace, "mlflowserver", "mlflow", "--type=merge",
        "-p", '{"metadata":{"finalizers":null}}',
    )  # fmt: skip
    kube_cluster.kubectl("delete", "-n", k8s_namespace, "mlflowserver", "mlflow", "--wait=false")


def test_plain_manifests_install_and_delete_without_taking_the_crds(
    kube_cluster: KubeCluster, k8s_namespace: str
) -> None:
    """`kubectl apply --server-side -f deploy/crds.yaml -f deploy/mlflow-operator.yaml`, as
    install.md says; `kubectl delete -f deploy/mlflow-operator.yaml` removes the operator and
    leaves the CRDs and every ModelDeployment alone."""
    deploy = CHART.parents[1] / "deploy"
    selector = "app.kubernetes.io/instance=mlflow-operator"
    eventually(  # the quick start's test uses the same namespace, and may have just ended
        lambda: (
            "NotFound"
            in kube_cluster.kubectl("get", "namespace", "mlflow-operator", check=False).stderr
        ),
        timeout=180,
        what="namespace mlflow-operator of an earlier test gone",
    )
    try:
        kube_cluster.kubectl(
            "apply", "--server-side", "-f", str(deploy / "crds.yaml"),
            "-f", str(deploy / "mlflow-operator.yaml"),
        )  # fmt: skip
        kube_cluster.kubectl(
            "-n", "mlflow-operator", "rollout", "status", "deployment/mlflow-operator",
            "--timeout=120s", timeout=130,
        )  # fmt: skip
        for crd in ("modeldeployments.mlflowops.dev", "mlflowservers.mlflowops.dev"):
            assert exists(kube_cluster, "crd", crd)
        kube_cluster.apply(
            model_deployment("kept", k8s_namespace, "fraud", "http://mlflow.example:5000")
        )

        kube_cluster.kubectl(
            "delete", "-f", str(deploy / "mlflow-operator.yaml"), "--timeout=120s", timeout=130
        )
        left = kube_cluster.kubectl(
            "get", "clusterrole,clusterrolebinding", "-l", selector, "-o", "name"
        )
        assert left.stdout.strip() == ""
        for crd in ("modeldeployments.mlflowops.dev", "mlflowservers.mlflowops.dev"):
            assert exists(kube_cluster, "crd", crd)
        assert exists(kube_cluster, "-n", k8s_namespace, "mdep", "kept")
    finally:
        # everything but the CRDs, which other tests of the session use
        kube_cluster.kubectl("delete", "namespace", "mlflow-operator", "--wait=false", check=False)
        kube_cluster.kubectl(
            "delete", "clusterrole,clusterrolebinding", "-l", selector, check=False
        )


# -- what the chart's RBAC allows -----------------------------------------------------------


def test_rbac_allows_no_wildcards_and_no_secrets_outside_watched_namespaces(
    kube_cluster: KubeCluster, k8s_namespace: str, other_namespace: str
) -> None:
    watched = new_namespace(kube_cluster)
    release = f"rbac-{k8s_namespace}"
    install(kube_cluster, release, k8s_namespace, {"watchNamespaces": [watched]}, wait=False)
    user = f"system:serviceaccount:{k8s_namespace}:{fullname(release)}"
    try:
        in_watched = can_i_list(kube_cluster, user, watched)
        elsewhere = can_i_list(kube_cluster, user, other_namespace)
        for rules in (in_watched, elsewhere):
            assert all("*" not in verbs for verbs in rules.values()), rules
            assert "*.*" not in rules
        assert in_watched["secrets"] == SECRET_VERBS
        assert "modeldeployments.mlflowops.dev" in in_watched
        assert "secrets" not in elsewhere
        assert "deployments.apps" not in elsewhere
        # nothing like cluster-admin: the all-verbs, all-resources check says no
        refused = kube_cluster.kubectl("auth", "can-i", "*", "*", f"--as={user}", "-A", check=False)
        assert refused.stdout.strip() == "no"
        bindings = get_json(kube_cluster, "clusterrolebindings")["items"]
        ours = [
            b
            for b in bindings
            if any(s.get("name") == fullname(release) for s in b.get("subjects") or [])
        ]
        assert {b["roleRef"]["name"] for b in ours} == {f"{fullname(release)}-discovery"}
    finally:
        helm_in(kube_cluster, "uninstall", release, "-n", k8s_namespace, check=False)
        kube_cluster.kubectl("delete", "namespace", watched, "--wait=false", check=False)


# -- the ModelDeployment flow with the chart's permissions only ----------------------------


@pytest.mark.integration
@pytest.mark.parametrize(
    "mode",
    # all namespaces: an operator that would act on the other process's objects
    [pytest.param("all-namespaces", marks=pytest.mark.exclusive), "watched-namespace"],
)
def test_modeldeployment_flow_with_the_charts_rbac_only(
    mode: str,
    kube_cluster: KubeCluster,
    crds_installed: KubeCluster,
    mlflow_stack: MlflowStack,
    mlflow_registry: ModelRegistry,
    model_name: str,
    k8s_namespace: str,
    tmp_path: Path,
) -> None:
    workload_namespace = new_namespace(kube_cluster)
    release = f"flow-{k8s_namespace}"
    values = {"watchNamespaces": [workload_namespace]} if mode == "watched-namespace" else {}
    install(kube_cluster, release, k8s_namespace, values, wait=False)
    kubeconfig = service_account_kubeconfig(
        kube_cluster, k8s_namespace, fullname(release), tmp_path / "sa.kubeconfig"
    )
    operator = OperatorProcess(
        kubeconfig=kubeconfig,
        workdir=tmp_path,
        namespaces=(workload_namespace,) if mode == "watched-namespace" else (),
    )
    operator.start()
    try:
        v1 = mlflow_registry.log_version(model_name, c=1.0)
        mlflow_registry.set_alias(model_name, "champion", v1.version)
        kube_cluster.apply(
            model_deployment("fraud", workload_namespace, model_name, mlflow_stack.tracking_uri)
        )
        eventually(
            lambda: is_ready_on(kube_cluster, workload_namespace, "fraud", v1.version),
            timeout=90,
            what="Ready on v1",
        )
        before = get_json(kube_cluster, "-n", workload_namespace, "mdep", "fraud")

        v2 = mlflow_registry.log_version(model_name, c=0.5)
        mlflow_registry.set_alias(model_name, "champion", v2.version)
        eventually(
            lambda: is_ready_on(kube_cluster, workload_namespace, "fraud", v2.version),
            timeout=60,
            what="Ready on v2",
        )
        after = get_json(kube_cluster, "-n", workload_namespace, "mdep", "fraud")
        # The operator never writes spec: nothing for Argo CD or Flux to see as drift.
        assert after["spec"] == before["spec"]
        assert after["metadata"]["generation"] == before["metadata"]["generation"]
        assert after["status"]["previousVersion"] == v1.version
        # what Argo CD makes of the live object with our health check
        health = run_health(MODELDEPLOYMENT_HEALTH, after)
        assert health["status"] == "Healthy", health

        # The MLflowServer controller's writes too: Secrets, StatefulSets, Jobs, ConfigMaps.
        kube_cluster.apply(
            {
                "apiVersion": "mlflowops.dev/v1alpha1",
                "kind": "MLflowServer",
                "metadata": {"name": "mlflow", "namespace": workload_namespace},
                "spec": {
                    "image": SERVER_IMAGE,
                    "replicas": 1,
                    "backendStore": {"postgres": {"managed": {"storage": "1Gi"}}},
                    "artifactStore": {"bucket": "mlflow", "s3": {"managed": {"storage": "1Gi"}}},
                },
            }
        )
        kube_cluster.kubectl(
            "wait", "-n", workload_namespace, "--for=condition=Ready", "mlflowserver/mlflow",
            "--timeout=150s", timeout=160,
        )  # fmt: skip

        # Refusals by RBAC only: in all-namespaces mode the operator also sees earlier tests'
        # namespaces being deleted, where every write is refused for another reason.
        refused = [
            line
            for line in operator.log().splitlines()
            if any(
                r in line
                for r in ("Forbidden", "forbidden", "API error 403", "Not enough permissions")
            )
            and "NamespaceTerminating" not in line
        ]
        assert not refused, "\n".join(refused[:10])
    finally:
        # delete while the operator still runs, so it removes its finalizers
        kube_cluster.kubectl(
            "delete", "-n", workload_namespace, "mdep,mlflowserver", "--all", "--timeout=60s",
            check=False,
        )  # fmt: skip
        operator.stop()
        helm_in(kube_cluster, "uninstall", release, "-n", k8s_namespace, check=False)
        kube_cluster.kubectl("delete", "namespace", workload_namespace, "--wait=false", check=False)
