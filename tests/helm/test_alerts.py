"""Every alert of the chart's PrometheusRule, unit-tested with `promtool test rules`.

The rules are rendered from the chart as a user installs them (release and namespace
mlflow-operator); the cases are in tests/helm/alerts/. old-rules-test.yaml keeps the 0.1.0
expressions of the two alerts that could not fire, against the same situations.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.helm.chart import one, render
from tests.prometheus.build import ensure_built

CASES = Path(__file__).resolve().parent / "alerts"


def rendered_rules() -> dict[str, object]:
    values = {"metrics": {"prometheusRule": {"enabled": True}}}
    rule = one(render(values), "PrometheusRule")
    return {"groups": rule["spec"]["groups"]}


def promtool(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    argv = [str(ensure_built("promtool", quiet=True)), *args]
    return subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=120, check=False)


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    for path in CASES.iterdir():
        shutil.copy(path, tmp_path / path.name)
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump(rendered_rules(), sort_keys=False))
    return tmp_path


def test_rules_are_valid(workdir: Path) -> None:
    result = promtool("check", "rules", "rules.yaml", cwd=workdir)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_has_cases() -> None:
    alerts = {r["alert"] for g in rendered_rules()["groups"] for r in g["rules"]}  # type: ignore[attr-defined]
    cases = yaml.safe_load((CASES / "alerts-test.yaml").read_text())
    tested = {
        check["alertname"]
        for test in cases["tests"]
        for check in test["alert_rule_test"]
        if check["exp_alerts"]
    }
    assert tested == alerts


@pytest.mark.parametrize("cases", ["alerts-test.yaml", "old-rules-test.yaml"])
def test_promtool_cases(workdir: Path, cases: str) -> None:
    result = promtool("test", "rules", cases, cwd=workdir)
    assert result.returncode == 0, result.stdout + result.stderr
