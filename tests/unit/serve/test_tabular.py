"""What merges, and splitting predictions of a merged frame back per request."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

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


def test_params_llm_input_and_tensors_run_alone() -> None:
    data = frame(x=[1.0])
    assert tabular.merge_key(data, {"temperature": 0.1}, unwrapped=False) is None
    assert tabular.merge_key(data, None, unwrapped=True) is None
    assert tabular.merge_key(np.zeros((2, 3)), None, unwrapped=False) is None
    assert tabular.merge_key({"x": np.zeros(2)}, None, unwrapped=False) is None


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
    frames = tabular.split(frame(p=[1, 2, 3]), sizes)
    assert [f.to_dict("records") for f in frames] == [[{"p": 1}], [{"p": 2}, {"p": 3}]]
    assert list(frames[1].index) == [0, 1]
    series = tabular.split(pd.Series([1, 2, 3], name="p"), sizes)
    assert [s.tolist() for s in series] == [[1], [2, 3]]
    assert tabular.split(["a", "b", "c"], sizes) == [["a"], ["b", "c"]]


@pytest.mark.parametrize("predictions", [np.array(5), np.zeros(2), ["a"], {"a": 1}, "text"])
def test_split_refuses_what_does_not_have_one_entry_per_row(predictions: object) -> None:
    with pytest.raises(tabular.NotSplittableError):
        tabular.split(predictions, [1, 2])
