"""The rollout ledger: what the operator has decided about versions, kept on the Deployment.

Status alone is not a durable record: a status write can fail after the operator acted, a
restored object can carry an old status, and a status can be lost. So every apply of the
serving Deployment carries the two facts a later reconcile needs to keep its promises, in the
metadata of the Deployment itself (never of its pod template, which would restart pods): the
versions that failed while the registry selected them (an annotation) and the last version
that completed a rollout (a label: it is written after every completed rollout, and a change
of a Deployment's annotations bumps its generation and rewrites its ReplicaSet; a label's
does not). The apply that rolls a failed version back is the same write that records the
failure, so the record cannot be lost between deciding and acting.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from mlflow_operator.core.naming import (
    ANNOTATION_FAILED_VERSIONS,
    ANNOTATION_LAST_GOOD_VERSION,
    LABEL_LAST_GOOD_VERSION,
)


@dataclass(frozen=True)
class RolloutLedger:
    failed_versions: tuple[str, ...] = ()
    last_good_version: str | None = None

    def annotations(self) -> dict[str, str]:
        return {ANNOTATION_FAILED_VERSIONS: ",".join(self.failed_versions)}

    def labels(self) -> dict[str, str]:
        return {LABEL_LAST_GOOD_VERSION: self.last_good_version or ""}


def read_ledger(
    annotations: Mapping[str, str] | None, labels: Mapping[str, str] | None = None
) -> RolloutLedger | None:
    """The ledger in a Deployment's metadata; None when it carries none (not written yet).

    The last good version is read from the annotation where earlier builds kept it when the
    label is not there yet (the first apply after an upgrade writes the label)."""
    annotations = annotations or {}
    if ANNOTATION_FAILED_VERSIONS not in annotations:
        return None
    failed = tuple(v for v in annotations[ANNOTATION_FAILED_VERSIONS].split(",") if v)
    last_good = (labels or {}).get(LABEL_LAST_GOOD_VERSION)
    if last_good is None:
        last_good = annotations.get(ANNOTATION_LAST_GOOD_VERSION)
    return RolloutLedger(failed_versions=failed, last_good_version=last_good or None)
