"""MLflowServer decisions and status folds from observations. No I/O."""

from __future__ import annotations

import base64
import dataclasses
from datetime import UTC, datetime, timedelta

import pytest

from mlflow_operator.api.mlflowserver import BackupRecord, MLflowServerStatus
from mlflow_operator.core.conditions import get_condition
from mlflow_operator.core.mlflowserver.backup import BackupState
from mlflow_operator.core.mlflowserver.observation import (
    Fact,
    FailedStep,
    JobState,
    SecretCheck,
    ServerObservation,
    WorkloadState,
    check_secret,
)
from mlflow_operator.core.mlflowserver.plan import plan_server
from mlflow_operator.core.mlflowserver.status import condition_events, fold_status, image_version
from tests.unit.observations import managed_server

OLD = "ghcr.io/mlflow-operator/mlflow-server:3.17.2"
NEW = "ghcr.io/mlflow-operator/mlflow-server:3.18.0"
URL = "http://mlflow.ml.svc:5000"
NOW = datetime(2026, 1, 1, tzinfo=UTC)


def observation(**changes: object) -> ServerObservation:
    """A managed server whose stores are ready, nothing migrated yet, no Deployment."""
    return managed_server(**{"generation": 3, "desired_image": OLD, **changes})


def serving(image: str, ready: int = 2) -> WorkloadState:
    return WorkloadState("mlflow", desired=2, ready=ready, updated=ready, image=image)


def done(image: str) -> JobState:
    return JobState("mlflow-migrate-x", image=image, succeeded=True)


def stored(verified: bool = True, key: str = "s3://mlflow-backups/ns/mlflow/a.dump") -> BackupState:
    record = BackupRecord(
        key=key,
        time="2026-01-01T00:00:00Z",
        size_bytes=4096,
        verified=verified,
        rows={"experiments": 2, "runs": 5},
        before_image=NEW,
    )
    return BackupState("mlflow-backup-y", succeeded=True, record=record)


def status_of(
    obs: ServerObservation, previous: MLflowServerStatus | None = None
) -> MLflowServerStatus:
    return fold_status(previous or MLflowServerStatus(), obs, plan_server(obs), url=URL, now=NOW)


def condition(status: MLflowServerStatus, type_: str) -> tuple[str, str, str]:
    found = get_condition(status.conditions, type_)
    assert found is not None, type_
    assert found.observed_generation == 3
    return found.status, found.reason, found.message


# --- plan ----------------------------------------------------------------------------------


def test_no_migration_before_the_database_is_ready() -> None:
    obs = observation(postgres=WorkloadState("mlflow-postgres", desired=1, ready=0))
    plan = plan_server(obs)
    assert not plan.create_migration
    assert plan.server_image is None
    assert plan.database.status == "False"
    assert plan.database.reason == "PostgresNotReady"


def test_migration_first_then_deployment() -> None:
    plan = plan_server(observation())
    assert plan.create_migration
    assert plan.server_image is None  # no Deployment before the migration succeeded
    running = plan_server(observation(migration=JobState("mlflow-migrate-x", image=OLD)))
    assert not running.create_migration
    assert running.server_image is None
    migrated = plan_server(observation(migration=done(OLD)))
    assert migrated.migrated
    assert migrated.server_image == OLD


def test_an_upgrade_stops_the_old_server_for_the_migration_and_starts_the_new_one() -> None:
    """MLflow migrates only with every writer stopped: after the backup, the Deployment (on
    the old image) goes to 0, the migration waits for its last pod, the new image starts."""
    backed_up = observation(
        desired_image=NEW, deployment=serving(OLD), migrated_image=OLD, backup=stored(),
        server_pods=2,
    )  # fmt: skip
    plan = plan_server(backed_up)
    assert (plan.stop_writers, plan.server_replicas, plan.server_image) == (True, 0, OLD)
    assert not plan.create_migration
    assert condition(status_of(backed_up), "SchemaMigrated")[1:] == (
        "StoppingServer",
        f"The backup is stored; the tracking server stops before the migration to image {NEW}, "
        "because MLflow migrates only with every writer stopped (2 pods left).",
    )
    stopped = dataclasses.replace(backed_up, server_pods=0)
    assert plan_server(stopped).create_migration
    running = plan_server(
        dataclasses.replace(stopped, migration=JobState("mlflow-migrate-y", image=NEW))
    )
    assert (running.server_replicas, running.server_image) == (0, OLD)
    finished = plan_server(dataclasses.replace(stopped, migration=done(NEW)))
    assert (finished.server_replicas, finished.server_image) == (None, NEW)


def test_a_failed_migration_starts_the_old_server_again() -> None:
    failed = observation(
        desired_image=NEW, deployment=serving(OLD, ready=0), migrated_image=OLD,
        backup=stored(), server_pods=0,
        migration=JobState("mlflow-migrate-y", image=NEW, failed=True, reason="Failed"),
    )  # fmt: skip
    plan = plan_server(failed)
    assert (plan.stop_writers, plan.server_replicas, plan.server_image) == (False, None, OLD)
    assert not plan.create_migration


def test_a_first_install_stops_nothing() -> None:
    assert not plan_server(observation(desired_image=NEW)).stop_writers


def test_an_upgrade_backs_up_first_and_migrates_only_after_the_backup_is_stored() -> None:
    upgrade = observation(desired_image=NEW, deployment=serving(OLD), migrated_image=OLD)
    plan = plan_server(upgrade)
    assert (plan.create_backup, plan.create_migration) == (True, False)
    assert plan.server_image == OLD
    assert condition(status_of(upgrade), "SchemaMigrated")[1] == "BackingUp"
    running = dataclasses.replace(upgrade, backup=BackupState("mlflow-backup-y"))
    plan = plan_server(running)
    assert (plan.create_backup, plan.create_migration) == (False, False)
    status = status_of(running)
    assert condition(status, "Ready")[1] == "MigrationPending"
    assert get_condition(status.conditions, "BackupVerified") is None  # no verdict yet
    plan = plan_server(dataclasses.replace(upgrade, backup=stored(), server_pods=0))
    assert (plan.create_backup, plan.create_migration) == (False, True)


def test_a_first_install_migrates_without_a_backup() -> None:
    plan = plan_server(observation(desired_image=NEW))
    assert (plan.create_backup, plan.create_migration) == (False, True)


def test_a_failed_backup_keeps_the_old_server_and_blocks_the_migration() -> None:
    failed = BackupState(
        "mlflow-backup-y",
        failed=True,
        message="BackoffLimitExceeded; step verify exited 1: the restored copy differs",
    )
    obs = observation(
        desired_image=NEW,
        deployment=serving(OLD),
        migrated_image=OLD,
        backup=failed,
        latest_backup=failed,
    )
    plan = plan_server(obs)
    assert (plan.create_backup, plan.create_migration, plan.server_image) == (False, False, OLD)
    status = status_of(obs)
    state, reason, message = condition(status, "Ready")
    assert (state, reason) == ("False", "BackupFailed")
    assert "mlflow-backup-y" in message
    assert "the restored copy differs" in message
    assert f"The server runs {OLD}" in message
    state, reason, _ = condition(status, "BackupVerified")
    assert (state, reason) == ("False", "BackupFailed")
    assert status.backups == []


def test_a_stored_backup_is_listed_once_and_verified_says_what_was_compared() -> None:
    obs = observation(desired_image=NEW, deployment=serving(OLD), migrated_image=OLD)
    done = stored()
    first = status_of(
        dataclasses.replace(obs, backup=done, latest_backup=done, new_backups=(done,))
    )
    state, reason, message = condition(first, "BackupVerified")
    assert (state, reason) == ("True", "BackupVerified")
    assert "s3://mlflow-backups/ns/mlflow/a.dump" in message
    assert "experiments 2, runs 5" in message
    again = status_of(dataclasses.replace(obs, new_backups=(done,)), previous=first)
    assert [b.key for b in again.backups] == ["s3://mlflow-backups/ns/mlflow/a.dump"]
    unverified = status_of(dataclasses.replace(obs, latest_backup=stored(verified=False)))
    assert condition(unverified, "BackupVerified")[:2] == ("False", "NotVerified")


def test_status_keeps_the_newest_ten_backups() -> None:
    obs = observation(desired_image=NEW, deployment=serving(OLD), migrated_image=OLD)
    status = MLflowServerStatus()
    for n in range(12):
        stored_now = (stored(key=f"s3://b/{n}"),)
        status = status_of(dataclasses.replace(obs, new_backups=stored_now), status)
    assert [b.key for b in status.backups] == [f"s3://b/{n}" for n in range(2, 12)]


KEY = "s3://mlflow-backups/ml/mlflow/20260101T000000Z-mlflow-backup-y.dump"


def test_a_new_server_with_restore_from_restores_then_migrates() -> None:
    new = observation(desired_image=NEW, restore_key=KEY)
    plan = plan_server(new)
    assert (plan.create_restore, plan.create_migration) == (True, False)
    assert condition(status_of(new), "SchemaMigrated")[1] == "Restoring"
    running = dataclasses.replace(new, restore=BackupState("mlflow-restore"))
    assert not plan_server(running).create_restore
    done = dataclasses.replace(new, restore=BackupState("mlflow-restore", succeeded=True))
    plan = plan_server(done)
    assert (plan.create_restore, plan.create_migration) == (False, True)
    assert status_of(done).restored_from == KEY
    # restored once: a later reconcile (the Job pruned or not) neither restores nor waits
    later = dataclasses.replace(new, restored_from=KEY, migrated_image=NEW)
    plan = plan_server(later)
    assert (plan.restoring, plan.create_restore, plan.restore_refused) == (False, False, False)


def test_a_failed_restore_blocks_the_first_migration_and_says_why() -> None:
    failed = BackupState(
        "mlflow-restore",
        failed=True,
        message="BackoffLimitExceeded; step restore exited 1: the database already holds "
        "MLflow tables",
    )
    obs = observation(desired_image=NEW, restore_key=KEY, restore=failed)
    plan = plan_server(obs)
    assert (plan.create_restore, plan.create_migration) == (False, False)
    state, reason, message = condition(status_of(obs), "Ready")
    assert (state, reason) == ("False", "RestoreFailed")
    assert KEY in message
    assert "already holds MLflow tables" in message


def test_restore_from_on_a_migrated_server_is_refused_and_changes_nothing() -> None:
    obs = observation(
        desired_image=OLD, migrated_image=OLD, deployment=serving(OLD), restore_key=KEY
    )
    plan = plan_server(obs)
    assert (plan.create_restore, plan.create_migration, plan.restore_refused) == (
        False,
        False,
        True,
    )
    assert plan.server_image == OLD
    state, reason, message = condition(status_of(obs), "Ready")
    assert (state, reason) == ("False", "RestoreRefused")
    assert KEY in message
    assert OLD in message


def test_an_image_older_than_the_schema_is_refused_naming_both_images() -> None:
    refused = JobState(
        "mlflow-migrate-z",
        image=OLD,
        failed=True,
        reason="PodFailurePolicy",
        failed_step=FailedStep(
            "check-schema",
            3,
            "the database schema is at revision f0e1d2c3b4a5, which MLflow "
            "3.17.2 of this image does not know",
        ),
    )
    obs = observation(
        desired_image=OLD, deployment=serving(NEW), migrated_image=NEW, migration=refused
    )
    plan = plan_server(obs)
    assert (plan.create_migration, plan.server_image) == (False, NEW)
    status = status_of(obs)
    for type_ in ("SchemaMigrated", "Ready"):
        state, reason, message = condition(status, type_)
        assert (state, reason) == ("False", "DowngradeRefused")
        assert f"Image {OLD} (MLflow 3.17.2)" in message
        assert f"migrated by {NEW}" in message
        assert "revision f0e1d2c3b4a5" in message
        assert f"The server runs {NEW}" in message
    # the same step failing otherwise (no driver, no network) is an ordinary failure
    broken = dataclasses.replace(
        refused, failed_step=FailedStep("check-schema", 1, "No module named 'psycopg2'")
    )
    state, reason, message = condition(
        status_of(dataclasses.replace(obs, migration=broken)), "SchemaMigrated"
    )
    assert (state, reason) == ("False", "MigrationFailed")
    assert "step check-schema exited 1: No module named 'psycopg2'" in message


def test_failed_migration_keeps_the_old_server_and_says_why() -> None:
    failed = JobState(
        "mlflow-migrate-y",
        image=NEW,
        failed=True,
        reason="BackoffLimitExceeded",
        message="Job has reached the specified backoff limit",
    )
    obs = observation(
        desired_image=NEW, deployment=serving(OLD), migrated_image=OLD, migration=failed
    )
    plan = plan_server(obs)
    assert not plan.create_migration
    assert plan.server_image == OLD
    status = status_of(obs)
    state, reason, message = condition(status, "SchemaMigrated")
    assert (state, reason) == ("False", "MigrationFailed")
    assert "mlflow-migrate-y" in message
    assert "BackoffLimitExceeded" in message
    assert f"The server runs {OLD}" in message
    assert condition(status, "Ready")[:2] == ("False", "MigrationFailed")
    assert status.version == "3.17.2"  # still what serves
    assert status.migrated_image is None  # unchanged from previous (none given)


def test_a_deleted_job_of_a_migrated_image_is_not_rerun() -> None:
    plan = plan_server(observation(migrated_image=OLD, deployment=serving(OLD)))
    assert plan.migrated
    assert not plan.create_migration


# --- conditions ----------------------------------------------------------------------------


def test_ready_once_pods_ready_and_migration_complete() -> None:
    status = status_of(observation(migration=done(OLD), deployment=serving(OLD)))
    for type_ in ("DatabaseReady", "ArtifactStoreReady", "SchemaMigrated", "Ready"):
        assert condition(status, type_)[0] == "True", type_
    assert status.url == URL
    assert status.version == "3.17.2"
    assert status.observed_generation == 3
    assert status.migrated_image == OLD


@pytest.mark.parametrize(
    ("deployment", "reason"),
    [
        (None, "Deploying"),
        (serving(OLD, ready=1), "PodsNotReady"),
        (serving(NEW), "RollingOut"),
        (WorkloadState("mlflow", desired=0, image=OLD), "ScaledToZero"),
        (dataclasses.replace(serving(OLD), current_generation=False), "RollingOut"),
    ],
)
def test_not_ready_while_the_server_is_not_serving(
    deployment: WorkloadState | None, reason: str
) -> None:
    status = status_of(observation(migration=done(OLD), deployment=deployment))
    assert condition(status, "Ready")[:2] == ("False", reason)


def test_missing_secret_key_names_secret_and_key() -> None:
    obs = observation(
        managed_database=False,
        postgres=None,
        database_secret=SecretCheck("pg-creds", missing_keys=("password",)),
        external_database="pg.example:5432/mlflow (sslmode require)",
    )
    plan = plan_server(obs)
    assert not plan.create_migration
    status = status_of(obs)
    state, reason, message = condition(status, "DatabaseReady")
    assert (state, reason) == ("False", "SecretKeyMissing")
    assert "pg-creds" in message
    assert "password" in message
    assert condition(status, "Ready")[:2] == ("False", "DatabaseNotReady")


def test_missing_object_store_secret() -> None:
    obs = observation(
        managed_object_store=False,
        minio=None,
        object_store_secret=SecretCheck("s3-creds", found=False),
    )
    state, reason, message = condition(status_of(obs), "ArtifactStoreReady")
    assert (state, reason, message) == ("False", "SecretNotFound", "Secret s3-creds not found.")


def test_external_stores_are_ready_when_their_secrets_are_complete() -> None:
    obs = observation(
        managed_database=False,
        postgres=None,
        managed_object_store=False,
        minio=None,
        external_database="pg.example:5432/mlflow (sslmode require)",
        external_object_store="https://s3.example",
    )
    status = status_of(obs)
    assert condition(status, "DatabaseReady")[:2] == ("True", "ExternalDatabaseConfigured")
    assert condition(status, "ArtifactStoreReady")[:2] == ("True", "ExternalStoreConfigured")
    assert plan_server(obs).create_migration


def test_short_admin_password_blocks_ready() -> None:
    problem = "Secret my-admin key password is shorter than 12 characters."
    obs = observation(
        admin_secret=SecretCheck("my-admin", problems=(problem,)),
        migration=done(OLD),
        deployment=serving(OLD),
    )
    assert condition(status_of(obs), "Ready") == ("False", "SecretValueInvalid", problem)


def test_transition_time_moves_only_when_status_changes() -> None:
    first = status_of(observation())
    later = fold_status(
        first,
        observation(),
        plan_server(observation()),
        url=URL,
        now=NOW + timedelta(minutes=5),
    )
    before = get_condition(first.conditions, "SchemaMigrated")
    after = get_condition(later.conditions, "SchemaMigrated")
    assert before is not None
    assert after is not None
    assert after.last_transition_time == before.last_transition_time == NOW
    assert later == first  # nothing changed: the handler writes no status


# --- events --------------------------------------------------------------------------------


def test_events_for_condition_changes_only() -> None:
    first = status_of(observation())
    # a new object's first "not yet" is not news; the database being ready is
    events = condition_events([], first.conditions)
    assert ("Normal", "PostgresReady", "DatabaseReady: StatefulSet mlflow-postgres is ready.") in [
        (kind, reason, message) for kind, reason, message in events
    ]
    assert all(reason != "WaitingForDatabase" for _, reason, _ in events)
    assert condition_events(first.conditions, first.conditions) == []
    failed = status_of(
        observation(
            migration=JobState(
                "mlflow-migrate-x", image=OLD, failed=True, reason="DeadlineExceeded"
            )
        ),
        first,
    )
    kinds = {
        reason: kind for kind, reason, _ in condition_events(first.conditions, failed.conditions)
    }
    assert kinds["MigrationFailed"] == "Warning"


def test_a_part_of_the_spec_that_could_not_be_applied_is_ready_false_once() -> None:
    """Defect 7: a refused write (or an immutable storage change) left Ready as it was."""
    serving_old = observation(migration=done(OLD), deployment=serving(OLD))
    ok = status_of(serving_old)
    refused = Fact(
        "False",
        "StorageChangeRefused",
        "spec.backendStore.postgres.managed: cannot change storage from 1Gi to 3Gi ...",
    )
    blocked = status_of(dataclasses.replace(serving_old, problems=(refused,)), ok)
    assert condition(blocked, "Ready") == ("False", refused.reason, refused.message)
    assert condition(blocked, "DatabaseReady")[0] == "True"  # the database itself is fine
    events = condition_events(ok.conditions, blocked.conditions)
    assert [(k, r) for k, r, _ in events] == [("Warning", "StorageChangeRefused")]
    assert condition_events(blocked.conditions, blocked.conditions) == []
    forbidden = Fact("False", "KubernetesForbidden", "the Kubernetes API refused to apply ...")
    other = status_of(dataclasses.replace(serving_old, problems=(forbidden,)), blocked)
    assert [(k, r) for k, r, _ in condition_events(blocked.conditions, other.conditions)] == [
        ("Warning", "KubernetesForbidden")
    ]


def test_a_growing_volume_is_ready_false_as_progress_and_never_hides_a_failure() -> None:
    serving_old = observation(migration=done(OLD), deployment=serving(OLD))
    ok = status_of(serving_old)
    growing = Fact(
        "False",
        "StorageExpanding",
        "PersistentVolumeClaim data-mlflow-minio-0 has 1Gi of the 2Gi asked for; ...",
    )
    expanding = status_of(dataclasses.replace(serving_old, storage_pending=(growing,)), ok)
    assert condition(expanding, "Ready") == ("False", growing.reason, growing.message)
    events = condition_events(ok.conditions, expanding.conditions)
    assert [(k, r) for k, r, _ in events] == [("Normal", "StorageExpanding")]
    assert condition(status_of(serving_old, expanding), "Ready")[:2] == ("True", "Serving")
    # a server that does not serve says why, not that a volume grows
    rolling = observation(migration=done(OLD), deployment=serving(OLD, ready=1))
    assert (
        condition(status_of(dataclasses.replace(rolling, storage_pending=(growing,))), "Ready")[1]
        == "PodsNotReady"
    )


# --- helpers -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("image", "version"),
    [
        ("ghcr.io/mlflow-operator/mlflow-server:3.17.2", "3.17.2"),
        ("localhost:5000/mlflow:v3.1.0", "3.1.0"),
        ("ghcr.io/mlflow/mlflow:v3.4.0-full", "3.4.0-full"),
        ("ghcr.io/mlflow/mlflow:latest", None),
        ("localhost:5000/mlflow", None),
        ("mlflow@sha256:abc", None),
    ],
)
def test_image_version(image: str, version: str | None) -> None:
    assert image_version(image) == version


def _data(**values: str) -> dict[str, str]:
    return {k: base64.b64encode(v.encode()).decode() for k, v in values.items()}


def test_check_secret() -> None:
    keys = ("username", "password")
    assert check_secret("s", None, keys) == SecretCheck("s", found=False)
    assert check_secret("s", _data(username="u"), keys).missing_keys == ("password",)
    assert check_secret("s", {"username": "", "password": "eA=="}, keys).missing_keys == (
        "username",
    )
    assert check_secret("s", _data(username="u", password="p"), keys).usable
    short = check_secret("s", _data(username="u", password="p" * 11), keys, min_password=12)
    assert not short.usable
    assert "p" * 11 not in short.problems[0]
    assert check_secret("s", _data(username="u", password="p" * 12), keys, min_password=12).usable
