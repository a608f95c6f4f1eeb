"""Which permissions a serving pods' MLflow user keeps, gets and loses."""

from __future__ import annotations

from mlflow_operator.core.modeldeployment.serving_identity import (
    Grant,
    grant_changes,
    reader_secret_name,
    reader_username,
)

MODEL = Grant("registered_model", "fraud")


def test_a_new_user_gets_its_model_and_its_versions_experiments() -> None:
    revoke, grant = grant_changes(set(), "fraud", {"3", "1"})
    assert revoke == []
    assert grant == [Grant("experiment", "1"), Grant("experiment", "3"), MODEL]


def test_experiments_of_earlier_versions_stay_for_a_rollback() -> None:
    current = {MODEL, Grant("experiment", "1")}
    assert grant_changes(current, "fraud", {"2"}) == ([], [Grant("experiment", "2")])


def test_another_model_anything_above_read_and_other_kinds_go() -> None:
    current = {
        Grant("registered_model", "old-name"),
        Grant("experiment", "1", "EDIT"),
        Grant("prompt", "p1"),
        MODEL,
    }
    revoke, grant = grant_changes(current, "fraud", {"1"})
    assert revoke == [
        Grant("experiment", "1", "EDIT"),
        Grant("prompt", "p1"),
        Grant("registered_model", "old-name"),
    ]
    assert grant == [Grant("experiment", "1")]  # revoked first, then granted at READ


def test_one_user_and_one_secret_per_model_deployment() -> None:
    assert reader_username("a-b", "c") != reader_username("a", "b-c")
    assert reader_secret_name("fraud") == "fraud-mlflow-reader"
    assert len(reader_secret_name("x" * 253)) <= 63
