"""When a ModelDeployment is reconciled again unless woken: soon while something moves, at the
poll interval while something has a clock of its own, and only once in a long while at rest
(everything that changes one at rest wakes it)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from mlflow_operator.api.modeldeployment import ModelDeploymentSpec, ModelDeploymentStatus
from mlflow_operator.core.modeldeployment.observation import DeploymentObservation
from mlflow_operator.core.modeldeployment.recheck import (
    AUTOSCALE_SECONDS,
    RESYNC_SECONDS,
    ROLLOUT_RECHECK_SECONDS,
    recheck_after,
)
from mlflow_operator.core.modeldeployment.resolution import Resolved
from mlflow_operator.core.modeldeployment.rollout import RolloutPlan, plan_rollout
from mlflow_operator.core.registry_view import RegistryState
from tests.unit.observations import complete, in_progress
from tests.unit.specs import spec

NOW = datetime(2026, 12, 3, 10, 0, tzinfo=UTC)
SYNCED = RegistryState(snapshot=None, synced=True, last_sync=NOW)
UNREACHABLE = RegistryState(
    snapshot=None, synced=False, last_sync=NOW, error="refused", reason="RegistryUnreachable"
)
POLL = 30.0


def plan(
    the_spec: ModelDeploymentSpec,
    observed: DeploymentObservation,
    registry: RegistryState = SYNCED,
    last: ModelDeploymentStatus | None = None,
) -> RolloutPlan:
    return plan_rollout(
        the_spec, 1, last or ModelDeploymentStatus(), registry, Resolved("1"), observed, NOW
    )


def steady(the_spec: ModelDeploymentSpec) -> RolloutPlan:
    """Version 1 rolled out and serving, reconciled twice (the second one changes nothing)."""
    first = plan(the_spec, complete("1"))
    return plan(the_spec, complete("1"), last=first.status)


def test_a_rolled_out_deployment_at_rest_is_only_resynced() -> None:
    the_spec = spec("fraud")
    assert recheck_after(steady(the_spec), the_spec, POLL, autoscaled=False) == RESYNC_SECONDS


def test_a_rollout_in_progress_is_looked_at_soon() -> None:
    the_spec = spec("fraud")
    moving = plan(the_spec, in_progress("1"))
    assert moving.rolling_out
    assert recheck_after(moving, the_spec, POLL, autoscaled=False) == ROLLOUT_RECHECK_SECONDS


def test_an_unreadable_registry_is_read_again_at_the_poll_interval() -> None:
    the_spec = spec("fraud")
    served = steady(the_spec)
    down = plan(the_spec, complete("1"), registry=UNREACHABLE, last=served.status)
    assert recheck_after(down, the_spec, POLL, autoscaled=False) == POLL


def test_what_is_read_from_the_pods_on_a_clock_keeps_the_poll_interval() -> None:
    monitoring: dict[str, Any] = {"thresholds": {"drift": 0.2}}
    the_spec = spec("fraud", serving={"runtime": "batched", "monitoring": monitoring})
    assert recheck_after(steady(the_spec), the_spec, POLL, autoscaled=False) == POLL


def test_the_autoscaler_samples_the_load_even_at_rest() -> None:
    the_spec = spec("fraud")
    assert recheck_after(steady(the_spec), the_spec, POLL, autoscaled=True) == AUTOSCALE_SECONDS


def test_a_canary_weighting_an_http_route_keeps_the_poll_interval() -> None:
    """Routes are not watched: one created after the ModelDeployment is seen at the poll."""
    canary = {"httpRouteRef": {"name": "web"}, "steps": [{"weight": 10, "pause": "5s"}]}
    rollout = {"strategy": "Canary", "canary": canary}
    the_spec = spec("fraud", rollout=rollout, serving={"runtime": "batched"})
    assert recheck_after(steady(the_spec), the_spec, POLL, autoscaled=False) == POLL
