"""Request bodies are kept as rows exactly as when the standard library's `json` decodes them."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from mlflow_operator_serve import jsonrows
from mlflow_operator_serve.protocol import _decode_json

JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)  # beyond 64 bits too: orjson refuses those
    | st.floats()  # NaN and Infinity too: not JSON, but `json` takes them
    | st.text(),
    lambda children: st.lists(children) | st.dictionaries(st.text(), children),
    max_leaves=20,
)


NUMBERS = st.integers(-(2**70), 2**70) | st.floats()


@settings(max_examples=500, deadline=None)
@given(JSON_VALUES)
def test_bodies_decode_as_json_decodes_them_but_for_integers_beyond_64_bits(
    value: object,
) -> None:
    if _has_huge_int(value):
        return  # orjson makes those floats: the next test shows they are never kept as rows
    body = json.dumps(value).encode()
    # compared as re-encoded text: NaN is not equal to itself
    assert json.dumps(_decode_json(body)) == json.dumps(json.loads(body))


@settings(max_examples=500, deadline=None)
@given(
    st.lists(st.sampled_from(["a", "b", "c"]), min_size=1, max_size=3, unique=True).flatmap(
        lambda columns: st.tuples(
            st.just(columns),
            st.lists(st.lists(NUMBERS, min_size=len(columns), max_size=len(columns)), min_size=1),
        )
    )
)
def test_rows_kept_are_the_rows_json_gives(case: tuple[list[str], list[list[object]]]) -> None:
    columns, data = case
    body = json.dumps({"dataframe_split": {"columns": columns, "data": data}}).encode()
    ours = jsonrows.scan(_decode_json(body))
    theirs = jsonrows.scan(json.loads(body))
    assert ours == theirs


def test_integers_beyond_64_bits_are_never_kept_as_rows() -> None:
    for big in (-(2**63) - 1, 2**64):
        body = json.dumps({"dataframe_split": {"columns": ["a"], "data": [[big], [1.5]]}})
        assert jsonrows.scan(_decode_json(body.encode())) is None


def _has_huge_int(value: object) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return not -(2**63) <= value < 2**64
    if isinstance(value, list):
        return any(_has_huge_int(v) for v in value)
    if isinstance(value, dict):
        return any(_has_huge_int(v) for v in value.values())
    return False


def test_lone_surrogates_and_bad_bodies() -> None:
    assert _decode_json(b'{"a": "\\ud800"}') == {"a": "\ud800"}
    assert _decode_json(b"{not json") is None
    assert _decode_json(b"\xff\xfe") is None
