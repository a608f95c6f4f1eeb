"""skops.io imported from a recorded list of trusted types trusts exactly what skops trusts.

Each case runs in a fresh interpreter (skops.io computes its lists once, at its first import):
the recording one imports skops.io as it is, the replaying one from the record; each checks the
same saved files with skops' own `get_untrusted_types` and `load`. Real skops, scikit-learn and
numpy; nothing is faked.
"""

from __future__ import annotations

import json
import operator
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import skops.io
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer

from mlflow_operator_serve import skops_trusted_types

# Records, replays or falls back (argv[1]), then reports what skops makes of each file.
_CHECK = """
import json, sys
from mlflow_operator_serve import skops_trusted_types as t
mode, prefix, files = sys.argv[1], sys.argv[2], sys.argv[3:]
if mode == "record":
    t.record(prefix)
    replayed = False
else:
    replayed = t.import_skops_io(prefix)
import skops.io
report = {"replayed": replayed, "untrusted": {}, "loaded": {}}
for file in files:
    report["untrusted"][file] = skops.io.get_untrusted_types(file=file)
    try:
        report["loaded"][file] = type(skops.io.load(file)).__name__
    except Exception as error:
        report["loaded"][file] = type(error).__name__
print(json.dumps(report))
"""


def _check(mode: str, prefix: Path, files: list[Path]) -> dict[str, Any]:
    result = subprocess.run(
        [sys.executable, "-c", _CHECK, mode, str(prefix), *map(str, files)],
        capture_output=True, text=True, check=True, timeout=120,
    )  # fmt: skip
    report: dict[str, Any] = json.loads(result.stdout.splitlines()[-1])
    return report


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """A model of trusted types only (an estimator and a numpy ufunc), and one holding a
    function skops does not trust."""
    folder = tmp_path_factory.mktemp("skops")
    x, y = np.array([[0.0, 1.0], [1.0, 0.0], [2.0, 1.0], [3.0, 0.0]]), np.array([0, 0, 1, 1])
    trusted = make_pipeline(FunctionTransformer(np.log1p), LogisticRegression()).fit(x, y)
    untrusted = make_pipeline(FunctionTransformer(operator.neg), LogisticRegression()).fit(x, y)
    files = [folder / "trusted.skops", folder / "untrusted.skops"]
    skops.io.dump(trusted, files[0])
    skops.io.dump(untrusted, files[1])
    return files


@pytest.fixture(scope="module")
def recorded(
    tmp_path_factory: pytest.TempPathFactory, saved: list[Path]
) -> tuple[Path, dict[str, Any]]:
    """A record made by importing skops.io as it is, and what that skops made of the files."""
    prefix = tmp_path_factory.mktemp("prefix")
    return prefix, _check("record", prefix, saved)


def test_a_replayed_record_trusts_what_skops_trusts(
    recorded: tuple[Path, dict[str, Any]], saved: list[Path]
) -> None:
    prefix, as_it_is = recorded
    replayed = _check("replay", prefix, saved)

    assert as_it_is["replayed"] is False
    assert replayed["replayed"] is True
    assert replayed["untrusted"] == as_it_is["untrusted"]
    assert as_it_is["untrusted"] == {str(saved[0]): [], str(saved[1]): ["_operator.neg"]}
    assert replayed["loaded"] == as_it_is["loaded"]
    assert as_it_is["loaded"] == {
        str(saved[0]): "Pipeline",
        str(saved[1]): "UntrustedTypesFoundException",
    }


def test_a_record_that_does_not_fit_this_skops_is_not_used(
    recorded: tuple[Path, dict[str, Any]], saved: list[Path], tmp_path: Path
) -> None:
    file = skops_trusted_types.record_file(str(recorded[0]))
    assert file is not None
    lists = json.loads(file.read_text())
    del lists["SKLEARN_ESTIMATOR_TYPE_NAMES"]  # as if a newer skops imported a list more
    copy = skops_trusted_types.record_file(str(tmp_path))
    assert copy is not None
    copy.parent.mkdir(parents=True)
    copy.write_text(json.dumps(lists))

    fallback = _check("replay", tmp_path, saved)

    assert fallback["replayed"] is False
    assert fallback["untrusted"] == recorded[1]["untrusted"]
    assert fallback["loaded"] == recorded[1]["loaded"]


def test_a_record_is_named_by_every_version_its_lists_come_from(tmp_path: Path) -> None:
    file = skops_trusted_types.record_file(str(tmp_path))

    assert file is not None
    assert file.parent == tmp_path / "share" / "mlflow-operator-serve"
    for package in ("skops", "scikit-learn", "scipy", "numpy"):
        assert f"{package}-" in file.name


def test_a_record_that_is_not_lists_of_names_is_ignored(tmp_path: Path) -> None:
    file = tmp_path / "record.json"
    file.write_text(json.dumps({"SKLEARN_ESTIMATOR_TYPE_NAMES": [1, 2]}))
    assert skops_trusted_types.recorded_lists(file) is None
    file.write_text("not json")
    assert skops_trusted_types.recorded_lists(file) is None
    assert skops_trusted_types.recorded_lists(tmp_path / "missing.json") is None
