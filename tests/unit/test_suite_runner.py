"""`make test`'s runner (tests/suite.py): a tier that collects nothing fails the suite."""

from __future__ import annotations

import pytest

from tests import suite


def test_a_tier_that_collects_nothing_fails_the_suite(capsys: pytest.CaptureFixture[str]) -> None:
    # one unit module: the e2e tier collects nothing from it, which must not pass for green
    assert suite.main(["-p", "no:cacheprovider", "-q", "tests/unit/test_duration.py"]) == 1
    out = capsys.readouterr().out
    assert "e2e tier: FAILED: collected no tests" in out
    assert "unit, helm and integration tests: passed" in out
    assert "e2e tier, second process: FAILED" in out
