"""MLflow users and grants (registry/accounts.py) against a real MLflow with basic auth, and
what a user made the way the operator makes a serving pods' user can and cannot do."""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import mlflow
import pytest

from mlflow_operator.core.modeldeployment.serving_identity import (
    grant_changes,
    monitoring_experiment_name,
    reader_username,
)
from mlflow_operator.registry.accounts import MlflowAccounts
from mlflow_operator.registry.client import Credentials, RegistryClient
from tests.bench.serving_servers import request, start_batched, wait_ready
from tests.integration.test_batched_lifecycle import JSON, split_body
from tests.mlflowstack.mlflow_server import MlflowServer
from tests.mlflowstack.models import ModelRegistry, TrainedVersion, sample_input
from tests.support.polling import eventually

pytestmark = pytest.mark.integration


@contextmanager
def mlflow_user(monkeypatch: pytest.MonkeyPatch, username: str, password: str) -> Iterator[None]:
    """MLflow's client environment as a serving pod has it: credentials, no S3 keys."""
    with monkeypatch.context() as patch:
        for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "MLFLOW_S3_ENDPOINT_URL"):
            patch.delenv(key, raising=False)
        patch.setenv("MLFLOW_TRACKING_USERNAME", username)
        patch.setenv("MLFLOW_TRACKING_PASSWORD", password)
        patch.setenv("MLFLOW_ENABLE_PROXY_MULTIPART_DOWNLOAD", "false")
        yield


def rest(
    server: MlflowServer, method: str, path: str, auth: tuple[str, str], body: Any = None
) -> int:
    request = urllib.request.Request(
        f"{server.tracking_uri}/api/2.0/mlflow/{path}",
        method=method,
        data=json.dumps(body).encode() if body is not None else None,
        headers={
            "Content-Type": "application/json",
            "Authorization": "Basic " + base64.b64encode(":".join(auth).encode()).decode(),
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as err:
        return int(err.code)


@pytest.fixture
def two_models(
    mlflow_auth_server: MlflowServer, monkeypatch: pytest.MonkeyPatch, model_name: str
) -> tuple[TrainedVersion, TrainedVersion]:
    admin = mlflow_auth_server.auth
    assert admin is not None
    with mlflow_user(monkeypatch, admin.username, admin.password):
        registry = ModelRegistry(mlflow_auth_server.tracking_uri)
        return registry.log_version(model_name), registry.log_version(f"{model_name}-other")


async def test_a_reader_reads_its_model_and_nothing_else(
    mlflow_auth_server: MlflowServer,
    monkeypatch: pytest.MonkeyPatch,
    two_models: tuple[TrainedVersion, TrainedVersion],
) -> None:
    ours, other = two_models
    admin = mlflow_auth_server.auth
    assert admin is not None
    client = RegistryClient(
        mlflow_auth_server.tracking_uri, Credentials(admin.username, admin.password)
    )
    accounts = MlflowAccounts(client)
    username = reader_username("ml", ours.name)
    try:
        await accounts.ensure_user(username, "first-password-0123")
        await accounts.ensure_user(username, "second-password-456")  # exists: password set
        experiment = await accounts.experiment_of(ours.name, ours.version)
        run = mlflow.MlflowClient(mlflow_auth_server.tracking_uri)
        with mlflow_user(monkeypatch, admin.username, admin.password):
            assert experiment == run.get_run(ours.run_id).info.experiment_id
        revoke, grant = grant_changes(await accounts.grants(username), ours.name, {experiment})
        assert revoke == []
        for each in grant:
            await accounts.grant(username, each)
        await accounts.grant(username, grant[0])  # granted twice: no error
        assert await accounts.grants(username) == set(grant)

        reader = (username, "second-password-456")
        assert rest(mlflow_auth_server, "GET", f"registered-models/get?name={ours.name}",
                    ("x", "first-password-0123")) == 401  # fmt: skip
        assert rest(mlflow_auth_server, "GET", f"registered-models/get?name={ours.name}",
                    reader) == 200  # fmt: skip
        # what a malicious model would try with its pod's credentials
        alias = {"name": ours.name, "alias": "champion", "version": ours.version}
        assert rest(mlflow_auth_server, "POST", "registered-models/alias", reader, alias) == 403
        version = {"name": ours.name, "source": "models:/m-0123456789abcdef"}
        assert rest(mlflow_auth_server, "POST", "model-versions/create", reader, version) == 403
        assert rest(mlflow_auth_server, "GET", f"registered-models/get?name={other.name}",
                    reader) == 403  # fmt: skip
        # ...and what the serving runtime does: download the version through the server
        mlflow.set_tracking_uri(mlflow_auth_server.tracking_uri)
        mlflow.set_registry_uri(mlflow_auth_server.tracking_uri)
        with mlflow_user(monkeypatch, *reader):
            loaded = mlflow.pyfunc.load_model(f"models:/{ours.name}/{ours.version}")
            assert list(loaded.predict(sample_input(5))) == ours.predict(sample_input(5))
            with pytest.raises(mlflow.MlflowException):
                mlflow.pyfunc.load_model(f"models:/{other.name}/{other.version}")

        assert await accounts.delete_user(username)
        assert not await accounts.delete_user(username)
        assert rest(mlflow_auth_server, "GET", f"registered-models/get?name={ours.name}",
                    reader) == 401  # fmt: skip
    finally:
        await accounts.delete_user(username)
        await client.close()


async def test_a_monitoring_reader_writes_samples_and_its_reference_to_its_own_run_only(
    mlflow_auth_server: MlflowServer,
    monkeypatch: pytest.MonkeyPatch,
    two_models: tuple[TrainedVersion, TrainedVersion],
    tmp_path: Path,
) -> None:
    """serving.monitoring on a serverRef with basic auth: the operator's monitoring experiment
    and run, the user's EDIT there alone, and the serving runtime writing with that user."""
    ours, _ = two_models
    admin = mlflow_auth_server.auth
    assert admin is not None
    url = mlflow_auth_server.tracking_uri
    client = RegistryClient(url, Credentials(admin.username, admin.password))
    accounts = MlflowAccounts(client)
    username, password = reader_username("ml", f"{ours.name}-watched"), "watching-password-0123"
    try:
        await accounts.ensure_user(username, password)
        experiment = await accounts.experiment_of(ours.name, ours.version)
        name = monitoring_experiment_name("ml", ours.name)
        writes = await accounts.experiment_named(name)
        assert await accounts.experiment_named(name) == writes  # found, not made twice
        run = await accounts.monitoring_run(writes, ours.name, ours.version)
        assert await accounts.monitoring_run(writes, ours.name, ours.version) == run
        revoke, grant = grant_changes(await accounts.grants(username), ours.name, {experiment},
                                      writes)  # fmt: skip
        assert revoke == []
        for each in grant:
            await accounts.grant(username, each)
        reader = (username, password)
        tag = {"run_id": ours.run_id, "key": "gate_metric", "value": "rewritten"}
        assert rest(mlflow_auth_server, "POST", "runs/set-tag", reader, tag) == 403
        assert (
            rest(mlflow_auth_server, "POST", "runs/set-tag", reader, {**tag, "run_id": run}) == 200
        )

        pod_env = {
            "MLFLOW_TRACKING_URI": url, "MLFLOW_TRACKING_USERNAME": username,
            "MLFLOW_TRACKING_PASSWORD": password, "MLFLOW_ENABLE_PROXY_MULTIPART_DOWNLOAD": "false",
        }  # fmt: skip
        server = start_batched(
            f"models:/{ours.name}/{ours.version}", tmp_path,
            ["--drain-seconds", "1", "--sample-rate", "1", "--drift",
             "--drift-reference-rows", "20", "--monitoring-run-id", run],
            pod_env,
        )  # fmt: skip
        try:
            wait_ready(server)
            for _ in range(5):
                body = split_body(sample_input(10))
                answer = request(server.port, "POST", "/invocations", body=body, content_type=JSON)
                assert answer.status == 200
            eventually(
                lambda: b'mlflow_serving_drift_reference_rows{model_name="'
                in request(server.port, "GET", "/metrics").body,
                timeout=60, what="a drift reference of the first 20 rows",
            )  # fmt: skip
        finally:
            server.stop()  # SIGTERM: the samples go up before it exits
        log = server.process.log_path.read_text()
        assert "could not" not in log, log[-3000:]

        with mlflow_user(monkeypatch, admin.username, admin.password):
            mlflow_client = mlflow.MlflowClient(url)

            def files(run_id: str, path: str = "") -> list[str]:
                found = []
                for info in mlflow_client.list_artifacts(run_id, path or None):
                    found += files(run_id, info.path) if info.is_dir else [info.path]
                return found

            written = files(run)
            own = files(ours.run_id)
        assert f"monitoring/{ours.version}/reference-profile.json" in written
        samples = [f for f in written if f.startswith(f"predictions/{ours.version}/")]
        assert samples, written
        assert not [f for f in own if f.startswith(("predictions/", "monitoring/"))], own
    finally:
        await accounts.delete_user(username)
        await client.close()
