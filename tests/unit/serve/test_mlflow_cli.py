"""`mlflow-operator-serve-mlflow`: `mlflow models serve`'s options, a remote model downloaded
once beforehand (the model's files themselves are served in tests/e2e, on the real node)."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlflow_operator_serve.mlflow_cli import with_local_model


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
