"""What monitoring costs callers: `mlflow-operator-serve` with no monitoring, --sample-rate 0.1
and 1, and --drift, on the same model and requests. Prints numbers; nothing here passes or
fails.

    .venv/bin/python -m tests.bench.bench_monitoring [--seconds 10] [--levels 1,16]

The local MLflow stack (PostgreSQL, MinIO, tracking server) runs on this machine; one iris
version per variant is registered so that each one's samples are counted in its own run.
Each server (one worker) is alone on the CPUs with the load generator, which competes for
them as a sidecar would, and is stopped with SIGTERM at the end, so that its last samples are
uploaded before they are counted. The machine's speed drifts by up to 2x over minutes (the
first server after the stack's start was measured at half the speed of the later ones): the
variants are measured in --rounds rounds, in turn, and every round is printed.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path

import mlflow
from prometheus_client.parser import text_string_to_metric_families

from tests.bench.bench_serving import MLFLOW_BODY
from tests.bench.serving_load import LoadResult, run_load
from tests.bench.serving_servers import Server, request, start_batched, wait_ready
from tests.mlflowstack import stack as stack_module
from tests.mlflowstack.models import ModelRegistry

VARIANTS = {
    "off": [],
    "sample 0.1": ["--sample-rate", "0.1"],
    "sample 1": ["--sample-rate", "1"],
    "drift": ["--drift"],
}


def samples_written(tracking_uri: str, run_id: str, version: str, into: Path) -> int:
    try:
        local = mlflow.artifacts.download_artifacts(
            run_id=run_id,
            artifact_path=f"predictions/{version}",
            dst_path=str(into),
            tracking_uri=tracking_uri,
        )
    except Exception:  # noqa: BLE001 - no sample written: the path does not exist
        return 0
    return sum(len(p.read_text().splitlines()) for p in Path(local).rglob("*.jsonl"))


def drift_rows(server: Server) -> dict[str, float]:
    """mlflow_serving_drift_rows_total by outcome."""
    text = request(server.port, "GET", "/metrics").body.decode()
    return {
        sample.labels["outcome"]: sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "mlflow_serving_drift_rows_total"
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--levels", default="1,16")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    levels = [int(x) for x in args.levels.split(",")]

    results: dict[tuple[int, str], dict[int, LoadResult]] = {}
    written: dict[str, int] = {}
    binned: dict[str, list[dict[str, float]]] = {}
    with (
        tempfile.TemporaryDirectory(prefix="bench-monitoring-") as work,
        stack_module.running(Path(work) / "stack") as stack,
    ):
        registry = ModelRegistry(stack.tracking_uri)
        versions = {
            name: registry.log_version(f"bench-monitoring-{i}") for i, name in enumerate(VARIANTS)
        }
        for round_ in range(args.rounds):
            for name, extra in VARIANTS.items():
                server = start_batched(
                    versions[name].uri,
                    Path(work),
                    ["--workers", "1", "--drain-seconds", "1", *extra],
                    {"MLFLOW_TRACKING_URI": stack.tracking_uri},
                )
                try:
                    wait_ready(server)
                    url = f"{server.base_url}/invocations"
                    results[round_, name] = {
                        level: run_load(
                            url,
                            MLFLOW_BODY,
                            "application/json",
                            concurrency=level,
                            seconds=args.seconds,
                        )
                        for level in levels
                    }
                    if "--drift" in extra:
                        binned.setdefault(name, []).append(drift_rows(server))
                finally:
                    server.process.stop(timeout=30.0)  # SIGTERM: the last samples go up first
        for name, version in versions.items():
            into = Path(work) / f"samples-{name.replace(' ', '-')}"
            written[name] = samples_written(
                stack.tracking_uri, version.run_id, version.version, into
            )

    print(f"\nbatched, 1 worker, iris, single-row dataframe_split, {args.seconds:.0f} s per level")
    print(
        f"{'round':>5} {'monitoring':>11} {'conc':>5} {'req/s':>8} {'p50 ms':>7} "
        f"{'p99 ms':>7} {'errors':>6}"
    )
    for round_ in range(args.rounds):
        for name in VARIANTS:
            for level in levels:
                r = results[round_, name][level]
                print(
                    f"{round_ + 1:>5} {name:>11} {level:>5} {r.rps:>8.0f} {r.p50_ms:>7.2f} "
                    f"{r.p99_ms:>7.2f} {r.errors:>6}"
                )
    print("\nmedian req/s over the rounds:")
    for name in VARIANTS:
        medians = {
            level: statistics.median(results[r, name][level].rps for r in range(args.rounds))
            for level in levels
        }
        print(f"  {name}: " + ", ".join(f"c{k} {v:.0f}" for k, v in medians.items()))
    print("\nsamples in each version's run (every answered request, warm-up included):")
    print(json.dumps(written))
    print("rows handed to drift scoring per round, by outcome (observed, dropped):")
    print(json.dumps(binned))


if __name__ == "__main__":
    main()
