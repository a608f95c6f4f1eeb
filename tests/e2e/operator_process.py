"""The operator as users run it: `mlflow-operator run` as its own process, on the test cluster."""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import sys
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from mlflow_operator.image_contents import SERVING_IMAGE_CPU, contents_of_locks
from tests.cluster.launcher import KubeCluster
from tests.e2e import model_cache
from tests.images.base import PYTHON_VERSION
from tests.images.locks import LOCKS
from tests.support.polling import eventually
from tests.support.processes import ManagedProcess, free_port, http_ok, tail


def local_images_env(cluster: KubeCluster) -> dict[str, str]:
    """Operator settings that make its default images the ones built here and loaded into the
    real node (there is no registry to pull the published ones from)."""
    if cluster.node is None:
        return {}
    images = cluster.node.images
    # what the serving image built here has installed, as the operator image's build writes
    # it for the published ones (Dockerfile): its lock, on the stand-in base image's Python
    contents = cluster.kubeconfig.parent / "serving-images.json"
    locks = {SERVING_IMAGE_CPU: LOCKS / f"{SERVING_IMAGE_CPU}.txt"}
    # atomically: the other pytest process of a shared cluster may be starting an operator
    partial = contents.with_name(f"{contents.name}.{os.getpid()}")
    partial.write_text(json.dumps(contents_of_locks(locks, PYTHON_VERSION)))
    partial.replace(contents)
    return {
        "MLFLOW_OPERATOR_SERVING_IMAGE_CPU": images["serving-cpu"],
        "MLFLOW_OPERATOR_SERVING_IMAGE_CONTENTS": str(contents),
        "MLFLOW_OPERATOR_TRACKING_SERVER_IMAGE": images["mlflow-server"],
        "MLFLOW_OPERATOR_POSTGRES_IMAGE": images["postgres"],
        "MLFLOW_OPERATOR_MINIO_IMAGE": images["minio"],
        # the chart's model cache, where tests/e2e/model_cache.py installs it (serving.cache)
        **model_cache.operator_settings(),
        # the address at which the node's kube-proxy reaches this machine: the activator of
        # ModelDeployments scaled to zero (the operator runs here, not in a pod)
        "MLFLOW_OPERATOR_ACTIVATOR_ADDRESS": cluster.node.host_ip,
    }


@dataclass
class OperatorProcess:
    kubeconfig: Path
    workdir: Path
    extra_env: dict[str, str] = field(default_factory=dict)
    # Empty: --all-namespaces. Else `-n NS` each (as the chart's watchNamespaces does).
    namespaces: tuple[str, ...] = ()
    webhook_secret: str = field(default_factory=lambda: secrets.token_hex(16))
    metrics_port: int = field(default_factory=free_port)
    health_port: int = field(default_factory=free_port)
    webhook_port: int = field(default_factory=free_port)
    activator_port: int = field(default_factory=free_port)
    process: ManagedProcess | None = None
    starts: int = 0

    @property
    def log_path(self) -> Path:
        return self.workdir / "operator.log"

    @property
    def webhook_url(self) -> str:
        return f"http://127.0.0.1:{self.webhook_port}/webhooks/mlflow"

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}/metrics"

    def start(self, *, ready: bool = True) -> OperatorProcess:
        """Start it; wait until /readyz (it acts, or stands by behind a replica that acts),
        or with ready=False only until /healthz (alive: an install that refuses to act)."""
        self.starts += 1
        env = {
            "KUBECONFIG": str(self.kubeconfig),
            "MLFLOW_OPERATOR_WEBHOOK_SECRET": self.webhook_secret,
            "MLFLOW_OPERATOR_METRICS_PORT": str(self.metrics_port),
            "MLFLOW_OPERATOR_HEALTH_PORT": str(self.health_port),
            "MLFLOW_OPERATOR_WEBHOOK_PORT": str(self.webhook_port),
            "MLFLOW_OPERATOR_ACTIVATOR_PORT": str(self.activator_port),
            "PYTHONUNBUFFERED": "1",
            **self.extra_env,
        }
        env.pop("MLFLOW_TRACKING_URI", None)
        probe = "readyz" if ready else "healthz"
        self.process = ManagedProcess(
            name="mlflow-operator",
            argv=[sys.executable, "-m", "mlflow_operator", "run", *self._scope_args()],
            log_path=self.log_path,
            env=env,
        ).start()
        eventually(
            lambda: http_ok(f"http://127.0.0.1:{self.health_port}/{probe}"),
            timeout=60,
            what=f"operator /{probe}",
            interval=0.1,
            processes=[self.process],
        )
        return self

    def process_id(self) -> str:
        """Who this process is to kopf and to a leader Lease (its POD_ID: host/pid)."""
        assert self.process is not None
        return f"{socket.gethostname()}/{self.process.pid}"

    def _scope_args(self) -> list[str]:
        if not self.namespaces:
            return ["--all-namespaces"]
        return [arg for namespace in self.namespaces for arg in ("-n", namespace)]

    def kill(self) -> None:
        """SIGKILL, as an OOM kill or a node failure would: no clean shutdown."""
        if self.process is not None and self.process.alive():
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.popen.wait(timeout=10)  # type: ignore[union-attr]

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop(timeout=20)

    def restart(self) -> None:
        self.stop()
        self.start()

    def metric(self, name: str, **labels: str) -> float:
        """The sum of the operator's samples of `name` whose labels include `labels` (a
        restarted operator counts from zero)."""
        with urllib.request.urlopen(self.metrics_url, timeout=10) as answer:
            text = answer.read().decode()
        return sum(
            sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items())
        )

    def kube_writes(self) -> float:
        """Requests that wrote to the API server (no-op applies included)."""
        return sum(
            self.metric("mlflow_operator_kube_requests_total", verb=verb)
            for verb in ("apply", "create", "delete", "patch_status")
        )

    def reconciles(self, kind: str) -> float:
        return self.metric("mlflow_operator_reconciles_total", kind=kind)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def log_tail(self, lines: int = 60) -> str:
        return tail(self.log_path, lines)
