"""Start kopf with the operator's handlers, settings, metrics and health endpoints."""

from __future__ import annotations

import logging
import os
import socket

import kopf
import prometheus_client
from kopf._cogs.structs import bodies, ephemera
from kopf._core.reactor.inventory import ResourceMemories, ResourceMemory

from mlflow_operator import metrics
from mlflow_operator.api import API_GROUP
from mlflow_operator.config import OperatorConfig
from mlflow_operator.health import Health, Role
from mlflow_operator.kube.leadership import Leadership, Timing, label_own_pod
from mlflow_operator.kube.preflight import check_cluster, cluster_client
from mlflow_operator.logs import configure_logging

logger = logging.getLogger(__name__)


class SharedMemo(kopf.Memo):
    """kopf's memo, one for the whole operator instead of a copy per object.

    kopf shallow-copies the memo for every object it remembers: each ModelDeployment and each
    of its watched children, ~1.4 KB per ModelDeployment at rest for copies of the same
    references (bench_scale, docs/benchmarks.md). Every handler here only reads the operator's
    shared state from it (the startup handler fills it), so the copies can be the memo itself.
    """

    def __copy__(self) -> SharedMemo:
        return self


class ModelDeploymentMemories(ResourceMemories):
    """kopf's memory of the objects it watches, kept for ModelDeployments only.

    kopf keeps a record (~3 KB: a throttler, indexing, daemon and patch state) of every object
    it has seen until it is deleted: each ModelDeployment's serving Deployment, Service, PDB
    and pods too, some 6,000 records at 3,000 ModelDeployments (bench_scale). What a record
    carries from one event to the next serves only handlers that span events: retries of a
    change handler, daemons, timers. Here only ModelDeployments have one (the serving
    identity's on.delete); every other kind has event and index handlers, which keep nothing,
    so kopf gets a fresh record for each of their events (its `ephemeral` recall, which is
    what it does for admission requests) instead of keeping one per object. kopf 1.45 has no
    setting for it; `kopf.run(memories=...)` is its way to give it another container.
    """

    async def recall(
        self,
        raw_body: bodies.RawBody,
        *,
        memobase: ephemera.AnyMemo | None = None,
        noticed_by_listing: bool = False,
        ephemeral: bool = False,
    ) -> ResourceMemory:
        kept = raw_body.get("kind") == "ModelDeployment" and str(
            raw_body.get("apiVersion", "")
        ).startswith(f"{API_GROUP}/")
        return await super().recall(
            raw_body,
            memobase=memobase,
            noticed_by_listing=noticed_by_listing,
            ephemeral=ephemeral or not kept,
        )


def run_operator(config: OperatorConfig) -> None:
    """Run until SIGTERM/SIGINT. Blocks. Raises StartupError (one line, nothing started) when
    the cluster cannot be used: no credentials, no API server, no CRDs, no permission."""
    configure_logging(config.log_format, config.log_level)
    server = check_cluster(config.namespaces, config.request_timeout_seconds)
    import mlflow_operator.handlers  # noqa: F401  (importing registers the handlers with kopf)

    if config.metrics_port:
        prometheus_client.start_http_server(config.metrics_port)
    # Who this operator is to kopf (its documented POD_ID) and to the leader Lease. kopf's own
    # guess asks the passwd database for the user's name, which fails for the image's uid
    # 65532 (no entry there): the pod crash-looped at start. The host name is the pod's name.
    os.environ.setdefault("POD_ID", f"{socket.gethostname()}/{os.getpid()}")
    scope = "all namespaces" if config.cluster_wide else ", ".join(config.namespaces)
    logger.info("mlflow-operator starting against %s; watching %s", server, scope)
    health = Health(config.health_port)
    health.start()
    leadership = _lead(config, health) if config.leader_election else None
    metrics.LEADING.set(1)
    health.role = Role.LEADING
    try:
        kopf.run(
            clusterwide=config.cluster_wide,
            namespaces=config.namespaces,
            # One replica acts (leader_election, or one replica): kopf's peering not needed.
            standalone=True,
            liveness_endpoint=health.kopf_liveness_endpoint,
            memo=SharedMemo(config=config),
            memories=ModelDeploymentMemories(),
        )
    finally:
        if leadership is not None:
            leadership.release()
        health.stop()


_ROLES = {"standby": Role.STANDBY, "refusing": Role.REFUSING, "unknown": Role.STARTING}


def _lead(config: OperatorConfig, health: Health) -> Leadership:
    """Block as a standby until this replica may act, then keep the Lease while it does."""
    client, _ = cluster_client(config.request_timeout_seconds)
    leadership = Leadership(
        client=client,
        identity=os.environ["POD_ID"],
        namespace=config.leader_election_namespace,
        lease=config.leader_election_lease,
        # a pattern (kopf's `-n 'ml-*'`) names no namespace to claim
        watched=[ns for ns in config.namespaces if not any(c in ns for c in "!*?[")],
        timing=Timing(
            config.lease_duration_seconds,
            config.lease_renew_deadline_seconds,
            config.lease_retry_seconds,
        ),
    )
    pod = os.environ.get("POD_NAME", ""), os.environ.get("POD_NAMESPACE", "")
    metrics.LEADING.set(0)
    label_own_pod(client, *pod, leading=False)

    def waiting(why: str, _message: str) -> None:
        health.role = _ROLES[why]

    leadership.wait_until_leading(waiting)
    leadership.keep(on_lost=_stop_acting)
    label_own_pod(client, *pod, leading=True)
    return leadership


def _stop_acting(why: str) -> None:
    """The lease is lost: another replica may act from now on. Exit at once (client-go's
    rule): a graceful stop would let handlers in flight write after the new leader started."""
    logger.error("no longer the leader (%s); exiting so that two replicas never act", why)
    logging.shutdown()
    os._exit(1)
