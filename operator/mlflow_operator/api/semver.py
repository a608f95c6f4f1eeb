"""Semantic versions in version tags, and npm-style ranges over them (spec.model.selector).

Matching is semantic_version's `NpmSpec` (caret, tilde, x-ranges, hyphen ranges, `||`, and
npm's pre-release rule). SEMVER_RANGE_PATTERN is the subset of that grammar this operator
accepts, as a regular expression, so that the API server refuses a bad range at admission
with the field named (CEL has no semver parser); a property test checks that every string
the pattern admits is one `NpmSpec` parses.
"""

from __future__ import annotations

import re

import semantic_version

_NUMBER = r"(0|[1-9][0-9]*)"
_X_NUMBER = r"(0|[1-9][0-9]*|[xX*])"
_PRE_ID = r"(0|[1-9][0-9]*|[0-9]*[A-Za-z-][0-9A-Za-z-]*)"
_PRE = rf"(-{_PRE_ID}(\.{_PRE_ID})*)?"
_BUILD = r"(\+[0-9A-Za-z-]+(\.[0-9A-Za-z-]+)*)?"
_FULL = rf"{_NUMBER}\.{_NUMBER}\.{_NUMBER}{_PRE}{_BUILD}"  # pre-release only on full versions
_NUMERIC = rf"({_FULL}|{_NUMBER}(\.{_NUMBER})?)"
_PARTIAL = rf"({_FULL}|{_X_NUMBER}(\.{_X_NUMBER}(\.{_X_NUMBER})?)?)"
# after an operator the major is a number (NpmSpec refuses "^x" and "<*")
_OP_PARTIAL = rf"({_FULL}|{_NUMBER}(\.{_X_NUMBER}(\.{_X_NUMBER})?)?)"
_COMPARATOR = rf"((\^|~|>=|<=|>|<|=){_OP_PARTIAL}|{_PARTIAL})"
# Single spaces inside a set (NpmSpec refuses, or crashes on, runs of spaces there); the ends
# of a hyphen range are numeric (NpmSpec refuses "1 - 2.x").
_SET = rf"({_NUMERIC} - {_NUMERIC}|{_COMPARATOR}( {_COMPARATOR})*)"
SEMVER_RANGE_PATTERN = rf"^{_SET}( *\|\| *{_SET})*$"

# A version tag's value: MAJOR.MINOR.PATCH with optional pre-release and build, and an
# optional leading "v" (v2.1.3), as people write release tags.
_VERSION_VALUE = re.compile(rf"^v?{_FULL}$")


def is_semver_range(text: str) -> bool:
    """Whether `text` is a range this operator accepts (the pattern) and can evaluate."""
    if re.fullmatch(SEMVER_RANGE_PATTERN, text) is None:
        return False
    try:
        semantic_version.NpmSpec(text)
    except Exception:  # noqa: BLE001  (it raises AttributeError too on some malformed input)
        return False
    return True


def parse_version(value: str) -> semantic_version.Version | None:
    """The semantic version a tag holds, or None when it holds something else."""
    text = value.strip()
    if _VERSION_VALUE.fullmatch(text) is None:
        return None
    try:
        return semantic_version.Version(text.removeprefix("v"))
    except ValueError:
        return None


def in_range(version: semantic_version.Version, text: str) -> bool:
    return bool(semantic_version.NpmSpec(text).match(version))
