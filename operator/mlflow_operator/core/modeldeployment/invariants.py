"""The guarantees of a ModelDeployment's rollouts, checked on what anyone can observe.

docs/modeldeployment.md ("Guarantees") states them; here they are checks over snapshots of a
ModelDeployment object (spec and status, as read from the API server), its serving Deployment
object and the version the registry selects. The model-based test of the rollout core
(tests/unit/core/test_rollout_model.py) feeds an Auditor after every step of random histories;
an e2e test can do the same against a live cluster by sampling the objects with kubectl:

    auditor = Auditor()
    ...after each change the test makes, and while waiting for the operator:
    auditor.observe(Snapshot(md, deployment, selected="8"), settled=..., quiet=...)
    assert auditor.violations == []

I1  a version recorded as failed is never deployed again while the registry still selects it;
I2  with autoRollback on, a failed rollout ends on the last good version;
I3  with autoRollback off, the version in the template never changes after a failure;
I4  no version is declared failed by a condition about another template (checked from the
    history: a rollout is declared failed at least progressDeadlineSeconds after it started);
I5  whenever a good version is known and the object is not suspended, a Deployment exists;
I6  after a quiet reconcile, status and the live Deployment agree;
I7  a rollout's success is recorded once: the history never shows the same version succeed
    twice in a row (a restarted operator re-announcing what its predecessor recorded).

`settled`: the operator reconciled after the last change of the world (I5). `quiet`: settled,
and that reconcile changed nothing (I2, I6). A failure stays "recorded" while the status or
the serving Deployment keeps it: a design must keep the record as long as either survives.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from mlflow_operator.core.modeldeployment.ledger import RolloutLedger
from mlflow_operator.core.modeldeployment.observation import (
    DeploymentObservation,
    observe_deployment,
)
from mlflow_operator.core.naming import model_uri

DEFAULT_DEADLINE = 600


@dataclass(frozen=True)
class Snapshot:
    """The world at one moment, as plain API objects."""

    model_deployment: Mapping[str, Any]
    deployment: Mapping[str, Any] | None
    selected: str | None  # the version the registry selects; None: none (alias deleted)

    @property
    def status(self) -> Mapping[str, Any]:
        return self.model_deployment.get("status") or {}

    @property
    def spec(self) -> Mapping[str, Any]:
        return self.model_deployment.get("spec") or {}

    @property
    def rollout(self) -> Mapping[str, Any]:
        return self.spec.get("rollout") or {}

    @property
    def auto_rollback(self) -> bool:
        return bool(self.rollout.get("autoRollback", True))

    @property
    def suspended(self) -> bool:
        return bool(self.spec.get("suspend", False))

    @property
    def observation(self) -> DeploymentObservation:
        return observe_deployment(dict(self.deployment) if self.deployment else None)

    @property
    def template(self) -> str | None:
        obs = self.observation
        return obs.version if obs.exists else None

    @property
    def ledger(self) -> RolloutLedger | None:
        return self.observation.ledger

    @property
    def status_failed(self) -> set[str]:
        return set(self.status.get("failedVersions") or [])

    @property
    def recorded_failed(self) -> set[str]:
        ledger = self.ledger
        return self.status_failed | set(ledger.failed_versions if ledger else ())


def disagreements(snapshot: Snapshot) -> list[str]:
    """I6: where status and the live Deployment disagree (after a quiet reconcile)."""
    status, obs = snapshot.status, snapshot.observation
    found: list[str] = []
    ready: Mapping[str, Any] = next(
        (c for c in status.get("conditions") or [] if c.get("type") == "Ready"), {}
    )
    model = (snapshot.spec.get("model") or {}).get("name")
    if not obs.exists:
        if status.get("modelUri"):
            found.append(f"status.modelUri is {status['modelUri']} but no Deployment exists")
        if ready.get("status") == "True":
            found.append("Ready is True but no Deployment exists")
        return found
    if status.get("modelUri") != model_uri(str(model), str(obs.version)):
        found.append(
            f"status.modelUri {status.get('modelUri')} but the template pins {obs.version}"
        )
    ledger = obs.ledger
    if ledger is not None:
        if sorted(status.get("failedVersions") or []) != sorted(ledger.failed_versions):
            found.append(
                f"status.failedVersions {status.get('failedVersions')} but the Deployment "
                f"records {list(ledger.failed_versions)}"
            )
        if status.get("servingVersion") != ledger.last_good_version:
            found.append(
                f"status.servingVersion {status.get('servingVersion')} but the Deployment "
                f"records {ledger.last_good_version} as last good"
            )
    if (status.get("replicas"), status.get("readyReplicas")) != (obs.replicas, obs.ready_replicas):
        found.append(
            f"status.replicas/readyReplicas {status.get('replicas')}/{status.get('readyReplicas')}"
            f" but the Deployment has {obs.replicas}/{obs.ready_replicas}"
        )
    if ready.get("status") == "True" and not (
        obs.rollout_complete and obs.version == status.get("servingVersion")
    ):
        found.append(
            f"Ready is True but the Deployment (version {obs.version}) is not complete on "
            f"servingVersion {status.get('servingVersion')}"
        )
    return found


def early_failures(snapshot: Snapshot) -> list[str]:
    """I4, from history: a rollout can only fail a full deadline after it started.

    A ProgressDeadlineExceeded about the template before it (another version) is the only way
    a version is declared failed sooner; entries whose start was not recorded are skipped.
    """
    deadline = int(snapshot.rollout.get("progressDeadlineSeconds", DEFAULT_DEADLINE))
    found = []
    for entry in snapshot.status.get("history") or []:
        if entry.get("result") not in ("RolledBack", "Failed"):
            continue
        started, finished = entry.get("started"), entry.get("finished")
        if not started or not finished:
            continue
        took = (_time(finished) - _time(started)).total_seconds()
        if took < deadline:
            found.append(
                f"I4: version {entry.get('version')} was declared failed {took:.0f}s after its "
                f"rollout started, before its deadline of {deadline}s"
            )
    return found


def repeated_successes(snapshot: Snapshot) -> list[str]:
    """I7, from history: two entries in a row of the same version's success."""
    history = snapshot.status.get("history") or []
    return [
        f"I7: the success of version {later.get('version')} is recorded twice in a row"
        for earlier, later in itertools.pairwise(history)
        if earlier.get("version") == later.get("version")
        and earlier.get("result") == later.get("result") == "Succeeded"
    ]


def _time(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value
    return datetime.fromisoformat(str(value).replace("Z", "+00:00"))


@dataclass
class Auditor:
    """Checks I1-I7 over a sequence of snapshots; violations accumulate, each one once."""

    violations: list[str] = field(default_factory=list)
    failed: set[str] = field(default_factory=set)  # failed while the registry selects them
    selection: str | None = None  # what the registry selects (the last selection seen)
    previous: Snapshot | None = None

    def observe(
        self, now: Snapshot, *, settled: bool = False, quiet: bool = False, restored: bool = False
    ) -> list[str]:
        """Take the next snapshot; returns the violations it shows.

        `restored`: the status was just restored from a backup (or lost); an old failure
        record in it is not a decision of the operator, so nothing is learned from it.
        """
        found: list[str] = []
        self._follow_registry(now)
        before = set(self.failed)
        found += self._transitions(now, before)
        self._update_failures(now, learn=not restored)
        found += early_failures(now)
        found += repeated_successes(now)
        if settled or quiet:
            found += self._served(now)
        if quiet:
            found += self._rolled_back(now)
            found += [f"I6: {d}" for d in disagreements(now)]
        self.previous = now
        new = [v for v in dict.fromkeys(found) if v not in self.violations]
        self.violations += new
        return new

    def _follow_registry(self, now: Snapshot) -> None:
        # An alias deleted leaves the last selection in force (the operator keeps its target).
        if now.selected is not None and now.selected != self.selection:
            self.failed = {v for v in self.failed if v == now.selected}
            self.selection = now.selected

    def _update_failures(self, now: Snapshot, *, learn: bool) -> None:
        # Learn what the operator just recorded; a record that was already there (or was put
        # back by a restore) is not a decision about the present selection.
        seen = self.previous.recorded_failed if self.previous is not None else set()
        if learn:
            self.failed |= {v for v in now.recorded_failed - seen if v == self.selection}
        obs = now.observation
        if obs.rollout_complete and obs.version in self.failed:
            self.failed.discard(obs.version)  # it became available after all
        if obs.exists:
            return
        # no Deployment: status is the only record left; what it lacks nobody can know
        self.failed &= now.status_failed

    def _transitions(self, now: Snapshot, failed: set[str]) -> list[str]:
        if self.previous is None:
            return []
        was, is_ = self.previous.template, now.template
        if is_ is None or is_ == was:
            return []
        found = []
        if is_ in failed and is_ == self.selection:
            found.append(f"I1: version {is_} was deployed again while failed and still selected")
        if was is not None and was in failed and was == self.selection and not now.auto_rollback:
            found.append(
                f"I3: autoRollback is off, but the template moved from failed version {was} "
                f"to {is_}"
            )
        return found

    def _served(self, now: Snapshot) -> list[str]:
        ledger = now.ledger
        good = now.status.get("servingVersion") or (ledger.last_good_version if ledger else None)
        if good and not now.suspended and now.deployment is None:
            return [f"I5: version {good} is known to be good, but no serving Deployment exists"]
        return []

    def _rolled_back(self, now: Snapshot) -> list[str]:
        good = now.status.get("servingVersion")
        selection = self.selection
        if (
            not now.auto_rollback
            or now.suspended
            or selection not in self.failed
            or not good
            or good == selection
        ):
            return []
        if now.template != good:
            return [
                f"I2: version {selection} failed with autoRollback on, but the template pins "
                f"{now.template}, not the last good version {good}"
            ]
        return []
