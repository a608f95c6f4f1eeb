"""The node-local model cache on the real node (serving.cache): the chart's cache DaemonSet
from the operator image built here, serving pods from the serving image loading real models
from the local MLflow (PostgreSQL, MinIO) through it. Bytes are counted by the cache pod, which
is the only thing on the node that talks to MLflow for these pods, and compared with the sizes
MLflow itself lists for each version."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest
import requests

from tests.cluster.launcher import KubeCluster
from tests.cluster.realnode import NodeInfo
from tests.e2e import model_cache
from tests.e2e.kube import get_json
from tests.e2e.modeldeployments import (
    RealPodsEnv,
    condition,
    events,
    is_ready_on,
    model_deployment,
    status,
)
from tests.e2e.test_modeldeployment_pods import (
    ROLLOUT_TIMEOUT,
    eventually_served,
    on_real_node,
    service_url,
)
from tests.mlflowstack.models import DIFFERENT_C
from tests.support.polling import eventually

pytestmark = [pytest.mark.e2e, pytest.mark.integration]
UPSTREAM_BYTES = "mlflow_model_cache_upstream_bytes_total"
SERVED_BYTES = "mlflow_model_cache_served_bytes_total"


@pytest.fixture(scope="module")
def cache_installed(kube_cluster: KubeCluster, real_node: NodeInfo) -> Iterator[None]:
    model_cache.install(kube_cluster, real_node)
    yield
    kube_cluster.kubectl("delete", "namespace", model_cache.NAMESPACE, "--wait=false", check=False)


def version_bytes(tracking_uri: str, model: str, version: str) -> int:
    """What MLflow lists for the version's artifacts: the bytes one copy of it is."""
    session = requests.Session()
    session.trust_env = False
    uri = session.get(
        f"{tracking_uri}/api/2.0/mlflow/model-versions/get-download-uri",
        params={"name": model, "version": version},
        timeout=10,
    ).json()["artifact_uri"]
    assert uri.startswith("mlflow-artifacts:/"), uri

    def listed(path: str) -> int:
        files = session.get(
            f"{tracking_uri}/api/2.0/mlflow-artifacts/artifacts", params={"path": path}, timeout=10
        ).json()["files"]
        return sum(
            listed(f"{path}/{f['path'].rsplit('/', 1)[-1]}") if f["is_dir"] else int(f["file_size"])
            for f in files
        )

    return listed(uri.removeprefix("mlflow-artifacts:/").strip("/"))


def pods_of(cluster: KubeCluster, namespace: str, version: str) -> list[dict[str, Any]]:
    selector = f"mlflowops.dev/modeldeployment=cached,mlflowops.dev/model-version={version}"
    items: list[dict[str, Any]] = get_json(cluster, "-n", namespace, "pods", "-l", selector)[
        "items"
    ]
    return items


def created(pod: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(pod["metadata"]["creationTimestamp"])


def test_an_alias_move_is_prefetched_before_any_pod_and_a_rollback_downloads_nothing(
    cache_installed: None, pods_env: RealPodsEnv
) -> None:
    ns, registry, model, cluster = (
        pods_env.namespace, pods_env.registry, pods_env.model, pods_env.cluster,
    )  # fmt: skip
    local_uri = pods_env.stack.tracking_uri
    v1 = registry.log_version(model)
    v2 = registry.log_version(model, c=DIFFERENT_C)
    size = {v.version: version_bytes(local_uri, model, v.version) for v in (v1, v2)}
    registry.set_alias(model, "champion", v1.version)
    serving = on_real_node(pods_env.node, replicas=2, cache={"enabled": True, "keepVersions": 3})
    cluster.apply(model_deployment("cached", ns, model, pods_env.tracking_uri, serving=serving))
    eventually(
        lambda: is_ready_on(cluster, ns, "cached", v1.version),
        timeout=ROLLOUT_TIMEOUT, what="v1 on two pods, through the cache",
    )  # fmt: skip
    url = service_url(cluster, ns, "cached")
    eventually_served(url, v1)

    def downloaded(version: str) -> float:
        return model_cache.counted(
            model_cache.scrape(cluster), UPSTREAM_BYTES, model=model, version=version
        )

    # two pods on one node: one copy downloaded from MLflow
    assert downloaded(v1.version) == size[v1.version]
    print(f"model cache: v1 is {size[v1.version]} bytes, downloaded once for 2 pods")

    registry.set_alias(model, "champion", v2.version)
    moved = time.monotonic()
    seen_running = False
    # every pod of v2 ever seen, by uid: none may be older than the prefetch's end. Judged by
    # the recorded end, not by the status read next to the pod list: the operator acts on a
    # finished prefetch first and writes status after, so a read can be a moment behind.
    first_seen: dict[str, datetime] = {}
    while True:
        st = status(cluster, ns, "cached")
        prefetch = st.get("prefetch") or {}
        if prefetch.get("version") == v2.version and prefetch.get("phase") == "Running":
            seen_running = True
            assert condition(st, "Progressing")["reason"] == "Prefetching"
        if prefetch.get("version") == v2.version and prefetch.get("phase") != "Running":
            break
        first_seen.update(
            {p["metadata"]["uid"]: created(p) for p in pods_of(cluster, ns, v2.version)}
        )
        assert time.monotonic() - moved < 120, f"no prefetch of v2 within 120 s: {st}"
        time.sleep(0.2)
    prefetched = time.monotonic() - moved
    assert prefetch["phase"] == "Done", prefetch
    (node,) = prefetch["nodes"]
    assert node["phase"] == "Done"
    assert node["bytes"] == size[v2.version]
    finished = datetime.fromisoformat(prefetch["finished"])
    eventually(
        lambda: is_ready_on(cluster, ns, "cached", v2.version),
        timeout=ROLLOUT_TIMEOUT, what="v2 after its prefetch",
    )  # fmt: skip
    eventually_served(url, v2)
    first_seen.update({p["metadata"]["uid"]: created(p) for p in pods_of(cluster, ns, v2.version)})
    first_pod = min(first_seen.values())
    # creationTimestamp has whole seconds: the first pod is no older than the prefetch's end
    assert first_pod >= finished.replace(microsecond=0), (first_pod, finished)
    assert downloaded(v2.version) == size[v2.version]  # the prefetch's copy, and no other
    reasons = [e["reason"] for e in events(cluster, ns, "cached")]
    assert "Prefetched" in reasons
    ready = time.monotonic() - moved
    print(f"model cache: v2 prefetched {prefetched:.1f}s after the alias move "
          f"(Running seen: {seen_running}), Ready {ready:.1f}s after it")  # fmt: skip

    # the registry moves back: a rollback to a version the node has, from its disk
    samples = model_cache.scrape(cluster)
    from_disk = model_cache.counted(
        samples, SERVED_BYTES, model=model, version=v1.version, source="cache"
    )
    registry.set_alias(model, "champion", v1.version)
    back = time.monotonic()
    eventually(
        lambda: is_ready_on(cluster, ns, "cached", v1.version),
        timeout=ROLLOUT_TIMEOUT, what="back on v1",
    )  # fmt: skip
    eventually_served(url, v1)
    samples = model_cache.scrape(cluster)
    assert downloaded(v1.version) == size[v1.version]  # nothing more from MLflow
    served = model_cache.counted(
        samples, SERVED_BYTES, model=model, version=v1.version, source="cache"
    )
    assert served - from_disk >= 2 * size[v1.version]  # both new pods loaded it, from disk
    took, from_node = time.monotonic() - back, served - from_disk
    print(f"model cache: rollback to v1 Ready in {took:.1f}s, 0 bytes downloaded, "
          f"{from_node:.0f} bytes served from the node's disk")  # fmt: skip
