"""Sampled prediction logging against the real tracking server: `mlflow-operator-serve
--sample-rate` writes what it answered to the version's run, in MinIO through MLflow."""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import pytest

from tests.bench.serving_servers import request, start_batched, wait_ready
from tests.integration.test_batched_lifecycle import JSON, split_body
from tests.mlflowstack.models import ModelRegistry, sample_input
from tests.mlflowstack.stack import MlflowStack

EXCLUDED = "sepal length (cm)"


@pytest.mark.integration
def test_answered_requests_land_in_the_versions_run_without_the_excluded_column(
    mlflow_stack: MlflowStack, mlflow_registry: ModelRegistry, model_name: str, tmp_path: Path
) -> None:
    version = mlflow_registry.log_version(model_name)
    # two workers, as a pod with two CPUs runs it: each forked worker writes its own files
    server = start_batched(
        version.uri,
        tmp_path,
        ["--workers", "2", "--drain-seconds", "1", "--sample-rate", "1",
         "--sample-exclude", EXCLUDED, "--sample-exclude", "no-such-column"],
        {"MLFLOW_TRACKING_URI": mlflow_stack.tracking_uri},
    )  # fmt: skip
    rows = sample_input(10)
    # the three columns kept (unique per row of this sample) -> what the caller got
    answered: dict[tuple[float, ...], list[int]] = {}
    try:
        wait_ready(server)
        for i in range(len(rows)):
            row = rows.iloc[i : i + 1]
            response = request(
                server.port, "POST", "/invocations", body=split_body(row), content_type=JSON
            )
            assert response.status == 200
            kept = tuple(float(x) for x in row.drop(columns=[EXCLUDED]).iloc[0])
            answered[kept] = json.loads(response.body)["predictions"]
        refused = request(server.port, "POST", "/invocations", body=b"{}", content_type=JSON)
        assert refused.status == 400
    finally:
        server.stop()  # SIGTERM: each worker uploads what it holds before it exits

    assert len(answered) == len(rows)
    local = mlflow.artifacts.download_artifacts(
        run_id=version.run_id,
        artifact_path=f"predictions/{version.version}",
        dst_path=str(tmp_path / "samples"),
        tracking_uri=mlflow_stack.tracking_uri,
    )
    files = sorted(Path(local).rglob("*.jsonl"))
    assert files, "no sample file in the run's artifacts"
    lines = [json.loads(line) for f in files for line in f.read_text().splitlines()]
    assert len(lines) == len(rows), "every answered request once, the refused one not at all"
    for line in lines:
        assert (line["model"], line["version"]) == (model_name, version.version)
        split = line["inputs"]["dataframe_split"]
        assert EXCLUDED not in split["columns"]
        assert len(split["columns"]) == 3
        assert line["predictions"] == {"predictions": answered[tuple(split["data"][0])]}
    assert EXCLUDED not in "".join(f.read_text() for f in files)
    assert len({line["request_id"] for line in lines}) == len(rows)
