"""Starts and reads the Jobs that build the versions' environments (serving.envManager uv).
What a Job's state means for the rollout: core/modeldeployment/environment.py. The program the
Job runs: the serving distribution's mlflow_operator_serve/environment.py."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from cachetools import LRUCache

from mlflow_operator.api.modeldeployment import ModelDeploymentSpec, ModelDeploymentStatus
from mlflow_operator.builders.meta import Owner
from mlflow_operator.builders.mlflowserver.backup import JOB_NAME_LABEL
from mlflow_operator.builders.modeldeployment import build_environment_job, serving_image
from mlflow_operator.config import OperatorConfig
from mlflow_operator.core.endpoint import TrackingEndpoint
from mlflow_operator.core.mlflowserver.observation import job_state
from mlflow_operator.core.modeldeployment.environment import (
    EnvironmentVerdict,
    environment_job_name,
    judge_environment,
)
from mlflow_operator.kube.refusals import NamingKube

logger = logging.getLogger(__name__)

# the endpoint with the credentials the serving pods (and so the Job) get, once their MLflow
# user may read these versions; None while it cannot be made
PodsEndpoint = Callable[[list[str]], Awaitable[TrackingEndpoint | None]]


# Job names seen complete: an environment built is kept in MLflow, so its Job is not read
# again at every reconcile of a ModelDeployment at rest (the least recently used go first,
# and are read once more if wanted again)
BUILT_KEPT = 4096


@dataclass
class EnvironmentBuilds:
    """One per operator process. Per reconcile of a ModelDeployment with envManager uv: one
    GET per version that needs an environment (the new one, the serving one, the last good
    one) until its Job is seen complete, one create when a Job is missing, and a LIST of its
    pods once it failed."""

    api: NamingKube
    config: OperatorConfig
    _built: LRUCache[tuple[str, str], bool] = field(
        default_factory=lambda: LRUCache(maxsize=BUILT_KEPT), init=False
    )

    async def judge(
        self,
        spec: ModelDeploymentSpec,
        owner: Owner,
        wanted: str | None,
        needed: list[str],
        *,
        last: ModelDeploymentStatus,
        pods_endpoint: PodsEndpoint,
        now: datetime,
    ) -> EnvironmentVerdict | None:
        """Start the Job of every version in `needed` that has none; where the environment of
        `wanted` (the new version, which waits for it) stands. None: its Job could not be
        started (the pods' MLflow user cannot be made: nothing is applied then either)."""
        image = serving_image(spec, self.config)
        verdict = None
        for version in needed:
            name = environment_job_name(owner.name, version, image)
            if version != wanted and (owner.namespace, name) in self._built:
                continue
            job = await self.api.get("batch/v1", "Job", name, owner.namespace)
            if job is None:
                job = await self._start(spec, owner, version, pods_endpoint)
            if job is None:
                continue
            state = job_state(job)
            if state.succeeded:
                self._built[(owner.namespace, name)] = True
            if version != wanted:
                continue
            pods: list[dict[str, Any]] = []
            if state.failed:
                pods = await self.api.list("v1", "Pod", owner.namespace, {JOB_NAME_LABEL: name})
                pods.sort(key=lambda pod: str(pod["metadata"].get("creationTimestamp") or ""))
            verdict = judge_environment(version, job, pods, last.environment, now)
        return verdict

    async def _start(
        self, spec: ModelDeploymentSpec, owner: Owner, version: str, pods_endpoint: PodsEndpoint
    ) -> dict[str, Any] | None:
        endpoint = await pods_endpoint([version])
        if endpoint is None:
            return None
        job = build_environment_job(spec, owner, version, endpoint, self.config)
        created, new = await self.api.create_if_absent(job)
        if new:
            logger.info(
                "%s/%s: Job %s builds the environment of version %s",
                owner.namespace, owner.name, job["metadata"]["name"], version,
            )  # fmt: skip
        return created
