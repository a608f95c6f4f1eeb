"""Canaries of a bad version, aborted on the real node: how fast, and how much traffic saw it.

    .venv/bin/python -m tests.bench.bench_canary [--canaries 20]

Runs the real pieces (tests/bench/world.py): a `batched` ModelDeployment of the iris model with
2 stable pods and `strategy: Canary` (first step 10%, i.e. 1 canary pod: 33% of the
connections; analysis every 5 s, after 100 canary answers, at most 5 points more failures than
the stable pods). Requests go to its Service from a thread, 20/s, a new connection each, every
fifth one with a row the bad version cannot score. Each round registers a new bad version
(models from code: it fails those requests with 400 as MLflow does, and answers the others with
class 7), moves the alias to it, and measures, from the answers the callers got and the
ModelDeployment's status read every 0.2 s:

- abort latency: first failed answer of the bad version -> status says CanaryAborted;
- exposed share: answers that came from the bad version / all answers, from the alias move to
  the abort;
- verdict tag: status says CanaryAborted -> MLflow shows the abort on the version's write-back
  tag (read every 0.05 s; the operator writes it in the background after the status).

Prints numbers; nothing here passes or fails.
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

from tests.bench.world import BenchWorld, bench_world, percentile, wait
from tests.e2e.modeldeployments import model_deployment
from tests.e2e.traffic import Traffic, from_failing_version

NAMESPACE = "bench-canary"
NAME = "canaried"
MODEL = "bench-canary"
ROLLOUT = {
    "strategy": "Canary",
    "canary": {
        "steps": [{"weight": 10, "pause": "5s"}],
        "analysis": {"interval": "5s", "minRequests": 100, "maxErrorRate": 0.05,
                     "maxP99LatencyRatio": 20},
    },
}  # fmt: skip


def aborted(world: BenchWorld, version: str) -> bool:
    status = world.get(NAMESPACE, "mdep", NAME).get("status") or {}
    rollout = status.get("rollout") or {}
    return bool(rollout.get("version") == version and rollout.get("phase") == "Aborted")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--canaries", type=int, default=20)
    args = parser.parse_args()
    with bench_world("bench-canary-") as world:
        run(world, args.canaries)


def run(world: BenchWorld, canaries: int) -> None:
    v1 = world.registry.log_version(MODEL)
    world.registry.set_alias(MODEL, "champion", v1.version)
    world.cluster.kubectl("create", "namespace", NAMESPACE)
    serving: dict[str, Any] = {
        "runtime": "batched",
        "replicas": 2,
        "podTemplate": dict(world.cluster.node.placement),  # type: ignore[union-attr]
    }
    world.cluster.apply(
        model_deployment(
            NAME, NAMESPACE, MODEL, world.tracking_uri, serving=serving, rollout=ROLLOUT
        )
    )
    wait(
        lambda: (
            (world.get(NAMESPACE, "mdep", NAME)["status"] or {}).get("servingVersion") == v1.version
        ),
        300,
        "v1 served",
    )
    url = world.service_url(NAMESPACE, NAME)
    latencies: list[float] = []
    shares: list[float] = []
    tag_delays: list[float] = []
    key = f"mlflow-operator.{NAMESPACE}.{NAME}"
    with Traffic(url) as traffic:
        for n in range(canaries):
            bad = world.registry.log_failing_version(MODEL)
            moved = time.monotonic()
            world.registry.set_alias(MODEL, "champion", bad)
            wait(lambda: aborted(world, bad), 300, f"the canary of version {bad} aborted")  # noqa: B023
            done = time.monotonic()
            while "canary aborted" not in (
                world.registry.get_version(MODEL, bad).tags.get(key) or ""
            ):
                if time.monotonic() - done > 60:
                    raise RuntimeError(f"no abort tag on version {bad} after 60s")
                time.sleep(0.05)
            tag_delays.append(time.monotonic() - done)
            during = [a for a in traffic.since(moved) if a[0] <= done]
            exposed = [a for a in during if from_failing_version(a)]
            first_failure = next(t for t, code, _ in during if code != 200)
            latencies.append(done - first_failure)
            shares.append(len(exposed) / len(during))
            print(
                f"canary {n + 1} (version {bad}): first failed answer "
                f"{first_failure - moved:.1f}s after the alias move, aborted "
                f"{latencies[-1]:.1f}s after it; {len(exposed)} of {len(during)} answers "
                f"({100 * shares[-1]:.0f}%) from the bad version; tag {tag_delays[-1]:.2f}s "
                "after the status",
                flush=True,
            )
            # the canary's pods are gone before the next one starts
            wait(
                lambda: (
                    not world.get(NAMESPACE, "pods", "-l", "mlflowops.dev/track=canary")["items"]
                ),
                120,
                "the canary pods gone",
            )
    print(
        f"\n{canaries} canaries of a version failing 20% of the requests, first step 33% of "
        f"the pods (1 of 3):\n"
        f"  abort latency (first failed answer -> CanaryAborted)  "
        f"p50 {statistics.median(latencies):.1f}s  p99 {percentile(latencies, 0.99):.1f}s  "
        f"max {max(latencies):.1f}s\n"
        f"  answers from the bad version before the abort  "
        f"p50 {100 * statistics.median(shares):.0f}%  p99 {100 * percentile(shares, 0.99):.0f}%\n"
        f"  status shows the abort -> MLflow shows the verdict tag  "
        f"p50 {statistics.median(tag_delays):.2f}s  p99 {percentile(tag_delays, 0.99):.2f}s  "
        f"max {max(tag_delays):.2f}s"
    )


if __name__ == "__main__":
    main()
