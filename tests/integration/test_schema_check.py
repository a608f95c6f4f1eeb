"""The migration Job's check-schema step (builders/mlflowserver/server.py) run for real against
the test stack's PostgreSQL with this MLflow.

A database migrated by a newer MLflow is made by writing a revision into `alembic_version`
that this MLflow's migrations do not have: the state a newer `mlflow db upgrade` leaves (no
newer MLflow is installed here). The e2e makes the same state on the real node.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys

import pytest

from mlflow_operator.builders.mlflowserver.server import CHECK_SCHEMA_SCRIPT, NEWER_SCHEMA_EXIT
from tests.mlflowstack.stack import MlflowStack

pytestmark = pytest.mark.integration


def check(url: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", CHECK_SCHEMA_SCRIPT, url],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


def test_the_schema_this_mlflow_migrated_passes(mlflow_stack: MlflowStack) -> None:
    done = check(mlflow_stack.db_url)
    assert done.returncode == 0, done.stderr
    assert "known to MLflow" in done.stdout


def test_an_empty_database_passes(mlflow_stack: MlflowStack) -> None:
    done = check(mlflow_stack.postgres.create_database("check_empty"))
    assert done.returncode == 0, done.stderr
    assert "none (empty database)" in done.stdout


def test_a_schema_of_a_newer_mlflow_fails_with_exit_3_and_says_why(
    mlflow_stack: MlflowStack,
) -> None:
    url = mlflow_stack.postgres.create_database("check_newer")
    connection = contextlib.closing(mlflow_stack.postgres.connect("check_newer"))
    with connection as conn, conn.cursor() as cur:
        cur.execute("CREATE TABLE alembic_version (version_num VARCHAR(32) PRIMARY KEY)")
        cur.execute("INSERT INTO alembic_version VALUES ('f0e1d2c3b4a5')")
    done = check(url)
    assert done.returncode == NEWER_SCHEMA_EXIT
    assert "revision f0e1d2c3b4a5" in done.stderr
    assert "a newer MLflow migrated it" in done.stderr
