"""Start kopf with the operator's handlers, settings, metrics and health endpoints."""

from __future__ import annotations

import logging
import os
import socket

import kopf
import prometheus_client

from mlflow_operator.config import OperatorConfig
from mlflow_operator.kube.preflight import check_cluster
from mlflow_operator.logs import configure_logging

logger = logging.getLogger(__name__)


def run_operator(config: OperatorConfig) -> None:
    """Run until SIGTERM/SIGINT. Blocks. Raises StartupError (one line, nothing started) when
    the cluster cannot be used: no credentials, no API server, no CRDs, no permission."""
    configure_logging(config.log_format, config.log_level)
    server = check_cluster(config.namespaces, config.request_timeout_seconds)
    import mlflow_operator.handlers  # noqa: F401  (importing registers the handlers with kopf)

    if config.metrics_port:
        prometheus_client.start_http_server(config.metrics_port)
    # Who this operator is to kopf (its documented POD_ID). kopf's own guess asks the passwd
    # database for the user's name, which fails for the image's uid 65532 (no entry there):
    # the pod crash-looped at start. The host name is the pod's name in Kubernetes.
    os.environ.setdefault("POD_ID", f"{socket.gethostname()}/{os.getpid()}")
    scope = "all namespaces" if config.cluster_wide else ", ".join(config.namespaces)
    logger.info("mlflow-operator starting against %s; watching %s", server, scope)
    kopf.run(
        clusterwide=config.cluster_wide,
        namespaces=config.namespaces,
        # One active replica (Deployment strategy Recreate): no peering CRDs to install.
        standalone=True,
        liveness_endpoint=f"http://0.0.0.0:{config.health_port}/healthz",
        memo=kopf.Memo(config=config),
    )
