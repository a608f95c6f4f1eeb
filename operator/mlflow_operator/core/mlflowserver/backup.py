"""A backup Job as observed, what it means for the BackupVerified condition and status.backups.

The Job's `store` step reports what it stored as its termination message (JSON, see
builders/mlflowserver/backup.py); a failed step's message is the tail of its log.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from mlflow_operator.api.mlflowserver import BackupRecord
from mlflow_operator.core.mlflowserver.conditions import (
    BACKUP_FAILED,
    BACKUP_UNREPORTED,
    BACKUP_VERIFIED,
    NOT_VERIFIED,
)
from mlflow_operator.core.mlflowserver.observation import Fact, failed_step

STATUS_BACKUPS = 10  # status keeps the newest ten; the bucket keeps spec.backup.keep


@dataclass(frozen=True)
class BackupState:
    """A backup Job as observed."""

    name: str
    succeeded: bool = False
    failed: bool = False
    message: str = ""
    """Why it failed: the failed step and the end of its log."""
    record: BackupRecord | None = None
    """What the store step reported, once the Job succeeded."""


def observe_backup(job: dict[str, Any], pods: list[dict[str, Any]]) -> BackupState:
    conditions = (job.get("status") or {}).get("conditions") or []
    done = {c.get("type"): c for c in conditions if c.get("status") == "True"}
    name = job["metadata"]["name"]
    newest = sorted(pods, key=lambda p: p["metadata"].get("creationTimestamp") or "")
    if "Complete" in done:
        return BackupState(name, succeeded=True, record=_stored(newest[-1] if newest else None))
    if "Failed" in done:
        why = str(done["Failed"].get("reason") or "failed")
        step = failed_step(newest)
        return BackupState(name, failed=True, message=f"{why}; {step}" if step else why)
    return BackupState(name)


def verified_fact(state: BackupState) -> Fact | None:
    """BackupVerified's value once the Job has finished; None while it runs."""
    if state.failed:
        return Fact("False", BACKUP_FAILED, f"Job {state.name} failed: {state.message}")
    if not state.succeeded:
        return None
    record = state.record
    if record is None:
        return Fact(
            "False", BACKUP_UNREPORTED, f"Job {state.name} succeeded but reported no result."
        )
    if not record.verified:
        return Fact(
            "False",
            NOT_VERIFIED,
            f"Backup {record.key} ({record.size_bytes} bytes) of {record.time} is stored "
            "without a restore test (spec.backup.verify is false).",
        )
    rows = ", ".join(f"{table} {count}" for table, count in record.rows.items())
    return Fact(
        "True",
        BACKUP_VERIFIED,
        f"Backup {record.key} ({record.size_bytes} bytes) of {record.time} restored into a "
        f"scratch database with the source's row counts ({rows}).",
    )


def with_backups(
    records: list[BackupRecord], states: tuple[BackupState, ...]
) -> list[BackupRecord]:
    """status.backups with what these Jobs stored, each once, the newest STATUS_BACKUPS."""
    known = {r.key for r in records}
    for state in states:
        if state.record is not None and state.record.key not in known:
            records = [*records, state.record]
            known.add(state.record.key)
    return records[-STATUS_BACKUPS:]


def _stored(pod: dict[str, Any] | None) -> BackupRecord | None:
    message = _terminated(pod, "containerStatuses", "store").get("message") or ""
    try:
        return BackupRecord.model_validate(json.loads(message))
    except (ValueError, ValidationError):
        return None


def _terminated(pod: dict[str, Any] | None, field: str, container: str) -> dict[str, Any]:
    for status in ((pod or {}).get("status") or {}).get(field) or []:
        if status.get("name") == container:
            return dict((status.get("state") or {}).get("terminated") or {})
    return {}


def backup_finished(job: dict[str, Any]) -> bool:
    """Whether a backup Job is done, one way or the other."""
    state = observe_backup(job, [])
    return state.succeeded or state.failed
