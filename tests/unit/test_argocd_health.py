"""GitOps health of both kinds against statuses the operator writes: the Argo CD health Lua
(run with lupa) and the Flux healthCheckExprs (CEL, run with the cel package).

The statuses are not hand-written: each one comes out of the operator's own decision functions
(core.rollout.plan_rollout, core.mlflowserver.status.fold_status) for a situation a user meets,
serialised the way the operator patches it (to_wire). So a change to the conditions the
operator writes that the Lua does not understand fails here.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import cel
import pytest
import yaml

from mlflow_operator.api.mlflowserver import MLflowServerStatus
from mlflow_operator.api.modeldeployment import (
    ModelDeploymentSpec,
    ModelDeploymentStatus,
)
from mlflow_operator.core.api_refusal import ApiRefusal
from mlflow_operator.core.conditions import set_condition
from mlflow_operator.core.mlflowserver.observation import Fact, JobState, SecretCheck, WorkloadState
from mlflow_operator.core.mlflowserver.plan import plan_server
from mlflow_operator.core.mlflowserver.status import fold_status
from mlflow_operator.core.modeldeployment.observation import DeploymentObservation
from mlflow_operator.core.modeldeployment.resolution import Resolution, Resolved, Unresolved
from mlflow_operator.core.modeldeployment.rollout import plan_rollout
from mlflow_operator.core.registry_view import RegistryState
from tests.helm.argocd import ARGOCD, run_health
from tests.unit.observations import SERVER_IMAGE, complete, in_progress, managed_server

NOW = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
SYNCED = RegistryState(snapshot=None, synced=True, last_sync=NOW)
DOWN = RegistryState(snapshot=None, synced=False, last_sync=NOW, error="connection refused")
LOGIN_PAGE = RegistryState(
    snapshot=None,
    synced=False,
    last_sync=NOW,
    error="MLflow at https://mlflow.example.com answered registered-models/search with HTTP 200 "
    "but not MLflow's JSON: content type text/html (a login page of a proxy or SSO?)",
    reason="RegistryBadResponse",
)


# -- ModelDeployment ------------------------------------------------------------------------

MD_SPEC: dict[str, Any] = {
    "model": {"name": "fraud", "alias": "champion"},
    "registry": {"serverRef": {"name": "mlflow"}},
}


NOTHING = DeploymentObservation(
    exists=False,
    version=None,
    desired_replicas=0,
    status_current=True,
    replicas=0,
    updated_replicas=0,
    ready_replicas=0,
    available_replicas=0,
)


def md_status(
    steps: list[tuple[Resolution | None, DeploymentObservation]],
    *,
    spec: dict[str, Any] | None = None,
    registry: RegistryState = SYNCED,
) -> dict[str, Any]:
    """The status after the operator reconciled these (resolution, Deployment) situations."""
    the_spec = ModelDeploymentSpec.model_validate(spec or MD_SPEC)
    status = ModelDeploymentStatus()
    for resolution, deployment in steps:
        status = plan_rollout(the_spec, 1, status, registry, resolution, deployment, NOW).status
    return status.to_wire()


def invalid_spec_status() -> dict[str, Any]:
    """What the reconciler writes for a spec its validation refuses (Ready False, Degraded)."""
    conditions: list[Any] = []
    for type_, value in (("Ready", "False"), ("Degraded", "True")):
        conditions = set_condition(
            conditions,
            type_,
            value,  # type: ignore[arg-type]
            reason="InvalidSpec",
            message="spec.model: exactly one of alias, stage, version",
            generation=1,
            now=NOW,
        )
    return ModelDeploymentStatus(observed_generation=1, conditions=conditions).to_wire()


def blocked(version: str) -> DeploymentObservation:
    """Past its deadline, the template's pods could not even be created (a quota)."""
    return dataclasses.replace(
        in_progress(version, exceeded=True), replica_failure="FailedCreate: exceeded quota"
    )


def refused_status(status: dict[str, Any]) -> dict[str, Any]:
    """What the reconciler writes after a 422 on the apply (Ready False, Degraded True)."""
    refusal = ApiRefusal("apply Deployment ml/fraud", 422, "Invalid", "metadata.labels: Invalid")
    conditions = ModelDeploymentStatus.model_validate(status).conditions
    for type_, value in (("Ready", "False"), ("Degraded", "True")):
        conditions = set_condition(
            conditions, type_, value,  # type: ignore[arg-type]
            reason=refusal.reason, message=refusal.message, generation=1, now=NOW,
        )  # fmt: skip
    return {**status, "conditions": [c.to_wire() for c in conditions]}


def md(status: dict[str, Any] | None, *, generation: int = 1, **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "apiVersion": "mlflowops.dev/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": "fraud", "namespace": "ml", "generation": generation},
        "spec": {**MD_SPEC, **spec},
    }
    if status is not None:
        body["status"] = status
    return body


V1, V2 = Resolved("1"), Resolved("2")

MODEL_DEPLOYMENT_CASES: dict[str, tuple[Callable[[], dict[str, Any]], str, str]] = {
    # name: (object, health, a part of the message)
    "new, no status yet": (lambda: md(None), "Progressing", "report status"),
    "spec changed, not yet observed": (
        lambda: md(md_status([(V1, complete("1"))]), generation=2),
        "Progressing",
        "generation 2",
    ),
    "first version deploying": (
        lambda: md(md_status([(V1, NOTHING)])),
        "Progressing",
        "version 1",
    ),
    "serving the target": (
        lambda: md(md_status([(V1, complete("1"))])),
        "Healthy",
        "serving version 1",
    ),
    "rolling out a new version": (
        lambda: md(md_status([(V1, complete("1")), (V2, in_progress("2"))])),
        "Progressing",
        "version 2",
    ),
    "rollout failed, rolled back": (
        lambda: md(
            md_status(
                [(V1, complete("1")), (V2, in_progress("2")), (V2, in_progress("2", exceeded=True))]
            )
        ),
        "Degraded",
        "version 2 did not become available",
    ),
    "registry unreachable, still serving": (
        lambda: md(
            {
                **md_status([(V1, complete("1"))]),
                "conditions": md_status(
                    [(V1, complete("1")), (None, complete("1"))], registry=DOWN
                )["conditions"],
            }
        ),
        "Healthy",
        "cannot read the MLflow registry",
    ),
    "alias points nowhere": (
        lambda: md(md_status([(Unresolved("AliasNotFound", "no alias champion"), NOTHING)])),
        "Degraded",
        "no alias champion",
    ),
    "version still registering": (
        lambda: md(md_status([(Unresolved("VersionNotReady", "version 3 is PENDING"), NOTHING)])),
        "Progressing",
        "waiting for the registry",
    ),
    "suspended": (
        lambda: md(
            md_status([(V1, complete("1"))], spec={**MD_SPEC, "suspend": True}), suspend=True
        ),
        "Suspended",
        "not followed",
    ),
    "invalid spec": (lambda: md(invalid_spec_status()), "Degraded", "exactly one of"),
    "rollout blocked by the cluster": (
        lambda: md(md_status([(V1, complete("1")), (V2, blocked("2"))])),
        "Degraded",
        "never got to run the model",
    ),
    "registry answers a login page, still serving": (
        lambda: md(md_status([(V1, complete("1")), (None, complete("1"))], registry=LOGIN_PAGE)),
        "Healthy",
        "not MLflow's JSON",
    ),
    "Kubernetes refused the Deployment": (
        lambda: md(refused_status(md_status([(V1, complete("1"))]))),
        "Degraded",
        "HTTP 422 Invalid",
    ),
}


@pytest.mark.parametrize("case", MODEL_DEPLOYMENT_CASES, ids=str)
def test_modeldeployment_health(case: str) -> None:
    make, health, message = MODEL_DEPLOYMENT_CASES[case]
    result = run_health(ARGOCD / "health-modeldeployment.lua", make())
    assert result["status"] == health, result
    assert message in result["message"], result


# -- MLflowServer ---------------------------------------------------------------------------

IMAGE = SERVER_IMAGE


def server_status(**changes: Any) -> dict[str, Any]:
    obs = managed_server(**changes)
    status = fold_status(
        MLflowServerStatus(), obs, plan_server(obs), url="http://mlflow.ml.svc:5000", now=NOW
    )
    return status.to_wire()


def server(status: dict[str, Any] | None, *, generation: int = 1) -> dict[str, Any]:
    body: dict[str, Any] = {
        "apiVersion": "mlflowops.dev/v1alpha1",
        "kind": "MLflowServer",
        "metadata": {"name": "mlflow", "namespace": "ml", "generation": generation},
        "spec": {"artifactStore": {"bucket": "mlflow"}},
    }
    if status is not None:
        body["status"] = status
    return body


MIGRATED = {
    "migration": JobState("mlflow-migrate-1", image=IMAGE, succeeded=True),
    "migrated_image": IMAGE,
}

SERVING = {
    **MIGRATED,
    "deployment": WorkloadState("mlflow", desired=2, ready=2, updated=2, image=IMAGE),
}
STORAGE_REFUSED = Fact(
    "False",
    "StorageChangeRefused",
    "spec.backendStore.postgres.managed: cannot change storage from 10Gi to 20Gi of "
    "StatefulSet mlflow-postgres: a StatefulSet's volumeClaimTemplates are immutable.",
)
_FORBIDDEN = ApiRefusal("apply Deployment ml/mlflow", 403, "Forbidden", "cannot patch")
FORBIDDEN = Fact("False", _FORBIDDEN.reason, _FORBIDDEN.message)

MLFLOW_SERVER_CASES: dict[str, tuple[Callable[[], dict[str, Any]], str, str]] = {
    "new, no status yet": (lambda: server(None), "Progressing", "report status"),
    "spec changed, not yet observed": (
        lambda: server(server_status(), generation=2),
        "Progressing",
        "generation 2",
    ),
    "database starting": (
        lambda: server(
            server_status(postgres=WorkloadState("mlflow-postgres", desired=1, ready=0))
        ),
        "Progressing",
        "",
    ),
    "schema migrating": (
        lambda: server(server_status(migration=JobState("mlflow-migrate-1", image=IMAGE))),
        "Progressing",
        "",
    ),
    "serving": (
        lambda: server(
            server_status(
                **MIGRATED,
                deployment=WorkloadState("mlflow", desired=2, ready=2, updated=2, image=IMAGE),
            )
        ),
        "Healthy",
        "serve",
    ),
    "migration failed": (
        lambda: server(
            server_status(
                migration=JobState(
                    "mlflow-migrate-1",
                    image=IMAGE,
                    failed=True,
                    reason="BackoffLimitExceeded",
                    message="Job has reached the specified backoff limit",
                )
            )
        ),
        "Degraded",
        "failed to migrate the schema",
    ),
    "database Secret missing": (
        lambda: server(server_status(database_secret=SecretCheck("pg-creds", found=False))),
        "Degraded",
        "pg-creds",
    ),
    "scaled to zero": (
        lambda: server(
            server_status(**MIGRATED, deployment=WorkloadState("mlflow", desired=0, image=IMAGE))
        ),
        "Suspended",
        "replicas is 0",
    ),
    "storage change refused": (
        lambda: server(server_status(**SERVING, problems=(STORAGE_REFUSED,))),
        "Degraded",
        "volumeClaimTemplates are immutable",
    ),
    "Kubernetes refused a child": (
        lambda: server(server_status(**SERVING, problems=(FORBIDDEN,))),
        "Degraded",
        "HTTP 403 Forbidden",
    ),
}


@pytest.mark.parametrize("case", MLFLOW_SERVER_CASES, ids=str)
def test_mlflowserver_health(case: str) -> None:
    make, health, message = MLFLOW_SERVER_CASES[case]
    result = run_health(ARGOCD / "health-mlflowserver.lua", make())
    assert result["status"] == health, result
    assert message in result["message"], result


def test_argocd_configmap_carries_the_tested_scripts() -> None:
    """gitops/argocd/argocd-cm.yaml is generated from the .lua files (make manifests)."""
    config = yaml.safe_load((ARGOCD / "argocd-cm.yaml").read_text())
    data = config["data"]
    assert (
        data["resource.customizations.health.mlflowops.dev_ModelDeployment"]
        == (ARGOCD / "health-modeldeployment.lua").read_text()
    )
    assert (
        data["resource.customizations.health.mlflowops.dev_MLflowServer"]
        == (ARGOCD / "health-mlflowserver.lua").read_text()
    )


# -- Flux healthCheckExprs ------------------------------------------------------------------

FLUX = ARGOCD.parent / "flux" / "mlflow-operator.yaml"
# What Flux should conclude per case; None: decided by kstatus before the expressions (the
# observedGeneration check), so not the expressions' business.
FLUX_EXPECTED = {
    "ModelDeployment": {
        "new, no status yet": "inProgress",
        "spec changed, not yet observed": None,
        "first version deploying": "inProgress",
        "serving the target": "current",
        "rolling out a new version": "inProgress",
        "rollout failed, rolled back": "failed",
        "registry unreachable, still serving": "current",
        "alias points nowhere": "inProgress",
        "version still registering": "inProgress",
        "suspended": "current",
        "invalid spec": "failed",
        "rollout blocked by the cluster": "failed",
        "registry answers a login page, still serving": "current",
        "Kubernetes refused the Deployment": "failed",
    },
    "MLflowServer": {
        "new, no status yet": "inProgress",
        "spec changed, not yet observed": None,
        "database starting": "inProgress",
        "schema migrating": "inProgress",
        "serving": "current",
        "migration failed": "failed",
        "database Secret missing": "failed",
        "scaled to zero": "current",
        "storage change refused": "failed",
        "Kubernetes refused a child": "failed",
    },
}


def flux_expressions(kind: str) -> dict[str, str]:
    documents = yaml.safe_load_all(FLUX.read_text())
    kustomization = next(d for d in documents if d["kind"] == "Kustomization")
    return next(e for e in kustomization["spec"]["healthCheckExprs"] if e["kind"] == kind)


def flux_health(expressions: dict[str, str], obj: dict[str, Any]) -> str:
    """failed, then current, else in progress; a field not there yet means waiting."""
    for outcome in ("failed", "current"):
        try:
            if cel.evaluate(expressions[outcome], obj):
                return outcome
        except RuntimeError:  # e.g. no status yet: Flux keeps waiting
            return "inProgress"
    return "inProgress"


@pytest.mark.parametrize(
    ("kind", "case"),
    # A case expected None is decided by kstatus from observedGeneration before any
    # expression runs: there is nothing of ours to test.
    [
        (kind, case)
        for kind, cases in FLUX_EXPECTED.items()
        for case, expected in cases.items()
        if expected is not None
    ],
    ids=str,
)
def test_flux_health_check_expressions(kind: str, case: str) -> None:
    expected = FLUX_EXPECTED[kind][case]
    cases = MODEL_DEPLOYMENT_CASES if kind == "ModelDeployment" else MLFLOW_SERVER_CASES
    make = cases[case][0]
    assert flux_health(flux_expressions(kind), make()) == expected


def test_flux_expectations_cover_every_case() -> None:
    assert set(FLUX_EXPECTED["ModelDeployment"]) == set(MODEL_DEPLOYMENT_CASES)
    assert set(FLUX_EXPECTED["MLflowServer"]) == set(MLFLOW_SERVER_CASES)
