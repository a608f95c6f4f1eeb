"""`import skops.io` without rebuilding its default trusted types at every start.

skops.io computes its default trusted type names when it is imported
(`skops.io._trusted_types`): it walks every scikit-learn module for estimators
(`sklearn.utils.all_estimators()`), imports the gradient-boosting internals and looks every
numpy and scipy ufunc up in every loaded module. That is about 0.85 s of a 3.5 s cold start of
`batched` on the 2-core machine, for lists of names that depend only on the installed
scikit-learn, scipy, numpy and skops. The serving images record those lists once, when they are
built (`python -m mlflow_operator_serve.skops_trusted_types`); a start that finds the record
for the installed versions puts it in place of that module, and skops.io imports the very same
names without computing them. Anything else (no record, other versions, a skops that needs more
from the module) imports skops.io as it is. skops has no switch for this.

The record decides what skops loads without complaint, so it is kept as the code is: in the
environment's own prefix (`<venv>/share/mlflow-operator-serve/`), root-owned in the images,
which the serving pods (non-root) cannot write.
"""

from __future__ import annotations

import importlib
import json
import logging
import sys
import types
from importlib import metadata
from pathlib import Path

_logger = logging.getLogger(__name__)

_MODULE = "skops.io._trusted_types"
_DIRECTORY = Path("share") / "mlflow-operator-serve"
# every package whose contents the lists are computed from
_PACKAGES = ("skops", "scikit-learn", "scipy", "numpy")


def record_file(prefix: str = sys.prefix) -> Path | None:
    """Where the lists for the installed versions are recorded; None when one of the packages
    they come from is not installed."""
    try:
        versions = "-".join(f"{p}-{metadata.version(p)}" for p in _PACKAGES)
    except metadata.PackageNotFoundError:
        return None
    return Path(prefix) / _DIRECTORY / f"skops-trusted-types-{versions}.json"


def recorded_lists(file: Path | None) -> dict[str, list[str]] | None:
    """The recorded lists by their name in skops, or None when there is no usable record."""
    if file is None:
        return None
    try:
        lists = json.loads(file.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(lists, dict) or not all(
        isinstance(names, list) and all(isinstance(n, str) for n in names)
        for names in lists.values()
    ):
        _logger.warning("ignoring %s: not lists of type names", file)
        return None
    return lists


def import_skops_io(prefix: str = sys.prefix) -> bool:
    """Import skops.io, with its trusted types from the record when there is one; True when
    they were not computed."""
    if "skops.io" in sys.modules:
        return False
    file = record_file(prefix)
    lists = recorded_lists(file)
    if lists is None:
        importlib.import_module("skops.io")
        return False
    replayed = types.ModuleType(_MODULE, f"replayed from {file}")
    replayed.__dict__.update(lists)
    sys.modules[_MODULE] = replayed
    try:
        importlib.import_module("skops.io")
    except ImportError as error:
        # A failed import leaves out the modules it failed in; what did load stays valid.
        _logger.warning("the recorded trusted types do not fit this skops (%s)", error)
        del sys.modules[_MODULE]
        importlib.import_module("skops.io")
        return False
    _logger.info("skops.io imported with the trusted types recorded in %s", file)
    return True


def trusted_type_lists(module: types.ModuleType) -> dict[str, list[str]]:
    """The module's lists of type names, as skops.io imports them (`..._TYPE_NAMES`)."""
    return {
        name: value
        for name, value in vars(module).items()
        if name.isupper()
        and isinstance(value, list)
        and all(isinstance(item, str) for item in value)
    }


def record(prefix: str = sys.prefix) -> Path | None:
    """Import skops.io as it is and write the lists it computed; None when skops or one of the
    packages is not installed."""
    file = record_file(prefix)
    if file is None:
        return None
    if _MODULE in sys.modules:
        raise RuntimeError("record() needs a process that has not imported skops.io yet")
    computed = importlib.import_module(_MODULE)

    file.parent.mkdir(parents=True, exist_ok=True)
    file.write_text(json.dumps(trusted_type_lists(computed), indent=0))
    return file


if __name__ == "__main__":
    written = record()
    print(f"recorded {written}" if written else "skops or scikit-learn is not installed")
