"""Pod-level settings a user passes through `podTemplate`, shared by every pod the operator
creates (serving pods, and the tracking server, its migration Job and managed stores)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from mlflow_operator.api.common import PodTemplate

# PodTemplate field -> pod spec key, for the settings that pass through unchanged.
_PASSED_THROUGH = (
    ("node_selector", "nodeSelector"),
    ("affinity", "affinity"),
    ("service_account_name", "serviceAccountName"),
    ("priority_class_name", "priorityClassName"),
    ("runtime_class_name", "runtimeClassName"),
)


def placement(
    template: PodTemplate, extra_tolerations: Sequence[dict[str, Any]] = ()
) -> dict[str, Any]:
    """The pod spec fields that place and run the pods: node selector, tolerations, affinity,
    service account, pull secrets, priority and runtime class; only the ones set."""
    pod: dict[str, Any] = {}
    for field, key in _PASSED_THROUGH:
        value = getattr(template, field)
        if value:
            pod[key] = dict(value) if isinstance(value, dict) else value
    tolerations = [*(template.tolerations or []), *extra_tolerations]
    if tolerations:
        pod["tolerations"] = tolerations
    if template.image_pull_secrets:
        pod["imagePullSecrets"] = [ref.to_wire() for ref in template.image_pull_secrets]
    return pod


def pod_labels(template: PodTemplate, own: dict[str, str]) -> dict[str, str]:
    """The user's pod labels with the operator's own on top (selectors depend on those)."""
    return {**(template.labels or {}), **own}


def pod_annotations(template: PodTemplate, own: dict[str, str] | None = None) -> dict[str, str]:
    return {**(template.annotations or {}), **(own or {})}


# Every probe the operator writes waits 5 s for an answer; what differs is how it asks, how often
# and how many failures it takes.
_PROBE_TIMEOUT_SECONDS = 5


def http_probe(path: str, port: str, *, period: int, failures: int) -> dict[str, Any]:
    """An HTTP GET probe of a named container port."""
    return _probe({"httpGet": {"path": path, "port": port}}, period, failures)


def exec_probe(command: Sequence[str], *, period: int, failures: int) -> dict[str, Any]:
    """A probe that runs a command in the container; exit 0 is success."""
    return _probe({"exec": {"command": list(command)}}, period, failures)


def _probe(handler: dict[str, Any], period: int, failures: int) -> dict[str, Any]:
    return {
        **handler,
        "periodSeconds": period,
        "timeoutSeconds": _PROBE_TIMEOUT_SECONDS,
        "failureThreshold": failures,
    }
