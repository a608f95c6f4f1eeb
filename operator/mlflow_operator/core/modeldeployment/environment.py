"""The environment of a version (serving.envManager uv): built once, by a Job, before any pod of
the version exists. Pure: the reconciler reads the Jobs and hands them here.

Why a Job and not the pods: `mlflow models serve --env-manager uv` installs the version's
requirements at every pod start, so every start needs the package index, takes the install's
time, and a missing package is known only when the first pod crash-loops. The Job (the serving
image's `mlflow-operator-serve-env build`) installs them once, checks that the model loads in
the result, and keeps the environment in MLflow, in the ModelDeployment's own experiment
(`mlflow-operator/<namespace>/<name>`), keyed by the serving image and MLflow's own name for
the environment. The pods download it and start with every index switched off
(mlflow_operator_serve/environment.py). A Job that found the environment built already exits
at once: a Job per (version, image) is cheap to recreate, and the environment is built once.

A new version waits for its environment like it waits for a prefetch: no pod of it exists
until the Job succeeded. A failed Job holds the version back like an incompatible one (what
serves keeps serving); deleting the Job builds it again. The versions that serve or served
(a rollback's target) get their Jobs too, without holding anything: a rollback, or an image
change under a serving version, then finds its environment built.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from mlflow_operator.api.modeldeployment import (
    EnvironmentStatus,
    ModelDeploymentSpec,
    ModelDeploymentStatus,
)
from mlflow_operator.core.mlflowserver.observation import failed_step, job_state
from mlflow_operator.core.modeldeployment.observation import DeploymentObservation
from mlflow_operator.core.modeldeployment.preflight import Preflight
from mlflow_operator.core.naming import child_name

BUILDING = "Building"
BUILT = "Built"
FAILED = "Failed"
# the environment variables through which the Job and the pods agree on where it is kept
EXPERIMENT_VAR = "MLFLOW_OPERATOR_ENV_EXPERIMENT"
IMAGE_VAR = "MLFLOW_OPERATOR_SERVING_IMAGE"


def builds_environments(spec: ModelDeploymentSpec) -> bool:
    """The pods start from an environment a Job built (admission refuses uv with any other
    runtime, or with an image of the user's)."""
    serving = spec.serving
    return serving.env_manager == "uv" and serving.runtime == "mlflow" and not serving.image


def environment_job_name(md_name: str, version: str, image: str) -> str:
    """One Job per version and serving image: a new image (an operator upgrade) is a new
    environment, built by a Job of its own."""
    digest = hashlib.sha256(image.encode()).hexdigest()[:8]
    return child_name(md_name, f"env-{version}-{digest}")


@dataclass(frozen=True)
class EnvironmentVerdict:
    """Where the environment of `version` stands, as status records it."""

    version: str
    status: EnvironmentStatus

    @property
    def holds(self) -> bool:
        """No pod of the version yet: it is being built."""
        return self.status.phase == BUILDING

    @property
    def failed(self) -> bool:
        return self.status.phase == FAILED


def environment_versions(
    version: str | None,
    observed: DeploymentObservation,
    last: ModelDeploymentStatus,
    *,
    held_before: bool,
    preflight: Preflight | None,
) -> tuple[str | None, list[str]]:
    """(the new version whose environment the rollout waits for, or None; every version that
    needs a Job now). `version` is the one the registry selects, if new here
    (preflight.preflight_version); it waits unless a gate or the pre-flight check holds it
    already. What the Deployment runs and what served last are built without waiting."""
    wanted = version
    if held_before or (preflight is not None and preflight.blocks):
        wanted = None
    serving = [observed.version if observed.exists else None, last.serving_version]
    needed = [v for v in dict.fromkeys([wanted, *serving]) if v is not None]
    return wanted, needed


def judge_environment(
    version: str,
    job: dict[str, Any],
    pods: Sequence[dict[str, Any]],
    last: EnvironmentStatus | None,
    now: datetime,
) -> EnvironmentVerdict:
    """The environment of `version` from its Job (and, once it failed, its pods' termination
    messages: the builder writes why there)."""
    state = job_state(job)
    same = last is not None and last.version == version and last.job == state.name
    started = last.started if same and last is not None else now
    if state.succeeded:
        phase, message = BUILT, f"version {version}: environment built by Job {state.name}"
    elif state.failed:
        step = failed_step(pods)
        why = step.log if step is not None and step.log else state.message or state.reason
        phase = FAILED
        message = (
            f"version {version}: Job {state.name} could not build its environment: "
            f"{why or 'no reason given'}; delete the Job to build it again"
        )
    else:
        phase, message = BUILDING, f"version {version}: Job {state.name} builds its environment"
    finished = None if phase == BUILDING else now
    if same and last is not None and last.finished is not None and last.phase == phase:
        finished = last.finished
    status = EnvironmentStatus(
        version=version,
        phase=phase,
        job=state.name,
        started=started,
        finished=finished,
        message=message,
    )
    return EnvironmentVerdict(version, status)
