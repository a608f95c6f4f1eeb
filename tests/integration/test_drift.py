"""Drift scores against the real tracking server: `mlflow-operator-serve --drift` takes its
reference from the version's run (a dataset logged with `mlflow.log_table`, or a profile an
earlier process stored there), or makes one of the first rows it serves and stores it there,
and scores live traffic on `/metrics`."""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import pandas as pd
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.bench.serving_servers import Server, request, start_batched, wait_ready
from tests.integration.test_batched_lifecycle import JSON, split_body
from tests.mlflowstack.models import ModelRegistry, iris
from tests.mlflowstack.stack import MlflowStack
from tests.support.polling import eventually

pytestmark = pytest.mark.integration
SHIFTED = "petal length (cm)"


def drift_metrics(server: Server) -> dict[tuple[str, ...], float]:
    """(metric, label values...) -> value, for the drift metrics on /metrics."""
    text = request(server.port, "GET", "/metrics").body.decode()
    found: dict[tuple[str, ...], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "mlflow_serving_feature_drift":
                found[(sample.name, sample.labels["kind"], sample.labels["feature"])] = sample.value
            elif sample.name == "mlflow_serving_drift_reference_rows":
                found[(sample.name, sample.labels["source"])] = sample.value
    return found


def score(server: Server, rows: pd.DataFrame, per_request: int = 25) -> None:
    for start in range(0, len(rows), per_request):
        body = split_body(rows.iloc[start : start + per_request])
        response = request(server.port, "POST", "/invocations", body=body, content_type=JSON)
        assert response.status == 200, response.body


def drift_server(uri: str, tmp_path: Path, stack: MlflowStack, *extra: str) -> Server:
    # one worker: each worker scores the rows it gets, and the assertions below are about
    # distributions of whole datasets, not of halves picked by the kernel
    server = start_batched(
        uri, tmp_path, ["--workers", "1", "--drain-seconds", "1", "--drift", *extra],
        {"MLFLOW_TRACKING_URI": stack.tracking_uri},
    )  # fmt: skip
    wait_ready(server)
    return server


def test_first_rows_become_a_stored_reference_and_a_shifted_feature_drifts(
    mlflow_stack: MlflowStack, mlflow_registry: ModelRegistry, model_name: str, tmp_path: Path
) -> None:
    version = mlflow_registry.log_version(model_name)
    features, _ = iris()
    shuffled = features.sample(frac=1.0, random_state=1, ignore_index=True)
    server = drift_server(version.uri, tmp_path, mlflow_stack, "--drift-reference-rows", "150")
    try:
        score(server, shuffled)  # the reference: all of iris, in random order
        eventually(
            lambda: drift_metrics(server).get(
                ("mlflow_serving_drift_reference_rows", "live")) == 150,
            timeout=60, what="a reference of the first 150 rows",
        )  # fmt: skip
        score(server, pd.concat([shuffled] * 2, ignore_index=True))  # the same distribution
        eventually(
            lambda: len([k for k in drift_metrics(server) if k[0].endswith("feature_drift")]) == 5,
            timeout=60, what="scores for the 4 inputs and the prediction",
        )  # fmt: skip
        calm = drift_metrics(server)
        moved = shuffled.assign(**{SHIFTED: shuffled[SHIFTED] + 3.0})
        score(server, pd.concat([moved] * 7, ignore_index=True))  # fills the window
        eventually(
            lambda: drift_metrics(server)[("mlflow_serving_feature_drift", "input", SHIFTED)]
            > 0.25,
            timeout=60, what=f"{SHIFTED} drifting",
        )  # fmt: skip
        drifted = drift_metrics(server)
    finally:
        server.stop()

    inputs = list(features.columns)
    assert all(calm[("mlflow_serving_feature_drift", "input", c)] < 0.1 for c in inputs), calm
    for column in inputs:
        if column != SHIFTED:
            assert drifted[("mlflow_serving_feature_drift", "input", column)] < 0.1, drifted
    # longer petals: the model answers class 2 far more often
    assert drifted[("mlflow_serving_feature_drift", "output", "prediction")] > 0.25, drifted
    calmest = max(v for k, v in calm.items() if k[0].endswith("feature_drift"))
    print(f"drift: calm {calmest:.3f} at most; {SHIFTED} + 3 cm: "
          f"{drifted[('mlflow_serving_feature_drift', 'input', SHIFTED)]:.2f}")  # fmt: skip

    # stored with the version: a later process compares with it, without a reference of its own
    local = mlflow.artifacts.download_artifacts(
        run_id=version.run_id,
        artifact_path=f"monitoring/{version.version}/reference-profile.json",
        dst_path=str(tmp_path / "profile"),
        tracking_uri=mlflow_stack.tracking_uri,
    )
    stored = json.loads(Path(local).read_text())
    assert stored["rows"] == 150
    assert {f["name"] for f in stored["features"]} == {*inputs, "prediction"}
    later = drift_server(version.uri, tmp_path / "later", mlflow_stack)
    try:
        score(later, pd.concat([moved] * 2, ignore_index=True))
        eventually(
            lambda: drift_metrics(later).get(("mlflow_serving_feature_drift", "input", SHIFTED),
                                             0.0) > 0.25,
            timeout=60, what="the later process scoring against the stored reference",
        )  # fmt: skip
        assert drift_metrics(later)[("mlflow_serving_drift_reference_rows", "live")] == 150
    finally:
        later.stop()


def test_a_reference_dataset_logged_with_the_version_is_the_reference(
    mlflow_stack: MlflowStack, mlflow_registry: ModelRegistry, model_name: str, tmp_path: Path
) -> None:
    version = mlflow_registry.log_version(model_name)
    features, _ = iris()
    mlflow.set_tracking_uri(mlflow_stack.tracking_uri)
    # what a training script does: a sample of the training data, logged next to the model
    mlflow.log_table(features, "monitoring/reference.json", run_id=version.run_id)
    server = drift_server(version.uri, tmp_path, mlflow_stack, "--sample-exclude", SHIFTED)
    try:
        score(server, features)
        eventually(
            lambda: drift_metrics(server).get(("mlflow_serving_drift_reference_rows", "dataset"))
            == len(features),
            timeout=60, what="the logged dataset as the reference",
        )  # fmt: skip
        found = drift_metrics(server)
    finally:
        server.stop()
    scored = {k[2] for k in found if k[0] == "mlflow_serving_feature_drift"}
    # the excluded column is not scored; the dataset has no prediction column, so no output
    assert scored == set(features.columns) - {SHIFTED}
    assert max(v for k, v in found.items() if k[0].endswith("feature_drift")) < 0.05
