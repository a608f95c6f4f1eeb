"""kopf glue for ModelDeployment: one daemon per object runs the reconcile loop.

A daemon (not a timer) because the registry watcher must be able to wake one object at once
when its model moves; watch events of the object and of its Deployment wake it too.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping
from typing import Any, Literal

import kopf
from lightkube import ApiError

from mlflow_operator.api import API_GROUP, API_VERSION
from mlflow_operator.core.naming import LABEL_MODEL_DEPLOYMENT
from mlflow_operator.reconcilers.modeldeployment import ModelDeploymentReconciler

ERROR_BACKOFF_SECONDS = (1.0, 2.0, 5.0, 10.0, 30.0)


@kopf.daemon(API_GROUP, API_VERSION, "modeldeployments", id="reconcile", cancellation_timeout=10)
async def modeldeployment_daemon(
    body: kopf.Body, stopped: kopf.DaemonStopped, memo: kopf.Memo, logger: Any, **_: Any
) -> None:
    reconciler: ModelDeploymentReconciler = memo.modeldeployments
    key = f"{body.metadata.namespace}/{body.metadata.name}"
    wake = memo.wakers.setdefault(key, asyncio.Event())

    def emit(type_: Literal["Normal", "Warning"], reason: str, message: str) -> None:
        kopf.event(body, type=type_, reason=reason, message=message)

    failures = 0
    try:
        while not stopped:
            wake.clear()
            try:
                result = await reconciler.reconcile(body, emit, wake.set)
                delay, failures = result.recheck_after, 0
            except ApiError as exc:  # reported in status and Events by the reconciler
                delay = ERROR_BACKOFF_SECONDS[min(failures, len(ERROR_BACKOFF_SECONDS) - 1)]
                failures += 1
                logger.warning(
                    "reconcile: Kubernetes API error %s; retrying in %.0fs", exc.status.code, delay
                )
            except Exception:
                delay = ERROR_BACKOFF_SECONDS[min(failures, len(ERROR_BACKOFF_SECONDS) - 1)]
                failures += 1
                logger.exception("reconcile failed; retrying in %.0fs", delay)
            await _sleep_until_woken(wake, stopped, delay)
    finally:
        memo.wakers.pop(key, None)
        reconciler.forget(body)


async def _sleep_until_woken(
    wake: asyncio.Event, stopped: kopf.DaemonStopped, delay: float
) -> None:
    woken = asyncio.ensure_future(wake.wait())
    stopping = asyncio.ensure_future(stopped.wait())
    try:
        await asyncio.wait({woken, stopping}, timeout=delay, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (woken, stopping):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


@kopf.on.event(API_GROUP, API_VERSION, "modeldeployments")
def modeldeployment_changed(namespace: str | None, name: str, memo: Any, **_: Any) -> None:
    """Any change to the object (spec, metadata) reconciles it now."""
    _wake(memo, f"{namespace}/{name}")


@kopf.on.event("apps", "v1", "deployments", labels={LABEL_MODEL_DEPLOYMENT: kopf.PRESENT})
def serving_deployment_changed(
    namespace: str | None, labels: Mapping[str, str], memo: Any, **_: Any
) -> None:
    """Rollout progress of a serving Deployment reconciles its ModelDeployment now."""
    _wake(memo, f"{namespace}/{labels[LABEL_MODEL_DEPLOYMENT]}")


def _wake(memo: kopf.Memo, key: str) -> None:
    event = memo.wakers.get(key)
    if event is not None:
        event.set()
