"""The backup Job's scripts (builders/mlflowserver/backup.py), run outside Kubernetes against the
local MLflow stack: PostgreSQL's tools from this machine's packages, as the PostgreSQL user (as
in the pod), boto3 from this interpreter. Used by tests/integration/test_backup_scripts.py and
tests/bench/bench_backup.py.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

from mlflow_operator.builders.mlflowserver.backup import (
    DUMP_SCRIPT,
    FETCH_SCRIPT,
    RESTORE_SCRIPT,
    ROW_COUNTS_SQL,
    STORE_SCRIPT,
    VERIFY_SCRIPT,
)
from tests.mlflowstack import postgres
from tests.mlflowstack.stack import MlflowStack

TIMEOUT = 1800.0


@contextlib.contextmanager
def shared_dir(prefix: str = "backup-") -> Iterator[Path]:
    """The Job's shared emptyDir, writable by the PostgreSQL user."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    shutil.chown(path, postgres.RUN_AS, postgres.RUN_AS)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


BUCKET = "mlflow-backups"


def run_as_postgres(script: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    argv = ["sh", "-c", script]
    if os.geteuid() == 0:
        argv = ["setpriv", f"--reuid={postgres.RUN_AS}", f"--regid={postgres.RUN_AS}",
                "--init-groups", "--", *argv]  # fmt: skip
    path = f"{postgres.bin_dir()}:{os.environ['PATH']}"
    return subprocess.run(
        argv, env={"PATH": path, "ROW_COUNTS": ROW_COUNTS_SQL, **env},
        capture_output=True, text=True, timeout=TIMEOUT, check=False,
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
    run_python(
        STORE_SCRIPT,
        stack,
        here,
        {
            "BACKUP_BUCKET": BUCKET, "BACKUP_PREFIX": prefix, "BACKUP_KEEP": str(keep),
            "BACKUP_NAME": name, "BACKUP_BEFORE_IMAGE": "mlflow-server:3.18.0",
            "TERMINATION_LOG": str(here / "termination-log"),
        },
    )  # fmt: skip
    result: dict[str, object] = json.loads((here / "termination-log").read_text())
    return result


def fetch(stack: MlflowStack, here: Path, key: str) -> None:
    run_python(FETCH_SCRIPT, stack, here, {"RESTORE_KEY": key})


def run_python(script: str, stack: MlflowStack, here: Path, env: dict[str, str]) -> None:
    """A step of the tracking server image: boto3 with the object store's credentials."""
    done = subprocess.run(
        [sys.executable, "-c", script],
        env={
            "PATH": os.environ["PATH"], "HOME": str(here), "BACKUP_DIR": str(here),
            "MLFLOW_S3_ENDPOINT_URL": stack.minio.endpoint, "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ACCESS_KEY_ID": stack.minio.access_key,
            "AWS_SECRET_ACCESS_KEY": stack.minio.secret_key, **env,
        },
        capture_output=True, text=True, timeout=TIMEOUT, check=False,
    )  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"the step failed: {done.stderr}")


def restore(stack: MlflowStack, here: Path, database: str) -> subprocess.CompletedProcess[str]:
    db = stack.postgres
    return run_as_postgres(
        RESTORE_SCRIPT,
        {
            "BACKUP_DIR": str(here), "PGHOST": "127.0.0.1", "PGPORT": str(db.port),
            "PGDATABASE": database, "PGUSER": db.user, "PGPASSWORD": db.password,
            "PGSSLMODE": "disable", "HOME": str(here),
        },
    )  # fmt: skip


def source_rows(stack: MlflowStack, database: str | None = None) -> dict[str, int]:
    with stack.postgres.connect(database) as conn, conn.cursor() as cur:
        cur.execute(ROW_COUNTS_SQL)
        return {table: int(count) for table, count in cur.fetchall()}
