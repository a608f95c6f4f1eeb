"""docs/troubleshooting.md names every condition reason and Event reason the operator writes.

The reasons are constants of one module per kind (core/modeldeployment/conditions.py,
core/mlflowserver/conditions.py); the scan reads every CamelCase string literal of the code that
decides status and Events, so a reason written as a literal elsewhere is found too (and refused
below). The words there that are not reasons are listed, each for a reason. A new reason in the
code fails this test until the page has a row for it.
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "operator" / "mlflow_operator"
DOC = ROOT / "docs" / "troubleshooting.md"
WHERE = ("core", "reconcilers", "handlers", "kube", "registry")
NOT_REASONS = {
    # condition types, statuses, Event types
    *("Ready", "Progressing", "Degraded", "RegistrySynced", "Drifting", "QualityDegraded"),
    *("DatabaseReady", "ArtifactStoreReady", "SchemaMigrated"),
    *("True", "False", "Normal", "Warning"),
    # kinds the operator reads and writes, and products named in messages
    *("Deployment", "Job", "Pod", "Secret", "Service", "ServiceAccount", "StatefulSet"),
    *("ConfigMap", "CronJob", "Event", "PersistentVolumeClaim", "ModelDeployment"),
    "MLflowServer",
    "PodDisruptionBudget",
    "NetworkPolicy",
    "EndpointSlice",
    "Lease",
    "HTTPRoute",
    *("MinIO", "PostgreSQL", "None", "READY", "ALL"),
    *("READ", "EDIT"),  # MLflow permissions, granted by registry/accounts.py
    # results of status.history entries (docs/modeldeployment.md)
    *("InProgress", "Succeeded", "Failed", "Superseded", "RolledBack"),
    # what Kubernetes writes, read by the operator
    *("PodScheduled", "Unschedulable", "Complete", "ProgressDeadlineExceeded"),
    # HTTP and MLflow's REST API, spoken by registry/
    *("GET", "POST", "PATCH", "DELETE", "Authorization", "ACTIVE"),
    "DELETED",  # a watch event's type (handlers/)
    # verdicts of status.gates, phases of status.rollout, a canary judgement's verdict
    *("Passed", "Blocked", "Promoting", "Promoted", "Aborted", "Waiting"),
    # verdicts of status.preflight; MLflow's file of a model; the values of the PEP 508 marker
    # environment the serving images' locks are read for (core/modeldeployment/preflight.py)
    *("Compatible", "Incompatible", "Unknown", "MLmodel", "CPython", "Linux"),
    # phases of status.prefetch and of its nodes, and the units its message counts bytes in
    *("Running", "Done", "Incomplete", "Unsupported", "NoCache"),
    # phases of status.environment (serving.envManager uv)
    *("Building", "Built"),
    *("KiB", "MiB", "GiB", "TiB"),
    # a section of docs/modeldeployment.md that docstrings name
    "Guarantees",
    # the prefix of Kubernetes<Reason> (the API's refusal reason appended): see the test below
    "Kubernetes",
}


def code_reasons() -> set[str]:
    found: set[str] = set()
    for directory in WHERE:
        for path in (PACKAGE / directory).rglob("*.py"):
            found |= set(re.findall(r'"([A-Z][A-Za-z]+)"', path.read_text()))
    return found - NOT_REASONS


def test_every_reason_has_a_row() -> None:
    documented = set(re.findall(r"`([A-Z][A-Za-z]+)`", DOC.read_text()))
    missing = sorted(code_reasons() - documented)
    assert missing == [], f"docs/troubleshooting.md lacks {', '.join(missing)}"


def test_the_scan_finds_reasons() -> None:
    """The test above is not vacuous: the reasons of both kinds are found."""
    assert {"RolloutFailed", "AliasNotFound", "MigrationFailed", "SecretNotFound"} <= (
        code_reasons()
    )


def test_the_kubernetes_refusal_reasons_are_documented() -> None:
    """Reasons made as "Kubernetes" + the API's reason (KubernetesForbidden, ...) are not
    literals; the page documents the family and its common members."""
    text = DOC.read_text()
    assert "`Kubernetes<Reason>`" in text
    assert "KubernetesForbidden" in text
    assert "KubernetesInvalid" in text


# Reasons Kubernetes writes into pods and Deployments, which the operator passes on as they are.
KUBERNETES_REASONS = {
    *("CrashLoopBackOff", "CreateContainerConfigError", "CreateContainerError", "OOMKilled"),
    *("ErrImageNeverPull", "ErrImagePull", "ImagePullBackOff", "InvalidImageName"),
    "ReplicaFailure",
}


def test_reasons_are_the_constants_of_the_conditions_modules() -> None:
    """A reason is written once, in its kind's conditions module: a literal elsewhere is a
    second spelling waiting to drift."""
    elsewhere = {}
    for directory in WHERE:
        for path in (PACKAGE / directory).rglob("*.py"):
            if path.name == "conditions.py":
                continue
            found = set(re.findall(r'"([A-Z][A-Za-z]+)"', path.read_text()))
            stray = found - NOT_REASONS - KUBERNETES_REASONS
            if stray:
                elsewhere[str(path.relative_to(PACKAGE))] = sorted(stray)
    assert elsewhere == {}
