"""Who may act: one replica of an install (a Lease held), one install per namespace (claims).

Pure: the Lease's spec in, the spec to write (or why not) out. kube/leadership.py reads and
writes the Leases; timing is the caller's monotonic clock.

A Lease is live while its holder renews it. Whether it expired is judged by when *this*
process last saw it change, not by the renewTime written in it (client-go's rule): clocks of
two nodes may disagree by more than a lease lasts.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime

CLAIM_LEASE = "mlflow-operator-claim"  # in each watched namespace: which install acts there
CLAIM_ALL_SUFFIX = "-claim-all"  # <election lease>-claim-all: a cluster-wide install's claim
CLAIM_LABEL = "mlflowops.dev/claim"  # on claims: "namespace" or "all-namespaces"


@dataclass(frozen=True)
class LeaseSpec:
    """The fields of a coordination.k8s.io/v1 Lease's spec this operator reads and writes."""

    holder: str = ""  # "": nobody (never held, or released)
    duration_seconds: int = 0
    acquired: datetime | None = None
    renewed: datetime | None = None
    transitions: int = 0


@dataclass(frozen=True)
class Sighting:
    """A Lease as this process last saw it, and since when (monotonic seconds) it looks so."""

    spec: LeaseSpec
    since: float


def sight(previous: Sighting | None, spec: LeaseSpec, now: float) -> Sighting:
    """The sighting after reading `spec`: its clock restarts only when the holder renewed
    (or changed), so a holder that stopped renewing expires `duration_seconds` later."""
    if previous is not None and _same_term(previous.spec, spec):
        return previous
    return Sighting(spec, now)


def live_holder(sighting: Sighting | None, me: str, now: float) -> str | None:
    """The other holder whose lease still runs, else None (free, expired or ours)."""
    if sighting is None:
        return None
    spec = sighting.spec
    if not spec.holder or spec.holder == me:
        return None
    if now - sighting.since >= spec.duration_seconds:
        return None
    return spec.holder


def to_hold(current: LeaseSpec | None, me: str, now: datetime, duration_seconds: int) -> LeaseSpec:
    """The spec that makes (or keeps) `me` the holder; call it only when live_holder is None."""
    if current is None:
        return LeaseSpec(me, duration_seconds, now, now, 0)
    if current.holder == me:
        return replace(current, duration_seconds=duration_seconds, renewed=now)
    return LeaseSpec(me, duration_seconds, now, now, current.transitions + 1)


def released(current: LeaseSpec, me: str, now: datetime) -> LeaseSpec | None:
    """The spec that hands the lease back at a clean stop (a standby takes it at once), or
    None when it is no longer ours."""
    if current.holder != me:
        return None
    return replace(current, holder="", duration_seconds=1, renewed=now)


def _same_term(a: LeaseSpec, b: LeaseSpec) -> bool:
    return a.holder == b.holder and a.renewed == b.renewed and a.transitions == b.transitions


@dataclass(frozen=True)
class Claim:
    """Another install's live claim that overlaps what this install would watch."""

    namespace: str  # where the claim Lease is
    lease: str  # its name
    holder: str  # the other install: <its namespace>/<its election lease>
    all_namespaces: bool  # the other install watches every namespace


def conflict_message(claim: Claim, me: str, scope: str) -> str:
    """One line for the log and the Event: what overlaps, who acts, what to do."""
    theirs = "all namespaces" if claim.all_namespaces else f"namespace {claim.namespace}"
    return (
        f"another mlflow-operator install ({claim.holder}) already acts in {theirs}, which "
        f"this install ({me}, watching {scope}) watches too; two installs would both roll "
        f"out and roll back the same ModelDeployments, so this one does nothing until that "
        f"one is gone: uninstall one of them, or give them namespaces that do not overlap "
        f"(watchNamespaces)"
    )
