"""The checked-in CRDs are exactly what the models generate, and Kubernetes can accept them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from mlflow_operator.crds import (
    KINDS,
    MLFLOW_SERVER,
    MODEL_DEPLOYMENT,
    build_crd,
    crd_filename,
    render_crd,
)

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.kind)
def test_checked_in_crd_matches_models(kind: Any) -> None:
    checked_in = (ROOT / "crds" / crd_filename(kind)).read_text()
    assert checked_in == render_crd(kind), "crds/ drifted from the models: run `make crds`"


def test_cli_prints_both_crds_byte_for_byte(tmp_path: Path) -> None:
    cli = [sys.executable, "-m", "mlflow_operator"]
    printed = subprocess.run([*cli, "crds"], capture_output=True, text=True, check=True).stdout
    expected = "---\n".join((ROOT / "crds" / crd_filename(k)).read_text() for k in KINDS)
    assert printed == expected
    subprocess.run([*cli, "crds", "--output-dir", str(tmp_path)], check=True)
    for kind in KINDS:
        name = crd_filename(kind)
        assert (tmp_path / name).read_bytes() == (ROOT / "crds" / name).read_bytes()


def _walk(node: dict[str, Any], path: str = "") -> list[tuple[str, dict[str, Any]]]:
    nodes = [(path, node)]
    for name, child in node.get("properties", {}).items():
        nodes += _walk(child, f"{path}.{name}")
    for key in ("items", "additionalProperties"):
        if isinstance(node.get(key), dict):
            nodes += _walk(node[key], f"{path}[{key}]")
    return nodes


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.kind)
def test_schema_is_structural(kind: Any) -> None:
    schema = build_crd(kind)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    text = yaml.safe_dump(schema)
    for forbidden in ("$ref", "$defs", "title:", "additionalProperties: false", "type: 'null'"):
        assert forbidden not in text
    for path, node in _walk(schema):
        typed = "type" in node or node.get("x-kubernetes-int-or-string")
        assert typed, f"{path} has no type"
        if node.get("type") == "object" and "properties" in node:
            assert "additionalProperties" not in node, path


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.kind)
def test_every_spec_and_status_field_has_a_description(kind: Any) -> None:
    schema = build_crd(kind)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    for part in ("spec", "status"):
        for path, node in _walk(schema["properties"][part], part):
            if not path.endswith("]"):
                assert node.get("description"), f"{path} has no description"


def test_kubectl_facing_names() -> None:
    md = build_crd(MODEL_DEPLOYMENT)["spec"]
    ms = build_crd(MLFLOW_SERVER)["spec"]
    assert md["names"]["shortNames"] == ["mdep"]
    assert ms["names"]["shortNames"] == ["mlfs"]
    assert md["names"]["categories"] == ms["names"]["categories"] == ["mlflow"]
    for spec in (md, ms):
        assert spec["scope"] == "Namespaced"
    assert ms["versions"][0]["subresources"] == {"status": {}}
    assert set(md["versions"][0]["subresources"]) == {"status", "scale"}
    columns = [c["name"] for c in md["versions"][0]["additionalPrinterColumns"]]
    assert columns == ["Model", "Follows", "Target", "Serving", "Rollout", "Weight", "Ready", "Age"]
    columns = [c["name"] for c in ms["versions"][0]["additionalPrinterColumns"]]
    assert columns == ["Ready", "URL", "Version", "Age"]


def test_cross_field_rules_are_cel_in_the_crd() -> None:
    text = json.dumps(build_crd(MODEL_DEPLOYMENT))
    assert "exactly one of alias, stage, version or selector must be set" in text
    assert "exactly one of serverRef or trackingUri must be set" in text
    assert "duration(self.pollInterval) >= duration('5s')" in text
    text = json.dumps(build_crd(MLFLOW_SERVER))
    assert text.count("exactly one of managed or external must be set") == 2


def test_sections_default_so_the_api_server_fills_their_fields() -> None:
    spec = build_crd(MODEL_DEPLOYMENT)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    props = spec["properties"]["spec"]["properties"]
    assert props["serving"]["default"] == {}
    assert props["serving"]["properties"]["replicas"]["default"] == 1
    assert props["registry"]["properties"]["pollInterval"]["default"] == "30s"
    assert "default" not in props["registry"]  # required: no default
    assert "default" not in props["model"]["properties"]["alias"]  # optional: absent stays absent


def test_the_scale_subresource_points_at_fields_of_the_schema() -> None:
    """kubectl scale, HPAs and KEDA read and write these paths; a wrong one fails only at
    run time (the API server does not check them against the schema)."""
    version = build_crd(MODEL_DEPLOYMENT)["spec"]["versions"][0]
    schema = version["schema"]["openAPIV3Schema"]
    scale = version["subresources"]["scale"]

    def field(path: str) -> dict[str, Any]:
        node = schema
        for part in path.lstrip(".").split("."):
            node = node["properties"][part]
        return dict(node)

    assert field(scale["specReplicasPath"])["type"] == "integer"
    assert field(scale["statusReplicasPath"])["type"] == "integer"
    assert field(scale["labelSelectorPath"])["type"] == "string"


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.kind)
def test_exclusive_bounds_are_openapi_flags(kind: Any) -> None:
    """The API server decodes exclusiveMinimum/exclusiveMaximum as booleans: pydantic's number
    (gt=0) would make the whole CRD undecodable."""
    schema = build_crd(kind)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    for path, node in _walk(schema):
        for flag, bound in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
            if flag in node:
                assert node[flag] is True, path
                assert bound in node, path


def test_a_drift_threshold_must_be_above_zero() -> None:
    spec = build_crd(MODEL_DEPLOYMENT)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    monitoring = spec["properties"]["spec"]["properties"]["serving"]["properties"]["monitoring"]
    drift = monitoring["properties"]["thresholds"]["properties"]["drift"]
    assert (drift["minimum"], drift["exclusiveMinimum"], drift["maximum"]) == (0, True, 10)
