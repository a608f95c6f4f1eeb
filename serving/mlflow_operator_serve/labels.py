"""Ground-truth labels for sampled requests: the body of `POST /labels`, checked.

    {"labels": [{"request_id": "req-1", "label": 1},
                {"request_id": "req-2", "label": ["fraud", "ok"]}]}

A label is matched later, by `request_id`, with a sampled request (prediction_log.py), so the
checks here are what keeps a file of labels joinable: an id as a sampled request can carry
one, and a value that a JSON reader (pandas) reads back as a column value. Everything else is
refused as a whole, with the index and field at fault, rather than half-written.

Pure: no I/O, no MLflow; the server answers, PredictionLog queues and writes.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any, Final

from mlflow_operator_serve.prediction_log import MAX_REQUEST_ID

# Labels in one post: a caller with more posts them in parts (each answered on its own).
MAX_LABELS: Final = 10_000
JSON_MEDIA_TYPE: Final = "application/json"

# A scalar, or one per row of a multi-row request.
LabelScalar = str | int | float | bool
LabelValue = LabelScalar | list[LabelScalar]

_SCALAR_HINT: Final = "must be a number, string or bool, or a non-empty list of them"


class LabelError(ValueError):
    """A body that is refused; the message says where (`labels[3].request_id: ...`)."""


@dataclass(frozen=True)
class Label:
    """One checked label; `json` is its value as written (serialized once, at parse time, so
    the bytes it holds in memory are known and the writer thread only joins strings)."""

    request_id: str
    value: LabelValue
    json: str

    @property
    def size(self) -> int:
        """What it counts against the writer's memory bound."""
        return len(self.request_id) + len(self.json)


def parse_labels(body: bytes) -> list[Label]:
    """The labels of a `POST /labels` body, in order; LabelError for anything else."""
    try:
        document = json.loads(body)
    except (ValueError, UnicodeDecodeError) as error:
        raise LabelError(f"body: not valid JSON ({error})") from None
    if not isinstance(document, dict):
        raise LabelError('body: must be a JSON object {"labels": [...]}')
    if unknown := sorted(set(document) - {"labels"}):
        raise LabelError(f"body: unknown field {unknown[0]!r} (only 'labels')")
    items = document.get("labels")
    if not isinstance(items, list):
        raise LabelError("labels: required, a list of {request_id, label} objects")
    if not 1 <= len(items) <= MAX_LABELS:
        raise LabelError(
            f"labels: {len(items)} items; a post holds 1 to {MAX_LABELS} (post more in parts)"
        )
    return [_label(index, item) for index, item in enumerate(items)]


def _label(index: int, item: Any) -> Label:
    where = f"labels[{index}]"
    if not isinstance(item, dict):
        raise LabelError(f"{where}: must be an object with request_id and label")
    if unknown := sorted(set(item) - {"request_id", "label"}):
        raise LabelError(f"{where}: unknown field {unknown[0]!r} (only request_id and label)")
    request_id = _request_id(where, item.get("request_id"))
    if "label" not in item:
        raise LabelError(f"{where}.label: required")
    value = _value(f"{where}.label", item["label"])
    # allow_nan=False cannot fail: _value refused non-finite numbers, with their place
    return Label(request_id, value, json.dumps(value, separators=(",", ":"), allow_nan=False))


def _request_id(where: str, request_id: Any) -> str:
    if not isinstance(request_id, str):
        raise LabelError(f"{where}.request_id: required, a string (the request's X-Request-ID)")
    if not 1 <= len(request_id) <= MAX_REQUEST_ID:
        # longer ids are cut to MAX_REQUEST_ID on the sample: one this long never matches
        raise LabelError(
            f"{where}.request_id: {len(request_id)} characters; must be 1 to {MAX_REQUEST_ID}"
        )
    return request_id


def _value(where: str, value: Any) -> LabelValue:
    if isinstance(value, list):
        if not value:
            raise LabelError(f"{where}: {_SCALAR_HINT}")
        return [_scalar(f"{where}[{i}]", item) for i, item in enumerate(value)]
    return _scalar(where, value)


def _scalar(where: str, value: Any) -> LabelScalar:
    if isinstance(value, float) and not math.isfinite(value):
        # NaN and Infinity are not JSON: Python's reader takes them, most others do not
        raise LabelError(f"{where}: NaN and Infinity are not allowed")
    if isinstance(value, str | int | float):  # bool is an int
        return value
    raise LabelError(f"{where}: {_SCALAR_HINT}")


def is_json(content_type: str | None) -> bool:
    """Whether a Content-Type is JSON in UTF-8, the only body `POST /labels` reads."""
    media_type, *parameters = (part.strip().lower() for part in (content_type or "").split(";"))
    # a charset other than UTF-8, or any other parameter, is refused as /invocations does
    return media_type == JSON_MEDIA_TYPE and all(
        p.replace(" ", "").replace('"', "") == "charset=utf-8" for p in parameters
    )


def error_body(error_code: str, message: str) -> bytes:
    """MLflow's JSON error shape, as `/invocations` answers its own refusals."""
    return json.dumps({"error_code": error_code, "message": message}).encode()
