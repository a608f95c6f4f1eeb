"""The chart's model cache (templates/model-cache.yaml) installed into the test cluster, on the
real node, from the operator image built here; and what its pods count."""

from __future__ import annotations

from typing import Any

import requests
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.cluster.launcher import KubeCluster
from tests.cluster.realnode import NodeInfo
from tests.e2e.kube import get_json
from tests.helm.chart import CHART, helm, value_args

NAMESPACE = "mlflow-model-cache"  # not t-*: the session's operator does not watch it
RELEASE = "e2e"
FULLNAME = f"{RELEASE}-mlflow-operator"  # the chart's fullname of the release
PORT = 8090
SELECTOR = f"app.kubernetes.io/name=mlflow-model-cache,app.kubernetes.io/instance={RELEASE}"


def operator_settings() -> dict[str, str]:
    """What the chart tells the operator about its cache (templates/deployment.yaml)."""
    return {
        "MLFLOW_OPERATOR_MODEL_CACHE_URL": f"http://{FULLNAME}-model-cache.{NAMESPACE}.svc:{PORT}",
        "MLFLOW_OPERATOR_MODEL_CACHE_NAMESPACE": NAMESPACE,
        "MLFLOW_OPERATOR_MODEL_CACHE_SELECTOR": SELECTOR,
    }


def install(cluster: KubeCluster, node: NodeInfo) -> None:
    """The chart's DaemonSet and Service, rendered as `helm install` would, on the real node
    only (the KWOK nodes' pods would be simulated), in a namespace enforcing PodSecurity
    restricted: the cache needs no more than the serving pods do."""
    repository, tag = node.images["operator"].rsplit(":", 1)
    values: dict[str, Any] = {
        "image": {"repository": repository, "tag": tag, "pullPolicy": "Never"},
        "modelCache": {
            "enabled": True,
            "nodeSelector": node.placement["nodeSelector"],
            "tolerations": node.placement["tolerations"],
        },
    }
    rendered = helm(
        "template", RELEASE, str(CHART), "--namespace", NAMESPACE, *value_args(values),
        "--show-only", "templates/model-cache.yaml",
    ).stdout  # fmt: skip
    if cluster.kubectl("get", "namespace", NAMESPACE, check=False).returncode != 0:
        cluster.kubectl("create", "namespace", NAMESPACE)
        cluster.kubectl(
            "label", "namespace", NAMESPACE, "pod-security.kubernetes.io/enforce=restricted"
        )
    cluster.apply([doc for doc in yaml.safe_load_all(rendered) if doc])
    cluster.kubectl(
        "-n", NAMESPACE, "rollout", "status", f"daemonset/{FULLNAME}-model-cache", "--timeout=120s"
    )


def pod_address(cluster: KubeCluster) -> str:
    pods = get_json(cluster, "-n", NAMESPACE, "pods", "-l", SELECTOR)["items"]
    (pod,) = pods
    return str(pod["status"]["podIP"])


def scrape(cluster: KubeCluster) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """The cache pod's /metrics: (sample name, sorted labels) -> value."""
    session = requests.Session()
    session.trust_env = False
    text = session.get(f"http://{pod_address(cluster)}:{PORT}/metrics", timeout=10).text
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def counted(
    samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str
) -> float:
    """The sum of a counter's samples whose labels include `labels`."""
    return sum(
        value
        for (sample, found), value in samples.items()
        if sample == name and labels.items() <= dict(found).items()
    )
