"""Watching the model in production on real pods: `serving.monitoring.sampleRate` makes the
serving pods write what they were asked and answered to the version's run in MLflow, labels
posted to them later give the version's live quality (`serving.monitoring.quality`), and
`serving.monitoring.drift` makes them score each feature's drift on /metrics
(docs/monitoring.md)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.modeldeployments import RealPodsEnv, condition, events, status
from tests.e2e.test_modeldeployment_pods import on_real_node, service_url
from tests.mlflowstack.models import iris, sample_input
from tests.support.polling import eventually

pytestmark = [pytest.mark.e2e, pytest.mark.integration]
EXCLUDED = "sepal length (cm)"
REQUESTS = 4
FLUSH_SECONDS = 30  # prediction_log.FLUSH_SECONDS: how long a sample waits for its file


def test_sampled_answers_land_in_the_versions_run_and_posted_labels_give_its_live_quality(
    pods_env: RealPodsEnv, tmp_path: Path
) -> None:
    quality = {"metric": "accuracy", "trainingMetric": "test_accuracy", "minLabelled": 20}
    monitoring = {
        "sampleRate": 1.0, "excludeColumns": [EXCLUDED], "quality": quality,
        "thresholds": {"quality": 0.1},
    }  # fmt: skip
    serving = on_real_node(pods_env.node, runtime="batched", monitoring=monitoring)
    ns, cluster = pods_env.namespace, pods_env.cluster
    v1 = pods_env.serve_first_version("monitored", serving=serving)
    mlflow.MlflowClient(pods_env.stack.tracking_uri).log_metric(v1.run_id, "test_accuracy", 0.97)
    url = service_url(cluster, ns, "monitored")
    session = requests.Session()
    session.trust_env = False  # straight to the ClusterIP
    body = {"dataframe_split": json.loads(sample_input().to_json(orient="split", index=False))}
    ids = [f"order-{i}" for i in range(REQUESTS)]
    for request_id in ids:
        answer = session.post(
            f"{url}/invocations", json=body, headers={"X-Request-ID": request_id}, timeout=30
        )
        answer.raise_for_status()
        assert answer.json()["predictions"] == v1.predict()

    def samples() -> list[dict[str, Any]]:
        local = tmp_path / "samples"
        try:
            mlflow.artifacts.download_artifacts(
                run_id=v1.run_id,
                artifact_path=f"predictions/{v1.version}",
                dst_path=str(local),
                tracking_uri=pods_env.stack.tracking_uri,
            )
        except Exception:  # noqa: BLE001 - nothing written yet: MLflow says the path is missing
            return []
        files = sorted(local.rglob("*.jsonl"))
        return [json.loads(line) for f in files for line in f.read_text().splitlines()]

    # the pod writes at least every FLUSH_SECONDS while it samples
    lines = eventually(
        lambda: (found := samples()) and len(found) >= REQUESTS and found,
        timeout=FLUSH_SECONDS + 60,
        what="the pod's samples in the version's run",
    )
    assert sorted(line["request_id"] for line in lines) == ids  # the callers' ids, once each
    kept = [c for c in sample_input().columns if c != EXCLUDED]
    for line in lines:
        assert (line["model"], line["version"]) == (pods_env.model, v1.version)
        assert line["inputs"]["dataframe_split"]["columns"] == kept
        assert line["predictions"] == {"predictions": v1.predict()}
    assert EXCLUDED not in json.dumps(lines)

    # Ground truth comes later: the caller posts what each order turned out to be. For half
    # of them the model was wrong on every row: live accuracy 0.5, trained 0.97.
    truth = [
        {"request_id": request_id,
         "label": v1.predict() if i % 2 == 0 else [(p + 1) % 3 for p in v1.predict()]}
        for i, request_id in enumerate(ids)
    ]  # fmt: skip
    posted = session.post(f"{url}/labels", json={"labels": truth}, timeout=30)
    assert (posted.status_code, posted.json()) == (202, {"accepted": REQUESTS})
    dropped = eventually(
        lambda: condition(st := status(cluster, ns, "monitored"), "QualityDegraded").get("status")
        == "True" and st,
        timeout=FLUSH_SECONDS + 60, what="the QualityDegraded condition",
    )  # fmt: skip
    assert condition(dropped, "QualityDegraded")["reason"] == "QualityDropped"
    rows = REQUESTS * len(v1.predict())
    assert dropped["monitoring"]["quality"] == {
        "metric": "accuracy", "value": 0.5, "labelled": rows, "training": 0.97, "threshold": 0.1,
        "message": f"accuracy 0.5 live over {rows} labelled rows, 0.97 in training "
        "(test_accuracy): worse by 0.47, more than 0.1",
    }  # fmt: skip
    assert condition(dropped, "Ready")["status"] == "True"  # nothing is rolled back for it
    told = [e for e in events(cluster, ns, "monitored") if e["reason"] == "QualityDropped"]
    assert len(told) == 1
    assert "accuracy 0.5 live" in told[0]["message"]
    key = f"mlflow-operator.{ns}.monitored.quality"
    tag = eventually(
        lambda: pods_env.registry.get_version(pods_env.model, v1.version).tags.get(key),
        timeout=30, what="the quality drop tagged on the version in MLflow",
    )  # fmt: skip
    assert tag.startswith("quality dropped at ")


SHIFTED = "petal length (cm)"


def test_drift_on_a_real_pod_is_scored_stored_and_reported_by_the_operator(
    pods_env: RealPodsEnv, tmp_path: Path
) -> None:
    monitoring = {"drift": {"referenceRows": 150}, "thresholds": {"drift": 0.25}}
    serving = on_real_node(pods_env.node, runtime="batched", monitoring=monitoring)
    ns, cluster = pods_env.namespace, pods_env.cluster
    v1 = pods_env.serve_first_version("drifting", serving=serving)
    url = service_url(cluster, ns, "drifting")
    session = requests.Session()
    session.trust_env = False  # straight to the ClusterIP

    def score(rows: pd.DataFrame) -> None:
        for start in range(0, len(rows), 50):
            split = json.loads(rows.iloc[start : start + 50].to_json(orient="split", index=False))
            answer = session.post(f"{url}/invocations", json={"dataframe_split": split}, timeout=30)
            answer.raise_for_status()

    def drift() -> dict[tuple[str, str], float]:
        text = session.get(f"{url}/metrics", timeout=10).text
        return {
            (
                s.labels.get("kind") or s.labels.get("source", ""),
                s.labels.get("feature", ""),
            ): s.value
            for family in text_string_to_metric_families(text)
            for s in family.samples
            if s.name in ("mlflow_serving_feature_drift", "mlflow_serving_drift_reference_rows")
        }

    features, _ = iris()
    shuffled = features.sample(frac=1.0, random_state=2, ignore_index=True)
    score(shuffled)  # the reference: the first 150 rows the pod serves
    score(pd.concat([shuffled] * 3, ignore_index=True))
    calm = eventually(
        lambda: condition(st := status(cluster, ns, "drifting"), "Drifting").get("reason")
        == "NoDrift" and st,
        timeout=60, what="the operator judging the same traffic: no drift",
    )  # fmt: skip
    assert calm["monitoring"]["reference"] == "the first 150 rows served"
    moved = shuffled.assign(**{SHIFTED: shuffled[SHIFTED] + 3.0})
    score(pd.concat([moved] * 7, ignore_index=True))
    # inputs and answers are scored on the pod's own schedule: a read can come between the
    # two, so both are waited for
    scores = eventually(
        lambda: (found := drift()).get(("input", SHIFTED), 0.0) > 0.25
        and found.get(("output", "prediction"), 0.0) > 0.25 and found,
        timeout=60, what=f"{SHIFTED} and the answers drifting on the pod's /metrics",
    )  # fmt: skip
    assert scores[("live", "")] == 150
    for column in features.columns:
        if column != SHIFTED:
            assert scores[("input", column)] < 0.1, scores
    # stored with the version, for the pods that come later
    local = mlflow.artifacts.download_artifacts(
        run_id=v1.run_id,
        artifact_path=f"monitoring/{v1.version}/reference-profile.json",
        dst_path=str(tmp_path / "profile"),
        tracking_uri=pods_env.stack.tracking_uri,
    )
    assert json.loads(Path(local).read_text())["rows"] == 150

    # the operator's judgement: status, condition, Event, and the version's tag in MLflow
    drifting = eventually(
        lambda: condition(st := status(cluster, ns, "drifting"), "Drifting").get("status")
        == "True" and st,
        timeout=60, what="the Drifting condition",
    )  # fmt: skip
    assert condition(drifting, "Drifting")["reason"] == "DriftDetected"
    report = drifting["monitoring"]
    assert report["version"] == v1.version
    assert report["threshold"] == 0.25
    assert set(report["drifting"]) == {SHIFTED, "prediction (output)"}
    assert report["features"][0]["drift"] > 0.25
    assert condition(drifting, "Ready")["status"] == "True"  # nothing is rolled back for it
    detected = [e for e in events(cluster, ns, "drifting") if e["reason"] == "DriftDetected"]
    assert len(detected) == 1
    assert SHIFTED in detected[0]["message"]
    key = f"mlflow-operator.{ns}.drifting.drift"
    tag = eventually(
        lambda: pods_env.registry.get_version(pods_env.model, v1.version).tags.get(key),
        timeout=30, what="the drift tagged on the version in MLflow",
    )  # fmt: skip
    assert tag.startswith("drift detected at ")
    assert SHIFTED in tag
