"""kopf glue for MLflowServer: one daemon per object runs the reconcile loop.

Its children's watch events (tracking server Deployment, PostgreSQL and MinIO StatefulSets,
migration Jobs) wake it at once; nothing polls on a timer. kopf filters the children by
label on its side: one watch per kind, shared with the ModelDeployment handlers.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any, Literal

import kopf

from mlflow_operator.api import API_GROUP, API_VERSION
from mlflow_operator.core.naming import LABEL_MLFLOW_SERVER
from mlflow_operator.handlers.reconcile_loop import reconcile_until_stopped, wake
from mlflow_operator.reconcilers.common import ReconcileResult
from mlflow_operator.reconcilers.mlflowserver import MLflowServerReconciler

PLURAL = "mlflowservers"
CHILD_LABELS = {LABEL_MLFLOW_SERVER: kopf.PRESENT}


def _key(namespace: str | None, name: str) -> str:
    return f"MLflowServer {namespace}/{name}"  # memo.wakers is shared with ModelDeployments


@kopf.daemon(API_GROUP, API_VERSION, PLURAL, id="reconcile", cancellation_timeout=10)
async def mlflowserver_daemon(
    body: kopf.Body, stopped: kopf.DaemonStopped, memo: kopf.Memo, **_: Any
) -> None:
    reconciler: MLflowServerReconciler = memo.mlflowservers
    key = _key(body.metadata.namespace, body.metadata.name)
    woken = memo.wakers.setdefault(key, asyncio.Event())

    def emit(type_: Literal["Normal", "Warning"], reason: str, message: str) -> None:
        kopf.event(body, type=type_, reason=reason, message=message)

    async def reconcile() -> ReconcileResult:
        return await reconciler.reconcile(body, emit)

    try:
        await reconcile_until_stopped(
            reconcile, woken, stopped, key, slots=memo.reconcile_slots, timed=memo.timed_reconciles
        )
    finally:
        memo.wakers.pop(key, None)


@kopf.on.event(API_GROUP, API_VERSION, PLURAL)
async def mlflowserver_changed(namespace: str | None, name: str, memo: Any, **_: Any) -> None:
    """Any change to the object (spec, metadata) reconciles it now."""
    wake(memo, _key(namespace, name))


@kopf.on.event("apps", "v1", "deployments", labels=CHILD_LABELS)
@kopf.on.event("apps", "v1", "statefulsets", labels=CHILD_LABELS)
@kopf.on.event("batch", "v1", "jobs", labels=CHILD_LABELS)
async def server_child_changed(
    namespace: str | None, labels: Mapping[str, str], memo: Any, **_: Any
) -> None:
    """A child's progress (pods ready, a migration Job done) reconciles its server now."""
    wake(memo, _key(namespace, labels[LABEL_MLFLOW_SERVER]))
