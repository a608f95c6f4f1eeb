"""Getting the model ready: download once, import its flavor, load it, warm it up."""

from __future__ import annotations

import importlib
import logging
import os
import re
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlflow_operator_serve.settings import ServeSettings

_logger = logging.getLogger(__name__)

_MODELS_URI = re.compile(r"^models:/(?P<name>[^/@]+)(?:/(?P<version>[^/]+)|@(?P<alias>[^/]+))?/?$")


@dataclass(frozen=True)
class ModelIdentity:
    """Model name and version, for metric labels and logs."""

    name: str
    version: str


def identify(model_uri: str) -> ModelIdentity:
    """`models:/fraud/8` -> fraud, 8; a path -> its directory name, version ""."""
    if match := _MODELS_URI.match(model_uri):
        return ModelIdentity(match["name"], match["version"] or match["alias"] or "")
    return ModelIdentity(Path(model_uri.removeprefix("file://")).name, "")


def local_model_dir(settings: ServeSettings) -> Path:
    """The model's files on local disk, downloaded once if the URI is remote.

    `mlflow.pyfunc.load_model` of a `models:/` URI downloads to a temporary directory it then
    forgets; we download ourselves so that the parent and every worker load from one copy and
    the serving input example can be read from it.
    """
    uri = settings.model_uri
    local = Path(uri.removeprefix("file://"))
    if local.exists():
        return local
    import mlflow.artifacts

    destination = settings.download_dir or tempfile.mkdtemp(prefix="mlflow-model-")
    os.makedirs(destination, exist_ok=True)
    started = _now()
    path = Path(mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=destination))
    _logger.info("downloaded %s to %s in %.2fs", uri, path, _now() - started)
    return path


# Modules a loader imports only when it loads a model, and that take seconds to import:
# skops.io walks every scikit-learn estimator module to build its list of trusted types.
# None of them starts threads or touches a GPU on import, so they are safe to import before
# forking.
LAZY_LOADER_IMPORTS: dict[str, tuple[str, ...]] = {
    "mlflow.sklearn": ("skops.io",),
}


def import_flavor(model_dir: Path) -> None:
    """Import the model's loader module (mlflow.sklearn, ...) and what it imports lazily.

    Done in the parent before forking workers, so that each worker starts with the imports
    already made and the model load is all that is left to it. The model itself is not
    loaded here: a model that starts threads or a CUDA context when loaded does not survive
    a fork.
    """
    from mlflow.models import Model

    flavor = Model.load(str(model_dir)).flavors.get("python_function", {})
    loader = str(flavor.get("loader_module") or "")
    if not loader:
        return
    importlib.import_module(loader)
    for module in LAZY_LOADER_IMPORTS.get(loader, ()):
        try:
            importlib.import_module(module)
        except ImportError:  # e.g. a pickled sklearn model without skops installed
            _logger.debug("could not pre-import %s", module)


def load_pyfunc(model_dir: Path) -> object:
    """The pyfunc model, with SERVING_MODEL_CONFIG applied as MLflow's server does."""
    from mlflow.environment_variables import _MLFLOW_IS_IN_SERVING_ENVIRONMENT
    from mlflow.pyfunc import scoring_server

    os.environ[_MLFLOW_IS_IN_SERVING_ENVIRONMENT.name] = "true"
    load: Any = scoring_server.load_model_with_mlflow_config  # untyped in MLflow
    return load(str(model_dir))


def serving_input_example(model_dir: Path, model: object) -> str | None:
    """The JSON request body logged with the model (`serving_input_example.json`), if any."""
    metadata = getattr(model, "metadata", None)
    if metadata is None:
        return None
    try:
        example = metadata.get_serving_input(str(model_dir))
    except Exception:  # a broken example must not stop the server
        _logger.warning("could not read the serving input example", exc_info=True)
        return None
    return str(example) if example is not None else None


def _now() -> float:
    return time.perf_counter()
