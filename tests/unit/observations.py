"""Observations the pure planners take, shared by the unit tests of several of them."""

from __future__ import annotations

import dataclasses
from typing import Any

from mlflow_operator.core.mlflowserver.observation import (
    SecretCheck,
    ServerObservation,
    WorkloadState,
)
from mlflow_operator.core.modeldeployment.ledger import RolloutLedger
from mlflow_operator.core.modeldeployment.observation import DeploymentObservation

SERVER_IMAGE = "ghcr.io/mlflow-operator/mlflow-server:3.17.2"


def complete(version: str, replicas: int = 1) -> DeploymentObservation:
    """A serving Deployment whose rollout of `version` has finished."""
    return DeploymentObservation(
        exists=True,
        version=version,
        desired_replicas=replicas,
        status_current=True,
        replicas=replicas,
        updated_replicas=replicas,
        ready_replicas=replicas,
        available_replicas=replicas,
    )


def in_progress(
    version: str, *, exceeded: bool = False, unschedulable: str = ""
) -> DeploymentObservation:
    """A serving Deployment half-way through rolling out `version` (one new pod of two)."""
    return DeploymentObservation(
        exists=True,
        version=version,
        desired_replicas=1,
        status_current=True,
        replicas=2,
        updated_replicas=1,
        ready_replicas=1,
        available_replicas=1,
        progress_deadline_exceeded=exceeded,
        unschedulable_message=unschedulable,
    )


def managed_server(**changes: Any) -> ServerObservation:
    """A managed MLflowServer whose stores are ready, nothing migrated yet, no Deployment."""
    base = ServerObservation(
        generation=1,
        desired_image=SERVER_IMAGE,
        database_secret=SecretCheck("mlflow-postgres"),
        object_store_secret=SecretCheck("mlflow-minio"),
        admin_secret=SecretCheck("mlflow-admin"),
        managed_database=True,
        postgres=WorkloadState("mlflow-postgres", desired=1, ready=1, updated=1),
        managed_object_store=True,
        minio=WorkloadState("mlflow-minio", desired=1, ready=1, updated=1),
        migration=None,
        deployment=None,
        migrated_image=None,
    )
    return dataclasses.replace(base, **changes)


def deployment_object(
    version: str,
    *,
    annotations: dict[str, str] | None = None,
    ledger: RolloutLedger | None = None,
    conditions: list[dict[str, str]] | None = None,
    available: int = 1,
) -> dict[str, Any]:
    """A serving Deployment object whose controller has observed its template; `ledger` as
    the operator writes it, `annotations` over it (as anyone may: `kubectl annotate`)."""
    metadata: dict[str, Any] = {
        "name": "fraud",
        "generation": 3,
        "annotations": {**(ledger.annotations() if ledger else {}), **(annotations or {})},
        "labels": ledger.labels() if ledger else {},
    }
    return {
        "metadata": metadata,
        "spec": {
            "replicas": 1,
            "template": {"metadata": {"labels": {"mlflowops.dev/model-version": version}}},
        },
        "status": {
            "observedGeneration": 3,
            "replicas": 1,
            "updatedReplicas": 1,
            "availableReplicas": available,
            "readyReplicas": available,
            "conditions": conditions or [],
        },
    }
