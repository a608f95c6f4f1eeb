"""MLServer (with mlserver-mlflow) for the serving benchmark, in a virtualenv of its own.

MLServer 1.7.1 pins fastapi<0.116 while MLflow 3 brings a newer one, so it cannot share the
project's environment. The venv is built once under the cache directory, keyed by versions.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.bench.serving_servers import Server, free_port
from tests.support.cache import cache_root
from tests.support.processes import ManagedProcess

MLSERVER = "1.7.1"
PACKAGES = [
    f"mlserver=={MLSERVER}",
    f"mlserver-mlflow=={MLSERVER}",
    "mlflow==3.17.2",
    # uvloop 0.22 dropped the implicit loop of get_event_loop(), which MLServer's inference
    # pool workers still call at start ("There is no current event loop").
    "uvloop<0.22",
]


def mlserver_venv() -> Path:
    """The virtualenv with MLServer, built on first use (needs the package index once)."""
    import pandas
    import sklearn
    import skops

    # Same model-loading libraries as ours, so that every server loads the same model.
    pins = [
        f"scikit-learn=={sklearn.__version__}",
        f"skops=={skops.__version__}",
        f"pandas=={pandas.__version__}",
    ]
    venv = cache_root() / "bench-venvs" / f"mlserver-{MLSERVER}"
    if not (venv / "bin" / "mlserver").exists():
        base_python = Path(sys.base_prefix) / "bin" / "python3"
        subprocess.run([str(base_python), "-m", "venv", str(venv)], check=True)
        subprocess.run([str(venv / "bin" / "pip"), "install", "-q", *PACKAGES, *pins], check=True)
    return venv


def start_mlserver(model_dir: Path, workdir: Path, batching: bool) -> Server:
    """MLServer serving the model as `iris`; with batching, MLServer's adaptive batcher
    (max_batch_size 16, max_batch_time 5 ms, as measured in the research notes)."""
    venv = mlserver_venv()
    port = free_port()
    config = workdir / f"mlserver-{port}"
    config.mkdir(parents=True)
    (config / "settings.json").write_text(
        json.dumps(
            {
                "http_port": port,
                "grpc_port": free_port(),
                "metrics_port": free_port(),
                "debug": False,
            }
        )
    )
    model_settings: dict[str, object] = {
        "name": "iris",
        "implementation": "mlserver_mlflow.MLflowRuntime",
        "parameters": {"uri": str(model_dir)},
    }
    if batching:
        model_settings.update({"max_batch_size": 16, "max_batch_time": 0.005})
    (config / "model-settings.json").write_text(json.dumps(model_settings))
    process = ManagedProcess(
        f"mlserver-{port}",
        [str(venv / "bin" / "mlserver"), "start", str(config)],
        workdir / f"mlserver-{port}.log",
        env={"PATH": f"{venv / 'bin'}:/usr/bin:/bin", "MLFLOW_DISABLE_TELEMETRY": "true"},
    ).start()
    name = "MLServer V2, adaptive batching" if batching else "MLServer V2, no batching"
    return Server(name, process, port)


def v2_body(columns: list[str], row: list[float]) -> bytes:
    """One row as an Open Inference Protocol request, one named FP64 input per column."""
    inputs = [
        {"name": name, "shape": [1], "datatype": "FP64", "data": [value]}
        for name, value in zip(columns, row, strict=True)
    ]
    return json.dumps({"inputs": inputs}).encode()
