"""`mlflow-operator-serve-mlflow`: `mlflow models serve`'s options, a remote model downloaded
once beforehand (the model's files themselves are served in tests/e2e, on the real node)."""

from __future__ import annotations

import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from mlflow_operator_serve.mlflow_cli import model_path, uses_uv, with_local_model


def fetched(uri: str) -> str:
    return f"/tmp/mlflow-model-x/{uri.rsplit('/', 2)[-2]}"


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--model-uri", "models:/fraud/8", "--port", "8080"],
         ["--model-uri", "/tmp/mlflow-model-x/fraud", "--port", "8080"]),
        (["-m", "models:/fraud/8"], ["-m", "/tmp/mlflow-model-x/fraud"]),
        (["--model-uri=models:/fraud/8", "-w", "2"],
         ["--model-uri=/tmp/mlflow-model-x/fraud", "-w", "2"]),
    ],
)  # fmt: skip
def test_a_remote_model_is_downloaded_once_and_served_from_its_copy(
    args: list[str], expected: list[str]
) -> None:
    asked: list[str] = []

    def download(uri: str) -> str:
        asked.append(uri)
        return fetched(uri)

    assert with_local_model(args, download) == expected
    assert asked == ["models:/fraud/8"]


def test_a_local_model_and_other_options_are_left_as_they_are(tmp_path: Path) -> None:
    def never(uri: str) -> str:
        raise AssertionError(f"downloaded {uri}")

    args = ["--model-uri", str(tmp_path), "--env-manager", "local", "--host", "0.0.0.0"]
    assert with_local_model(args, never) == args
    assert with_local_model([f"--model-uri=file://{tmp_path}"], never) == [
        f"--model-uri=file://{tmp_path}"
    ]


@pytest.mark.parametrize(
    ("args", "uv"),
    [
        (["--model-uri", "m", "--env-manager", "uv"], True),
        (["--env-manager=uv", "-m", "m"], True),
        (["--model-uri", "m", "--env-manager", "local"], False),
        (["--model-uri", "uv"], False),
        ([], False),
    ],
)
def test_the_env_manager_uv_is_recognised(args: list[str], uv: bool) -> None:
    assert uses_uv(args) is uv


def test_the_model_path_is_read_from_each_spelling() -> None:
    assert model_path(["--port", "1", "--model-uri", "models:/m/3"]) == "models:/m/3"
    assert model_path(["-m", "/tmp/m"]) == "/tmp/m"
    assert model_path(["--model-uri=models:/m/3"]) == "models:/m/3"
    assert model_path(["--port", "1"]) is None


def test_with_uv_the_built_environment_is_fetched_before_mlflow_serves(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from mlflow_operator_serve import environment, mlflow_cli

    happened: list[tuple[str, ...]] = []

    def fetch(local: str, *, model_uri: str) -> None:
        happened.append(("fetch", local, model_uri))

    def serve(args: list[str], prog_name: str) -> None:
        happened.append(("serve", *args))

    monkeypatch.setattr(environment, "fetch", fetch)
    # MLflow's CLI takes seconds to import, and only its `cli.main` is called
    monkeypatch.setitem(sys.modules, "mlflow.cli", SimpleNamespace(cli=SimpleNamespace(main=serve)))
    monkeypatch.setattr(mlflow_cli, "_download", fetched)
    argv = ["--model-uri", "models:/fraud/8", "--env-manager", "uv", "--port", "8080"]
    monkeypatch.setattr("sys.argv", ["mlflow-operator-serve-mlflow", *argv])
    mlflow_cli.main()
    local = "/tmp/mlflow-model-x/fraud"
    assert happened == [
        ("fetch", local, "models:/fraud/8"),
        ("serve", "models", "serve", "--model-uri", local, "--env-manager", "uv", "--port", "8080"),
    ]
    happened.clear()
    monkeypatch.setattr(
        "sys.argv", ["x", "--model-uri", "models:/fraud/8", "--env-manager", "local"]
    )
    mlflow_cli.main()
    assert [step[0] for step in happened] == ["serve"]
