"""Storage changes of a managed store's StatefulSet, whose volumeClaimTemplates are immutable.

Applying a StatefulSet whose claim template differs from the live one is refused whole by the
API server (422), which would also hold back every other change of that reconcile (a new
image, a new configuration). So a claim change is decided here, before the apply:

- a larger size is a volume expansion: each existing PersistentVolumeClaim asks for the new
  size (the API server allows it only when the claim's StorageClass has
  `allowVolumeExpansion`), then the StatefulSet is deleted with its pods orphaned and created
  again with the new template (the pods keep running and keep their volumes). This is what
  Kubernetes documents for resizing a StatefulSet's volumes, and what ECK does for
  Elasticsearch.
- a smaller size or another StorageClass cannot be done in place: the live claim template is
  kept, the rest is applied, and the refusal says what a person can do.

The storage driver does the resize itself; until a claim's capacity reaches its request, the
server reports `StorageExpanding`.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from lightkube.utils.quantity import parse_quantity


@dataclass(frozen=True)
class ClaimChange:
    """How a desired StatefulSet's claim template differs from the live one's."""

    statefulset: str
    claims: tuple[str, ...]
    """The replicas' PersistentVolumeClaims (claim_names)."""
    old_size: str
    new_size: str
    refused: str
    """Why the change cannot be made in place (a new class, a smaller size); "" for a growth."""

    @property
    def grows(self) -> bool:
        return not self.refused


def claim_names(statefulset: dict[str, Any]) -> tuple[str, ...]:
    """The claims of a StatefulSet's replicas: `<claim template>-<statefulset>-<ordinal>`."""
    spec = statefulset.get("spec") or {}
    templates = spec.get("volumeClaimTemplates") or []
    if not templates:
        return ()
    template = (templates[0].get("metadata") or {}).get("name", "data")
    name = statefulset["metadata"]["name"]
    replicas = spec.get("replicas")
    return tuple(f"{template}-{name}-{i}" for i in range(1 if replicas is None else replicas))


def claim_change(live: dict[str, Any], desired: dict[str, Any]) -> ClaimChange | None:
    """The change of the first claim template (a managed store has one), or None."""
    live_claims = (live.get("spec") or {}).get("volumeClaimTemplates") or []
    wanted_claims = desired["spec"].get("volumeClaimTemplates") or []
    if not live_claims or not wanted_claims:
        return None
    old, new = live_claims[0], wanted_claims[0]
    old_spec, new_spec = old.get("spec") or {}, new.get("spec") or {}
    old_size, new_size = _requested(old_spec), _requested(new_spec)
    resized = _size(old_size) != _size(new_size)
    # absent on our side means "the cluster default", which the live object may have filled in
    new_class = new_spec.get("storageClassName")
    reclassed = new_class is not None and new_class != old_spec.get("storageClassName")
    if not resized and not reclassed:
        return None
    refusals = []
    if reclassed:
        refusals.append(
            f"storageClassName from {old_spec.get('storageClassName')!r} to {new_class!r}"
        )
    if resized and (reclassed or _size(new_size) < _size(old_size)):
        refusals.append(f"storage from {old_size} to {new_size}")
    return ClaimChange(
        statefulset=desired["metadata"]["name"],
        claims=claim_names(live),
        old_size=old_size,
        new_size=new_size,
        refused=" and ".join(refusals),
    )


def refusal_message(change: ClaimChange, field: str, api_said: str = "") -> str:
    """StorageChangeRefused's message: what was not applied, why, and the way that works.

    `api_said` is the API server's refusal of the claim's expansion (a StorageClass without
    allowVolumeExpansion, a missing permission)."""
    claim = change.claims[0] if change.claims else f"of StatefulSet {change.statefulset}"
    if change.grows:
        what = (
            f"cannot expand the volume of StatefulSet {change.statefulset} from "
            f"{change.old_size} to {change.new_size}: {api_said}"
        )
        how = (
            "Use a StorageClass with allowVolumeExpansion, move the data to a new server "
            f"(a backup and spec.restoreFrom), or set {field}.storage back to {change.old_size}"
        )
    else:
        what = (
            f"cannot change {change.refused} of StatefulSet {change.statefulset}: a volume "
            "cannot shrink or change its StorageClass in place"
        )
        how = "Move the data to a new server (a backup and spec.restoreFrom), or put it back"
    return (
        f"{field}: {what}. The rest of the spec is applied; PersistentVolumeClaim {claim} is "
        f"unchanged. {how}."
    )


def keep_live_claims(live: dict[str, Any], desired: dict[str, Any]) -> dict[str, Any]:
    """`desired` with the live claim templates: the StatefulSet apply the API server takes."""
    kept = copy.deepcopy(desired)
    kept["spec"]["volumeClaimTemplates"] = copy.deepcopy(
        (live.get("spec") or {}).get("volumeClaimTemplates") or []
    )
    return kept


def claims_to_expand(change: ClaimChange, claims: list[dict[str, Any] | None]) -> list[str]:
    """Names of the existing claims that still ask for less than the new size."""
    wanted = _size(change.new_size)
    return [
        claim["metadata"]["name"]
        for claim in claims
        if claim is not None and _size(_requested(claim.get("spec") or {})) < wanted
    ]


def growth_pending(claim: dict[str, Any]) -> str:
    """Why a claim is not yet as large as it asks ("" when it is): the driver's resize."""
    requested = _requested(claim.get("spec") or {})
    capacity = str(((claim.get("status") or {}).get("capacity") or {}).get("storage") or "")
    if not requested or not capacity or _size(capacity) >= _size(requested):
        return ""
    name = claim["metadata"]["name"]
    notes = [
        f"{c.get('type')}: {c['message']}" if c.get("message") else str(c.get("type"))
        for c in (claim.get("status") or {}).get("conditions") or []
    ]
    said = f" ({'; '.join(notes)})" if notes else ""
    return (
        f"PersistentVolumeClaim {name} has {capacity} of the {requested} asked for; "
        f"its storage driver resizes it{said}."
    )


def _requested(spec: dict[str, Any]) -> str:
    return str(((spec.get("resources") or {}).get("requests") or {}).get("storage") or "")


def _size(quantity: str) -> Decimal:
    try:
        return parse_quantity(quantity) or Decimal(0)
    except ValueError:
        return Decimal(0)


def expansion_request(claim: str, namespace: str, size: str) -> dict[str, Any]:
    """The server-side apply that asks an existing claim for `size` (nothing else is owned)."""
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": claim, "namespace": namespace},
        "spec": {"resources": {"requests": {"storage": size}}},
    }
