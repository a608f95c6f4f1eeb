"""kopf glue of the MLflowServer controller: gather -> decide (core) -> build -> act.

Level-triggered: create, update, resume and a timer all run the same `reconcile_server`,
which computes everything from the spec and what it observes. Nothing depends on having
seen a particular event, so a restarted operator converges to the same place.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import kopf
from lightkube import ApiError

from mlflow_operator.api import API_GROUP
from mlflow_operator.api.crdgen import MLFLOW_SERVER
from mlflow_operator.api.mlflowserver import MLflowServer, MLflowServerSpec, MLflowServerStatus
from mlflow_operator.api.validation import object_errors
from mlflow_operator.builders.meta import Owner
from mlflow_operator.builders.minio import build_minio_service, build_minio_statefulset
from mlflow_operator.builders.postgres import build_postgres_services, build_postgres_statefulset
from mlflow_operator.builders.server_common import (
    COMPONENT_MIGRATION,
    selector_labels,
)
from mlflow_operator.builders.server_secrets import build_generated_secrets
from mlflow_operator.builders.tracking_server import (
    ANNOTATION_IMAGE,
    build_auth_configmap,
    build_migration_job,
    build_tracking_deployment,
    build_tracking_service,
    migration_job_name,
)
from mlflow_operator.config import OperatorConfig
from mlflow_operator.core import tracking
from mlflow_operator.core.api_refusal import ApiRefusal
from mlflow_operator.core.conditions import set_condition
from mlflow_operator.core.mlflowserver_status import (
    MIN_ADMIN_PASSWORD,
    READY,
    Fact,
    JobState,
    SecretCheck,
    ServerObservation,
    ServerPlan,
    WorkloadState,
    check_secret,
    condition_events,
    fold_status,
    plan_server,
)
from mlflow_operator.core.storage import keep_live_claims
from mlflow_operator.kube.client import KubeClient
from mlflow_operator.kube.refusals import KubernetesRefused, NamingKube

PLURAL = "mlflowservers"
# Children (pods, Jobs) change without touching the MLflowServer; the timer notices them.
RESYNC_SECONDS = 10.0
RETRY_SECONDS = 15.0


Logger = logging.Logger | logging.LoggerAdapter[Any]


@kopf.on.create(API_GROUP, PLURAL, id="reconcile")
@kopf.on.update(API_GROUP, PLURAL, id="reconcile")
@kopf.on.resume(API_GROUP, PLURAL, id="reconcile")
async def mlflowserver_reconcile(
    body: kopf.Body, patch: kopf.Patch, memo: Any, logger: Logger, **_: Any
) -> None:
    await _locked_reconcile(body, patch, memo, logger)


@kopf.timer(API_GROUP, PLURAL, id="resync", interval=RESYNC_SECONDS, initial_delay=RESYNC_SECONDS)
async def mlflowserver_resync(
    body: kopf.Body, patch: kopf.Patch, memo: Any, logger: Logger, **_: Any
) -> None:
    await _locked_reconcile(body, patch, memo, logger)


async def _locked_reconcile(body: kopf.Body, patch: kopf.Patch, memo: Any, logger: Logger) -> None:
    # the timer and the change handlers of one object may overlap; one reconcile at a time
    lock: asyncio.Lock = memo.setdefault("mlflowserver_lock", asyncio.Lock())
    async with lock:
        try:
            # memo.kube (one client per process) and memo.config come from handlers/startup.py
            await reconcile_server(body, patch, memo["kube"], memo["config"], logger)
        except KubernetesRefused as refused:  # outside the reported steps: retry later
            raise kopf.TemporaryError(refused.refusal.message, delay=RETRY_SECONDS) from None
        except ApiError as exc:
            raise kopf.TemporaryError(
                f"Kubernetes API error {exc.status.code}: {exc.status.message}",
                delay=RETRY_SECONDS,
            ) from None


async def reconcile_server(
    body: kopf.Body,
    patch: kopf.Patch,
    kube: KubeClient,
    config: OperatorConfig,
    logger: Logger,
) -> None:
    now = datetime.now(UTC)
    previous = MLflowServerStatus.model_validate(body.get("status") or {})
    errors = object_errors(MLflowServerSpec, MLFLOW_SERVER.name_rules, body)
    if errors:
        _write_invalid_spec(body, patch, previous, errors, now)
        raise kopf.PermanentError("; ".join(errors))
    server = MLflowServer.model_validate(
        {"metadata": dict(body["metadata"]), "spec": dict(body["spec"]), "status": previous}
    )
    run = _Reconcile(NamingKube(kube), body, Owner.from_body(body), server, config, logger)

    try:
        await run.ensure_stores()
        obs = await run.gather()
    except KubernetesRefused as refused:  # a read failed: nothing to decide from
        _write_refused(body, patch, previous, refused.refusal, now)
        return
    plan = plan_server(obs)
    await run.act(obs, plan)
    obs = dataclasses.replace(obs, problems=tuple(run.problems))

    status = fold_status(previous, obs, plan, url=tracking.tracking_url(server), now=now)
    for kind, reason, message in condition_events(previous.conditions, status.conditions):
        kopf.event(body, type=kind, reason=reason, message=message)
    if status.to_wire() != previous.to_wire():
        _write_status(patch, status)


@dataclass(frozen=True)
class _Reconcile:
    """One reconcile of one MLflowServer: the I/O around the pure plan."""

    kube: NamingKube
    body: kopf.Body
    owner: Owner
    server: MLflowServer
    config: OperatorConfig
    logger: Logger
    # What could not be applied; each write is independent, so one refusal (a 422 on one
    # StatefulSet) does not hold back the others (the server's new image or configuration).
    problems: list[Fact] = field(default_factory=list)

    async def _apply(self, manifest: dict[str, Any]) -> None:
        try:
            await self.kube.apply(manifest)
        except KubernetesRefused as refused:
            self.logger.warning("%s", refused.refusal.message)
            self.problems.append(Fact("False", refused.refusal.reason, refused.refusal.message))

    async def _apply_store(self, desired: dict[str, Any], field_path: str) -> None:
        """A managed store's StatefulSet, minus a claim-template change it cannot take."""
        live = await self.kube.get(
            "apps/v1", "StatefulSet", desired["metadata"]["name"], self.namespace
        )
        manifest, refused = keep_live_claims(live, desired, field_path)
        if refused:
            self.problems.append(Fact("False", "StorageChangeRefused", refused))
        await self._apply(manifest)

    @property
    def namespace(self) -> str:
        return self.owner.namespace

    @property
    def image(self) -> str:
        return self.server.spec.image or self.config.tracking_server_image

    def event(self, reason: str, message: str, type_: str = "Normal") -> None:
        self.logger.info(message)
        kopf.event(self.body, type=type_, reason=reason, message=message)

    async def ensure_stores(self) -> None:
        """Generated Secrets (created once), managed stores, auth config and the Service."""
        for secret in build_generated_secrets(self.server):
            _, created = await self.kube.create_if_absent(secret)
            if created:
                name = secret["metadata"]["name"]
                self.event(
                    "SecretGenerated",
                    f"Generated Secret {name}; the operator never rotates it.",
                )
        spec = self.server.spec
        postgres = spec.backend_store.postgres.managed
        if postgres is not None:
            for service in build_postgres_services(self.owner):
                await self._apply(service)
            await self._apply_store(
                build_postgres_statefulset(
                    self.owner, postgres, self.config.postgres_image, spec.pod_template
                ),
                "spec.backendStore.postgres.managed",
            )
        minio = spec.artifact_store.s3.managed
        if minio is not None:
            await self._apply(build_minio_service(self.owner))
            await self._apply_store(
                build_minio_statefulset(
                    self.owner, minio, self.config.minio_image, spec.pod_template
                ),
                "spec.artifactStore.s3.managed",
            )
        if spec.auth.enabled:
            await self._apply(build_auth_configmap(self.owner, self.server))
        await self._apply(build_tracking_service(self.owner, self.server))

    async def gather(self) -> ServerObservation:
        """Everything the decisions need, read once; Secret values are checked, never kept."""
        server, spec = self.server, self.server.spec
        names = tracking.ServerNames(self.owner.name)
        pg_external = spec.backend_store.postgres.external
        s3_external = spec.artifact_store.s3.external
        job = await self.kube.get(
            "batch/v1", "Job", migration_job_name(server, self.image), self.namespace
        )
        return ServerObservation(
            generation=int(str(server.metadata.get("generation") or 0)),
            desired_image=self.image,
            database_secret=await self._check_secret(tracking.database_secret(server)),
            object_store_secret=await self._check_secret(tracking.object_store_secret(server)),
            admin_secret=(
                await self._check_secret(tracking.admin_secret(server), MIN_ADMIN_PASSWORD)
                if spec.auth.enabled
                else None
            ),
            managed_database=pg_external is None,
            postgres=None if pg_external else await self._workload("StatefulSet", names.postgres),
            managed_object_store=s3_external is None,
            minio=None if s3_external else await self._workload("StatefulSet", names.minio),
            migration=_job_state(job) if job is not None else None,
            deployment=await self._workload("Deployment", names.deployment),
            migrated_image=server.status.migrated_image,
            external_database=(
                f"{pg_external.host}:{pg_external.port}/{pg_external.database} "
                f"(sslmode {pg_external.ssl_mode})"
                if pg_external
                else ""
            ),
            external_object_store=s3_external.endpoint if s3_external else "",
        )

    async def act(self, obs: ServerObservation, plan: ServerPlan) -> None:
        if plan.create_migration:
            await self._create_migration(obs.desired_image)
        if plan.server_image is None:
            return  # no Deployment before its first migration succeeded
        before = len(self.problems)
        await self._apply(build_tracking_deployment(self.owner, self.server, plan.server_image))
        if len(self.problems) > before:
            return  # refused: nothing moved
        old_image = obs.deployment.image if obs.deployment else None
        if old_image != plan.server_image:
            moved = f"from {old_image} to" if old_image else "with"
            self.event(
                "ServerImageChanged",
                f"Tracking server Deployment {moved} image {plan.server_image}.",
            )
        elif plan.migrated:
            try:
                await self._prune_migrations(migration_job_name(self.server, obs.desired_image))
            except KubernetesRefused as refused:  # old Jobs stay; nothing else depends on it
                self.logger.warning("%s", refused.refusal.message)

    async def _create_migration(self, image: str) -> None:
        job = build_migration_job(self.owner, self.server, image)
        try:
            _, created = await self.kube.create_if_absent(job)
        except KubernetesRefused as refused:
            self.problems.append(Fact("False", refused.refusal.reason, refused.refusal.message))
            return
        if created:
            self.event(
                "MigrationStarted",
                f"Started Job {job['metadata']['name']} to migrate the schema for image {image}.",
            )

    async def _prune_migrations(self, keep: str) -> None:
        """Delete Jobs of superseded migrations once the server runs the migrated image."""
        jobs = await self.kube.list(
            "batch/v1", "Job", self.namespace, selector_labels(self.owner.name, COMPONENT_MIGRATION)
        )
        for job in jobs:
            name = job["metadata"]["name"]
            if name != keep:
                await self.kube.delete("batch/v1", "Job", name, self.namespace, background=True)

    async def _check_secret(self, keys: tracking.SecretKeys, min_password: int = 0) -> SecretCheck:
        found = await self.kube.get("v1", "Secret", keys.name, self.namespace)
        data = None if found is None else (found.get("data") or {})
        return check_secret(
            keys.name, data, (keys.username_key, keys.password_key), min_password=min_password
        )

    async def _workload(self, kind: str, name: str) -> WorkloadState | None:
        found = await self.kube.get("apps/v1", kind, name, self.namespace)
        return _workload_state(found) if found is not None else None


def _workload_state(obj: dict[str, Any]) -> WorkloadState:
    meta, spec, status = obj["metadata"], obj.get("spec") or {}, obj.get("status") or {}
    containers = ((spec.get("template") or {}).get("spec") or {}).get("containers") or []
    annotations = meta.get("annotations") or {}
    image = annotations.get(ANNOTATION_IMAGE) or (containers[0].get("image") if containers else "")
    return WorkloadState(
        name=meta["name"],
        desired=int(spec.get("replicas", 1)),
        ready=int(status.get("readyReplicas") or 0),
        updated=int(status.get("updatedReplicas") or 0),
        current_generation=int(status.get("observedGeneration") or 0)
        >= int(meta.get("generation") or 0),
        image=str(image or ""),
    )


def _job_state(obj: dict[str, Any]) -> JobState:
    conditions = (obj.get("status") or {}).get("conditions") or []
    by_type = {c.get("type"): c for c in conditions if c.get("status") == "True"}
    failed = by_type.get("Failed")
    return JobState(
        name=obj["metadata"]["name"],
        image=(obj["metadata"].get("annotations") or {}).get(ANNOTATION_IMAGE, ""),
        succeeded="Complete" in by_type,
        failed=failed is not None,
        reason=str((failed or {}).get("reason") or ""),
        message=str((failed or {}).get("message") or ""),
    )


def _write_status(patch: kopf.Patch, status: MLflowServerStatus) -> None:
    for key, value in status.to_wire().items():
        patch.status[key] = value


def _write_refused(
    body: kopf.Body,
    patch: kopf.Patch,
    previous: MLflowServerStatus,
    refusal: ApiRefusal,
    now: datetime,
) -> None:
    """Ready=False naming the refused request; an Event when that is news."""
    generation = int(body["metadata"].get("generation") or 0)
    conditions = set_condition(
        previous.conditions,
        READY,
        "False",
        reason=refusal.reason,
        message=refusal.message,
        generation=generation,
        now=now,
    )
    for kind, reason, message in condition_events(previous.conditions, conditions):
        kopf.event(body, type=kind, reason=reason, message=message)
    _write_status(patch, previous.model_copy(update={"conditions": conditions}))


def _write_invalid_spec(
    body: kopf.Body,
    patch: kopf.Patch,
    previous: MLflowServerStatus,
    errors: list[str],
    now: datetime,
) -> None:
    generation = int(body["metadata"].get("generation") or 0)
    message = "Invalid spec: " + "; ".join(errors)
    conditions = set_condition(
        previous.conditions,
        READY,
        "False",
        reason="InvalidSpec",
        message=message,
        generation=generation,
        now=now,
    )
    kopf.event(body, type="Warning", reason="InvalidSpec", message=message)
    status = previous.model_copy(
        update={"conditions": conditions, "observed_generation": generation}
    )
    _write_status(patch, status)
