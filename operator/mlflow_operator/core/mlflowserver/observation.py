"""What one reconcile observed of an MLflowServer's children and referenced Secrets.

Secret values are looked at only for their presence (and the admin password's length): an
observation holds sentences about them, never a value.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mlflow_operator.api.common import ConditionStatus
from mlflow_operator.core.naming import ANNOTATION_IMAGE

if TYPE_CHECKING:
    from mlflow_operator.core.mlflowserver.backup import BackupState

MIN_ADMIN_PASSWORD = 12


@dataclass(frozen=True)
class Fact:
    """One condition's value."""

    status: ConditionStatus
    reason: str
    message: str


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


MESSAGE_TAIL = 500  # characters of a failed step's log in a condition


@dataclass(frozen=True)
class FailedStep:
    """The container of a Job's pod that exited non-zero, with the end of its log."""

    name: str
    exit_code: int
    log: str

    def __str__(self) -> str:
        return f"step {self.name} exited {self.exit_code}: {self.log}"


def failed_step(pods: Sequence[dict[str, Any]]) -> FailedStep | None:
    """The first failed step of the newest pod (pods in creation order); its log is the
    termination message (terminationMessagePolicy FallbackToLogsOnError)."""
    for pod in reversed(pods):
        for field in ("initContainerStatuses", "containerStatuses"):
            for status in (pod.get("status") or {}).get(field) or []:
                terminated = (status.get("state") or {}).get("terminated") or {}
                code = int(terminated.get("exitCode", 0))
                if code != 0:
                    log = " ".join(str(terminated.get("message") or "").split())
                    return FailedStep(str(status.get("name")), code, log[-MESSAGE_TAIL:])
    return None


@dataclass(frozen=True)
class JobState:
    """A migration Job as observed."""

    name: str
    image: str
    succeeded: bool = False
    failed: bool = False
    reason: str = ""
    message: str = ""
    failed_step: FailedStep | None = None
    """Once failed: which step, and why in its own words."""


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
    backup: BackupState | None = None
    """The backup Job taken before the migration to the desired image; None when none exists."""
    new_backups: tuple[BackupState, ...] = ()
    """Succeeded backup Jobs (before upgrades or scheduled) that status.backups lacks."""
    latest_backup: BackupState | None = None
    """The newest finished backup Job: BackupVerified is its verdict."""
    restore_key: str | None = None
    """spec.restoreFrom.key."""
    restored_from: str | None = None
    """status.restoredFrom: the backup the database was filled from."""
    restore: BackupState | None = None
    """The restore Job; None when none exists."""
    problems: tuple[Fact, ...] = ()
    """Parts of the spec this reconcile could not apply (a refused write, an immutable field);
    the rest was applied. The first one is Ready's value."""
    server_pods: int | None = None
    """Tracking server pods that exist, terminating ones included: the writers an upgrade's
    migration waits to be gone. Counted only while the database is behind the desired image."""
    storage_pending: tuple[Fact, ...] = ()
    """Volumes of managed stores still growing to the size asked for (StorageExpanding)."""


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


def workload_state(obj: dict[str, Any]) -> WorkloadState:
    """A Deployment or StatefulSet as the plan needs it: replicas, rollout done, image."""
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


def job_state(obj: dict[str, Any]) -> JobState:
    """A Job as the plan needs it: finished how, and why it failed."""
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
