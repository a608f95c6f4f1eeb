"""Frames built straight from JSON rows equal what MLflow's parsing and enforcement make."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from mlflow.models.utils import _enforce_schema
from mlflow.pyfunc import scoring_server
from mlflow.types import ColSpec, DataType, Schema, TensorSpec

from mlflow_operator_serve import jsonrows
from mlflow_operator_serve.signature_frames import SignatureFrames

COLUMNS = ["a", "b", "c"]

INT64 = st.integers(-(2**63), 2**63 - 1)
# jsonrows keeps finite floats below 2**63 in magnitude
FLOATS = st.floats(-(2.0**63), 2.0**63, exclude_min=True, exclude_max=True)
FLOATS32 = st.floats(-(2.0**63), 2.0**63, exclude_min=True, exclude_max=True, width=32)
# The JSON kinds each signature type takes on the fast path: one kind per column
_KINDS: dict[str, list[st.SearchStrategy[Any]]] = {
    "double": [FLOATS, INT64],
    "float": [FLOATS32, FLOATS],
    "long": [INT64],
    "integer": [st.integers(-(2**31), 2**31 - 1)],
    "boolean": [st.booleans()],
}


def schema(type_name: str, columns: list[str] = COLUMNS) -> Schema:
    return Schema([ColSpec(DataType[type_name], name) for name in columns])


def mlflow_frame(body: dict[str, Any], input_schema: Schema) -> pd.DataFrame:
    """What MLflow's server hands the model: parse and cast, then enforce the signature."""
    parsed = scoring_server.infer_and_parse_data(body, input_schema)
    enforced: pd.DataFrame = _enforce_schema(parsed, input_schema)
    return enforced


@st.composite
def requests(draw: st.DrawFn) -> tuple[str, list[dict[str, Any]]]:
    """A type name and 1-3 request bodies of rows whose columns each hold one JSON kind."""
    type_name = draw(st.sampled_from(sorted(_KINDS)))
    kinds = [draw(st.sampled_from(_KINDS[type_name])) for _ in COLUMNS]
    bodies = []
    for _ in range(draw(st.integers(1, 3))):
        rows = draw(st.integers(1, 4))
        columns = [draw(st.lists(kind, min_size=rows, max_size=rows)) for kind in kinds]
        data = [list(row) for row in zip(*columns, strict=True)]
        if draw(st.booleans()):
            bodies.append({"dataframe_split": {"columns": COLUMNS, "data": data}})
        else:
            bodies.append(
                {"dataframe_records": [dict(zip(COLUMNS, row, strict=True)) for row in data]}
            )
    return type_name, bodies


@settings(max_examples=150, deadline=None)
@given(requests())
def test_the_frame_equals_mlflows_enforced_frame(case: tuple[str, list[dict[str, Any]]]) -> None:
    type_name, bodies = case
    input_schema = schema(type_name)
    frames = SignatureFrames.for_schema(input_schema)
    assert frames is not None
    parts = [jsonrows.scan(body) for body in bodies]
    usable = [part for part in parts if part is not None and frames.accepts(part)]
    assert len(usable) == len(parts), "every drawn request is one the fast path takes"
    for body, part in zip(bodies, usable, strict=True):
        pd.testing.assert_frame_equal(frames.frame([part]), mlflow_frame(body, input_schema))
    # merged: the frame of all parts' rows equals MLflow's frame of the merged request
    same_field = [part for part in usable if part.field == usable[0].field]
    field, value = jsonrows.merged_field(same_field)
    pd.testing.assert_frame_equal(
        frames.frame(same_field), mlflow_frame({field: value}, input_schema)
    )


@pytest.mark.parametrize(
    "input_schema",
    [
        None,
        Schema([ColSpec(DataType.double, "a"), ColSpec(DataType.long, "b")]),  # mixed types
        Schema([ColSpec(DataType.double, "a"), ColSpec(DataType.double, "b", required=False)]),
        Schema([ColSpec(DataType.string, "a")]),
        Schema([ColSpec(DataType.double)]),  # unnamed
        Schema([TensorSpec(np.dtype(np.float32), (-1, 3))]),
    ],
)
def test_other_signatures_are_left_to_mlflow(input_schema: Schema | None) -> None:
    assert SignatureFrames.for_schema(input_schema) is None


@pytest.mark.parametrize(
    ("type_name", "body"),
    [
        ("double", {"dataframe_split": {"columns": ["b", "a", "c"], "data": [[1.0, 2.0, 3.0]]}}),
        ("double", {"dataframe_split": {"columns": ["a", "b"], "data": [[1.0, 2.0]]}}),
        ("double", {"dataframe_split": {"columns": ["a", "b", "c", "d"], "data": [[1.0] * 4]}}),
        ("double", {"dataframe_split": {"columns": COLUMNS, "data": [[1.0, "x", 3.0]]}}),
        ("double", {"dataframe_split": {"columns": COLUMNS, "data": [[1.0, True, 3.0]]}}),
        ("float", {"dataframe_split": {"columns": COLUMNS, "data": [[1.0, 2, 3.0]]}}),
        ("long", {"dataframe_split": {"columns": COLUMNS, "data": [[1, 2.0, 3]]}}),
        ("integer", {"dataframe_split": {"columns": COLUMNS, "data": [[1, 2**31, 3]]}}),
        ("integer", {"dataframe_records": [{"a": 1, "b": -(2**31) - 1, "c": 3}]}),
        ("boolean", {"dataframe_split": {"columns": COLUMNS, "data": [[True, 1, False]]}}),
    ],
)
def test_requests_the_frame_is_not_known_for_are_left_to_mlflow(
    type_name: str, body: dict[str, Any]
) -> None:
    frames = SignatureFrames.for_schema(schema(type_name))
    assert frames is not None
    part = jsonrows.scan(body)
    assert part is not None
    assert not frames.accepts(part)


def _protocol(tmp_path: Any) -> Any:
    import mlflow.pyfunc
    from mlflow.models import ModelSignature

    from mlflow_operator_serve.protocol import ScoringProtocol

    class Sum(mlflow.pyfunc.PythonModel):
        """The row sums; raises on a negative first value."""

        def predict(self, context: Any, model_input: pd.DataFrame, params: Any = None) -> Any:
            if (model_input["a"] < 0).any():
                raise ValueError("negative")
            return model_input.sum(axis=1).to_numpy()

    path = tmp_path / "sum"
    mlflow.pyfunc.save_model(
        str(path), python_model=Sum(), signature=ModelSignature(inputs=schema("double"))
    )
    return ScoringProtocol(mlflow.pyfunc.load_model(str(path)))


def test_conforming_requests_skip_mlflows_enforcement_and_answer_the_same(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import json

    import mlflow.pyfunc

    protocol = _protocol(tmp_path)
    enforced = []
    original = mlflow.pyfunc._enforce_schema
    monkeypatch.setattr(
        mlflow.pyfunc, "_enforce_schema", lambda *a, **k: enforced.append(1) or original(*a, **k)
    )
    body = json.dumps({"dataframe_split": {"columns": COLUMNS, "data": [[1.0, 2.0, 3.5]]}})
    fast = protocol.parse(body.encode(), "application/json")
    assert fast.conforming
    assert protocol.predict(fast).tolist() == [6.5]
    assert enforced == []
    # the same request by MLflow's path: enforced, same answer
    assert protocol.predict(protocol.parse_json(body.encode())).tolist() == [6.5]
    assert enforced == [1]
    # a merged batch of conforming requests: one frame, not enforced
    frame, conforming = protocol.frame_from_rows([fast, fast])
    assert conforming
    assert protocol.predict_raw(frame, None, conforming=True).tolist() == [6.5, 6.5]
    assert enforced == [1]


def test_a_model_error_on_the_fast_path_is_mlflows_own_error(tmp_path: Any) -> None:
    import json

    from mlflow.exceptions import MlflowException

    protocol = _protocol(tmp_path)
    body = json.dumps({"dataframe_split": {"columns": COLUMNS, "data": [[-1.0, 2.0, 3.0]]}})
    fast = protocol.parse(body.encode(), "application/json")
    assert fast.conforming
    errors = []
    for request in (fast, protocol.parse_json(body.encode())):
        with pytest.raises(MlflowException) as raised:
            protocol.predict(request)
        errors.append((raised.value.message, raised.value.error_code))
    assert errors[0] == errors[1]
    assert "unexpected error" in errors[0][0]
