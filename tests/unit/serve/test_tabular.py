"""What merges, and splitting predictions of a merged frame back per request."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from mlflow.utils.proto_json_utils import _get_jsonable_obj

from mlflow_operator_serve import tabular


def frame(**columns: list[object]) -> pd.DataFrame:
    return pd.DataFrame(columns)


def test_same_columns_and_dtypes_merge() -> None:
    a = tabular.merge_key(frame(x=[1.0], y=[2.0]), None, unwrapped=False)
    b = tabular.merge_key(frame(x=[3.0, 4.0], y=[5.0, 6.0]), None, unwrapped=False)
    assert a is not None
    assert a == b


@pytest.mark.parametrize(
    "other",
    [
        frame(y=[2.0], x=[1.0]),  # column order
        frame(x=[1], y=[2.0]),  # dtype
        frame(x=[1.0], y=[2.0], z=[0.0]),  # extra column
    ],
)
def test_different_columns_or_dtypes_do_not_merge(other: pd.DataFrame) -> None:
    base = tabular.merge_key(frame(x=[1.0], y=[2.0]), None, unwrapped=False)
    assert tabular.merge_key(other, None, unwrapped=False) != base


def test_params_llm_input_and_named_tensors_run_alone() -> None:
    data = frame(x=[1.0])
    assert tabular.merge_key(data, {"temperature": 0.1}, unwrapped=False) is None
    assert tabular.merge_key(data, None, unwrapped=True) is None
    assert tabular.merge_key({"x": np.zeros(2)}, None, unwrapped=False) is None
    assert tabular.merge_key(np.zeros((2, 3)), {"k": 1}, unwrapped=False) is None


def test_tensors_merge_by_dtype_and_shape_after_the_batch_axis() -> None:
    key = tabular.merge_key(np.zeros((2, 3), dtype=np.float32), None, False)
    assert key is not None
    assert key == tabular.merge_key(np.ones((5, 3), dtype=np.float32), None, False)
    assert key != tabular.merge_key(np.zeros((2, 3), dtype=np.float64), None, False)
    assert key != tabular.merge_key(np.zeros((2, 4), dtype=np.float32), None, False)
    assert key != tabular.merge_key(np.zeros((2, 3, 1), dtype=np.float32), None, False)
    for alone in (np.float32(1), np.zeros((0, 3)), np.array([["a", None]], dtype=object)):
        assert tabular.merge_key(alone, None, False) is None
    merged = tabular.merge([np.zeros((1, 3)), np.ones((2, 3))])
    assert merged.shape == (3, 3)
    assert tabular.row_count(merged) == 3
    assert [part.tolist() for part in tabular.split(merged, [1, 2])] == [
        [[0.0, 0.0, 0.0]],
        [[1.0, 1.0, 1.0], [1.0, 1.0, 1.0]],
    ]


def test_categories_are_part_of_the_key() -> None:
    a = frame(c=pd.Categorical(["a"], categories=["a", "b"]))
    b = frame(c=pd.Categorical(["a"], categories=["a", "c"]))
    assert tabular.merge_key(a, None, False) != tabular.merge_key(b, None, False)


def test_merge_reindexes_like_a_single_request() -> None:
    merged = tabular.merge([frame(x=[1.0]), frame(x=[2.0, 3.0])])
    assert list(merged.index) == [0, 1, 2]
    assert list(merged["x"]) == [1.0, 2.0, 3.0]


def test_split_arrays_frames_series_and_lists() -> None:
    sizes = [1, 2]
    parts = tabular.split(np.array([[1, 1], [2, 2], [3, 3]]), sizes)
    assert [p.tolist() for p in parts] == [[[1, 1]], [[2, 2], [3, 3]]]
    # frames and series: each part is the records MLflow renders that part's frame as
    whole = frame(p=[1.5, 2.0, 3.0], q=["a", "b", "c"])
    parts_of_frame = tabular.split(whole, sizes)
    assert parts_of_frame == [
        _get_jsonable_obj(whole.iloc[:1].reset_index(drop=True)),
        _get_jsonable_obj(whole.iloc[1:].reset_index(drop=True)),
    ]
    assert parts_of_frame[1] == [{"p": 2.0, "q": "b"}, {"p": 3.0, "q": "c"}]
    series = pd.Series([1, 2, 3], name="p")
    assert tabular.split(series, sizes) == [
        _get_jsonable_obj(series.iloc[:1].reset_index(drop=True)),
        _get_jsonable_obj(series.iloc[1:].reset_index(drop=True)),
    ]
    assert tabular.split(["a", "b", "c"], sizes) == [["a"], ["b", "c"]]


@pytest.mark.parametrize("predictions", [np.array(5), np.zeros(2), ["a"], {"a": 1}, "text"])
def test_split_refuses_what_does_not_have_one_entry_per_row(predictions: object) -> None:
    with pytest.raises(tabular.NotSplittableError):
        tabular.split(predictions, [1, 2])
