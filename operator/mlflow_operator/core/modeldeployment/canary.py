"""Canary rollouts (spec.rollout.strategy: Canary), without a mesh. Pure.

The serving Deployment keeps the version that serves ("stable"); a second Deployment,
`<name>-canary`, runs the new version. Both carry the Service's selector labels, so kube-proxy
spreads requests over all their ready pods: the canary's share of the traffic is its share of
the pods. Each step adds canary pods (stable keeps its count, so capacity never drops), lasts at
least its pause and until the analysis has seen `minRequests` canary answers, and is judged on
the serving pods' own /metrics: the canary's share of failed answers against the stable
pods', and its p99 latency against theirs. A canary that fails `failureLimit` judgements is
aborted: its Deployment goes, and the version is a failed one (rollback that sticks). After
the last step the serving Deployment rolls to the version (a Replace of a version already
proven on real traffic), the canary pods serving until it is done.

Everything needed to resume lives in status.rollout, written before anything acts: an operator
killed mid-canary resumes at the same step, and never promotes an unjudged version.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from mlflow_operator.api.duration import parse_duration
from mlflow_operator.api.modeldeployment import (
    CanaryAnalysis,
    CanarySpec,
    CanaryStatus,
    ModelDeploymentSpec,
)
from mlflow_operator.core.modeldeployment.conditions import (
    CANARY,
    CANARY_ABORTED,
    CANARY_PROMOTED,
    CANARY_STEP,
    ROLLOUT_STARTED,
)

NORMAL: Literal["Normal"] = "Normal"

# status.rollout.phase (and CANARY, also Progressing's reason while the steps run)
PROMOTING = "Promoting"
PROMOTED = "Promoted"
ABORTED = "Aborted"
RUNNING = (CANARY, PROMOTING)


@dataclass(frozen=True)
class Traffic:
    """Answers counted by the pods of one track, summed from their /metrics."""

    requests: float = 0.0
    # answers that are not 2xx: MLflow's scoring protocol answers a model's exception with 400
    errors: float = 0.0
    buckets: Mapping[float, float] = field(default_factory=dict)  # le -> cumulative count

    def __add__(self, other: Traffic) -> Traffic:
        buckets = dict(self.buckets)
        for le, count in other.buckets.items():
            buckets[le] = buckets.get(le, 0.0) + count
        return Traffic(self.requests + other.requests, self.errors + other.errors, buckets)

    def p99(self) -> float | None:
        """The upper bound of the bucket that holds the 99th percentile (seconds); None with
        no answers. A bound, not an interpolation: the buckets are the resolution."""
        total = max(self.buckets.values(), default=0.0)
        if total <= 0:
            return None
        for le in sorted(self.buckets):
            if self.buckets[le] >= 0.99 * total:
                return le
        return math.inf


@dataclass(frozen=True)
class CanaryObservation:
    """The canary Deployment as the API server has it."""

    exists: bool = False
    version: str | None = None
    ready: int = 0
    deadline_exceeded: bool = False
    trouble: str | None = None  # what its pods show, when something keeps them from running


@dataclass(frozen=True)
class Judgement:
    verdict: Literal["Passed", "Failed", "Waiting"]
    message: str


@dataclass(frozen=True)
class CanaryPlan:
    """What strategy Canary decides in one reconcile."""

    status: CanaryStatus | None  # status.rollout after this reconcile
    canary_version: str | None = None  # the canary Deployment pins it (None: no canary Deployment)
    canary_replicas: int = 0
    hold: bool = False  # the serving Deployment keeps what it pins (a canary runs)
    aborted: str | None = None  # why the canary of status.version was aborted in this reconcile
    events: tuple[tuple[Literal["Normal", "Warning"], str, str], ...] = ()
    progress: str | None = None  # Progressing's message while a canary runs

    @property
    def running(self) -> bool:
        return self.status is not None and self.status.phase in RUNNING


def canary_pods(weight: int, stable: int) -> int:
    """Pods of the new version that are about `weight`% of all serving pods, the stable pods
    kept (at least one)."""
    return max(1, round(max(stable, 1) * weight / (100 - weight)))


def share(canary: int, stable: int) -> int:
    """The canary's percent of the serving pods, as kube-proxy spreads requests over them."""
    return round(100 * canary / (canary + stable)) if canary + stable else 0


def analysis_due(spec: ModelDeploymentSpec, last: CanaryStatus | None, now: datetime) -> bool:
    """Whether this reconcile should read the pods' metrics and judge the canary."""
    canary = spec.rollout.canary
    if canary is None or last is None or last.phase != CANARY:
        return False
    if last.last_analysis is None:
        return True
    interval = parse_duration(canary.analysis.interval)
    return now - last.last_analysis >= interval


def judge(analysis: CanaryAnalysis, canary: Traffic, stable: Traffic) -> Judgement:
    """One judgement of the canary's answers (since its pods started) against the limits.

    Before `minRequests` answers nothing passes, but a canary already fails when its failures
    so far would exceed the limit even if every answer up to `minRequests` succeeded: waiting
    for more answers could not change the verdict, only expose more callers.
    """
    # above the stable pods' own rate: malformed requests of a client fail on every pod
    usual = stable.errors / stable.requests if stable.requests else 0.0
    if canary.requests < analysis.min_requests:
        floor = canary.errors / analysis.min_requests
        if floor - usual > analysis.max_error_rate:
            return Judgement(
                "Failed",
                f"error rate at least {100 * floor:.1f}% over {analysis.min_requests} answers "
                f"({canary.errors:.0f} of the first {canary.requests:.0f} failed) > stable "
                f"{100 * usual:.1f}% + {100 * analysis.max_error_rate:g}%",
            )
        return Judgement(
            "Waiting", f"canary: {canary.requests:.0f}/{analysis.min_requests} requests"
        )
    rate = canary.errors / canary.requests
    p99, base = canary.p99(), stable.p99()
    latency = f"p99 {_ms(p99)}; stable p99 {_ms(base)}"
    ratio = p99 / base if p99 is not None and base else None
    if ratio is not None and math.isfinite(ratio):
        latency += f" ({ratio:.1f}x)"
    seen = (
        f"canary: {canary.requests:.0f} requests, {100 * rate:.1f}% errors "
        f"(stable {100 * usual:.1f}%), {latency}"
    )
    if rate - usual > analysis.max_error_rate:
        return Judgement(
            "Failed",
            f"error rate {100 * rate:.1f}% > stable {100 * usual:.1f}% + "
            f"{100 * analysis.max_error_rate:g}% ({seen})",
        )
    limit = analysis.max_p99_latency_ratio
    if limit is not None and ratio is not None and ratio > limit:
        return Judgement(
            "Failed", f"p99 latency {ratio:.1f}x the stable pods' > {limit:g}x ({seen})"
        )
    return Judgement("Passed", seen)


def _ms(seconds: float | None) -> str:
    if seconds is None:
        return "n/a"
    return "> the largest bucket" if math.isinf(seconds) else f"{seconds * 1000:g}ms"


@dataclass(frozen=True)
class CanaryInputs:
    """What one canary decision depends on."""

    # the version the registry selects (None: none, not read, or held back by spec.gates)
    target: str | None
    current: str | None  # the version the serving Deployment pins
    target_failed: bool  # that version failed before (never canaried again)
    synced: bool  # the registry was read now
    stable_pods: int  # the serving Deployment's desired count
    stable_complete: bool  # every serving pod runs `current` and is available
    canary: CanaryObservation
    judgement: Judgement | None  # None: no judgement in this reconcile


def plan_canary(  # noqa: PLR0911  (one return per situation, in the order they are checked)
    spec: ModelDeploymentSpec, last: CanaryStatus | None, inputs: CanaryInputs, now: datetime
) -> CanaryPlan:
    """The canary's next move. Pure; see the module's docstring for the flow."""
    canary = spec.rollout.canary
    if spec.rollout.strategy != CANARY or canary is None or spec.suspend:
        return CanaryPlan(status=None if last is not None and last.phase in RUNNING else last)
    running = last is not None and last.phase in RUNNING
    if not inputs.synced:
        # without a fresh registry answer nothing moves: the canary holds its step
        return _keep(last, canary) if running and last is not None else CanaryPlan(last)
    target, current = inputs.target, inputs.current
    if current is None or target is None or inputs.target_failed:
        # nothing serves yet (nothing to compare with: Replace), or nothing to canary
        if not running:
            return CanaryPlan(last)
        why = "it failed" if inputs.target_failed else "the registry selects no new version now"
        return _ended(last, why)
    if target == current:
        if last is not None and last.phase == PROMOTING and last.version == current:
            if inputs.stable_complete:
                return CanaryPlan(_with(last, phase=PROMOTED, canary_replicas=0, weight=100))
            return CanaryPlan(last, last.version, last.canary_replicas, progress=_promoting(last))
        if running:
            return _ended(last, f"the registry selects version {current} again")
        return CanaryPlan(last)
    if last is None or not running or last.version != target:
        return _start(canary, last, inputs, target, now)
    if last.phase == PROMOTING:  # the serving Deployment rolls to the version
        return CanaryPlan(last, last.version, last.canary_replicas, progress=_promoting(last))
    return _step(canary, last, inputs, now)


def _start(
    canary: CanarySpec,
    last: CanaryStatus | None,
    inputs: CanaryInputs,
    target: str,
    now: datetime,
) -> CanaryPlan:
    pods = canary_pods(canary.steps[0].weight, inputs.stable_pods)
    status = CanaryStatus(
        phase=CANARY,
        version=target,
        step=0,
        weight=share(pods, inputs.stable_pods),
        canary_replicas=pods,
        step_started=now,
    )
    events: list[tuple[Literal["Normal", "Warning"], str, str]] = []
    if last is not None and last.phase in RUNNING:
        events.append(("Normal", CANARY_ABORTED, _superseded(last, target)))
    message = (
        f"canary of version {target}: {status.weight}% ({pods} of {pods + inputs.stable_pods} "
        f"pods), step 1/{len(canary.steps)} (was {inputs.current})"
    )
    events.append(("Normal", ROLLOUT_STARTED, message))
    return CanaryPlan(status, target, pods, hold=True, events=tuple(events), progress=message)


def _superseded(last: CanaryStatus, target: str) -> str:
    return f"canary of version {last.version} ended: the registry selects version {target} now"


def _step(
    canary: CanarySpec, last: CanaryStatus, inputs: CanaryInputs, now: datetime
) -> CanaryPlan:
    status = last
    observed = inputs.canary
    if observed.deadline_exceeded:
        why = observed.trouble or "its pods did not become available in time"
        return _abort(status, f"canary aborted at {status.weight}%: {why}")
    if inputs.judgement is not None:
        failed = inputs.judgement.verdict == "Failed"
        status = _with(
            status,
            last_analysis=now,
            failures=status.failures + int(failed),
            analysis=f"{inputs.judgement.verdict}: {inputs.judgement.message}",
        )
        if status.failures >= canary.analysis.failure_limit:
            return _abort(status, f"canary aborted at {status.weight}%: {inputs.judgement.message}")
    step = canary.steps[status.step]
    ready = observed.ready >= status.canary_replicas
    seen = inputs.judgement.message if inputs.judgement is not None else ""
    passed = (
        inputs.judgement is not None
        and inputs.judgement.verdict == "Passed"
        and status.step_started is not None
        and now - status.step_started >= parse_duration(step.pause)
    )
    events: tuple[tuple[Literal["Normal", "Warning"], str, str], ...] = ()
    if ready and passed and status.step + 1 == len(canary.steps):
        status = _with(status, phase=PROMOTING)
        message = (
            f"canary of version {status.version} passed {len(canary.steps)} step(s): "
            f"promoting it to every pod ({seen})"
        )
        return CanaryPlan(
            status, status.version, status.canary_replicas,
            events=((NORMAL, CANARY_PROMOTED, message),), progress=_promoting(status),
        )  # fmt: skip
    if ready and passed:
        nxt = status.step + 1
        pods = canary_pods(canary.steps[nxt].weight, inputs.stable_pods)
        status = _with(
            status,
            step=nxt,
            canary_replicas=pods,
            weight=share(pods, inputs.stable_pods),
            step_started=now,
        )
        message = (
            f"version {status.version}: step {nxt + 1}/{len(canary.steps)}, {status.weight}% "
            f"({pods} pods); {seen}"
        )
        events = ((NORMAL, CANARY_STEP, message),)
    waiting = "" if ready else f"; {observed.ready}/{status.canary_replicas} canary pods ready"
    progress = (
        f"canary of version {status.version}: step {status.step + 1}/{len(canary.steps)}, "
        f"{status.weight}% ({status.canary_replicas} pods){waiting}"
        + (f"; {status.analysis}" if status.analysis else "")
    )
    return CanaryPlan(
        status, status.version, status.canary_replicas, hold=True, events=events,
        progress=progress,
    )  # fmt: skip


def _abort(status: CanaryStatus, why: str) -> CanaryPlan:
    return CanaryPlan(_with(status, phase=ABORTED, canary_replicas=0, weight=0), aborted=why)


def _ended(last: CanaryStatus | None, why: str) -> CanaryPlan:
    """A canary that ends without a verdict on its version (the registry moved on)."""
    assert last is not None  # noqa: S101  (callers check `running`)
    message = f"canary of version {last.version} ended: {why}"
    ended = _with(last, phase=ABORTED, canary_replicas=0, weight=0, analysis=message)
    return CanaryPlan(ended, events=(("Normal", CANARY_ABORTED, message),))


def _keep(last: CanaryStatus, canary: CanarySpec) -> CanaryPlan:
    """Registry unreadable: the canary holds its step (no judgement, no promotion)."""
    if last.phase == PROMOTING:
        return CanaryPlan(last, last.version, last.canary_replicas, progress=_promoting(last))
    progress = (
        f"canary of version {last.version} holds step {last.step + 1}/{len(canary.steps)} "
        "while the registry cannot be read"
    )
    return CanaryPlan(last, last.version, last.canary_replicas, hold=True, progress=progress)


def _with(status: CanaryStatus, **changes: Any) -> CanaryStatus:
    return status.model_copy(update=changes)


def _promoting(status: CanaryStatus) -> str:
    return f"promoting version {status.version} to every pod after its canary"
