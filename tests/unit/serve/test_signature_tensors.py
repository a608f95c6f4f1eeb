"""Arrays built straight from `inputs`/`instances` bodies equal what MLflow's parser makes."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from mlflow.exceptions import MlflowException
from mlflow.models import Model
from mlflow.models.signature import ModelSignature
from mlflow.pyfunc import scoring_server
from mlflow.types import ColSpec, DataType, Schema, TensorSpec

from mlflow_operator_serve.protocol import _decode_json
from mlflow_operator_serve.signature_tensors import SignatureTensors

DTYPES = [np.float32, np.float64, np.int32, np.int64, np.uint8, np.bool_]


def tensor_schema(dtype: Any, shape: tuple[int, ...] = (-1, 3)) -> Schema:
    return Schema([TensorSpec(np.dtype(dtype), shape)])


def mlflow_array(body: bytes, schema: Schema) -> Any:
    """What MLflow's server makes of the body, or the exception it raises."""
    metadata = Model(signature=ModelSignature(inputs=schema))
    try:
        return scoring_server._parse_json_data(body, metadata, schema).data
    except MlflowException as error:
        return error


# JSON values of every kind a tensor request may hold, the awkward ones included: ints beyond
# 64 bits (orjson makes them floats), NaN and infinities (orjson refuses them), huge floats.
LEAVES = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.floats(-1e6, 1e6),
    st.integers(-(2**70), 2**70),
    st.integers(-300, 300),
    st.booleans(),
)


@st.composite
def bodies(draw: st.DrawFn) -> bytes:
    """`inputs` or `instances` of 1-4 rows of 1-4 values, mostly rectangular."""
    width = draw(st.integers(1, 4))
    rows = draw(st.integers(1, 4))
    data = [draw(st.lists(LEAVES, min_size=width, max_size=width)) for _ in range(rows)]
    if draw(st.booleans()) and rows > 1:
        data[-1] = data[-1][:-1] or [[]]  # ragged, or a list where a value belongs
    field = draw(st.sampled_from(["inputs", "instances"]))
    return json.dumps({field: data}).encode()


@settings(max_examples=400, deadline=None)
@given(st.sampled_from(DTYPES), bodies())
def test_the_array_is_mlflows_array_or_mlflow_decides(dtype: Any, body: bytes) -> None:
    schema = tensor_schema(dtype)
    tensors = SignatureTensors.for_schema(schema)
    assert tensors is not None
    with np.errstate(all="ignore"):
        ours = tensors.array(_decode_json(body))
        theirs = mlflow_array(body, schema)
    if ours is None:
        return
    assert isinstance(theirs, np.ndarray), f"MLflow refused what the fast path took: {theirs}"
    assert (ours.dtype, ours.shape) == (theirs.dtype, theirs.shape)
    assert ours.tobytes() == theirs.tobytes()


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("field", ["inputs", "instances"])
def test_plain_rows_take_the_fast_path(dtype: Any, field: str) -> None:
    schema = tensor_schema(dtype)
    tensors = SignatureTensors.for_schema(schema)
    assert tensors is not None
    body = json.dumps({field: [[1.5, 2, True], [0.25, 3, False]]}).encode()

    ours = tensors.array(_decode_json(body))

    assert ours is not None
    theirs = mlflow_array(body, schema)
    assert ours.dtype == theirs.dtype
    assert ours.tobytes() == theirs.tobytes()


def test_deeper_tensors_take_the_fast_path() -> None:
    schema = tensor_schema(np.float32, (-1, 2, 2))
    tensors = SignatureTensors.for_schema(schema)
    assert tensors is not None
    body = json.dumps({"inputs": [[[1.0, 2.0], [3.0, 4.0]], [[5.0, 6.0], [7.0, 8.5]]]}).encode()

    ours = tensors.array(_decode_json(body))

    assert ours is not None
    assert ours.shape == (2, 2, 2)
    assert ours.tobytes() == mlflow_array(body, schema).tobytes()


@pytest.mark.parametrize(
    "decoded",
    [
        {"inputs": [[1.0, 2.0, 3.0]], "params": {"a": 1}},
        {"inputs": [[1.0, 2.0, 3.0]], "instances": [[1.0, 2.0, 3.0]]},
        {"dataframe_split": {"data": [[1.0, 2.0, 3.0]]}},
        {"inputs": []},
        {"inputs": [[]]},
        {"inputs": 1.0},
        {"inputs": {"a": [1.0]}},
        {"instances": [{"a": 1.0}]},
        {"inputs": [[1.0, 2.0], 3.0]},
        {"inputs": [["1.0", 2.0, 3.0]]},
        {"inputs": [[None, 2.0, 3.0]]},
        {"inputs": [[float("nan"), 2.0, 3.0]]},
        {"inputs": [[2.0**63, 2.0, 3.0]]},
        {"inputs": [[2**64, 2.0, 3.0]]},
        [[1.0, 2.0, 3.0]],
        None,
    ],
    ids=repr,
)
def test_anything_else_goes_mlflows_way(decoded: object) -> None:
    tensors = SignatureTensors.for_schema(tensor_schema(np.float32))
    assert tensors is not None
    assert tensors.array(decoded) is None


def test_an_array_numpy_refuses_goes_mlflows_way() -> None:
    """A value out of the dtype's range: numpy raises, MLflow answers with its error."""
    schema = tensor_schema(np.uint8)
    tensors = SignatureTensors.for_schema(schema)
    assert tensors is not None
    body = json.dumps({"inputs": [[1, 2, 300]]}).encode()

    assert tensors.array(_decode_json(body)) is None
    assert isinstance(mlflow_array(body, schema), MlflowException)


@pytest.mark.parametrize(
    "schema",
    [
        None,
        Schema([ColSpec(DataType.double, "a")]),
        Schema([TensorSpec(np.dtype(np.float32), (-1, 3), "named")]),
        Schema(
            [
                TensorSpec(np.dtype(np.float32), (-1, 3), "a"),
                TensorSpec(np.dtype(np.float32), (-1,), "b"),
            ]
        ),
        Schema([TensorSpec(np.dtype(np.str_), (-1,))]),
        Schema([TensorSpec(np.dtype(object), (-1,))]),
    ],
    ids=["none", "columns", "named tensor", "two tensors", "strings", "objects"],
)
def test_only_one_unnamed_numeric_tensor_is_covered(schema: Schema | None) -> None:
    assert SignatureTensors.for_schema(schema) is None
