"""The prefetch of a new version onto the model caches of the nodes that serve (serving.cache),
before any pod of it is created. Pure: the reconciler asks each node's cache and hands the
answers here; this decides whether the rollout waits, and what status and Events say.

Why wait at all: the new pods then load from their node's disk instead of all downloading at
once, the old pods serve meanwhile, and a version that cannot be downloaded is known before a
single pod is replaced. Why never wait forever: a cache is an optimisation. Past
`timeout_seconds`, or when a node's cache fails, the rollout goes on and those pods download
what they need themselves, through the same cache (status says so).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from mlflow_operator.api.modeldeployment import (
    ModelDeploymentStatus,
    NodePrefetchStatus,
    PrefetchStatus,
)
from mlflow_operator.core.modeldeployment.observation import DeploymentObservation, ready_address
from mlflow_operator.core.modeldeployment.preflight import Preflight

RUNNING = "Running"
DONE = "Done"
INCOMPLETE = "Incomplete"
NODE_DONE = "Done"
NODE_RUNNING = "Running"
NODE_NO_CACHE = "NoCache"  # no ready cache pod on the node
NODE_FAILED = "Failed"


@dataclass(frozen=True)
class NodePrefetch:
    """One node's cache's answer about the version."""

    node: str
    phase: str  # NodePrefetchStatus.phase
    bytes: int = 0
    message: str = ""


@dataclass(frozen=True)
class PrefetchVerdict:
    """Where the prefetch of `version` stands, as status records it."""

    version: str
    status: PrefetchStatus

    @property
    def holds(self) -> bool:
        """The rollout waits: no pod of the version yet."""
        return self.status.phase == RUNNING


def prefetch_version(
    version: str | None,
    observed: DeploymentObservation,
    *,
    cache_enabled: bool,
    cache_configured: bool,
    held_before: bool,
    preflight: Preflight | None,
) -> str | None:
    """The version to prefetch now, or None: `version` is the new one the registry selects
    (preflight.preflight_version), cached pods are asked for, the operator has a cache, no gate
    or pre-flight check holds it, and pods of another version serve (a first rollout has no
    node to prefetch to: its pods fill the cache as they load)."""
    if version is None or not (cache_enabled and cache_configured) or held_before:
        return None
    if preflight is not None and preflight.blocks:
        return None
    if not observed.exists or observed.version in (None, version):
        return None
    return version


def judge_prefetch(
    version: str,
    nodes: list[NodePrefetch],
    last: PrefetchStatus | None,
    now: datetime,
    *,
    timeout_seconds: float,
) -> PrefetchVerdict:
    """The prefetch of `version` from the nodes' answers: Running while a node's cache still
    downloads and the deadline has not passed; then Done (every node has it) or Incomplete."""
    started = last.started if last is not None and last.version == version else now
    per_node = [
        NodePrefetchStatus(node=n.node, phase=n.phase, bytes=n.bytes, message=n.message)
        for n in sorted(nodes, key=lambda n: n.node)
    ]
    done = [n for n in per_node if n.phase == NODE_DONE]
    running = [n for n in per_node if n.phase == NODE_RUNNING]
    late = (now - started).total_seconds() >= timeout_seconds
    if running and not late:
        phase = RUNNING
    elif len(done) == len(per_node):
        phase = DONE
    else:
        phase = INCOMPLETE
    cached = sum(n.bytes for n in per_node)
    parts = [f"version {version} on {len(done)}/{len(per_node)} nodes ({_size(cached)})"]
    if not per_node:
        parts = [f"version {version}: no serving pod runs on any node, nothing to prefetch"]
    for node in per_node:
        if node.phase not in (NODE_DONE, NODE_RUNNING):
            why = f" ({node.message})" if node.message else ""
            parts.append(f"{node.node}: {node.phase}{why}")
    if phase == INCOMPLETE and running:
        parts.append(f"not finished within {timeout_seconds:g}s")
    if phase == INCOMPLETE:
        parts.append("the pods on those nodes download it themselves")
    finished = None if phase == RUNNING else now
    if last is not None and last.version == version and last.finished is not None:
        finished = last.finished
    status = PrefetchStatus(
        version=version,
        phase=phase,
        started=started,
        finished=finished,
        message="; ".join(parts),
        nodes=per_node,
    )
    return PrefetchVerdict(version, status)


def finished(last: ModelDeploymentStatus, version: str) -> PrefetchVerdict | None:
    """The recorded end of the prefetch of `version`, if it ended: it is not asked again."""
    before = last.prefetch
    if before is None or before.version != version or before.phase == RUNNING:
        return None
    return PrefetchVerdict(version, before)


def _size(count: int) -> str:
    value, unit = float(count), "B"
    for larger in ("KiB", "MiB", "GiB", "TiB"):
        if value < 1024:
            break
        value, unit = value / 1024, larger
    return f"{count} B" if unit == "B" else f"{value:.1f} {unit}"


def serving_nodes(pods: list[dict[str, Any]]) -> list[str]:
    """The nodes the serving pods run on (those not being deleted): where to prefetch."""
    return sorted(
        {
            str(pod["spec"]["nodeName"])
            for pod in pods
            if (pod.get("spec") or {}).get("nodeName")
            and not (pod.get("metadata") or {}).get("deletionTimestamp")
        }
    )


def cache_addresses(pods: list[dict[str, Any]]) -> dict[str, str]:
    """Node -> IP of its model cache pod, for the cache pods that are Ready."""
    found = {}
    for pod in pods:
        node, address = (pod.get("spec") or {}).get("nodeName"), ready_address(pod)
        if node and address is not None:
            found[str(node)] = address
    return found


def equality_selector(selector: str) -> dict[str, str]:
    """`a=b,c=d` (config.model_cache_selector) as labels; ValueError for anything else."""
    labels = {}
    for part in filter(None, (p.strip() for p in selector.split(","))):
        key, sep, value = part.partition("=")
        if not sep or not key or "!" in key or value.startswith("="):
            raise ValueError(f"{selector!r}: only key=value,... selectors are supported")
        labels[key.strip()] = value.strip()
    return labels
