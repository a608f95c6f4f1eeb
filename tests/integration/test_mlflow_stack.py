"""The local MLflow stack is the real thing: PostgreSQL holds the registry, MinIO the files,
the tracking server answers the REST calls the operator makes, and models really serve."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import mlflow.pyfunc
import psycopg2
import pytest

from tests.mlflowstack import postgres, serving
from tests.mlflowstack.mlflow_server import MlflowServer
from tests.mlflowstack.models import DIFFERENT_C, ModelRegistry, sample_input
from tests.mlflowstack.stack import ARTIFACTS_PREFIX, MlflowStack
from tests.support.polling import eventually
from tests.support.processes import PidRecord, http_ok

pytestmark = pytest.mark.integration

API = "/api/2.0/mlflow"


def rest_get(
    base: str, path: str, auth: tuple[str, str] | None = None, **params: str
) -> tuple[int, dict[str, Any]]:
    """GET an MLflow REST endpoint the way the operator will; (status, JSON body)."""
    url = f"{base}{API}/{path}?{urllib.parse.urlencode(params)}"
    request = urllib.request.Request(url)
    if auth:
        token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            return resp.status, json.load(resp)
    except urllib.error.HTTPError as err:
        body = err.read()
        with contextlib.suppress(ValueError):
            return err.code, json.loads(body)
        return err.code, {"raw": body.decode(errors="replace")}


def test_logged_model_is_in_postgres_and_minio_and_serves_same_predictions(
    mlflow_stack: MlflowStack, mlflow_registry: ModelRegistry, model_name: str, tmp_path: Path
) -> None:
    trained = mlflow_registry.log_version(model_name)

    # the registry's own tables, read straight from PostgreSQL
    query = "SELECT version, status FROM model_versions WHERE name = %s"
    with (
        contextlib.closing(psycopg2.connect(mlflow_stack.postgres.dsn)) as conn,
        conn.cursor() as cur,
    ):
        cur.execute(query, (model_name,))
        assert cur.fetchall() == [(int(trained.version), "READY")]

    _, body = rest_get(
        mlflow_stack.tracking_uri,
        "model-versions/get-download-uri",
        name=model_name,
        version=trained.version,
    )
    # mlflow-artifacts:/<experiment>/models/m-<id>/artifacts -> <prefix>/<experiment>/models/...
    artifact_path = body["artifact_uri"].removeprefix("mlflow-artifacts:/").strip("/")
    listing = mlflow_stack.minio.s3_client().list_objects_v2(
        Bucket=mlflow_stack.bucket, Prefix=f"{ARTIFACTS_PREFIX}/{artifact_path}/"
    )
    files = {obj["Key"].rsplit("/", 1)[-1] for obj in listing.get("Contents", [])}
    assert {"MLmodel", "input_example.json", "requirements.txt"} <= files
    assert any(f.startswith("model.") for f in files), files  # the serialized estimator

    # the scoring server gets the tracking URI only: the files must come through the server
    assert not {"AWS_ACCESS_KEY_ID", "MLFLOW_S3_ENDPOINT_URL"} & set(os.environ)
    server = serving.start(trained.uri, mlflow_stack.tracking_uri, tmp_path)
    try:
        server.wait_ready()
        assert server.predict(sample_input()) == trained.predict()
    finally:
        server.stop()


def test_aliases_and_stages_read_back_through_rest(
    mlflow_stack: MlflowStack, mlflow_registry: ModelRegistry, model_name: str
) -> None:
    v1 = mlflow_registry.log_version(model_name)
    v2 = mlflow_registry.log_version(model_name, c=DIFFERENT_C, tags={"quality": "candidate"})
    assert v1.predict() != v2.predict()  # versions are distinguishable by what they serve
    mlflow_registry.set_alias(model_name, "champion", v1.version)
    mlflow_registry.set_alias(model_name, "challenger", v2.version)
    mlflow_registry.transition_stage(model_name, v1.version, "Production")
    mlflow_registry.transition_stage(model_name, v2.version, "Staging")
    uri = mlflow_stack.tracking_uri

    status, body = rest_get(
        uri, "registered-models/search", filter=f"name = '{model_name}'", max_results="1000"
    )
    assert status == 200
    (model,) = body["registered_models"]
    assert {a["alias"]: a["version"] for a in model["aliases"]} == {
        "champion": v1.version,
        "challenger": v2.version,
    }
    assert {v["current_stage"]: v["version"] for v in model["latest_versions"]} == {
        "Production": v1.version,
        "Staging": v2.version,
    }

    _, body = rest_get(uri, "registered-models/alias", name=model_name, alias="champion")
    assert body["model_version"]["version"] == v1.version
    assert body["model_version"]["aliases"] == ["champion"]

    mlflow_registry.set_alias(model_name, "champion", v2.version)  # promote: move the alias
    mlflow_registry.delete_alias(model_name, "challenger")
    _, body = rest_get(uri, "registered-models/alias", name=model_name, alias="champion")
    assert body["model_version"]["version"] == v2.version
    status, body = rest_get(uri, "registered-models/alias", name=model_name, alias="challenger")
    assert (status, body["error_code"]) == (400, "INVALID_PARAMETER_VALUE")  # not 404

    _, body = rest_get(uri, "model-versions/get", name=model_name, version=v2.version)
    version = body["model_version"]
    assert version["current_stage"] == "Staging"
    assert version["status"] == "READY"
    assert {"key": "quality", "value": "candidate"} in version["tags"]


def test_broken_version_is_registered_but_cannot_load(
    mlflow_stack: MlflowStack, mlflow_registry: ModelRegistry, model_name: str
) -> None:
    version = mlflow_registry.log_broken_version(model_name)
    _, body = rest_get(
        mlflow_stack.tracking_uri, "model-versions/get", name=model_name, version=version
    )
    assert body["model_version"]["status"] == "READY"  # the registry cannot tell
    mlflow.set_tracking_uri(mlflow_stack.tracking_uri)
    with pytest.raises(Exception):  # noqa: B017 - any load error is the point
        mlflow.pyfunc.load_model(f"models:/{model_name}/{version}")


def test_basic_auth_refuses_requests_without_credentials(
    mlflow_auth_server: MlflowServer,
) -> None:
    auth = mlflow_auth_server.auth
    assert auth is not None
    uri = mlflow_auth_server.tracking_uri
    assert http_ok(f"{uri}/health")  # probes stay open

    status, _ = rest_get(uri, "registered-models/search")
    assert status == 401
    status, _ = rest_get(uri, "registered-models/search", auth=(auth.username, "wrong-password!"))
    assert status == 401
    status, body = rest_get(uri, "registered-models/search", auth=(auth.username, auth.password))
    assert status == 200
    assert isinstance(body.get("registered_models", []), list)


def test_outage_stops_the_server_and_restart_keeps_the_registry(
    mlflow_stack: MlflowStack, mlflow_registry: ModelRegistry, model_name: str
) -> None:
    trained = mlflow_registry.log_version(model_name)
    health = f"{mlflow_stack.tracking_uri}/health"
    with mlflow_stack.outage():
        assert not http_ok(health)
    assert http_ok(health)
    _, body = rest_get(
        mlflow_stack.tracking_uri, "model-versions/get", name=model_name, version=trained.version
    )
    assert body["model_version"]["version"] == trained.version


def test_stack_processes_are_recorded_with_this_session(mlflow_stack: MlflowStack) -> None:
    recorded = {e.pid: e for e in PidRecord.default().entries()}
    for process in mlflow_stack.processes():
        assert process.alive()
        assert recorded[process.pid].owner == os.getpid()


def test_orphans_of_a_killed_session_are_reaped_by_the_next(tmp_path: Path) -> None:
    """A stack whose session dies by SIGKILL keeps running; the next session stops it by PID."""
    info_file = tmp_path / "info.json"
    session = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.mlflowstack",
            "--workdir",
            str(tmp_path / "stack"),
            "--info-file",
            str(info_file),
        ],
        stdout=subprocess.DEVNULL,
        stderr=(tmp_path / "session.log").open("wb"),
    )
    try:
        eventually(info_file.exists, timeout=180, what="stack in a subprocess", interval=0.1)
        record = PidRecord.default()
        orphans = [e.pid for e in record.entries() if e.owner == session.pid]
        assert len(orphans) == 3  # postgres, minio, mlflow server
        session.send_signal(signal.SIGKILL)
        session.wait(timeout=10)
        assert all(_group_alive(pid) for pid in orphans)  # nobody stopped them

        stopped = record.reap_stale()
        assert set(orphans) <= set(stopped)
        assert not any(_group_alive(pid) for pid in orphans)
        assert not {e.pid for e in record.entries()} & set(orphans)
        # the killed session's PostgreSQL files go with the next start's sweep
        postgres.remove_orphaned_data_roots()
        assert not list(Path(tempfile.gettempdir()).glob(f"mlflow-pg-{session.pid}-*"))
    finally:
        session.kill()
        session.wait()
        PidRecord.default().reap_stale()


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True
