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
    # no pod answered a request since the sample before, none holds or queues one: only an
    # idle load may take the count to zero (an instant with nothing in flight is not idle)
    idle: bool = False

    def describe(self) -> str:
        return f"{self.metric} {self.per_pod:.1f}/pod over {self.pods} pods (target {self.target})"


def measured_load(spec: AutoscalingSpec, now: LoadSample, before: LoadSample | None) -> Load | None:
    """The average load per ready pod in the target's metric; None when it cannot be known
    (no pod answered; for a rate, no earlier sample of the same pods)."""
    target = spec.target
    pods = now.pods
    if not pods:
        return None
    idle = _idle(now, before)
    if target.concurrency is not None:
        average = sum(p.in_flight for p in pods) / len(pods)
        return Load(average, len(pods), "concurrency", target.concurrency, idle)
    if target.queue_depth is not None:
        average = sum(p.queue_depth for p in pods) / len(pods)
        return Load(average, len(pods), "queueDepth", target.queue_depth, idle)
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
        sum(rates) / len(rates), len(rates), "requestsPerSecond", target.requests_per_second, idle
    )


def _idle(now: LoadSample, before: LoadSample | None) -> bool:
    if before is None:
        return False
    earlier = {p.pod: p.answered for p in before.pods}
    return all(
        p.pod in earlier and p.answered == earlier[p.pod] and p.in_flight == 0 == p.queue_depth
        for p in now.pods
    )


def wanted_replicas(spec: AutoscalingSpec, current: int, load: Load | None) -> int:
    """The count this load wants now, within [minReplicas, maxReplicas]; zero only for an
    idle load (minReplicas 0)."""
    if load is None:
        return _clamp(spec, current)
    ratio = load.per_pod / load.target
    if abs(ratio - 1) <= TOLERANCE:
        return _clamp(spec, current)
    wanted = _clamp(spec, math.ceil(load.pods * ratio))
    return wanted if wanted > 0 or load.idle else 1


def decide_replicas(
    spec: AutoscalingSpec,
    last: AutoscalingStatus | None,
    fallback: int,
    load: Load | None,
    *,
    busy_since: datetime | None,
    now: datetime,
    floor: int = 0,
    settling: bool = False,
) -> tuple[AutoscalingStatus, datetime]:
    """(the decision, when the load last wanted the current count or more).

    `fallback`: the count before autoscaling decided anything (spec.serving.replicas).
    `busy_since` lives in the operator's memory only: after a restart scale-down waits a full
    delay again, the safe side, and status is not rewritten on every sample.
    `floor`: the fewest pods whatever the load (1 while requests wait at the activator for a
    pod, or while a new version must prove itself on one). `settling`: a pod is still
    starting or loading its model: nothing is removed until it is ready (the ReplicaSet
    would remove that pod first, and with it the load it is about to take).
    """
    current = last.desired_replicas if last is not None else fallback
    wanted = max(wanted_replicas(spec, current, load), floor)
    clamped = max(_clamp(spec, current), floor)
    described = load.describe() if load is not None else (last.load if last else None)
    last_scale = last.last_scale_time if last is not None else None
    if wanted >= clamped or busy_since is None:
        busy_since = now  # nothing to wait for yet: the delay starts now
    delay = parse_duration(spec.scale_down_delay)
    if wanted > clamped or (wanted < clamped and now - busy_since >= delay and not settling):
        decided, busy_since = wanted, now
    else:
        decided = clamped
    if decided != current:
        last_scale = now
    return AutoscalingStatus(
        desired_replicas=decided, load=described, last_scale_time=last_scale
    ), busy_since


def rollout_needs_a_pod(
    serving: str | None, failed: list[str], target: str | None, template: str | None
) -> bool:
    """A version other than the serving one is, or is about to be, rolled out: it proves
    itself on a pod, so scale to zero waits (a Deployment of zero pods "completes" any rollout
    without loading the model)."""
    return any(v is not None and v != serving and v not in failed for v in (target, template))


def scale_message(
    last: AutoscalingStatus | None, fallback: int, decision: AutoscalingStatus
) -> str | None:
    """The Scaled Event's message when `decision` changes the count in effect, else None.

    The count in effect is status's, or spec.serving.replicas before status has one: a first
    decision whose status write was refused (409) is made again from no status with the load
    known by then, and that change must be announced too.
    """
    before = last.desired_replicas if last is not None else fallback
    if decision.desired_replicas == before:
        return None
    why = f"for {decision.load}" if decision.load else "within minReplicas and maxReplicas"
    return f"{before} -> {decision.desired_replicas} pods {why}"


def _clamp(spec: AutoscalingSpec, replicas: int) -> int:
    return max(spec.min_replicas, min(spec.max_replicas, replicas))
