"""Leader election and install claims on coordination.k8s.io/v1 Leases.

Hand-written, ~200 lines, because neither library fits: kopf's peering pauses an operator
only for a peer of *higher* priority (two replicas of one Deployment have the same one and
both act), needs kopf's own CRDs, and keeps a killed peer alive for its 60 s lifetime; the
official client's `leaderelection` is the whole `kubernetes` package for one loop. This is
client-go's algorithm (acquire, renew, give up after the renew deadline, release at a clean
stop) on the lightkube client the operator already has, run on a thread of its own before
and next to kopf's event loop.

Claims: the install that acts in a namespace holds a Lease `mlflow-operator-claim` there
(a cluster-wide install: `<lease>-claim-all` in its own namespace), so a second install that
would watch the same namespaces sees it and does nothing. A claim lasts CLAIM_LEASE_FACTOR
election leases and is renewed once per election lease: an idle operator's requests are
mostly these renewals (issue scale-ha: <= 1 per second in all).

Renewals take client-go's fast path: the holder replaces the Lease it last wrote, with that
write's resourceVersion, without reading it first; only a 409 (someone else wrote) makes it
read. One request per renewal, not two.

A standby learns of the leader's renewals from a watch of the election Lease, not from a GET
every retry period (client-go polls): one request per watch, and it sees a renewal, a release
or the leader's silence as they happen, so it takes over `lease_seconds` after the last
renewal rather than up to a retry period later. Without a working watch it polls, as before.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from lightkube import ALL_NS, ApiError, Client
from lightkube.models.coordination_v1 import LeaseSpec as KubeLeaseSpec
from lightkube.models.core_v1 import EventSource, ObjectReference
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.operators import exists
from lightkube.resources.coordination_v1 import Lease
from lightkube.resources.core_v1 import Event, Pod
from lightkube.types import PatchType

from mlflow_operator.core.conditions import INSTALL_CONFLICT
from mlflow_operator.core.leadership import (
    CLAIM_ALL_SUFFIX,
    CLAIM_LABEL,
    CLAIM_LEASE,
    Claim,
    LeaseSpec,
    Sighting,
    conflict_message,
    live_holder,
    released,
    sight,
    to_hold,
)
from mlflow_operator.core.naming import FIELD_MANAGER

logger = logging.getLogger(__name__)
MANAGED_BY = {"app.kubernetes.io/managed-by": "mlflow-operator"}
# a claim lasts this many election leases (30 s by default) and is renewed once per lease
CLAIM_LEASE_FACTOR = 3
# a standby's watch of the election Lease is restarted by the API server this often
STANDBY_WATCH_SECONDS = 300


@dataclass(frozen=True)
class Timing:
    lease_seconds: int  # a holder that stopped renewing is replaced this long after
    renew_deadline_seconds: float  # a leader that could not renew this long stops acting
    retry_seconds: float  # how often leases are renewed, and a free one looked for


@dataclass
class Leadership:
    """One candidate: `wait_until_leading()`, then `keep()` while kopf runs, `release()`."""

    client: Client
    identity: str  # this process: <pod name>/<pid>
    namespace: str  # of the election lease (the install's namespace)
    lease: str  # the election lease's name
    watched: list[str]  # exact namespaces watched; empty: all
    timing: Timing
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep
    _sightings: dict[tuple[str, str], Sighting] = field(default_factory=dict)
    _said: str = ""
    _stop: threading.Event = field(default_factory=threading.Event)
    _renewer: threading.Thread | None = None
    _written: dict[tuple[str, str], Lease] = field(default_factory=dict)  # as last written
    _claims_renewed_at: float | None = None
    _lease_seen: threading.Condition = field(default_factory=threading.Condition)
    _watcher: threading.Thread | None = None
    _watching: bool = False  # the standby's watch runs; False: it failed, or never started
    _watch_said: str = ""
    _leading: threading.Event = field(default_factory=threading.Event)

    @property
    def install(self) -> str:
        """Who this install is to other installs (all its replicas share it)."""
        return f"{self.namespace}/{self.lease}"

    def wait_until_leading(self, on_wait: Callable[[str, str], None] = lambda *_: None) -> None:
        """Block until this process holds the election lease and no other install acts
        where it would. `on_wait(why, message)` hears why it waits when that changes: why is
        "standby" (a replica of this install acts), "refusing" (another install acts where this
        one would) or "unknown" (the Lease could not be read)."""
        while True:
            try:
                if self._try_to_lead(on_wait):
                    self._leading.set()  # the standby's watch ends at its next event
                    return
            except Exception as exc:  # noqa: BLE001  (the API server restarting: try again)
                self._say(
                    "unknown", f"cannot read lease {self.namespace}/{self.lease}: {exc}", on_wait
                )
            if not self._until_the_leader_may_be_gone():
                self.sleep(self.timing.retry_seconds)

    def _until_the_leader_may_be_gone(self) -> bool:
        """As a standby, block until the election Lease was handed back or deleted, or its
        holder has not renewed it for its duration, as the watch shows; False at once when
        this process is no standby (refusing, or the Lease unreadable) or the watch broke."""
        key = (self.namespace, self.lease)
        if live_holder(self._sightings.get(key), self.identity, self.clock()) is None:
            return False
        self._watch_the_election_lease()
        with self._lease_seen:
            while self._watching:
                sighting = self._sightings.get(key)
                if sighting is None or live_holder(sighting, self.identity, self.clock()) is None:
                    return True
                expires = sighting.since + sighting.spec.duration_seconds
                self._lease_seen.wait(timeout=max(expires - self.clock(), 0.05))
        return False

    def _watch_the_election_lease(self) -> None:
        """Start the standby's watch (again, after it failed) on a thread of its own."""
        if self._watcher is not None and self._watcher.is_alive():
            return
        with self._lease_seen:  # the flag the waiter reads under this lock
            self._watching = True
        self._watcher = threading.Thread(target=self._watch, name="lease-watch", daemon=True)
        self._watcher.start()

    def _watch(self) -> None:
        key = (self.namespace, self.lease)
        try:
            for kind, lease in self.client.watch(
                Lease,
                namespace=self.namespace,
                fields={"metadata.name": self.lease},
                server_timeout=STANDBY_WATCH_SECONDS,
            ):
                spec = LeaseSpec() if kind == "DELETED" else _spec_of(lease)
                with self._lease_seen:
                    self._sightings[key] = sight(self._sightings.get(key), spec, self.clock())
                    self._lease_seen.notify_all()
                if self._leading.is_set():
                    return
        except Exception as exc:  # noqa: BLE001  (polled instead until it runs again)
            message = f"watch of lease {self.namespace}/{self.lease} failed: {exc}"
            if message != self._watch_said:  # tried again at each look: said once
                self._watch_said = message
                logger.warning(
                    "%s; reading it every %gs instead", message, self.timing.retry_seconds
                )
        finally:
            with self._lease_seen:
                self._watching = False
                self._lease_seen.notify_all()

    def _try_to_lead(self, on_wait: Callable[[str, str], None]) -> bool:
        """One look: True when this process now leads and holds every claim."""
        holder = self._hold(self.namespace, self.lease, self.identity, {})
        if holder is not None:
            message = f"standby: {holder} leads (lease {self.namespace}/{self.lease})"
            self._say("standby", message, on_wait)
        else:
            conflict = self._foreign_claim()
            if conflict is None and self._hold_claims():
                logger.info(
                    "leading: holds lease %s/%s as %s",
                    self.namespace,
                    self.lease,
                    self.identity,
                )
                return True
            if conflict is not None:
                message = conflict_message(conflict, self.install, self._scope)
                if self._say("refusing", message, on_wait, level=logging.ERROR):
                    self._post_conflict_event(conflict, message)
        return False

    def keep(self, on_lost: Callable[[str], None]) -> threading.Thread:
        """Renew the leases every retry period on a thread; call `on_lost` (once) when they
        could not be renewed for the renew deadline, or another holder has them."""

        def renew() -> None:
            renewed_at = self.clock()
            while not self._stop.wait(self.timing.retry_seconds):
                try:
                    holder = self._hold(self.namespace, self.lease, self.identity, {})
                    held = holder is None and self._hold_claims(when_due=True)
                except Exception as exc:  # noqa: BLE001  (any failure counts as not renewed)
                    logger.warning(
                        "could not renew lease %s/%s: %s", self.namespace, self.lease, exc
                    )
                    held = False
                    holder = None
                if held:
                    renewed_at = self.clock()
                elif holder is not None or self.clock() - renewed_at > (
                    self.timing.renew_deadline_seconds
                ):
                    on_lost(
                        f"{holder} holds lease {self.namespace}/{self.lease} now"
                        if holder is not None
                        else f"lease {self.namespace}/{self.lease} not renewed for "
                        f"{self.timing.renew_deadline_seconds:g}s"
                    )
                    return

        thread = threading.Thread(target=renew, name="lease-renewer", daemon=True)
        thread.start()
        self._renewer = thread
        return thread

    def release(self) -> None:
        """Hand the leases back at a clean stop, so a standby takes over at once."""
        self._stop.set()
        if self._renewer is not None:  # a renewal in flight would take the lease back
            self._renewer.join(timeout=self.timing.renew_deadline_seconds)
        for namespace, name, holder in self._held():
            try:
                lease = self.client.get(Lease, name, namespace=namespace)
                spec = released(_spec_of(lease), holder, _now())
                if spec is not None:
                    self._write(lease, namespace, name, spec, {})
            except ApiError as exc:
                logger.warning("could not release lease %s/%s: %s", namespace, name, exc)

    # -- the leases --------------------------------------------------------------------

    @property
    def _scope(self) -> str:
        return ", ".join(self.watched) if self.watched else "all namespaces"

    def _claims(self) -> list[tuple[str, str, dict[str, str]]]:
        if not self.watched:
            return [
                (self.namespace, self.lease + CLAIM_ALL_SUFFIX, {CLAIM_LABEL: "all-namespaces"})
            ]
        return [(ns, CLAIM_LEASE, {CLAIM_LABEL: "namespace"}) for ns in self.watched]

    def _held(self) -> list[tuple[str, str, str]]:
        claims = [(ns, name, self.install) for ns, name, _ in self._claims()]
        return [(self.namespace, self.lease, self.identity), *claims]

    def _hold_claims(self, *, when_due: bool = False) -> bool:
        """Take or renew this install's claims (`when_due`: only once an election lease has
        passed since they last were); False when another install holds one."""
        now = self.clock()
        last = self._claims_renewed_at
        if when_due and last is not None and now - last < self.timing.lease_seconds:
            return True
        held = all(
            self._hold(ns, name, self.install, labels, CLAIM_LEASE_FACTOR) is None
            for ns, name, labels in self._claims()
        )
        if held:
            self._claims_renewed_at = now
        return held

    def _foreign_claim(self) -> Claim | None:
        """Another install's live claim on what this one would watch."""
        if self.watched:
            found = []
            for ns in self.watched:
                lease = self._get(ns, CLAIM_LEASE)
                if lease is not None:
                    found.append(lease)
        else:  # every claim anywhere overlaps all namespaces
            found = list(self.client.list(Lease, namespace=ALL_NS, labels={CLAIM_LABEL: exists()}))
        for lease in found:
            meta = lease.metadata or ObjectMeta()
            ns, name = meta.namespace or "", meta.name or ""
            holder = live_holder(
                self._sighted(ns, name, _spec_of(lease)), self.install, self.clock()
            )
            if holder is not None:
                labels = meta.labels or {}
                return Claim(ns, name, holder, labels.get(CLAIM_LABEL) == "all-namespaces")
        return None

    def _hold(
        self, namespace: str, name: str, me: str, labels: dict[str, str], leases: int = 1
    ) -> str | None:
        """Take or renew one lease as `me`, lasting `leases` election leases; the other live
        holder when it is not ours."""
        seconds = self.timing.lease_seconds * leases
        written = self._written.get((namespace, name))
        if written is not None and _spec_of(written).holder == me:  # the fast path
            renewed = to_hold(_spec_of(written), me, _now(), seconds)
            try:
                self._write(written, namespace, name, renewed, labels)
            except ApiError as exc:
                if exc.status.code != 409:
                    raise
                self._written.pop((namespace, name), None)  # someone else wrote: read it
            else:
                return None
        lease = self._get(namespace, name)
        current = _spec_of(lease) if lease is not None else None
        if current is not None:
            holder = live_holder(self._sighted(namespace, name, current), me, self.clock())
            if holder is not None:
                return holder
        spec = to_hold(current, me, _now(), seconds)
        try:
            self._write(lease, namespace, name, spec, labels)
        except ApiError as exc:
            if exc.status.code == 409:  # another candidate wrote first: read again next time
                return "another candidate (a write raced ours)"
            raise
        self._sightings.pop((namespace, name), None)
        return None

    def _get(self, namespace: str, name: str) -> Lease | None:
        try:
            return self.client.get(Lease, name, namespace=namespace)
        except ApiError as exc:
            if exc.status.code == 404:
                return None
            raise

    def _sighted(self, namespace: str, name: str, spec: LeaseSpec) -> Sighting:
        key = (namespace, name)
        self._sightings[key] = sight(self._sightings.get(key), spec, self.clock())
        return self._sightings[key]

    def _write(
        self,
        lease: Lease | None,
        namespace: str,
        name: str,
        spec: LeaseSpec,
        labels: dict[str, str],
    ) -> None:
        body = KubeLeaseSpec(
            holderIdentity=spec.holder,
            leaseDurationSeconds=spec.duration_seconds,
            acquireTime=spec.acquired,
            renewTime=spec.renewed,
            leaseTransitions=spec.transitions,
        )
        if lease is None:
            meta = ObjectMeta(name=name, namespace=namespace, labels={**MANAGED_BY, **labels})
            self._written[namespace, name] = self.client.create(
                Lease(metadata=meta, spec=body), field_manager=FIELD_MANAGER
            )
            return
        # replace carries the resourceVersion read: a write that raced another is refused (409)
        lease.spec = body
        self._written[namespace, name] = self.client.replace(lease, field_manager=FIELD_MANAGER)

    def _post_conflict_event(self, claim: Claim, message: str) -> None:
        """A Warning Event on the other install's claim, where `kubectl get events` of that
        namespace shows it."""
        now = _now()
        event = Event(
            metadata=ObjectMeta(
                generateName="mlflow-operator-conflict-", namespace=claim.namespace
            ),
            involvedObject=ObjectReference(
                apiVersion="coordination.k8s.io/v1",
                kind="Lease",
                name=claim.lease,
                namespace=claim.namespace,
            ),
            reason=INSTALL_CONFLICT,
            message=message,
            type="Warning",
            source=EventSource(component="mlflow-operator"),
            firstTimestamp=now,
            lastTimestamp=now,
            count=1,
        )
        try:
            self.client.create(event)
        except ApiError as exc:
            logger.warning("could not post the InstallConflict Event: %s", exc)

    def _say(
        self,
        why: str,
        message: str,
        on_wait: Callable[[str, str], None],
        level: int = logging.INFO,
    ) -> bool:
        """Log `message` and tell `on_wait`, once until it changes."""
        if message == self._said:
            return False
        self._said = message
        logger.log(level, "%s", message)
        on_wait(why, message)
        return True


def _spec_of(lease: Lease) -> LeaseSpec:
    spec = lease.spec or KubeLeaseSpec()
    return LeaseSpec(
        holder=spec.holderIdentity or "",
        duration_seconds=spec.leaseDurationSeconds or 0,
        acquired=_as_datetime(spec.acquireTime),
        renewed=_as_datetime(spec.renewTime),
        transitions=spec.leaseTransitions or 0,
    )


def _as_datetime(value: Any) -> datetime | None:
    if value is None or isinstance(value, datetime):
        return value
    return datetime.fromisoformat(str(value).replace("Z", "+00:00"))


def _now() -> datetime:
    return datetime.now(UTC)


LEADER_LABEL = "mlflowops.dev/leader"  # on the operator's pods: the Service sends to "true"


def label_own_pod(client: Client, name: str, namespace: str, *, leading: bool) -> None:
    """Mark this replica's pod as the leader or not, so the operator's Service (webhooks)
    reaches only the replica that acts. Outside a pod (no POD_NAME) there is nothing to mark."""
    if not name or not namespace:
        return
    patch = {"metadata": {"labels": {LEADER_LABEL: "true" if leading else "false"}}}
    try:
        client.patch(Pod, name, patch, namespace=namespace, patch_type=PatchType.MERGE)
    except ApiError as exc:  # webhooks then reach a standby too, and polls catch up
        logger.warning("could not label pod %s/%s as leader=%s: %s", namespace, name, leading, exc)
