"""Storage changes of a managed store: a growth is an expansion, the rest a clear refusal."""

from __future__ import annotations

from typing import Any

from mlflow_operator.api.common import PodTemplate
from mlflow_operator.api.mlflowserver import ManagedStore
from mlflow_operator.builders.meta import Owner
from mlflow_operator.builders.mlflowserver.postgres import build_postgres_statefulset
from mlflow_operator.core.mlflowserver.storage import (
    claim_change,
    claim_names,
    claims_to_expand,
    growth_pending,
    keep_live_claims,
    refusal_message,
)

OWNER = Owner("mlflowops.dev/v1alpha1", "MLflowServer", "mlflow", "ml", "uid-1")
FIELD = "spec.backendStore.postgres.managed"


def sts(storage: str, storage_class: str = "", image: str = "postgres:16") -> dict[str, Any]:
    return build_postgres_statefulset(
        OWNER, ManagedStore(storage=storage, storage_class_name=storage_class), image, PodTemplate()
    )


def claim(request: str, capacity: str, conditions: list[dict[str, str]] | None = None) -> Any:
    return {
        "metadata": {"name": "data-mlflow-postgres-0"},
        "spec": {"resources": {"requests": {"storage": request}}},
        "status": {"capacity": {"storage": capacity}, "conditions": conditions or []},
    }


def test_the_same_size_in_other_units_is_no_change() -> None:
    assert claim_change(sts("10Gi"), sts("10Gi", image="postgres:17")) is None
    assert claim_change(sts("1Gi"), sts("1024Mi")) is None


def test_a_larger_size_is_a_growth_of_every_replica_claim() -> None:
    live = sts("10Gi")
    live["spec"]["replicas"] = 2
    change = claim_change(live, sts("20Gi"))
    assert change is not None
    assert change.grows
    assert (change.old_size, change.new_size) == ("10Gi", "20Gi")
    assert change.claims == ("data-mlflow-postgres-0", "data-mlflow-postgres-1")


def test_a_smaller_size_or_a_new_class_is_refused_and_the_default_class_is_not_a_change() -> None:
    shrink = claim_change(sts("10Gi"), sts("5Gi"))
    assert shrink is not None
    assert shrink.refused == "storage from 10Gi to 5Gi"
    live = sts("10Gi")
    live["spec"]["volumeClaimTemplates"][0]["spec"]["storageClassName"] = "standard"
    assert claim_change(live, sts("10Gi")) is None  # absent = the default it got
    reclassed = claim_change(live, sts("20Gi", "fast"))
    assert reclassed is not None
    assert not reclassed.grows
    assert (
        reclassed.refused
        == "storageClassName from 'standard' to 'fast' and storage from 10Gi to 20Gi"
    )
    message = refusal_message(reclassed, FIELD)
    assert message.startswith(f"{FIELD}: cannot change storageClassName from 'standard'")
    assert "PersistentVolumeClaim data-mlflow-postgres-0 is unchanged" in message


def test_an_expansion_the_api_refuses_says_the_api_reason_and_the_ways_out() -> None:
    change = claim_change(sts("10Gi"), sts("20Gi"))
    assert change is not None
    message = refusal_message(change, FIELD, "only dynamically provisioned pvc can be resized")
    assert message.startswith(
        f"{FIELD}: cannot expand the volume of StatefulSet mlflow-postgres from 10Gi to 20Gi: "
        "only dynamically provisioned pvc can be resized."
    )
    assert f"set {FIELD}.storage back to 10Gi" in message


def test_the_apply_keeps_the_live_claim_template_and_the_rest_of_the_change() -> None:
    live = sts("10Gi")
    applied = keep_live_claims(live, sts("20Gi", image="postgres:17"))
    assert applied["spec"]["volumeClaimTemplates"] == live["spec"]["volumeClaimTemplates"]
    assert applied["spec"]["template"]["spec"]["containers"][0]["image"] == "postgres:17"


def test_only_existing_claims_that_ask_for_less_are_expanded() -> None:
    live = sts("10Gi")
    live["spec"]["replicas"] = 3
    change = claim_change(live, sts("20Gi"))
    assert change is not None
    done = claim("20Gi", "10Gi")
    done["metadata"]["name"] = "data-mlflow-postgres-1"
    assert claims_to_expand(change, [claim("10Gi", "10Gi"), done, None]) == [
        "data-mlflow-postgres-0"
    ]


def test_a_claim_smaller_than_it_asks_is_pending_with_the_drivers_words() -> None:
    assert growth_pending(claim("20Gi", "20Gi")) == ""
    assert growth_pending(claim("20Gi", "21474836480")) == ""
    pending = growth_pending(
        claim("20Gi", "10Gi", [{"type": "Resizing", "message": "waiting for the driver"}])
    )
    assert pending == (
        "PersistentVolumeClaim data-mlflow-postgres-0 has 10Gi of the 20Gi asked for; its "
        "storage driver resizes it (Resizing: waiting for the driver)."
    )


def test_claim_names_follow_the_statefulset_naming() -> None:
    assert claim_names(sts("1Gi")) == ("data-mlflow-postgres-0",)
