"""Validate a manifest's spec with the API models and say what is wrong in kubectl's words.

The API server refuses bad manifests first (schema and CEL); this is the operator's own check
of what it reads, and the source of the messages in its conditions.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, ValidationError

from mlflow_operator.api.base import Rule
from mlflow_operator.api.names import name_errors


def spec_errors(spec_model: type[BaseModel], spec: Any) -> list[str]:
    """Errors of a spec as 'spec.<field path>: <message>' lines; empty when it is valid."""
    try:
        spec_model.model_validate(spec)
    except ValidationError as exc:
        return [_describe(error) for error in exc.errors()]
    return []


def _describe(error: Any) -> str:
    path = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error["loc"])
    path += (error.get("ctx") or {}).get("field_path", "")
    message = str(error["msg"]).removeprefix("Value error, ")
    return f"spec{path}: {message}"


def object_errors(spec_model: type[BaseModel], name_rules: Sequence[Rule], body: Any) -> list[str]:
    """Errors of a whole object: its name (rules as in the CRD) and its spec."""
    name = str((body.get("metadata") or {}).get("name", ""))
    return [*name_errors(name, name_rules), *spec_errors(spec_model, body.get("spec") or {})]
