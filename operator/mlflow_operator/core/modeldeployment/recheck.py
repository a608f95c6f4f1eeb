"""When a ModelDeployment is looked at again without being woken. Pure.

Everything that changes a ModelDeployment at rest wakes it: its own watch events, its serving
Deployment's, Service's and PodDisruptionBudget's (handlers/modeldeployment.py), and the
registry watcher when its model moves or the registry's reachability changes
(registry/watcher.py). So one at rest is not reconciled on a timer, only resynced once in a
long while, as controller-runtime's SyncPeriod does (10 h there): work scales with changes,
not with objects (issue scale-ha). What has a clock of its own (a rollout's progress and
deadline, the autoscaler's samples, drift and quality read from the pods, a held or failed
version, a registry error) is looked at every poll interval, as before. Registry credentials
Secrets, which the operator may not watch, are read once per interval each and wake their
users when they change (reconcilers/secret_watch.py).
"""

from __future__ import annotations

from mlflow_operator.api.modeldeployment import ModelDeploymentSpec, ModelDeploymentStatus
from mlflow_operator.core.conditions import READY, get_condition
from mlflow_operator.core.modeldeployment.conditions import (
    PROGRESSING,
    REGISTRY_SYNCED,
    ROLLOUT_COMPLETE,
)
from mlflow_operator.core.modeldeployment.rollout import RolloutPlan

ROLLOUT_RECHECK_SECONDS = 2.0
# How often the autoscaler samples the pods' load (an HPA's default sync period is 15 s).
AUTOSCALE_SECONDS = 5.0
# A ModelDeployment at rest is reconciled this often anyway: a missed watch event (the API
# server's watch cache can drop one under pressure) is repaired within it.
RESYNC_SECONDS = 36000.0


def recheck_after(
    plan: RolloutPlan, spec: ModelDeploymentSpec, interval: float, *, autoscaled: bool
) -> float:
    """Seconds until the next reconcile unless something wakes the object first."""
    if plan.rolling_out:
        recheck = ROLLOUT_RECHECK_SECONDS
    elif at_rest(plan.status, spec):
        recheck = RESYNC_SECONDS
    else:
        recheck = interval
    return min(recheck, AUTOSCALE_SECONDS) if autoscaled else recheck


def at_rest(status: ModelDeploymentStatus, spec: ModelDeploymentSpec) -> bool:
    """Serving its version, rolled out, the registry read, no canary or shadow, nothing read
    from the pods on a clock (serving.monitoring), and no HTTPRoute to weight (canary
    .httpRouteRef: routes are not watched; one created or edited later is seen at the poll)."""

    def holds(type_: str, value: str, reason: str | None = None) -> bool:
        condition = get_condition(status.conditions, type_)
        return (
            condition is not None
            and condition.status == value
            and (reason is None or condition.reason == reason)
        )

    monitoring, canary = spec.serving.monitoring, spec.rollout.canary
    return (
        holds(READY, "True")
        and holds(REGISTRY_SYNCED, "True")
        and holds(PROGRESSING, "False", ROLLOUT_COMPLETE)
        and status.rollout is None
        and not monitoring.drift_enabled
        and monitoring.quality is None
        and (canary is None or canary.http_route_ref is None)
    )
