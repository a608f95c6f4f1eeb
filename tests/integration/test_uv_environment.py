"""serving.envManager uv against a real MLflow (PostgreSQL, MinIO, `mlflow server`): the Job's
`mlflow-operator-serve-env build` builds a version's environment once from a package index
(a local wheelhouse), checks that the model loads in it and keeps it as a run's artifact; a
second build finds it built; a serving pod's `mlflow-operator-serve-mlflow --env-manager uv`
then starts from it with no index at all, and answers with a package only the environment has.
A requirement the index lacks fails the build in one line that names it.

Nothing here reaches PyPI, except `pip download` filling the wheelhouse once per requirement
list (tests/support/package_index.py keeps it in the cache): the builds see the wheelhouse
alone (UV_NO_INDEX), the serving pod an index that does not answer.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from mlflow_operator_serve.environment import ENVIRONMENT_TAG, IMAGE_TAG, MODEL_URI_TAG
from tests.mlflowstack.models import ModelRegistry
from tests.mlflowstack.stack import MlflowStack
from tests.support.package_index import build_requirements
from tests.support.package_index import wheelhouse as package_wheelhouse
from tests.support.polling import eventually
from tests.support.processes import ManagedProcess, free_port, http_ok

pytestmark = pytest.mark.integration

BIN = Path(sys.executable).parent
IMAGE = "ghcr.io/example/serving-cpu:test"
# mlflow-skinny rather than mlflow: its dependencies hold the scoring server (uvicorn,
# fastapi) and are a sixth of full MLflow's; mlflow.pyfunc needs numpy and pandas besides
REQUIREMENTS = [
    "mlflow-skinny==3.17.2",
    f"numpy=={np.__version__}",
    f"pandas=={pd.__version__}",
    "inflection==0.5.1",  # not in the tests' venv: only the built environment has it
]
# on PyPI, but not in the wheelhouse: what a private index would lack
ABSENT = "pyfiglet==1.0.2"
MODEL = """
import mlflow


class Plurals(mlflow.pyfunc.PythonModel):
    def predict(self, context, model_input, params=None):
        import inflection  # at predict time: the tests' venv, which logs the model, has none

        return [inflection.pluralize(str(word)) for word in model_input["word"]]


mlflow.models.set_model(Plurals())
"""
# the package index's variables: none is inherited by the programs started here
OFF = ("UV_OFFLINE", "UV_NO_INDEX", "PIP_NO_INDEX", "UV_FIND_LINKS", "PIP_FIND_LINKS")


@pytest.fixture(scope="module")
def wheelhouse() -> Path:
    """The requirements' wheels for this interpreter, and the build dependencies MLflow
    writes into python_env.yaml, which the environment installs first."""
    return package_wheelhouse([*REQUIREMENTS, *build_requirements()])


def build(
    stack: MlflowStack, uri: str, experiment: str, root: Path, wheelhouse: Path, tmp: Path
) -> subprocess.CompletedProcess[str]:
    """The Job: `mlflow-operator-serve-env build`, its index the wheelhouse alone
    (UV_NO_INDEX, which uv itself does not read: the build passes --no-index); the default
    index, were it asked, does not answer."""
    env = {name: value for name, value in os.environ.items() if name not in OFF}
    dead_index = f"http://127.0.0.1:{free_port()}/simple"
    env |= {
        "MLFLOW_TRACKING_URI": stack.tracking_uri,
        "MLFLOW_ENV_ROOT": str(root),
        "UV_FIND_LINKS": str(wheelhouse),
        "UV_NO_INDEX": "1",
        "UV_DEFAULT_INDEX": dead_index,
        "UV_PYTHON_DOWNLOADS": "never",
        "UV_CACHE_DIR": str(tmp / "uv-cache"),
        "MLFLOW_OPERATOR_TERMINATION_LOG": str(tmp / "termination-log"),
    }
    (tmp / "termination-log").write_text("")  # the kubelet's file: written only if there
    command = [str(BIN / "mlflow-operator-serve-env"), "build", "--model-uri", uri]
    return subprocess.run(
        [*command, "--experiment", experiment, "--image", IMAGE],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def environment_runs(client: MlflowClient, experiment: str) -> list[object]:
    found = client.get_experiment_by_name(experiment)
    if found is None:
        return []
    return list(
        client.search_runs(
            [found.experiment_id], filter_string=f"tags.`{ENVIRONMENT_TAG}` LIKE '%'"
        )
    )


def test_an_environment_is_built_once_and_a_pod_serves_from_it_without_an_index(
    mlflow_stack: MlflowStack,
    mlflow_registry: ModelRegistry,
    model_name: str,
    wheelhouse: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    version = mlflow_registry.log_code_version(model_name, MODEL, requirements=REQUIREMENTS)
    uri = f"models:/{model_name}/{version}"
    experiment = f"mlflow-operator/tests/{model_name}"
    client = MlflowClient(mlflow_stack.tracking_uri)

    built = build(mlflow_stack, uri, experiment, tmp_path / "job-envs", wheelhouse, tmp_path)
    assert built.returncode == 0, built.stderr[-3000:]
    print(built.stdout)
    (run,) = environment_runs(client, experiment)
    info, tags = run.info, run.data.tags  # type: ignore[attr-defined]
    assert info.status == "FINISHED"
    assert info.run_name == f"environment-{tags[ENVIRONMENT_TAG][:12]}"
    assert (tags[IMAGE_TAG], tags[MODEL_URI_TAG]) == (IMAGE, uri)
    env_name = tags["mlflowops.dev/environment-name"]
    assert f"environment {tags[ENVIRONMENT_TAG]} for {uri} built: run {info.run_id}" in (
        built.stdout
    )
    (artifact,) = client.list_artifacts(info.run_id, "environment")
    assert artifact.path == f"environment/{env_name}.tar.gz"
    assert run.data.metrics["archive_bytes"] == artifact.file_size  # type: ignore[attr-defined]

    again = build(mlflow_stack, uri, experiment, tmp_path / "job-envs-2", wheelhouse, tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    assert f"already built: run {info.run_id}" in again.stdout
    assert len(environment_runs(client, experiment)) == 1
    assert not (tmp_path / "job-envs-2" / env_name).exists()

    # the pod: a fresh MLFLOW_ENV_ROOT, none of the index variables, an index that does not
    # answer (anything that tried to install would fail), an empty uv cache
    for name in OFF:
        monkeypatch.delenv(name, raising=False)
    pod_root = tmp_path / "pod-envs"
    dead_index = f"http://127.0.0.1:{free_port()}/simple"
    port = free_port()
    options = ["--env-manager", "uv", "--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
    server = ManagedProcess(
        name="serving-pod",
        argv=[str(BIN / "mlflow-operator-serve-mlflow"), "--model-uri", uri, *options],
        log_path=tmp_path / "serving-pod.log",
        env={
            "MLFLOW_TRACKING_URI": mlflow_stack.tracking_uri,
            "MLFLOW_ENV_ROOT": str(pod_root),
            "MLFLOW_OPERATOR_ENV_EXPERIMENT": experiment,
            "MLFLOW_OPERATOR_SERVING_IMAGE": IMAGE,
            "UV_INDEX_URL": dead_index,
            "UV_DEFAULT_INDEX": dead_index,
            "PIP_INDEX_URL": dead_index,
            "UV_CACHE_DIR": str(tmp_path / "pod-uv-cache"),
            "PYTHONUNBUFFERED": "1",
        },
        cwd=tmp_path,
    ).start()
    try:
        url = f"http://127.0.0.1:{port}"
        eventually(
            lambda: http_ok(f"{url}/ping"),
            timeout=180,
            what="the serving pod's /ping",
            interval=0.2,
            processes=[server],
        )
        body = json.dumps(
            {"dataframe_split": {"columns": ["word"], "data": [["octopus"], ["person"]]}}
        ).encode()
        request = urllib.request.Request(
            f"{url}/invocations", data=body, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=30) as answer:
            assert json.load(answer)["predictions"] == ["octopi", "people"]
    finally:
        server.stop()
    log = server.log_path.read_text()
    print(log[-3000:])
    assert f"environment {tags[ENVIRONMENT_TAG]} for {uri}: " in log
    assert f"from run {info.run_id}" in log
    assert "already exists" in log  # MLflow took it as it was
    assert "Creating a new environment" not in log
    assert os.readlink(pod_root / env_name / "bin" / "python").startswith("/")
    assert [p.name for p in pod_root.iterdir()] == [env_name]  # no staging left behind


def test_a_requirement_the_index_lacks_fails_the_build_in_one_line_naming_it(
    mlflow_stack: MlflowStack,
    mlflow_registry: ModelRegistry,
    model_name: str,
    wheelhouse: Path,
    tmp_path: Path,
) -> None:
    version = mlflow_registry.log_code_version(
        model_name, MODEL, requirements=[*REQUIREMENTS, ABSENT]
    )
    uri = f"models:/{model_name}/{version}"
    experiment = f"mlflow-operator/tests/{model_name}"
    root = tmp_path / "job-envs"

    failed = build(mlflow_stack, uri, experiment, root, wheelhouse, tmp_path)
    assert failed.returncode == 1, failed.stdout + failed.stderr
    reason = failed.stderr.strip().splitlines()[-1]
    print(reason)
    assert reason.startswith(f"the environment of {uri}: installing the model's requirements")
    assert "pyfiglet" in reason
    assert (tmp_path / "termination-log").read_text() == reason + "\n"
    assert environment_runs(MlflowClient(mlflow_stack.tracking_uri), experiment) == []
    assert list(root.iterdir()) == []  # nothing half-built left for MLflow to take

    # a pod of the version (the operator starts none): it says why instead of installing
    pod = subprocess.run(
        [str(BIN / "mlflow-operator-serve-mlflow"), "--model-uri", uri, "--env-manager", "uv"],
        env={
            **{name: value for name, value in os.environ.items() if name not in OFF},
            "MLFLOW_TRACKING_URI": mlflow_stack.tracking_uri,
            "MLFLOW_ENV_ROOT": str(tmp_path / "pod-envs"),
            "MLFLOW_OPERATOR_ENV_EXPERIMENT": experiment,
            "MLFLOW_OPERATOR_SERVING_IMAGE": IMAGE,
            "MLFLOW_OPERATOR_TERMINATION_LOG": str(tmp_path / "termination-log"),
        },
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert pod.returncode == 1, pod.stdout + pod.stderr
    said = pod.stderr.strip().splitlines()[-1]
    assert said.startswith(f"no environment built for {uri} with image {IMAGE} (experiment ")
    assert said.endswith("): the operator builds it with a Job before any pod starts")
    assert (tmp_path / "termination-log").read_text() == said + "\n"
    assert not (tmp_path / "pod-envs").exists() or list((tmp_path / "pod-envs").iterdir()) == []
