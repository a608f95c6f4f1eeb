"""What the operator observed of a ModelDeployment's serving Deployment: plain frozen data.

The reconciler reads the Deployment (and, while some pods are unavailable, its pods); the
functions here fold those objects into facts. Judging the facts is the rollout core's job.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from mlflow_operator.api.modeldeployment import ModelDeploymentStatus
from mlflow_operator.core.modeldeployment.ledger import RolloutLedger, read_ledger
from mlflow_operator.core.naming import LABEL_MODEL_VERSION
from mlflow_operator.core.redact import redact

# Container states in which a pod never got to load the model: the cause is the cluster, the
# image or the pod's configuration, never the model version.
INFRASTRUCTURE_WAITING_REASONS = frozenset(
    {
        "ErrImagePull",
        "ImagePullBackOff",
        "InvalidImageName",
        "ErrImageNeverPull",
        "CreateContainerConfigError",
        "CreateContainerError",
    }
)


@dataclass(frozen=True)
class DeploymentObservation:
    exists: bool = False
    version: str | None = None  # the model version pinned in the pod template
    desired_replicas: int = 0
    status_current: bool = False  # status.observedGeneration covers the latest template
    replicas: int = 0  # all pods, old and new
    updated_replicas: int = 0
    ready_replicas: int = 0
    available_replicas: int = 0
    progress_deadline_exceeded: bool = False  # the Progressing condition, whatever it is about
    unschedulable_message: str = ""  # why a new pod cannot be scheduled, if one cannot
    replica_failure: str = ""  # ReplicaFailure/FailedCreate: pods could not even be created
    waiting_pods: tuple[str, ...] = ()  # pods of the template stuck before the model could load
    pod_troubles: tuple[str, ...] = ()  # why pods of the template that did run are not ready
    ledger: RolloutLedger | None = None  # the operator's record on the Deployment, if any

    @property
    def rollout_complete(self) -> bool:
        """Every pod runs the current template and is available (`kubectl rollout status`)."""
        return (
            self.exists
            and self.status_current
            and self.updated_replicas == self.desired_replicas
            and self.replicas == self.desired_replicas
            and self.available_replicas >= self.desired_replicas
        )

    @property
    def deadline_exceeded(self) -> bool:
        """The progress deadline passed for the template the Deployment has now.

        Before the controller observed the latest generation, its Progressing condition is
        about an earlier template (another version): it says nothing about this one.
        """
        return self.exists and self.status_current and self.progress_deadline_exceeded

    @property
    def infrastructure_blocker(self) -> str:
        """Why the template's pods never got to run the model, when the cluster is the cause."""
        if self.replica_failure:
            return self.replica_failure
        return self.waiting_pods[0] if self.waiting_pods else ""


def observe_deployment(
    deployment: dict[str, Any] | None,
    pods: Sequence[dict[str, Any]] = (),
    *,
    spec_generation: int | None = None,
) -> DeploymentObservation:
    """Fold a Deployment object (and its pods, when they were listed) into an observation.

    `spec_generation` is the generation at which the spec last changed, when the caller knows
    that the writes since changed annotations only. The API server bumps a Deployment's
    generation for annotations too (they are copied to its ReplicaSets), so the rollout
    ledger written after a rollout succeeded made it look unobserved, and not complete, until
    the controller caught up: Ready flapped to False after every successful rollout.
    """
    if deployment is None:
        return DeploymentObservation()
    spec = deployment.get("spec") or {}
    status = deployment.get("status") or {}
    meta = deployment.get("metadata") or {}
    labels = ((spec.get("template") or {}).get("metadata") or {}).get("labels") or {}
    version = labels.get(LABEL_MODEL_VERSION)
    conditions = status.get("conditions") or []
    exceeded = any(
        c.get("type") == "Progressing" and c.get("reason") == "ProgressDeadlineExceeded"
        for c in conditions
    )
    failure = next(
        (
            f"{c.get('reason', 'FailedCreate')}: {c.get('message', '')}".rstrip(": ")
            for c in conditions
            if c.get("type") == "ReplicaFailure" and c.get("status") == "True"
        ),
        "",
    )
    return DeploymentObservation(
        exists=True,
        version=version,
        desired_replicas=int(spec.get("replicas", 1)),
        status_current=int(status.get("observedGeneration", 0))
        >= min(int(meta.get("generation", 0)), spec_generation or int(meta.get("generation", 0))),
        replicas=int(status.get("replicas", 0)),
        updated_replicas=int(status.get("updatedReplicas", 0)),
        ready_replicas=int(status.get("readyReplicas", 0)),
        available_replicas=int(status.get("availableReplicas", 0)),
        progress_deadline_exceeded=exceeded,
        unschedulable_message=next(iter(_unschedulable(pods)), ""),
        replica_failure=failure,
        waiting_pods=tuple(_waiting(pods, version)),
        pod_troubles=tuple(_troubles(pods, version)),
        ledger=read_ledger(meta.get("annotations"), meta.get("labels")),
    )


def _unschedulable(pods: Sequence[dict[str, Any]]) -> list[str]:
    return [
        str(c.get("message", ""))
        for pod in pods
        for c in (pod.get("status") or {}).get("conditions") or []
        if c.get("type") == "PodScheduled" and c.get("reason") == "Unschedulable"
    ]


def _waiting(pods: Sequence[dict[str, Any]], version: str | None) -> list[str]:
    """`pod <name>: <reason>: <message>` of the template's pods stuck before the model loads."""
    found = []
    for pod in pods:
        meta = pod.get("metadata") or {}
        if (meta.get("labels") or {}).get(LABEL_MODEL_VERSION) != version:
            continue  # a pod of another version says nothing about this one
        status = pod.get("status") or {}
        for container in [
            *(status.get("initContainerStatuses") or []),
            *(status.get("containerStatuses") or []),
        ]:
            waiting = (container.get("state") or {}).get("waiting") or {}
            reason = waiting.get("reason", "")
            if reason in INFRASTRUCTURE_WAITING_REASONS:
                message = waiting.get("message", "")
                found.append(
                    f"pod {meta.get('name', '?')}: {reason}" + (f": {message}" if message else "")
                )
    return found


# How much of a crashed container's termination message (the last lines of its log: the
# serving container has terminationMessagePolicy FallbackToLogsOnError) goes into a message.
TAIL_LINES = 3
TAIL_CHARS = 300


def _troubles(pods: Sequence[dict[str, Any]], version: str | None) -> list[str]:
    """`pod <name>: <what>` for each pod of the template that ran but is not ready, worst first.

    An out-of-memory kill (with the limit), a crash loop (with the exit code and the last log
    lines), then a container whose startup probe has not passed: the model is still loading.
    """
    ranked: list[tuple[int, str]] = []
    for pod in pods:
        meta = pod.get("metadata") or {}
        if (meta.get("labels") or {}).get(LABEL_MODEL_VERSION) != version:
            continue
        name = meta.get("name", "?")
        limits = {
            c.get("name"): ((c.get("resources") or {}).get("limits") or {}).get("memory")
            for c in (pod.get("spec") or {}).get("containers") or []
        }
        for container in (pod.get("status") or {}).get("containerStatuses") or []:
            found = _container_trouble(container, limits.get(container.get("name")))
            if found is not None:
                rank, what = found
                ranked.append((rank, f"pod {name}: {what}"))
    return [what for _, what in sorted(ranked, key=lambda r: r[0])]


def _container_trouble(
    container: dict[str, Any], memory_limit: str | None
) -> tuple[int, str] | None:
    if container.get("ready"):
        return None
    state = container.get("state") or {}
    terminated = state.get("terminated") or (container.get("lastState") or {}).get("terminated")
    if terminated and terminated.get("reason") == "OOMKilled":
        limit = f"its memory limit {memory_limit}" if memory_limit else "the node's memory"
        return 0, f"OOMKilled: the container ran out of {limit}; raise resources.limits.memory"
    waiting = state.get("waiting") or {}
    restarts = int(container.get("restartCount", 0))
    # A crash-looping container spends most of its time waiting, and some running again (and
    # loading again): its last exit says more than either.
    if terminated and (
        waiting.get("reason") == "CrashLoopBackOff" or state.get("terminated") or restarts
    ):
        if waiting.get("reason") == "CrashLoopBackOff":
            what = "CrashLoopBackOff"
        else:
            what = f"exited (restarts: {restarts})" if restarts else "exited"
        code = terminated.get("exitCode")
        tail = _tail(str(terminated.get("message") or ""))
        return 1, f"{what}: exit code {code}" + (f": {tail}" if tail else "")
    running = state.get("running")
    if running is not None and container.get("started") is False:
        return 2, (
            f"the model has not loaded yet: running since {running.get('startedAt', '?')}, "
            "startup probe not passed"
        )
    if running is not None:
        return 3, "running, but its readiness probe fails"
    return None


def _tail(message: str) -> str:
    lines = [line.strip() for line in message.strip().splitlines() if line.strip()]
    tail = " | ".join(lines[-TAIL_LINES:])
    if len(tail) > TAIL_CHARS:
        tail = "..." + tail[-TAIL_CHARS:]
    return redact(tail)


def settled_versions(observed: DeploymentObservation, last: ModelDeploymentStatus) -> set[str]:
    """The versions decided here already: what the Deployment runs, what served, the last good
    one, the failed ones, those that rolled out before. Gates and the pre-flight check judge
    only a version outside these, so neither ever holds up a rollback.

    A failed one is settled while status and the Deployment's ledger (where it has one) both
    list it: a version whose record a person cleared on the Deployment (to retry it), or that
    only the ledger remembers (status lost), is judged again before it gets a pod.
    """
    ledger = observed.ledger if observed.exists else None
    failed = set(last.failed_versions)
    if ledger is not None:
        failed &= set(ledger.failed_versions)
    found = {
        observed.version if observed.exists else None,
        last.serving_version,
        ledger.last_good_version if ledger else None,
        *failed,
        *(h.version for h in last.history if h.result == "Succeeded"),
    }
    return {v for v in found if v is not None}


def ready_address(pod: dict[str, Any]) -> str | None:
    """The IP of a pod that is Ready and not being deleted; None for any other pod."""
    meta, status = pod.get("metadata") or {}, pod.get("status") or {}
    ready = any(
        c.get("type") == "Ready" and c.get("status") == "True"
        for c in status.get("conditions") or []
    )
    if ready and status.get("podIP") and not meta.get("deletionTimestamp"):
        return str(status["podIP"])
    return None
