"""Resolve a ModelDeployment's selector (alias | stage | version) to one concrete version.

Expected situations (missing model, alias or version; a version not READY) are typed outcomes,
not exceptions: the reconcile turns them into conditions a person can act on.
"""

from __future__ import annotations

from dataclasses import dataclass

from mlflow_operator.api.modeldeployment import ModelSelector
from mlflow_operator.core.registry_view import READY, ModelSnapshot, VersionInfo


@dataclass(frozen=True)
class Resolved:
    version: str
    run_id: str = ""


@dataclass(frozen=True)
class Unresolved:
    """The selector points nowhere usable; reason is a CamelCase condition reason."""

    reason: (
        str  # ModelNotFound | AliasNotFound | NoVersionInStage | VersionNotFound | VersionNotReady
    )
    message: str


Resolution = Resolved | Unresolved


def follows(selector: ModelSelector) -> str:
    """The selector as `kubectl get mdep` shows it: alias:champion, stage:Production."""
    if selector.alias is not None:
        return f"alias:{selector.alias}"
    if selector.stage is not None:
        return f"stage:{selector.stage}"
    return f"version:{selector.version}"


def resolve_target(selector: ModelSelector, snapshot: ModelSnapshot | None) -> Resolution:
    """The version the registry selects now, if it is deployable."""
    name = selector.name
    if snapshot is None:
        return Unresolved("ModelNotFound", f"registered model {name!r} does not exist in MLflow")
    if selector.alias is not None:
        version = snapshot.aliases.get(selector.alias)
        if version is None:
            return Unresolved(
                "AliasNotFound", f"registered model {name!r} has no alias {selector.alias!r}"
            )
    elif selector.stage is not None:
        version = snapshot.latest_by_stage.get(selector.stage)
        if version is None:
            return Unresolved(
                "NoVersionInStage", f"registered model {name!r} has no version in {selector.stage}"
            )
    else:
        version = selector.version
    if version is None:  # the API rules allow exactly one selector; none set is a bug upstream
        return Unresolved("NoSelector", "spec.model sets none of alias, stage or version")
    info = snapshot.versions.get(version)
    if info is None:
        if selector.version is not None:
            return Unresolved(
                "VersionNotFound", f"registered model {name!r} has no version {version}"
            )
        info = VersionInfo(version=version)  # aliased/staged versions exist by construction
    return _deployable(name, info)


def _deployable(name: str, info: VersionInfo) -> Resolution:
    if info.status != READY:
        detail = f": {info.status_message}" if info.status_message else ""
        return Unresolved(
            "VersionNotReady",
            f"version {info.version} of {name!r} is {info.status}, not READY{detail}",
        )
    return Resolved(version=info.version, run_id=info.run_id)
