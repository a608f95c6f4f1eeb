"""Merging parsed tabular requests into one model input, and splitting predictions back.

Two requests are merged only when the model cannot tell the difference: both are pandas
DataFrames with the same column labels in the same order and the same dtypes (so the merged
frame holds exactly the values each request holds, in the dtypes each had), and neither carries
params. Everything else - tensors (`inputs`/`instances` that parse to numpy), unified LLM
input, params, duplicate column labels - runs alone.

Splitting needs predictions with one entry per input row: a numpy array, a DataFrame or Series,
or a list of the merged length. Anything else raises, and the batcher predicts each request
alone instead; so does any error of the merged call.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from itertools import accumulate
from typing import Any

import numpy as np
import pandas as pd


class NotSplittableError(ValueError):
    """Predictions of a merged batch that cannot be cut back into one part per request."""


def merge_key(data: Any, params: dict[str, Any] | None, unwrapped: bool) -> Hashable | None:
    """What two requests must share to be merged, or None when this one must run alone."""
    if params is not None or unwrapped or not isinstance(data, pd.DataFrame):
        return None
    if not data.columns.is_unique:
        return None
    key = (tuple(data.columns), tuple(data.dtypes))
    try:
        hash(key)
    except TypeError:  # an unhashable label or extension dtype: not worth the risk
        return None
    return key


def row_count(data: Any) -> int:
    """Rows of a model input, counted against the batch size; 1 for non-tabular input."""
    if isinstance(data, pd.DataFrame):
        return len(data)
    return 1


def merge(frames: Sequence[pd.DataFrame]) -> pd.DataFrame:
    """One frame with all rows, indexed 0..n-1 as a single parsed request would be."""
    return pd.concat(frames, ignore_index=True)


def split(predictions: Any, sizes: Sequence[int]) -> list[Any]:
    """Cut the predictions of a merged frame into one part per request, in order."""
    total = sum(sizes)
    bounds = list(zip([0, *accumulate(sizes)], accumulate(sizes), strict=False))
    if isinstance(predictions, np.ndarray):
        if predictions.ndim == 0 or predictions.shape[0] != total:
            raise NotSplittableError(f"array of shape {predictions.shape} for {total} rows")
        return [predictions[start:end] for start, end in bounds]
    if isinstance(predictions, pd.DataFrame | pd.Series):
        if len(predictions) != total:
            raise NotSplittableError(f"{type(predictions).__name__} of {len(predictions)} rows")
        return [predictions.iloc[start:end].reset_index(drop=True) for start, end in bounds]
    if isinstance(predictions, list):
        if len(predictions) != total:
            raise NotSplittableError(f"list of {len(predictions)} for {total} rows")
        return [predictions[start:end] for start, end in bounds]
    raise NotSplittableError(f"cannot split {type(predictions).__name__}")
