"""Decide, from spec, last status, registry and the observed Deployment, what to serve next.

Level-triggered: the decision depends only on these inputs, never on having seen an event, so a
restarted operator reaches the same decision. The Deployment's pod template (the version label)
is the record of what is being rolled out; its ledger annotations (ledger.py) and status hold
what served and what failed.

The promises kept here (docs/modeldeployment.md, "Guarantees"; checked by
tests/unit/core/test_rollout_model.py after every step of random histories):
- a version that failed is not deployed again while the registry still selects it;
- with autoRollback on, a failed rollout ends on the last good version; with it off, the
  template is not touched after a failure;
- a version is declared failed only by a deadline that its own template exceeded, and only
  when its pods got to run the model (not when the cluster never created or started them);
- whenever a good version is known, a serving Deployment exists.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from mlflow_operator.api.common import ConditionStatus
from mlflow_operator.api.modeldeployment import (
    GatesStatus,
    ModelDeploymentSpec,
    ModelDeploymentStatus,
    MonitoringStatus,
    PreflightStatus,
    RolloutRecord,
)
from mlflow_operator.core.conditions import READY, get_condition, set_condition
from mlflow_operator.core.modeldeployment.canary import ABORTED, CanaryPlan
from mlflow_operator.core.modeldeployment.conditions import (
    AS_EXPECTED,
    BUILDING_ENVIRONMENT,
    CANARY,
    CANARY_ABORTED,
    DEGRADED,
    DRIFTING,
    ENDPOINT_UNKNOWN,
    ENVIRONMENT_BUILT,
    ENVIRONMENT_FAILED,
    GATE_BLOCKED,
    NEW_VERSION,
    NO_VERSION,
    PODS_UNSCHEDULABLE,
    PREFETCH_INCOMPLETE,
    PREFETCHED,
    PREFETCHING,
    PROGRESSING,
    QUALITY_DEGRADED,
    RECREATING,
    REGISTRY_SYNCED,
    RESOLVED,
    ROLLING_BACK,
    ROLLING_OUT,
    ROLLOUT_BLOCKED,
    ROLLOUT_COMPLETE,
    ROLLOUT_FAILED,
    ROLLOUT_STARTED,
    ROLLOUT_SUCCEEDED,
    SERVING,
    SERVING_PREVIOUS_VERSION,
    SHADOW,
    SPEC_ROLLOUT_FAILED,
    SUSPENDED,
    VERSION_INCOMPATIBLE,
)
from mlflow_operator.core.modeldeployment.environment import BUILDING as ENVIRONMENT_BUILDING
from mlflow_operator.core.modeldeployment.environment import BUILT as ENVIRONMENT_BUILT_PHASE
from mlflow_operator.core.modeldeployment.environment import EnvironmentVerdict
from mlflow_operator.core.modeldeployment.gates import GateVerdict
from mlflow_operator.core.modeldeployment.ledger import RolloutLedger
from mlflow_operator.core.modeldeployment.monitoring import DriftVerdict
from mlflow_operator.core.modeldeployment.observation import DeploymentObservation
from mlflow_operator.core.modeldeployment.prefetch import DONE as PREFETCH_DONE
from mlflow_operator.core.modeldeployment.prefetch import RUNNING as PREFETCH_RUNNING
from mlflow_operator.core.modeldeployment.prefetch import PrefetchVerdict
from mlflow_operator.core.modeldeployment.preflight import INCOMPATIBLE, Preflight
from mlflow_operator.core.modeldeployment.quality import QualityVerdict
from mlflow_operator.core.modeldeployment.resolution import Resolution, Resolved, follows
from mlflow_operator.core.naming import model_uri
from mlflow_operator.core.registry_view import RegistryState

HISTORY_LIMIT = 10
Held = tuple[str, str]  # (condition reason, message): why a new version gets no pod


@dataclass(frozen=True)
class PlannedEvent:
    type: Literal["Normal", "Warning"]
    reason: str
    message: str


@dataclass(frozen=True)
class RolloutPlan:
    """What the reconcile does: which version the pod template pins, and the new status."""

    deploy_version: str | None  # None: nothing to serve, create no Deployment
    replace_in_place: bool  # maxSurge 0 / maxUnavailable 1: new pods cannot get GPUs otherwise
    status: ModelDeploymentStatus
    ledger: RolloutLedger = field(default_factory=RolloutLedger)  # annotations of the apply
    apply: bool = True  # False: leave the live Deployment exactly as it is
    events: tuple[PlannedEvent, ...] = ()
    succeeded_version: str | None = None  # a rollout finished now (tag it in MLflow)
    failed_version: str | None = None  # a rollout failed now (tag it in MLflow)
    rolling_out: bool = False  # something moves: look again soon
    gate_blocked: GateVerdict | None = None  # spec.gates blocked a version now (tag it in MLflow)
    incompatible: Preflight | None = None  # pre-flight refused a version now (tag it in MLflow)
    failure_message: str | None = None  # why failed_version failed, when not its deadline
    promoted_version: str | None = None  # a canary/shadow promotion finished now (setAlias)
    drift_detected: DriftVerdict | None = None  # features crossed thresholds.drift (tag it)
    quality_dropped: QualityVerdict | None = None  # crossed thresholds.quality now (tag it)


@dataclass
class _Draft:
    """The status being built, with the events that go with it."""

    status: ModelDeploymentStatus
    generation: int | None
    now: datetime
    events: list[PlannedEvent] = field(default_factory=list)

    def condition(self, type_: str, status: ConditionStatus, reason: str, message: str) -> None:
        self.status.conditions = set_condition(
            self.status.conditions,
            type_,
            status,
            reason=reason,
            message=message,
            generation=self.generation,
            now=self.now,
        )

    def event(self, type_: Literal["Normal", "Warning"], reason: str, message: str) -> None:
        self.events.append(PlannedEvent(type_, reason, message))

    def record(self, version: str, result: str, message: str | None = None) -> None:
        """Close the open history entry of version (or add one) with result."""
        history = self.status.history
        open_entry = next(
            (h for h in reversed(history) if h.version == version and h.result == "InProgress"),
            None,
        )
        if open_entry is None:
            # its start was not recorded (status lost): say so rather than invent a time
            open_entry = RolloutRecord(version=version, started=None, result="InProgress")
            history.append(open_entry)
        open_entry.result = result  # type: ignore[assignment]
        open_entry.finished = self.now
        open_entry.message = message
        del history[:-HISTORY_LIMIT]

    def start(self, version: str) -> None:
        for entry in self.status.history:
            if entry.result == "InProgress" and entry.version != version:
                entry.result = "Superseded"
                entry.finished = self.now
        if not any(h.version == version and h.result == "InProgress" for h in self.status.history):
            self.status.history.append(
                RolloutRecord(version=version, started=self.now, result="InProgress")
            )
        del self.status.history[:-HISTORY_LIMIT]


@dataclass
class _Record:
    """What is known about versions, merged from status and the Deployment's ledger."""

    failed: set[str]
    announced: set[str]  # failures some earlier reconcile decided (no second Event or tag)
    last_good: str | None


def _known(last: ModelDeploymentStatus, deployment: DeploymentObservation) -> _Record:
    """The ledger on the Deployment wins where it exists: it is written by every apply, so
    no status (lost, restored from an old backup, or not yet written) is newer than it.
    Status is the record when there is no Deployment (deleted) or it carries no ledger yet.
    What a status write recorded just before the operator died (before it could apply) is
    not lost either way: the failure or success is seen again on the live Deployment.
    """
    ledger = deployment.ledger if deployment.exists else None
    if ledger is None:
        failed = set(last.failed_versions)
        last_good = last.serving_version
    else:
        failed = set(ledger.failed_versions)
        last_good = ledger.last_good_version or last.serving_version
    return _Record(failed, failed | set(last.failed_versions), last_good)


def plan_rollout(  # noqa: PLR0917  (the inputs of one decision, all needed)
    spec: ModelDeploymentSpec,
    generation: int | None,
    last: ModelDeploymentStatus,
    registry: RegistryState,
    resolution: Resolution | None,
    deployment: DeploymentObservation,
    now: datetime,
    *,
    endpoint_known: bool = True,
    url: str | None = None,
    selector: str | None = None,
    gate: GateVerdict | None = None,
    preflight: Preflight | None = None,
    prefetch: PrefetchVerdict | None = None,
    environment: EnvironmentVerdict | None = None,
    canary: CanaryPlan | None = None,
    drift: DriftVerdict | None = None,
    quality: QualityVerdict | None = None,
) -> RolloutPlan:
    """The whole decision of one reconcile. Pure.

    `endpoint_known` False: the MLflow endpoint cannot be determined (the MLflowServer of
    serverRef is missing), so no correct pod template can be built; the live Deployment is
    left exactly as it is. A missing credentials Secret does not make it unknown: the pods
    name the Secret, they never hold its values. `url`: the Service's, shown in status while
    a version is deployed. `selector`: the serving pods' label selector, for the scale
    subresource. `gate`: spec.gates' verdict on the version the registry selects (None: no
    gates, or that version rolled out here already); a blocked one gets no pod. `preflight`:
    the pre-flight check of that version (None: not checked); an incompatible one gets no pod
    either (with spec.rollout.onIncompatible Fail it is also a failed version: failedVersions,
    the ledger, Degraded). `prefetch`: the copy of that version onto the nodes' model caches
    (serving.cache); while it runs, no pod moves either. `environment`: the build of that
    version's environment (serving.envManager uv): no pod of it while it builds, and none
    after its Job failed (held, as an incompatible one). `canary`: strategy Canary's move
    (core/modeldeployment/canary.py): while it holds, the template keeps what serves; an abort
    makes the version a failed one. `drift`: the judgement of the serving version's drift
    (serving.monitoring.drift; None: not judged now, status keeps the last one); `quality`:
    the judgement of its live quality from ground truth (serving.monitoring.quality; likewise).
    """
    draft = _Draft(last.model_copy(deep=True), generation, now)
    status = draft.status
    status.observed_generation = generation
    status.follows = follows(spec.model)
    _registry_conditions(draft, registry, resolution)

    _record_resolution(status, spec, resolution)
    target = status.target_version
    current = deployment.version if deployment.exists else None
    known = _known(last, deployment)
    # A failed version is blocked only while the registry still selects it.
    known.failed = {v for v in known.failed if v == target}

    succeeded = failed_now = None
    aborted = _aborted_canary(canary, known)
    if aborted is not None:
        failed_now = aborted[0]
    stuck: _Stuck | None = None  # past its deadline, but not the version's fault
    if current is not None and deployment.rollout_complete:
        succeeded = _complete(draft, known, current)
    elif (
        current is not None
        and current == target
        and deployment.deadline_exceeded
        and not spec.suspend
        and target not in known.failed
    ):
        stuck = _not_the_versions_fault(spec, deployment, current, known)
        if stuck is None:
            known.failed.add(target)
            if target not in known.announced:
                failed_now = target

    # Without a fresh answer from the registry, never move towards a version that only status
    # remembers (it may be old: restored from a backup, or written before a restart); keep what
    # the Deployment runs. Rollbacks and recreating a deleted Deployment still happen.
    steer, held, preparing = _past_holds(
        draft, spec, last, (gate, preflight, environment, prefetch),
        steer=target if isinstance(resolution, Resolved) else current, current=current,
    )  # fmt: skip
    held, incompatible_now = _past_incompatible(spec, status, preflight, held, known)
    failed_now = failed_now or incompatible_now
    if canary is not None:
        steer = _canary_moves(draft, canary, steer, current)
    deploy = _choose(spec, steer, current, known, endpoint_known=endpoint_known)
    failure_message = aborted[1] if aborted is not None else None
    if failed_now is not None:
        failure_message = _announce_failure(
            draft, spec, failed_now, deploy, deployment, why=failure_message,
            incompatible=preflight if failed_now == incompatible_now else None,
        )  # fmt: skip
    elif stuck is not None:
        _announce_stuck(draft, last, stuck)
    if endpoint_known and deploy is not None and deploy != current:
        _announce_change(draft, steer, known, deploy, current)

    status.failed_versions = sorted(known.failed)
    status.serving_version = known.last_good
    stays_failed = deploy is not None and deploy == current and deploy in known.failed
    rolling_out = (
        deploy is not None
        and (deploy != current or not deployment.rollout_complete)
        and not stays_failed
        and stuck is None
    )
    replace_in_place = (
        rolling_out
        and spec.serving.gpu.count > 0
        and bool(deployment.unschedulable_message)
        and deploy == current
    )
    decision = _Decision(
        deploy, current, stuck, rolling_out, stays_failed, endpoint_known, held=held,
        canary_progress=canary.progress if canary is not None and canary.hold else None,
        preparing=preparing,
    )  # fmt: skip
    _rollout_conditions(draft, spec, decision, deployment, known)
    status.model_uri = model_uri(spec.model.name, deploy) if deploy else None
    if deploy is not None and url is not None:
        status.url = url
    _record_pods(status, deployment, selector)
    _monitoring(draft, spec, drift, quality)
    return RolloutPlan(
        deploy_version=deploy,
        replace_in_place=replace_in_place,
        status=status,
        ledger=RolloutLedger(tuple(status.failed_versions), known.last_good),
        apply=endpoint_known,
        events=tuple(draft.events),
        succeeded_version=succeeded,
        failed_version=failed_now,
        failure_message=failure_message,
        rolling_out=rolling_out or (canary is not None and canary.running) or preparing is not None,
        gate_blocked=gate
        if _held_by(held, GATE_BLOCKED) and gate and _gate_news(last, gate)
        else None,
        incompatible=(
            preflight
            if _held_by(held, VERSION_INCOMPATIBLE)
            and preflight
            and not spec.rollout.incompatible_fails  # Fail: tagged as a failed version
            and _preflight_news(last, preflight)
            else None
        ),
        promoted_version=canary.promoted if canary is not None else None,
        drift_detected=drift if drift is not None and drift.newly_drifting else None,
        quality_dropped=quality if quality is not None and quality.dropped else None,
    )


def _record_pods(
    status: ModelDeploymentStatus, deployment: DeploymentObservation, selector: str | None
) -> None:
    status.replicas = deployment.replicas if deployment.exists else 0
    status.ready_replicas = deployment.ready_replicas if deployment.exists else 0
    status.selector = selector or status.selector


def _monitoring(
    draft: _Draft,
    spec: ModelDeploymentSpec,
    drift: DriftVerdict | None,
    quality: QualityVerdict | None,
) -> None:
    """status.monitoring and the Drifting and QualityDegraded conditions: gone when their
    part of monitoring is off, kept as they are when nothing was judged now."""
    status = draft.status
    kept = status.monitoring
    _drift_status(draft, spec, drift)
    if spec.serving.monitoring.quality is None:
        _drop_condition(status, QUALITY_DEGRADED)
        if status.monitoring is not None:
            status.monitoring.quality = None
        return
    if quality is None:  # not judged now: the last judgement stays
        if kept is not None and kept.quality is not None:
            if status.monitoring is None:
                status.monitoring = MonitoringStatus(version=kept.version)
            if status.monitoring.version == kept.version:
                status.monitoring.quality = kept.quality
        return
    if status.monitoring is None or status.monitoring.version != quality.version:
        # nothing, or another version's drift kept from before: the serving version's own
        status.monitoring = MonitoringStatus(version=quality.version)
    status.monitoring.quality = quality.status
    _judged(draft, QUALITY_DEGRADED, quality.condition, quality.events)


def _drift_status(draft: _Draft, spec: ModelDeploymentSpec, drift: DriftVerdict | None) -> None:
    status = draft.status
    if not spec.serving.monitoring.drift_enabled:
        _drop_condition(status, DRIFTING)
        status.monitoring = None
    elif drift is not None:
        status.monitoring = drift.status
        _judged(draft, DRIFTING, drift.condition, drift.events)


def _judged(
    draft: _Draft,
    type_: str,
    condition: tuple[ConditionStatus, str, str] | None,
    events: list[tuple[Literal["Normal", "Warning"], str, str]],
) -> None:
    """A monitoring judgement's condition (None: not judged, no threshold) and Events."""
    if condition is None:
        _drop_condition(draft.status, type_)
    else:
        draft.condition(type_, *condition)
    for kind, reason, message in events:
        draft.event(kind, reason, message)


def _drop_condition(status: ModelDeploymentStatus, type_: str) -> None:
    status.conditions = [c for c in status.conditions if c.type != type_]


def _record_resolution(
    status: ModelDeploymentStatus, spec: ModelDeploymentSpec, resolution: Resolution | None
) -> None:
    """What the registry selects, and why, into status (kept when it was not read now)."""
    if spec.model.selector is None:
        status.selection = None
    if isinstance(resolution, Resolved):
        status.target_version = resolution.version
        if resolution.run_id:
            status.run_id = resolution.run_id
        if resolution.selection:
            status.selection = resolution.selection


def _aborted_canary(canary: CanaryPlan | None, known: _Record) -> tuple[str, str] | None:
    """(version, why) of a canary aborted now, when that is news: the version is a failed one
    from now on."""
    if canary is None or canary.status is None or canary.aborted is None:
        return None
    version = canary.status.version
    known.failed.add(version)
    return None if version in known.announced else (version, canary.aborted)


def _canary_moves(
    draft: _Draft, canary: CanaryPlan, steer: str | None, current: str | None
) -> str | None:
    """Record the canary in status and history; the version the template pins (what serves,
    while the canary holds)."""
    draft.status.rollout = canary.status
    for type_, reason, message in canary.events:
        draft.event(type_, reason, message)
    if canary.status is not None and canary.hold:
        version = canary.status.version
        if not any(h.version == version and h.result == "InProgress" for h in draft.status.history):
            draft.start(version)
        return current
    return steer


def _past_holds(
    draft: _Draft,
    spec: ModelDeploymentSpec,
    last: ModelDeploymentStatus,
    checks: tuple[
        GateVerdict | None, Preflight | None, EnvironmentVerdict | None, PrefetchVerdict | None
    ],
    *,
    steer: str | None,
    current: str | None,
) -> tuple[str | None, Held | None, Held | None]:
    """What may keep a new version from its first pod, in order: spec.gates, the pre-flight
    check, the build of its environment, the prefetch onto the nodes' caches. (the version to
    steer to, why it is held back, (reason, how far) of the preparation that it waits for)."""
    gate, preflight, environment, prefetch = checks
    steer, held = _past_gates(draft, spec, last, gate, steer=steer, current=current)
    if held is None:
        steer, held = _past_preflight(draft, spec, last, preflight, steer=steer, current=current)
    if held is not None:
        return steer, held, None
    steer, held, building = _past_environment(
        draft, last, environment, steer=steer, current=current
    )
    if held is not None or building is not None:
        return steer, held, building
    steer, prefetching = _past_prefetch(draft, last, prefetch, steer=steer, current=current)
    return steer, None, None if prefetching is None else (PREFETCHING, prefetching)


def _past_environment(
    draft: _Draft,
    last: ModelDeploymentStatus,
    environment: EnvironmentVerdict | None,
    *,
    steer: str | None,
    current: str | None,
) -> tuple[str | None, Held | None, Held | None]:
    """(the version to steer to, why its failed build holds it back, (reason, how far) while
    it is built): serving.envManager uv builds a new version's environment before its first
    pod (core/modeldeployment/environment.py)."""
    if environment is None or environment.version != steer or steer == current:
        return steer, None, None
    status = environment.status
    draft.status.environment = status
    before = last.environment
    news = before is None or (before.version, before.job, before.phase) != (
        status.version, status.job, status.phase,
    )  # fmt: skip
    if news and status.phase == ENVIRONMENT_BUILDING:
        draft.event("Normal", BUILDING_ENVIRONMENT, status.message)
    elif news and status.phase == ENVIRONMENT_BUILT_PHASE:
        draft.event("Normal", ENVIRONMENT_BUILT, status.message)
    elif news:
        draft.event("Warning", ENVIRONMENT_FAILED, status.message)
    if environment.holds:
        return current, None, (BUILDING_ENVIRONMENT, status.message)
    if environment.failed:
        return current, (ENVIRONMENT_FAILED, status.message), None
    return steer, None, None


def _past_gates(
    draft: _Draft,
    spec: ModelDeploymentSpec,
    last: ModelDeploymentStatus,
    gate: GateVerdict | None,
    *,
    steer: str | None,
    current: str | None,
) -> tuple[str | None, Held | None]:
    """(the version to steer to, why spec.gates hold `steer` back or None); the verdict goes
    into status. A held version gets no pod: what serves keeps serving (a deleted Deployment
    returns on it)."""
    if spec.gates is None:
        draft.status.gates = None
        return steer, None
    if gate is None or gate.version != steer:
        return steer, None
    draft.status.gates = GatesStatus(
        version=gate.version, verdict=gate.verdict, message=gate.message
    )
    if gate.passed or steer == current:
        return steer, None
    if _gate_news(last, gate):
        draft.event("Warning", GATE_BLOCKED, gate.message)
    return current, (GATE_BLOCKED, gate.message)


def _past_preflight(
    draft: _Draft,
    spec: ModelDeploymentSpec,
    last: ModelDeploymentStatus,
    preflight: Preflight | None,
    *,
    steer: str | None,
    current: str | None,
) -> tuple[str | None, Held | None]:
    """As _past_gates, for the pre-flight check: an incompatible version gets no pod. With
    rollout.onIncompatible Fail, its failure is announced instead (_announce_incompatible)."""
    if preflight is None or preflight.version != steer:
        return steer, None
    draft.status.preflight = PreflightStatus(
        version=preflight.version,
        verdict=preflight.verdict,
        message=preflight.message,
        notes=list(preflight.notes),
    )
    if not preflight.blocks or steer == current:
        return steer, None
    message = _incompatible_message(preflight.version, preflight.message)
    if not spec.rollout.incompatible_fails and _preflight_news(last, preflight):
        draft.event("Warning", VERSION_INCOMPATIBLE, message)
    return current, (VERSION_INCOMPATIBLE, message)


def _incompatible_message(version: str, why: str) -> str:
    return f"version {version} cannot run on the serving image: {why}"


def _past_incompatible(
    spec: ModelDeploymentSpec,
    status: ModelDeploymentStatus,
    preflight: Preflight | None,
    held: Held | None,
    known: _Record,
) -> tuple[Held | None, str | None]:
    """(why the selected version is held, the version failed by the pre-flight check now).

    With rollout.onIncompatible Fail, the version the pre-flight check holds back is a failed
    one, remembered as any other (failedVersions, the ledger); it is returned when that is
    news (to announce and tag). A failed version is settled, so it is not checked again:
    status.preflight keeps why the image cannot run it, and it stays held for that reason.
    """
    if spec.rollout.incompatible_fails and _held_by(held, VERSION_INCOMPATIBLE):
        assert preflight is not None  # noqa: S101  (only the pre-flight check holds for this)
        known.failed.add(preflight.version)
        return held, None if preflight.version in known.announced else preflight.version
    target = status.target_version
    if held is None and target is not None and target in known.failed:
        return _remembered_incompatibility(status, target), None
    return held, None


def _incompatibility(status: ModelDeploymentStatus, version: str) -> str | None:
    """Why the serving image cannot run `version`, if status.preflight says it cannot."""
    verdict = status.preflight
    if verdict is None or verdict.version != version or verdict.verdict != INCOMPATIBLE:
        return None
    return verdict.message


def _remembered_incompatibility(status: ModelDeploymentStatus, version: str) -> Held | None:
    why = _incompatibility(status, version)
    return None if why is None else (VERSION_INCOMPATIBLE, _incompatible_message(version, why))


def _announce_incompatible(draft: _Draft, preflight: Preflight, deploy: str | None) -> str:
    """A version failed by the pre-flight check (rollout.onIncompatible Fail): one history
    entry (no start: it never got a pod) and one Warning. Returns why, for the MLflow tag."""
    why = f"incompatible with the serving image: {preflight.message}"
    draft.record(preflight.version, "Failed", why)
    serving = f"version {deploy} keeps serving" if deploy else "nothing serves"
    draft.event(
        "Warning", VERSION_INCOMPATIBLE,
        f"{_incompatible_message(preflight.version, preflight.message)}; a failed version "
        f"(rollout.onIncompatible: Fail); {serving}; it is not retried until the registry "
        "selects another version",
    )  # fmt: skip
    return why


def _past_prefetch(
    draft: _Draft,
    last: ModelDeploymentStatus,
    prefetch: PrefetchVerdict | None,
    *,
    steer: str | None,
    current: str | None,
) -> tuple[str | None, str | None]:
    """(the version to steer to, what the prefetch that holds it back is doing, or None): while
    the new version is copied onto the nodes' caches, the template keeps what serves."""
    if prefetch is None or prefetch.version != steer or steer == current:
        return steer, None
    status = prefetch.status
    draft.status.prefetch = status
    before = last.prefetch
    news = before is None or (before.version, before.phase) != (status.version, status.phase)
    if news and status.phase == PREFETCH_RUNNING:
        draft.event("Normal", PREFETCHING, f"prefetching {status.message}")
    elif news and status.phase == PREFETCH_DONE:
        draft.event("Normal", PREFETCHED, f"prefetched {status.message}")
    elif news:
        draft.event("Warning", PREFETCH_INCOMPLETE, f"prefetch incomplete: {status.message}")
    if prefetch.holds:
        return current, f"prefetching {status.message}"
    return steer, None


def _preflight_news(last: ModelDeploymentStatus, preflight: Preflight) -> bool:
    """One Event (and MLflow tag) per distinct verdict, not one per reconcile."""
    before = last.preflight
    return before is None or (before.version, before.verdict, before.message) != (
        preflight.version, preflight.verdict, preflight.message,
    )  # fmt: skip


def _held_by(held: Held | None, reason: str) -> bool:
    return held is not None and held[0] == reason


def _gate_news(last: ModelDeploymentStatus, gate: GateVerdict) -> bool:
    """One Event (and MLflow tag) per distinct verdict, not one per reconcile."""
    before = last.gates
    return before is None or (before.version, before.verdict, before.message) != (
        gate.version, gate.verdict, gate.message,
    )  # fmt: skip


def _choose(
    spec: ModelDeploymentSpec,
    target: str | None,
    current: str | None,
    known: _Record,
    *,
    endpoint_known: bool,
) -> str | None:
    """The version the pod template pins after this reconcile."""
    if not endpoint_known:
        return current  # no correct template can be built: touch nothing
    if spec.suspend or target is None:
        # A Deployment deleted meanwhile comes back on what last served.
        return current if current is not None else known.last_good
    if target not in known.failed:
        return target
    if current is None:
        # Deleted while a failed version is selected: serve the last good one, never the
        # failed one again (with nothing good known, nothing is served).
        return known.last_good
    rollback = spec.rollout.auto_rollback and known.last_good not in (None, target)
    if current == target and rollback:
        return known.last_good
    # autoRollback off: the failed version stays until the registry moves or a person acts;
    # already rolled back (or moved by a person): stay there.
    return current


def _announce_failure(
    draft: _Draft,
    spec: ModelDeploymentSpec,
    target: str,
    deploy: str | None,
    deployment: DeploymentObservation,
    *,
    why: str | None = None,
    incompatible: Preflight | None = None,
) -> str | None:
    """Record and announce the failure of `target`; returns why, when the MLflow tag says it
    (the rollout never reached its deadline)."""
    if incompatible is not None:  # rollout.onIncompatible Fail: it never got a pod
        return _announce_incompatible(draft, incompatible, deploy)
    if why is not None:  # its canary was aborted: the pods it had never served everyone
        draft.record(target, "RolledBack", why)
        back = f"traffic back on version {deploy}" if deploy else "nothing else serves"
        draft.event(
            "Warning", CANARY_ABORTED,
            f"{why}; {back}; it is not retried until the registry selects another version",
        )  # fmt: skip
        return why
    deadline = spec.rollout.progress_deadline_seconds
    # The pods go away with the rollback: what they showed is kept in the history entry.
    cause = deployment.pod_troubles[0] if deployment.pod_troubles else None
    not_available = f"version {target} was not available within {deadline}s" + (
        f" ({cause})" if cause else ""
    )
    if deploy is not None and deploy != target:
        draft.record(target, "RolledBack", cause)
        draft.event(
            "Warning",
            ROLLOUT_FAILED,
            f"{not_available}; rolling back to version {deploy}; it is not retried until the "
            "registry selects another version",
        )
        return None
    draft.record(target, "Failed", cause)
    why = (
        "autoRollback is off: it stays deployed until the registry selects another version"
        if not spec.rollout.auto_rollback
        else "no earlier version served"
    )
    draft.event("Warning", ROLLOUT_FAILED, f"{not_available}; {why}")
    return None


def _failure_cause(status: ModelDeploymentStatus, version: str) -> str | None:
    """What the failed rollout of version showed on its pods, as its history entry kept it."""
    return next(
        (
            h.message
            for h in reversed(status.history)
            if h.version == version and h.result in ("Failed", "RolledBack")
        ),
        None,
    )


@dataclass(frozen=True)
class _Stuck:
    """A rollout past its deadline that does not make its version a failed one."""

    reason: str  # RolloutBlocked | SpecRolloutFailed
    message: str


def _not_the_versions_fault(
    spec: ModelDeploymentSpec, deployment: DeploymentObservation, version: str, known: _Record
) -> _Stuck | None:
    """Why the deadline passed without the version being to blame, if that is so.

    The cluster kept the pods from running the model at all; or the version is the one that
    served last (known.last_good), so what did not become available is a new pod template of a
    spec change, not the version: blaming it would forbid the only version known to work.
    """
    if deployment.infrastructure_blocker:
        return _Stuck(ROLLOUT_BLOCKED, _blocked_message(version, deployment.infrastructure_blocker))
    if version == known.last_good:
        return _Stuck(
            SPEC_ROLLOUT_FAILED,
            f"the pods of the changed spec did not become available within "
            f"{spec.rollout.progress_deadline_seconds}s; version {version} served before and is "
            "not blamed; change the spec back or fix what keeps the new pods from starting",
        )
    return None


def _announce_stuck(draft: _Draft, last: ModelDeploymentStatus, stuck: _Stuck) -> None:
    """One Warning per distinct cause, not one per reconcile."""
    before = get_condition(last.conditions, DEGRADED)
    if before is None or (before.reason, before.message) != (stuck.reason, stuck.message):
        draft.event("Warning", stuck.reason, stuck.message)


def _blocked_message(version: str | None, blocker: str) -> str:
    return (
        f"the pods of version {version} never got to run the model: {blocker}; "
        "the version is not blamed and the rollout continues once this is fixed"
    )


def recreating(version: str, why: str) -> PlannedEvent:
    """The Event of a serving Deployment that a person (or a tool) deleted."""
    return PlannedEvent(
        "Normal", RECREATING, f"the serving Deployment {why}; recreating it on version {version}"
    )


def deployment_recreated(observed: dict[str, Any] | None, applied: dict[str, Any]) -> bool:
    """The apply created a new object: the one this reconcile observed was deleted meanwhile.

    The plan saw a Deployment and so announced nothing; without this the Deployment comes
    back in silence.
    """
    if observed is None:
        return False
    return bool(observed["metadata"].get("uid") != applied["metadata"].get("uid"))


def _announce_change(
    draft: _Draft, target: str | None, known: _Record, deploy: str, current: str | None
) -> None:
    recreating_good = current is None and deploy == known.last_good
    if deploy == target and target not in known.failed and not recreating_good:
        _start(draft, deploy, current)
    elif draft.events and draft.events[-1].reason == ROLLOUT_FAILED:
        pass  # the failure's Event already says where it goes
    elif current is None:
        event = recreating(deploy, "is missing")
        draft.event(event.type, event.reason, event.message)
    else:
        # the failure was decided before (e.g. by an operator that died before acting)
        draft.event("Normal", ROLLING_BACK, f"returning to version {deploy}")


def _registry_conditions(
    draft: _Draft, registry: RegistryState, resolution: Resolution | None
) -> None:
    if registry.last_sync is not None:
        draft.status.last_registry_sync = registry.last_sync
    if not registry.synced:
        draft.condition(
            REGISTRY_SYNCED,
            "False",
            registry.reason,
            f"cannot read the MLflow registry: {registry.error}; serving is unchanged",
        )
    elif resolution is None or isinstance(resolution, Resolved):
        version = resolution.version if resolution else draft.status.target_version
        draft.condition(
            REGISTRY_SYNCED, "True", RESOLVED, f"{draft.status.follows} is version {version}"
        )
    else:
        draft.condition(REGISTRY_SYNCED, "False", resolution.reason, resolution.message)


def _complete(draft: _Draft, known: _Record, version: str) -> str | None:
    """The Deployment serves `version` on every pod. Returns it when that is news."""
    status = draft.status
    # It became available after all (e.g. GPUs were freed): it is no longer a failed version.
    known.failed.discard(version)
    if known.last_good != version and _success_recorded(status, version):
        # Status recorded this success, and the operator stopped before the apply that carries
        # it to the Deployment's ledger: the news was told then (no second entry or Event).
        known.last_good = version
        return None
    if known.last_good == version:
        if any(h.version == version and h.result == "InProgress" for h in status.history):
            draft.record(version, "Succeeded")
        return None
    before = known.last_good
    if before is not None:
        status.previous_version = before
    known.last_good = version
    draft.record(version, "Succeeded")
    was = f" (was {before})" if before else ""
    draft.event("Normal", ROLLOUT_SUCCEEDED, f"serving version {version}{was}")
    return version


def _success_recorded(status: ModelDeploymentStatus, version: str) -> bool:
    latest = status.history[-1] if status.history else None
    return (
        status.serving_version == version
        and latest is not None
        and (latest.version, latest.result) == (version, "Succeeded")
    )


def _start(draft: _Draft, version: str, current: str | None) -> None:
    draft.start(version)
    if current is None:
        draft.event("Normal", ROLLOUT_STARTED, f"deploying version {version}")
    else:
        draft.event("Normal", ROLLOUT_STARTED, f"rolling out version {version} (was {current})")


@dataclass(frozen=True)
class _Decision:
    """Where this reconcile leaves the Deployment, for the conditions that describe it."""

    deploy: str | None  # the version the template pins after this reconcile
    current: str | None  # the version it pinned before
    stuck: _Stuck | None  # past the deadline, not the version's fault
    rolling_out: bool
    stays_failed: bool  # a failed version stays deployed (autoRollback off, or nothing older)
    endpoint_known: bool
    held: Held | None = None  # (reason, why) spec.gates or pre-flight hold the selected version
    canary_progress: str | None = None  # a canary runs beside what serves: how far it is
    # (reason, how far): the new version's environment is built, or it is copied to the
    # nodes' caches
    preparing: Held | None = None


def _rollout_conditions(
    draft: _Draft,
    spec: ModelDeploymentSpec,
    decision: _Decision,
    deployment: DeploymentObservation,
    known: _Record,
) -> None:
    _degraded(draft, spec, decision, known)
    _progressing(draft, spec, decision, deployment)
    _ready(draft, decision, deployment, known)


def _degraded(
    draft: _Draft, spec: ModelDeploymentSpec, decision: _Decision, known: _Record
) -> None:
    deploy = decision.deploy
    if known.failed:
        version = min(known.failed)
        cause = _failure_cause(draft.status, version)
        incompatible = _incompatibility(draft.status, version)
        rollout = draft.status.rollout
        reason = ROLLOUT_FAILED
        if incompatible is not None:  # failed by the pre-flight check: it never had a pod
            reason = VERSION_INCOMPATIBLE
            parts = [_incompatible_message(version, incompatible)]
        elif rollout is not None and rollout.phase == ABORTED and rollout.version == version:
            reason = CANARY_ABORTED
            parts = [f"version {version}: {cause or 'its canary was aborted'}"]
        else:
            parts = [
                f"version {version} did not become available within "
                f"{spec.rollout.progress_deadline_seconds}s" + (f" ({cause})" if cause else "")
            ]
        if deploy is None:
            parts.append("no earlier version served, so nothing is deployed")
        elif deploy == version and not spec.rollout.auto_rollback:
            parts.append("autoRollback is off: it stays deployed")
        elif deploy == version:
            parts.append("no earlier version served to roll back to")
        else:
            parts.append(f"serving version {deploy}")
        parts.append("waiting for the registry to select another version")
        draft.condition(DEGRADED, "True", reason, "; ".join(parts))
    elif decision.stuck is not None:
        draft.condition(DEGRADED, "True", decision.stuck.reason, decision.stuck.message)
    else:
        draft.condition(DEGRADED, "False", AS_EXPECTED, "no failed rollout")


def _progressing(
    draft: _Draft,
    spec: ModelDeploymentSpec,
    decision: _Decision,
    deployment: DeploymentObservation,
) -> None:
    deploy = decision.deploy
    if spec.suspend:
        draft.condition(PROGRESSING, "False", SUSPENDED, "suspended: the registry is not followed")
    elif decision.canary_progress is not None:
        trial = draft.status.rollout
        reason = SHADOW if trial is not None and trial.phase == SHADOW else CANARY
        draft.condition(PROGRESSING, "True", reason, decision.canary_progress)
    elif decision.preparing is not None:
        draft.condition(PROGRESSING, "True", *decision.preparing)
    elif decision.held is not None and not decision.rolling_out:
        draft.condition(PROGRESSING, "False", *decision.held)
    elif deploy is None:
        draft.condition(PROGRESSING, "False", NO_VERSION, "no version to deploy")
    elif decision.stays_failed:
        draft.condition(
            PROGRESSING, "False", ROLLOUT_FAILED, f"the rollout of version {deploy} failed"
        )
    elif decision.stuck is not None:
        draft.condition(PROGRESSING, "False", decision.stuck.reason, decision.stuck.message)
    elif decision.rolling_out:
        draft.condition(PROGRESSING, "True", *_progress(deploy, deployment))
    else:
        draft.condition(PROGRESSING, "False", ROLLOUT_COMPLETE, f"version {deploy} rolled out")


def _ready(
    draft: _Draft, decision: _Decision, deployment: DeploymentObservation, known: _Record
) -> None:
    deploy = decision.deploy
    if deploy is None:
        if not decision.endpoint_known:
            draft.condition(
                READY, "False", ENDPOINT_UNKNOWN,
                "no serving Deployment, and none can be built while the MLflow endpoint "
                "cannot be determined (see RegistrySynced)",
            )  # fmt: skip
        elif decision.held is not None:
            draft.condition(READY, "False", *decision.held)
        elif known.failed:
            draft.condition(
                READY, "False", NO_VERSION,
                f"version {min(known.failed)} failed and no earlier version served",
            )  # fmt: skip
        else:
            draft.condition(
                READY, "False", NO_VERSION, "waiting for the registry to resolve a version"
            )
    elif deploy == decision.current and deployment.rollout_complete:
        # a version the serving image cannot run never served: Serving says what does
        incompatible = _held_by(decision.held, VERSION_INCOMPATIBLE)
        reason = SERVING_PREVIOUS_VERSION if known.failed and not incompatible else SERVING
        draft.condition(READY, "True", reason, f"serving version {deploy}")
    elif decision.stays_failed:
        draft.condition(
            READY, "False", ROLLOUT_FAILED,
            f"version {deploy} failed to become available: {deployment.available_replicas}/"
            f"{deployment.desired_replicas} pods available",
        )  # fmt: skip
    elif decision.stuck is not None:
        draft.condition(READY, "False", decision.stuck.reason, decision.stuck.message)
    else:
        serving = known.last_good
        meanwhile = f"; version {serving} serves meanwhile" if serving and serving != deploy else ""
        draft.condition(READY, "False", ROLLING_OUT, f"rolling out version {deploy}{meanwhile}")


def _progress(version: str, deployment: DeploymentObservation) -> tuple[str, str]:
    if deployment.version == version and deployment.infrastructure_blocker:
        return ROLLOUT_BLOCKED, _blocked_message(version, deployment.infrastructure_blocker)
    if deployment.unschedulable_message:
        return (
            PODS_UNSCHEDULABLE,
            f"rolling out version {version}: new pods cannot be scheduled: "
            f"{deployment.unschedulable_message}",
        )
    # Counts only once the deployment controller has made a pod of this template: before it
    # observed the template, its counts are the previous version's ("1/1 pods updated" of the
    # old pods), and each count that changes is one more status write per rollout, which an
    # API server busy with a thousand rollouts answers last (docs/benchmarks.md).
    started = deployment.status_current and deployment.updated_replicas > 0
    if deployment.version != version or not (started or deployment.pod_troubles):
        return NEW_VERSION, f"rolling out version {version}"
    trouble = f"; {deployment.pod_troubles[0]}" if deployment.pod_troubles else ""
    return (
        ROLLING_OUT,
        f"rolling out version {version}: {deployment.updated_replicas}/"
        f"{deployment.desired_replicas} pods updated, {deployment.available_replicas} available"
        f"{trouble}",
    )
