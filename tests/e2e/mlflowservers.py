"""Checks of a running MLflowServer's tracking server, reached from this machine through its
Service's ClusterIP, the way a user with `kubectl port-forward` or a VPN would reach it."""

from __future__ import annotations

import base64
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest

from tests.cluster.launcher import KubeCluster
from tests.e2e.kube import get_json
from tests.mlflowstack.models import ModelRegistry, TrainedVersion


@dataclass(frozen=True)
class Admin:
    username: str
    password: str

    @property
    def header(self) -> str:
        token = base64.b64encode(f"{self.username}:{self.password}".encode()).decode()
        return f"Basic {token}"


def admin_of(cluster: KubeCluster, namespace: str, server: str = "mlflow") -> Admin:
    secret = get_json(cluster, "-n", namespace, "secret", f"{server}-admin")
    data = {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}
    return Admin(data["username"], data["password"])


def tracking_url(cluster: KubeCluster, namespace: str, server: str = "mlflow") -> str:
    service = get_json(cluster, "-n", namespace, "service", server)
    return f"http://{service['spec']['clusterIP']}:{service['spec']['ports'][0]['port']}"


def http_status(url: str, headers: dict[str, str] | None = None) -> int:
    request = urllib.request.Request(url, headers=headers or {})
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(request, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as err:
        return int(err.code)


def check_auth_hosts_and_metrics(url: str, admin: Admin, service_host: str) -> None:
    """Basic auth is on; the Service's DNS name is an allowed Host, others are not; /metrics."""
    api = f"{url}/api/2.0/mlflow/experiments/search?max_results=1"
    assert http_status(api) == 401
    assert http_status(api, {"Authorization": admin.header, "Host": service_host}) == 200
    assert http_status(api, {"Authorization": admin.header, "Host": "evil.example"}) == 403
    assert http_status(f"{url}/metrics", {"Authorization": admin.header}) == 200


@contextmanager
def as_admin(monkeypatch: pytest.MonkeyPatch, admin: Admin) -> Iterator[None]:
    """MLflow's client environment of a user with the admin's credentials and no S3 keys.

    Presigned object-store URLs are declined: the store behind an in-cluster server is not
    reachable from here, only the server is.
    """
    with monkeypatch.context() as patch:
        for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "MLFLOW_S3_ENDPOINT_URL"):
            patch.delenv(key, raising=False)
        patch.setenv("MLFLOW_TRACKING_USERNAME", admin.username)
        patch.setenv("MLFLOW_TRACKING_PASSWORD", admin.password)
        patch.setenv("MLFLOW_ENABLE_PROXY_MULTIPART_DOWNLOAD", "false")
        patch.setenv("MLFLOW_ENABLE_PROXY_MULTIPART_UPLOAD", "false")
        yield


def log_and_load_a_model(url: str) -> TrainedVersion:
    """Log a real model through the server, load it back, compare predictions (call as_admin
    first). Proves the database and the object store behind the server work."""
    import mlflow.pyfunc

    from tests.mlflowstack.models import sample_input

    registry = ModelRegistry(url)
    version = registry.log_version(f"through-{uuid.uuid4().hex[:6]}")
    model = mlflow.pyfunc.load_model(version.uri)
    features = sample_input(10)
    predicted: Any = model.predict(features)
    assert [int(p) for p in predicted] == version.predict(features)
    return version


def server_pods(cluster: KubeCluster, namespace: str) -> int:
    """Tracking server pods, terminating ones included."""
    selector = "app.kubernetes.io/component=tracking-server"
    return len(get_json(cluster, "-n", namespace, "pods", "-l", selector)["items"])


@dataclass
class HealthSampler:
    """GETs the server's /health every 0.2 s on a thread; remembers when it did not answer."""

    url: str
    failures: list[float] = field(default_factory=list)
    answers: list[float] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> HealthSampler:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            at = time.monotonic()
            try:
                ok = http_status(self.url) == 200
            except OSError:  # refused, reset, timed out: not answering
                ok = False
            (self.answers if ok else self.failures).append(at)
            self._stop.wait(0.2)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def longest_outage(self) -> float:
        """Seconds from the first failure after an answer to the next answer, the longest."""
        longest, began = 0.0, None
        for at, ok in sorted(
            [(t, False) for t in self.failures] + [(t, True) for t in self.answers]
        ):
            if not ok and began is None:
                began = at
            elif ok and began is not None:
                longest, began = max(longest, at - began), None
        return longest
