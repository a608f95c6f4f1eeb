"""What the operator observed of a ModelDeployment's serving Deployment: plain frozen data."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mlflow_operator.core.naming import LABEL_MODEL_VERSION


@dataclass(frozen=True)
class DeploymentObservation:
    exists: bool = False
    version: str | None = None  # the model version pinned in the pod template
    desired_replicas: int = 0
    status_current: bool = False  # the controller has seen the latest template
    replicas: int = 0  # all pods, old and new
    updated_replicas: int = 0
    ready_replicas: int = 0
    available_replicas: int = 0
    progress_deadline_exceeded: bool = False
    unschedulable_message: str = ""  # why a new pod cannot be scheduled, if one cannot

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


def observe_deployment(
    deployment: dict[str, Any] | None, pending_pod_messages: list[str] | None = None
) -> DeploymentObservation:
    """Fold a Deployment object (and messages of its unschedulable pods) into an observation."""
    if deployment is None:
        return DeploymentObservation()
    spec = deployment.get("spec") or {}
    status = deployment.get("status") or {}
    meta = deployment.get("metadata") or {}
    labels = ((spec.get("template") or {}).get("metadata") or {}).get("labels") or {}
    conditions = status.get("conditions") or []
    exceeded = any(
        c.get("type") == "Progressing" and c.get("reason") == "ProgressDeadlineExceeded"
        for c in conditions
    )
    return DeploymentObservation(
        exists=True,
        version=labels.get(LABEL_MODEL_VERSION),
        desired_replicas=int(spec.get("replicas", 1)),
        status_current=int(status.get("observedGeneration", 0)) >= int(meta.get("generation", 0)),
        replicas=int(status.get("replicas", 0)),
        updated_replicas=int(status.get("updatedReplicas", 0)),
        ready_replicas=int(status.get("readyReplicas", 0)),
        available_replicas=int(status.get("availableReplicas", 0)),
        progress_deadline_exceeded=exceeded,
        unschedulable_message=(pending_pod_messages or [""])[0],
    )
