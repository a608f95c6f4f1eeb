"""Storage changes a StatefulSet cannot take are kept out of the apply and reported."""

from __future__ import annotations

from mlflow_operator.api.common import PodTemplate
from mlflow_operator.api.mlflowserver import ManagedStore
from mlflow_operator.builders.meta import Owner
from mlflow_operator.builders.postgres import build_postgres_statefulset
from mlflow_operator.core.storage import keep_live_claims

OWNER = Owner("mlflowops.dev/v1alpha1", "MLflowServer", "mlflow", "ml", "uid-1")
FIELD = "spec.backendStore.postgres.managed"


def sts(storage: str, storage_class: str = "", image: str = "postgres:16") -> dict[str, object]:
    return build_postgres_statefulset(
        OWNER, ManagedStore(storage=storage, storage_class_name=storage_class), image, PodTemplate()
    )


def test_an_unchanged_claim_applies_as_built() -> None:
    desired = sts("10Gi", image="postgres:17")
    assert keep_live_claims(sts("10Gi"), desired, FIELD) == (desired, "")
    assert keep_live_claims(None, desired, FIELD) == (desired, "")


def test_a_new_size_keeps_the_live_claim_and_the_rest_of_the_change() -> None:
    live = sts("10Gi")
    applied, message = keep_live_claims(live, sts("20Gi", image="postgres:17"), FIELD)
    assert applied["spec"]["volumeClaimTemplates"] == live["spec"]["volumeClaimTemplates"]  # type: ignore[index]
    assert applied["spec"]["template"]["spec"]["containers"][0]["image"] == "postgres:17"  # type: ignore[index]
    assert message.startswith(
        f"{FIELD}: cannot change storage from 10Gi to 20Gi of StatefulSet mlflow-postgres: "
        "a StatefulSet's volumeClaimTemplates are immutable."
    )
    assert "data-mlflow-postgres-0" in message


def test_a_new_storage_class_is_reported_and_the_default_is_not() -> None:
    live = sts("10Gi")
    live["spec"]["volumeClaimTemplates"][0]["spec"]["storageClassName"] = "standard"  # type: ignore[index]
    assert keep_live_claims(live, sts("10Gi"), FIELD)[1] == ""  # "" = the default it got
    _, message = keep_live_claims(live, sts("10Gi", "fast"), FIELD)
    assert "storageClassName from 'standard' to 'fast'" in message
