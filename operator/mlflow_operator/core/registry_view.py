"""What the operator knows of the MLflow registry: plain frozen data, filled by registry/."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

from mlflow_operator.core.modeldeployment.conditions import REGISTRY_UNREACHABLE

# A model version's status in MLflow once its files are registered (not a condition).
VERSION_READY = "READY"


@dataclass(frozen=True)
class VersionInfo:
    """One model version as the registry reports it."""

    version: str
    status: str = VERSION_READY  # READY | PENDING_REGISTRATION | FAILED_REGISTRATION
    status_message: str = ""
    run_id: str = ""
    current_stage: str = "None"
    tags: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ModelSnapshot:
    """One registered model: where its aliases and stages point, and versions we know of."""

    name: str
    aliases: Mapping[str, str] = field(default_factory=dict)  # alias -> version
    latest_by_stage: Mapping[str, str] = field(default_factory=dict)  # stage -> newest version
    versions: Mapping[str, VersionInfo] = field(default_factory=dict)  # version -> info
    # True when `versions` holds every version of the model with its tags (a follower uses
    # spec.model.selector); otherwise only the latest per stage, aliased and pinned ones.
    all_versions: bool = False


@dataclass(frozen=True)
class RegistryState:
    """The watcher's view of one model for one reconcile: snapshot, freshness and health."""

    snapshot: ModelSnapshot | None  # None: the model does not exist (or was never read)
    synced: bool  # the last sweep succeeded
    last_sync: datetime | None  # when a sweep last succeeded
    error: str = ""  # why the last sweep failed (never contains credentials)
    reason: str = REGISTRY_UNREACHABLE  # the RegistrySynced reason when not synced
