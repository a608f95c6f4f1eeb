"""Merging parsed requests into one model input, and splitting predictions back.

Two requests are merged only when the model cannot tell the difference: both are pandas
DataFrames with the same column labels in the same order and the same dtypes (so the merged
frame holds exactly the values each request holds, in the dtypes each had), or both are numpy
arrays (`inputs`/`instances` against a tensor signature, or without one) of the same dtype and
the same shape after the first axis, which is the batch axis; and neither carries params.
Everything else - dicts of named tensors, object arrays, scalars, unified LLM input, params,
duplicate column labels - runs alone.

Splitting needs predictions with one entry per input row: a numpy array, a DataFrame or Series
(each request gets the records MLflow would render its part as), or a list of the merged
length. Anything else raises, and the batcher predicts each request
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
    if params is not None or unwrapped:
        return None
    if isinstance(data, np.ndarray):
        if data.ndim == 0 or data.shape[0] == 0 or data.dtype.hasobject:
            return None
        return ("tensor", data.dtype.str, data.shape[1:])
    if not isinstance(data, pd.DataFrame) or not data.columns.is_unique:
        return None
    key = (tuple(data.columns), tuple(data.dtypes))
    try:
        hash(key)
    except TypeError:  # an unhashable label or extension dtype: not worth the risk
        return None
    return key


def row_count(data: Any) -> int:
    """Rows of a model input, counted against the batch size; 1 for other input."""
    if isinstance(data, pd.DataFrame):
        return len(data)
    if isinstance(data, np.ndarray) and data.ndim > 0:
        return int(data.shape[0])
    return 1


def merge(parts: Sequence[Any]) -> Any:
    """One input with all rows: frames indexed 0..n-1 as a single parsed request would be,
    arrays stacked along the batch axis."""
    if isinstance(parts[0], np.ndarray):
        return np.concatenate(parts)
    return pd.concat(parts, ignore_index=True)


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
        # MLflow answers with a frame's records (`_get_jsonable_obj`, orient "records"). The
        # records of the whole batch, made once and sliced, are each part's records; a frame
        # per request and its records cost ~0.7 ms per request (64 single-row requests).
        frame = predictions if isinstance(predictions, pd.DataFrame) else pd.DataFrame(predictions)
        records = frame.to_dict(orient="records")
        return [records[start:end] for start, end in bounds]
    if isinstance(predictions, list):
        if len(predictions) != total:
            raise NotSplittableError(f"list of {len(predictions)} for {total} rows")
        return [predictions[start:end] for start, end in bounds]
    raise NotSplittableError(f"cannot split {type(predictions).__name__}")
