"""An operator that watches a namespace pattern keeps acting while matching namespaces come and go.

Found by the suite: after a run of tests that each delete their namespace, the session's
operator started while those namespaces terminated, and from then on ran no handler at all
(an MLflowServer never got its StatefulSet). kopf held every handler until the watches of the
vanished namespaces listed, which they never did (mlflow_operator/handlers/watcher_readiness.py).
"""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
import yaml

from tests.cluster.fixtures import create_namespace
from tests.cluster.launcher import KubeCluster
from tests.e2e.kube import get_json
from tests.e2e.modeldeployments import model_deployment
from tests.e2e.operator_process import OperatorProcess
from tests.support.polling import eventually

pytestmark = pytest.mark.e2e
VANISHING = 40


def test_namespaces_deleted_as_the_operator_starts_do_not_stop_it(
    kube_cluster: KubeCluster, crds_installed: KubeCluster, tmp_path: Path
) -> None:
    prefix = f"churn{uuid.uuid4().hex[:4]}"
    vanishing = [f"{prefix}-{i}" for i in range(VANISHING)]
    namespaces = [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": n}} for n in vanishing
    ]
    kube_cluster.kubectl(
        "apply",
        "-f",
        "-",
        input=yaml.safe_dump({"apiVersion": "v1", "kind": "List", "items": namespaces}),
    )
    operator = OperatorProcess(
        kubeconfig=kube_cluster.kubeconfig, workdir=tmp_path, namespaces=(f"{prefix}-*",)
    )
    # deleted while the operator lists them: most vanish within its first listings
    kube_cluster.kubectl("delete", "namespace", *vanishing, "--wait=false")
    operator.start()
    ns = create_namespace(kube_cluster, prefix=prefix)
    try:
        # no MLflow at that address: the first reconcile reports it, which is all this asks
        kube_cluster.apply(model_deployment("churn", ns, "m", "http://127.0.0.1:9"))
        status = eventually(
            lambda: get_json(kube_cluster, "-n", ns, "mdep", "churn").get("status"),
            timeout=60,
            what="the ModelDeployment's first status",
            processes=[operator.process] if operator.process else [],
        )
        assert status["observedGeneration"] == 1, status
        kube_cluster.kubectl("delete", "-n", ns, "mdep", "churn", "--timeout=60s")
    finally:
        operator.stop()
        kube_cluster.kubectl("delete", "namespace", ns, "--wait=false", check=False)
