"""The `serve` command object: cheap to import, options parsed into settings."""

from __future__ import annotations

import subprocess
import sys

import pytest
from click.testing import CliRunner

from mlflow_operator_serve import cli


def test_importing_the_cli_does_not_import_mlflow_pandas_or_numpy() -> None:
    code = (
        "import sys, mlflow_operator_serve.cli\n"
        "heavy = sorted({m.split('.')[0] for m in sys.modules} & {'mlflow', 'pandas', 'numpy'})\n"
        "print(','.join(heavy))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == ""


def test_options_become_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    seen = []

    def fake_run(settings: object) -> int:
        seen.append(settings)
        return 0

    monkeypatch.setattr("mlflow_operator_serve.server.run", fake_run)
    result = CliRunner().invoke(
        cli.serve,
        ["-m", "models:/m/3", "--port", "9000", "-w", "3", "--max-batch-size", "8", "-t", "5"],
    )
    assert result.exit_code == 0, result.output
    (settings,) = seen
    assert settings.model_uri == "models:/m/3"
    assert (settings.port, settings.workers, settings.max_batch_size) == (9000, 3, 8)
    assert settings.timeout_seconds == 5.0


def test_bad_worker_count_is_refused() -> None:
    result = CliRunner().invoke(cli.serve, ["-m", "x", "-w", "0"])
    assert result.exit_code == 2
    assert "positive integer" in result.output
