"""The tracking server pod the builders declare is a working MLflow (no cluster needed).

The e2e test does the same with the objects the running operator wrote into the cluster; this
one takes them straight from the builders, so a broken command or environment shows up in a
run without the control plane.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest

from mlflow_operator.api.mlflowserver import MLflowServer
from mlflow_operator.builders.meta import Owner
from mlflow_operator.builders.server_secrets import build_generated_secrets
from mlflow_operator.builders.tracking_server import (
    auth_config,
    build_migration_job,
    build_tracking_deployment,
)
from tests.e2e.mlflowserver_pod import DeclaredPod, run_declared_server

pytestmark = pytest.mark.integration

IMAGE = "ghcr.io/mlflow-operator/mlflow-server:3.17.2"


def test_declared_pod_logs_and_serves_a_model(
    mlflow_stack: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pg = mlflow_stack.postgres
    database = f"mlfs_{uuid.uuid4().hex[:8]}"
    pg.create_database(database)
    server = MLflowServer.model_validate(
        {
            "metadata": {"name": "mlflow", "namespace": "ml", "uid": "u", "generation": 1},
            "spec": {
                "image": IMAGE,
                "backendStore": {
                    "postgres": {
                        "external": {
                            "host": "127.0.0.1",
                            "port": pg.port,
                            "database": database,
                            "sslMode": "disable",
                            "credentialsSecretRef": {"name": "pg-creds"},
                        }
                    }
                },
                "artifactStore": {
                    "bucket": mlflow_stack.bucket,
                    "s3": {
                        "external": {
                            "endpoint": mlflow_stack.s3_endpoint,
                            "credentialsSecretRef": {"name": "s3-creds"},
                        }
                    },
                },
            },
        }
    )
    owner = Owner("mlflowops.dev/v1alpha1", "MLflowServer", "mlflow", "ml", "u")
    secrets = {s["metadata"]["name"]: s["stringData"] for s in build_generated_secrets(server)}
    secrets["pg-creds"] = {"username": pg.user, "password": pg.password}
    secrets["s3-creds"] = {
        "accessKeyId": mlflow_stack.s3_access_key,
        "secretAccessKey": mlflow_stack.s3_secret_key,
    }
    run_declared_server(
        DeclaredPod(
            deployment=build_tracking_deployment(owner, server, IMAGE),
            migration_job=build_migration_job(owner, server, IMAGE),
            auth_ini=auth_config(server),
            secrets=secrets,
            service_host="mlflow.ml.svc:5000",
        ),
        tmp_path,
        monkeypatch,
    )
