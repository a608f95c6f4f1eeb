"""Getting the model ready: download once, import its flavor, load it, warm it up."""

from __future__ import annotations

import contextlib
import importlib
import json
import logging
import os
import re
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlflow_operator_serve import skops_trusted_types
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


def import_flavor(model_dir: Path) -> None:
    """Import the model's loader module (mlflow.sklearn, ...) and what it imports lazily.

    Done before the model load, and in the parent before forking workers, so that each worker
    starts with the imports already made and the model load is all that is left to it. The
    model itself is not loaded here: a model that starts threads or a CUDA context when loaded
    does not survive a fork.
    """
    from mlflow.models import Model

    flavor = Model.load(str(model_dir)).flavors.get("python_function", {})
    loader = str(flavor.get("loader_module") or "")
    if not loader:
        return
    with _not_importable(_TRAINING_ONLY_IMPORTS.get(loader, ())):
        importlib.import_module(loader)
    if loader == "mlflow.sklearn":
        # imported lazily by the loader, and the longest import of all: skops.io walks every
        # scikit-learn module, unless the image recorded what the walk finds
        try:
            skops_trusted_types.import_skops_io()
        except ImportError:  # e.g. a pickled sklearn model without skops installed
            _logger.debug("could not pre-import skops.io")


# What a flavor's module imports when installed only to offer a training-time extra, and which
# serving never uses: mlflow.pytorch imports pytorch_lightning for its autolog checkpoint
# callback. On the H100 machine's image (pytorch-lightning 2.6 installed) `import mlflow.pytorch`
# took 6.8 s of `batched`'s 9.9 s start (docs/serving.md).
_TRAINING_ONLY_IMPORTS: dict[str, tuple[str, ...]] = {"mlflow.pytorch": ("pytorch_lightning",)}


@contextlib.contextmanager
def _not_importable(modules: Iterable[str]) -> Iterator[None]:
    """Importing `modules` fails inside (a None in sys.modules makes `import` raise
    ModuleNotFoundError, which the flavors catch), unless one is imported already. After it
    they import as usual: a pickled LightningModule still imports pytorch_lightning when
    loaded."""
    blocked = [name for name in modules if name not in sys.modules]
    for name in blocked:
        sys.modules[name] = None  # type: ignore[assignment]
    try:
        yield
    finally:
        for name in blocked:
            if name in sys.modules and sys.modules[name] is None:
                del sys.modules[name]


def load_pyfunc(model_dir: Path) -> object:
    """The pyfunc model, with SERVING_MODEL_CONFIG applied as MLflow's server does.

    Two differences. MLflow's load-time warnings (the model's requirements and Python version
    against this environment) are left to `warn_about_environment`, which the server runs once
    it answers. And a PyTorch model saved as `pt2` (MLflow 3's default) on one device and
    served on another - exported on a CPU machine, served on a GPU - is moved to the serving
    device, where MLflow refuses to load it at all (`mlflow models serve` crash-loops).
    """
    import mlflow.pyfunc
    from mlflow.environment_variables import _MLFLOW_IS_IN_SERVING_ENVIRONMENT
    from mlflow.exceptions import MlflowException
    from mlflow.pyfunc import scoring_server

    os.environ[_MLFLOW_IS_IN_SERVING_ENVIRONMENT.name] = "true"
    # as scoring_server.load_model_with_mlflow_config, which cannot leave the warnings out
    config = os.environ.get(scoring_server.SERVING_MODEL_CONFIG)
    options: dict[str, Any] = {"model_config": json.loads(config)} if config else {}
    try:
        return mlflow.pyfunc.load_model(str(model_dir), suppress_warnings=True, **options)
    except MlflowException:
        exported = _exported_program(model_dir)
        if exported is None:
            raise
        device = _pytorch_device(os.environ.get(scoring_server.SERVING_MODEL_CONFIG))
        _logger.warning(
            "%s was exported by torch.export for another device than %s, which MLflow refuses "
            "to load; moving it to %s (torch.export.passes.move_to_device_pass)",
            exported, device, device,
        )  # fmt: skip
        return _load_exported_on(model_dir, exported, device)


def warn_about_environment(model_dir: Path) -> None:
    """MLflow's load-time warnings: the model's pip requirements that the installed packages
    do not satisfy, and a Python version other than the one that saved it.

    `mlflow.pyfunc.load_model` logs them before loading; we log them after the server answers,
    because finding out which distribution provides which module reads every installed
    package's metadata: 0.23-0.27 s of a start on the 2-core machine (docs/serving.md). Only
    warnings: whatever goes wrong here is logged and serving goes on.
    """
    try:
        from mlflow.models import Model
        from mlflow.utils.requirements_utils import warn_dependency_requirement_mismatches

        pyfunc: Any = importlib.import_module("mlflow.pyfunc")  # what load_model calls, untyped
        warn_dependency_requirement_mismatches(
            pyfunc._get_pip_requirements_from_model_path(str(model_dir))
        )
        flavor = Model.load(str(model_dir)).flavors.get("python_function", {})
        pyfunc._warn_potentially_incompatible_py_version_if_necessary(flavor.get("python_version"))
    except Exception:  # a check of MLflow's internals must never stop a serving process
        _logger.warning(
            "could not compare the model's requirements with this environment", exc_info=True
        )


def _exported_program(model_dir: Path) -> Path | None:
    """The `model.pt2` of a model of MLflow's pytorch flavor saved as `pt2`, if it is one."""
    from mlflow.models import Model

    flavor = Model.load(str(model_dir)).flavors.get("pytorch")
    if not flavor:
        return None
    path = model_dir / str(flavor.get("model_data", "data")) / "model.pt2"
    return path if path.is_file() else None


def _pytorch_device(model_config_json: str | None) -> str:
    """The device MLflow's pytorch loader aims at: the model config's, the env's, else CUDA
    when there is one (`mlflow.pytorch._load_pyfunc`)."""
    from mlflow import environment_variables

    torch: Any = importlib.import_module("torch")  # only in serving images that have it
    config = json.loads(model_config_json) if model_config_json else {}
    variables: Any = environment_variables  # untyped in MLflow
    device = config.get("device") or variables.MLFLOW_DEFAULT_PREDICTION_DEVICE.get()
    if device:
        return str(device)
    return "cuda" if torch.cuda.is_available() else "cpu"


def _load_exported_on(model_dir: Path, exported: Path, device: str) -> object:
    """The pt2 program moved to `device`, wrapped as MLflow's pytorch pyfunc wraps it.

    MLflow already checked the archive before refusing it: it validates that a pt2 archive is
    free of pickle payloads before it loads it, and compares devices only after.
    """
    from mlflow.models import Model
    from mlflow.pyfunc import PyFuncModel

    torch: Any = importlib.import_module("torch")
    passes: Any = importlib.import_module("torch.export.passes")
    pytorch_flavor: Any = importlib.import_module("mlflow.pytorch")
    program = passes.move_to_device_pass(torch.export.load(str(exported)), device)
    metadata = Model.load(str(model_dir))
    # the wrapper class MLflow's own loader returns (mlflow.pytorch._load_pyfunc)
    wrapper = pytorch_flavor._PyTorchWrapper(program.module(), device=device)
    return PyFuncModel(model_meta=metadata, model_impl=wrapper, model_id=metadata.model_id)


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
