"""The run that logged a registered model version: where the serving runtime writes what it
learns about the version (prediction samples, the drift reference) and reads what was logged
with it (a reference dataset)."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any


class VersionRun:
    """The artifacts of the run behind `model` / `version` (a number or an alias), found on
    first use with the process's MLflow settings (MLFLOW_TRACKING_URI and credentials).

    `writes_to`: another run that uploads go to, and that downloads look in first. The
    operator gives pods whose MLflow user may not write to the version's run (serverRef with
    basic auth) a run of their ModelDeployment's monitoring experiment."""

    def __init__(self, model: str, version: str, writes_to: str | None = None) -> None:
        self._model, self._version = model, version
        self._writes_to = writes_to
        self._run_id: str | None = None
        self._client_: Any = None
        self._lock = threading.Lock()

    def _resolved(self) -> tuple[Any, str]:
        client = self._client()
        with self._lock:
            if self._run_id is None:
                found = (
                    client.get_model_version(self._model, self._version)
                    if self._version.isdigit()
                    else client.get_model_version_by_alias(self._model, self._version)
                )
                if not found.run_id:
                    raise LookupError(
                        f"model {self._model} version {self._version} was not logged by a run"
                    )
                self._run_id = str(found.run_id)
            return client, self._run_id

    def _client(self) -> Any:
        with self._lock:
            if self._client_ is None:
                from mlflow import MlflowClient

                self._client_ = MlflowClient()
            return self._client_

    def upload(self, path: Path, artifact_dir: str) -> None:
        if self._writes_to is not None:
            self._client().log_artifact(self._writes_to, str(path), artifact_dir)
            return
        client, run_id = self._resolved()
        client.log_artifact(run_id, str(path), artifact_dir)

    def download(self, artifact_path: str, into: Path) -> Path | None:
        """The artifact as a local file, None when neither run has it; other failures (MLflow
        unreachable, no permission) raise."""
        if self._writes_to is not None:
            found = _download(self._client(), self._writes_to, artifact_path, into)
            if found is not None:
                return found
        client, run_id = self._resolved()
        return _download(client, run_id, artifact_path, into)


def _download(client: Any, run_id: str, artifact_path: str, into: Path) -> Path | None:
    parent = artifact_path.rpartition("/")[0]
    listed = client.list_artifacts(run_id, parent or None)
    if not any(info.path == artifact_path and not info.is_dir for info in listed):
        return None
    return Path(client.download_artifacts(run_id, artifact_path, str(into)))
