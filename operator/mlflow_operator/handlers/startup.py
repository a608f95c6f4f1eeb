"""Operator-wide kopf settings and shared services, set up once at start from the OperatorConfig."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path
from typing import Any

import kopf
from aiohttp import web
from aiolimiter import AsyncLimiter

from mlflow_operator import metrics
from mlflow_operator.activator import Activator
from mlflow_operator.api import API_GROUP
from mlflow_operator.builders.modeldeployment import SERVING_PORT
from mlflow_operator.config import OperatorConfig
from mlflow_operator.core.naming import FIELD_MANAGER, LABEL_MANAGED_BY
from mlflow_operator.handlers.reconcile_queue import ReconcileQueue
from mlflow_operator.kube.client import KubeClient
from mlflow_operator.promquery import PrometheusTraffic
from mlflow_operator.reconcilers.mlflowserver import MLflowServerReconciler
from mlflow_operator.reconcilers.modeldeployment import ModelDeploymentReconciler
from mlflow_operator.registry import webhook
from mlflow_operator.registry.client import trusting
from mlflow_operator.registry.watcher import RegistryHub

FINALIZER = f"{API_GROUP}/finalizer"
WORKERS_PER_KIND = 64  # objects of one kind whose watch events kopf handles at once
WORKER_IDLE_SECONDS = 0.5  # a worker quiet this long gives its slot to the next object
# The kinds of children kopf watches (handlers/modeldeployment.py, handlers/mlflowserver.py)
CHILD_RESOURCES = (
    ("apps", "deployments"),
    ("apps", "statefulsets"),
    ("batch", "jobs"),
    ("v1", "services"),
    ("policy", "poddisruptionbudgets"),
    ("v1", "pods"),
)
logger = logging.getLogger(__name__)


@kopf.on.startup()
async def configure_kopf(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    config: OperatorConfig = memo.config
    # Progress and diff-base live in annotations: the status schema is ours alone, and kopf's
    # own status fields would be pruned by it.
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=API_GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=API_GROUP, key="last-handled-configuration"
    )
    settings.persistence.finalizer = FINALIZER
    settings.execution.max_workers = config.max_workers
    settings.networking.request_timeout = config.request_timeout_seconds
    settings.networking.connect_timeout = min(10.0, config.request_timeout_seconds)
    settings.watching.server_timeout = config.watch_timeout_seconds
    settings.watching.client_timeout = config.watch_timeout_seconds + 30
    # kopf queues the events of the objects beyond the limit (leaned first:
    # handlers/lean_watch_events.py), so this bounds tasks, not memory.
    settings.queueing.worker_limit = WORKERS_PER_KIND
    # A worker keeps its slot until its object has been quiet this long (kopf: 5 s). In a
    # rollout of a thousand, serving Deployments and pods change every few seconds, so the
    # slots stayed with the same objects while the others' events waited: up to 1,756 workers
    # pending in the bench, Ready some 50 s behind the rollouts, and 90 MiB more memory
    # (docs/benchmarks.md, "kopf's worker slots").
    settings.queueing.idle_timeout = WORKER_IDLE_SECONDS
    # Only our explicit Events reach users; handler log lines stay in the operator's log.
    settings.posting.level = logging.WARNING
    # The API server sends only the operator's own children: kopf's `labels=` on a handler
    # filters after the whole cluster's Deployments, Services... arrived (and were kept in
    # memory); every child the operator makes carries this label (standard_labels).
    for group, plural in CHILD_RESOURCES:
        settings.watching.label_selectors[group, plural] = f"{LABEL_MANAGED_BY}={FIELD_MANAGER}"

    memo.kube = KubeClient()
    memo.hub = RegistryHub(
        timeout_seconds=config.request_timeout_seconds, tls=trusting(config.ca_bundle_file)
    )
    memo.stop_registry_metrics = metrics.watch_registries(memo.hub.health)
    memo.reconcile_queue = ReconcileQueue(
        slots=config.max_concurrent_reconciles,
        timed=AsyncLimiter(config.timed_reconciles_per_second, time_period=1),
    )
    memo.server_generations = {}  # MLflowServer namespace/name -> generation last seen
    memo.modeldeployments = ModelDeploymentReconciler(
        memo.kube, memo.hub, config, prometheus=PrometheusTraffic.from_config(config)
    )
    memo.mlflowservers = MLflowServerReconciler(memo.kube, config)
    memo.webhook_runner = await _start_webhook_receiver(config, memo.hub)
    memo.activator_runner = await _start_activator(config, memo)


async def _start_activator(config: OperatorConfig, memo: kopf.Memo) -> Any:
    """The activator (mlflow_operator/activator.py) of ModelDeployments scaled to zero."""
    if not config.activator_port:
        return None
    reconciler: ModelDeploymentReconciler = memo.modeldeployments
    activator = Activator(
        pod_addresses=reconciler.activator_pods,
        wake=memo.reconcile_queue.wake,
        pod_port=SERVING_PORT,
    )
    reconciler.activator = activator
    runner = web.AppRunner(activator.app(), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "0.0.0.0", config.activator_port).start()  # noqa: S104
    if config.scale_to_zero:
        logger.info(
            "activator on %s:%d: ModelDeployments may scale to zero",
            config.activator_address, config.activator_port,
        )  # fmt: skip
    else:
        logger.info(
            "activator on port %d, but no activatorAddress is set: minReplicas 0 keeps one pod",
            config.activator_port,
        )
    return runner


async def _start_webhook_receiver(config: OperatorConfig, hub: RegistryHub) -> Any:
    if not config.webhook_enabled:
        return None
    secrets = webhook.WebhookSecrets(
        fixed=config.webhook_secret.get_secret_value() if config.webhook_secret else "",
        file=Path(config.webhook_secret_file) if config.webhook_secret_file else None,
    )
    app = webhook.build_app(secrets, hub.poke_model)
    cert, key = config.webhook_tls_cert_file, config.webhook_tls_key_file
    tls = webhook.server_tls(cert, key) if cert else None
    if tls is not None:
        reloading = asyncio.create_task(webhook.reload_tls_on_change(tls, cert, key))
        app.on_cleanup.append(lambda _: _cancel(reloading))
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "0.0.0.0", config.webhook_port, ssl_context=tls)  # noqa: S104
    await site.start()
    logger.info(
        "MLflow webhook receiver on port %d%s (%s)",
        config.webhook_port, webhook.PATH, "https" if tls else "plain http",
    )  # fmt: skip
    if not secrets():
        logger.warning(
            "no webhook secret is set: every MLflow webhook delivery will be refused as "
            "unsigned, and registry changes are seen at the next poll only"
        )
    return runner


async def _cancel(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


@kopf.on.cleanup()
async def close_services(memo: kopf.Memo, **_: Any) -> None:
    if getattr(memo, "reconcile_queue", None) is not None:
        await memo.reconcile_queue.close()  # before the clients the reconciles use
    if getattr(memo, "webhook_runner", None) is not None:
        await memo.webhook_runner.cleanup()
    if getattr(memo, "activator_runner", None) is not None:
        await memo.activator_runner.cleanup()
    if getattr(memo, "stop_registry_metrics", None) is not None:
        memo.stop_registry_metrics()
    if getattr(memo, "modeldeployments", None) is not None:
        await memo.modeldeployments.tag_writer.close()
        await memo.modeldeployments.pod_metrics.close()
        await memo.modeldeployments.prefetches.close()
        await memo.modeldeployments.secret_watch.close()
        if memo.modeldeployments.prometheus is not None:
            await memo.modeldeployments.prometheus.close()
    if getattr(memo, "hub", None) is not None:
        await memo.hub.close()
    if getattr(memo, "kube", None) is not None:
        await memo.kube.close()
