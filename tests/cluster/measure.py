"""Measure the test cluster: start to ready, and memory (RSS) of the control plane at rest.

    .venv/bin/python -m tests.cluster.measure [--runs 3] [--rest 30]

The binary must be built (tests/cluster/build.sh): build time is measured separately.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from tests.cluster.launcher import running_cluster


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def measure_once(rest: float) -> tuple[float, dict[str, float]]:
    started = time.monotonic()
    with running_cluster() as cluster:
        ready = time.monotonic() - started
        time.sleep(rest)  # let start-up garbage be collected: "at rest" is what a session holds
        return ready, {p.name: rss_mib(p.pid) for p in cluster.processes}


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.cluster.measure")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--rest", type=float, default=30.0, help="seconds idle before RSS")
    args = parser.parse_args()
    starts, totals = [], []
    for run in range(args.runs):
        ready, rss = measure_once(args.rest)
        starts.append(ready)
        totals.append(sum(rss.values()))
        detail = ", ".join(f"{name} {mib:.0f}" for name, mib in rss.items())
        print(f"run {run + 1}: ready in {ready:.1f}s; RSS {totals[-1]:.0f} MiB ({detail})")
    print(
        f"start to ready: median {statistics.median(starts):.1f}s, max {max(starts):.1f}s; "
        f"RSS at rest: median {statistics.median(totals):.0f} MiB, max {max(totals):.0f} MiB"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
