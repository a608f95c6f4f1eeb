"""The status of an MLflowServer, folded from the observation and the plan.

Four conditions (Ready, DatabaseReady, ArtifactStoreReady, SchemaMigrated) and, once a backup
has finished, BackupVerified; the URL, the MLflow version served, the image whose migration
completed last and the latest backups; and the Events a change of condition makes.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime

from mlflow_operator.api.common import Condition
from mlflow_operator.api.mlflowserver import MLflowServerStatus
from mlflow_operator.core.conditions import INVALID_SPEC, READY, get_condition, set_condition
from mlflow_operator.core.mlflowserver.backup import verified_fact, with_backups
from mlflow_operator.core.mlflowserver.conditions import (
    ARTIFACT_STORE_NOT_READY,
    ARTIFACT_STORE_READY,
    BACKING_UP,
    BACKUP_FAILED,
    BACKUP_UNREPORTED,
    BACKUP_VERIFIED,
    DATABASE_NOT_READY,
    DATABASE_READY,
    DEPLOYING,
    DOWNGRADE_REFUSED,
    MIGRATION_FAILED,
    MIGRATION_PENDING,
    MIGRATION_RUNNING,
    MIGRATION_SUCCEEDED,
    PODS_NOT_READY,
    RESTORE_FAILED,
    RESTORE_REFUSED,
    RESTORING,
    ROLLING_OUT,
    SCALED_TO_ZERO,
    SCHEMA_MIGRATED,
    SECRET_KEY_MISSING,
    SECRET_NOT_FOUND,
    SECRET_VALUE_INVALID,
    SERVING,
    STOPPING_SERVER,
    STORAGE_CHANGE_REFUSED,
    WAITING_FOR_DATABASE,
)
from mlflow_operator.core.mlflowserver.layout import NEWER_SCHEMA_EXIT, STEP_CHECK_SCHEMA
from mlflow_operator.core.mlflowserver.observation import Fact, ServerObservation
from mlflow_operator.core.mlflowserver.plan import ServerPlan, secret_fact

# Reasons that mean a person has to act; they become Warning Events (so do the Kubernetes*
# reasons of an API refusal, core/api_refusal.py).
WARNING_REASONS = frozenset(
    {
        SECRET_NOT_FOUND,
        SECRET_KEY_MISSING,
        SECRET_VALUE_INVALID,
        MIGRATION_FAILED,
        BACKUP_FAILED,
        DOWNGRADE_REFUSED,
        RESTORE_FAILED,
        RESTORE_REFUSED,
        BACKUP_UNREPORTED,
        INVALID_SPEC,
        STORAGE_CHANGE_REFUSED,
    }
)


def is_warning(reason: str) -> bool:
    return reason in WARNING_REASONS or reason.startswith("Kubernetes")


_VERSION_TAG = re.compile(r"^v?(\d+\.\d+\.\d+(?:[.+-][0-9A-Za-z.]+)?)$")


def migration_fact(obs: ServerObservation, plan: ServerPlan) -> Fact:
    job = obs.migration
    if plan.migrated:
        where = f" by Job {job.name}" if job else ""
        return Fact(
            "True", MIGRATION_SUCCEEDED, f"Schema migrated{where} for image {obs.desired_image}."
        )
    if job is not None and job.failed:
        step = job.failed_step
        if step and (step.name, step.exit_code) == (STEP_CHECK_SCHEMA, NEWER_SCHEMA_EXIT):
            return _downgrade_fact(obs, job.name, step.log)
        why = f"{job.reason}: {job.message}" if job.message else job.reason or "failed"
        if job.failed_step is not None:
            why = f"{why}; {job.failed_step}"
        keeps = _keeps_running(obs)
        return Fact(
            "False",
            MIGRATION_FAILED,
            f"Job {job.name} failed to migrate the schema for image {obs.desired_image} "
            f"({why}).{keeps} Delete the Job to try again.",
        )
    return _before_migration(obs, plan) or _migration_progress(obs, plan)


def _migration_progress(obs: ServerObservation, plan: ServerPlan) -> Fact:
    """A migration that is allowed to run: running, waiting for the server to stop, or for
    the database."""
    job = obs.migration
    if job is not None or plan.create_migration:
        name = job.name if job else "the migration Job"
        stopped = " The server is stopped until it ends." if plan.stop_writers else ""
        return Fact(
            "False",
            MIGRATION_RUNNING,
            f"{name} runs `mlflow db upgrade` for image {obs.desired_image}.{stopped}",
        )
    if plan.stop_writers:
        return Fact(
            "False",
            STOPPING_SERVER,
            f"The backup is stored; the tracking server stops before the migration to image "
            f"{obs.desired_image}, because MLflow migrates only with every writer stopped "
            f"({obs.server_pods or 0} pods left).",
        )
    return Fact("False", WAITING_FOR_DATABASE, "The migration starts once the database is ready.")


def _downgrade_fact(obs: ServerObservation, job: str, log: str) -> Fact:
    desired = image_version(obs.desired_image) or obs.desired_image
    migrated = obs.migrated_image or "a newer image"
    back = f"set spec.image back to {obs.migrated_image}" if obs.migrated_image else "go back"
    return Fact(
        "False",
        DOWNGRADE_REFUSED,
        f"Image {obs.desired_image} (MLflow {desired}) cannot run on this database, migrated "
        f"by {migrated}: {log}.{_keeps_running(obs)} Either {back}, or restore a backup taken "
        f"before that migration (docs/mlflowserver.md, roll back a failed upgrade) and delete "
        f"Job {job}.",
    )


def _before_migration(obs: ServerObservation, plan: ServerPlan) -> Fact | None:
    """What the migration waits for: a restore (spec.restoreFrom), or an upgrade's backup."""
    if plan.restoring and not plan.restore_done:
        return _restore_fact(obs)
    backup = obs.backup
    if not plan.upgrade or plan.backup_done:
        return None
    keeps = _keeps_running(obs)
    if backup is not None and backup.failed:
        return Fact(
            "False",
            BACKUP_FAILED,
            f"The migration to image {obs.desired_image} waits for a backup of the "
            f"database: Job {backup.name} failed ({backup.message}).{keeps} Delete the "
            "Job to try again.",
        )
    name = backup.name if backup else "a backup Job"
    return Fact(
        "False",
        BACKING_UP,
        f"{name} backs up the database before the migration to image {obs.desired_image}.{keeps}",
    )


def _restore_fact(obs: ServerObservation) -> Fact:
    restore = obs.restore
    if restore is not None and restore.failed:
        return Fact(
            "False",
            RESTORE_FAILED,
            f"Job {restore.name} could not restore {obs.restore_key} ({restore.message}). Fix "
            "the cause, empty the database if the restore began, and delete the Job to try "
            "again.",
        )
    name = restore.name if restore else "a restore Job"
    return Fact(
        "False",
        RESTORING,
        f"{name} fills the database from {obs.restore_key} before the first migration.",
    )


def _keeps_running(obs: ServerObservation) -> str:
    if obs.deployment and obs.deployment.image:
        return f" The server runs {obs.deployment.image}."
    return ""


def ready_fact(obs: ServerObservation, plan: ServerPlan, migration: Fact) -> Fact:
    """Ready: every store ready, the schema migrated, and all pods serve the desired image."""
    blocker = _blocker(obs, plan, migration)
    if blocker is not None:
        return blocker
    deployment = obs.deployment
    if deployment is None:
        return Fact("False", DEPLOYING, "The tracking server Deployment is being created.")
    if deployment.desired == 0:
        return Fact("False", SCALED_TO_ZERO, "spec.replicas is 0: no server runs.")
    if deployment.image != obs.desired_image or not deployment.current_generation:
        return Fact("False", ROLLING_OUT, f"Rolling out image {obs.desired_image}.")
    if not deployment.all_ready or deployment.updated < deployment.desired:
        return Fact(
            "False",
            PODS_NOT_READY,
            f"{deployment.ready} of {deployment.desired} tracking server pods are ready.",
        )
    serving = Fact(
        "True", SERVING, f"{deployment.ready} tracking server pods serve {deployment.image}."
    )
    # it serves, but a store's volume is not yet the size the spec asks for
    return obs.storage_pending[0] if obs.storage_pending else serving


def _blocker(obs: ServerObservation, plan: ServerPlan, migration: Fact) -> Fact | None:
    """The first prerequisite of the server that is not met, as Ready's value."""
    if obs.problems:  # a part of the spec that could not be applied comes first
        return obs.problems[0]
    if plan.restore_refused:
        return Fact(
            "False",
            RESTORE_REFUSED,
            f"spec.restoreFrom {obs.restore_key} fills only the database of a new server; "
            f"this one was migrated by {obs.migrated_image} and is left alone. Remove the "
            "field, or restore by hand (docs/mlflowserver.md, roll back a failed upgrade).",
        )
    if obs.admin_secret is not None:
        problem = secret_fact(obs.admin_secret)
        if problem is not None:
            return problem
    for fact, reason in (
        (plan.database, DATABASE_NOT_READY),
        (plan.artifact_store, ARTIFACT_STORE_NOT_READY),
    ):
        if fact.status != "True":
            return Fact("False", reason, fact.message)
    if migration.status != "True":
        failed = migration.reason in (
            MIGRATION_FAILED,
            DOWNGRADE_REFUSED,
            BACKUP_FAILED,
            RESTORE_FAILED,
        )
        reason = migration.reason if failed else MIGRATION_PENDING
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
    facts: dict[str, Fact] = {
        DATABASE_READY: plan.database,
        ARTIFACT_STORE_READY: plan.artifact_store,
        SCHEMA_MIGRATED: migration,
        READY: ready_fact(obs, plan, migration),
    }
    backup = verified_fact(obs.latest_backup) if obs.latest_backup else None
    if backup is not None:  # without a finished backup, the condition stays as it was
        facts[BACKUP_VERIFIED] = backup
    conditions: list[Condition] = list(previous.conditions)
    for type_, fact in facts.items():
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
        restored_from=(
            obs.restore_key if plan.restoring and plan.restore_done else previous.restored_from
        ),
        backups=with_backups(list(previous.backups), obs.new_backups),
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


def with_ready(
    previous: MLflowServerStatus, reason: str, message: str, generation: int, now: datetime
) -> MLflowServerStatus:
    """The previous status with Ready=False for this reason (its other conditions kept)."""
    conditions = set_condition(
        previous.conditions, READY, "False", reason=reason, message=message,
        generation=generation, now=now,
    )  # fmt: skip
    return previous.model_copy(update={"conditions": conditions})
