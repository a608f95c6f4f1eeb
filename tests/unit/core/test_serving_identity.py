"""Which permissions a serving pods' MLflow user keeps, gets and loses."""

from __future__ import annotations

from typing import Any

from mlflow_operator.core.modeldeployment.serving_identity import (
    Grant,
    grant_changes,
    reader_secret_name,
    reader_username,
    recorded_server,
    server_to_leave,
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


def test_monitoring_adds_edit_on_its_own_experiment_and_taking_it_off_revokes_it() -> None:
    revoke, grant = grant_changes({MODEL, Grant("experiment", "1")}, "fraud", {"1"}, writes="9")
    assert (revoke, grant) == ([], [Grant("experiment", "9", "EDIT")])
    current = {MODEL, Grant("experiment", "1"), Grant("experiment", "9", "EDIT")}
    assert grant_changes(current, "fraud", {"1"}, writes="9") == ([], [])
    assert grant_changes(current, "fraud", {"1"}) == ([Grant("experiment", "9", "EDIT")], [])
    # READ on the monitoring experiment (someone lowered it) is replaced, not kept beside
    lowered = {MODEL, Grant("experiment", "1"), Grant("experiment", "9")}
    assert grant_changes(lowered, "fraud", {"1"}, writes="9") == (
        [Grant("experiment", "9")], [Grant("experiment", "9", "EDIT")])  # fmt: skip


def test_one_user_and_one_secret_per_model_deployment() -> None:
    assert reader_username("a-b", "c") != reader_username("a", "b-c")
    assert reader_secret_name("fraud") == "fraud-mlflow-reader"
    assert len(reader_secret_name("x" * 253)) <= 63


def reader_secret(server: str | None) -> dict[str, Any]:
    annotations = {"mlflowops.dev/mlflow-server": server} if server else {}
    return {"metadata": {"name": "fraud-mlflow-reader", "annotations": annotations}}


def test_the_user_goes_from_the_server_its_secret_records_when_the_pods_left_it() -> None:
    assert server_to_leave(reader_secret("a"), None) == "a"  # to a trackingUri, or auth off
    assert server_to_leave(reader_secret("a"), "b") == "a"  # to another MLflowServer
    assert server_to_leave(reader_secret("a"), "a") is None
    assert server_to_leave(None, "a") is None  # no Secret: nothing was made


def test_a_secret_that_records_no_server_counts_as_made_for_the_current_one() -> None:
    """Secrets of the release before (and a person's) churn nothing on an upgrade."""
    for unrecorded in (reader_secret(None), {"metadata": {"name": "fraud-mlflow-reader"}}):
        assert server_to_leave(unrecorded, "a") is None
        assert server_to_leave(unrecorded, None) is None
        assert recorded_server(unrecorded, "a") == "a"


def test_deletion_looks_for_the_user_where_the_secret_says() -> None:
    assert recorded_server(reader_secret("a"), "b") == "a"
    assert recorded_server(reader_secret("a"), None) == "a"
    assert recorded_server(None, "b") == "b"
    assert recorded_server(None, None) is None
