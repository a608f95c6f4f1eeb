"""Every kind the operator reads or writes resolves to a lightkube resource without a
discovery call: found missing for CronJob only by the e2e, after the reconcile had failed."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from mlflow_operator.kube.client import _KINDS, resource_class

SOURCE = Path(__file__).resolve().parents[2] / "operator" / "mlflow_operator"
# ("batch/v1", "Job") in a call, or "apiVersion": "batch/v1", "kind": "Job" in a manifest
PAIRS = (
    re.compile(r'"((?:[a-z.]+/)?v1)",\s*"([A-Z][A-Za-z]+)"'),
    re.compile(r'"apiVersion":\s*"((?:[a-z.]+/)?v1)",\s*"kind":\s*"([A-Z][A-Za-z]+)"'),
)


def used_kinds() -> set[tuple[str, str]]:
    text = "\n".join(path.read_text() for path in SOURCE.rglob("*.py"))
    return {match for pattern in PAIRS for match in pattern.findall(text)}


def test_the_scan_finds_the_kinds_of_calls_and_of_manifests() -> None:
    assert {("batch/v1", "Job"), ("batch/v1", "CronJob"), ("v1", "Secret")} <= used_kinds()


@pytest.mark.parametrize(("api_version", "kind"), sorted(used_kinds()))
def test_every_kind_used_is_known_to_the_client(api_version: str, kind: str) -> None:
    assert (api_version, kind) in _KINDS
    assert resource_class(api_version, kind).__name__ == kind
