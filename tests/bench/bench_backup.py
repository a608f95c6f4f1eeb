"""Backup, restore test and restore of an MLflow database of a real size.

    .venv/bin/python -m tests.bench.bench_backup [--runs 10000] [--versions 1000]

Starts the local MLflow stack (PostgreSQL, MinIO, tracking server), fills the database through
MLflow's own SQLAlchemy stores (one run with 5 params, 3 tags and 5 metrics of 10 steps, cloned
in SQL to --runs runs; the model versions spread over registered models of 10 versions each,
every model with an alias), then runs the backup Job's scripts (builders/mlflowserver/backup.py)
as the Job runs them, one after the other, and times each: dump (snapshot, row counts, pg_dump),
verify (throwaway PostgreSQL, pg_restore, counts), store (upload to MinIO), fetch and restore
into an empty database (a restore of spec.restoreFrom). Prints numbers; nothing here passes or
fails.
"""

from __future__ import annotations

import argparse
import contextlib
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mlflow.entities import Metric, Param, RunTag
from mlflow.store.model_registry.sqlalchemy_store import SqlAlchemyStore as RegistryStore
from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore as TrackingStore

from tests.mlflowstack import stack as stack_module
from tests.mlflowstack.backup_scripts import (
    dump,
    fetch,
    restore,
    shared_dir,
    source_rows,
    store,
    verify,
)

VERSIONS_PER_MODEL = 10


def fill(
    db_url: str, artifact_root: str, connect: Callable[[], Any], runs: int, versions: int
) -> float:
    """One run logged through MLflow's store, cloned in SQL (every column copied, only the
    run's id new) to `runs`; model versions through MLflow's registry store. `connect` opens
    a psycopg2 connection to the same database."""
    started = time.monotonic()
    tracking = TrackingStore(db_url, artifact_root)
    experiment = tracking.create_experiment(f"bench-{int(started)}")
    now = int(time.time() * 1000)
    seed = tracking.create_run(experiment, "bench", now, [], "seed").info.run_id
    tracking.log_batch(
        seed,
        metrics=[
            Metric(f"m{k}", 1.0 / (step + 1), now + step, step)
            for k in range(5)
            for step in range(10)
        ],
        params=[Param(f"p{k}", str(k)) for k in range(5)],
        tags=[RunTag(f"t{k}", f"value-{k}") for k in range(3)],
    )
    tracking.engine.dispose()
    with contextlib.closing(connect()) as conn, conn.cursor() as cur:
        for table in ("runs", "params", "metrics", "tags", "latest_metrics"):
            # to_jsonb of the row, the run id replaced, back into a row of the same table
            cur.execute(
                f"INSERT INTO {table} SELECT (jsonb_populate_record(NULL::{table}, "  # noqa: S608
                "to_jsonb(t) || jsonb_build_object('run_uuid', md5(g::text)))).* "
                f"FROM {table} t, generate_series(2, %s) g WHERE t.run_uuid = %s",
                (runs, seed),
            )
    run_ids = [seed]
    registry = RegistryStore(db_url)
    for n in range(versions):
        name = f"bench-model-{n // VERSIONS_PER_MODEL}"
        if n % VERSIONS_PER_MODEL == 0:
            registry.create_registered_model(name)
        run_id = run_ids[n % len(run_ids)]
        version = registry.create_model_version(name, f"runs:/{run_id}/model", run_id=run_id)
        if n % VERSIONS_PER_MODEL == VERSIONS_PER_MODEL - 1:
            registry.set_registered_model_alias(name, "champion", version.version)
    registry.engine.dispose()
    return time.monotonic() - started


def timed(step: str, results: dict[str, float], action):  # type: ignore[no-untyped-def]
    started = time.monotonic()
    outcome = action()
    results[step] = time.monotonic() - started
    code = getattr(outcome, "returncode", 0)
    if code != 0:
        raise RuntimeError(f"{step} failed: {outcome.stderr}")
    return outcome


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--versions", type=int, default=1_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, stack_module.running(Path(tmp)) as stack:
        filled = fill(
            stack.db_url, stack.artifacts_destination, stack.postgres.connect, args.runs,
            args.versions,
        )  # fmt: skip
        rows = source_rows(stack)
        print(f"filled in {filled:.1f}s: " + ", ".join(f"{t} {c}" for t, c in rows.items()))
        times: dict[str, float] = {}
        with shared_dir() as here:
            timed("dump", times, lambda: dump(stack, here))
            size = (here / "mlflow.dump").stat().st_size
            timed("verify", times, lambda: verify(here))
            result = timed(
                "store",
                times,
                lambda: store(stack, here, keep=7, name="bench-backup", prefix="bench/"),
            )
        with shared_dir("restore-") as here:
            timed("fetch", times, lambda: fetch(stack, here, str(result["key"])))
            stack.postgres.create_database("bench_restore")
            timed("restore", times, lambda: restore(stack, here, "bench_restore"))
        backup = times["dump"] + times["verify"] + times["store"]
        print(f"dump file {size / 1e6:.1f} MB; verified: {result['verified']}")
        print(" ".join(f"{step} {seconds:.1f}s" for step, seconds in times.items()))
        print(f"backup Job steps (dump + verify + store): {backup:.1f}s")
        print(f"restore Job steps (fetch + restore): {times['fetch'] + times['restore']:.1f}s")


if __name__ == "__main__":
    main()
