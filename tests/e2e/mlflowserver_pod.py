"""Run an MLflowServer's declared pods (migration Job, tracking server) as local processes.

The test cluster runs no containers, so this is how the tests prove that what the operator
writes is a working MLflow: the containers' command, arguments and environment are resolved
the way the kubelet would (secretKeyRefs read from the Secrets, `$(VAR)` expanded) and started
against the local PostgreSQL and MinIO. What differs from a pod, and only that: the port
(5000 may be taken here) and the paths of mounted volumes (the auth ConfigMap's file and the
Prometheus directory).
"""

from __future__ import annotations

import base64
import re
import shutil
import sys
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.support.processes import ManagedProcess, free_port, http_ok, wait_until

AUTH_DIR = "/etc/mlflow/auth"
PROMETHEUS_DIR = "/prometheus"


@dataclass(frozen=True)
class DeclaredPod:
    deployment: dict[str, Any]
    migration_job: dict[str, Any]
    auth_ini: str
    secrets: dict[str, dict[str, str]]
    """Secret name -> key -> decoded value, for resolving secretKeyRefs."""
    service_host: str
    """Host header of the in-cluster Service, e.g. mlflow.ns.svc:5000."""


def run_declared_server(pod: DeclaredPod, workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Migrate, start the server, check auth/hosts/metrics, log and serve a real model."""
    from tests.mlflowstack import serving
    from tests.mlflowstack.models import ModelRegistry, sample_input

    (workdir / "auth").mkdir(parents=True)
    (workdir / "auth" / "basic_auth.ini").write_text(pod.auth_ini)
    (workdir / "prometheus").mkdir()
    mounts = {AUTH_DIR: str(workdir / "auth"), PROMETHEUS_DIR: str(workdir / "prometheus")}

    job_pod = pod.migration_job["spec"]["template"]["spec"]
    for step in [*job_pod.get("initContainers", []), *job_pod["containers"]]:
        argv, env = local_process(step, pod.secrets, mounts)
        process = ManagedProcess(
            name=step["name"], argv=argv, log_path=workdir / f"{step['name']}.log", env=env
        ).start()
        assert process.popen is not None
        assert process.popen.wait(timeout=300) == 0, process.log_tail()

    (container,) = pod.deployment["spec"]["template"]["spec"]["containers"]
    port = free_port()
    argv, env = local_process(container, pod.secrets, mounts)
    argv[argv.index("--port") + 1] = str(port)
    server = ManagedProcess(
        name="declared-mlflow-server", argv=argv, log_path=workdir / "server.log", env=env
    ).start()
    admin_ref = _secret_ref(container, "MLFLOW_AUTH_ADMIN_PASSWORD")
    admin = pod.secrets[admin_ref[0]]
    try:
        url = f"http://127.0.0.1:{port}"
        wait_until(lambda: http_ok(f"{url}/health"), 120, "declared server /health", 0.5, [server])
        auth = (
            "Basic "
            + base64.b64encode(f"{admin['username']}:{admin['password']}".encode()).decode()
        )
        api = f"{url}/api/2.0/mlflow/experiments/search?max_results=1"
        # basic auth is on; the Service's DNS name is an allowed Host, others are not
        assert http_status(api) == 401
        assert http_status(api, {"Authorization": auth, "Host": pod.service_host}) == 200
        assert http_status(api, {"Authorization": auth, "Host": "evil.example"}) == 403
        assert http_status(f"{url}/metrics", {"Authorization": auth}) == 200

        # a real model, logged and served through the server; the clients have no S3 keys
        for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "MLFLOW_S3_ENDPOINT_URL"):
            monkeypatch.delenv(key, raising=False)
        credentials = {
            "MLFLOW_TRACKING_USERNAME": admin["username"],
            "MLFLOW_TRACKING_PASSWORD": admin["password"],
        }
        for key, value in credentials.items():
            monkeypatch.setenv(key, value)
        version = ModelRegistry(url).log_version(f"declared-{uuid.uuid4().hex[:6]}")
        scoring = serving.start(version.uri, url, workdir, env=credentials)
        try:
            scoring.wait_ready()
            features = sample_input(10)
            assert scoring.predict(features) == version.predict(features)
        finally:
            scoring.stop()
    finally:
        server.stop()
    log = (workdir / "server.log").read_text(errors="replace")
    for secret in pod.secrets.values():
        for key, value in secret.items():
            if key != "username" and len(value) >= 8:
                assert value not in log, "a Secret value in the server's log"


def local_process(
    container: dict[str, Any], secrets: dict[str, dict[str, str]], mounts: dict[str, str]
) -> tuple[list[str], dict[str, str]]:
    """argv and environment of a container, resolved as the kubelet would."""
    env: dict[str, str] = {}
    for var in container.get("env", []):
        if "valueFrom" in var:
            ref = var["valueFrom"]["secretKeyRef"]
            env[var["name"]] = secrets[ref["name"]][ref["key"]]
        else:
            env[var["name"]] = _remap(_expand(var.get("value", ""), env), mounts)
    command = list(container["command"])
    executables = {"mlflow": [sys.executable, "-m", "mlflow"], "python": [sys.executable]}
    argv = executables.get(command[0], command[:1]) + command[1:]
    argv += [_remap(_expand(arg, env), mounts) for arg in container.get("args", [])]
    assert shutil.which(argv[0]) or Path(argv[0]).exists()
    return argv, env


def http_status(url: str, headers: dict[str, str] | None = None) -> int:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as err:
        return int(err.code)


def _secret_ref(container: dict[str, Any], name: str) -> tuple[str, str]:
    var = next(e for e in container["env"] if e["name"] == name)
    ref = var["valueFrom"]["secretKeyRef"]
    return ref["name"], ref["key"]


def _expand(text: str, env: dict[str, str]) -> str:
    return re.sub(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", lambda m: env.get(m[1], m[0]), text)


def _remap(text: str, mounts: dict[str, str]) -> str:
    for pod_path, local in mounts.items():
        if text == pod_path or text.startswith(pod_path + "/"):
            return local + text[len(pod_path) :]
    return text
