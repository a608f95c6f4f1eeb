"""`inputs`/`instances` JSON bodies straight into the array MLflow makes for a tensor signature.

For a model whose signature is one unnamed tensor (a PyTorch `pt2` program, most deep-learning
models), MLflow turns `{"inputs": [...]}` or `{"instances": [...]}` into one call,
`np.array(value, dtype=<the tensor's dtype>)` (`parse_tf_serving_input`, `_cast_schema_type`,
`convert_data_type`), after decoding the body twice with `json` and deep-copying the value:
268 us for one row of 256 floats on the 2-core machine, where that numpy call on the body
decoded by orjson takes 14 us.

The fast path makes the same numpy call on the same values. It takes a body whose only key is
`inputs` or `instances`, holding a non-empty nesting of lists of JSON numbers and booleans that
every decoder yields alike (`jsonrows.plain_numbers`); anything else, and any value numpy
refuses to make an array of, goes MLflow's way and gets MLflow's answer. Schema enforcement is
not skipped: it stays inside `PyFuncModel.predict`, once per merged batch
(tests/unit/serve/test_signature_tensors.py compares the arrays with MLflow's).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from mlflow_operator_serve import jsonrows

_FIELDS = frozenset({"inputs", "instances"})
# booleans, signed and unsigned integers, floats: what a list of JSON numbers can become
_NUMERIC_KINDS = frozenset("biuf")


@dataclass(frozen=True)
class SignatureTensors:
    """Builds the model input of `inputs`/`instances` requests for one tensor signature."""

    dtype: np.dtype[Any]

    @classmethod
    def for_schema(cls, schema: Any) -> SignatureTensors | None:
        """The builder for an MLflow input `Schema`, or None when its shape is not covered."""
        # unnamed: one tensor (MLflow refuses a schema of several unnamed ones)
        if schema is None or not schema.is_tensor_spec() or schema.has_input_names():
            return None
        dtype = np.dtype(schema.inputs[0].type)
        if dtype.kind not in _NUMERIC_KINDS:
            return None
        return cls(dtype)

    def array(self, decoded: object) -> np.ndarray[Any, Any] | None:
        """The model input MLflow would make of this decoded body, or None when MLflow's path
        must decide."""
        if not isinstance(decoded, dict) or len(decoded) != 1:
            return None  # params, both fields, unknown keys
        ((field, value),) = decoded.items()
        if field not in _FIELDS or not isinstance(value, list) or not value:
            return None
        leaves = _leaves(value)
        if leaves is None or not jsonrows.plain_numbers(leaves):
            return None
        try:
            return np.array(value, dtype=self.dtype)
        except (ValueError, TypeError, OverflowError):
            return None  # ragged rows, ints out of the dtype's range: MLflow's error


def _leaves(value: list[Any]) -> list[Any] | None:
    """The values of a nesting of lists, level by level down to the first level that holds no
    list; None when that level mixes lists and values or holds an empty list."""
    level = value
    while isinstance(level[0], list):
        if not all(isinstance(item, list) and item for item in level):
            return None
        level = [leaf for item in level for leaf in item]
    return level
