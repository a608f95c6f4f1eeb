"""Every kopf handler of the operator is a coroutine (handlers/modeldeployment.py says why):
kopf runs a plain function in its thread pool, where a wake sets an asyncio.Event off the
event loop's thread."""

from __future__ import annotations

import inspect

import kopf

import mlflow_operator.handlers  # noqa: F401  (registers the handlers)


def test_every_handler_runs_on_the_event_loop() -> None:
    registry = kopf.get_default_registry()
    parts = ("_activities", "_indexing", "_watching", "_spawning", "_changing")
    handlers = [h for part in parts for h in getattr(registry, part).get_all_handlers()]
    assert {h.id for h in handlers} >= {
        "serving_pods",
        "serving_child_changed",
        "modeldeployment_changed",
    }
    plain = sorted({h.id for h in handlers if not inspect.iscoroutinefunction(h.fn)})
    assert plain == [], f"run in kopf's thread pool: {plain}"
