"""How many serving pods the load wants: the operator's own autoscaler (serving.autoscaling).

Why the operator and not a HorizontalPodAutoscaler: an HPA on these metrics needs Prometheus
and a custom-metrics adapter, which most clusters that serve a few models do not run. The
batched runtime already counts its requests in flight, its queue and its answers; the operator
reads them from the pods' /metrics (reconcilers/, the scrape) and decides here, as an HPA
would: the average per ready pod against the target, a 10 % tolerance band, more pods at once,
fewer only after the load has wanted fewer for scaleDownDelay. `kubectl scale` and HPAs still
work without `autoscaling` (the scale subresource).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime

from mlflow_operator.api.duration import parse_duration
from mlflow_operator.api.modeldeployment import AutoscalingSpec, AutoscalingStatus

TOLERANCE = 0.1  # as the HPA's default: no change while the load is within 10 % of target


@dataclass(frozen=True)
class PodLoad:
    """One ready pod's load metrics, as its /metrics showed them."""

    pod: str
    in_flight: float  # mlflow_serving_in_flight_requests
    queue_depth: float  # mlflow_serving_queue_depth
    answered: float  # mlflow_serving_requests_total, all statuses: grows while the pod lives


@dataclass(frozen=True)
class LoadSample:
    at: datetime
    pods: tuple[PodLoad, ...]  # the ready pods that answered


@dataclass(frozen=True)
class Load:
    per_pod: float
    pods: int
    metric: str  # concurrency | queueDepth | requestsPerSecond
    target: int

    def describe(self) -> str:
        return f"{self.metric} {self.per_pod:.1f}/pod over {self.pods} pods (target {self.target})"


def measured_load(spec: AutoscalingSpec, now: LoadSample, before: LoadSample | None) -> Load | None:
    """The average load per ready pod in the target's metric; None when it cannot be known
    (no pod answered; for a rate, no earlier sample of the same pods)."""
    target = spec.target
    pods = now.pods
    if not pods:
        return None
    if target.concurrency is not None:
        average = sum(p.in_flight for p in pods) / len(pods)
        return Load(average, len(pods), "concurrency", target.concurrency)
    if target.queue_depth is not None:
        average = sum(p.queue_depth for p in pods) / len(pods)
        return Load(average, len(pods), "queueDepth", target.queue_depth)
    assert target.requests_per_second is not None  # noqa: S101  (the API: exactly one)
    if before is None or now.at <= before.at:
        return None
    seconds = (now.at - before.at).total_seconds()
    earlier = {p.pod: p.answered for p in before.pods}
    # a pod seen once has no rate yet; a counter that went back is a restarted container
    rates = [
        (p.answered - earlier[p.pod]) / seconds
        for p in pods
        if p.pod in earlier and p.answered >= earlier[p.pod]
    ]
    if not rates:
        return None
    return Load(
        sum(rates) / len(rates), len(rates), "requestsPerSecond", target.requests_per_second
    )


def wanted_replicas(spec: AutoscalingSpec, current: int, load: Load | None) -> int:
    """The count this load wants now, within [minReplicas, maxReplicas]."""
    if load is None:
        return _clamp(spec, current)
    ratio = load.per_pod / load.target
    if abs(ratio - 1) <= TOLERANCE:
        return _clamp(spec, current)
    return _clamp(spec, math.ceil(load.pods * ratio))


def decide_replicas(
    spec: AutoscalingSpec,
    last: AutoscalingStatus | None,
    fallback: int,
    load: Load | None,
    *,
    busy_since: datetime | None,
    now: datetime,
) -> tuple[AutoscalingStatus, datetime]:
    """(the decision, when the load last wanted the current count or more).

    `fallback`: the count before autoscaling decided anything (spec.serving.replicas).
    `busy_since` lives in the operator's memory only: after a restart scale-down waits a full
    delay again, the safe side, and status is not rewritten on every sample.
    """
    current = last.desired_replicas if last is not None else fallback
    wanted = wanted_replicas(spec, current, load)
    clamped = _clamp(spec, current)
    described = load.describe() if load is not None else (last.load if last else None)
    last_scale = last.last_scale_time if last is not None else None
    if wanted >= clamped or busy_since is None:
        busy_since = now  # nothing to wait for yet: the delay starts now
    delay = parse_duration(spec.scale_down_delay)
    if wanted > clamped or (wanted < clamped and now - busy_since >= delay):
        decided, busy_since = wanted, now
    else:
        decided = clamped
    if decided != current:
        last_scale = now
    return AutoscalingStatus(
        desired_replicas=decided, load=described, last_scale_time=last_scale
    ), busy_since


def _clamp(spec: AutoscalingSpec, replicas: int) -> int:
    return max(spec.min_replicas, min(spec.max_replicas, replicas))
