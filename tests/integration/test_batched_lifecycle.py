"""`mlflow-operator-serve` as a pod runs it: from the registry, with workers, stopped by SIGTERM."""

from __future__ import annotations

import json
import signal
import threading
import time
from pathlib import Path

import pytest

from tests.bench.serving_servers import (
    RawResponse,
    request,
    save_iris_classifier,
    start_batched,
    wait_ready,
)
from tests.mlflowstack.models import ModelRegistry, sample_input
from tests.mlflowstack.stack import MlflowStack
from tests.support.polling import eventually

JSON = "application/json"


def split_body(frame: object) -> bytes:
    return json.dumps(
        {"dataframe_split": json.loads(frame.to_json(orient="split", index=False))}
    ).encode()  # type: ignore[attr-defined]


@pytest.mark.integration
def test_serves_a_registry_version_through_the_tracking_server(
    mlflow_stack: MlflowStack, mlflow_registry: ModelRegistry, model_name: str, tmp_path: Path
) -> None:
    version = mlflow_registry.log_version(model_name)
    # Only the tracking URI: artifacts come through the server (--serve-artifacts), as in a pod.
    server = start_batched(
        version.uri,
        tmp_path,
        ["--workers", "1", "--download-dir", str(tmp_path / "model")],
        {"MLFLOW_TRACKING_URI": mlflow_stack.tracking_uri},
    )
    try:
        wait_ready(server)
        features = sample_input()
        response = request(
            server.port, "POST", "/invocations", body=split_body(features), content_type=JSON
        )
        assert response.status == 200
        assert json.loads(response.body) == {"predictions": version.predict(features)}
        metrics = request(server.port, "GET", "/metrics").body.decode()
        assert f'model_name="{model_name}",model_version="{version.version}"' in metrics
        assert (tmp_path / "model" / "MLmodel").exists()  # downloaded once, to where we said
    finally:
        server.stop()


@pytest.fixture(scope="module")
def iris_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_iris_classifier(tmp_path_factory.mktemp("batched-lifecycle") / "iris")


SLOW_MODEL = """
import time
import mlflow.pyfunc


class Slow(mlflow.pyfunc.PythonModel):
    def predict(self, context, model_input, params=None):
        time.sleep(float(model_input["seconds"].iloc[0]))
        return [len(model_input)] * len(model_input)
"""


def save_slow_model(path: Path) -> Path:
    import importlib.util
    import sys

    import mlflow.pyfunc

    source = path.parent / "slow_model.py"
    source.write_text(SLOW_MODEL)
    spec = importlib.util.spec_from_file_location("slow_model", source)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["slow_model"] = module
    spec.loader.exec_module(module)
    mlflow.pyfunc.save_model(str(path), python_model=module.Slow(), code_paths=[str(source)])
    return path


def test_sigterm_drains_in_flight_requests(tmp_path: Path) -> None:
    model_dir = save_slow_model(tmp_path / "slow")
    server = start_batched(str(model_dir), tmp_path, ["--workers", "1", "--drain-seconds", "10"])
    wait_ready(server)
    results: list[RawResponse] = []
    body = json.dumps({"dataframe_records": [{"seconds": 1.5}]}).encode()
    worker = threading.Thread(
        target=lambda: results.append(
            request(server.port, "POST", "/invocations", body=body, content_type=JSON)
        )
    )
    worker.start()
    time.sleep(0.5)  # the request is in the model now
    assert server.process.popen is not None
    server.process.popen.send_signal(signal.SIGTERM)
    worker.join(10)
    assert [(r.status, json.loads(r.body)) for r in results] == [(200, {"predictions": [1]})]
    assert server.process.popen.wait(10) == 0
    server.stop()


def test_workers_share_one_port_and_metrics(iris_dir: Path, tmp_path: Path) -> None:
    server = start_batched(str(iris_dir), tmp_path, ["--workers", "2"])
    try:
        wait_ready(server)
        log = Path(server.process.log_path)
        # /ready answers as soon as one worker is up; the other may still be loading the model.
        eventually(
            lambda: log.read_text().count("ready after") == 2,
            timeout=60,
            what="both workers ready",
            interval=0.1,
            processes=[server.process],
        )
        body = split_body(sample_input(3))
        for _ in range(20):
            response = request(server.port, "POST", "/invocations", body=body, content_type=JSON)
            assert response.status == 200
        metrics = request(server.port, "GET", "/metrics").body.decode()
        # Any worker answers for all of them (prometheus multiprocess mode).
        assert (
            'mlflow_serving_requests_total{model_name="iris",model_version="",status="200"} 20.0'
            in metrics
        )
    finally:
        server.stop()


@pytest.mark.parametrize("workers", ["1", "2"])
def test_warns_once_about_requirements_this_environment_does_not_meet(
    iris_dir: Path, tmp_path: Path, workers: str
) -> None:
    """MLflow's load-time warning about the model's requirements, which `batched` logs after it
    answers rather than before (a start's quarter second): still there, and once per pod."""
    import shutil

    model_dir = tmp_path / "iris-old-numpy"
    shutil.copytree(iris_dir, model_dir)
    (model_dir / "requirements.txt").write_text("mlflow\nnumpy==1.0.0\nscikit-learn\n")
    server = start_batched(str(model_dir), tmp_path, ["--workers", workers])
    try:
        wait_ready(server)
        response = request(
            server.port, "POST", "/invocations", body=split_body(sample_input(2)), content_type=JSON
        )
        assert response.status == 200
        log = Path(server.process.log_path)
        eventually(
            lambda: "required: numpy==1.0.0" in log.read_text(),
            timeout=30,
            what="MLflow's warning about numpy==1.0.0",
            interval=0.1,
            processes=[server.process],
        )
        time.sleep(1)  # a second warning from another worker would come as soon as the first
        assert log.read_text().count("Detected one or more mismatches") == 1
    finally:
        server.stop()
