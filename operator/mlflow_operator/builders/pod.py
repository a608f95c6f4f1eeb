"""Pod-level settings a user passes through `podTemplate`, shared by every pod the operator
creates (serving pods, and the tracking server, its migration Job and managed stores)."""

from __future__ import annotations

import copy
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


# Requests of every container the operator creates, where the user sets neither a request nor a
# limit: a namespace whose ResourceQuota counts requests refuses pods without them, and the
# scheduler packs pods without them as if they cost nothing. Small on purpose (a lower bound
# for scheduling, not a size): users size their pods with `resources`.
DEFAULT_REQUESTS: dict[str, str] = {"cpu": "100m", "memory": "256Mi"}


def requests_defaulted(
    resources: dict[str, Any], defaults: dict[str, str] = DEFAULT_REQUESTS
) -> dict[str, Any]:
    """`resources` with a default request for each of cpu and memory that has neither a
    request nor a limit (with only a limit, Kubernetes makes the request equal to it; a
    default above a small limit would make the pod invalid)."""
    requests = dict(resources.get("requests") or {})
    limits = resources.get("limits") or {}
    for name, quantity in defaults.items():
        if name not in requests and name not in limits:
            requests[name] = quantity
    return {**resources, "requests": requests} if requests else dict(resources)


def with_default_requests(pod_spec: dict[str, Any]) -> dict[str, Any]:
    """The pod spec with `requests_defaulted` applied to every container and init container."""
    result = dict(pod_spec)
    for key in ("initContainers", "containers"):
        if key in result:
            result[key] = [
                {**c, "resources": requests_defaulted(c.get("resources") or {})}
                for c in result[key]
            ]
    return result


def disruption_budget(
    metadata: dict[str, Any], match_labels: dict[str, str], replicas: int
) -> dict[str, Any] | None:
    """A PodDisruptionBudget that lets node drains evict one pod of a set at a time.

    None below 2 replicas: a budget over one pod either blocks every drain or protects
    nothing. Pods that are not Ready may always be evicted: a crash-looping rollout must
    never hold a node drain hostage.
    """
    if replicas < 2:
        return None
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": metadata,
        "spec": {
            "maxUnavailable": 1,
            "selector": {"matchLabels": match_labels},
            "unhealthyPodEvictionPolicy": "AlwaysAllow",
        },
    }


def ingress_policy(
    metadata: dict[str, Any],
    match_labels: dict[str, str],
    port: str | int,
    allowed_from: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A NetworkPolicy: the selected pods take connections on `port` only, from the pods of
    their namespace that `allowed_from` (a label selector) selects, or from anywhere when it
    is None (which still closes every other port, and opens this one in a default-deny
    namespace). Egress is left alone: DNS, MLflow and object stores are the platform's."""
    rule: dict[str, Any] = {"ports": [{"protocol": "TCP", "port": port}]}
    if allowed_from is not None:
        rule["from"] = [{"podSelector": allowed_from}]
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": metadata,
        "spec": {
            "podSelector": {"matchLabels": match_labels},
            "policyTypes": ["Ingress"],
            "ingress": [rule],
        },
    }


# What a platform that assigns user and group ids itself (OpenShift's restricted-v2 SCC: a UID
# and fsGroup from the namespace's range) refuses when a pod sets them to anything else.
_ASSIGNED_IDS = ("runAsUser", "runAsGroup", "fsGroup")


def without_fixed_ids(manifest: dict[str, Any]) -> dict[str, Any]:
    """The manifest with no runAsUser, runAsGroup or fsGroup in its pod template, pod or
    container security contexts, for a platform that assigns them (config `openshift`).

    Done on the finished manifest rather than in each builder: the ids are a property of the
    platform, not of any one child, and every child must lose them alike. runAsNonRoot
    stays: the assigned UID is never 0.
    """
    result = copy.deepcopy(manifest)
    pod = _pod_spec(result)
    if pod is None:
        return result
    for key in _ASSIGNED_IDS:
        pod.get("securityContext", {}).pop(key, None)
    for container in [*pod.get("initContainers", []), *pod.get("containers", [])]:
        for key in _ASSIGNED_IDS:
            container.get("securityContext", {}).pop(key, None)
    return result


def _pod_spec(manifest: dict[str, Any]) -> dict[str, Any] | None:
    spec = manifest.get("spec") or {}
    if manifest.get("kind") == "CronJob":
        spec = (spec.get("jobTemplate") or {}).get("spec") or {}
    template = spec.get("template")
    return template.get("spec") if isinstance(template, dict) else None


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
