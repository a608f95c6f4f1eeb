"""Benchmark of the serving runtimes: cold start, throughput and latency. Prints numbers.

    .venv/bin/python -m tests.bench.bench_serving [--seconds 5] [--levels 1,4,16,64]

Same model (LogisticRegression on iris, 4 double columns, single-row requests), same machine,
one server at a time (each alone on the CPUs while it starts and while it is measured):

- `mlflow models serve -w 1 --env-manager local` (MLflow's scoring server, /invocations)
- MLServer 1.7.1 + mlserver-mlflow, V2 infer, without and with adaptive batching (its batcher
  only wraps the V2 path), from its own virtualenv (serving_mlserver.py)
- `mlflow-operator-serve` (batched) with 1 worker, and with --workers auto (the CPU limit)

The load generator runs on the same machine and competes for the CPUs, as a sidecar would.
Cold start: from process start to the first 200 on the readiness endpoint.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from tests.bench.serving_load import LoadResult, run_load
from tests.bench.serving_servers import (
    Server,
    save_iris_classifier,
    start_batched,
    start_mlflow_serve,
    wait_ready,
)

COLUMNS = ["sepal length (cm)", "sepal width (cm)", "petal length (cm)", "petal width (cm)"]
ROW = [5.1, 3.5, 1.4, 0.2]
MLFLOW_BODY = json.dumps({"dataframe_split": {"columns": COLUMNS, "data": [ROW]}}).encode()


@dataclass
class Contender:
    label: str
    start: Callable[[Path, Path], Server]
    ready_path: str = "/ping"
    infer_path: str = "/invocations"
    body: bytes = MLFLOW_BODY
    cold_starts: list[float] = field(default_factory=list)
    results: dict[int, LoadResult] = field(default_factory=dict)


def contenders(include_mlserver: bool) -> list[Contender]:
    found = [
        Contender("mlflow models serve -w 1", lambda m, w: start_mlflow_serve(str(m), w)),
    ]
    if include_mlserver:
        from tests.bench.serving_mlserver import start_mlserver, v2_body

        for batching in (False, True):
            found.append(
                Contender(
                    "MLServer V2 batching" if batching else "MLServer V2",
                    lambda m, w, b=batching: start_mlserver(m, w, b),  # type: ignore[misc]
                    ready_path="/v2/models/iris/ready",
                    infer_path="/v2/models/iris/infer",
                    body=v2_body(COLUMNS, ROW),
                )
            )
    found += [
        Contender("batched -w 1", lambda m, w: start_batched(str(m), w, ["--workers", "1"])),
        Contender("batched -w auto", lambda m, w: start_batched(str(m), w, ["--workers", "auto"])),
    ]
    return found


def measure(
    contender: Contender,
    model: Path,
    workdir: Path,
    *,
    levels: list[int],
    seconds: float,
    starts: int,
) -> None:
    for attempt in range(starts):
        started = time.monotonic()
        server = contender.start(model, workdir)
        try:
            wait_ready(server, path=contender.ready_path)
            contender.cold_starts.append(time.monotonic() - started)
            if attempt < starts - 1:
                continue
            url = f"{server.base_url}{contender.infer_path}"
            for level in levels:
                contender.results[level] = run_load(
                    url, contender.body, "application/json", concurrency=level, seconds=seconds
                )
        finally:
            server.stop()


def report(all_: list[Contender], levels: list[int]) -> None:
    print("\ncold start to ready (s): median of runs [runs]")
    for c in all_:
        runs = sorted(c.cold_starts)
        print(f"  {c.label:28s} {runs[len(runs) // 2]:6.2f}  {[round(r, 2) for r in runs]}")
    print("\nthroughput req/s | p50 ms | p99 ms | errors")
    header = "  " + " " * 28 + "".join(f"{'c=' + str(level):>26s}" for level in levels)
    print(header)
    for c in all_:
        cells = "".join(
            f"{r.rps:9.0f} {r.p50_ms:7.1f} {r.p99_ms:7.1f}{'!' if r.errors else ' '}"
            for r in (c.results[level] for level in levels)
        )
        print(f"  {c.label:28s}{cells}")
    by = {c.label: c for c in all_}
    ours = by.get("batched -w 1")
    if ours is None:
        return
    print(
        "\nratios (batched -w 1 / other): throughput per concurrency; cold start (lower is better)"
    )
    for c in all_:
        if c is ours:
            continue
        tp = "  ".join(
            f"c={level}: {ours.results[level].rps / c.results[level].rps:5.2f}x" for level in levels
        )
        cold = (
            sorted(ours.cold_starts)[len(ours.cold_starts) // 2]
            / sorted(c.cold_starts)[len(c.cold_starts) // 2]
        )
        print(f"  vs {c.label:25s} {tp}   cold start {cold:4.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="measured seconds per level")
    parser.add_argument("--levels", default="1,4,16,64")
    parser.add_argument("--cold-starts", type=int, default=3, help="starts per server")
    parser.add_argument("--no-mlserver", action="store_true")
    parser.add_argument(
        "--reverse",
        action="store_true",
        help="measure in reverse order (on a machine whose load drifts, run both ways)",
    )
    args = parser.parse_args()
    levels = [int(level) for level in args.levels.split(",")]
    print(f"load average before: {os.getloadavg()}; CPUs: {os.cpu_count()}")
    with tempfile.TemporaryDirectory(prefix="bench-serving-") as tmp:
        workdir = Path(tmp)
        model = save_iris_classifier(workdir / "iris")
        all_ = contenders(not args.no_mlserver)
        for contender in reversed(all_) if args.reverse else all_:
            print(f"measuring {contender.label} ...", flush=True)
            measure(
                contender,
                model,
                workdir,
                levels=levels,
                seconds=args.seconds,
                starts=args.cold_starts,
            )
    print(f"load average after: {os.getloadavg()}")
    report(all_, levels)


if __name__ == "__main__":
    main()
