"""Examples are valid; invalid manifests are refused with a message that names the field."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.unit.manifests import EXAMPLES, INVALID, load_invalid, operator_errors, schema_errors


def test_there_are_enough_invalid_manifests() -> None:
    assert len(INVALID) >= 15


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_is_valid(path: Path) -> None:
    body = yaml.safe_load(path.read_text())
    assert schema_errors(body) == []
    assert operator_errors(body) == []


@pytest.mark.parametrize("path", INVALID, ids=lambda p: p.name)
def test_operator_refuses_invalid_manifest_naming_the_field(path: Path) -> None:
    manifest = load_invalid(path)
    errors = operator_errors(manifest.body)
    assert errors, f"{path.name} was accepted"
    assert any(error.startswith(manifest.field) for error in errors), errors


@pytest.mark.parametrize(
    "path", [p for p in INVALID if not load_invalid(p).cel_only], ids=lambda p: p.name
)
def test_crd_schema_refuses_invalid_manifest_naming_the_field(path: Path) -> None:
    manifest = load_invalid(path)
    errors = schema_errors(manifest.body)
    assert errors, f"{path.name} passed the CRD schema"
    wanted = manifest.field
    # jsonschema names an unknown or missing field in the message, not in the path
    leaf = wanted.rsplit(".", 1)[-1]
    assert any(e.startswith(wanted) or (leaf in e) for e in errors), errors


@pytest.mark.parametrize(
    "path", [p for p in INVALID if load_invalid(p).cel_only], ids=lambda p: p.name
)
def test_cel_only_manifests_pass_the_plain_schema(path: Path) -> None:
    """Guards the `cel: true` markers: these rely on CEL, checked by the real API server."""
    assert schema_errors(load_invalid(path).body) == []


def test_env_manager_virtualenv_is_refused_naming_the_field_and_what_it_takes() -> None:
    """Removed from the API (docs/model-delivery.md): MLflow's virtualenv manager needs pyenv,
    which the serving images lack. The operator and the CRD schema both refuse it."""
    manifest = load_invalid(INVALID[0].parent / "md-env-manager-virtualenv.yaml")
    assert manifest.body["spec"]["serving"]["envManager"] == "virtualenv"
    assert operator_errors(manifest.body) == [
        "spec.serving.envManager: Input should be 'local' or 'uv'"
    ]
    assert schema_errors(manifest.body) == [
        "spec.serving.envManager: 'virtualenv' is not one of ['local', 'uv']"
    ]
