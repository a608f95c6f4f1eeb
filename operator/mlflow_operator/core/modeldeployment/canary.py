"""Canary and shadow rollouts (spec.rollout.strategy: Canary, Shadow), without a mesh. Pure.

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

A shadow is the same flow with one step and no share of the answers: its pods, `<name>-shadow`,
are outside the Service; the serving pods copy `percent`% of the live requests to them (the
batched runtime's mirroring, serving/mlflow_operator_serve/mirror.py) and count how often the
two versions' predictions differ. It is judged like a canary on its own answers, and on that
disagreement when `maxDisagreementRate` is set.

Everything needed to resume lives in status.rollout, written before anything acts: an operator
killed mid-canary resumes at the same step, and never promotes an unjudged version.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal, TypeVar

from mlflow_operator.api.duration import parse_duration
from mlflow_operator.api.modeldeployment import (
    CanaryAnalysis,
    CanaryStatus,
    ModelDeploymentSpec,
    ShadowAnalysis,
)
from mlflow_operator.core.modeldeployment.conditions import (
    ALIAS_MOVED,
    CANARY,
    CANARY_ABORTED,
    CANARY_PROMOTED,
    CANARY_STEP,
    ROLLOUT_STARTED,
    SHADOW,
)

NORMAL: Literal["Normal"] = "Normal"

# status.rollout.phase (and CANARY, also Progressing's reason while the steps run)
PROMOTING = "Promoting"
PROMOTED = "Promoted"
ABORTED = "Aborted"
TRIALS = (CANARY, SHADOW)  # the phases in which the version is on trial
RUNNING = (*TRIALS, PROMOTING)
_K = TypeVar("_K")
# the runtime's outcomes of a copy both versions answered (mirror.py)
AGREED, DISAGREED = "agreed", "disagreed"


@dataclass(frozen=True)
class Traffic:
    """Answers counted by the pods of one track, summed from their /metrics."""

    requests: float = 0.0
    # answers that are not 2xx: MLflow's scoring protocol answers a model's exception with 400
    errors: float = 0.0
    buckets: Mapping[float, float] = field(default_factory=dict)  # le -> cumulative count
    # copies these pods sent to a shadow: (its version, outcome) -> count
    mirrored: Mapping[tuple[str, str], float] = field(default_factory=dict)

    def __add__(self, other: Traffic) -> Traffic:
        return Traffic(
            self.requests + other.requests,
            self.errors + other.errors,
            _summed(self.buckets, other.buckets),
            _summed(self.mirrored, other.mirrored),
        )

    def disagreement(self, version: str) -> tuple[float, float]:
        """(copies to `version` whose predictions differed, copies both versions answered)."""
        differed = self.mirrored.get((version, DISAGREED), 0.0)
        return differed, differed + self.mirrored.get((version, AGREED), 0.0)

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


def _summed(a: Mapping[_K, float], b: Mapping[_K, float]) -> dict[_K, float]:
    total = dict(a)
    for key, count in b.items():
        total[key] = total.get(key, 0.0) + count
    return total


@dataclass(frozen=True)
class Trial:
    """What strategy Canary or Shadow asks for, in one shape: a shadow is one step that
    copies `percent`% of the requests and answers none of them."""

    kind: str  # CANARY or SHADOW: status.rollout.phase while it runs
    steps: tuple[tuple[int, timedelta], ...]  # (canary: weight, shadow: percent copied; pause)
    analysis: CanaryAnalysis
    # a canary split by an HTTPRoute's weights (canary.httpRouteRef), not by its pod count
    routed: bool = False

    @property
    def noun(self) -> str:
        return self.kind.lower()

    def pods(self, step: int, stable: int) -> int:
        """The candidate's pods at `step`: a canary's share of all the pods; a shadow's share
        of the stable pods' capacity, as it answers that share of their requests."""
        weight = self.steps[step][0]
        if self.kind == SHADOW or self.routed:  # capacity for the share the route sends it
            return max(1, math.ceil(max(stable, 1) * weight / 100))
        return canary_pods(weight, stable)

    def weight(self, step: int, pods: int, stable: int) -> int:
        """Percent of the callers' answers that come from the candidate."""
        if self.kind == SHADOW:
            return 0
        return self.steps[step][0] if self.routed else share(pods, stable)


def trial_of(spec: ModelDeploymentSpec) -> Trial | None:
    """The trial the spec asks for; None for Replace, or while suspended."""
    rollout = spec.rollout
    if spec.suspend:
        return None
    if rollout.strategy == CANARY and rollout.canary is not None:
        steps = tuple((s.weight, parse_duration(s.pause)) for s in rollout.canary.steps)
        routed = rollout.canary.http_route_ref is not None
        return Trial(CANARY, steps, rollout.canary.analysis, routed)
    if rollout.strategy == SHADOW:
        shadow = rollout.shadow
        return Trial(SHADOW, ((shadow.percent, parse_duration(shadow.duration)),), shadow.analysis)
    return None


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
    disagreement_rate: float | None = None  # a shadow's, when any copy was compared


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
    promoted: str | None = None  # the version whose promotion finished in this reconcile
    # the canary's share in an HTTPRoute (canary.httpRouteRef): its step's weight once its pods
    # are ready for it, never before; 0 when no canary pod should get anything
    route_weight: int = 0

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
    """Whether this reconcile should read the pods' metrics and judge the canary or shadow."""
    trial = trial_of(spec)
    if trial is None or last is None or last.phase != trial.kind:
        return False
    if last.last_analysis is None:
        return True
    return now - last.last_analysis >= parse_duration(trial.analysis.interval)


def judge_shadow(
    analysis: ShadowAnalysis, shadow: Traffic, stable: Traffic, version: str
) -> Judgement:
    """A shadow's judgement: a canary's on its answers to the copies, then how often its
    predictions differed from the serving pods' (counted by them, per shadow version).

    Nothing passes before the serving pods compared `minRequests` copies sent to this version:
    they learn of a new shadow late (the kubelet refreshes the ConfigMap they mount on its pod
    sync), and until then the copies they send still name the version before it."""
    verdict = judge(analysis, shadow, stable, noun="shadow")
    differed, compared = stable.disagreement(version)
    rate = differed / compared if compared else None
    seen = (
        f"; predictions differ on {100 * rate:.1f}% ({differed:.0f} of {compared:.0f} compared)"
        if rate is not None
        else ""
    )
    if verdict.verdict == "Failed":
        return Judgement(verdict.verdict, verdict.message + seen, rate)
    if compared < analysis.min_requests:
        return Judgement(
            "Waiting",
            f"{verdict.message}; {compared:.0f}/{analysis.min_requests} copies to version "
            f"{version} compared",
            rate,
        )
    limit = analysis.max_disagreement_rate
    if rate is not None and limit is not None and rate > limit:
        return Judgement(
            "Failed",
            f"predictions differ on {100 * rate:.1f}% > {100 * limit:g}% "
            f"({differed:.0f} of {compared:.0f} compared)",
            rate,
        )
    return Judgement(verdict.verdict, verdict.message + seen, rate)


def judge(
    analysis: CanaryAnalysis, canary: Traffic, stable: Traffic, *, noun: str = "canary"
) -> Judgement:
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
            "Waiting", f"{noun}: {canary.requests:.0f}/{analysis.min_requests} requests"
        )
    rate = canary.errors / canary.requests
    p99, base = canary.p99(), stable.p99()
    latency = f"p99 {_ms(p99)}; stable p99 {_ms(base)}"
    ratio = p99 / base if p99 is not None and base else None
    if ratio is not None and math.isfinite(ratio):
        latency += f" ({ratio:.1f}x)"
    seen = (
        f"{noun}: {canary.requests:.0f} requests, {100 * rate:.1f}% errors "
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
    # why the canary's HTTPRoute (canary.httpRouteRef) could not be weighted, when it could not
    route_problem: str | None = None


def plan_canary(  # noqa: PLR0911  (one return per situation, in the order they are checked)
    spec: ModelDeploymentSpec, last: CanaryStatus | None, inputs: CanaryInputs, now: datetime
) -> CanaryPlan:
    """The next move of a canary or shadow. Pure; see the module's docstring for the flow."""
    trial = trial_of(spec)
    if trial is None:
        return CanaryPlan(status=None if last is not None and last.phase in RUNNING else last)
    running = last is not None and last.phase in RUNNING
    if not inputs.synced:
        # without a fresh registry answer nothing moves: the trial holds its step
        return _keep(last, trial) if running and last is not None else CanaryPlan(last)
    target, current = inputs.target, inputs.current
    if current is None or target is None or inputs.target_failed:
        # nothing serves yet (nothing to compare with: Replace), or nothing to try
        if not running:
            return CanaryPlan(last)
        why = "it failed" if inputs.target_failed else "the registry selects no new version now"
        return _ended(last, why)
    if target == current:
        if last is not None and last.phase == PROMOTING and last.version == current:
            if inputs.stable_complete:
                return _promoted(spec, last)
            return _promoting_plan(last)
        if running:
            return _ended(last, f"the registry selects version {current} again")
        return CanaryPlan(last)
    if last is None or not running or last.version != target:
        return _start(trial, last, inputs, target, now)
    if last.phase == PROMOTING:  # the serving Deployment rolls to the version
        return _promoting_plan(last)
    if last.phase != trial.kind:  # the strategy changed under a running trial: start over
        return _start(trial, last, inputs, target, now)
    return _step(trial, last, inputs, now)


def _start(
    trial: Trial,
    last: CanaryStatus | None,
    inputs: CanaryInputs,
    target: str,
    now: datetime,
) -> CanaryPlan:
    pods = trial.pods(0, inputs.stable_pods)
    status = CanaryStatus(
        phase=trial.kind,
        version=target,
        step=0,
        weight=trial.weight(0, pods, inputs.stable_pods),
        canary_replicas=pods,
        step_started=now,
    )
    events: list[tuple[Literal["Normal", "Warning"], str, str]] = []
    if last is not None and last.phase in RUNNING:
        why = (
            f"the strategy is {trial.kind} now"
            if last.version == target
            else f"the registry selects version {target} now"
        )
        events.append(
            ("Normal", CANARY_ABORTED, f"{_noun(last)} of version {last.version} ended: {why}")
        )
    if trial.kind == SHADOW:
        message = (
            f"shadow of version {target}: {trial.steps[0][0]}% of the requests copied to {pods} "
            f"pod(s), answers never returned (serving: {inputs.current})"
        )
    else:
        split = (
            f"{pods} pod(s), by the HTTPRoute's weights"
            if trial.routed
            else f"{pods} of {pods + inputs.stable_pods} pods"
        )
        message = (
            f"canary of version {target}: {status.weight}% ({split}), step 1/{len(trial.steps)} "
            f"(was {inputs.current})"
        )
    events.append(("Normal", ROLLOUT_STARTED, message))
    return CanaryPlan(status, target, pods, hold=True, events=tuple(events), progress=message)


def _noun(status: CanaryStatus) -> str:
    return "shadow" if status.phase == SHADOW else "canary"


def _step(trial: Trial, last: CanaryStatus, inputs: CanaryInputs, now: datetime) -> CanaryPlan:
    status = last
    observed = inputs.canary
    at = f"{trial.noun} aborted" + ("" if trial.kind == SHADOW else f" at {status.weight}%")
    if observed.deadline_exceeded:
        why = observed.trouble or "its pods did not become available in time"
        return _abort(status, f"{at}: {why}")
    if inputs.judgement is not None:
        failed = inputs.judgement.verdict == "Failed"
        status = _with(
            status,
            last_analysis=now,
            failures=status.failures + int(failed),
            analysis=f"{inputs.judgement.verdict}: {inputs.judgement.message}",
            disagreement_rate=inputs.judgement.disagreement_rate,
        )
        if status.failures >= trial.analysis.failure_limit:
            return _abort(status, f"{at}: {inputs.judgement.message}")
    ready = observed.ready >= status.canary_replicas
    seen = inputs.judgement.message if inputs.judgement is not None else ""
    passed = (
        inputs.judgement is not None
        and inputs.judgement.verdict == "Passed"
        and status.step_started is not None
        and now - status.step_started >= trial.steps[status.step][1]
    )
    events: tuple[tuple[Literal["Normal", "Warning"], str, str], ...] = ()
    if ready and passed and status.step + 1 == len(trial.steps):
        status = _with(status, phase=PROMOTING)
        if trial.kind == SHADOW:
            message = f"shadow of version {status.version} passed: promoting it to every pod"
        else:
            message = (
                f"canary of version {status.version} passed {len(trial.steps)} step(s): "
                "promoting it to every pod"
            )
        return CanaryPlan(
            status, status.version, status.canary_replicas,
            events=((NORMAL, CANARY_PROMOTED, f"{message} ({seen})"),),
            progress=_promoting(status), route_weight=status.weight,
        )  # fmt: skip
    if ready and passed:
        nxt = status.step + 1
        pods = trial.pods(nxt, inputs.stable_pods)
        status = _with(
            status,
            step=nxt,
            canary_replicas=pods,
            weight=trial.weight(nxt, pods, inputs.stable_pods),
            step_started=now,
        )
        message = (
            f"version {status.version}: step {nxt + 1}/{len(trial.steps)}, {status.weight}% "
            f"({pods} pods); {seen}"
        )
        events = ((NORMAL, CANARY_STEP, message),)
    waiting = (
        "" if ready else f"; {observed.ready}/{status.canary_replicas} {trial.noun} pods ready"
    )
    if trial.kind == SHADOW:
        where = f"{trial.steps[0][0]}% of the requests copied to {status.canary_replicas} pod(s)"
    else:
        where = (
            f"step {status.step + 1}/{len(trial.steps)}, {status.weight}% "
            f"({status.canary_replicas} pods)"
        )
    progress = (
        f"{trial.noun} of version {status.version}: {where}{waiting}"
        + (f"; {status.analysis}" if status.analysis else "")
        + (f"; weights not set: {inputs.route_problem}" if inputs.route_problem else "")
    )
    # a step up waits for its pods before the route sends them its share
    earlier = trial.steps[status.step - 1][0] if status.step > 0 else 0
    ready_now = observed.ready >= status.canary_replicas
    return CanaryPlan(
        status, status.version, status.canary_replicas, hold=True, events=events,
        progress=progress, route_weight=status.weight if ready_now else earlier,
    )  # fmt: skip


def _promoted(spec: ModelDeploymentSpec, last: CanaryStatus) -> CanaryPlan:
    """Every pod serves the version its trial proved; the registry hears of it (setAlias)."""
    events: tuple[tuple[Literal["Normal", "Warning"], str, str], ...] = ()
    alias = spec.promote.set_alias if spec.promote is not None else None
    if alias is not None:
        message = f"moving MLflow alias {alias!r} to version {last.version} (promote.setAlias)"
        events = ((NORMAL, ALIAS_MOVED, message),)
    status = _with(last, phase=PROMOTED, canary_replicas=0, weight=100)
    return CanaryPlan(status, events=events, promoted=last.version)


def _abort(status: CanaryStatus, why: str) -> CanaryPlan:
    return CanaryPlan(_with(status, phase=ABORTED, canary_replicas=0, weight=0), aborted=why)


def _ended(last: CanaryStatus | None, why: str) -> CanaryPlan:
    """A trial that ends without a verdict on its version (the registry moved on)."""
    assert last is not None  # noqa: S101  (callers check `running`)
    message = f"{_noun(last)} of version {last.version} ended: {why}"
    ended = _with(last, phase=ABORTED, canary_replicas=0, weight=0, analysis=message)
    return CanaryPlan(ended, events=(("Normal", CANARY_ABORTED, message),))


def _keep(last: CanaryStatus, trial: Trial) -> CanaryPlan:
    """Registry unreadable: the trial holds its step (no judgement, no promotion)."""
    if last.phase == PROMOTING:
        return _promoting_plan(last)
    progress = (
        f"{_noun(last)} of version {last.version} holds step {last.step + 1}/{len(trial.steps)} "
        "while the registry cannot be read"
    )
    return CanaryPlan(
        last, last.version, last.canary_replicas, hold=True, progress=progress,
        route_weight=last.weight,
    )  # fmt: skip


def _with(status: CanaryStatus, **changes: Any) -> CanaryStatus:
    return status.model_copy(update=changes)


def _promoting_plan(last: CanaryStatus) -> CanaryPlan:
    """The serving Deployment rolls to the version; the canary pods serve until it is done."""
    return CanaryPlan(
        last, last.version, last.canary_replicas, progress=_promoting(last),
        route_weight=last.weight,
    )  # fmt: skip


def _promoting(status: CanaryStatus) -> str:
    return f"promoting version {status.version} to every pod after its trial"
