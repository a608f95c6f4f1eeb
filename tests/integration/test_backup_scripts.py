"""The backup Job's three scripts (builders/backup.py) run for real, outside Kubernetes: the
dump and the restore test with this machine's PostgreSQL binaries against the test stack's
PostgreSQL (with an MLflow schema and registry data), the upload with boto3 to its MinIO.

The e2e (tests/e2e/test_mlflowserver.py) runs the same scripts as a Job on the real node;
here the failures are cheap to make for real: a truncated dump, a source that lost rows.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from mlflow_operator.builders.backup import (
    COUNTED_TABLES,
    DUMP_SCRIPT,
    ROW_COUNTS_SQL,
    STORE_SCRIPT,
    VERIFY_SCRIPT,
)
from tests.mlflowstack import postgres
from tests.mlflowstack.models import ModelRegistry
from tests.mlflowstack.stack import MlflowStack

pytestmark = pytest.mark.integration

BUCKET = "mlflow-backups"


@pytest.fixture
def backup_dir() -> Iterator[Path]:
    """The Job's shared emptyDir; PostgreSQL's tools run as its user, as in the pod."""
    path = Path(tempfile.mkdtemp(prefix="backup-"))
    shutil.chown(path, postgres.RUN_AS, postgres.RUN_AS)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def run_as_postgres(script: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    argv = ["sh", "-c", script]
    if os.geteuid() == 0:
        argv = ["setpriv", f"--reuid={postgres.RUN_AS}", f"--regid={postgres.RUN_AS}",
                "--init-groups", "--", *argv]  # fmt: skip
    path = f"{postgres.bin_dir()}:{os.environ['PATH']}"
    return subprocess.run(
        argv, env={"PATH": path, "ROW_COUNTS": ROW_COUNTS_SQL, **env},
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


def dump(stack: MlflowStack, here: Path) -> subprocess.CompletedProcess[str]:
    db = stack.postgres
    return run_as_postgres(
        DUMP_SCRIPT,
        {
            "BACKUP_DIR": str(here), "PGHOST": "127.0.0.1", "PGPORT": str(db.port),
            "PGDATABASE": db.database, "PGUSER": db.user, "PGPASSWORD": db.password,
            "PGSSLMODE": "disable", "HOME": str(here),
        },
    )  # fmt: skip


def verify(here: Path) -> subprocess.CompletedProcess[str]:
    return run_as_postgres(
        VERIFY_SCRIPT,
        {"BACKUP_DIR": str(here), "PGHOST": str(here), "PGUSER": "verify", "HOME": str(here)},
    )


def store(
    stack: MlflowStack, here: Path, *, keep: int, name: str, prefix: str
) -> dict[str, object]:
    env = {
        "PATH": os.environ["PATH"], "HOME": str(here), "BACKUP_DIR": str(here),
        "MLFLOW_S3_ENDPOINT_URL": stack.minio.endpoint, "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": stack.minio.access_key,
        "AWS_SECRET_ACCESS_KEY": stack.minio.secret_key,
        "BACKUP_BUCKET": BUCKET, "BACKUP_PREFIX": prefix, "BACKUP_KEEP": str(keep),
        "BACKUP_NAME": name, "BACKUP_BEFORE_IMAGE": "mlflow-server:3.18.0",
        "TERMINATION_LOG": str(here / "termination-log"),
    }  # fmt: skip
    done = subprocess.run(
        [sys.executable, "-c", STORE_SCRIPT],
        env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    result: dict[str, object] = json.loads((here / "termination-log").read_text())
    return result


def source_rows(stack: MlflowStack) -> dict[str, int]:
    with stack.postgres.connect() as conn, conn.cursor() as cur:
        cur.execute(ROW_COUNTS_SQL)
        return {table: int(count) for table, count in cur.fetchall()}


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
    assert list(expected) == list(COUNTED_TABLES)
    key = str(result["key"]).removeprefix(f"s3://{BUCKET}/")
    stored = mlflow_stack.minio.s3_client().head_object(Bucket=BUCKET, Key=key)
    size = (backup_dir / "mlflow.dump").stat().st_size
    assert stored["ContentLength"] == result["sizeBytes"] == size


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
