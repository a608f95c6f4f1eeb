"""What one reconcile does about the stores, the schema migration and the server's image."""

from __future__ import annotations

from dataclasses import dataclass

from mlflow_operator.core.mlflowserver.conditions import (
    EXTERNAL_DATABASE_CONFIGURED,
    EXTERNAL_STORE_CONFIGURED,
    MINIO_NOT_READY,
    MINIO_READY,
    POSTGRES_NOT_READY,
    POSTGRES_READY,
    SECRET_KEY_MISSING,
    SECRET_NOT_FOUND,
    SECRET_VALUE_INVALID,
)
from mlflow_operator.core.mlflowserver.observation import (
    Fact,
    SecretCheck,
    ServerObservation,
    WorkloadState,
)


@dataclass(frozen=True)
class ServerPlan:
    """What this reconcile does about the migration and the Deployment."""

    database: Fact
    artifact_store: Fact
    create_migration: bool
    migrated: bool
    upgrade: bool
    """A new image on a database an older one migrated: a backup comes first."""
    create_backup: bool
    backup_done: bool
    """The backup of this upgrade is stored (verified, unless spec.backup.verify is false)."""
    restoring: bool
    """spec.restoreFrom names a backup not restored yet, on a server never migrated."""
    create_restore: bool
    restore_done: bool
    restore_refused: bool
    """spec.restoreFrom names a new backup on a server whose database was migrated."""
    stop_writers: bool
    """An upgrade's backup is stored and its migration has not ended: the server is scaled to
    0, because MLflow's migrations need all writers stopped; it starts again after."""
    server_image: str | None
    """The image the Deployment runs: the desired one once migrated, else the one it runs
    now (the old server), else None (no Deployment before a first migration)."""

    @property
    def server_replicas(self) -> int | None:
        """The Deployment's replicas: 0 while writers are stopped, else spec.replicas (None)."""
        return 0 if self.stop_writers else None


def plan_server(obs: ServerObservation) -> ServerPlan:
    database = database_fact(obs)
    artifact_store = artifact_store_fact(obs)
    migrated = _migrated(obs)
    # Not on a first install (nothing to lose yet), nor once the migration Job exists.
    upgrade = obs.migrated_image is not None and not migrated and obs.migration is None
    backup_done = obs.backup is not None and obs.backup.succeeded
    can_start = not migrated and obs.migration is None and database.status == "True"
    create_backup = can_start and upgrade and obs.backup is None
    # A restore fills the database of a new server, before its first migration (which then
    # upgrades a backup of an older MLflow); never over a database a migration has touched.
    wanted = obs.restore_key is not None and obs.restored_from != obs.restore_key
    restoring = wanted and obs.migrated_image is None
    restore_done = obs.restore is not None and obs.restore.succeeded
    create_restore = (
        can_start and restoring and obs.restore is None and artifact_store.status == "True"
    )
    # An upgrade (a database an older image migrated) stops the server once its backup is
    # stored, and migrates once no server pod is left. A failed migration starts the old
    # server again: on PostgreSQL `mlflow db upgrade` runs in one transaction (its alembic
    # env.py), so the schema is as it was.
    upgrading = obs.migrated_image is not None and not migrated
    migration_failed = obs.migration is not None and obs.migration.failed
    stop_writers = upgrading and backup_done and not migration_failed
    create_migration = (
        can_start
        and (not upgrade or (backup_done and obs.server_pods == 0))
        and (not restoring or restore_done)
    )
    if migrated:
        image: str | None = obs.desired_image
    elif obs.deployment is not None and obs.deployment.image:
        image = obs.deployment.image
    else:
        image = None
    return ServerPlan(
        database=database,
        artifact_store=artifact_store,
        create_migration=create_migration,
        migrated=migrated,
        upgrade=upgrade,
        create_backup=create_backup,
        backup_done=backup_done,
        restoring=restoring,
        create_restore=create_restore,
        restore_done=restore_done,
        restore_refused=wanted and obs.migrated_image is not None,
        stop_writers=stop_writers,
        server_image=image,
    )


def _migrated(obs: ServerObservation) -> bool:
    if obs.migration is not None:
        return obs.migration.succeeded
    # the Job was deleted after it succeeded (by a person, or a TTL): do not migrate again
    return obs.migrated_image == obs.desired_image


def database_fact(obs: ServerObservation) -> Fact:
    problem = secret_fact(obs.database_secret)
    if problem is not None:
        return problem
    if obs.managed_database:
        return _workload_fact(obs.postgres, "PostgreSQL", POSTGRES_READY, POSTGRES_NOT_READY)
    return Fact(
        "True", EXTERNAL_DATABASE_CONFIGURED, f"Using PostgreSQL at {obs.external_database}."
    )


def artifact_store_fact(obs: ServerObservation) -> Fact:
    problem = secret_fact(obs.object_store_secret)
    if problem is not None:
        return problem
    if obs.managed_object_store:
        return _workload_fact(obs.minio, "MinIO", MINIO_READY, MINIO_NOT_READY)
    return Fact(
        "True", EXTERNAL_STORE_CONFIGURED, f"Using S3 storage at {obs.external_object_store}."
    )


def secret_fact(check: SecretCheck) -> Fact | None:
    if not check.found:
        return Fact("False", SECRET_NOT_FOUND, f"Secret {check.name} not found.")
    if check.missing_keys:
        keys = ", ".join(check.missing_keys)
        noun = "key" if len(check.missing_keys) == 1 else "keys"
        return Fact(
            "False", SECRET_KEY_MISSING, f"Secret {check.name} has no (or an empty) {noun} {keys}."
        )
    if check.problems:
        return Fact("False", SECRET_VALUE_INVALID, " ".join(check.problems))
    return None


def _workload_fact(state: WorkloadState | None, what: str, ok: str, waiting: str) -> Fact:
    if state is None:
        return Fact("False", waiting, f"The {what} StatefulSet is being created.")
    if not state.all_ready:
        return Fact(
            "False",
            waiting,
            f"StatefulSet {state.name}: {state.ready} of {state.desired} {what} pods ready.",
        )
    return Fact("True", ok, f"StatefulSet {state.name} is ready.")
