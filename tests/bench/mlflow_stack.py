"""Time the local MLflow stack: start, log+register one model, `mlflow models serve` to ready.

    .venv/bin/python -m tests.bench.mlflow_stack [--runs 3]

Each run starts a fresh stack (new PostgreSQL cluster, MinIO data dir and tracking server),
logs and registers one iris model, starts `mlflow models serve` for it and waits for /ping,
then stops everything. Prints one line per run and the medians. MinIO must be built already
(tests/mlflowstack/setup.sh); the numbers are "warm" in that sense.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from tests.mlflowstack import serving
from tests.mlflowstack import stack as stack_module
from tests.mlflowstack.models import ModelRegistry, sample_input
from tests.support.processes import PidRecord


def one_run(workdir: Path) -> dict[str, float]:
    started = time.monotonic()
    with stack_module.running(workdir) as stack:
        stack_start = time.monotonic() - started
        phases = {f"{name.replace(' ', '_')}_s": t for name, t in stack.phases.items()}

        registry = ModelRegistry(stack.tracking_uri)
        registry.log_version("warmup")  # first log pays mlflow's lazy imports in this process
        started = time.monotonic()
        trained = registry.log_version("bench-model")
        log_register = time.monotonic() - started

        started = time.monotonic()
        server = serving.start(trained.uri, stack.tracking_uri, workdir)
        try:
            server.wait_ready()
            serve_ready = time.monotonic() - started
            assert server.predict(sample_input()) == trained.predict()
        finally:
            server.stop()
        started = time.monotonic()
    stack_stop = time.monotonic() - started
    return {
        "stack_start_s": stack_start,
        **phases,
        "log_register_s": log_register,
        "serve_ready_s": serve_ready,
        "stack_stop_s": stack_stop,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    PidRecord.default().reap_stale()
    print(f"load average before: {Path('/proc/loadavg').read_text().strip()}")
    results = []
    for run in range(args.runs):
        with tempfile.TemporaryDirectory(prefix="mlflow-bench-") as tmp:
            result = one_run(Path(tmp))
        results.append(result)
        print(f"run {run + 1}: " + "  ".join(f"{k}={v:.1f}" for k, v in result.items()), flush=True)
    medians = {k: statistics.median(r[k] for r in results) for k in results[0]}
    print("median: " + "  ".join(f"{k}={v:.1f}" for k, v in medians.items()))
    print(f"load average after: {Path('/proc/loadavg').read_text().strip()}")


if __name__ == "__main__":
    main()
