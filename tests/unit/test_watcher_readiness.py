"""kopf's own orchestration: a namespace deleted before its watches listed must not hold every
handler of the operator forever (mlflow_operator/handlers/watcher_readiness.py).

The list that never finishes is faked (kopf's `watching.infinite_watch` replaced by one that
waits forever): a real API server answers too fast to stop a watch inside its listing on
purpose. The e2e `test_namespace_churn.py` shows the same through real namespaces.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import kopf
import pytest
from kopf._cogs.aiokits import aiotoggles
from kopf._cogs.clients import watching
from kopf._cogs.structs import references
from kopf._core.reactor import orchestration

from mlflow_operator.handlers.watcher_readiness import drop_readiness_when_a_watcher_stops

DEPLOYMENTS = references.Resource(
    group="apps", version="v1", plural="deployments", kind="Deployment", namespaced=True
)


async def _never_lists(**_: Any) -> AsyncIterator[Any]:
    await asyncio.Event().wait()
    yield  # pragma: no cover  (makes this an async generator)


async def _processor(**_: Any) -> None:  # pragma: no cover  (no event ever arrives)
    pass


async def test_a_watch_stopped_before_its_listing_releases_the_operator(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    drop_readiness_when_a_watcher_stops()
    monkeypatch.setattr(watching, "infinite_watch", _never_lists)
    ensemble = orchestration.Ensemble(
        operator_indexed=aiotoggles.ToggleSet(all),
        operator_paused=aiotoggles.ToggleSet(any),
        peering_missing=aiotoggles.Toggle(),
    )
    settings = kopf.OperatorSettings()

    await orchestration.spawn_missing_watchers(
        processor=_processor, settings=settings, ensemble=ensemble,
        indexed_resources={DEPLOYMENTS}, watched_resources={DEPLOYMENTS},
        watched_namespaces={"t-gone"},
    )  # fmt: skip
    assert not ensemble.operator_indexed.is_on()  # held until the listing ends, as kopf means

    # the namespace is deleted before its Deployments were listed
    await orchestration.terminate_redundancies(
        remaining_resources={DEPLOYMENTS}, remaining_namespaces=set(), ensemble=ensemble
    )
    await asyncio.wait_for(ensemble.operator_indexed.wait_for(True), timeout=5)


def test_the_wrapper_is_installed_once() -> None:
    from kopf._core.reactor import queueing

    drop_readiness_when_a_watcher_stops()
    wrapped = queueing.watcher
    drop_readiness_when_a_watcher_stops()
    assert queueing.watcher is wrapped
    assert wrapped.__wrapped__.__module__ == "kopf._core.reactor.queueing"  # type: ignore[attr-defined]
