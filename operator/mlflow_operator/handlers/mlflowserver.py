"""kopf glue for MLflowServer: its watch events feed the reconcile queue.

Its children's watch events (tracking server Deployment, PostgreSQL and MinIO StatefulSets,
migration Jobs) wake it at once; nothing polls on a timer. kopf filters the children by
label on its side: one watch per kind, shared with the ModelDeployment handlers.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any

import kopf

from mlflow_operator.api import API_GROUP, API_VERSION
from mlflow_operator.core.naming import LABEL_MLFLOW_SERVER
from mlflow_operator.handlers.events import events_of
from mlflow_operator.handlers.reconcile_queue import ReconcileQueue
from mlflow_operator.reconcilers.common import ReconcileResult
from mlflow_operator.reconcilers.mlflowserver import MLflowServerReconciler

PLURAL = "mlflowservers"
CHILD_LABELS = {LABEL_MLFLOW_SERVER: kopf.PRESENT}


def _key(namespace: str | None, name: str) -> str:
    return f"MLflowServer {namespace}/{name}"  # the reconcile queue is shared with ModelDeployments


async def _reconcile(
    reconciler: MLflowServerReconciler,
    _key: str,
    body: Mapping[str, Any],
    _wake: Callable[[], None],
) -> ReconcileResult:
    return await reconciler.reconcile(body, events_of(body))


@kopf.on.event(API_GROUP, API_VERSION, PLURAL)
async def mlflowserver_changed(type: str | None, body: kopf.Body, memo: Any, **_: Any) -> None:
    """Any change to the object (spec, metadata) reconciles it now; once it is being deleted,
    no more reconciles (its children go by owner reference)."""
    queue: ReconcileQueue = memo.reconcile_queue
    key = _key(body.metadata.namespace, body.metadata.name)
    if type == "DELETED" or body.metadata.get("deletionTimestamp"):
        await queue.drop(key)
        return
    queue.offer(key, dict(body), functools.partial(_reconcile, memo.mlflowservers))


@kopf.on.event("apps", "v1", "deployments", labels=CHILD_LABELS)
@kopf.on.event("apps", "v1", "statefulsets", labels=CHILD_LABELS)
@kopf.on.event("batch", "v1", "jobs", labels=CHILD_LABELS)
async def server_child_changed(
    namespace: str | None, labels: Mapping[str, str], memo: Any, **_: Any
) -> None:
    """A child's progress (pods ready, a migration Job done) reconciles its server now."""
    memo.reconcile_queue.wake(_key(namespace, labels[LABEL_MLFLOW_SERVER]))
