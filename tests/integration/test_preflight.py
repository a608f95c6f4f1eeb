"""The pre-flight check against a real MLflow: the operator's client reads a version's MLmodel,
requirements.txt and python_env.yaml (conda.yaml for a version that has only that) through the
tracking server's artifact proxy (real PostgreSQL and MinIO behind it), and each version of the
corpus gets its verdict, naming what is at fault, against what the serving image built here has
installed (its lock)."""

from __future__ import annotations

import pytest

from mlflow_operator.core.modeldeployment.preflight import (
    COMPATIBLE,
    ImageContents,
    check_version,
    contents_from_lock,
)
from mlflow_operator.registry.client import RegistryClient
from tests.images.base import PYTHON_VERSION
from tests.images.locks import LOCKS
from tests.mlflowstack.broken_versions import CORPUS
from tests.mlflowstack.models import ModelRegistry
from tests.mlflowstack.stack import MlflowStack

pytestmark = pytest.mark.integration


def serving_cpu() -> ImageContents:
    return contents_from_lock((LOCKS / "serving-cpu.txt").read_text(), PYTHON_VERSION)


async def test_a_good_version_and_a_models_from_code_version_are_compatible(
    mlflow_stack: MlflowStack, mlflow_registry: ModelRegistry, model_name: str
) -> None:
    good = mlflow_registry.log_version(model_name).version
    from_code = mlflow_registry.log_failing_version(model_name)  # what the canary tests serve
    client = RegistryClient(mlflow_stack.tracking_uri)
    try:
        for version in (good, from_code):
            files = await client.model_files(model_name, version)
            assert files.error == "", files
            assert files.location.startswith("mlflow-artifacts:/")
            assert files.mlmodel is not None
            assert "python_function" in files.mlmodel
            assert files.requirements is not None
            assert "mlflow==" in files.requirements
            verdict = check_version(
                version, files, serving_cpu(), image_name="serving-cpu", gpu=False
            )
            assert verdict.verdict == COMPATIBLE, verdict
        # a few kilobytes each, never the model itself: the URI, the listing, three files
        assert client.requests == 2 * 5
    finally:
        await client.close()


async def test_every_broken_version_of_the_corpus_gets_its_verdict_naming_the_fault(
    mlflow_stack: MlflowStack, mlflow_registry: ModelRegistry, model_name: str
) -> None:
    client = RegistryClient(mlflow_stack.tracking_uri)
    seen: dict[str, str] = {}
    try:
        for broken in CORPUS:
            version = broken.register(mlflow_registry, model_name)
            files = await client.model_files(model_name, version)
            verdict = check_version(
                version, files, serving_cpu(), image_name="serving-cpu", gpu=False
            )
            seen[broken.key] = f"{verdict.verdict}: {verdict.message}"
    finally:
        await client.close()
    for line in seen.items():
        print(*line)
    wrong = {
        b.key: seen[b.key]
        for b in CORPUS
        if not (seen[b.key].startswith(f"{b.verdict}: ") and b.names in seen[b.key])
    }
    assert wrong == {}
    assert sum(b.verdict == "Incompatible" for b in CORPUS) >= 10
