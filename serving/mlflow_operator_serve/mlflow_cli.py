"""`mlflow-operator-serve-mlflow`: MLflow's own `mlflow models serve`, the model downloaded once.

`runtime: mlflow` pods of the operator's serving images run this instead of `mlflow models
serve`. MLflow 3.17's `mlflow models serve -m models:/...` downloads the whole model twice:
once to read its MLmodel and choose a flavor backend (`flavor_backend_registry.
get_flavor_backend`, into a temporary directory it deletes), and once more to serve it. For a
large model that is twice the bytes from the tracking server (or from the node's model cache)
and twice the time at every pod start. This downloads it once, as the batched runtime does
(loading.local_model_dir), and runs MLflow's own CLI on that copy in this process, so MLflow
is imported once too. Everything else is `mlflow models serve` as it is: the same options,
server and answers. Images of the user's (`serving.image`) keep `mlflow models serve`.

With `--env-manager uv`, the model's environment is not installed here: the operator's Job
built it once, and it is downloaded to where MLflow looks for it, every package index switched
off before MLflow starts (environment.py).
"""

from __future__ import annotations

import itertools
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

_MODEL_OPTIONS = ("-m", "--model-uri")


def with_local_model(args: list[str], download: Callable[[str], str]) -> list[str]:
    """`args` of `mlflow models serve` with a remote --model-uri replaced by the directory
    `download` puts it in; a local path is left as it is."""
    out = list(args)
    for i, arg in enumerate(out):
        if arg in _MODEL_OPTIONS and i + 1 < len(out):
            out[i + 1] = _local(out[i + 1], download)
        elif arg.startswith("--model-uri="):
            out[i] = "--model-uri=" + _local(arg.split("=", 1)[1], download)
    return out


def model_path(args: list[str]) -> str | None:
    """The --model-uri of `mlflow models serve` args, None without one."""
    for i, arg in enumerate(args):
        if arg in _MODEL_OPTIONS and i + 1 < len(args):
            return args[i + 1]
        if arg.startswith("--model-uri="):
            return arg.split("=", 1)[1]
    return None


def uses_uv(args: list[str]) -> bool:
    """`mlflow models serve --env-manager uv`."""
    return "--env-manager=uv" in args or ("--env-manager", "uv") in itertools.pairwise(args)


def _local(uri: str, download: Callable[[str], str]) -> str:
    return uri if Path(uri.removeprefix("file://")).exists() else download(uri)


def _download(uri: str) -> str:
    import mlflow.artifacts

    destination = tempfile.mkdtemp(prefix="mlflow-model-")
    return str(mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=destination))


def main() -> None:
    given = sys.argv[1:]
    args = with_local_model(given, _download)
    local, uri = model_path(args), model_path(given)
    if uses_uv(given) and local and uri:
        from mlflow_operator_serve import environment

        environment.fetch(local.removeprefix("file://"), model_uri=uri)
    # imported after the fetch: a pod without its environment exits seconds sooner
    from mlflow.cli import cli

    cli.main(args=["models", "serve", *args], prog_name="mlflow")
