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


@pytest.mark.integration
def test_labels_posted_for_sampled_requests_land_next_to_them_with_their_request_ids(
    mlflow_stack: MlflowStack, mlflow_registry: ModelRegistry, model_name: str, tmp_path: Path
) -> None:
    version = mlflow_registry.log_version(model_name)
    server = start_batched(
        version.uri,
        tmp_path,
        ["--workers", "2", "--drain-seconds", "1", "--sample-rate", "1"],
        {"MLFLOW_TRACKING_URI": mlflow_stack.tracking_uri},
    )  # fmt: skip
    rows = sample_input(6)
    truth = {f"it-labels-{i}": i % 3 for i in range(len(rows))}  # what the caller learns later
    try:
        wait_ready(server)
        for i, request_id in enumerate(truth):
            response = request(
                server.port, "POST", "/invocations", body=split_body(rows.iloc[i : i + 1]),
                content_type=JSON, headers={"X-Request-ID": request_id},
            )  # fmt: skip
            assert response.status == 200
        # in two posts, as a caller labels in parts; either worker may take each
        items = [{"request_id": r, "label": label} for r, label in truth.items()]
        for part in (items[:4], items[4:]):
            posted = request(
                server.port, "POST", "/labels", body=json.dumps({"labels": part}).encode(),
                content_type=JSON,
            )  # fmt: skip
            assert (posted.status, json.loads(posted.body)) == (202, {"accepted": len(part)})
        refused = request(server.port, "POST", "/labels", body=b'{"labels": []}', content_type=JSON)
        assert refused.status == 400
    finally:
        server.stop()  # SIGTERM: each worker uploads its samples and labels before it exits

    def lines(kind: str) -> tuple[list[Path], list[dict[str, object]]]:
        local = mlflow.artifacts.download_artifacts(
            run_id=version.run_id,
            artifact_path=f"{kind}/{version.version}",
            dst_path=str(tmp_path / kind),
            tracking_uri=mlflow_stack.tracking_uri,
        )
        files = sorted(Path(local).rglob("*.jsonl"))
        assert files, f"no {kind} file in the run's artifacts"
        return files, [json.loads(line) for f in files for line in f.read_text().splitlines()]

    sample_files, samples = lines("predictions")
    label_files, labels = lines("labels")
    # next to the samples: same run, same version, the same UTC date's directory
    assert {f.parent.name for f in label_files} <= {f.parent.name for f in sample_files}
    assert {line["request_id"] for line in samples} == set(truth)
    assert {str(line["request_id"]): line["label"] for line in labels} == truth
    assert len(labels) == len(truth)
    for line in labels:
        assert (line["model"], line["version"]) == (model_name, version.version)
        assert str(line["timestamp"]).endswith("+00:00")
