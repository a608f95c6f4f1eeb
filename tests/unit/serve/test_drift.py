"""Drift scores (drift_profile.py) and the monitor that keeps them (drift.py), on frames made
here. The store is a directory standing in for the version's run: the real run is exercised
by tests/integration/test_drift.py and tests/e2e/test_monitoring.py."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mlflow_operator_serve.drift import (
    REFERENCE_DATASET,
    DriftMonitor,
    merged,
    stored_profile_path,
)
from mlflow_operator_serve.drift_profile import (
    MISSING,
    OTHER,
    Kind,
    LiveWindow,
    Profile,
    fit_bins,
    fit_profile,
    output_frame,
    psi,
)

RNG = np.random.default_rng(7)


def frame(rows: int, shift: float = 0.0, colour: str = "red") -> pd.DataFrame:
    return pd.DataFrame(
        {
            "amount": RNG.normal(100 + shift, 10, rows),
            "steady": RNG.normal(0, 1, rows),
            "colour": [colour if i % 2 else "blue" for i in range(rows)],
        }
    )


class DirectoryStore:
    """The version's run as a directory: download/upload as VersionRun does them."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.uploaded: list[str] = []
        self.fail = False

    def download(self, artifact_path: str, into: Path) -> Path | None:
        if self.fail:
            raise ConnectionError("MLflow is down")
        source = self.root / artifact_path
        if not source.exists():
            return None
        return Path(shutil.copy(source, into / source.name))

    def upload(self, path: Path, artifact_dir: str) -> None:
        if self.fail:
            raise ConnectionError("MLflow is down")
        (self.root / artifact_dir).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, self.root / artifact_dir / path.name)
        self.uploaded.append(f"{artifact_dir}/{path.name}")


class RecordedGauges:
    def __init__(self) -> None:
        self.rows: dict[str, int] = {}
        self.reference: tuple[str, int] | None = None
        self.window = 0
        self.scores: dict[tuple[Kind, str], float] = {}

    def drift_rows(self, outcome: str, count: int) -> None:
        self.rows[outcome] = self.rows.get(outcome, 0) + count

    def drift_reference(self, source: str, rows: int) -> None:
        self.reference = (source, rows)

    def drift_window(self, rows: int) -> None:
        self.window = rows

    def drift_scores(self, scores: dict[tuple[Kind, str], float]) -> None:
        self.scores.update(scores)


def monitor(
    store: DirectoryStore,
    gauges: RecordedGauges,
    *,
    reference_rows: int = 1000,
    excluded: frozenset[str] = frozenset(),
    max_pending_rows: int = 100_000,
) -> DriftMonitor:
    made = DriftMonitor(
        version="3", reference_rows=reference_rows, excluded=excluded, store=store,
        gauges=gauges, max_pending_rows=max_pending_rows,
    )  # fmt: skip
    made.look_up_reference()
    return made


def predictions(inputs: pd.DataFrame) -> np.ndarray:
    return (inputs["amount"] > 100).astype(int).to_numpy()


def serve(m: DriftMonitor, rows: pd.DataFrame, batch: int = 50) -> None:
    m.process([(rows.iloc[i : i + batch], predictions(rows.iloc[i : i + batch]))
               for i in range(0, len(rows), batch)])  # fmt: skip


# --- scores ---------------------------------------------------------------------------------


def test_psi_is_near_zero_for_the_same_distribution_and_large_for_a_shifted_one() -> None:
    reference = frame(5000)
    bins = fit_bins("amount", "input", reference["amount"])
    assert bins is not None
    counts = bins.count(reference["amount"])
    same = psi(counts, bins.count(frame(2000)["amount"]))
    slight = psi(counts, bins.count(frame(2000, shift=2)["amount"]))  # a fifth of a sd
    large = psi(counts, bins.count(frame(2000, shift=10)["amount"]))  # one sd
    assert same < 0.02
    assert 0.02 < slight < 0.25
    assert large > 0.25
    assert same < slight < large


def test_numeric_bins_are_deciles_of_the_reference_and_repeated_values_share_a_cut() -> None:
    values = pd.Series(np.arange(1000, dtype=float))
    bins = fit_bins("x", "input", values)
    assert bins is not None
    assert bins.numeric
    assert len(bins.edges) == 9
    counts = bins.count(values)
    assert counts[:-1].tolist() == [100] * 10  # ten bins of a tenth each, then MISSING
    assert counts[-1] == 0

    flag = fit_bins("flag", "input", pd.Series([0, 1] * 50))
    assert flag is not None
    assert flag.edges == (0.0, 1.0)
    assert flag.count(pd.Series([0.0, 1.0, np.nan, 5.0])).tolist() == [1, 1, 1, 1]


def test_categories_beyond_the_reference_and_missing_values_have_bins_of_their_own() -> None:
    bins = fit_bins("colour", "input", pd.Series(["red", "blue", "red", None]))
    assert bins is not None
    assert not bins.numeric
    assert bins.categories == ("red", "blue")
    assert bins.labels() == ["red", "blue", OTHER, MISSING]
    assert bins.count(pd.Series(["blue", "green", None, "red", "red"])).tolist() == [2, 1, 1, 1]


def test_columns_that_cannot_be_binned_are_left_out() -> None:
    nested = pd.Series([[1, 2], [3]])
    dates = pd.Series(pd.to_datetime(["2026-01-01", "2026-02-01"]))
    assert fit_bins("tensor", "input", nested) is None
    assert fit_bins("day", "input", dates) is None


def test_predictions_become_named_columns() -> None:
    one = output_frame(np.array([0, 1, 1]))
    assert one is not None
    assert list(one.columns) == ["prediction"]
    several = output_frame(np.zeros((3, 2)))
    assert several is not None
    assert list(several.columns) == ["prediction_0", "prediction_1"]
    named = output_frame(pd.DataFrame({"score": [0.5]}))
    assert named is not None
    assert list(named.columns) == ["score"]
    assert output_frame(np.zeros((2, 2, 2))) is None


def test_a_profile_survives_json_and_a_foreign_one_is_refused() -> None:
    inputs = frame(500)
    profile = fit_profile("live", inputs, output_frame(predictions(inputs)), frozenset())
    again = Profile.from_json(json.loads(json.dumps(profile.to_json())))
    assert again.bins == profile.bins
    assert [c.tolist() for c in again.counts] == [c.tolist() for c in profile.counts]
    assert (again.source, again.rows) == ("live", 500)
    with pytest.raises(ValueError, match="format"):
        Profile.from_json({"format": 99, "features": []})


# --- the monitor ----------------------------------------------------------------------------


def test_the_first_rows_become_the_reference_stored_with_the_version_then_drift_shows(
    tmp_path: Path,
) -> None:
    store, gauges = DirectoryStore(tmp_path), RecordedGauges()
    m = monitor(store, gauges, excluded=frozenset({"steady"}))
    serve(m, frame(1000))
    assert gauges.reference == ("live", 1000)
    assert store.uploaded == [stored_profile_path("3")]
    stored = json.loads((tmp_path / stored_profile_path("3")).read_text())
    assert {f["name"] for f in stored["features"]} == {"amount", "colour", "prediction"}
    assert gauges.scores == {}  # the reference rows are not scored against themselves

    serve(m, frame(50))
    assert gauges.scores == {}  # too few rows to say anything
    serve(m, frame(950))
    calm = dict(gauges.scores)
    assert set(calm) == {("input", "amount"), ("input", "colour"), ("output", "prediction")}
    assert max(calm.values()) < 0.1

    serve(m, frame(1000, shift=15, colour="green"))  # the window has moved on entirely
    assert gauges.scores[("input", "amount")] > 0.25
    assert gauges.scores[("input", "colour")] > 0.25
    assert gauges.scores[("output", "prediction")] > 0.25  # nearly all answers are now 1
    assert gauges.window >= 500
    assert gauges.rows["observed"] == 3000


def test_a_later_pod_compares_with_the_stored_reference_and_stores_nothing(
    tmp_path: Path,
) -> None:
    first = DirectoryStore(tmp_path)
    serve(monitor(first, RecordedGauges()), frame(1000))
    later, gauges = DirectoryStore(tmp_path), RecordedGauges()
    m = monitor(later, gauges)
    serve(m, frame(300, shift=15))  # a pod started after the traffic moved
    assert gauges.reference == ("live", 1000)
    assert later.uploaded == []
    assert gauges.scores[("input", "amount")] > 0.25


def test_a_reference_dataset_logged_with_the_version_is_used_first(tmp_path: Path) -> None:
    training = frame(2000)
    training["prediction"] = predictions(training)
    dataset = tmp_path / REFERENCE_DATASET
    dataset.parent.mkdir(parents=True)
    training.to_json(dataset, orient="split", index=False)  # what mlflow.log_table writes
    store, gauges = DirectoryStore(tmp_path), RecordedGauges()
    m = monitor(store, gauges)
    serve(m, frame(200))
    assert gauges.reference == ("dataset", 2000)
    assert store.uploaded == []
    assert ("output", "prediction") in gauges.scores  # its `prediction` column: the outputs'
    assert max(gauges.scores.values()) < 0.1


def test_mlflow_unreachable_at_start_means_a_reference_of_live_rows(tmp_path: Path) -> None:
    store, gauges = DirectoryStore(tmp_path), RecordedGauges()
    store.fail = True
    m = monitor(store, gauges, reference_rows=200)
    serve(m, frame(400))  # storing fails too: logged, and scoring goes on
    assert gauges.reference == ("live", 200)
    assert ("input", "amount") in gauges.scores


def test_requests_without_columns_are_skipped_and_a_full_queue_drops(tmp_path: Path) -> None:
    gauges = RecordedGauges()
    m = monitor(DirectoryStore(tmp_path), gauges, max_pending_rows=100)
    m.observe(np.zeros((4, 3)), np.zeros(4))
    assert gauges.rows == {"skipped": 4}
    m.close()  # a closed monitor takes nothing more
    m.observe(frame(10), np.zeros(10))
    assert gauges.rows["dropped"] == 10


def test_the_thread_bins_what_the_batcher_hands_over(tmp_path: Path) -> None:
    gauges = RecordedGauges()
    m = DriftMonitor(
        version="3", reference_rows=100, excluded=frozenset(),
        store=DirectoryStore(tmp_path), gauges=gauges, score_seconds=0.01,
    )  # fmt: skip
    rows = frame(300)
    for i in range(0, 300, 30):
        m.observe(rows.iloc[i : i + 30], predictions(rows.iloc[i : i + 30]))
    m.close()
    assert gauges.rows["observed"] == 300
    assert gauges.reference == ("live", 100)
    assert gauges.window == 200


def test_batches_are_merged_by_columns_and_a_large_one_keeps_the_window_bounded() -> None:
    a, b = frame(3), frame(2)
    other = frame(4).rename(columns={"amount": "price"})
    runs = merged([(a, predictions(a)), (b, list(predictions(b))), (other, None),
                   (a, predictions(a))])  # fmt: skip
    assert [len(inputs) for inputs, _ in runs] == [5, 4, 3]
    joined_inputs, joined_outputs = runs[0]
    assert joined_outputs is not None
    assert joined_outputs["prediction"].tolist() == [*predictions(a), *predictions(b)]
    # the columns' own types survive the join (a float, a float, a string column)
    assert joined_inputs.dtypes.to_dict() == a.dtypes.to_dict()
    assert joined_inputs["colour"].tolist() == [*a["colour"], *b["colour"]]
    assert runs[1][1] is None  # no answer to score
    # one request's whole numbers and the next one's fractions: joined as fractions, not cut
    whole, half = pd.DataFrame({"x": [5]}), pd.DataFrame({"x": [5.5]})
    ((joined, _),) = merged([(whole, None), (half, None)])
    assert joined["x"].tolist() == [5.0, 5.5]

    inputs = frame(1000)
    window = LiveWindow(fit_profile("live", inputs, None), rows=200)
    window.add(frame(5000), None)  # one batch far larger than the window
    assert 100 <= window.rows <= 200  # between half the window and the window


def test_rows_that_cannot_be_binned_are_counted_and_scoring_goes_on(tmp_path: Path) -> None:
    gauges = RecordedGauges()
    m = monitor(DirectoryStore(tmp_path), gauges, reference_rows=100)
    m._process_or_count([(frame(200), object())])  # an answer no frame can be made of...
    assert gauges.rows == {"observed": 200}  # ...is scored without outputs
    doubled = pd.DataFrame([[1.0, 2.0]], columns=["amount", "amount"])  # one name, two columns
    m._process_or_count([(doubled, np.zeros(1))])
    assert gauges.rows["failed"] == 1
    m._process_or_count([(frame(150), predictions(frame(150)))])
    assert gauges.rows["observed"] == 350
    assert ("input", "amount") in gauges.scores
