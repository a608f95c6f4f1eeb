"""A storage change a StatefulSet cannot take: its volumeClaimTemplates are immutable.

Applying a StatefulSet whose claim template differs from the live one is refused whole by the
API server (422), which would also hold back every other change of that reconcile (a new
image, a new configuration). So the desired StatefulSet keeps the live claim template, the
rest is applied, and the refused part is reported with what a person can do about it.
"""

from __future__ import annotations

import copy
from typing import Any


def keep_live_claims(
    live: dict[str, Any] | None, desired: dict[str, Any], field: str
) -> tuple[dict[str, Any], str]:
    """`desired` with the live claim templates where they differ, and why (or "")."""
    if live is None:
        return desired, ""
    live_claims = (live.get("spec") or {}).get("volumeClaimTemplates") or []
    wanted_claims = desired["spec"].get("volumeClaimTemplates") or []
    changes = [
        change
        for old, new in zip(live_claims, wanted_claims, strict=False)
        for change in _changes(old, new)
    ]
    if not changes:
        return desired, ""
    kept = copy.deepcopy(desired)
    kept["spec"]["volumeClaimTemplates"] = copy.deepcopy(live_claims)
    sts = desired["metadata"]["name"]
    claim = (live_claims[0].get("metadata") or {}).get("name", "data")
    message = (
        f"{field}: cannot change {' and '.join(changes)} of StatefulSet {sts}: a StatefulSet's "
        "volumeClaimTemplates are immutable. The rest of the spec is applied. To resize, "
        f"expand the PersistentVolumeClaim {claim}-{sts}-0 (if its StorageClass allows it), "
        "then delete the StatefulSet with --cascade=orphan: the operator recreates it with the "
        "new claim template and the pod keeps its volume"
    )
    return kept, message


def _changes(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    old_spec, new_spec = old.get("spec") or {}, new.get("spec") or {}
    changes = []
    old_size = ((old_spec.get("resources") or {}).get("requests") or {}).get("storage")
    new_size = ((new_spec.get("resources") or {}).get("requests") or {}).get("storage")
    if str(old_size) != str(new_size):
        changes.append(f"storage from {old_size} to {new_size}")
    # absent on our side means "the cluster default", which the live object may have filled in
    new_class = new_spec.get("storageClassName")
    if new_class is not None and new_class != old_spec.get("storageClassName"):
        changes.append(
            f"storageClassName from {old_spec.get('storageClassName')!r} to {new_class!r}"
        )
    return changes
