"""Pytest fixtures for the local MLflow stack (PostgreSQL + MinIO + `mlflow server`).

mlflow_stack       session   MlflowStack: tracking_uri, db_url, s3_* keys, bucket, processes,
                             server (stop()/start() or stack.outage() to simulate an outage)
mlflow_auth_server session   MlflowServer with basic auth on (same DB and bucket); .auth has
                             username/password
mlflow_registry    session   ModelRegistry bound to mlflow_stack: log versions, aliases, stages
model_name         function  a registered-model name no other test uses
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator

import pytest

from tests.mlflowstack import stack as stack_module
from tests.mlflowstack.mlflow_server import MlflowServer
from tests.mlflowstack.models import ModelRegistry
from tests.mlflowstack.stack import MlflowStack
from tests.support.processes import PidRecord


@pytest.fixture(scope="session")
def mlflow_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MlflowStack]:
    # programs left by a session that was killed before it could stop them
    PidRecord.default().reap_stale()
    stack = stack_module.start(tmp_path_factory.mktemp("mlflow-stack"))
    try:
        yield stack
    finally:
        stack.stop()


@pytest.fixture(scope="session")
def mlflow_auth_server(mlflow_stack: MlflowStack) -> Iterator[MlflowServer]:
    server = mlflow_stack.start_basic_auth_server()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def mlflow_registry(mlflow_stack: MlflowStack) -> ModelRegistry:
    return ModelRegistry(mlflow_stack.tracking_uri)


@pytest.fixture
def model_name(request: pytest.FixtureRequest) -> str:
    """Unique per test (and per run: the database lives as long as the session)."""
    stem = re.sub(r"[^A-Za-z0-9]+", "-", request.node.name).strip("-")[:40]
    return f"{stem}-{uuid.uuid4().hex[:8]}"
