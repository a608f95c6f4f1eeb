"""Run the command a pod declares as a local process: the test cluster's pods never run one.

Takes the container's command and plain environment from the Deployment the operator wrote,
points the server at a free loopback port, and resolves secretKeyRef variables from values the
caller passes (the test knows them; the cluster's Secret would hold the same).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tests.support.processes import ManagedProcess, free_port, http_ok, wait_until

PORT_FLAGS = ("--port", "-p")
HOST_FLAGS = ("--host", "-h")


def local_argv(command: list[str], port: int) -> list[str]:
    """The pod's command with the port replaced and the host narrowed to loopback."""
    argv = list(command)
    for i, arg in enumerate(argv[:-1]):
        if arg in PORT_FLAGS:
            argv[i + 1] = str(port)
        elif arg in HOST_FLAGS:
            argv[i + 1] = "127.0.0.1"
    return argv


def local_env(
    env: list[dict[str, Any]], secret_values: Mapping[str, str] | None = None
) -> dict[str, str]:
    """Plain values as declared; secretKeyRef values from secret_values by variable name."""
    result: dict[str, str] = {}
    for var in env:
        if "value" in var:
            result[var["name"]] = str(var["value"])
        elif secret_values and var["name"] in secret_values:
            result[var["name"]] = secret_values[var["name"]]
    return result


def start_pod_command(
    deployment: dict[str, Any],
    workdir: Path,
    *,
    secret_values: Mapping[str, str] | None = None,
    override_env: Mapping[str, str] | None = None,
    timeout: float = 120.0,
) -> tuple[ManagedProcess, str]:
    """Start the serving container's command locally; return the process and its base URL."""
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    port = free_port()
    env = local_env(container.get("env", []), secret_values)
    env["HOME"] = str(workdir)  # the pod's /tmp volume
    env["MLFLOW_ENV_ROOT"] = str(workdir / "envs")
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    env.update(override_env or {})
    process = ManagedProcess(
        name="serving-pod-command",
        argv=local_argv(container["command"], port),
        log_path=workdir / "serving.log",
        env=env,
        cwd=workdir,
    ).start()
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: http_ok(f"{url}/ping"), timeout, "serving /ping", processes=[process])
    except BaseException:
        process.stop()
        raise
    return process, url
