"""Train and register real models in the local MLflow stack, and move them around the registry.

Every helper talks to the tracking server only (artifacts go through its proxy), the way a user
of the operator would, so no S3 keys are needed here.
"""

from __future__ import annotations

import tempfile
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import mlflow
import mlflow.pyfunc
import mlflow.sklearn
import pandas as pd
import yaml
from mlflow.entities.model_registry import ModelVersion
from mlflow.models import ModelSignature, infer_signature
from mlflow.tracking import MlflowClient
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression

EXPERIMENT = "mlflow-operator-tests"
# a strongly regularised model: predicts differently from the default (C=1.0) on 15 of the
# 150 iris rows, so a test can tell which version a server is serving
DIFFERENT_C = 0.01
# log_failing_version: a version that fails some requests and answers the rest with this class
FAILS_ABOVE = 7.5
FAILING_CLASS = 7
FAILING_MODEL = """
import mlflow


class FailsSome(mlflow.pyfunc.PythonModel):
    def predict(self, context, model_input, params=None):
        if (model_input.iloc[:, 0] > {above}).any():
            raise ValueError("this version cannot score a sepal length above {above}")
        return [7] * len(model_input)


mlflow.models.set_model(FailsSome())
"""


class ConstantModel(mlflow.pyfunc.PythonModel):  # type: ignore[misc]  (mlflow is untyped)
    """A custom model MLflow cloudpickles (log_edited_version(custom=True))."""

    def predict(
        self, context: object, model_input: pd.DataFrame, params: object = None
    ) -> list[int]:
        return [0] * len(model_input)


def iris() -> tuple[pd.DataFrame, pd.Series]:
    """The iris data set that ships with scikit-learn: 4 float columns, 3 classes."""
    features, target = load_iris(return_X_y=True, as_frame=True)
    return features, target


def sample_input(rows: int = 10) -> pd.DataFrame:
    """Rows spread over all three classes (iris is sorted by class)."""
    features, _ = iris()
    return features.iloc[:: max(1, len(features) // rows)].head(rows)


def pip_requirements() -> list[str]:
    """The sklearn flavor's own requirement list (pinned to the installed versions).

    Given explicitly, so that log_model skips requirement inference, which loads the model in
    a subprocess and costs ~10 s per logged version on a busy 2-core machine (0.7 s without).
    """
    return mlflow.sklearn.get_default_pip_requirements(include_skops=True)


def train(c: float = 1.0) -> LogisticRegression:
    features, target = iris()
    return LogisticRegression(C=c, max_iter=1000).fit(features, target)


@dataclass
class TrainedVersion:
    """A registered model version and the model object it was logged from."""

    name: str
    version: str
    model: LogisticRegression
    run_id: str

    @property
    def uri(self) -> str:
        return f"models:/{self.name}/{self.version}"

    def predict(self, features: pd.DataFrame | None = None) -> list[int]:
        """Predictions of the in-memory model, to compare with what a server answers."""
        return [
            int(p) for p in self.model.predict(sample_input() if features is None else features)
        ]


class ModelRegistry:
    """Registry helpers bound to one tracking server."""

    def __init__(self, tracking_uri: str) -> None:
        self.tracking_uri = tracking_uri
        self.client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)

    def _use_server(self) -> None:
        # mlflow.sklearn.log_model and start_run only know the global tracking URI
        mlflow.set_tracking_uri(self.tracking_uri)
        mlflow.set_registry_uri(self.tracking_uri)
        mlflow.set_experiment(EXPERIMENT)

    def log_version(
        self, name: str, c: float = 1.0, tags: dict[str, str] | None = None
    ) -> TrainedVersion:
        """Train on iris, log with signature and input example, register as a new version."""
        self._use_server()
        model = train(c)
        example = sample_input(5)
        signature = infer_signature(example, model.predict(example))
        with mlflow.start_run() as run:
            mlflow.log_param("C", c)
            info = mlflow.sklearn.log_model(
                model,
                name="model",
                signature=signature,
                input_example=example,
                registered_model_name=name,
                pip_requirements=pip_requirements(),
            )
        version = str(info.registered_model_version)
        for key, value in (tags or {}).items():
            self.tag_version(name, version, key, value)
        return TrainedVersion(name, version, model, run.info.run_id)

    def log_broken_version(self, name: str) -> str:
        """Register a version whose artifacts exist but cannot be loaded (the model file is junk).

        Its MLmodel, signature and environment files are real; loading or serving it fails the
        way a bad upload or an incompatible pickle would.
        """

        def junk_model_file(local: Path) -> None:
            mlmodel = yaml.safe_load((local / "MLmodel").read_text())
            model_file = mlmodel["flavors"]["python_function"]["model_path"]
            (local / model_file).write_bytes(b"this is not a serialized model\n")

        return self.log_edited_version(name, junk_model_file)

    def log_edited_version(
        self, name: str, edit: Callable[[Path], None], *, custom: bool = False
    ) -> str:
        """Register a version that MLflow saved (iris, signature, input example, requirements)
        and `edit` then changed on disk before the upload: a requirement the serving image
        lacks, a flavor taken out, junk in place of a file. `custom`: a cloudpickled
        PythonModel (ConstantModel) instead of the sklearn model."""
        self._use_server()
        model = train()
        example = sample_input(5)
        signature = infer_signature(example, model.predict(example))
        with tempfile.TemporaryDirectory() as tmp, mlflow.start_run() as run:
            local = Path(tmp) / "model"
            if custom:
                mlflow.pyfunc.save_model(
                    local, python_model=ConstantModel(), signature=signature,
                    pip_requirements=pip_requirements(),
                )  # fmt: skip
            else:
                mlflow.sklearn.save_model(
                    model, local, input_example=example, signature=signature,
                    pip_requirements=pip_requirements(),
                )  # fmt: skip
            edit(local)
            mlflow.log_artifacts(str(local), artifact_path="model")
            source = f"{run.info.artifact_uri}/model"
        self._ensure_registered(name)
        version = self.client.create_model_version(name, source, run_id=run.info.run_id)
        return str(version.version)

    def register_source(self, name: str, source: str) -> str:
        """Register a version whose source is `source` as given (MLflow does not check that
        anything is there)."""
        self._ensure_registered(name)
        return str(self.client.create_model_version(name, source).version)

    def register_empty_run(self, name: str) -> str:
        """Register a version whose source is a path of a run under which nothing was logged
        (MLflow takes proxied sources only with their run, and does not look inside)."""
        self._use_server()
        with mlflow.start_run() as run:
            source = f"{run.info.artifact_uri}/model"
        self._ensure_registered(name)
        version = self.client.create_model_version(name, source, run_id=run.info.run_id)
        return str(version.version)

    def log_failing_version(self, name: str, above: float = FAILS_ABOVE) -> str:
        """Register a version that loads and answers, but fails every request with a first
        feature (sepal length) above `above`, and predicts class 7 for the others: a bad
        release that only some inputs reveal (a canary must catch it). Logged as "models from
        code", so the serving pods need nothing of the tests to load it."""
        example = sample_input(5)
        return self.log_code_version(
            name,
            FAILING_MODEL.format(above=above),
            signature=infer_signature(example, [FAILING_CLASS] * len(example)),
            input_example=example,
        )

    def log_code_version(
        self,
        name: str,
        code: str,
        *,
        artifacts: dict[str, str] | None = None,
        signature: ModelSignature | None = None,
        input_example: pd.DataFrame | None = None,
        requirements: list[str] | None = None,
    ) -> str:
        """Register a "models from code" pyfunc version whose source is `code` (it calls
        mlflow.models.set_model), with `artifacts` (name -> local file) logged beside it, and
        `requirements` (else the sklearn flavor's) as its requirements.txt."""
        self._use_server()
        with tempfile.TemporaryDirectory() as tmp, mlflow.start_run():
            path = Path(tmp) / "code_model.py"
            path.write_text(code)
            info = mlflow.pyfunc.log_model(
                name="model",
                python_model=str(path),
                artifacts=artifacts,
                signature=signature,
                input_example=input_example,
                registered_model_name=name,
                pip_requirements=pip_requirements() if requirements is None else requirements,
            )
        return str(info.registered_model_version)

    def _ensure_registered(self, name: str) -> None:
        if not self.client.search_registered_models(filter_string=f"name = '{name}'"):
            self.client.create_registered_model(name)

    def set_alias(self, name: str, alias: str, version: str) -> None:
        """Point alias at version (moving it if it pointed elsewhere)."""
        self.client.set_registered_model_alias(name, alias, version)

    def delete_alias(self, name: str, alias: str) -> None:
        self.client.delete_registered_model_alias(name, alias)

    def transition_stage(
        self, name: str, version: str, stage: str, archive_existing: bool = False
    ) -> ModelVersion:
        """Move version to stage (None/Staging/Production/Archived)."""
        with warnings.catch_warnings():
            # stages are deprecated since MLflow 2.9 but still served; the operator supports them
            warnings.simplefilter("ignore", FutureWarning)
            return self.client.transition_model_version_stage(
                name, version, stage, archive_existing_versions=archive_existing
            )

    def tag_version(self, name: str, version: str, key: str, value: str) -> None:
        self.client.set_model_version_tag(name, version, key, value)

    def delete_version_tag(self, name: str, version: str, key: str) -> None:
        self.client.delete_model_version_tag(name, version, key)

    def tag_model(self, name: str, key: str, value: str) -> None:
        self.client.set_registered_model_tag(name, key, value)

    def get_version(self, name: str, version: str) -> ModelVersion:
        return self.client.get_model_version(name, version)

    def delete_model(self, name: str) -> None:
        self.client.delete_registered_model(name)
