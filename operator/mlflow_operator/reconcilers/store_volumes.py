"""A managed store's StatefulSet, made to fit the volume size asked for
(core/mlflowserver/storage.py).

The I/O of a storage change: read the live claims, ask them for the new size, delete the
StatefulSet with its pods orphaned so that the next apply creates it with the new claim
template. Each step is safe to repeat: a reconcile killed between two of them finds the claims
already asking for the size and goes on.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from mlflow_operator.core.mlflowserver.conditions import STORAGE_CHANGE_REFUSED, STORAGE_EXPANDING
from mlflow_operator.core.mlflowserver.observation import Fact
from mlflow_operator.core.mlflowserver.storage import (
    ClaimChange,
    claim_change,
    claim_names,
    claims_to_expand,
    expansion_request,
    growth_pending,
    keep_live_claims,
    refusal_message,
)
from mlflow_operator.kube.refusals import KubernetesRefused, NamingKube
from mlflow_operator.reconcilers.common import EventSink

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class StoreStep:
    """What to do with a store's StatefulSet this reconcile, and what to report."""

    apply: dict[str, Any] | None
    """The StatefulSet to apply; None while it is being recreated."""
    refused: Fact | None = None
    """Ready's value when a storage change cannot be made (the rest is applied)."""
    pending: Fact | None = None
    """Ready's value while a volume grows."""


async def step_for_store(
    kube: NamingKube,
    desired: dict[str, Any],
    *,
    live: dict[str, Any] | None,
    field: str,
    emit: EventSink,
) -> StoreStep:
    """The StatefulSet to apply for `desired`, expanding volumes on the way when it asks."""
    if live is None:
        return StoreStep(desired)
    name, namespace = desired["metadata"]["name"], desired["metadata"]["namespace"]
    if live["metadata"].get("deletionTimestamp"):
        # orphan deletion in progress: its end is a watch event that wakes the next reconcile
        return StoreStep(None, pending=_recreating(name))
    change = claim_change(live, desired)
    if change is None:
        return StoreStep(desired, pending=await _growth(kube, namespace, live))
    if not change.grows:
        return StoreStep(
            keep_live_claims(live, desired),
            refused=Fact("False", STORAGE_CHANGE_REFUSED, refusal_message(change, field)),
        )
    try:
        await _expand_claims(kube, namespace, change)
    except KubernetesRefused as refused:
        if refused.refusal.namespace_terminating:
            raise
        said = refused.refusal.api_message or refused.refusal.message
        logger.warning("%s", refused.refusal.message)
        return StoreStep(
            keep_live_claims(live, desired),
            refused=Fact("False", STORAGE_CHANGE_REFUSED, refusal_message(change, field, said)),
        )
    await kube.delete("apps/v1", "StatefulSet", name, namespace, orphan=True)
    emit(
        "Normal",
        STORAGE_EXPANDING,
        f"Expanding the volumes of StatefulSet {name} from {change.old_size} to "
        f"{change.new_size}: its claims ask for the new size, and the StatefulSet is created "
        "again with the new claim template (its pods keep running).",
    )
    return StoreStep(None, pending=_recreating(name))


async def _expand_claims(kube: NamingKube, namespace: str, change: ClaimChange) -> None:
    claims = [
        await kube.get("v1", "PersistentVolumeClaim", claim, namespace) for claim in change.claims
    ]
    for claim in claims_to_expand(change, claims):
        await kube.apply(expansion_request(claim, namespace, change.new_size))


async def _growth(kube: NamingKube, namespace: str, live: dict[str, Any]) -> Fact | None:
    """StorageExpanding while a claim of the store is smaller than it asks for."""
    for name in claim_names(live):
        claim = await kube.get("v1", "PersistentVolumeClaim", name, namespace)
        why = growth_pending(claim) if claim is not None else ""
        if why:
            return Fact("False", STORAGE_EXPANDING, why)
    return None


def _recreating(name: str) -> Fact:
    return Fact(
        "False",
        STORAGE_EXPANDING,
        f"StatefulSet {name} is being created again with the new volume claim template; its "
        "pods keep running.",
    )
