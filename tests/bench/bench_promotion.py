"""Promotion-to-rollout latency, MLflow requests per interval, and operator memory at scale.

    .venv/bin/python -m tests.bench.bench_promotion [--promotions 10] [--scales 10,100,1000]
        [--follow alias|selector]

Runs the real pieces: the local control plane (KWOK pods), MLflow on PostgreSQL and MinIO,
and `mlflow-operator run` as a process. Prints numbers; nothing here passes or fails.

- Latency: an alias is moved N times; from the move to the Deployment's pod template pinning
  the new version (rollout started) and to the ModelDeployment being Ready on it. Once with
  polling only (pollInterval 5s), once with MLflow's webhook (pollInterval 10m).
- Requests: N ModelDeployments (replicas 0) follow 10 registered models through a counting
  proxy in front of MLflow; GET requests in 3 poll intervals, against a naive poller that asks
  `registered-models/alias` once per ModelDeployment per interval, timed against the same
  server in the same run.
- Memory: the operator's RSS (process group) after the N ModelDeployments are Ready.
- `--follow selector`: the same with ModelDeployments that follow `spec.model.selector`
  (version tags stage=prod and semver ^1) instead of the alias.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import requests

from mlflow_operator.registry.client import RegistryClient
from mlflow_operator.registry.webhook import EVENTS
from tests.cluster.launcher import ControlPlane, KubeCluster
from tests.e2e.modeldeployments import is_ready_on, model_deployment, template_version
from tests.e2e.operator_process import OperatorProcess
from tests.mlflowstack import stack as stack_module
from tests.mlflowstack.models import ModelRegistry
from tests.support.counting_proxy import CountingProxy

ROOT = Path(__file__).resolve().parents[2]
MODELS = 10
POLL = 5.0


def wait(check: Any, timeout: float, interval: float = 0.02) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        try:
            if check():
                return time.monotonic() - started
        except Exception:  # noqa: BLE001, S110  (not there yet)
            pass
        time.sleep(interval)
    raise TimeoutError("benchmark step did not finish")


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def promotions(
    cluster: KubeCluster, registry: ModelRegistry, tracking_uri: str, name: str, poll: str, n: int
) -> tuple[list[float], list[float]]:
    ns = f"bench-{name}"
    cluster.kubectl("create", "namespace", ns)
    model = f"bench-{name}"
    first = registry.log_version(model)
    registry.set_alias(model, "champion", first.version)
    cluster.apply(
        model_deployment(name, ns, model, tracking_uri, poll=poll, serving={"replicas": 1})
    )
    wait(lambda: is_ready_on(cluster, ns, name, first.version), 120)
    versions = [registry.log_version(model).version for _ in range(n)]
    started_lat, ready_lat = [], []
    phase = random.Random(0)
    for version in versions:
        # Each wait ends right after a poll; a random pause puts the next move at a random
        # point of the poll interval, as a user's move would be.
        time.sleep(1 + phase.uniform(0, POLL))
        moved = time.monotonic()
        registry.set_alias(model, "champion", version)
        wait(lambda v=version: template_version(cluster, ns, name) == v, 60)
        started_lat.append(time.monotonic() - moved)
        wait(lambda v=version: is_ready_on(cluster, ns, name, v), 60)
        ready_lat.append(time.monotonic() - moved)
    return started_lat, ready_lat


def naive_round_seconds(tracking_uri: str, models: list[str], deployments: int) -> float:
    """One interval of a one-request-per-ModelDeployment poller (keep-alive, sequential)."""
    session = requests.Session()
    started = time.monotonic()
    for i in range(deployments):
        session.get(
            f"{tracking_uri}/api/2.0/mlflow/registered-models/alias",
            params={"name": models[i % len(models)], "alias": "champion"},
            timeout=30,
        ).raise_for_status()
    return time.monotonic() - started


def operator_rss_mib(operator: OperatorProcess, field: str = "VmRSS") -> float:
    """The operator process's resident memory now (VmRSS) or at its highest (VmHWM)."""
    assert operator.process is not None
    status = Path(f"/proc/{operator.process.pid}/status").read_text()
    kib = next(int(line.split()[1]) for line in status.splitlines() if line.startswith(field))
    return kib / 1024


SELECTOR = {"selector": {"tags": {"stage": "prod"}, "semver": "^1"}}


def scale(
    cluster: KubeCluster,
    registry: ModelRegistry,
    tracking_uri: str,
    operator: OperatorProcess,
    scales: list[int],
    follow: str = "alias",
) -> list[dict[str, Any]]:
    models = [f"bench-{follow}-{i}" for i in range(MODELS)]
    for model in models:
        version = registry.log_version(model).version
        registry.set_alias(model, "champion", version)
        registry.tag_version(model, version, "stage", "prod")
        registry.tag_version(model, version, "semver", "1.0.0")
    selector = SELECTOR if follow == "selector" else None
    proxy = CountingProxy(tracking_uri).start()
    ns = f"bench-scale-{follow}"
    cluster.kubectl("create", "namespace", ns)
    rows = []
    created = 0
    try:
        for target in scales:
            batch = [
                model_deployment(f"md-{i}", ns, models[i % MODELS], proxy.url, poll=f"{POLL:.0f}s",
                                 serving={"replicas": 0}, selector=selector)
                for i in range(created, target)
            ]  # fmt: skip
            for start in range(0, len(batch), 100):
                cluster.kubectl("apply", "--server-side", "-f", "-",
                                input=json.dumps({"apiVersion": "v1", "kind": "List",
                                                  "items": batch[start:start + 100]}))  # fmt: skip
            created = target
            settle = time.monotonic()

            def all_ready(expected: int = created) -> bool:
                items = json.loads(cluster.kubectl("get", "mdep", "-n", ns, "-o", "json").stdout)[
                    "items"
                ]
                return len(items) == expected and all(
                    any(c["type"] == "Ready" and c["status"] == "True"
                        for c in i.get("status", {}).get("conditions", []))
                    for i in items
                )  # fmt: skip

            wait(all_ready, 900, interval=2)
            settled = time.monotonic() - settle
            time.sleep(POLL)
            before = proxy.total("GET ")
            time.sleep(3 * POLL)
            per_interval = (proxy.total("GET ") - before) / 3
            naive = naive_round_seconds(tracking_uri, models, target)
            rows.append({
                "follow": follow, "deployments": target, "ready_after_s": round(settled, 1),
                "operator_get_per_interval": per_interval, "naive_get_per_interval": target,
                "naive_round_s": round(naive, 2),
                "operator_rss_mib": round(operator_rss_mib(operator), 1),
            })  # fmt: skip
            print(json.dumps(rows[-1]), flush=True)
    finally:
        proxy.stop()
        cluster.kubectl("delete", "namespace", ns, "--wait=false")  # stop following
    return rows


def latency(cluster: KubeCluster, registry: ModelRegistry, uri: str, n: int, hook: Any) -> None:
    poll_started, poll_ready = promotions(cluster, registry, uri, "polled", "5s", n)
    asyncio.run(hook())
    time.sleep(2)
    hook_started, hook_ready = promotions(cluster, registry, uri, "hooked", "10m", n)
    for label, values in (
        ("polling 5s: move -> rollout started", poll_started),
        ("polling 5s: move -> Ready on new version", poll_ready),
        ("webhook: move -> rollout started", hook_started),
        ("webhook: move -> Ready on new version", hook_ready),
    ):
        print(f"{label}: p50 {statistics.median(values):.2f}s "
              f"p99 {pct(values, 0.99):.2f}s (n={len(values)})")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--promotions", type=int, default=10)
    parser.add_argument("--scales", default="10,100,1000", help="empty: latency only")
    # one per run: deleting 1,000 ModelDeployments loads the operator for minutes (kopf
    # retries each Event into the terminating namespace), which would skew the next run
    parser.add_argument("--follow", default="alias", choices=["alias", "selector"])
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="bench-promotion-"))
    plane = ControlPlane()
    try:
        cluster = plane.start()
        cluster.kubectl("apply", "--server-side", "-f", str(ROOT / "crds"))
        with stack_module.running(workdir / "mlflow") as stack:
            registry = ModelRegistry(stack.tracking_uri)
            operator = OperatorProcess(cluster.kubeconfig, workdir).start()
            try:

                async def hook() -> None:
                    client = RegistryClient(stack.tracking_uri)
                    await client.create_webhook("bench", operator.webhook_url, list(EVENTS),
                                                operator.webhook_secret)  # fmt: skip
                    await client.close()

                if args.promotions:
                    latency(cluster, registry, stack.tracking_uri, args.promotions, hook)
                scales = [int(s) for s in args.scales.split(",") if s]
                scale(cluster, registry, stack.tracking_uri, operator, scales, args.follow)
            finally:
                operator.stop()
    finally:
        plane.cleanup()


if __name__ == "__main__":
    main()
