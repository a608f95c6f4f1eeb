"""kopf's own watcher queues and hands the processor lean events (handlers/lean_watch_events.py).

The watch stream is faked (kopf's `watching.infinite_watch` replaced by one that yields two
events and then waits, and wrapped as the operator wraps the real one): what is checked is what
kopf's watcher and workers pass on, which a real API server's stream would not change.
"""

from __future__ import annotations

import asyncio
import copy
from collections.abc import AsyncIterator
from typing import Any

import kopf
import pytest
from kopf._cogs.clients import watching
from kopf._cogs.structs import references
from kopf._core.reactor import queueing

from mlflow_operator.handlers.lean_watch_events import lean_watch_events

MODEL_DEPLOYMENTS = references.Resource(
    group="mlflowops.dev", version="v1alpha1", plural="modeldeployments",
    kind="ModelDeployment", namespaced=True,
)  # fmt: skip
DEPLOYMENTS = references.Resource(
    group="apps", version="v1", plural="deployments", kind="Deployment", namespaced=True
)


def an_object(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Thing",
        "metadata": {
            "name": name,
            "namespace": "ml",
            "uid": f"uid-{name}",
            "resourceVersion": "7",
            "labels": {"team": "".join(["fr", "aud"])},  # a string of its own, as decoded
            "managedFields": [{"manager": "kubectl", "fieldsV1": {"f:spec": {}}}],
        },
        "spec": {"model": {"name": "".join(["fraud-", "model"])}},
    }


async def processed_events(
    resource: references.Resource, monkeypatch: pytest.MonkeyPatch
) -> list[dict[str, Any]]:
    sent = [{"type": "ADDED", "object": an_object(name)} for name in ("a", "b")]

    async def stream(**_: Any) -> AsyncIterator[Any]:
        for event in copy.deepcopy(sent):
            yield event
        await asyncio.Event().wait()

    seen: list[dict[str, Any]] = []

    async def processor(*, raw_event: dict[str, Any], **_: Any) -> None:
        seen.append(raw_event)

    monkeypatch.setattr(watching, "infinite_watch", stream)
    lean_watch_events()
    settings = kopf.OperatorSettings()
    task = asyncio.create_task(
        queueing.watcher(namespace="ml", settings=settings, resource=resource, processor=processor)
    )
    try:
        for _ in range(200):
            if len(seen) == len(sent):
                break
            await asyncio.sleep(0.01)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    return seen


async def test_no_event_keeps_managed_fields(monkeypatch: pytest.MonkeyPatch) -> None:
    seen = await processed_events(DEPLOYMENTS, monkeypatch)
    assert sorted(e["object"]["metadata"]["name"] for e in seen) == ["a", "b"]
    for event in seen:
        metadata = event["object"]["metadata"]
        assert "managedFields" not in metadata
        assert metadata["labels"] == {"team": "fraud"}  # the rest is all there
        assert event["object"]["spec"] == {"model": {"name": "fraud-model"}}


async def test_the_operators_own_objects_share_their_strings(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The reconcile queue keeps a ModelDeployment's last event: its strings are shared."""
    a, b = (e["object"] for e in await processed_events(MODEL_DEPLOYMENTS, monkeypatch))
    assert "managedFields" not in a["metadata"]
    assert a["spec"]["model"]["name"] is b["spec"]["model"]["name"]
    assert a["metadata"]["labels"]["team"] is b["metadata"]["labels"]["team"]
    # other kinds' events are not kept: they are not worth the copy
    c, d = (e["object"] for e in await processed_events(DEPLOYMENTS, monkeypatch))
    assert c["spec"]["model"]["name"] is not d["spec"]["model"]["name"]


def test_the_wrapper_is_installed_once() -> None:
    lean_watch_events()
    wrapped = watching.infinite_watch
    lean_watch_events()
    assert watching.infinite_watch is wrapped
