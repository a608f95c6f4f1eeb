"""The real API server enforces the generated CRDs: schema, CEL rules and unknown fields.

The same invalid manifests the unit tests check against the models are sent to the API server
with `kubectl apply` (strict field validation, as kubectl does by default); each is refused
with a message naming the field.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from mlflow_operator.core.mlflowserver.layout import max_server_name
from tests.cluster.launcher import KubeCluster
from tests.e2e.kube import get_json
from tests.e2e.operator_process import OperatorProcess
from tests.support.polling import eventually
from tests.unit.manifests import EXAMPLES, INVALID, load_invalid

pytestmark = pytest.mark.e2e


def _apply(cluster: KubeCluster, namespace: str, body: object) -> tuple[int, str]:
    result = cluster.kubectl(
        "apply", "-n", namespace, "--dry-run=server", "-f", "-",
        input=yaml.safe_dump(body), check=False,
    )  # fmt: skip
    return result.returncode, result.stdout + result.stderr


@pytest.mark.parametrize("path", INVALID, ids=lambda p: p.name)
def test_api_server_refuses_invalid_manifest_naming_the_field(
    crds_installed: KubeCluster, k8s_namespace: str, path: Path
) -> None:
    manifest = load_invalid(path)
    code, output = _apply(crds_installed, k8s_namespace, manifest.body)
    assert code != 0, f"{path.name} was accepted:\n{output}"
    assert manifest.field in output, output


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_api_server_accepts_every_example(
    crds_installed: KubeCluster, k8s_namespace: str, path: Path
) -> None:
    code, output = _apply(crds_installed, k8s_namespace, yaml.safe_load(path.read_text()))
    assert code == 0, output


def test_kubectl_explain_and_category(crds_installed: KubeCluster) -> None:
    explained = crds_installed.kubectl("explain", "modeldeployment.spec.model").stdout
    assert "exactly one" in explained or "alias" in explained
    assert "Follow the version this alias points to" in explained
    listed = crds_installed.kubectl("get", "mlflow", "-A").returncode
    assert listed == 0


def test_the_longest_accepted_mlflowserver_name_gets_its_postgresql_pod(
    operator: OperatorProcess, crds_installed: KubeCluster, k8s_namespace: str
) -> None:
    """Defect 6: a 44-character name was accepted, and its StatefulSet never got a pod (the
    pod label controller-revision-hash=<statefulset>-<hash> was longer than 63). The API now
    refuses 44 (tests/manifests/invalid/ms-name-too-long.yaml); 43 must work end to end."""
    name = "m" * max_server_name()
    crds_installed.apply(
        {
            "apiVersion": "mlflowops.dev/v1alpha1",
            "kind": "MLflowServer",
            "metadata": {"name": name, "namespace": k8s_namespace},
            "spec": {
                "backendStore": {"postgres": {"managed": {"storage": "1Gi"}}},
                "artifactStore": {"s3": {"managed": {"storage": "1Gi"}}},
            },
        }
    )
    for pod in (f"{name}-postgres-0", f"{name}-minio-0"):
        eventually(
            lambda pod=pod: get_json(crds_installed, "-n", k8s_namespace, "pod", pod),  # type: ignore[misc]
            timeout=60,
            what=f"pod {pod} created by its StatefulSet",
        )
