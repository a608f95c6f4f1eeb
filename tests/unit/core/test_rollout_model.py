"""A model-based test of the rollout core: random histories, the guarantees after every step.

The world is modelled here: the registry (an alias moving forward, back, deleted, re-created;
outages), the serving Deployment object (generation, status.observedGeneration, conditions,
annotations) and the Deployment controller (it observes a new template late, completes a
good version, lets the progress deadline pass on a stuck one, cannot create pods or pull the
image while the cluster is broken), people (spec edits, deleting the Deployment, a Secret or
the MLflowServer vanishing) and the operator (reconciles that may crash between their acts,
status writes refused by their precondition, restarts from a lost or stale status).

The operator is the real code: resolve_target, observe_deployment, plan_rollout and
build_serving_deployment; only its order of acts is modelled, as the reconciler does them:
status first (refused when the object changed since it was read), then the apply.

After every step core/modeldeployment/invariants.py's Auditor checks I1-I6 on the objects as
the API server holds them, plus two checks only a model can make exactly: a version declared
failed was on the template whose own ProgressDeadlineExceeded the controller set (I4), and never
while its pods were kept from running the model by the cluster (defect 11).

Size and seed: STEPS steps or more per run (EXAMPLES histories of up to STEPS_PER_HISTORY
steps; the run asserts the count). Each run draws a seed and prints it; a failure also names
it. Rerun one with ROLLOUT_MODEL_SEED=<seed> (hypothesis then prints the same minimal
falsifying history; the example database is off so that a seed alone reproduces a run).
"""

from __future__ import annotations

import copy
import os
import secrets
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import HealthCheck, seed, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    precondition,
    rule,
    run_state_machine_as_test,
)

from mlflow_operator.api.modeldeployment import ModelDeploymentSpec, ModelDeploymentStatus
from mlflow_operator.builders.meta import Owner
from mlflow_operator.builders.modeldeployment import build_serving_deployment
from mlflow_operator.config import OperatorConfig
from mlflow_operator.core.endpoint import CredentialsSecret, TrackingEndpoint
from mlflow_operator.core.modeldeployment.invariants import Auditor, Snapshot
from mlflow_operator.core.modeldeployment.observation import observe_deployment
from mlflow_operator.core.modeldeployment.resolution import Resolution, resolve_target
from mlflow_operator.core.modeldeployment.rollout import RolloutPlan, plan_rollout
from mlflow_operator.core.registry_view import ModelSnapshot, RegistryState, VersionInfo

SEED_ENV = "ROLLOUT_MODEL_SEED"
EXAMPLES = 120
STEPS_PER_HISTORY = 130
STEPS = 10_000  # at least this many steps per run
VERSIONS = ("1", "2", "3", "4", "5")
DEADLINE = 600
START = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
OWNER = Owner("mlflowops.dev/v1alpha1", "ModelDeployment", "fraud", "ml", "uid-1")
ENDPOINT = TrackingEndpoint(
    "http://mlflow.ml.svc:5000",
    CredentialsSecret("mlflow-admin", username_key="username", password_key="password"),
)
CONFIG = OperatorConfig()

steps_taken = 0  # over the whole run, for the size assertion


def decide(
    spec: ModelDeploymentSpec,
    generation: int,
    last: ModelDeploymentStatus,
    registry: RegistryState,
    resolution: Resolution | None,
    deployment: dict[str, Any] | None,
    pods: list[dict[str, Any]],
    now: datetime,
    endpoint_known: bool,
) -> RolloutPlan:
    """The operator's gather-and-decide: the real pure functions, nothing else."""
    observed = observe_deployment(copy.deepcopy(deployment), pods)
    return plan_rollout(
        spec, generation, last, registry, resolution, observed, now, endpoint_known=endpoint_known
    )


class RolloutWorld(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.now = START
        self.generation = 1  # of the ModelDeployment
        self.spec: dict[str, Any] = {
            "model": {"name": "fraud", "alias": "champion"},
            "registry": {"serverRef": {"name": "mlflow"}},
            "serving": {"replicas": 1, "gpu": {"count": 0}},
            "rollout": {"autoRollback": True, "progressDeadlineSeconds": DEADLINE},
            "suspend": False,
        }
        self.status: dict[str, Any] = {}  # as the API server holds it
        self.written: list[dict[str, Any]] = [{}]  # every status written, for stale restores
        self.deployment: dict[str, Any] | None = None
        self.incarnation = 0  # a deleted and recreated Deployment starts at generation 1 again
        self.applied_at: dict[tuple[int, int], datetime] = {}
        self.exceeded_for: tuple[int, int] | None = None  # the template a deadline is about
        self.old_available = 0  # pods of the last completed template, still serving
        self.selected: str | None = None
        self.bad: frozenset[str] = frozenset()  # versions whose model never loads
        self.infra = ""  # "" | "create" (FailedCreate) | "pull" (ImagePullBackOff)
        self.registry_up = True
        self.secret_present = True
        self.server_present = True
        self.auditor = Auditor()
        self.problems: list[str] = []

    # -- the world as the API server holds it ---------------------------------------------
    def snapshot(self) -> Snapshot:
        md = {"spec": self.spec, "status": self.status, "metadata": {"generation": self.generation}}
        return Snapshot(copy.deepcopy(md), copy.deepcopy(self.deployment), self.selected)

    def audit(self, *, settled: bool = False, quiet: bool = False, restored: bool = False) -> None:
        global steps_taken  # noqa: PLW0603  (the run's step count, asserted at the end)
        steps_taken += 1
        found = self.auditor.observe(
            self.snapshot(), settled=settled, quiet=quiet, restored=restored
        )
        assert not found, found
        assert not self.problems, self.problems

    def template_key(self) -> tuple[int, int]:
        assert self.deployment is not None
        return (self.incarnation, self.deployment["metadata"]["generation"])

    @property
    def template_version(self) -> str | None:
        if self.deployment is None:
            return None
        labels = self.deployment["spec"]["template"]["metadata"]["labels"]
        version: str | None = labels.get("mlflowops.dev/model-version")
        return version

    def observed_current(self) -> bool:
        dep = self.deployment
        return (
            dep is not None
            and dep["status"].get("observedGeneration", 0) == (dep["metadata"]["generation"])
        )

    def complete(self) -> bool:
        return self.deployment is not None and observe_deployment(self.deployment).rollout_complete

    # -- registry ----------------------------------------------------------------------------
    @initialize(
        bad=st.frozensets(st.sampled_from(VERSIONS), max_size=3),
        first=st.sampled_from(VERSIONS),
        auto_rollback=st.booleans(),
    )
    def begin(self, bad: frozenset[str], first: str, auto_rollback: bool) -> None:
        # the first version loads: most histories then have a good version to go back to
        self.bad, self.selected = bad - {first}, first
        self.spec["rollout"]["autoRollback"] = auto_rollback
        self.audit()

    @rule(change=st.sampled_from([*VERSIONS, "delete", "outage", "back"]))
    def registry_changes(self, change: str) -> None:
        """The alias moves forward, back, is deleted or re-created; or MLflow goes away."""
        if change == "delete":
            self.selected = None
        elif change in ("outage", "back"):
            self.registry_up = change == "back"
        else:
            self.selected = change
        self.audit()

    def registry(self, spec: ModelDeploymentSpec) -> tuple[RegistryState, Resolution | None]:
        readable = self.registry_up and self.secret_present and self.server_present
        if not readable:
            reason = "ServerNotFound" if not self.server_present else "CredentialsNotFound"
            if self.server_present and self.secret_present:
                reason = "RegistryUnreachable"
            state = RegistryState(None, synced=False, last_sync=START, error="down", reason=reason)
            return state, None
        aliases = {"champion": self.selected} if self.selected else {}
        versions = {v: VersionInfo(v) for v in VERSIONS}
        snapshot = ModelSnapshot("fraud", aliases=aliases, versions=versions)
        state = RegistryState(snapshot, synced=True, last_sync=START)
        return state, resolve_target(spec.model, snapshot)

    # -- people and the cluster around the operator ------------------------------------------
    @rule(
        act=st.sampled_from(
            [
                "suspend", "resume", "auto-rollback-on", "auto-rollback-off", "replicas",
                "gpus", "delete-deployment", "secret-gone", "secret-back", "server-gone",
                "server-back", "cannot-create-pods", "cannot-pull-image", "cluster-fixed",
                "time-passes",
            ]
        ),
        number=st.integers(0, 3),
    )  # fmt: skip
    def world_changes(self, act: str, number: int) -> None:
        match act:
            case "suspend" | "resume":
                self.edit("", "suspend", act == "suspend")
            case "auto-rollback-on" | "auto-rollback-off":
                self.edit("rollout", "autoRollback", act == "auto-rollback-on")
            case "replicas":
                self.edit("serving", "replicas", max(number, 1))
            case "gpus":
                self.edit("serving", "gpu", {"count": min(number, 1)})
            case "delete-deployment":  # by a person, a GitOps prune or a restore
                self.deployment = None
                self.old_available = 0
                self.exceeded_for = None
            case "secret-gone" | "secret-back":
                self.secret_present = act == "secret-back"
            case "server-gone" | "server-back":
                self.server_present = act == "server-back"
            case "cannot-create-pods":  # a quota, a missing ServiceAccount
                self.infra = "create"
            case "cannot-pull-image":
                self.infra = "pull"
            case "cluster-fixed":
                self.infra = ""
            case _:
                self.now += timedelta(minutes=number + 1)
        self.audit()

    def edit(self, section: str, key: str, value: Any) -> None:
        target = self.spec if not section else self.spec[section]
        if target[key] != value:
            target[key] = value
            self.generation += 1

    # -- the Deployment controller -------------------------------------------------------------
    @precondition(lambda self: self.deployment is not None)
    @rule(completes=st.booleans())
    def controller_acts(self, completes: bool) -> None:
        """Observe a new template late; then complete it (if its pods can run and load the
        model) or let its progress deadline pass."""
        if not self.observed_current():
            self.controller_observes_the_template()
        elif self.complete():
            pass
        elif completes and self.template_version not in self.bad and not self.infra:
            self.controller_completes_the_rollout()
        elif self.exceeded_for != self.template_key():
            self.progress_deadline_passes()
        self.audit()

    def controller_observes_the_template(self) -> None:
        dep = self.deployment
        assert dep is not None
        desired = int(dep["spec"]["replicas"])
        created = 0 if self.infra == "create" else 1
        conditions = [{"type": "Progressing", "status": "True", "reason": "ReplicaSetUpdated"}]
        if self.infra == "create":
            conditions.append(
                {
                    "type": "ReplicaFailure",
                    "status": "True",
                    "reason": "FailedCreate",
                    "message": 'pods "fraud-x" is forbidden: exceeded quota: compute',
                }
            )
        available = min(self.old_available, desired)
        dep["status"] = {
            "observedGeneration": dep["metadata"]["generation"],
            "replicas": available + created,
            "updatedReplicas": created,
            "readyReplicas": available,
            "availableReplicas": available,
            "unavailableReplicas": max(desired - available, 0),
            "conditions": conditions,
        }
        self.exceeded_for = None

    def controller_completes_the_rollout(self) -> None:
        dep = self.deployment
        assert dep is not None
        desired = int(dep["spec"]["replicas"])
        dep["status"] = {
            "observedGeneration": dep["metadata"]["generation"],
            "replicas": desired,
            "updatedReplicas": desired,
            "readyReplicas": desired,
            "availableReplicas": desired,
            "conditions": [
                {"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable"},
                {"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable"},
            ],
        }
        self.old_available = desired
        self.exceeded_for = None

    def progress_deadline_passes(self) -> None:
        dep = self.deployment
        assert dep is not None
        key = self.template_key()
        self.now = max(self.now, self.applied_at[key] + timedelta(seconds=DEADLINE + 1))
        conditions = [c for c in dep["status"]["conditions"] if c["type"] != "Progressing"]
        conditions.append(
            {"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded"}
        )
        dep["status"]["conditions"] = conditions
        self.exceeded_for = key

    def pods(self) -> list[dict[str, Any]]:
        if self.infra != "pull" or self.deployment is None or self.complete():
            return []
        waiting = {"reason": "ImagePullBackOff", "message": "Back-off pulling image"}
        return [
            {
                "metadata": {
                    "name": "fraud-new",
                    "labels": {"mlflowops.dev/model-version": self.template_version},
                },
                "status": {
                    "containerStatuses": [{"name": "server", "state": {"waiting": waiting}}]
                },
            }
        ]

    # -- the operator --------------------------------------------------------------------------
    @rule(
        crash=st.sampled_from(
            ["none", "none", "none", "none", "before-status", "after-status", "conflict"]
        )
    )
    def operator_reconciles(self, crash: str) -> None:
        spec = ModelDeploymentSpec.model_validate(self.spec)
        last = ModelDeploymentStatus.model_validate(self.status)
        registry, resolution = self.registry(spec)
        before = copy.deepcopy((self.status, self.deployment))
        plan = decide(
            spec, self.generation, last, registry, resolution, self.deployment, self.pods(),
            self.now, self.server_present,
        )  # fmt: skip
        self.check_declared_failures(last, plan)
        if crash in ("before-status", "conflict"):  # nothing written, nothing acted on
            self.audit()
            return
        self.write_status(plan.status.to_wire())
        if crash == "after-status":
            self.audit()
            return
        if plan.apply and plan.deploy_version is not None:
            self.apply(
                build_serving_deployment(
                    spec, OWNER, plan.deploy_version, ENDPOINT, CONFIG,
                    replace_in_place=plan.replace_in_place, ledger=plan.ledger,
                )
            )  # fmt: skip
        quiet = before == (self.status, self.deployment) and self.server_present
        self.audit(settled=self.server_present, quiet=quiet)

    @rule()
    def operator_reconciles_cleanly(self) -> None:
        self.operator_reconciles(crash="none")

    @rule(status=st.sampled_from(["current", "lost", "stale"]), back=st.integers(1, 6))
    def operator_restarts(self, status: str, back: int) -> None:
        """A new operator process; the status it finds may have been lost or restored old."""
        if status == "lost":
            self.status = {}
        elif status == "stale":
            self.status = copy.deepcopy(self.written[max(0, len(self.written) - 1 - back)])
        self.audit(restored=status != "current")

    def write_status(self, status: dict[str, Any]) -> None:
        if status != self.status:
            self.status = status
            self.written.append(copy.deepcopy(status))

    def apply(self, manifest: dict[str, Any]) -> None:
        """Server-side apply: a changed spec or changed annotations are a new generation (as
        the API server does for Deployments); changed labels are not."""
        meta = manifest["metadata"]
        if self.deployment is None:
            self.incarnation += 1
            self.deployment = {
                "metadata": {
                    "name": meta["name"],
                    "generation": 1,
                    "labels": dict(meta["labels"]),
                    "annotations": dict(meta.get("annotations") or {}),
                },
                "spec": copy.deepcopy(manifest["spec"]),
                "status": {},
            }
            self.old_available = 0
            self.applied_at[self.template_key()] = self.now
            return
        dep = self.deployment
        annotations = dict(meta.get("annotations") or {})
        if dep["spec"] != manifest["spec"]:
            dep["spec"] = copy.deepcopy(manifest["spec"])
            dep["metadata"]["generation"] += 1
            self.applied_at[self.template_key()] = self.now
        elif dep["metadata"]["annotations"] != annotations:
            applied = self.applied_at[self.template_key()]
            dep["metadata"]["generation"] += 1
            self.applied_at[self.template_key()] = applied  # the same template's deadline
        dep["metadata"]["annotations"] = annotations
        dep["metadata"]["labels"] = dict(meta["labels"])

    def check_declared_failures(self, last: ModelDeploymentStatus, plan: RolloutPlan) -> None:
        """I4, exactly, and defect 11: why a version is newly listed as failed."""
        observed = observe_deployment(copy.deepcopy(self.deployment), self.pods())
        ledger = observed.ledger
        known = set(last.failed_versions) | set(ledger.failed_versions if ledger else ())
        for version in set(plan.status.failed_versions) - known:
            if not (
                self.deployment is not None
                and self.template_version == version
                and self.observed_current()
                and self.exceeded_for == self.template_key()
            ):
                self.problems.append(
                    f"I4: version {version} declared failed without a deadline exceeded by its "
                    f"own template (template {self.template_version}, deadline about "
                    f"{self.exceeded_for}, template key "
                    f"{self.template_key() if self.deployment else None})"
                )
            if observed.infrastructure_blocker:
                self.problems.append(
                    f"version {version} blamed while its pods never ran the model: "
                    f"{observed.infrastructure_blocker}"
                )


SETTINGS = settings(
    max_examples=EXAMPLES,
    stateful_step_count=STEPS_PER_HISTORY,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)


def test_random_histories_keep_the_rollout_guarantees() -> None:
    global steps_taken  # noqa: PLW0603
    chosen = os.environ.get(SEED_ENV)
    run_seed = int(chosen) if chosen else secrets.randbelow(2**32)
    print(f"rollout model: seed {run_seed} (rerun with {SEED_ENV}={run_seed})")
    steps_taken = 0
    started = time.monotonic()
    seeded = seed(run_seed)(type("SeededRolloutWorld", (RolloutWorld,), {}))
    try:
        run_state_machine_as_test(seeded, settings=SETTINGS)
    except BaseException as failure:
        failure.add_note(f"rollout model seed {run_seed}: rerun with {SEED_ENV}={run_seed}")
        raise
    took = time.monotonic() - started
    print(f"rollout model: {steps_taken} steps in {took:.1f}s")
    assert steps_taken >= STEPS, f"only {steps_taken} steps: raise EXAMPLES or STEPS_PER_HISTORY"
