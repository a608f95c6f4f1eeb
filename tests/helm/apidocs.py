"""docs/api.md, generated from the CRDs (which are generated from the pydantic models).

Each kind gets its printer columns, its validation rules, and one table row per field of
spec and status with type, default, constraints and the model's description. Written by
`python -m tests.helm.manifests`; a test fails when docs/api.md is stale.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from tests.helm.chart import CRDS, ROOT

OUTPUT = ROOT / "docs" / "api.md"

INTRO = """\
# API reference

<!-- Generated from crds/ (itself generated from operator/mlflow_operator/api/) by
`python -m tests.helm.manifests`; do not edit by hand. -->

API group `mlflowops.dev`, version `v1alpha1`. Both kinds are namespaced, have the `status`
subresource and belong to the category `mlflow` (`kubectl get mlflow` lists both). Every field
below is validated by the API server; unknown fields are refused. `kubectl explain
modeldeployment.spec.rollout` shows the same descriptions.

How the fields behave: [ModelDeployment](modeldeployment.md), [MLflowServer](mlflowserver.md),
[serving runtimes](serving.md). Status conditions and what Argo CD and Flux make of them:
[install.md](install.md#gitops).
"""

CONSTRAINTS = (
    ("enum", lambda v: "one of " + ", ".join(f"`{x}`" for x in v)),
    ("pattern", lambda v: f"pattern `{v}`"),
    ("minimum", lambda v: f">= {v}"),
    ("maximum", lambda v: f"<= {v}"),
    ("minLength", lambda v: f"length >= {v}"),
    ("maxLength", lambda v: f"length <= {v}"),
    ("minItems", lambda v: f">= {v} items"),
    ("maxItems", lambda v: f"<= {v} items"),
    ("format", lambda v: f"format {v}"),
)


def _type(node: dict[str, Any]) -> str:
    if node.get("x-kubernetes-int-or-string"):
        return "int or string"
    kind = str(node.get("type", "object"))
    if kind == "array":
        return f"[]{_type(node.get('items') or {})}"
    if kind == "object" and isinstance(node.get("additionalProperties"), dict):
        return f"map[string]{_type(node['additionalProperties'])}"
    return kind


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def _constraints(node: dict[str, Any]) -> list[str]:
    # OpenAPI v3.0: exclusiveMinimum/exclusiveMaximum are flags that make the bound strict
    strict = {
        "minimum": node.get("exclusiveMinimum") is True,
        "maximum": node.get("exclusiveMaximum") is True,
    }
    found = []
    for key, render in CONSTRAINTS:
        if key in node:
            text = render(node[key])
            found.append(text.replace("=", "", 1) if strict.get(key) else text)  # ">= 0": "> 0"
    return found


def _rows(node: dict[str, Any], path: str, required: bool) -> list[str]:
    constraints = _constraints(node)
    default = f"`{node['default']!r}`" if "default" in node else ""
    default = default.replace("'", '"').replace("True", "true").replace("False", "false")
    rows = [
        f"| `{path}` | {_type(node)} | {'yes' if required else ''} | {default} | "
        f"{_cell('; '.join(constraints))} | {_cell(str(node.get('description', '')))} |"
    ]
    if node.get("x-kubernetes-preserve-unknown-fields") and "properties" not in node:
        return rows  # a Kubernetes type passed through (resources, podTemplate parts)
    children = node.get("properties") or {}
    if node.get("type") == "array":
        children = (node.get("items") or {}).get("properties") or {}
        path = f"{path}[]"
        node = node.get("items") or {}
    wanted = set(node.get("required") or [])
    for name, child in children.items():
        rows += _rows(child, f"{path}.{name}", name in wanted)
    return rows


def _rules(node: dict[str, Any], path: str) -> list[str]:
    found = [
        f"- `{path or '.'}`: {rule['message']}" for rule in node.get("x-kubernetes-validations", [])
    ]
    for name, child in (node.get("properties") or {}).items():
        found += _rules(child, f"{path}.{name}")
    if isinstance(node.get("items"), dict):
        found += _rules(node["items"], f"{path}[]")
    return found


def kind_section(crd: dict[str, Any]) -> str:
    names = crd["spec"]["names"]
    version = crd["spec"]["versions"][0]
    schema = version["schema"]["openAPIV3Schema"]
    out = [
        f"## {names['kind']}",
        "",
        _cell(str(schema.get("description", ""))),
        "",
        f"Short name{'s' if len(names.get('shortNames', [])) > 1 else ''}: "
        + ", ".join(f"`{n}`" for n in names.get("shortNames", []))
        + f"; plural `{names['plural']}`.",
        "",
        "`kubectl get` columns: "
        + ", ".join(c["name"].upper() for c in version.get("additionalPrinterColumns", []))
        + ".",
        "",
    ]
    # rules at the root read metadata.name only (CEL sees no other part of metadata)
    rules = [
        f"- `metadata.name`: {rule['message']}"
        for rule in schema.get("x-kubernetes-validations", [])
    ]
    rules += _rules(schema["properties"]["spec"], "spec")
    if rules:
        out += ["Rules checked by the API server (CEL), beyond each field's own:", "", *rules, ""]
    for part in ("spec", "status"):
        node = schema["properties"].get(part)
        if node is None:
            continue
        out += [
            f"### {names['kind']}.{part}",
            "",
            "| field | type | required | default | constraints | description |",
            "|---|---|---|---|---|---|",
        ]
        for name, child in (node.get("properties") or {}).items():
            out += _rows(child, f"{part}.{name}", name in set(node.get("required") or []))
        out.append("")
    return "\n".join(out)


def render() -> str:
    crds = [yaml.safe_load(path.read_text()) for path in sorted(CRDS.glob("*.yaml"))]
    # ModelDeployment first: it is what most users write.
    crds.sort(key=lambda crd: crd["spec"]["names"]["kind"] != "ModelDeployment")
    return INTRO + "\n" + "\n".join(kind_section(crd) for crd in crds)


def is_fresh() -> bool:
    return OUTPUT.exists() and OUTPUT.read_text() == render()


def write() -> Path:
    OUTPUT.write_text(render())
    return OUTPUT
