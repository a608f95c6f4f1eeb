"""Resolve a ModelDeployment's spec.model (alias | stage | version | selector) to one version.

Expected situations (missing model, alias or version; a version not READY) are typed outcomes,
not exceptions: the reconcile turns them into conditions a person can act on.
"""

from __future__ import annotations

from dataclasses import dataclass

from mlflow_operator.api.modeldeployment import ModelSelector, VersionSelector
from mlflow_operator.api.semver import in_range, parse_version
from mlflow_operator.core.modeldeployment.conditions import (
    ALIAS_NOT_FOUND,
    MODEL_NOT_FOUND,
    NO_MATCHING_VERSION,
    NO_SELECTOR,
    NO_VERSION_IN_STAGE,
    VERSION_NOT_FOUND,
    VERSION_NOT_READY,
    VERSIONS_NOT_READ,
)
from mlflow_operator.core.registry_view import VERSION_READY, ModelSnapshot, VersionInfo


@dataclass(frozen=True)
class Resolved:
    version: str
    run_id: str = ""
    selection: str = ""  # why spec.model.selector chose this version ("" for the other ways)


@dataclass(frozen=True)
class Unresolved:
    """The selector points nowhere usable; reason is a CamelCase condition reason."""

    # ModelNotFound | AliasNotFound | NoVersionInStage | VersionNotFound | VersionNotReady |
    # NoMatchingVersion | VersionsNotRead
    reason: str
    message: str


Resolution = Resolved | Unresolved


def follows(selector: ModelSelector) -> str:
    """The selector as `kubectl get mdep` shows it: alias:champion, stage:Production."""
    if selector.alias is not None:
        return f"alias:{selector.alias}"
    if selector.stage is not None:
        return f"stage:{selector.stage}"
    if selector.selector is not None:
        return _selector_text(selector.selector)
    return f"version:{selector.version}"


def _selector_text(selector: VersionSelector) -> str:
    """tags:stage=prod,team=fraud,semver:^2.1 (and the order and tag name when not defaults)."""
    parts = []
    if selector.tags:
        parts.append("tags:" + ",".join(f"{k}={v}" for k, v in sorted(selector.tags.items())))
    if selector.semver is not None:
        tag = "" if selector.semver_tag == "semver" else f"({selector.semver_tag})"
        parts.append(f"semver{tag}:{selector.semver}")
    if selector.order != "newest":
        parts.append(f"order:{selector.order}")
    return ",".join(parts)


def resolve_target(selector: ModelSelector, snapshot: ModelSnapshot | None) -> Resolution:
    """The version the registry selects now, if it is deployable."""
    if snapshot is None:
        return Unresolved(
            MODEL_NOT_FOUND, f"registered model {selector.name!r} does not exist in MLflow"
        )
    if selector.selector is not None:
        return _select(snapshot, selector.selector)
    version = _named_version(selector, snapshot)
    if isinstance(version, Unresolved):
        return version
    info = snapshot.versions.get(version)
    if info is None:
        if selector.version is not None:
            return Unresolved(
                VERSION_NOT_FOUND, f"registered model {selector.name!r} has no version {version}"
            )
        info = VersionInfo(version=version)  # aliased/staged versions exist by construction
    return _deployable(selector.name, info)


def _named_version(selector: ModelSelector, snapshot: ModelSnapshot) -> str | Unresolved:
    """The version an alias, a stage or a pin names."""
    name = selector.name
    if selector.alias is not None:
        version = snapshot.aliases.get(selector.alias)
        if version is None:
            return Unresolved(
                ALIAS_NOT_FOUND, f"registered model {name!r} has no alias {selector.alias!r}"
            )
        return version
    if selector.stage is not None:
        version = snapshot.latest_by_stage.get(selector.stage)
        if version is None:
            return Unresolved(
                NO_VERSION_IN_STAGE, f"registered model {name!r} has no version in {selector.stage}"
            )
        return version
    if selector.version is None:  # the API rules allow exactly one way; none is a bug upstream
        return Unresolved(NO_SELECTOR, "spec.model sets none of alias, stage, version or selector")
    return selector.version


def _deployable(name: str, info: VersionInfo) -> Resolution:
    if info.status != VERSION_READY:
        detail = f": {info.status_message}" if info.status_message else ""
        return Unresolved(
            VERSION_NOT_READY,
            f"version {info.version} of {name!r} is {info.status}, not READY{detail}",
        )
    return Resolved(version=info.version, run_id=info.run_id)


def _select(snapshot: ModelSnapshot, selector: VersionSelector) -> Resolution:
    """The best READY version whose tags (and semantic version) match: newest number first,
    or highest semantic version first (ties: the newest)."""
    name = snapshot.name
    if not snapshot.all_versions:
        return Unresolved(
            VERSIONS_NOT_READ,
            f"the versions of {name!r} have not been read yet; the next registry sweep reads them",
        )
    what = _selector_text(selector)
    tagged = [v for v in snapshot.versions.values() if _has_tags(v, selector.tags or {})]
    ready = [v for v in tagged if v.status == VERSION_READY]
    ranked: list[tuple[tuple[object, ...], VersionInfo, str]] = []
    outside: list[str] = []
    for info in ready:
        key, semver, excluded = _rank(info, selector)
        if excluded:
            outside.append(f"{info.version} ({excluded})")
        else:
            ranked.append((key, info, semver))
    if not ranked:
        return Unresolved(
            NO_MATCHING_VERSION,
            f"no READY version of {name!r} matches {what}"
            + _counts(len(snapshot.versions), tagged, ready, outside),
        )
    _, best, semver = max(ranked, key=lambda r: r[0])
    order = "highest semantic version" if selector.order == "highestSemver" else "newest"
    shown = f", semver {semver}" if semver else ""
    return Resolved(
        version=best.version,
        run_id=best.run_id,
        selection=f"version {best.version}{shown}: the {order} of {len(ranked)} READY "
        f"version(s) matching {what}",
    )


def _has_tags(info: VersionInfo, wanted: dict[str, str]) -> bool:
    return all(info.tags.get(key) == value for key, value in wanted.items())


def _rank(info: VersionInfo, selector: VersionSelector) -> tuple[tuple[object, ...], str, str]:
    """(sort key, semantic version shown, why excluded or "")."""
    number = int(info.version) if info.version.isdigit() else -1
    if selector.semver is None and selector.order == "newest":
        return (number,), "", ""
    raw = info.tags.get(selector.semver_tag)
    if raw is None:
        return (), "", f"no tag {selector.semver_tag}"
    parsed = parse_version(raw)
    if parsed is None:
        return (), "", f"{selector.semver_tag}={raw} is not a semantic version"
    if selector.semver is not None and not in_range(parsed, selector.semver):
        return (), "", f"{parsed} is outside {selector.semver}"
    key = (parsed, number) if selector.order == "highestSemver" else (number,)
    return key, str(parsed), ""


def _counts(
    total: int, tagged: list[VersionInfo], ready: list[VersionInfo], outside: list[str]
) -> str:
    """Why nothing matched, in numbers a person can check in the MLflow UI."""
    if not tagged:
        return f" (none of its {total} version(s) has these tags)"
    detail = f" ({len(tagged)} of {total} version(s) have the tags, {len(ready)} READY"
    if outside:
        detail += "; excluded: " + ", ".join(outside[:5]) + (", ..." if len(outside) > 5 else "")
    return detail + ")"
