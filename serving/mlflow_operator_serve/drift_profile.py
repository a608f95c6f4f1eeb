"""Per-feature distributions and how far live ones moved from a reference: pure, no I/O.

A reference is reduced to a `Profile`: for each column, bins fitted on the reference values
and the reference's count in each bin. Live rows are counted into the same bins, and the
Population Stability Index compares the two:

    PSI = sum over bins of (live% - ref%) * ln(live% / ref%)

Why PSI and not Jensen-Shannon: it is the score credit-risk and ML-monitoring teams already
read (under 0.1: stable; 0.1-0.25: a shift worth a look; above 0.25: significant), it is
unbounded, so a large move stays visibly larger than a moderate one, and it needs nothing but
the two histograms. Empty bins would make it infinite: both sides get half a row per bin
(additive smoothing), which changes a score by well under 0.01 at a thousand rows.

Bins: numeric columns get up to nine cut points at the reference's deciles (fewer when values
repeat: a 0/1 column gets one), so every bin holds about a tenth of the reference; other
columns get their `TOP_CATEGORIES` most frequent values and one bin for every other value.
Missing values (NaN, None) have a bin of their own in both, so a column that starts arriving
empty drifts too.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Final, Literal

import numpy as np
import pandas as pd

FORMAT: Final = 1
DECILES: Final = tuple(i / 10 for i in range(1, 10))
TOP_CATEGORIES: Final = 20
# Columns scored per kind (inputs, outputs); wider frames are scored on their first ones.
MAX_FEATURES: Final = 100
SMOOTHING: Final = 0.5
MISSING: Final = "<missing>"
OTHER: Final = "<other>"

Kind = Literal["input", "output"]


@dataclass(frozen=True)
class FeatureBins:
    """The bins of one column: numeric (`edges`, cut points) or categorical (`categories`)."""

    name: str
    kind: Kind
    numeric: bool
    edges: tuple[float, ...] = ()
    categories: tuple[str, ...] = ()

    @property
    def size(self) -> int:
        """Numeric: len(edges)+1 ranges; categorical: the categories and OTHER; then MISSING."""
        return (len(self.edges) + 1 if self.numeric else len(self.categories) + 1) + 1

    def count(self, values: pd.Series) -> np.ndarray:
        """How many of `values` fall into each bin."""
        if self.numeric:
            numbers = pd.to_numeric(values, errors="coerce").to_numpy(dtype=float, na_value=np.nan)
            missing = np.isnan(numbers)
            # side="left": bin i holds edges[i-1] < x <= edges[i]
            index = np.searchsorted(np.asarray(self.edges), numbers[~missing], side="left")
            counts = np.bincount(index, minlength=len(self.edges) + 1)
            return np.append(counts, missing.sum()).astype(np.int64)
        missing_mask = values.isna().to_numpy()
        # -1 for a value that is not among the categories
        codes = pd.Index(self.categories).get_indexer(pd.Index(values[~missing_mask].astype(str)))
        known = np.bincount(codes[codes >= 0], minlength=len(self.categories))
        return np.append(known, [(codes < 0).sum(), missing_mask.sum()]).astype(np.int64)

    def labels(self) -> list[str]:
        """A name per bin, for people reading a profile."""
        if self.numeric:
            bounds = ["-inf", *(f"{e:g}" for e in self.edges), "inf"]
            return [f"({lo}, {hi}]" for lo, hi in itertools.pairwise(bounds)] + [MISSING]
        return [*self.categories, OTHER, MISSING]


def fit_bins(name: str, kind: Kind, values: pd.Series) -> FeatureBins | None:
    """Bins fitted on reference values; None for a column that cannot be binned (nested
    values, dates)."""
    dtype_kind = values.dtype.kind
    if dtype_kind in "iuf":
        numbers = values.to_numpy(dtype=float, na_value=np.nan)
        present = numbers[~np.isnan(numbers)]
        # observed values as cut points (not interpolated between them): a 0/1 column gets
        # the cuts 0 and 1, not 0.5
        edges = (
            np.unique(np.quantile(present, DECILES, method="inverted_cdf"))
            if present.size
            else np.array([])
        )
        return FeatureBins(name, kind, numeric=True, edges=tuple(float(e) for e in edges))
    if dtype_kind in "bOUS" or isinstance(values.dtype, pd.CategoricalDtype | pd.StringDtype):
        present_values = values.dropna()
        if len(present_values) and not _scalars(present_values):
            return None
        top = present_values.astype(str).value_counts().head(TOP_CATEGORIES)
        return FeatureBins(name, kind, numeric=False, categories=tuple(str(c) for c in top.index))
    return None


def _scalars(values: pd.Series) -> bool:
    first = values.iloc[0]
    return not isinstance(first, list | dict | tuple | set | np.ndarray)


def psi(reference: np.ndarray, live: np.ndarray) -> float:
    """The Population Stability Index of `live` counts against `reference` counts (same bins)."""
    bins = len(reference)
    ref = (reference + SMOOTHING) / (reference.sum() + SMOOTHING * bins)
    now = (live + SMOOTHING) / (live.sum() + SMOOTHING * bins)
    return float(np.sum((now - ref) * np.log(now / ref)))


def output_frame(predictions: Any) -> pd.DataFrame | None:
    """A model's predictions as named columns: `prediction` for one value per row,
    `prediction_0`... for several, a DataFrame's own columns; None when they are not tabular."""
    if isinstance(predictions, pd.DataFrame):
        return predictions.rename(columns=str)
    if isinstance(predictions, pd.Series):
        return pd.DataFrame({"prediction": predictions.to_numpy()})
    try:
        array = np.asarray(predictions)
    except (ValueError, TypeError):
        return None
    if array.ndim == 1:
        return pd.DataFrame({"prediction": array})
    if array.ndim == 2:
        return pd.DataFrame(array, columns=[f"prediction_{i}" for i in range(array.shape[1])])
    return None


@dataclass(frozen=True)
class Profile:
    """A reference: each column's bins and the reference's counts in them."""

    source: str  # "dataset" (logged with the model) or "live" (first rows served)
    rows: int
    bins: tuple[FeatureBins, ...]
    counts: tuple[np.ndarray, ...]

    def covers(self, kind: Kind, columns: Iterable[str]) -> bool:
        """Whether this profile was made for frames with these columns (some may be excluded)."""
        mine = {b.name for b in self.bins if b.kind == kind}
        return mine <= set(columns)

    def to_json(self) -> dict[str, Any]:
        features = []
        for bins, counts in zip(self.bins, self.counts, strict=True):
            feature: dict[str, Any] = {"name": bins.name, "kind": bins.kind}
            if bins.numeric:
                feature |= {"type": "numeric", "edges": list(bins.edges)}
            else:
                feature |= {"type": "categorical", "categories": list(bins.categories)}
            features.append(feature | {"bins": bins.labels(), "counts": counts.tolist()})
        return {"format": FORMAT, "source": self.source, "rows": self.rows, "features": features}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Profile:
        """ValueError when `data` is not a profile this code wrote."""
        if data.get("format") != FORMAT:
            raise ValueError(f"unknown drift profile format {data.get('format')!r}")
        bins, counts = [], []
        for feature in data["features"]:
            numeric = feature["type"] == "numeric"
            made = FeatureBins(
                str(feature["name"]),
                "output" if feature["kind"] == "output" else "input",
                numeric=numeric,
                edges=tuple(float(e) for e in feature.get("edges", ())),
                categories=tuple(str(c) for c in feature.get("categories", ())),
            )
            count = np.asarray(feature["counts"], dtype=np.int64)
            if len(count) != made.size:
                raise ValueError(f"feature {made.name}: {len(count)} counts for {made.size} bins")
            bins.append(made)
            counts.append(count)
        return cls(str(data["source"]), int(data["rows"]), tuple(bins), tuple(counts))


def fit_profile(
    source: str,
    inputs: pd.DataFrame,
    outputs: pd.DataFrame | None,
    excluded: frozenset[str] = frozenset(),
) -> Profile:
    """The profile of reference rows: inputs (minus `excluded`) and, when given, outputs."""
    bins: list[FeatureBins] = []
    counts: list[np.ndarray] = []
    frames: list[tuple[Kind, pd.DataFrame | None]] = [("input", inputs), ("output", outputs)]
    for kind, frame in frames:
        if frame is None:
            continue
        names = [str(c) for c in frame.columns if str(c) not in excluded][:MAX_FEATURES]
        for name in names:
            fitted = fit_bins(name, kind, frame[name])
            if fitted is not None:
                bins.append(fitted)
                counts.append(fitted.count(frame[name]))
    return Profile(source, len(inputs), tuple(bins), tuple(counts))


class LiveWindow:
    """Counts of the last `rows` or so live rows in a profile's bins: two halves, the older
    one dropped when the newer fills, so a score covers between rows/2 and rows rows."""

    def __init__(self, profile: Profile, rows: int) -> None:
        self.profile = profile
        self._half = max(1, rows // 2)
        self._current = [np.zeros(b.size, dtype=np.int64) for b in profile.bins]
        self._previous = [np.zeros(b.size, dtype=np.int64) for b in profile.bins]
        self._current_rows = 0
        self._previous_rows = 0

    @property
    def rows(self) -> int:
        return self._current_rows + self._previous_rows

    def add(self, inputs: pd.DataFrame, outputs: pd.DataFrame | None) -> None:
        """Count rows (the rows of `inputs` and `outputs` belong together), a half at a time."""
        start = 0
        while start < len(inputs):
            end = start + self._half - self._current_rows
            self._add(inputs.iloc[start:end], None if outputs is None else outputs.iloc[start:end])
            start = end

    def _add(self, inputs: pd.DataFrame, outputs: pd.DataFrame | None) -> None:
        for i, bins in enumerate(self.profile.bins):
            frame = inputs if bins.kind == "input" else outputs
            if frame is None or bins.name not in frame.columns:
                continue
            self._current[i] += bins.count(frame[bins.name])
        self._current_rows += len(inputs)
        if self._current_rows >= self._half:
            self._previous, self._previous_rows = self._current, self._current_rows
            self._current = [np.zeros(b.size, dtype=np.int64) for b in self.profile.bins]
            self._current_rows = 0

    def scores(self) -> dict[tuple[Kind, str], float]:
        """PSI per (kind, column) over the window."""
        out = {}
        for i, bins in enumerate(self.profile.bins):
            live = self._current[i] + self._previous[i]
            if live.sum() == 0:
                continue  # the column was never seen live (e.g. an output of another shape)
            score = psi(self.profile.counts[i], live)
            out[(bins.kind, bins.name)] = score if math.isfinite(score) else float("inf")
        return out
