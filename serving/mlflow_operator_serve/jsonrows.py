"""JSON tabular requests kept as rows, so that a batch builds one DataFrame instead of many.

Turning a request into a DataFrame the way MLflow does (`dataframe_from_parsed_json`: build the
frame, then cast every column to the signature's type) costs far more than the JSON parsing
and, for single-row requests, more than the prediction itself. Requests that queue up together
therefore stay as parsed JSON rows; the batch concatenates the rows and MLflow's code builds
and casts one frame for all of them.

That frame equals the concatenation of the frames each request would have got alone only if
pandas infers the same dtype for every column either way. It does when, in each request, every
column holds values of one JSON kind (all int within int64, all float, all str, or all bool;
no nulls, no nesting), and the requests merged agree on columns, their order and these kinds.
Only such requests are kept as rows; anything else is parsed at once, exactly as MLflow does.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

_INT64_MIN = -(2**63)
_INT64_MAX = 2**63 - 1
_KINDS = (bool, int, float, str)

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
    kinds = _uniform_kinds(rows, range(len(columns)))
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
    kinds = _uniform_kinds(records, columns)
    if kinds is None:
        return None
    return JsonRows(RECORDS, tuple(columns), kinds, records)


def _good_columns(columns: object) -> bool:
    return (
        isinstance(columns, list)
        and bool(columns)
        and all(isinstance(c, str) for c in columns)
        and len(set(columns)) == len(columns)
    )


def _uniform_kinds(rows: list[Any], positions: Sequence[Any]) -> tuple[type, ...] | None:
    """The one JSON kind of each column, or None when a column mixes kinds or holds others."""
    kinds: list[type] = []
    for position in positions:
        kind = type(rows[0][position])
        if kind not in _KINDS:
            return None
        for row in rows:
            value = row[position]
            if type(value) is not kind:
                return None
            if kind is int and not _INT64_MIN <= value <= _INT64_MAX:
                return None
        kinds.append(kind)
    return tuple(kinds)


def merged_field(parts: Sequence[JsonRows]) -> tuple[str, Any]:
    """The input field and value of one request holding every part's rows, in order."""
    first = parts[0]
    rows = [row for part in parts for row in part.rows]
    if first.field == SPLIT:
        return SPLIT, {"columns": list(first.columns), "data": rows}
    return RECORDS, rows
