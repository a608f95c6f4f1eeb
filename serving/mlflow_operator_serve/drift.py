"""Data drift per feature, live: how far the inputs a version is asked about, and the answers
it gives, moved from a reference (`--drift`; the ModelDeployment's `serving.monitoring.drift`).

The reference, in this order:
1. a reference dataset logged with the version: `monitoring/reference.json` in the artifacts of
   the run that logged it, as `mlflow.log_table` writes it (a sample of the training data; a
   column named like an output, e.g. `prediction`, is the reference for that output);
2. a profile an earlier pod stored: `monitoring/<version>/reference-profile.json` there;
3. the first `--drift-reference-rows` rows this process serves, then stored as 2, so that
   pods started later, and restarts, compare with the same reference and not with whatever
   traffic looks like when they start. A pod that cannot write there (a read-only MLflow
   user) keeps its own.

Scores (drift_profile.py: PSI over decile or top-category bins) cover the last
`WINDOW_ROWS` live rows, and are exported per feature as
`mlflow_serving_feature_drift{feature, kind="input"|"output"}`.

Callers never wait for it: the batcher hands over the frame it predicted and the predictions
(references, no copy) under a lock; binning and scoring run on a thread of its own. At most
`MAX_PENDING_ROWS` rows wait; beyond that batches are dropped and counted
(`mlflow_serving_drift_rows_total{outcome="dropped"}`). Requests that are not tabular (bare
tensors, dicts of arrays) are counted as `skipped`; rows this code failed to bin as `failed`
(logged once), and scoring goes on with the next ones.
"""

from __future__ import annotations

import json
import logging
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Protocol

import numpy as np
import pandas as pd

from mlflow_operator_serve.background import PerProcessThread
from mlflow_operator_serve.drift_profile import (
    Kind,
    LiveWindow,
    Profile,
    fit_profile,
    output_frame,
)

_logger = logging.getLogger(__name__)

REFERENCE_DATASET: Final = "monitoring/reference.json"
# Live rows a score covers (between half of this and this many).
WINDOW_ROWS: Final = 1000
# No score before this many live rows: a handful of requests says nothing about a distribution.
MIN_SCORED_ROWS: Final = 100
# Rows handed over and not binned yet, per worker process.
MAX_PENDING_ROWS: Final = 100_000
# How often scores are recomputed at most (and how long the thread sleeps when idle).
SCORE_SECONDS: Final = 1.0


def stored_profile_path(version: str) -> str:
    return f"monitoring/{version}/reference-profile.json"


class DriftGauges(Protocol):
    def drift_rows(self, outcome: str, count: int) -> None: ...

    def drift_reference(self, source: str, rows: int) -> None: ...

    def drift_window(self, rows: int) -> None: ...

    def drift_scores(self, scores: dict[tuple[Kind, str], float]) -> None: ...


class ReferenceStore(Protocol):
    """Where references are read from and stored (the version's run: version_run.VersionRun)."""

    def download(self, artifact_path: str, into: Path) -> Path | None: ...

    def upload(self, path: Path, artifact_dir: str) -> None: ...


@dataclass(frozen=True)
class FoundReference:
    """What the store held at start: a dataset to profile, or a stored profile."""

    dataset: pd.DataFrame | None = None
    profile: Profile | None = None


def read_reference(store: ReferenceStore, version: str, work: Path) -> FoundReference:
    """The reference logged with the version or stored by an earlier pod; empty if neither.
    Raises when the store cannot be asked (the caller builds one from live rows then)."""
    dataset = store.download(REFERENCE_DATASET, work)
    if dataset is not None:
        # mlflow.log_table's JSON: {"columns": [...], "data": [[...], ...]}
        return FoundReference(dataset=pd.read_json(dataset, orient="split"))
    stored = store.download(stored_profile_path(version), work)
    if stored is not None:
        return FoundReference(profile=Profile.from_json(json.loads(stored.read_text())))
    return FoundReference()


class DriftMonitor:
    """Bins live rows against a reference and exports a drift score per feature."""

    def __init__(
        self,
        *,
        version: str,
        reference_rows: int,
        excluded: frozenset[str],
        store: ReferenceStore,
        gauges: DriftGauges,
        window_rows: int = WINDOW_ROWS,
        min_scored_rows: int = MIN_SCORED_ROWS,
        max_pending_rows: int = MAX_PENDING_ROWS,
        score_seconds: float = SCORE_SECONDS,
    ) -> None:
        self.version = version
        self.reference_rows = reference_rows
        self.excluded = excluded
        self._store, self._gauges = store, gauges
        self._window_rows, self._min_scored_rows = window_rows, min_scored_rows
        self._max_pending_rows, self._score_seconds = max_pending_rows, score_seconds
        self._pending: list[tuple[pd.DataFrame, Any]] = []
        self._pending_rows = 0
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._closing = False
        self._thread = PerProcessThread(self._loop, "drift")
        # the writer thread's own state
        self._found: FoundReference | None = None
        self._collected: list[tuple[pd.DataFrame, pd.DataFrame | None]] = []
        self._collected_rows = 0
        self._window: LiveWindow | None = None
        self._failed_before = False

    @property
    def window(self) -> LiveWindow | None:
        return self._window

    def observe(self, inputs: Any, predictions: Any) -> None:
        """Called by the batcher after a predict, with its input and output: never raises,
        never waits for I/O."""
        if not isinstance(inputs, pd.DataFrame):
            self._gauges.drift_rows("skipped", _length(inputs))
            return
        rows = len(inputs)
        with self._lock:
            dropped = self._closing or self._pending_rows + rows > self._max_pending_rows
            if not dropped:
                self._pending.append((inputs, predictions))
                self._pending_rows += rows
        if dropped:
            self._gauges.drift_rows("dropped", rows)
            return
        self._thread.ensure_started()

    def close(self, grace_seconds: float = 5.0) -> None:
        with self._lock:
            self._closing = True
        self._wake.set()
        self._thread.join(grace_seconds)

    def _loop(self) -> None:
        self.look_up_reference()
        while True:
            with self._lock:
                batch, self._pending, self._pending_rows = self._pending, [], 0
                closing = self._closing
            if batch:
                self._process_or_count(batch)
            if closing:
                return
            self._wake.wait(self._score_seconds)
            self._wake.clear()

    def _process_or_count(self, batch: list[tuple[pd.DataFrame, Any]]) -> None:
        # a frame this code cannot bin must not end scoring for the life of the pod
        try:
            self.process(batch)
        except Exception:
            rows = sum(len(inputs) for inputs, _ in batch)
            self._gauges.drift_rows("failed", rows)
            if not self._failed_before:
                self._failed_before = True
                _logger.warning(
                    "drift scoring failed on %d rows (counted in mlflow_serving_drift_rows_total"
                    '{outcome="failed"}; logged once)', rows, exc_info=True,
                )  # fmt: skip

    def look_up_reference(self) -> None:
        """Ask the store for a reference; on the drift thread, before the first rows are
        binned (tests call it directly)."""
        try:
            with tempfile.TemporaryDirectory(prefix="mlflow-drift-") as work:
                self._found = read_reference(self._store, self.version, Path(work))
        except Exception:  # unreachable MLflow, a malformed file: build one from live rows
            _logger.warning(
                "could not read a drift reference of version %s from MLflow; the first %d "
                "rows served become it", self.version, self.reference_rows, exc_info=True,
            )  # fmt: skip
            self._found = FoundReference()

    def process(self, batch: list[tuple[pd.DataFrame, Any]]) -> None:
        """Bin a batch of (inputs, predictions); on the drift thread (tests call it directly)."""
        if self._found is None:
            self._found = FoundReference()
        pairs = merged(batch)
        rows = sum(len(inputs) for inputs, _ in pairs)
        if self._window is None:
            pairs = self._build_reference(pairs)
        if self._window is not None:
            for inputs, outputs in pairs:
                self._window.add(inputs, outputs)
            self._gauges.drift_window(self._window.rows)
            if self._window.rows >= self._min_scored_rows:
                self._gauges.drift_scores(self._window.scores())
        self._gauges.drift_rows("observed", rows)

    def _build_reference(
        self, pairs: list[tuple[pd.DataFrame, pd.DataFrame | None]]
    ) -> list[tuple[pd.DataFrame, pd.DataFrame | None]]:
        """Make the reference once the inputs' columns are known; the rows it was made of
        (first live rows) are not scored. Returns the rows left to score."""
        found = self._found or FoundReference()
        first_inputs, first_outputs = pairs[0]
        if found.dataset is not None:
            self._start(self._profile_of_dataset(found.dataset, first_outputs))
            return pairs
        stored = found.profile
        if stored is not None and stored.covers("input", first_inputs.columns):
            self._start(stored)
            return pairs
        remaining = []
        for inputs, outputs in pairs:
            if self._window is not None:
                remaining.append((inputs, outputs))
                continue
            wanted = self.reference_rows - self._collected_rows
            self._collected.append((inputs.iloc[:wanted], _head(outputs, wanted)))
            self._collected_rows += min(wanted, len(inputs))
            if self._collected_rows >= self.reference_rows:
                profile = self._profile_of_collected()
                self._start(profile)
                self._store_profile(profile)
                if len(inputs) > wanted:  # the rest of this batch is scored
                    remaining.append((inputs.iloc[wanted:], _tail(outputs, wanted)))
        return remaining

    def _profile_of_dataset(self, dataset: pd.DataFrame, outputs: pd.DataFrame | None) -> Profile:
        output_names = [c for c in (outputs.columns if outputs is not None else ()) if c in dataset]
        inputs = dataset.drop(columns=output_names)
        reference_outputs = dataset[output_names] if output_names else None
        return fit_profile("dataset", inputs, reference_outputs, self.excluded)

    def _profile_of_collected(self) -> Profile:
        inputs = pd.concat([i for i, _ in self._collected], ignore_index=True)
        outputs_list = [o for _, o in self._collected]
        outputs = (
            pd.concat(outputs_list, ignore_index=True)
            if all(o is not None for o in outputs_list)
            else None
        )
        self._collected, self._collected_rows = [], 0
        return fit_profile("live", inputs, outputs, self.excluded)

    def _start(self, profile: Profile) -> None:
        self._window = LiveWindow(profile, self._window_rows)
        self._gauges.drift_reference(profile.source, profile.rows)
        names = ", ".join(f"{b.kind} {b.name}" for b in profile.bins)
        _logger.info(
            "drift reference of version %s: %s, %d rows; scoring %s",
            self.version, profile.source, profile.rows, names or "no column",
        )  # fmt: skip

    def _store_profile(self, profile: Profile) -> None:
        path = stored_profile_path(self.version)
        try:
            with tempfile.TemporaryDirectory(prefix="mlflow-drift-") as work:
                local = Path(work) / Path(path).name
                local.write_text(json.dumps(profile.to_json(), indent=1))
                self._store.upload(local, str(Path(path).parent))
        except Exception:  # the scores go on with this process's own reference
            _logger.warning(
                "could not store the drift reference of version %s in MLflow (%s): pods "
                "started later build their own", self.version, path, exc_info=True,
            )  # fmt: skip


def merged(batch: list[tuple[pd.DataFrame, Any]]) -> list[tuple[pd.DataFrame, pd.DataFrame | None]]:
    """(inputs, outputs as columns) with runs of batches of the same shape as one frame each.

    Binning costs about as much for one row as for a thousand, and single-row requests are the
    common case; pandas' own concat and DataFrame constructor cost ~0.1 ms per request, which
    at a thousand requests a second is a tenth of a core. So runs are joined as numpy arrays and
    made a frame once."""
    out: list[tuple[pd.DataFrame, pd.DataFrame | None]] = []
    run: list[tuple[pd.DataFrame, Any]] = []
    key: tuple[Any, ...] | None = None
    for inputs, predictions in batch:
        shape = (tuple(inputs.columns), _answer_shape(predictions))
        if run and shape != key:
            out.append(_join(run))
            run = []
        key = shape
        run.append((inputs, predictions))
    if run:
        out.append(_join(run))
    return out


def _answer_shape(predictions: Any) -> tuple[Any, ...] | None:
    """What answers must share to be joined: an array's dimensions and kind, a frame's columns."""
    if isinstance(predictions, pd.DataFrame):
        return ("frame", tuple(predictions.columns), tuple(predictions.dtypes))
    if isinstance(predictions, np.ndarray | pd.Series):
        return ("array", predictions.shape[1:], predictions.dtype.kind)
    if isinstance(predictions, list | tuple):
        array = np.asarray(predictions)
        return ("array", array.shape[1:], array.dtype.kind)
    return None  # anything else is made a frame alone (output_frame), if it can be


def _join(run: list[tuple[pd.DataFrame, Any]]) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    first_inputs, first_predictions = run[0]
    if len(run) == 1:
        return first_inputs, output_frame(first_predictions)
    # numbers join as numbers (an int and a float column make floats); columns of several
    # types join as objects, and get their types back from their values
    values = np.concatenate([inputs.to_numpy() for inputs, _ in run])
    inputs = pd.DataFrame(values, columns=first_inputs.columns)
    if values.dtype == object:
        inputs = inputs.infer_objects()
    shape = _answer_shape(first_predictions)
    if shape is None:
        return inputs, None
    if shape[0] == "frame":
        return inputs, pd.concat([p for _, p in run], ignore_index=True).rename(columns=str)
    return inputs, output_frame(np.concatenate([np.asarray(p) for _, p in run]))


def _head(frame: pd.DataFrame | None, rows: int) -> pd.DataFrame | None:
    return None if frame is None else frame.iloc[:rows]


def _tail(frame: pd.DataFrame | None, start: int) -> pd.DataFrame | None:
    return None if frame is None else frame.iloc[start:]


def _length(value: Any) -> int:
    """Rows of a model input that is not a DataFrame: an array's first dimension, a dict of
    columns' first column, else 1."""
    if isinstance(value, dict):
        value = next(iter(value.values()), None)
    shape = getattr(value, "shape", None)
    if shape:
        return int(shape[0])
    try:
        return len(value) if value is not None else 1
    except TypeError:
        return 1
