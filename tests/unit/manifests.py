"""Load the example and invalid manifests, and validate them as the API server's schema would."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema
import yaml
from pydantic import BaseModel

from mlflow_operator.api.validation import object_errors
from mlflow_operator.crds import KINDS, Kind, build_crd

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "examples").glob("*.yaml"))
INVALID = sorted((ROOT / "tests" / "manifests" / "invalid").glob("*.yaml"))


@dataclass(frozen=True)
class InvalidManifest:
    path: Path
    body: dict[str, Any]
    field: str  # the field path the rejection must name
    cel_only: bool  # only a CEL rule (not the OpenAPI schema) catches it


def load_invalid(path: Path) -> InvalidManifest:
    text = path.read_text()
    header = dict(
        line.lstrip("# ").split(": ", 1) for line in text.splitlines() if line.startswith("# ")
    )
    return InvalidManifest(path, yaml.safe_load(text), header["field"], header["cel"] == "true")


def kind_of(body: dict[str, Any]) -> Kind:
    return next(k for k in KINDS if k.kind == body["kind"])


def spec_model(body: dict[str, Any]) -> type[BaseModel]:
    return kind_of(body).spec


def strict_schema(kind: Kind) -> dict[str, Any]:
    """The CRD's schema with unknown fields refused, as `kubectl apply` (strict) does."""
    schema = copy.deepcopy(build_crd(kind)["spec"]["versions"][0]["schema"]["openAPIV3Schema"])

    def close(node: dict[str, Any]) -> None:
        if "properties" in node and not node.get("x-kubernetes-preserve-unknown-fields"):
            node["additionalProperties"] = False
        # OpenAPI v3.0's exclusive bound is a flag on minimum/maximum, Draft 7's the number
        for exclusive, bound in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
            if node.get(exclusive) is True:
                node[exclusive] = node.pop(bound)
        for child in node.get("properties", {}).values():
            close(child)
        for key in ("items", "additionalProperties"):
            if isinstance(node.get(key), dict):
                close(node[key])

    close(schema)
    schema["properties"]["metadata"]["additionalProperties"] = True
    return schema


def schema_errors(body: dict[str, Any]) -> list[str]:
    validator = jsonschema.Draft7Validator(strict_schema(kind_of(body)))
    return [
        ".".join(str(p) for p in error.absolute_path) + f": {error.message}"
        for error in validator.iter_errors(body)
    ]


def operator_errors(body: dict[str, Any]) -> list[str]:
    """What the operator itself finds wrong with an object it reads (name and spec)."""
    kind = kind_of(body)
    return object_errors(kind.spec, kind.name_rules, body)
