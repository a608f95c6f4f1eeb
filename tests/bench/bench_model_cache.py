"""Alias move to Ready for a large model, with and without the node-local model cache.

    .venv/bin/python -m tests.bench.bench_model_cache [--size-mb 1024]

Runs the real pieces: the local control plane with its real node, MLflow on PostgreSQL and
MinIO, `mlflow-operator run` as a process, the chart's model cache DaemonSet from the operator
image built here, and serving pods of the serving image (runtime mlflow, one replica).
Prints numbers; nothing here passes or fails.

Two registered versions: `big` (a models-from-code pyfunc whose artifact is --size-mb of random
bytes, all read by load_context) and `tiny` (the same code, a 1 KiB artifact). For each of
cache off and cache on, one ModelDeployment goes tiny -> big (a rollout of a new version),
big -> tiny, tiny -> big again (the return to a version that served before: what a rollback
does). Each step is timed from the alias move to the ModelDeployment Ready on the version.

The floor is "process start + model load": the tiny version's time to Ready (scheduling, the
server's start, MLflow's import) plus the time the big model's load_context takes to read its
weights from the pod's disk (it prints it; read from the pod's log). The issue's goal: the
return to big with the cache on within 1.2x that floor, i.e. no download time in it.
"""

from __future__ import annotations

import argparse
import os
import re
import tempfile
import time
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

from tests.bench.world import BenchWorld, bench_world, wait
from tests.cluster.fixtures import create_namespace
from tests.e2e import model_cache
from tests.e2e.modeldeployments import is_ready_on, model_deployment, status

MODEL_CODE = """
import time

import mlflow
from mlflow.pyfunc import PythonModel


class Weighted(PythonModel):
    def load_context(self, context):
        started = time.perf_counter()
        size = 0
        with open(context.artifacts["weights"], "rb") as weights:
            while chunk := weights.read(1 << 24):
                size += len(chunk)
        print(f"bench-model: read {size} bytes in {time.perf_counter() - started:.3f}s",
              flush=True)
        self.size = size

    def predict(self, context, model_input, params=None):
        return [self.size] * len(model_input)


mlflow.models.set_model(Weighted())
"""
READ = re.compile(r"bench-model: read (\d+) bytes in ([0-9.]+)s")
TIMEOUT = 900.0


def log_weighted(world: BenchWorld, name: str, size: int) -> str:
    """A version whose artifact is `size` random bytes, all read when the model loads."""
    with tempfile.TemporaryDirectory() as tmp:
        weights = Path(tmp) / "weights.bin"
        with weights.open("wb") as out:
            left = size
            while left:
                chunk = os.urandom(min(left, 1 << 24))
                out.write(chunk)
                left -= len(chunk)
        return world.registry.log_code_version(
            name, MODEL_CODE, artifacts={"weights": str(weights)}
        )


def move_and_time(world: BenchWorld, ns: str, md: str, model: str, version: str) -> float:
    world.registry.set_alias(model, "champion", version)
    started = time.monotonic()
    wait(lambda: is_ready_on(world.cluster, ns, md, version), TIMEOUT, f"{md} on {version}")
    return time.monotonic() - started


def load_seconds(world: BenchWorld, ns: str, md: str) -> float:
    """What the big model's load_context took to read its weights, in the serving pod."""
    logs = world.cluster.kubectl(
        "-n", ns, "logs", "-l", f"mlflowops.dev/modeldeployment={md}", "--tail=-1"
    ).stdout
    found = READ.findall(logs)
    if not found:
        raise RuntimeError(f"no bench-model line in the logs of {md}")
    return float(found[-1][1])


def run(world: BenchWorld, size_mb: int) -> None:
    node = world.cluster.node
    assert node is not None
    model_cache.install(world.cluster, node)
    model = f"bench-cache-{uuid.uuid4().hex[:6]}"
    started = time.monotonic()
    big = log_weighted(world, model, size_mb * 1024 * 1024)
    print(f"logged a {size_mb} MiB model in {time.monotonic() - started:.1f}s")
    tiny = log_weighted(world, model, 1024)
    ns = create_namespace(world.cluster, "bench")
    results: dict[str, dict[str, float]] = {}
    for cached in (False, True):
        md = "cached" if cached else "direct"
        world.registry.set_alias(model, "champion", tiny)
        serving: dict[str, Any] = {
            "replicas": 1, "podTemplate": dict(node.placement),
            "cache": {"enabled": cached},
        }  # fmt: skip
        world.cluster.apply(model_deployment(md, ns, model, world.tracking_uri, serving=serving))
        wait(lambda md=md: is_ready_on(world.cluster, ns, md, tiny), TIMEOUT, f"{md} first")
        times = {"new version": move_and_time(world, ns, md, model, big)}
        times["load in pod"] = load_seconds(world, ns, md)
        if cached:
            prefetch = status(world.cluster, ns, md).get("prefetch") or {}
            times["prefetch"] = _seconds(prefetch)
        times["tiny"] = move_and_time(world, ns, md, model, tiny)
        times["return"] = move_and_time(world, ns, md, model, big)
        times["load in pod (return)"] = load_seconds(world, ns, md)
        results[md] = times
        world.cluster.kubectl("-n", ns, "delete", "mdep", md, "--wait=true")
    samples = model_cache.scrape(world.cluster)
    downloaded = model_cache.counted(
        samples, "mlflow_model_cache_upstream_bytes_total", model=model, version=big
    )

    print(f"\n{size_mb} MiB model, runtime mlflow, 1 replica, real node (2 cores); seconds "
          "from the alias move to Ready")  # fmt: skip
    print(f"{'':22} {'new version':>12} {'back to tiny':>13} {'return':>8} {'load in pod':>12}")
    for md, t in results.items():
        mode = "cache " + ("on" if md == "cached" else "off")
        print(f"{mode:22} {t['new version']:12.1f} {t['tiny']:13.1f} {t['return']:8.1f} "
              f"{t['load in pod']:12.1f}")  # fmt: skip
    on = results["cached"]
    floor = on["tiny"] + on["load in pod (return)"]
    print(f"\nprefetch of the new version (cache on): {on.get('prefetch', float('nan')):.1f}s")
    print(f"floor (tiny's time to Ready + the pod's read of the weights): {floor:.1f}s")
    print(f"return with the cache: {on['return']:.1f}s = {on['return'] / floor:.2f}x the floor "
          f"(goal <= 1.2x); without: {results['direct']['return']:.1f}s")  # fmt: skip
    print(f"bytes of the big version downloaded from MLflow by the node's cache: "
          f"{downloaded:.0f} ({downloaded / (size_mb * 1024 * 1024):.2f} copies)")  # fmt: skip


def _seconds(prefetch: dict[str, Any]) -> float:
    if not prefetch.get("finished"):
        return float("nan")
    took = datetime.fromisoformat(prefetch["finished"]) - datetime.fromisoformat(
        prefetch["started"]
    )
    return took.total_seconds()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=1024)
    args = parser.parse_args()
    with bench_world("bench-model-cache-") as world:
        run(world, args.size_mb)


if __name__ == "__main__":
    main()
