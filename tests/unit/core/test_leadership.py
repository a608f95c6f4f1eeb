"""Who holds a Lease, judged by this process's own clock (mlflow_operator.core.leadership)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from mlflow_operator.core.leadership import (
    Claim,
    LeaseSpec,
    conflict_message,
    live_holder,
    released,
    sight,
    to_hold,
)

T0 = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
OTHER = LeaseSpec("pod-a/1", 10, T0, T0, 0)


def test_a_lease_nobody_holds_or_we_hold_is_free_to_hold() -> None:
    assert live_holder(None, "pod-b/1", 0.0) is None
    assert live_holder(sight(None, LeaseSpec(), 0.0), "pod-b/1", 0.0) is None
    assert live_holder(sight(None, OTHER, 0.0), "pod-a/1", 0.0) is None


def test_another_holder_is_live_until_it_has_not_renewed_for_its_duration() -> None:
    seen = sight(None, OTHER, 100.0)
    assert live_holder(seen, "pod-b/1", 100.0) == "pod-a/1"
    assert live_holder(seen, "pod-b/1", 109.9) == "pod-a/1"
    # the same spec read again does not restart the clock: the holder stopped renewing
    seen = sight(seen, OTHER, 105.0)
    assert live_holder(seen, "pod-b/1", 110.0) is None


def test_a_renewal_restarts_the_clock_whatever_time_it_writes() -> None:
    seen = sight(None, OTHER, 100.0)
    # the holder's node clock is an hour behind: its renewTime is in our past, still live
    renewed = LeaseSpec("pod-a/1", 10, T0, T0 - timedelta(hours=1), 0)
    seen = sight(seen, renewed, 108.0)
    assert live_holder(seen, "pod-b/1", 115.0) == "pod-a/1"
    assert live_holder(seen, "pod-b/1", 118.0) is None


def test_holding_renews_our_own_and_counts_a_change_of_holder() -> None:
    later = T0 + timedelta(seconds=4)
    first = to_hold(None, "pod-a/1", T0, 10)
    assert first == LeaseSpec("pod-a/1", 10, T0, T0, 0)
    assert to_hold(first, "pod-a/1", later, 10) == LeaseSpec("pod-a/1", 10, T0, later, 0)
    assert to_hold(first, "pod-b/1", later, 15) == LeaseSpec("pod-b/1", 15, later, later, 1)


def test_release_hands_back_only_our_own_lease() -> None:
    later = T0 + timedelta(seconds=4)
    assert released(OTHER, "pod-b/1", later) is None
    given_back = released(OTHER, "pod-a/1", later)
    assert given_back is not None
    assert given_back.holder == ""
    assert live_holder(sight(None, given_back, 0.0), "pod-b/1", 0.0) is None


def test_the_conflict_message_names_both_installs_what_overlaps_and_the_remedy() -> None:
    claim = Claim("ml-prod", "mlflow-operator-claim", "ops-a/mlflow-operator", False)
    message = conflict_message(claim, "ops-b/mlflow-operator", "ml-prod, ml-dev")
    for part in ("ops-a/mlflow-operator", "ops-b/mlflow-operator", "namespace ml-prod"):
        assert part in message
    assert "watchNamespaces" in message
    everywhere = Claim("ops-a", "mlflow-operator-claim-all", "ops-a/mlflow-operator", True)
    assert "all namespaces" in conflict_message(everywhere, "ops-b/x", "ml-prod")
