"""The world a ModelDeployment benchmark runs in: the local control plane with its real node,
MLflow on PostgreSQL and MinIO, the CRDs, and `mlflow-operator run` as a process."""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.cluster.launcher import ControlPlane, KubeCluster
from tests.e2e.operator_process import OperatorProcess, local_images_env
from tests.mlflowstack import stack as mlflow_stack
from tests.mlflowstack.models import ModelRegistry

ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class BenchWorld:
    cluster: KubeCluster
    registry: ModelRegistry
    tracking_uri: str  # MLflow as the serving pods reach it

    def get(self, namespace: str, *args: str) -> dict[str, Any]:
        result: dict[str, Any] = json.loads(
            self.cluster.kubectl("get", "-n", namespace, *args, "-o", "json").stdout
        )
        return result

    def service_url(self, namespace: str, name: str) -> str:
        service = self.get(namespace, "service", name)
        return f"http://{service['spec']['clusterIP']}:{service['spec']['ports'][0]['port']}"


@contextmanager
def bench_world(prefix: str) -> Iterator[BenchWorld]:
    workdir = Path(tempfile.mkdtemp(prefix=prefix))
    plane = ControlPlane()
    try:
        cluster = plane.start()
        if cluster.node is None:
            raise SystemExit("needs the real node")
        with mlflow_stack.running(workdir / "mlflow") as stack:
            tracking_uri = f"http://{cluster.expose_to_pods(stack.server.port)}"
            cluster.kubectl("apply", "--server-side", "-f", str(ROOT / "crds"))
            for crd in ("modeldeployments", "mlflowservers"):
                cluster.kubectl("wait", "--for=condition=Established", f"crd/{crd}.mlflowops.dev")
            operator = OperatorProcess(
                cluster.kubeconfig, workdir, extra_env=local_images_env(cluster)
            ).start()
            try:
                yield BenchWorld(cluster, ModelRegistry(stack.tracking_uri), tracking_uri)
            finally:
                operator.stop()
    finally:
        plane.cleanup()


def wait(check: Callable[[], Any], timeout: float, what: str, every: float = 0.2) -> None:
    ends = time.monotonic() + timeout
    while time.monotonic() < ends:
        try:
            if check():
                return
        except Exception:  # noqa: BLE001, S110  (not there yet)
            pass
        time.sleep(every)
    raise TimeoutError(what)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]
