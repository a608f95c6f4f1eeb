"""MLflowServer decisions and status, folded purely from what the operator observed.

The handler gathers a `ServerObservation` (children's states, checks of referenced Secrets),
asks `plan_server()` what to do, acts, and writes `fold_status()` back. Nothing here reads
or writes the cluster, and `now` is passed in.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from mlflow_operator.api.common import Condition, ConditionStatus
from mlflow_operator.api.mlflowserver import MLflowServerStatus
from mlflow_operator.core.conditions import get_condition, set_condition

READY = "Ready"
DATABASE_READY = "DatabaseReady"
ARTIFACT_STORE_READY = "ArtifactStoreReady"
SCHEMA_MIGRATED = "SchemaMigrated"
CONDITION_TYPES = (READY, DATABASE_READY, ARTIFACT_STORE_READY, SCHEMA_MIGRATED)

# Reasons that mean a person has to act; they become Warning Events (so do the Kubernetes*
# reasons of an API refusal, core/api_refusal.py).
WARNING_REASONS = frozenset(
    {
        "SecretNotFound",
        "SecretKeyMissing",
        "SecretValueInvalid",
        "MigrationFailed",
        "InvalidSpec",
        "StorageChangeRefused",
    }
)


def is_warning(reason: str) -> bool:
    return reason in WARNING_REASONS or reason.startswith("Kubernetes")


MIN_ADMIN_PASSWORD = 12
_VERSION_TAG = re.compile(r"^v?(\d+\.\d+\.\d+(?:[.+-][0-9A-Za-z.]+)?)$")


@dataclass(frozen=True)
class SecretCheck:
    """What a referenced Secret holds, without its values."""

    name: str
    found: bool = True
    missing_keys: tuple[str, ...] = ()
    """Keys absent or empty."""
    problems: tuple[str, ...] = ()
    """Other faults, as sentences that contain no value (e.g. a password too short)."""

    @property
    def usable(self) -> bool:
        return self.found and not self.missing_keys and not self.problems


@dataclass(frozen=True)
class WorkloadState:
    """A StatefulSet or Deployment as observed."""

    name: str
    desired: int
    ready: int = 0
    updated: int = 0
    current_generation: bool = True
    """status.observedGeneration has caught up with metadata.generation."""
    image: str = ""

    @property
    def all_ready(self) -> bool:
        return self.current_generation and self.ready >= self.desired and self.desired > 0


@dataclass(frozen=True)
class JobState:
    """A migration Job as observed."""

    name: str
    image: str
    succeeded: bool = False
    failed: bool = False
    reason: str = ""
    message: str = ""


@dataclass(frozen=True)
class ServerObservation:
    generation: int
    desired_image: str
    database_secret: SecretCheck
    object_store_secret: SecretCheck
    admin_secret: SecretCheck | None
    postgres: WorkloadState | None
    """The managed PostgreSQL StatefulSet; None when the database is external or not created."""
    managed_database: bool
    minio: WorkloadState | None
    managed_object_store: bool
    migration: JobState | None
    """The migration Job of the desired image; None when it does not exist."""
    deployment: WorkloadState | None
    migrated_image: str | None
    """status.migratedImage: the image whose migration completed last."""
    external_database: str = ""
    """host:port/database (sslmode) of an external database, for messages."""
    external_object_store: str = ""
    problems: tuple[Fact, ...] = ()
    """Parts of the spec this reconcile could not apply (a refused write, an immutable field);
    the rest was applied. The first one is Ready's value."""


@dataclass(frozen=True)
class Fact:
    """One condition's value."""

    status: ConditionStatus
    reason: str
    message: str


@dataclass(frozen=True)
class ServerPlan:
    """What this reconcile does about the migration and the Deployment."""

    database: Fact
    artifact_store: Fact
    create_migration: bool
    migrated: bool
    server_image: str | None
    """The image the Deployment runs: the desired one once migrated, else the one it runs
    now (the old server keeps serving), else None (no Deployment before a first migration)."""


def plan_server(obs: ServerObservation) -> ServerPlan:
    database = database_fact(obs)
    artifact_store = artifact_store_fact(obs)
    migrated = _migrated(obs)
    create_migration = not migrated and obs.migration is None and database.status == "True"
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
        server_image=image,
    )


def _migrated(obs: ServerObservation) -> bool:
    if obs.migration is not None:
        return obs.migration.succeeded
    # the Job was deleted after it succeeded (by a person, or a TTL): do not migrate again
    return obs.migrated_image == obs.desired_image


def database_fact(obs: ServerObservation) -> Fact:
    problem = _secret_fact(obs.database_secret)
    if problem is not None:
        return problem
    if obs.managed_database:
        return _workload_fact(obs.postgres, "PostgreSQL", "PostgresReady", "PostgresNotReady")
    return Fact(
        "True", "ExternalDatabaseConfigured", f"Using PostgreSQL at {obs.external_database}."
    )


def artifact_store_fact(obs: ServerObservation) -> Fact:
    problem = _secret_fact(obs.object_store_secret)
    if problem is not None:
        return problem
    if obs.managed_object_store:
        return _workload_fact(obs.minio, "MinIO", "MinioReady", "MinioNotReady")
    return Fact(
        "True", "ExternalStoreConfigured", f"Using S3 storage at {obs.external_object_store}."
    )


def migration_fact(obs: ServerObservation, plan: ServerPlan) -> Fact:
    job = obs.migration
    if plan.migrated:
        where = f" by Job {job.name}" if job else ""
        return Fact(
            "True", "MigrationSucceeded", f"Schema migrated{where} for image {obs.desired_image}."
        )
    if job is not None and job.failed:
        why = f"{job.reason}: {job.message}" if job.message else job.reason or "failed"
        keeps = (
            f" The server keeps running {obs.deployment.image}."
            if obs.deployment and obs.deployment.image
            else ""
        )
        return Fact(
            "False",
            "MigrationFailed",
            f"Job {job.name} failed to migrate the schema for image {obs.desired_image} "
            f"({why}).{keeps} Delete the Job to try again.",
        )
    if job is not None or plan.create_migration:
        name = job.name if job else "the migration Job"
        return Fact(
            "False",
            "MigrationRunning",
            f"{name} runs `mlflow db upgrade` for image {obs.desired_image}.",
        )
    return Fact("False", "WaitingForDatabase", "The migration starts once the database is ready.")


def ready_fact(obs: ServerObservation, plan: ServerPlan, migration: Fact) -> Fact:
    """Ready: every store ready, the schema migrated, and all pods serve the desired image."""
    blocker = _blocker(obs, plan, migration)
    if blocker is not None:
        return blocker
    deployment = obs.deployment
    if deployment is None:
        return Fact("False", "Deploying", "The tracking server Deployment is being created.")
    if deployment.desired == 0:
        return Fact("False", "ScaledToZero", "spec.replicas is 0: no server runs.")
    if deployment.image != obs.desired_image or not deployment.current_generation:
        return Fact("False", "RollingOut", f"Rolling out image {obs.desired_image}.")
    if not deployment.all_ready or deployment.updated < deployment.desired:
        return Fact(
            "False",
            "PodsNotReady",
            f"{deployment.ready} of {deployment.desired} tracking server pods are ready.",
        )
    return Fact(
        "True", "Serving", f"{deployment.ready} tracking server pods serve {deployment.image}."
    )


def _blocker(obs: ServerObservation, plan: ServerPlan, migration: Fact) -> Fact | None:
    """The first prerequisite of the server that is not met, as Ready's value."""
    if obs.problems:  # a part of the spec that could not be applied comes first
        return obs.problems[0]
    if obs.admin_secret is not None:
        problem = _secret_fact(obs.admin_secret)
        if problem is not None:
            return problem
    for fact, reason in (
        (plan.database, "DatabaseNotReady"),
        (plan.artifact_store, "ArtifactStoreNotReady"),
    ):
        if fact.status != "True":
            return Fact("False", reason, fact.message)
    if migration.status != "True":
        reason = "MigrationFailed" if migration.reason == "MigrationFailed" else "MigrationPending"
        return Fact("False", reason, migration.message)
    return None


def fold_status(
    previous: MLflowServerStatus,
    obs: ServerObservation,
    plan: ServerPlan,
    *,
    url: str,
    now: datetime,
) -> MLflowServerStatus:
    """The new status: the four conditions, url, version, migratedImage, observedGeneration."""
    migration = migration_fact(obs, plan)
    facts = {
        DATABASE_READY: plan.database,
        ARTIFACT_STORE_READY: plan.artifact_store,
        SCHEMA_MIGRATED: migration,
        READY: ready_fact(obs, plan, migration),
    }
    conditions: list[Condition] = list(previous.conditions)
    for type_ in CONDITION_TYPES:
        fact = facts[type_]
        conditions = set_condition(
            conditions,
            type_,
            fact.status,
            reason=fact.reason,
            message=fact.message,
            generation=obs.generation,
            now=now,
        )
    serving_image = obs.deployment.image if obs.deployment else None
    return MLflowServerStatus(
        observed_generation=obs.generation,
        conditions=conditions,
        url=url,
        version=image_version(serving_image) if serving_image else previous.version,
        migrated_image=obs.desired_image if plan.migrated else previous.migrated_image,
    )


def condition_events(
    before: Sequence[Condition], after: Sequence[Condition]
) -> list[tuple[str, str, str]]:
    """(type, reason, message) of an Event for each condition whose status or reason moved."""
    events = []
    for condition in after:
        old = get_condition(before, condition.type)
        same = old is not None and (old.status, old.reason) == (condition.status, condition.reason)
        if same and not (is_warning(condition.reason) and old.message != condition.message):  # type: ignore[union-attr]
            continue  # a warning with a new message (another refused write) is news
        if old is None and condition.status != "True" and not is_warning(condition.reason):
            continue  # the first "not yet" of a new object is noise, not news
        kind = "Warning" if is_warning(condition.reason) else "Normal"
        events.append((kind, condition.reason, f"{condition.type}: {condition.message}"))
    return events


def image_version(image: str) -> str | None:
    """The MLflow version an image serves, read from its tag (e.g. mlflow-server:3.17.2)."""
    reference = image.split("@", 1)[0]
    last = reference.rsplit("/", 1)[-1]
    if ":" not in last:
        return None
    match = _VERSION_TAG.match(last.rsplit(":", 1)[1])
    return match.group(1) if match else None


def check_secret(
    name: str, data: dict[str, str] | None, keys: Sequence[str], *, min_password: int = 0
) -> SecretCheck:
    """Check a Secret's `data` (base64 values, as the API returns them) for non-empty keys.

    Values are looked at only for their presence and the admin password's length; nothing
    derived from them leaves this function except sentences without them.
    """
    if data is None:
        return SecretCheck(name=name, found=False)
    missing = tuple(key for key in keys if not data.get(key))
    problems: tuple[str, ...] = ()
    if min_password and not missing:
        password = base64.b64decode(data[keys[-1]])
        if len(password) < min_password:
            problems = (
                f"Secret {name} key {keys[-1]} is shorter than {min_password} characters, "
                "which MLflow refuses for the admin password.",
            )
    return SecretCheck(name=name, found=True, missing_keys=missing, problems=problems)


def _secret_fact(check: SecretCheck) -> Fact | None:
    if not check.found:
        return Fact("False", "SecretNotFound", f"Secret {check.name} not found.")
    if check.missing_keys:
        keys = ", ".join(check.missing_keys)
        noun = "key" if len(check.missing_keys) == 1 else "keys"
        return Fact(
            "False", "SecretKeyMissing", f"Secret {check.name} has no (or an empty) {noun} {keys}."
        )
    if check.problems:
        return Fact("False", "SecretValueInvalid", " ".join(check.problems))
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
