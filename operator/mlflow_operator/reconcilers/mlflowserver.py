"""One reconcile of an MLflowServer: gather, decide, build, act.

Level-triggered: every reconcile computes everything from the spec and what it observes, so
a restarted operator converges to the same place. Children are applied only when they differ
from what is live (core/applied.py): an idle server costs reads, never writes.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from mlflow_operator import metrics
from mlflow_operator.api import API_GROUP, API_VERSION
from mlflow_operator.api.mlflowserver import MLflowServer, MLflowServerSpec, MLflowServerStatus
from mlflow_operator.api.validation import object_errors
from mlflow_operator.builders.meta import Owner
from mlflow_operator.builders.mlflowserver.backup import (
    JOB_NAME_LABEL,
    build_backup_cronjob,
    build_backup_job,
    build_restore_job,
)
from mlflow_operator.builders.mlflowserver.common import (
    COMPONENT_BACKUP,
    COMPONENT_MIGRATION,
    COMPONENT_SERVER,
    selector_labels,
)
from mlflow_operator.builders.mlflowserver.minio import build_minio_service, build_minio_statefulset
from mlflow_operator.builders.mlflowserver.network import build_network_policies
from mlflow_operator.builders.mlflowserver.postgres import (
    build_postgres_services,
    build_postgres_statefulset,
)
from mlflow_operator.builders.mlflowserver.secrets import build_generated_secrets
from mlflow_operator.builders.mlflowserver.server import (
    LABEL_MIGRATION_KEY,
    build_auth_configmap,
    build_migration_job,
    build_tracking_deployment,
    build_tracking_pdb,
    build_tracking_service,
    migration_job_name,
)
from mlflow_operator.builders.pod import without_fixed_ids
from mlflow_operator.config import OperatorConfig
from mlflow_operator.core.applied import already_applied, stamped
from mlflow_operator.core.conditions import INVALID_SPEC, READY, get_condition
from mlflow_operator.core.mlflowserver import layout
from mlflow_operator.core.mlflowserver.backup import BackupState, backup_finished, observe_backup
from mlflow_operator.core.mlflowserver.conditions import (
    BACKUP_STARTED,
    MIGRATION_STARTED,
    RESTORE_STARTED,
    SECRET_GENERATED,
    SERVER_IMAGE_CHANGED,
    SERVER_STOPPED,
)
from mlflow_operator.core.mlflowserver.observation import (
    MIN_ADMIN_PASSWORD,
    Fact,
    JobState,
    SecretCheck,
    ServerObservation,
    WorkloadState,
    check_secret,
    failed_step,
    job_state,
    workload_state,
)
from mlflow_operator.core.mlflowserver.plan import ServerPlan, plan_server
from mlflow_operator.core.mlflowserver.status import (
    condition_events,
    fold_status,
    with_ready,
)
from mlflow_operator.crds import MLFLOW_SERVER
from mlflow_operator.kube.refusals import Kube, KubernetesRefused, NamingKube
from mlflow_operator.reconcilers.common import (
    CONFLICT_RETRY_SECONDS,
    EventSink,
    ReconcileResult,
    status_patch,
)
from mlflow_operator.reconcilers.store_volumes import step_for_store

logger = logging.getLogger(__name__)

API = f"{API_GROUP}/{API_VERSION}"
KIND = "MLflowServer"
# Children's watch events wake a reconcile; these are safety nets. Referenced Secrets are not
# watched (the operator may not list Secrets), so a server that waits looks again soon.
SETTLED_RECHECK_SECONDS = 300.0
WAITING_RECHECK_SECONDS = 10.0


@dataclass
class MLflowServerReconciler:
    """Shared by every MLflowServer of this operator process."""

    kube: Kube
    config: OperatorConfig

    def __post_init__(self) -> None:
        self._api = NamingKube(self.kube)

    async def reconcile(self, body: Any, emit: EventSink) -> ReconcileResult:
        """One reconcile; a refused status write is raised as the ApiError (the loop retries)."""
        started = time.monotonic()
        try:
            return await self._reconcile(body, emit)
        except KubernetesRefused as refused:
            if refused.refusal.code == 409:  # the object changed since it was read: decide again
                return ReconcileResult(recheck_after=CONFLICT_RETRY_SECONDS)
            if refused.refusal.namespace_terminating:  # it goes away with its namespace
                logger.info("%s", refused.refusal.message)
                return ReconcileResult(recheck_after=SETTLED_RECHECK_SECONDS)
            logger.warning("%s", refused.refusal.message)
            raise refused.error from None
        finally:
            metrics.RECONCILE_SECONDS.labels(kind=KIND).observe(time.monotonic() - started)

    async def _reconcile(self, body: Any, emit: EventSink) -> ReconcileResult:
        # kopf's body may be older than the status this operator last wrote: decide only from
        # the object as the API server has it now (and write status on that version only).
        known = Owner.from_body(body)
        fresh = await self._api.get(API, KIND, known.name, known.namespace)
        if fresh is None:
            return ReconcileResult(recheck_after=SETTLED_RECHECK_SECONDS)  # deleted
        owner = Owner.from_body(fresh)
        previous = MLflowServerStatus.of(fresh)
        generation = int(fresh["metadata"].get("generation") or 0)
        version = fresh["metadata"].get("resourceVersion")
        now = datetime.now(UTC)

        errors = object_errors(MLflowServerSpec, MLFLOW_SERVER.name_rules, fresh)
        if errors:
            message = "Invalid spec: " + "; ".join(errors)
            status = with_ready(previous, INVALID_SPEC, message, generation, now)
            status.observed_generation = generation
            await self._settle(owner, previous, status, version, emit)
            metrics.RECONCILES.labels(kind=KIND, result="invalid").inc()
            return ReconcileResult(recheck_after=SETTLED_RECHECK_SECONDS)
        server = MLflowServer.model_validate(
            {"metadata": fresh["metadata"], "spec": fresh["spec"], "status": previous}
        )
        run = _ServerRun(self._api, owner, server, self.config, emit)
        try:
            await run.ensure_stores()
            obs = await run.gather()
        except KubernetesRefused as refused:  # a read failed: nothing to decide from
            if refused.refusal.namespace_terminating:
                raise
            logger.warning("%s", refused.refusal.message)
            status = with_ready(
                previous, refused.refusal.reason, refused.refusal.message, generation, now
            )
            await self._settle(owner, previous, status, version, emit)
            metrics.RECONCILES.labels(kind=KIND, result="refused").inc()
            return ReconcileResult(recheck_after=WAITING_RECHECK_SECONDS)

        plan = plan_server(obs)
        await run.act(obs, plan)
        obs = dataclasses.replace(
            obs, problems=tuple(run.problems), storage_pending=tuple(run.storage_pending)
        )
        status = fold_status(previous, obs, plan, url=layout.tracking_url(server), now=now)
        await self._settle(owner, previous, status, version, emit)
        metrics.RECONCILES.labels(kind=KIND, result="ok").inc()
        ready = get_condition(status.conditions, READY)
        settled = ready is not None and ready.status == "True"
        return ReconcileResult(
            recheck_after=SETTLED_RECHECK_SECONDS if settled else WAITING_RECHECK_SECONDS
        )

    async def _settle(
        self,
        owner: Owner,
        previous: MLflowServerStatus,
        status: MLflowServerStatus,
        resource_version: str | None,
        emit: EventSink,
    ) -> None:
        """Write status if it changed (onto the version decided from), then tell what moved.

        Events only for conditions whose status or reason moved: an invalid spec or a refused
        request is announced once, not at every reconcile.
        """
        if status.to_wire() != previous.to_wire():
            await self._api.patch_status(
                API, KIND, owner.name, owner.namespace, status_patch(status),
                resource_version=resource_version,
            )  # fmt: skip
        for kind, reason, message in condition_events(previous.conditions, status.conditions):
            emit("Warning" if kind == "Warning" else "Normal", reason, message)


@dataclass(frozen=True)
class _ServerRun:
    """One reconcile of one MLflowServer: the I/O around the pure plan."""

    kube: NamingKube
    owner: Owner
    server: MLflowServer
    config: OperatorConfig
    emit: EventSink
    # What could not be applied; each write is independent, so one refusal (a 422 on one
    # StatefulSet) does not hold back the others (the server's new image or configuration).
    problems: list[Fact] = field(default_factory=list)
    # volumes growing to a new size (reconcilers/store_volumes.py)
    storage_pending: list[Fact] = field(default_factory=list)
    # the tracking server Deployment as gathered, so that act() need not read it again
    live: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def namespace(self) -> str:
        return self.owner.namespace

    @property
    def image(self) -> str:
        return self.server.spec.image or self.config.tracking_server_image

    def _for_platform(self, manifest: dict[str, Any]) -> dict[str, Any]:
        """Without fixed user and group ids where the platform assigns them."""
        return without_fixed_ids(manifest) if self.config.openshift else manifest

    async def _apply(self, manifest: dict[str, Any], live: dict[str, Any] | None = None) -> None:
        manifest = stamped(self._for_platform(manifest))
        meta = manifest["metadata"]
        try:
            if live is None:
                live = await self.kube.get(
                    manifest["apiVersion"], manifest["kind"], meta["name"], self.namespace
                )
            if not already_applied(live, manifest):
                await self.kube.apply(manifest)
        except KubernetesRefused as refused:
            if refused.refusal.namespace_terminating:
                raise  # nothing more to do or to report here
            logger.warning("%s", refused.refusal.message)
            self.problems.append(Fact("False", refused.refusal.reason, refused.refusal.message))

    async def _apply_store(self, desired: dict[str, Any], field_path: str) -> None:
        """A managed store's StatefulSet; a new volume size is an expansion or a refusal."""
        desired = self._for_platform(desired)
        live = await self.kube.get(
            "apps/v1", "StatefulSet", desired["metadata"]["name"], self.namespace
        )
        step = await step_for_store(self.kube, desired, live=live, field=field_path, emit=self.emit)
        if step.refused is not None:
            self.problems.append(step.refused)
        if step.pending is not None:
            self.storage_pending.append(step.pending)
        if step.apply is not None:
            await self._apply(step.apply, live)

    async def ensure_stores(self) -> None:
        """Generated Secrets (created once), managed stores, auth config and the Service."""
        for secret in build_generated_secrets(self.server):
            _, created = await self.kube.create_if_absent(secret)
            if created:
                name = secret["metadata"]["name"]
                self.emit(
                    "Normal",
                    SECRET_GENERATED,
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
        await self._apply_pdb()
        if self.config.network_policies:  # off: no reads either (turning it off keeps them)
            for policy in build_network_policies(self.owner, self.server):
                await self._apply(policy)

    async def _apply_pdb(self) -> None:
        """The tracking server's PodDisruptionBudget with 2+ replicas; none with fewer."""
        name = layout.ServerNames(self.owner.name).deployment
        try:
            await self._apply_or_delete(
                build_tracking_pdb(self.owner, self.server),
                "policy/v1",
                "PodDisruptionBudget",
                name,
            )
        except KubernetesRefused as refused:
            logger.warning("%s", refused.refusal.message)
            self.problems.append(Fact("False", refused.refusal.reason, refused.refusal.message))

    async def gather(self) -> ServerObservation:
        """Everything the decisions need, read once; Secret values are checked, never kept."""
        server, spec = self.server, self.server.spec
        names = layout.ServerNames(self.owner.name)
        pg_external = spec.backend_store.postgres.external
        s3_external = spec.artifact_store.s3.external
        job = await self.kube.get(
            "batch/v1", "Job", migration_job_name(server, self.image), self.namespace
        )
        deployment = await self.kube.get("apps/v1", "Deployment", names.deployment, self.namespace)
        if deployment is not None:
            self.live["deployment"] = deployment
        backup_jobs = await self.kube.list(
            "batch/v1", "Job", self.namespace, selector_labels(self.owner.name, COMPONENT_BACKUP)
        )
        by_name = {job["metadata"]["name"]: job for job in backup_jobs}
        backup = await self._job_run(by_name.get(names.backup_job(self._migration_key)))
        new_backups, latest_backup = await self._finished_backups(backup_jobs)
        restore_from = spec.restore_from
        restore = (
            await self._job_run(
                await self.kube.get("batch/v1", "Job", names.restore_job, self.namespace)
            )
            if restore_from
            else None
        )
        return ServerObservation(
            server_pods=await self._server_pods(),
            generation=int(str(server.metadata.get("generation") or 0)),
            desired_image=self.image,
            database_secret=await self._check_secret(layout.database_secret(server)),
            object_store_secret=await self._check_secret(layout.object_store_secret(server)),
            admin_secret=(
                await self._check_secret(layout.admin_secret(server), MIN_ADMIN_PASSWORD)
                if spec.auth.enabled
                else None
            ),
            managed_database=pg_external is None,
            postgres=None if pg_external else await self._workload("StatefulSet", names.postgres),
            managed_object_store=s3_external is None,
            minio=None if s3_external else await self._workload("StatefulSet", names.minio),
            migration=await self._migration_state(job),
            deployment=workload_state(deployment) if deployment is not None else None,
            migrated_image=server.status.migrated_image,
            external_database=(
                f"{pg_external.host}:{pg_external.port}/{pg_external.database} "
                f"(sslmode {pg_external.ssl_mode})"
                if pg_external
                else ""
            ),
            external_object_store=s3_external.endpoint if s3_external else "",
            backup=backup,
            new_backups=new_backups,
            latest_backup=latest_backup,
            restore_key=restore_from.key if restore_from else None,
            restored_from=server.status.restored_from,
            restore=restore,
        )

    async def _server_pods(self) -> int | None:
        """Tracking server pods, terminating ones included; counted only while the database
        is behind the desired image (an upgrade's migration waits for none to be left)."""
        if self.server.status.migrated_image in (None, self.image):
            return None
        selector = selector_labels(self.owner.name, COMPONENT_SERVER)
        return len(await self.kube.list("v1", "Pod", self.namespace, selector))

    @property
    def _migration_key(self) -> str:
        return layout.migration_key(self.image, layout.backend_store_uri(self.server))

    async def _migration_state(self, job: dict[str, Any] | None) -> JobState | None:
        if job is None:
            return None
        state = job_state(job)
        if not state.failed:
            return state
        pods = await self.kube.list("v1", "Pod", self.namespace, {JOB_NAME_LABEL: state.name})
        pods.sort(key=lambda pod: str(pod["metadata"].get("creationTimestamp") or ""))
        return dataclasses.replace(state, failed_step=failed_step(pods))

    async def _job_run(self, job: dict[str, Any] | None) -> BackupState | None:
        """A backup or restore Job, and once it finished what its pods reported."""
        if job is None:
            return None
        state = observe_backup(job, [])
        if not (state.succeeded or state.failed):
            return state
        pods = await self.kube.list("v1", "Pod", self.namespace, {JOB_NAME_LABEL: state.name})
        return observe_backup(job, pods)

    async def _finished_backups(
        self, jobs: list[dict[str, Any]]
    ) -> tuple[tuple[BackupState, ...], BackupState | None]:
        """Succeeded backup Jobs that status.backups lacks, and the newest finished one (whose
        verdict BackupVerified carries); pods are read only for those."""
        finished = sorted(
            (job for job in jobs if backup_finished(job)),
            key=lambda job: str(job["metadata"].get("creationTimestamp") or ""),
        )
        recorded = {record.job for record in self.server.status.backups}
        states = {}
        for job in finished:
            name = job["metadata"]["name"]
            if name not in recorded or job is finished[-1]:
                states[name] = await self._job_run(job)
        new = tuple(
            state
            for state in states.values()
            if state is not None and state.succeeded and state.name not in recorded
        )
        latest = states.get(finished[-1]["metadata"]["name"]) if finished else None
        return new, latest

    async def act(self, obs: ServerObservation, plan: ServerPlan) -> None:
        if plan.create_backup:
            await self._create_backup(obs)
        if plan.create_restore:
            await self._create_restore(obs)
        if plan.create_migration:
            await self._create_migration(obs.desired_image)
        if plan.server_image is None:
            return  # no Deployment before its first migration succeeded
        before = len(self.problems)
        await self._apply(
            build_tracking_deployment(
                self.owner, self.server, plan.server_image, plan.server_replicas
            ),
            self.live.get("deployment"),
        )
        if len(self.problems) > before:
            return  # refused: nothing moved
        old_image = obs.deployment.image if obs.deployment else None
        if plan.stop_writers and obs.deployment is not None and obs.deployment.desired > 0:
            self.emit(
                "Normal",
                SERVER_STOPPED,
                f"Tracking server scaled to 0 for the migration to image {obs.desired_image}: "
                "MLflow migrates only with every writer stopped. The backup is stored.",
            )
        elif old_image != plan.server_image:
            moved = f"from {old_image} to" if old_image else "with"
            logger.info("%s: tracking server image %s", self.owner.name, plan.server_image)
            self.emit(
                "Normal",
                SERVER_IMAGE_CHANGED,
                f"Tracking server Deployment {moved} image {plan.server_image}.",
            )
        elif plan.migrated:
            names = layout.ServerNames(self.owner.name)
            try:
                await self._prune(COMPONENT_MIGRATION, names.migration_job(self._migration_key))
                await self._prune(COMPONENT_BACKUP, names.backup_job(self._migration_key))
                await self._apply_backup_schedule(obs.desired_image)
            except KubernetesRefused as refused:  # old Jobs stay; nothing else depends on it
                logger.warning("%s", refused.refusal.message)

    @property
    def _postgres_image(self) -> str:
        managed = self.server.spec.backend_store.postgres.managed
        return (managed.image if managed else "") or self.config.postgres_image

    async def _create_backup(self, obs: ServerObservation) -> None:
        job = build_backup_job(
            self.owner,
            self.server,
            migration_key=self._migration_key,
            before_image=obs.desired_image,
            postgres_image=self._postgres_image,
            # the upload runs in the image that serves now: it is known to work
            store_image=(obs.deployment.image if obs.deployment else "")
            or obs.migrated_image
            or obs.desired_image,
        )
        await self._start_job(
            job, BACKUP_STARTED, f"to back up the database before the migration to image "
            f"{obs.desired_image}",
        )  # fmt: skip

    async def _create_restore(self, obs: ServerObservation) -> None:
        job = build_restore_job(
            self.owner,
            self.server,
            postgres_image=self._postgres_image,
            fetch_image=obs.desired_image,
        )
        await self._start_job(job, RESTORE_STARTED, f"to fill the database from {obs.restore_key}")

    async def _start_job(self, job: dict[str, Any], reason: str, purpose: str) -> None:
        try:
            _, created = await self.kube.create_if_absent(self._for_platform(job))
        except KubernetesRefused as refused:
            self.problems.append(Fact("False", refused.refusal.reason, refused.refusal.message))
            return
        if created:
            self.emit("Normal", reason, f"Started Job {job['metadata']['name']} {purpose}.")

    async def _create_migration(self, image: str) -> None:
        job = build_migration_job(self.owner, self.server, image)
        await self._start_job(job, MIGRATION_STARTED, f"to migrate the schema for image {image}")

    async def _apply_backup_schedule(self, image: str) -> None:
        """The backup CronJob while spec.backup.schedule is set; none otherwise."""
        name = layout.ServerNames(self.owner.name).backup_cronjob
        cronjob = (
            build_backup_cronjob(
                self.owner, self.server, postgres_image=self._postgres_image, store_image=image
            )
            if self.server.spec.backup.schedule
            else None
        )
        await self._apply_or_delete(cronjob, "batch/v1", "CronJob", name)

    async def _apply_or_delete(
        self, manifest: dict[str, Any] | None, api_version: str, kind: str, name: str
    ) -> None:
        """Apply the child the spec asks for; delete it when the spec asks for none."""
        if manifest is not None:
            await self._apply(manifest)
            return
        if await self.kube.get(api_version, kind, name, self.namespace):
            await self.kube.delete(api_version, kind, name, self.namespace)

    async def _prune(self, component: str, keep: str) -> None:
        """Delete Jobs of superseded migrations (or their backups) once the server runs the
        migrated image."""
        jobs = await self.kube.list(
            "batch/v1", "Job", self.namespace, selector_labels(self.owner.name, component)
        )
        for job in jobs:
            name = job["metadata"]["name"]
            # scheduled backups have no migration key: their CronJob keeps its own history
            if name != keep and LABEL_MIGRATION_KEY in (job["metadata"].get("labels") or {}):
                await self.kube.delete("batch/v1", "Job", name, self.namespace, background=True)

    async def _check_secret(self, keys: layout.SecretKeys, min_password: int = 0) -> SecretCheck:
        found = await self.kube.get("v1", "Secret", keys.name, self.namespace)
        data = None if found is None else (found.get("data") or {})
        return check_secret(
            keys.name, data, (keys.username_key, keys.password_key), min_password=min_password
        )

    async def _workload(self, kind: str, name: str) -> WorkloadState | None:
        found = await self.kube.get("apps/v1", kind, name, self.namespace)
        return workload_state(found) if found is not None else None
