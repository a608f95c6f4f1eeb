"""Which JSON bodies stay as rows, and the merged request they make."""

from __future__ import annotations

import pandas as pd
import pytest

from mlflow_operator_serve import jsonrows

SPLIT = {"dataframe_split": {"columns": ["a", "b"], "data": [[1.0, "x"], [2.5, "y"]]}}
RECORDS = {"dataframe_records": [{"a": 1, "b": True}, {"a": 2, "b": False}]}


def test_plain_split_and_records_are_kept_with_their_kinds() -> None:
    split = jsonrows.scan(SPLIT)
    assert split is not None
    assert split.merge_key == ("dataframe_split", ("a", "b"), (float, str))
    records = jsonrows.scan(RECORDS)
    assert records is not None
    assert records.merge_key == ("dataframe_records", ("a", "b"), (int, bool))


@pytest.mark.parametrize(
    "body",
    [
        {**SPLIT, "params": {"k": 1}},
        {"dataframe_split": {"columns": ["a"], "data": [[1], [1.5]]}},  # int and float
        {"dataframe_split": {"columns": ["a"], "data": [[1], [None]]}},  # null
        {"dataframe_split": {"columns": ["a"], "data": [[True], [1]]}},  # bool is not int
        {"dataframe_split": {"columns": ["a"], "data": [[2**63]]}},  # beyond int64
        {"dataframe_split": {"columns": ["a"], "data": [[[1, 2]]]}},  # nested
        {"dataframe_split": {"columns": ["a", "a"], "data": [[1, 2]]}},  # duplicate columns
        {"dataframe_split": {"columns": ["a"], "data": [[1]], "index": [7]}},
        {"dataframe_split": {"data": [[1]]}},  # no columns
        {"dataframe_split": {"columns": ["a"], "data": []}},
        {"dataframe_split": {"columns": ["a", "b"], "data": [[1]]}},  # ragged
        {"dataframe_records": [{"a": 1, "b": 2}, {"b": 2, "a": 1}]},  # key order differs
        {"dataframe_records": [{"a": 1}, {"a": 1, "b": 2}]},
        {"instances": [{"a": 1}]},
        {"inputs": {"a": [1]}},
        [{"a": 1}],
    ],
)
def test_anything_else_is_left_to_mlflow(body: object) -> None:
    assert jsonrows.scan(body) is None


@pytest.mark.parametrize("body", [SPLIT, RECORDS])
def test_merged_rows_make_the_frame_the_parts_make(body: dict[str, object]) -> None:
    from mlflow.utils.proto_json_utils import dataframe_from_parsed_json

    part = jsonrows.scan(body)
    assert part is not None
    field, value = jsonrows.merged_field([part, part, part])
    orient = field.removeprefix("dataframe_")
    merged = dataframe_from_parsed_json(value, orient)
    alone = dataframe_from_parsed_json(body[field], orient)
    expected = pd.concat([alone] * 3, ignore_index=True)
    pd.testing.assert_frame_equal(merged, expected)
