"""JSON tabular requests kept as rows, so that a batch builds one DataFrame instead of many.

Turning a request into a DataFrame the way MLflow does (`dataframe_from_parsed_json`: build the
frame, then cast every column to the signature's type) costs far more than the JSON parsing
and, for single-row requests, more than the prediction itself. Requests that queue up together
therefore stay as parsed JSON rows; the batch concatenates the rows and MLflow's code builds
and casts one frame for all of them.

That frame equals the concatenation of the frames each request would have got alone only if
pandas infers the same dtype for every column either way. It does when, in each request, every
column holds values of one JSON kind (all int within int64, all finite float below 2**63 in
magnitude, all str, or all bool; no nulls, no nesting), and the requests merged agree on
columns, their order and these kinds. Only such requests are kept as rows; anything else is
parsed at once, exactly as MLflow does.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

_INT64_MIN = -(2**63)
_INT64_MAX = 2**63 - 1
_FLOAT_BOUND = float(2**63)
_KINDS = frozenset({bool, int, float, str})
_NUMBER_KINDS = frozenset({bool, int, float})

SPLIT = "dataframe_split"
RECORDS = "dataframe_records"


@dataclass(frozen=True)
class JsonRows:
    """A `dataframe_split` or `dataframe_records` request body, not yet a DataFrame."""

    field: str  # SPLIT or RECORDS
    columns: tuple[str, ...]
    kinds: tuple[type, ...]
    rows: list[Any]  # split: lists of values; records: dicts

    @property
    def merge_key(self) -> tuple[str, tuple[str, ...], tuple[type, ...]]:
        return (self.field, self.columns, self.kinds)


def scan(decoded: object) -> JsonRows | None:
    """JsonRows for a plain tabular request body (already json-decoded), else None."""
    if not isinstance(decoded, dict) or len(decoded) != 1:
        return None  # params, several fields, unknown keys: MLflow's full path decides
    if SPLIT in decoded:
        return _scan_split(decoded[SPLIT])
    if RECORDS in decoded:
        return _scan_records(decoded[RECORDS])
    return None


def _scan_split(split: object) -> JsonRows | None:
    if not isinstance(split, dict) or set(split) != {"columns", "data"}:
        return None
    columns, rows = split["columns"], split["data"]
    if not _good_columns(columns) or not isinstance(rows, list) or not rows:
        return None
    if not all(isinstance(row, list) and len(row) == len(columns) for row in rows):
        return None
    kinds = _uniform_kinds(rows)
    if kinds is None:
        return None
    return JsonRows(SPLIT, tuple(columns), kinds, rows)


def _scan_records(records: object) -> JsonRows | None:
    if not isinstance(records, list) or not records or not isinstance(records[0], dict):
        return None
    columns = list(records[0])
    if not _good_columns(columns):
        return None
    if not all(isinstance(r, dict) and list(r) == columns for r in records):
        return None
    kinds = _uniform_kinds([tuple(record.values()) for record in records])
    if kinds is None:
        return None
    return JsonRows(RECORDS, tuple(columns), kinds, records)


def _good_columns(columns: object) -> bool:
    return (
        isinstance(columns, list)
        and bool(columns)
        and set(map(type, columns)) == {str}
        and len(set(columns)) == len(columns)
    )


def _uniform_kinds(rows: Sequence[Sequence[Any]]) -> tuple[type, ...] | None:
    """The one JSON kind of each column (rows of values in column order), or None when a
    column mixes kinds or holds others."""
    # map, set, min and max loop in C: tens of microseconds for a 256-column row, not hundreds
    kinds = tuple(map(type, rows[0]))
    if any(tuple(map(type, row)) != kinds for row in rows[1:]):
        return None
    present = set(kinds)
    if not present <= _KINDS:
        return None
    if int in present:
        ints = [position for position, kind in enumerate(kinds) if kind is int]
        if not all(_INT64_MIN <= row[i] <= _INT64_MAX for row in rows for i in ints):
            return None
    if float in present and not _ordinary_floats(rows, kinds, only_floats=present == {float}):
        return None
    return kinds


def _ordinary_floats(
    rows: Sequence[Sequence[Any]], kinds: tuple[type, ...], *, only_floats: bool
) -> bool:
    """Whether every float is a number below 2**63 in magnitude.

    A fast JSON decoder (orjson) makes an integer literal beyond 64 bits such a float where
    `json` makes it an int; refusing them keeps the rows independent of the decoder.
    NaN and infinities go to MLflow's path too (rare in requests, and exact there).
    """
    values: Sequence[Any]
    if only_floats:
        values = rows[0] if len(rows) == 1 else [value for row in rows for value in row]
    else:
        floats = [position for position, kind in enumerate(kinds) if kind is float]
        values = [row[i] for row in rows for i in floats]
    return _below_bound(values)


def _below_bound(floats: Sequence[float]) -> bool:
    if any(map(math.isnan, floats)):
        return False
    return bool(min(floats) > -_FLOAT_BOUND and max(floats) < _FLOAT_BOUND)


def plain_numbers(values: Sequence[Any]) -> bool:
    """Whether the values are booleans, ints within int64 and floats below 2**63 in magnitude,
    not NaN: JSON values that every decoder yields alike (see `_ordinary_floats`)."""
    present = set(map(type, values))
    if not present <= _NUMBER_KINDS:
        return False
    if int in present:
        ints = [value for value in values if type(value) is int]
        if min(ints) < _INT64_MIN or max(ints) > _INT64_MAX:
            return False
    if float in present:
        return _below_bound(
            values if present == {float} else [v for v in values if type(v) is float]
        )
    return True


def merged_field(parts: Sequence[JsonRows]) -> tuple[str, Any]:
    """The input field and value of one request holding every part's rows, in order."""
    first = parts[0]
    rows = [row for part in parts for row in part.rows]
    if first.field == SPLIT:
        return SPLIT, {"columns": list(first.columns), "data": rows}
    return RECORDS, rows
