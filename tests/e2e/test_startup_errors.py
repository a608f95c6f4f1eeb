"""The operator's start-up errors: one line that says what to do, and a non-zero exit.

`mlflow-operator run` runs as a process, as a user starts it; the refusals come from the test
cluster's API server. Only "no CRDs" is asked in-process, of a resource that does not exist:
the session's CRDs cannot be deleted under the other tests.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from lightkube.generic_resource import create_namespaced_resource

from mlflow_operator.kube import preflight
from mlflow_operator.kube.preflight import StartupError, check_cluster
from tests.cluster.launcher import KubeCluster
from tests.cluster.service_accounts import service_account_kubeconfig
from tests.support.processes import free_port

pytestmark = pytest.mark.e2e


def run_operator(
    tmp_path: Path, env: dict[str, str], *args: str
) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("KUBECONFIG", "MLFLOW_"))}
    return subprocess.run(
        [sys.executable, "-m", "mlflow_operator", "run", *args],
        env={
            **clean,
            "HOME": str(tmp_path),  # no ~/.kube/config to fall back to
            "MLFLOW_OPERATOR_METRICS_PORT": str(free_port()),
            "MLFLOW_OPERATOR_HEALTH_PORT": str(free_port()),
            "MLFLOW_OPERATOR_WEBHOOK_PORT": str(free_port()),
            **env,
        },
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def one_line(result: subprocess.CompletedProcess[str]) -> str:
    """The operator's stderr, which must be exactly one line, and nothing on stdout."""
    assert result.returncode == 1, (result.returncode, result.stderr[-2000:])
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    assert result.stdout == ""
    assert lines[0].startswith("mlflow-operator: ")
    return lines[0]


def test_no_kubeconfig(tmp_path: Path) -> None:
    line = one_line(run_operator(tmp_path, {"KUBECONFIG": str(tmp_path / "absent")}))
    assert "no Kubernetes credentials" in line
    assert "set KUBECONFIG" in line


def test_api_server_unreachable(kube_cluster: KubeCluster, tmp_path: Path) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    closed = f"https://127.0.0.1:{free_port()}"
    kubeconfig.write_text(kube_cluster.kubeconfig.read_text().replace(kube_cluster.server, closed))
    line = one_line(run_operator(tmp_path, {"KUBECONFIG": str(kubeconfig)}))
    assert f"cannot reach the Kubernetes API server at {closed}" in line


def test_forbidden_names_what_and_where(
    kube_cluster: KubeCluster, crds_installed: KubeCluster, k8s_namespace: str, tmp_path: Path
) -> None:
    """A ServiceAccount without the chart's RBAC: the API server's refusal, and the remedy."""
    kube_cluster.kubectl("create", "serviceaccount", "no-rbac", "-n", k8s_namespace)
    kubeconfig = service_account_kubeconfig(
        kube_cluster, k8s_namespace, "no-rbac", tmp_path / "sa.kubeconfig"
    )
    result = run_operator(tmp_path, {"KUBECONFIG": str(kubeconfig)}, "-n", k8s_namespace)
    line = one_line(result)
    assert f"not allowed to list modeldeployments.mlflowops.dev in namespace {k8s_namespace}" in (
        line
    )
    assert f"system:serviceaccount:{k8s_namespace}:no-rbac" in line  # the API server's words
    assert "rbac.create=true" in line


def test_a_crd_that_is_not_installed(
    kube_cluster: KubeCluster, crds_installed: KubeCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    absent = create_namespaced_resource("absent.mlflowops.dev", "v1", "Absent", "absents")
    monkeypatch.setattr(preflight, "KINDS", ((absent, "absents.absent.mlflowops.dev"),))
    monkeypatch.setenv("KUBECONFIG", str(kube_cluster.kubeconfig))
    with pytest.raises(StartupError) as refused:
        check_cluster([], timeout_seconds=10)
    assert str(refused.value) == (
        f"the CRD absents.absent.mlflowops.dev is not installed in the cluster at "
        f"{kube_cluster.server}: install them with `kubectl apply --server-side -f "
        "deploy/crds.yaml` (or from charts/mlflow-operator/crds/)"
    )


def test_the_installed_crds_pass(
    kube_cluster: KubeCluster, crds_installed: KubeCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KUBECONFIG", str(kube_cluster.kubeconfig))
    assert check_cluster(["t-*", "default"], timeout_seconds=10) == kube_cluster.server
