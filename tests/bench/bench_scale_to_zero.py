"""Cold activations of a ModelDeployment scaled to zero, on the real node.

    .venv/bin/python -m tests.bench.bench_scale_to_zero [--activations 20] [--burst 50]

Runs the real pieces: the local control plane with its real node (containerd, kubelet,
kube-proxy), MLflow on PostgreSQL and MinIO, and `mlflow-operator run` as a process with its
activator. A `batched` ModelDeployment of the iris model with `minReplicas: 0` and
`scaleDownDelay: 10s` is left idle until it has no pod; then one request (or a burst) is sent
to its Service's ClusterIP, and the time to the answer is measured: a cold activation. Each
time, the pod's own start is read from the pod (created -> its container started -> Ready)
to compare with. Prints numbers; nothing here passes or fails.
"""

from __future__ import annotations

import argparse
import json
import statistics
import threading
import time
from datetime import datetime
from typing import Any

import requests

from tests.bench.world import bench_world, percentile, wait
from tests.cluster.launcher import KubeCluster
from tests.e2e.modeldeployments import model_deployment
from tests.mlflowstack.models import ModelRegistry, sample_input

NAMESPACE = "bench-zero"
NAME = "sleepy"
MODEL = "bench-scale-to-zero"


def get(cluster: KubeCluster, *args: str) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(
        cluster.kubectl("get", "-n", NAMESPACE, *args, "-o", "json").stdout
    )
    return result


def pods(cluster: KubeCluster) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = get(
        cluster, "pods", "-l", f"mlflowops.dev/modeldeployment={NAME}"
    )["items"]
    return found


def at_zero(cluster: KubeCluster) -> bool:
    scaling = (get(cluster, "mdep", NAME).get("status") or {}).get("autoscaling") or {}
    return scaling.get("desiredReplicas") == 0 and pods(cluster) == []


def is_ready(pod: dict[str, Any]) -> bool:
    return any(
        c["type"] == "Ready" and c["status"] == "True" for c in pod["status"].get("conditions", [])
    )


def pod_start(pod: dict[str, Any]) -> tuple[float, float]:
    """(created -> container started, created -> Ready) in seconds, as the pod records them
    (whole seconds: the API's timestamps)."""

    def parse(stamp: str) -> datetime:
        return datetime.fromisoformat(stamp.replace("Z", "+00:00"))

    created = parse(pod["metadata"]["creationTimestamp"])
    started = parse(pod["status"]["containerStatuses"][0]["state"]["running"]["startedAt"])
    ready = next(
        parse(c["lastTransitionTime"]) for c in pod["status"]["conditions"] if c["type"] == "Ready"
    )
    return (started - created).total_seconds(), (ready - created).total_seconds()


def ask(url: str, body: dict[str, Any]) -> tuple[bool, float]:
    session = requests.Session()
    session.trust_env = False
    started = time.monotonic()
    try:
        ok = session.post(f"{url}/invocations", json=body, timeout=600).ok
    except requests.RequestException:
        ok = False
    return ok, time.monotonic() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--activations", type=int, default=20)
    parser.add_argument("--burst", type=int, default=1, help="requests sent at once each time")
    args = parser.parse_args()
    with bench_world("bench-scale-to-zero-") as world:
        run(world.cluster, world.registry, world.tracking_uri, args.activations, args.burst)


def run(
    cluster: KubeCluster, registry: ModelRegistry, tracking_uri: str, activations: int, burst: int
) -> None:
    v1 = registry.log_version(MODEL)
    registry.set_alias(MODEL, "champion", v1.version)
    cluster.kubectl("create", "namespace", NAMESPACE)
    serving = {
        "runtime": "batched",
        "podTemplate": dict(cluster.node.placement),  # type: ignore[union-attr]
        "autoscaling": {
            "minReplicas": 0, "maxReplicas": 1, "target": {"concurrency": 64},
            "scaleDownDelay": "10s",
        },
    }  # fmt: skip
    cluster.apply(model_deployment(NAME, NAMESPACE, MODEL, tracking_uri, serving=serving))
    wait(lambda: get(cluster, "service", NAME), 120, "the Service")
    service = get(cluster, "service", NAME)
    url = f"http://{service['spec']['clusterIP']}:{service['spec']['ports'][0]['port']}"
    body = {"dataframe_split": json.loads(sample_input().to_json(orient="split", index=False))}
    firsts: list[float] = []
    starts: list[tuple[float, float]] = []
    failures = 0
    for n in range(activations):
        wait(lambda: at_zero(cluster), 300, "no pod left")
        results: list[tuple[bool, float]] = []

        def one() -> None:
            results.append(ask(url, body))  # noqa: B023  (joined before the next round)

        threads = [threading.Thread(target=one) for _ in range(burst)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        failures += sum(1 for ok, _ in results if not ok)
        first = min(seconds for _, seconds in results)
        firsts.append(first)
        wait(lambda: is_ready(pods(cluster)[0]), 120, "the pod Ready")
        starts.append(pod_start(pods(cluster)[0]))
        last = max(seconds for _, seconds in results)
        print(
            f"activation {n + 1}: first answer {first:.2f}s, last {last:.2f}s; pod created -> "
            f"started {starts[-1][0]:.0f}s, -> Ready {starts[-1][1]:.0f}s",
            flush=True,
        )
    ready = [r for _, r in starts]
    print(
        f"\n{activations} cold activations, {burst} request(s) each, {failures} failed:\n"
        f"  first answer  p50 {statistics.median(firsts):.2f}s  "
        f"p99 {percentile(firsts, 0.99):.2f}s  max {max(firsts):.2f}s\n"
        f"  pod created -> Ready (kubelet's probe, whole seconds)  "
        f"p50 {statistics.median(ready):.0f}s  p99 {percentile(ready, 0.99):.0f}s"
    )


if __name__ == "__main__":
    main()
