"""Generate the CustomResourceDefinitions from the pydantic models.

pydantic emits JSON Schema; Kubernetes wants a *structural* OpenAPI v3 schema: no `$ref`, no
`title`, no `additionalProperties: false`, no `null` type, every node typed, exclusive bounds
as OpenAPI v3.0 flags. This module turns one into the other. kube-custom-resource does the
same but emits no CEL and would pin our pydantic version, and the transformation is about 100
lines, so it lives here.

Regenerate the checked-in files with `make crds` (`mlflow-operator crds --output-dir crds`).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import yaml
from pydantic import BaseModel

from mlflow_operator.api import API_GROUP, API_VERSION, CATEGORY
from mlflow_operator.api.base import Rule
from mlflow_operator.api.mlflowserver import MLflowServerSpec, MLflowServerStatus
from mlflow_operator.api.modeldeployment import ModelDeploymentSpec, ModelDeploymentStatus
from mlflow_operator.api.names import MAX_NAME, MAX_STATEFULSET_NAME, name_rules
from mlflow_operator.core.mlflowserver.layout import max_server_name

HEADER = (
    "# Generated from the pydantic models in operator/mlflow_operator/api/ by\n"
    "# `mlflow-operator crds --output-dir crds` (make crds). Do not edit by hand.\n"
)
_DROPPED_KEYS = {"title", "examples", "example"}
_SCALARS = (str, int, float, bool)
_EXCLUSIVE_BOUNDS = {"exclusiveMinimum": "minimum", "exclusiveMaximum": "maximum"}


@dataclass(frozen=True)
class Kind:
    """One custom resource kind and how it shows in kubectl."""

    kind: str
    plural: str
    short_names: tuple[str, ...]
    description: str
    spec: type[BaseModel]
    status: type[BaseModel]
    printer_columns: tuple[Mapping[str, str | int], ...]
    name_rules: tuple[Rule, ...] = ()  # CEL on metadata.name, at the root of the schema
    # The scale subresource (kubectl scale, HorizontalPodAutoscaler, KEDA), when it has one
    scale: dict[str, str] | None = None

    @property
    def crd_name(self) -> str:
        return f"{self.plural}.{API_GROUP}"


def _ready_column() -> dict[str, str]:
    return {
        "name": "Ready",
        "type": "string",
        "jsonPath": '.status.conditions[?(@.type=="Ready")].status',
    }


_AGE = {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}

MODEL_DEPLOYMENT = Kind(
    kind="ModelDeployment",
    plural="modeldeployments",
    short_names=("mdep",),
    description="A serving endpoint whose model version the MLflow Model Registry decides.",
    spec=ModelDeploymentSpec,
    status=ModelDeploymentStatus,
    printer_columns=(
        {"name": "Model", "type": "string", "jsonPath": ".spec.model.name"},
        {"name": "Follows", "type": "string", "jsonPath": ".status.follows"},
        {"name": "Target", "type": "string", "jsonPath": ".status.targetVersion"},
        {"name": "Serving", "type": "string", "jsonPath": ".status.servingVersion"},
        # strategy Canary: Canary, Promoting, Promoted or Aborted, and the share in effect
        {"name": "Rollout", "type": "string", "jsonPath": ".status.rollout.phase"},
        {"name": "Weight", "type": "integer", "jsonPath": ".status.rollout.weight", "priority": 1},
        _ready_column(),
        _AGE,
    ),
    name_rules=name_rules(
        "ModelDeployment",
        MAX_NAME,
        "it is the name of the serving Deployment and Service, and a label value",
    ),
    scale={
        "specReplicasPath": ".spec.serving.replicas",
        "statusReplicasPath": ".status.replicas",
        "labelSelectorPath": ".status.selector",
    },
)

MLFLOW_SERVER = Kind(
    kind="MLflowServer",
    plural="mlflowservers",
    short_names=("mlfs",),
    description="An MLflow tracking server and model registry on PostgreSQL and S3 storage.",
    spec=MLflowServerSpec,
    status=MLflowServerStatus,
    printer_columns=(
        _ready_column(),
        {"name": "URL", "type": "string", "jsonPath": ".status.url"},
        {"name": "Version", "type": "string", "jsonPath": ".status.version"},
        _AGE,
    ),
    name_rules=name_rules(
        "MLflowServer",
        max_server_name(),
        f"the managed PostgreSQL StatefulSet <name>-postgres may have at most "
        f"{MAX_STATEFULSET_NAME}: its pods carry the label controller-revision-hash="
        f"<statefulset>-<10-character hash>, at most {MAX_NAME}",
    ),
)

KINDS = (MODEL_DEPLOYMENT, MLFLOW_SERVER)


def structural_schema(model: type[BaseModel], *, with_defaults: bool) -> dict[str, Any]:
    """The model's schema in the form the API server accepts for a CRD version."""
    raw = model.model_json_schema(by_alias=True, mode="validation")
    defs = raw.pop("$defs", {})
    return _convert(raw, defs, with_defaults=with_defaults)


def _convert(node: dict[str, Any], defs: dict[str, Any], *, with_defaults: bool) -> dict[str, Any]:
    node = _inline(node, defs)
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in _DROPPED_KEYS:
            continue
        if key == "additionalProperties" and value is False:
            continue  # forbidden in structural schemas; unknown fields are pruned or refused
        if key == "default" and not (with_defaults and isinstance(value, _SCALARS)):
            continue  # object/list defaults come from the factory rule below, None never
        if key == "const":
            out["enum"] = [value]
            continue
        if key in _EXCLUSIVE_BOUNDS and not isinstance(value, bool):
            # JSON Schema's exclusive bound is the number (pydantic's gt/lt); OpenAPI v3.0's,
            # which the API server decodes, is a flag on minimum/maximum
            out[_EXCLUSIVE_BOUNDS[key]] = value
            out[key] = True
            continue
        out[key] = value
    if "properties" in node:
        required = set(node.get("required", ()))
        out["properties"] = {
            name: _convert_property(
                prop, defs, with_defaults=with_defaults, required=name in required
            )
            for name, prop in node["properties"].items()
        }
    if isinstance(node.get("additionalProperties"), dict):
        out["additionalProperties"] = _convert(
            node["additionalProperties"], defs, with_defaults=with_defaults
        )
    if isinstance(node.get("items"), dict):
        out["items"] = _convert(node["items"], defs, with_defaults=with_defaults)
    return out


def _convert_property(
    prop: dict[str, Any], defs: dict[str, Any], *, with_defaults: bool, required: bool
) -> dict[str, Any]:
    optional = _is_nullable(prop)
    converted = _convert(prop, defs, with_defaults=with_defaults)
    # A section with a default_factory (serving, rollout, ...) defaults to {} so that the API
    # server fills in its fields' defaults too; an optional (None) section stays absent.
    is_section = converted.get("type") == "object" and "properties" in converted
    if with_defaults and is_section and not required and not optional:
        converted["default"] = {}
    return converted


def _is_nullable(prop: dict[str, Any]) -> bool:
    return any(option == {"type": "null"} for option in prop.get("anyOf", ()))


def _inline(node: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    """Resolve $ref, collapse `anyOf [T, null]` and single `allOf`, keeping outer keys."""
    node = dict(node)
    while True:
        if "$ref" in node:
            target = copy.deepcopy(defs[node.pop("$ref").split("/")[-1]])
            node = {**target, **node}  # the field's description wins over the model's
            continue
        options = node.get("anyOf")
        if options is not None and not node.get("x-kubernetes-int-or-string"):
            non_null = [o for o in options if o != {"type": "null"}]
            if len(non_null) == 1:
                del node["anyOf"]
                node = {**non_null[0], **node}
                continue
        if "allOf" in node and len(node["allOf"]) == 1:
            node = {**node.pop("allOf")[0], **node}
            continue
        return node


def build_crd(kind: Kind) -> dict[str, Any]:
    """The whole CustomResourceDefinition object of one kind."""
    spec_schema = structural_schema(kind.spec, with_defaults=True)
    status_schema = structural_schema(kind.status, with_defaults=False)
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": kind.crd_name,
            "labels": {"app.kubernetes.io/part-of": "mlflow-operator"},
        },
        "spec": {
            "group": API_GROUP,
            "names": {
                "kind": kind.kind,
                "listKind": f"{kind.kind}List",
                "plural": kind.plural,
                "singular": kind.kind.lower(),
                "shortNames": list(kind.short_names),
                "categories": [CATEGORY],
            },
            "scope": "Namespaced",
            "versions": [
                {
                    "name": API_VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {
                        "status": {},
                        **({"scale": dict(kind.scale)} if kind.scale else {}),
                    },
                    "additionalPrinterColumns": [dict(c) for c in kind.printer_columns],
                    "schema": {"openAPIV3Schema": _root_schema(kind, spec_schema, status_schema)},
                }
            ],
        },
    }


def _root_schema(
    kind: Kind, spec_schema: dict[str, Any], status_schema: dict[str, Any]
) -> dict[str, Any]:
    root: dict[str, Any] = {
        "type": "object",
        "description": kind.description,
        "required": ["spec"],
        "properties": {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            "metadata": {"type": "object"},
            "spec": spec_schema,
            "status": status_schema,
        },
    }
    if kind.name_rules:
        root["x-kubernetes-validations"] = [rule.schema() for rule in kind.name_rules]
    return root


def render_crd(kind: Kind) -> str:
    """The CRD as the YAML text checked in under crds/."""
    body = yaml.safe_dump(build_crd(kind), sort_keys=False, allow_unicode=True, width=100)
    return HEADER + body


def crd_filename(kind: Kind) -> str:
    return f"{kind.crd_name}.yaml"
