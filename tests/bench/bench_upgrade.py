"""How long an MLflowServer upgrade leaves the tracking server unavailable, on a real size.

    .venv/bin/python -m tests.bench.bench_upgrade [--runs 10000] [--versions 1000]

Starts the local control plane with its real node, `mlflow-operator run` and a managed
MLflowServer (PostgreSQL, MinIO, two tracking server pods) from the locally built images;
fills its database from this machine through the PostgreSQL Service, as bench_backup does;
then sets spec.image to a second tag of the tracking server image and times the upgrade:
the backup Job (dump, verify, store: the server still serves), the stop of the old server,
the migration Job, the new pods. The server's /health is asked every 0.2 s throughout.

Both tags hold the same MLflow (one MLflow version is built here), so `mlflow db upgrade`
finds the schema at head: the migration is a Job's pod start, the schema check and MLflow's
own. Prints numbers; nothing here passes or fails.
"""

from __future__ import annotations

import argparse
import base64
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import psycopg2

from mlflow_operator.core.mlflowserver.layout import (
    MANAGED_DATABASE,
    PASSWORD_KEY,
    POSTGRES_PORT,
    USERNAME_KEY,
)
from tests.bench.bench_backup import fill
from tests.cluster.fixtures import create_namespace
from tests.cluster.launcher import ControlPlane, KubeCluster
from tests.e2e.kube import get_json
from tests.e2e.mlflowservers import HealthSampler, tracking_url
from tests.e2e.test_mlflowserver import (
    NEW_IMAGE,
    apply_server,
    managed_spec,
    patch_spec,
    start_operator,
)


def job_seconds(job: dict[str, Any]) -> float:
    began = datetime.fromisoformat(job["metadata"]["creationTimestamp"])
    ended = datetime.fromisoformat(job["status"]["completionTime"])
    return (ended - began).total_seconds()


def only_job(cluster: KubeCluster, namespace: str, component: str) -> dict[str, Any]:
    selector = f"app.kubernetes.io/component={component}"
    jobs = get_json(cluster, "-n", namespace, "jobs", "-l", selector)["items"]
    return max(jobs, key=lambda job: job["metadata"]["creationTimestamp"])


def wait_ready(cluster: KubeCluster, namespace: str, timeout: int) -> None:
    cluster.kubectl(
        "wait", "-n", namespace, "--for=condition=Ready", "mlfs/mlflow", f"--timeout={timeout}s",
        timeout=timeout + 10,
    )  # fmt: skip


def database(cluster: KubeCluster, namespace: str) -> tuple[str, dict[str, Any]]:
    """SQLAlchemy URL and psycopg2 arguments of the managed database, through its Service."""
    secret = get_json(cluster, "-n", namespace, "secret", "mlflow-postgres")["data"]
    user = base64.b64decode(secret[USERNAME_KEY]).decode()
    password = base64.b64decode(secret[PASSWORD_KEY]).decode()
    host = get_json(cluster, "-n", namespace, "service", "mlflow-postgres")["spec"]["clusterIP"]
    url = (
        f"postgresql+psycopg2://{user}:{password}@{host}:{POSTGRES_PORT}/{MANAGED_DATABASE}"
        "?sslmode=disable"
    )
    args = {
        "host": host, "port": POSTGRES_PORT, "user": user, "password": password,
        "dbname": MANAGED_DATABASE,
    }  # fmt: skip
    return url, args


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--versions", type=int, default=1_000)
    args = parser.parse_args()
    plane = ControlPlane()
    try:
        cluster = plane.start()
        node = cluster.node
        if node is None:
            raise SystemExit("this benchmark needs the test cluster's real node")
        namespace = create_namespace(cluster, prefix="bench")
        node.tag_image(node.images["mlflow-server"], NEW_IMAGE)
        with tempfile.TemporaryDirectory() as tmp:
            operator = start_operator(cluster, namespace, Path(tmp))
            try:
                apply_server(cluster, namespace, managed_spec(node.images["mlflow-server"], node))
                wait_ready(cluster, namespace, 300)
                url, connection = database(cluster, namespace)
                filled = fill(
                    url, "s3://mlflow/", lambda: psycopg2.connect(**connection), args.runs,
                    args.versions,
                )  # fmt: skip
                print(f"filled {args.runs} runs and {args.versions} versions in {filled:.1f}s")
                health = HealthSampler(f"{tracking_url(cluster, namespace)}/health").start()
                started = time.monotonic()
                patch_spec(cluster, namespace, {"image": NEW_IMAGE})
                wait_ready(cluster, namespace, 900)
                upgrade = time.monotonic() - started
                time.sleep(1)
                health.stop()
                backup = job_seconds(only_job(cluster, namespace, "backup"))
                migration = job_seconds(only_job(cluster, namespace, "schema-migration"))
                outage = health.longest_outage()
                print(f"spec.image changed -> Ready on the new image: {upgrade:.1f}s")
                print(f"backup Job (server serving): {backup:.0f}s")
                print(f"migration Job (server stopped): {migration:.0f}s")
                print(
                    f"unavailability (/health not answering): {outage:.1f}s; goal: migration "
                    f"+ 15 s = {migration + 15:.0f}s"
                )
            finally:
                operator.stop()
    finally:
        plane.cleanup()


if __name__ == "__main__":
    main()
