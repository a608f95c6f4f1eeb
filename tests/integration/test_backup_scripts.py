"""The backup Job's three scripts (builders/mlflowserver/backup.py) run for real, outside
Kubernetes: the dump and the restore test with this machine's PostgreSQL binaries against the
test stack's PostgreSQL (with an MLflow schema and registry data), the upload with boto3 to its
MinIO.

The e2e (tests/e2e/test_mlflowserver.py) runs the same scripts as a Job on the real node;
here the failures are cheap to make for real: a truncated dump, a source that lost rows, and
writers active during the dump.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from mlflow_operator.builders.mlflowserver.backup import COUNTED_TABLES
from tests.mlflowstack.backup_scripts import (
    BUCKET,
    dump,
    fetch,
    restore,
    shared_dir,
    source_rows,
    store,
    verify,
)
from tests.mlflowstack.models import ModelRegistry
from tests.mlflowstack.stack import MlflowStack

pytestmark = pytest.mark.integration


@pytest.fixture
def backup_dir() -> Iterator[Path]:
    with shared_dir() as path:
        yield path


def test_a_backup_is_dumped_restored_compared_and_stored(
    mlflow_stack: MlflowStack, mlflow_registry: ModelRegistry, backup_dir: Path
) -> None:
    model = "backed-up"
    mlflow_registry.log_version(model)
    version = mlflow_registry.log_version(model)
    mlflow_registry.set_alias(model, "champion", version.version)
    expected = source_rows(mlflow_stack)
    assert expected["model_versions"] >= 2
    assert expected["registered_model_aliases"] >= 1

    dumped = dump(mlflow_stack, backup_dir)
    assert dumped.returncode == 0, dumped.stderr
    verified = verify(backup_dir)
    assert verified.returncode == 0, verified.stderr
    assert "row counts match" in verified.stdout
    result = store(mlflow_stack, backup_dir, keep=5, name="mlflow-backup-one", prefix="ns/one/")

    assert result["verified"] is True
    assert result["rows"] == expected
    assert list(expected) == sorted(COUNTED_TABLES)
    key = str(result["key"]).removeprefix(f"s3://{BUCKET}/")
    stored = mlflow_stack.minio.s3_client().head_object(Bucket=BUCKET, Key=key)
    size = (backup_dir / "mlflow.dump").stat().st_size
    assert stored["ContentLength"] == result["sizeBytes"] == size


def test_writers_active_during_the_dump_do_not_spoil_it(
    mlflow_stack: MlflowStack, mlflow_registry: ModelRegistry, backup_dir: Path
) -> None:
    """The counts and the dump come from one snapshot: runs logged through the tracking server
    while the dump runs are in neither, and the restore test still matches."""
    from mlflow import MlflowClient

    client = MlflowClient(mlflow_stack.tracking_uri)
    experiment = client.create_experiment(f"busy-{uuid.uuid4().hex[:6]}")
    writing = threading.Event()
    stop = threading.Event()
    written = 0

    def writer() -> None:
        nonlocal written
        while not stop.is_set():
            run = client.create_run(experiment)
            client.log_metric(run.info.run_id, "loss", 0.5)
            written += 1
            writing.set()

    thread = threading.Thread(target=writer, daemon=True)
    thread.start()
    try:
        assert writing.wait(30)
        during = written
        dumped = dump(mlflow_stack, backup_dir)
        assert dumped.returncode == 0, dumped.stderr
        after = written
    finally:
        stop.set()
        thread.join(30)
    assert after > during  # runs were written while pg_dump ran
    final = source_rows(mlflow_stack)
    recorded = dict(line.split() for line in (backup_dir / "rows").read_text().splitlines())
    assert int(recorded["runs"]) < final["runs"]
    verified = verify(backup_dir)
    assert verified.returncode == 0, verified.stderr


def test_a_truncated_dump_fails_the_restore_test_and_says_so(
    mlflow_stack: MlflowStack, mlflow_registry: ModelRegistry, backup_dir: Path
) -> None:
    mlflow_registry.log_version("truncated")
    assert dump(mlflow_stack, backup_dir).returncode == 0
    file = backup_dir / "mlflow.dump"
    file.write_bytes(file.read_bytes()[: file.stat().st_size // 2])
    verified = verify(backup_dir)
    assert verified.returncode != 0
    assert "pg_restore" in verified.stderr
    assert not (backup_dir / "verified").exists()


def test_a_source_that_lost_rows_since_the_dump_is_a_mismatch(
    mlflow_stack: MlflowStack, mlflow_registry: ModelRegistry, backup_dir: Path
) -> None:
    """The comparison itself: the counts recorded at dump time no longer match the copy."""
    mlflow_registry.log_version("mismatch")
    assert dump(mlflow_stack, backup_dir).returncode == 0
    rows = backup_dir / "rows"
    lines = rows.read_text().splitlines()
    table, count = lines[1].split()
    lines[1] = f"{table} {int(count) + 1}"  # as if a run had been written and not dumped
    rows.write_text("\n".join(lines) + "\n")
    verified = verify(backup_dir)
    assert verified.returncode == 1
    assert "the restored copy differs from the source" in verified.stderr
    assert f"{table} {int(count) + 1} {table} {count}" in verified.stderr


def test_the_bucket_keeps_only_the_newest_backups(
    mlflow_stack: MlflowStack, mlflow_registry: ModelRegistry, backup_dir: Path
) -> None:
    mlflow_registry.log_version("kept")
    assert dump(mlflow_stack, backup_dir).returncode == 0
    keys = [
        store(mlflow_stack, backup_dir, keep=2, name=f"mlflow-backup-{n}", prefix="ns/kept/")["key"]
        for n in range(3)
    ]
    listed = mlflow_stack.minio.s3_client().list_objects_v2(Bucket=BUCKET, Prefix="ns/kept/")
    names = sorted(item["Key"] for item in listed.get("Contents", []))
    kept = sorted(str(k).removeprefix(f"s3://{BUCKET}/") for k in keys[1:])
    assert [n for n in names if n.endswith(".dump")] == kept
    assert len(names) == 4  # each .dump with its .json


def test_a_stored_backup_is_fetched_and_restored_into_an_empty_database_only(
    mlflow_stack: MlflowStack, mlflow_registry: ModelRegistry, backup_dir: Path
) -> None:
    mlflow_registry.log_version("restored")
    assert dump(mlflow_stack, backup_dir).returncode == 0
    key = str(
        store(mlflow_stack, backup_dir, keep=5, name="restored-1", prefix="ns/restored/")["key"]
    )
    expected = source_rows(mlflow_stack)
    with shared_dir("restore-") as here:
        fetch(mlflow_stack, here, key)
        empty = "restore_target"
        mlflow_stack.postgres.create_database(empty)
        restored = restore(mlflow_stack, here, empty)
        assert restored.returncode == 0, restored.stderr
        assert source_rows(mlflow_stack, empty) == expected
        # the same again: the database now holds MLflow tables, and is left as it is
        again = restore(mlflow_stack, here, empty)
        assert again.returncode == 1
        assert "already holds MLflow tables" in again.stderr
        assert source_rows(mlflow_stack, empty) == expected
