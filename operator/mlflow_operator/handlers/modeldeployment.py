"""kopf glue for ModelDeployment: its watch events feed the reconcile queue.

The queue (handlers/reconcile_queue.py), not kopf's timers, because the registry watcher must
be able to wake one object at once when its model moves; watch events of the object and of its
serving children wake it too.
The children are kept in kopf indices, which the reconciler reads instead of GETs
(reconcilers/watched.py).

Every handler is a coroutine, even where it does no I/O: kopf runs a plain function in its
thread pool, where a wake sets an asyncio.Event off the event loop's thread (asyncio's objects
are not thread-safe; it worked because kopf's hop back to the loop woke the loop just after),
and every watch event paid that hop to a thread and back.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any

import kopf

from mlflow_operator.api import API_GROUP, API_VERSION
from mlflow_operator.core.modeldeployment.conditions import SERVING_IDENTITY_FAILED
from mlflow_operator.core.naming import LABEL_MODEL_DEPLOYMENT
from mlflow_operator.handlers.events import events_of
from mlflow_operator.handlers.reconcile_queue import ReconcileQueue
from mlflow_operator.reconcilers.common import ReconcileResult
from mlflow_operator.reconcilers.modeldeployment import ModelDeploymentReconciler
from mlflow_operator.reconcilers.watched import Watched, watched_copy, watched_pod

SERVING_CHILD = {LABEL_MODEL_DEPLOYMENT: kopf.PRESENT}
# kind -> the id of the kopf index that holds it (kopf passes each index by its id)
INDEXED_KINDS = {
    "Deployment": "serving_deployments",
    "Service": "serving_services",
    "PodDisruptionBudget": "serving_pdbs",
    "MLflowServer": "mlflow_servers",
    "Pod": "serving_pods",
}


def _by_name(namespace: str | None, name: str, body: kopf.Body) -> dict[Any, Any]:
    return {(namespace, name): watched_copy(body)}


@kopf.index("apps", "v1", "deployments", labels=SERVING_CHILD, id="serving_deployments")
async def serving_deployments(
    namespace: str | None, name: str, body: kopf.Body, **_: Any
) -> dict[Any, Any]:
    return _by_name(namespace, name, body)


@kopf.index("v1", "services", labels=SERVING_CHILD, id="serving_services")
async def serving_services(
    namespace: str | None, name: str, body: kopf.Body, **_: Any
) -> dict[Any, Any]:
    return _by_name(namespace, name, body)


@kopf.index("policy", "v1", "poddisruptionbudgets", labels=SERVING_CHILD, id="serving_pdbs")
async def serving_pdbs(
    namespace: str | None, name: str, body: kopf.Body, **_: Any
) -> dict[Any, Any]:
    return _by_name(namespace, name, body)


@kopf.index("v1", "pods", labels=SERVING_CHILD, id="serving_pods")
async def serving_pods(
    namespace: str | None, labels: Mapping[str, str], body: kopf.Body, **_: Any
) -> dict[Any, Any]:
    """Every pod of a ModelDeployment (stable, canary, shadow) under its name: a rollout reads
    them at each reconcile while a pod starts, the autoscaler and the activator at each of
    theirs. Pods do not wake a reconcile: their Deployment's status does."""
    return {(namespace, labels[LABEL_MODEL_DEPLOYMENT]): watched_pod(body)}


@kopf.index(API_GROUP, API_VERSION, "mlflowservers", id="mlflow_servers")
async def mlflow_servers(
    namespace: str | None, name: str, body: kopf.Body, **_: Any
) -> dict[Any, Any]:
    """The servers a ModelDeployment's serverRef names (the few of a cluster)."""
    return _by_name(namespace, name, body)


async def _reconcile(
    reconciler: ModelDeploymentReconciler,
    _key: str,
    body: Mapping[str, Any],
    wake: Callable[[], None],
) -> ReconcileResult:
    return await reconciler.reconcile(body, events_of(body), wake)


@kopf.on.event(API_GROUP, API_VERSION, "modeldeployments")
async def modeldeployment_changed(
    type: str | None, body: kopf.Body, memo: Any, **kwargs: Any
) -> None:
    """Any change to the object (spec, metadata) reconciles it now; once it is being deleted,
    no more reconciles (its children go by owner reference)."""
    reconciler: ModelDeploymentReconciler = memo.modeldeployments
    queue: ReconcileQueue = memo.reconcile_queue
    key = f"{body.metadata.namespace}/{body.metadata.name}"
    if type == "DELETED" or body.metadata.get("deletionTimestamp"):
        await queue.drop(key)
        reconciler.forget(body)
        return
    if not reconciler.watched.indices:  # kopf passes the same indices to every handler
        reconciler.watched = Watched({kind: kwargs[index] for kind, index in INDEXED_KINDS.items()})
    # the top level only: the event's own objects below it are kept, not copied
    queue.offer(key, dict(body), functools.partial(_reconcile, reconciler))


@kopf.on.delete(API_GROUP, API_VERSION, "modeldeployments", id="serving-identity")
async def modeldeployment_deleted(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    """Its serving pods' MLflow user goes with it (its Secret goes by owner reference). Once:
    a deletion must not hang on an MLflow that may be going away too."""
    reconciler: ModelDeploymentReconciler = memo.modeldeployments
    problem = await reconciler.remove_serving_identity(body)
    if problem is not None:
        kopf.event(body, type="Warning", reason=SERVING_IDENTITY_FAILED, message=problem)


@kopf.on.event("apps", "v1", "deployments", labels=SERVING_CHILD)
@kopf.on.event("v1", "services", labels=SERVING_CHILD)
@kopf.on.event("policy", "v1", "poddisruptionbudgets", labels=SERVING_CHILD)
async def serving_child_changed(
    namespace: str | None, labels: Mapping[str, str], memo: Any, **_: Any
) -> None:
    """Rollout progress of a serving Deployment, or a change to any serving child (a person's
    edit, a deletion), reconciles its ModelDeployment now: nothing else looks at rest."""
    memo.reconcile_queue.wake(f"{namespace}/{labels[LABEL_MODEL_DEPLOYMENT]}")


@kopf.on.event(API_GROUP, API_VERSION, "mlflowservers")
async def mlflow_server_changed(
    type: str | None,
    namespace: str | None,
    name: str,
    meta: kopf.Meta,
    memo: Any,
    **_: Any,
) -> None:
    """A server's spec changed (its address, its auth) or it went: the ModelDeployments of its
    namespace reconcile now, since at rest they are not reconciled on a timer. Its status
    changes wake nobody."""
    key, generation = f"{namespace}/{name}", meta.get("generation")
    before = memo.server_generations.pop(key, None)
    if type != "DELETED":
        memo.server_generations[key] = generation
    if type == "DELETED" or (before is not None and before != generation):
        queue: ReconcileQueue = memo.reconcile_queue
        for follower in [k for k in queue.queued() if k.startswith(f"{namespace}/")]:
            queue.wake(follower)
