"""JSON rows straight into the DataFrame that MLflow's schema enforcement hands the model.

For a request of plain JSON rows, MLflow builds a DataFrame column by column, casts every
column to its signature type, and then enforces the signature column by column again inside
`PyFuncModel.predict`. Each step costs per column: for a 256-column signature that is about
60 ms per request on the 2-core development machine, while a GPU runs the model itself in a
fraction of a millisecond (docs/serving.md).

For the commonest signature - named columns, all required, all of one numeric or boolean
type - the frame enforcement ends with is known in advance when a request names exactly the
signature's columns, in its order, and every column holds JSON values that become that type
the same way MLflow's `astype` makes them: one 2-D array of the type under those names. It is
built in one numpy call, and the model is called without enforcing the schema again (it would
return the frame unchanged: tests/unit/serve/test_signature_frames.py compares the two frames
for every covered type and kind). Anything else - other columns or order, a JSON kind the
type would have to truncate or round twice, an int beyond int32 for an `integer` column -
takes MLflow's path, and is counted there.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from mlflow.types import DataType

from mlflow_operator_serve import jsonrows

# signature type name -> (numpy dtype, JSON kinds that convert to it exactly as astype does).
# An int becomes a double by one rounding either way; into a float32 numpy would round an int
# through double first (twice), so only JSON floats go there. Floats never go into integer
# columns (astype truncates them).
_TYPES: dict[str, tuple[np.dtype[Any], frozenset[type]]] = {
    "double": (np.dtype(np.float64), frozenset({float, int})),
    "float": (np.dtype(np.float32), frozenset({float})),
    "long": (np.dtype(np.int64), frozenset({int})),
    "integer": (np.dtype(np.int32), frozenset({int})),
    "boolean": (np.dtype(np.bool_), frozenset({bool})),
}


@dataclass(frozen=True)
class SignatureFrames:
    """Builds enforced frames for one model's column signature."""

    columns: tuple[str, ...]
    dtype: np.dtype[Any]
    kinds: frozenset[type]

    @classmethod
    def for_schema(cls, schema: Any) -> SignatureFrames | None:
        """The builder for an MLflow input `Schema`, or None when its shape is not covered."""
        if schema is None or schema.is_tensor_spec() or not schema.has_input_names():
            return None
        specs = schema.inputs
        if not specs or not all(spec.required for spec in specs):
            return None
        only = specs[0].type
        if not isinstance(only, DataType) or only.name not in _TYPES:
            return None
        if any(spec.type != only for spec in specs):
            return None
        columns = tuple(str(spec.name) for spec in specs)
        if len(set(columns)) != len(columns):
            return None
        dtype, kinds = _TYPES[only.name]
        return cls(columns, dtype, kinds)

    def accepts(self, part: jsonrows.JsonRows) -> bool:
        """Whether the frame of these rows is known without MLflow's casts and checks."""
        if part.columns != self.columns or not all(kind in self.kinds for kind in part.kinds):
            return False
        if self.dtype == np.int32:  # MLflow's astype would wrap a larger int silently
            return all(_INT32_MIN <= value <= _INT32_MAX for row in _lists(part) for value in row)
        return True

    def frame(self, parts: Sequence[jsonrows.JsonRows]) -> pd.DataFrame:
        """The enforced frame of all parts' rows, in order. Only for parts it `accepts`."""
        rows = [row for part in parts for row in _lists(part)]
        return pd.DataFrame(np.array(rows, dtype=self.dtype), columns=list(self.columns))


_INT32_MIN = -(2**31)
_INT32_MAX = 2**31 - 1


def _lists(part: jsonrows.JsonRows) -> list[Any]:
    """The part's rows as lists of values in column order."""
    if part.field == jsonrows.SPLIT:
        return part.rows
    # jsonrows keeps records only when every record's keys are the columns, in order
    return [list(record.values()) for record in part.rows]
