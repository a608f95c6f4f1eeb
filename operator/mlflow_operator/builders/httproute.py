"""The rules of a user's Gateway API HTTPRoute, weighted for a canary (canary.httpRouteRef).
Pure.

The user owns the route (its parents, hostnames, matches); the operator only rewrites the
backendRefs that send to this ModelDeployment's Services, `<name>` (what the user wrote) and
`<name>-canary` (what the operator wrote before): `<name>` at 100 - w and `<name>-canary` at
w, no canary backend at 0. The canary's pods are outside Service `<name>` then, so a Gateway
sends each step's share exactly, whatever the pod counts; and a route left alone (the
ModelDeployment deleted, httpRouteRef removed) still sends everything to `<name>`. Other
backendRefs stay as they are.
"""

from __future__ import annotations

import copy
from typing import Any

from mlflow_operator.builders.modeldeployment import canary_name, serving_name

GATEWAY_API_VERSION = "gateway.networking.k8s.io/v1"
HTTP_ROUTE = "HTTPRoute"


def _ours(ref: dict[str, Any], names: set[str]) -> bool:
    """A backendRef to one of `names`, a Service in the route's own namespace."""
    return (
        ref.get("name") in names
        and ref.get("kind", "Service") == "Service"
        and ref.get("group", "") in ("", "core")
        and not ref.get("namespace")
    )


def weighted_rules(
    route: dict[str, Any], md_name: str, port: int, canary_weight: int
) -> list[dict[str, Any]] | None:
    """The route's rules with this ModelDeployment's backends split `canary_weight`% to the
    canary; None when no rule sends to them (nothing to weight)."""
    stable, canary = serving_name(md_name), canary_name(md_name)
    names = {stable, canary}
    rules = copy.deepcopy((route.get("spec") or {}).get("rules") or [])
    found = False
    for rule in rules:
        refs = rule.get("backendRefs") or []
        if not any(_ours(ref, names) for ref in refs):
            continue
        found = True
        # written as the API server defaults them, so an unchanged route compares equal
        backends = [_backend(stable, port, 100 - canary_weight)]
        if canary_weight > 0:
            backends.append(_backend(canary, port, canary_weight))
        rule["backendRefs"] = [ref for ref in refs if not _ours(ref, names)] + backends
    return rules if found else None


def _backend(service: str, port: int, weight: int) -> dict[str, Any]:
    return {"group": "", "kind": "Service", "name": service, "port": port, "weight": weight}


def route_patch(route: dict[str, Any], rules: list[dict[str, Any]]) -> dict[str, Any]:
    """A server-side apply of the rules alone, onto the route as it is."""
    meta = route["metadata"]
    return {
        "apiVersion": GATEWAY_API_VERSION,
        "kind": HTTP_ROUTE,
        "metadata": {"name": meta["name"], "namespace": meta["namespace"]},
        "spec": {"rules": rules},
    }
