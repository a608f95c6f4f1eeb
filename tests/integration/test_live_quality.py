"""The operator's reading of ground truth against a real MLflow (PostgreSQL and MinIO behind
its artifact proxy): the sample and label files a run holds in dated directories are listed
and read through the proxy, each once; a run with none yet is no error; and an old day read
to the end is not listed again."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path
from typing import Any

import mlflow
import pytest

from mlflow_operator.api.modeldeployment import QualityMonitoring
from mlflow_operator.core.modeldeployment.quality import live_metric
from mlflow_operator.reconcilers.quality import READ_SECONDS, LiveQuality
from mlflow_operator.registry.client import RegistryClient
from tests.mlflowstack.models import ModelRegistry
from tests.mlflowstack.stack import MlflowStack

pytestmark = pytest.mark.integration


def write(
    stack: MlflowStack, tmp: Path, run_id: str, artifact_dir: str, records: list[dict[str, Any]]
) -> None:
    local = tmp / f"{len(list(tmp.iterdir()))}.jsonl"
    local.write_text("".join(json.dumps(r) + "\n" for r in records))
    mlflow.MlflowClient(stack.tracking_uri).log_artifact(run_id, str(local), artifact_dir)


async def test_samples_and_labels_in_dated_directories_are_read_once_each(
    mlflow_stack: MlflowStack, mlflow_registry: ModelRegistry, model_name: str, tmp_path: Path
) -> None:
    version = mlflow_registry.log_version(model_name)
    mlflow.MlflowClient(mlflow_stack.tracking_uri).log_metric(version.run_id, "test_accuracy", 0.9)
    now = [0.0]
    reader = LiveQuality(clock=lambda: now[0], today=lambda: date(2026, 12, 3))
    settings = QualityMonitoring(metric="accuracy", training_metric="test_accuracy")
    client = RegistryClient(mlflow_stack.tracking_uri)

    async def read() -> tuple[int, float | None, float | None, int] | None:
        now[0] += READ_SECONDS
        reading = await reader.read(
            "ns/name", client, writes_to=version.run_id, version=version.version,
            version_run=version.run_id, settings=settings,
        )  # fmt: skip
        if reading is None:
            return None
        value, labelled = live_metric("accuracy", reading.window.pairs)
        return labelled, value, reading.training, reading.files_remembered

    try:
        # nothing written yet: no directory, no error, the training metric read
        assert await read() == (0, None, 0.9, 0)
        v, run = version.version, version.run_id
        write(mlflow_stack, tmp_path, run, f"predictions/{v}/2026-11-01",
              [{"request_id": "old", "predictions": {"predictions": [1]}}])  # fmt: skip
        write(mlflow_stack, tmp_path, run, f"predictions/{v}/2026-12-02",
              [{"request_id": "a", "predictions": {"predictions": [1, 2]}}])  # fmt: skip
        write(mlflow_stack, tmp_path, run, f"predictions/{v}/2026-12-03",
              [{"request_id": "b", "predictions": {"predictions": [0]}}])  # fmt: skip
        write(mlflow_stack, tmp_path, run, f"labels/{v}/2026-12-03",
              [{"request_id": "a", "label": [1, 1]}, {"request_id": "b", "label": 0},
               {"request_id": "old", "label": 1}])  # fmt: skip
        # read moments ago (the clock has not moved): not again before READ_SECONDS
        assert await reader.read(
            "ns/name", client, writes_to=run, version=v, version_run=run, settings=settings
        ) is None  # fmt: skip
        assert await read() == (4, 3 / 4, 0.9, 4)

        # no file is read twice; 2026-11-01 is old and read to the end: listed once more,
        # closed, its name forgotten, and not listed again
        requests = client.requests
        assert await read() == (4, 3 / 4, 0.9, 3)
        # predictions/<v> and its three days, labels/<v> and its day, the run's metrics
        assert client.requests - requests == 4 + 2 + 1
        requests = client.requests
        assert await read() == (4, 3 / 4, 0.9, 3)
        assert client.requests - requests == 3 + 2 + 1
    finally:
        await client.close()
