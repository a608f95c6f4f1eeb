"""`mlflow models serve` as a local process: what a serving pod runs, with real predictions."""

from __future__ import annotations

import json
import os
import sys
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from tests.support.polling import eventually
from tests.support.processes import ManagedProcess, free_port, http_ok

READY_TIMEOUT_S = 120.0


@dataclass
class ScoringServer:
    process: ManagedProcess
    url: str

    def ready(self) -> bool:
        return http_ok(f"{self.url}/ping")

    def wait_ready(self, timeout: float = READY_TIMEOUT_S) -> None:
        eventually(
            self.ready,
            timeout=timeout,
            what=f"{self.process.name} /ping",
            interval=0.1,
            processes=[self.process],
        )

    def predict(self, features: pd.DataFrame, timeout: float = 30.0) -> list[int]:
        """POST /invocations with a dataframe_split body; the predictions it answers."""
        body = json.dumps({"dataframe_split": features.to_dict(orient="split")}).encode()
        request = urllib.request.Request(
            f"{self.url}/invocations", data=body, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=timeout) as resp:
            return [int(p) for p in json.load(resp)["predictions"]]

    def stop(self) -> None:
        self.process.stop()


def start(
    model_uri: str,
    tracking_uri: str,
    workdir: Path,
    name: str = "model-server",
    env: dict[str, str] | None = None,
) -> ScoringServer:
    """Start `mlflow models serve` for model_uri; it fetches the model from the tracking server.

    Only MLFLOW_TRACKING_URI (plus whatever env adds, e.g. MLFLOW_TRACKING_USERNAME) is given:
    artifacts come through the server's proxy, as in a pod without S3 credentials.
    Does not wait: call wait_ready(), so that a test can time it or expect it to fail.
    """
    port = free_port()
    process = ManagedProcess(
        name=name,
        argv=[
            sys.executable,
            "-m",
            "mlflow",
            "models",
            "serve",
            "-m",
            model_uri,
            "--env-manager",
            "local",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
        ],
        log_path=workdir / "logs" / f"{name}.log",
        env={
            "MLFLOW_TRACKING_URI": tracking_uri,
            # the CLI execs `uvicorn` by name: the venv's bin must be on PATH even when the
            # tests run as .venv/bin/python without an activated venv
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
            "PYTHONUNBUFFERED": "1",
            **(env or {}),
        },
        cwd=workdir,
    ).start()
    return ScoringServer(process, f"http://127.0.0.1:{port}")
