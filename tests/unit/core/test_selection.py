"""spec.model.selector: the best READY version by tags and semantic version, and why."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from mlflow_operator.api.modeldeployment import ModelSelector, VersionSelector
from mlflow_operator.core.modeldeployment.resolution import (
    Resolved,
    Unresolved,
    follows,
    resolve_target,
)
from mlflow_operator.core.registry_view import ModelSnapshot, VersionInfo


def version(number: int, status: str = "READY", **tags: str) -> VersionInfo:
    return VersionInfo(str(number), status=status, run_id=f"r{number}", tags=tags)


def snapshot(*versions: VersionInfo, listed: bool = True) -> ModelSnapshot:
    return ModelSnapshot(
        name="fraud", versions={v.version: v for v in versions}, all_versions=listed
    )


def select(snap: ModelSnapshot | None, **selector: object) -> Resolved | Unresolved:
    return resolve_target(
        ModelSelector(name="fraud", selector=VersionSelector.model_validate(selector)), snap
    )


REGISTRY = snapshot(
    version(1, stage="prod", semver="2.0.0"),
    version(2, stage="prod", semver="2.4.1"),
    version(3, stage="prod", semver="3.0.0"),  # a higher major
    version(4, stage="dev", semver="2.9.0"),  # the wrong tag
    version(5, status="PENDING_REGISTRATION", stage="prod", semver="2.5.0"),
    version(6, stage="prod", semver="v2.2.0"),
    version(7, stage="prod", semver="not-a-version"),
)


def test_tags_follow_the_newest_ready_version_with_every_tag() -> None:
    result = select(REGISTRY, tags={"stage": "prod"})
    assert isinstance(result, Resolved)
    assert (result.version, result.run_id) == ("7", "r7")
    assert result.selection == (
        "version 7: the newest of 5 READY version(s) matching tags:stage=prod"
    )


def test_a_semver_range_skips_a_higher_major_and_versions_without_a_semantic_version() -> None:
    result = select(REGISTRY, tags={"stage": "prod"}, semver="^2.1")
    assert isinstance(result, Resolved)
    assert result.version == "6"  # newest of 2 (2.4.1) and 6 (v2.2.0); 3 is 3.0.0, 7 no semver
    assert "semver 2.2.0" in result.selection


def test_highest_semver_orders_by_the_tag_not_the_version_number() -> None:
    result = select(REGISTRY, tags={"stage": "prod"}, semver="^2.1", order="highestSemver")
    assert isinstance(result, Resolved)
    assert result.version == "2"
    assert "highest semantic version" in result.selection
    unbounded = select(REGISTRY, tags={"stage": "prod"}, order="highestSemver")
    assert isinstance(unbounded, Resolved)
    assert unbounded.version == "3"


def test_equal_semantic_versions_go_to_the_newest_version() -> None:
    snap = snapshot(version(1, semver="1.0.0"), version(2, semver="1.0.0"))
    result = select(snap, semver="1.x", order="highestSemver")
    assert isinstance(result, Resolved)
    assert result.version == "2"


def test_semver_tag_name_is_configurable() -> None:
    snap = snapshot(version(1, release="1.2.0", semver="9.0.0"), version(2, release="0.9.0"))
    result = select(snap, semver="^1", semverTag="release")
    assert isinstance(result, Resolved)
    assert result.version == "1"
    assert (
        follows(
            ModelSelector(name="m", selector=VersionSelector(semver="^1", semver_tag="release"))
        )
        == "semver(release):^1"
    )


def test_pre_releases_match_only_ranges_that_ask_for_them() -> None:
    snap = snapshot(version(1, semver="2.1.0"), version(2, semver="2.2.0-rc.1"))
    stable = select(snap, semver="^2.1")
    assert isinstance(stable, Resolved)
    assert stable.version == "1"
    candidate = select(snap, semver=">=2.2.0-rc.0 <2.3.0")
    assert isinstance(candidate, Resolved)
    assert candidate.version == "2"


def test_no_matching_version_says_what_was_excluded() -> None:
    result = select(REGISTRY, tags={"stage": "prod"}, semver="^4")
    assert isinstance(result, Unresolved)
    assert result.reason == "NoMatchingVersion"
    assert result.message.startswith(
        "no READY version of 'fraud' matches tags:stage=prod,semver:^4"
    )
    assert "6 of 7 version(s) have the tags, 5 READY" in result.message
    assert "3 (3.0.0 is outside ^4)" in result.message
    assert "7 (semver=not-a-version is not a semantic version)" in result.message
    nothing = select(REGISTRY, tags={"stage": "gone"})
    assert isinstance(nothing, Unresolved)
    assert nothing.message.endswith("(none of its 7 version(s) has these tags)")


def test_only_ready_versions_are_candidates() -> None:
    failed = version(2, status="FAILED_REGISTRATION", stage="prod")
    snap = snapshot(version(1, stage="prod"), failed)
    result = select(snap, tags={"stage": "prod"})
    assert isinstance(result, Resolved)
    assert result.version == "1"


def test_missing_model_and_unread_versions_are_their_own_reasons() -> None:
    missing = select(None, tags={"stage": "prod"})
    assert isinstance(missing, Unresolved)
    assert missing.reason == "ModelNotFound"
    unread = select(snapshot(version(1, stage="prod"), listed=False), tags={"stage": "prod"})
    assert isinstance(unread, Unresolved)
    assert unread.reason == "VersionsNotRead"


def test_follows_short_form_of_a_selector() -> None:
    selector = VersionSelector(tags={"team": "fraud", "stage": "prod"}, semver="^2.1")
    shown = follows(ModelSelector(name="m", selector=selector))
    assert shown == "tags:stage=prod,team=fraud,semver:^2.1"
    ordered = VersionSelector(semver="~1.4", order="highestSemver")
    assert follows(ModelSelector(name="m", selector=ordered)) == "semver:~1.4,order:highestSemver"


@given(
    st.lists(
        st.tuples(
            st.sampled_from(["READY", "PENDING_REGISTRATION"]),
            st.sampled_from(["prod", "dev", None]),
            st.tuples(st.integers(0, 3), st.integers(0, 3), st.integers(0, 3)),
        ),
        max_size=12,
    )
)
def test_the_choice_is_the_best_candidate_by_definition(
    rows: list[tuple[str, str | None, tuple[int, int, int]]],
) -> None:
    versions = [
        version(n, status, **({"stage": stage} if stage else {}), semver=".".join(map(str, sem)))
        for n, (status, stage, sem) in enumerate(rows, start=1)
    ]
    result = select(snapshot(*versions), tags={"stage": "prod"}, semver="^1", order="highestSemver")
    candidates = [
        (sem, n)
        for n, (status, stage, sem) in enumerate(rows, start=1)
        if status == "READY" and stage == "prod" and sem[0] == 1
    ]
    if not candidates:
        assert isinstance(result, Unresolved)
        assert result.reason == "NoMatchingVersion"
    else:
        assert isinstance(result, Resolved)
        assert result.version == str(max(candidates)[1])
