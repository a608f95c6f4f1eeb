"""The semantic version range grammar: what the CRD's CEL admits, the operator can evaluate."""

from __future__ import annotations

import re

import pytest
import semantic_version
from hypothesis import given, settings
from hypothesis import strategies as st

from mlflow_operator.api.semver import SEMVER_RANGE_PATTERN, is_semver_range, parse_version


@settings(max_examples=150)
@given(st.from_regex(SEMVER_RANGE_PATTERN, fullmatch=True))
def test_every_range_the_pattern_admits_is_one_npmspec_parses(text: str) -> None:
    semantic_version.NpmSpec(text)  # raises ValueError if the CEL pattern admits too much


@pytest.mark.parametrize(
    "text",
    ["^2.1", "~1.4.0", ">=1.2.0 <2.0.0", "2.x", "1.2.*", "*", "1.0.0 - 1.5.0", "^1 || ^3.2",
     ">=2.2.0-rc.0 <2.3.0", "=1.2.3", "1.2.3+build.5"],
)  # fmt: skip
def test_usual_ranges_are_accepted(text: str) -> None:
    assert is_semver_range(text)
    assert re.fullmatch(SEMVER_RANGE_PATTERN, text)


@pytest.mark.parametrize(
    "text",
    ["", " ^1", "^^1", ">= 1.2", "latest", "v2", "^v2.1", "1.2.3.4", "01.2.3", "~>1.2", "1 -"],
)
def test_malformed_ranges_are_refused(text: str) -> None:
    assert not is_semver_range(text)


def test_tag_values_are_full_semantic_versions_with_an_optional_v() -> None:
    assert str(parse_version("2.1.3")) == "2.1.3"
    assert str(parse_version("v2.1.3-rc.1")) == "2.1.3-rc.1"
    assert parse_version("2.1") is None
    assert parse_version("release-2") is None
    assert parse_version("02.1.3") is None
