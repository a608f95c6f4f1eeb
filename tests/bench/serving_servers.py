"""Models and serving processes shared by the `batched` runtime's tests and benchmark.

Each server is a real process (tests.support.processes.ManagedProcess) on loopback:
`mlflow models serve` (MLflow's scoring server), `mlflow-operator-serve` (ours), and, for the
benchmark only, MLServer from its own virtualenv (see serving_mlserver.py).
"""

from __future__ import annotations

import http.client
import importlib.util
import os
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from tests.support.polling import eventually
from tests.support.processes import ManagedProcess, free_port

VENV_BIN = Path(sys.executable).parent


def save_iris_classifier(path: Path) -> Path:
    """LogisticRegression on iris: 4 double columns, signature and input example."""
    import mlflow.sklearn
    from mlflow.models import infer_signature
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    x, y = load_iris(return_X_y=True, as_frame=True)
    model = LogisticRegression(max_iter=500).fit(x, y)
    mlflow.sklearn.save_model(
        model, str(path), signature=infer_signature(x, model.predict(x)), input_example=x.head(2)
    )
    return path


def save_iris_tensor_classifier(path: Path) -> Path:
    """LogisticRegression on iris as float32 arrays: a tensor signature, float32 (-1, 4), the
    shape `inputs`/`instances` requests take."""
    import mlflow.sklearn
    import numpy as np
    from mlflow.models import infer_signature
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    x, y = load_iris(return_X_y=True)
    x = x.astype(np.float32)
    model = LogisticRegression(max_iter=500).fit(x, y)
    mlflow.sklearn.save_model(
        model, str(path), signature=infer_signature(x, model.predict(x)), input_example=x[:2]
    )
    return path


def save_wide_tensor_classifier(path: Path, width: int = 256) -> Path:
    """LogisticRegression on `width` random float32 features, 10 classes: the request shape of
    the GPU benchmark's MLP (one row of 256 float32 `inputs`) with a model that costs little."""
    import mlflow.sklearn
    import numpy as np
    from mlflow.models import infer_signature
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(3)
    x = rng.normal(size=(500, width)).astype(np.float32)
    y = rng.integers(0, 10, size=500)
    model = LogisticRegression(max_iter=200).fit(x, y)
    mlflow.sklearn.save_model(
        model, str(path), signature=infer_signature(x, model.predict(x)), input_example=x[:2]
    )
    return path


def save_mixed_regressor(path: Path) -> Path:
    """A pipeline over a double, a long and a string column (one-hot), predicting doubles."""
    import mlflow.sklearn
    import numpy as np
    import pandas as pd
    from mlflow.models import infer_signature
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import RandomForestRegressor
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder

    rng = np.random.default_rng(7)
    n = 300
    x = pd.DataFrame(
        {
            "size": rng.normal(50, 20, n),
            "rooms": rng.integers(1, 6, n).astype("int64"),
            "city": rng.choice(["ams", "ber", "par"], n),
        }
    )
    y = x["size"] * 3 + x["rooms"] * 10 + (x["city"] == "par") * 40 + rng.normal(0, 5, n)
    transform = ColumnTransformer(
        [("city", OneHotEncoder(handle_unknown="ignore"), ["city"])], remainder="passthrough"
    )
    model = make_pipeline(transform, RandomForestRegressor(n_estimators=20, random_state=0))
    model.fit(x, y)
    mlflow.sklearn.save_model(
        model,
        str(path),
        signature=infer_signature(x, model.predict(x)),
        input_example=x.head(2),
        skops_trusted_types=["sklearn.tree._tree.Tree"],  # we built it ourselves
    )
    return path


@dataclass
class Server:
    """A started server: its process and where it listens."""

    name: str
    process: ManagedProcess
    port: int

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.process.stop()


def script_dirs() -> list[Path]:
    """Where the console scripts (`mlflow`, `uvicorn`) of this Python's packages are.

    The virtualenv's bin, next to sys.executable; and, where the packages were installed with
    `pip install --target DIR` and are found through PYTHONPATH (no virtualenv), DIR/bin, found
    next to the installed `mlflow` package (DIR/mlflow). Each only if it exists.
    """
    found = [VENV_BIN]
    spec = importlib.util.find_spec("mlflow")  # finds the package without importing it
    if spec is not None and spec.origin:
        beside = Path(spec.origin).parents[1] / "bin"
        if beside.is_dir() and beside not in found:
            found.append(beside)
    return found


def _env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """What the servers get on top of os.environ (ManagedProcess starts from a copy of it, so
    PYTHONPATH, CUDA_VISIBLE_DEVICES and the like reach them); extra comes last and wins."""
    path = [str(d) for d in script_dirs()]
    env = {
        # `mlflow models serve` runs `uvicorn` from PATH.
        "PATH": os.pathsep.join([*path, os.environ.get("PATH", "")]),
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "DO_NOT_TRACK": "true",
    }
    env.update(extra or {})
    return env


def start_mlflow_serve(
    model_uri: str, log_dir: Path, env: Mapping[str, str] | None = None, workers: int = 1
) -> Server:
    port = free_port()
    # The console script where there is one next to this Python, else the module.
    script = VENV_BIN / "mlflow"
    command = [str(script)] if script.exists() else [sys.executable, "-m", "mlflow"]
    argv = [
        *command, "models", "serve", "-m", model_uri, "--env-manager", "local",
        "-w", str(workers), "-p", str(port), "-h", "127.0.0.1",
    ]  # fmt: skip
    process = ManagedProcess(
        f"mlflow-serve-{port}", argv, log_dir / f"mlflow-serve-{port}.log", env=_env(env)
    ).start()
    return Server("mlflow models serve", process, port)


def start_batched(
    model_uri: str,
    log_dir: Path,
    args: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
) -> Server:
    port = free_port()
    # The command a pod runs; the module directly where the package is not installed.
    script = VENV_BIN / "mlflow-operator-serve"
    command = (
        [str(script)] if script.exists() else [sys.executable, "-m", "mlflow_operator_serve.cli"]
    )
    argv = [*command, "-m", model_uri, "--host", "127.0.0.1", "--port", str(port), *args]
    process = ManagedProcess(
        f"batched-{port}", argv, log_dir / f"batched-{port}.log", env=_env(env)
    ).start()
    return Server("mlflow-operator-serve", process, port)


def ping_ok(port: int, path: str = "/ping") -> bool:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
    try:
        conn.request("GET", path)
        return conn.getresponse().status == 200
    except OSError:
        return False
    finally:
        conn.close()


def wait_ready(server: Server, timeout: float = 180.0, path: str = "/ping") -> float:
    """Block until the server answers 200 on path; return the seconds waited."""
    started = time.monotonic()
    eventually(
        lambda: ping_ok(server.port, path),
        timeout=timeout,
        what=f"{server.name} ready",
        interval=0.05,
        processes=[server.process],
    )
    return time.monotonic() - started


@dataclass(frozen=True)
class RawResponse:
    status: int
    content_type: str | None
    body: bytes


def request(
    port: int,
    method: str,
    path: str,
    *,
    body: bytes | None = None,
    content_type: str | None = None,
    timeout: float = 60.0,
    headers: Mapping[str, str] | None = None,
) -> RawResponse:
    """One HTTP request with exactly the headers given (no default Content-Type)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        sent = dict(headers or {})
        if content_type is not None:
            sent["Content-Type"] = content_type
        conn.request(method, path, body=body, headers=sent)
        response = conn.getresponse()
        return RawResponse(response.status, response.getheader("Content-Type"), response.read())
    finally:
        conn.close()
