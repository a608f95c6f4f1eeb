"""The MLflow user a `serverRef` ModelDeployment's serving pods read the registry as.

Model code is arbitrary code (pickle, pyfunc): with the admin's password a model could move an
alias and get any version deployed. So each ModelDeployment gets a user of its own, which may
read its registered model and the experiments its versions were logged in (MLflow's artifact
proxy judges a download by the experiment) and nothing else. Its password lives in a Secret the
ModelDeployment owns; deleting that Secret rotates it.

Watching a version in production (serving.monitoring: samples, the drift reference) writes to
MLflow, and the user may not write to the versions' own experiments: an EDIT there would let
model code rewrite the metrics spec.gates judge other versions by. So the operator makes an
experiment per ModelDeployment for what its pods write (`monitoring_experiment_name`), with a
run per version, and the user gets EDIT on that experiment alone.

The Secret records the MLflowServer its user lives on. When the spec moves away from it (to a
`trackingUri`, another server, or basic auth turned off), the user there goes, and the Secret
with it, so a user never stays behind on a server that no longer serves the ModelDeployment.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Set
from dataclasses import dataclass
from typing import Any

from mlflow_operator.core.naming import ANNOTATION_MLFLOW_SERVER, child_name

REGISTERED_MODEL = "registered_model"
EXPERIMENT = "experiment"
READ = "READ"
EDIT = "EDIT"
# tags of the monitoring run of a version, in the ModelDeployment's monitoring experiment
MONITORING_MODEL_TAG = "mlflowops.dev/model"
MONITORING_VERSION_TAG = "mlflowops.dev/version"
READER_SECRET_SUFFIX = "mlflow-reader"  # noqa: S105  (a name)


@dataclass(frozen=True)
class Grant:
    """One permission of a user on one resource, as MLflow lists it."""

    resource_type: str  # registered_model | experiment | ...
    resource_id: str  # a model name, an experiment id
    permission: str = READ


def reader_username(namespace: str, name: str) -> str:
    """One MLflow user per ModelDeployment; `/` cannot occur in either name, so no two
    ModelDeployments share one."""
    return f"modeldeployment/{namespace}/{name}"


def monitoring_experiment_name(namespace: str, name: str) -> str:
    """The experiment a ModelDeployment's serving pods write samples and drift references to."""
    return f"mlflow-operator/{namespace}/{name}"


def reader_secret_name(md_name: str) -> str:
    return child_name(md_name, READER_SECRET_SUFFIX)


def recorded_server(secret: Mapping[str, Any] | None, current: str | None) -> str | None:
    """The MLflowServer on which the user of the reader Secret `secret` (None: there is none)
    lives. A Secret that records none (made before it recorded one, or by a person), or no
    Secret, counts as made for `current`, the server the spec names now: nothing churns on an
    upgrade."""
    annotations = ((secret or {}).get("metadata") or {}).get("annotations") or {}
    recorded = annotations.get(ANNOTATION_MLFLOW_SERVER)
    return recorded if isinstance(recorded, str) and recorded else current


def server_to_leave(secret: Mapping[str, Any] | None, current: str | None) -> str | None:
    """The MLflowServer whose reader user (and the Secret with its password) must go, because
    the serving pods no longer read MLflow there: `current` is the server they read with
    basic auth now, None when none (a `trackingUri`, or basic auth off). None: nothing goes."""
    if secret is None:
        return None
    recorded = recorded_server(secret, current)
    return recorded if recorded != current else None


def grant_changes(
    current: Set[Grant], model: str, experiments: Set[str], writes: str | None = None
) -> tuple[list[Grant], list[Grant]]:
    """(to revoke, to grant) so the user reads `model` and `experiments`, and may write to the
    experiment `writes` (the monitoring experiment; None: nothing).

    Experiments granted for earlier versions stay: a pod of the version being replaced may
    restart during a rollout (or a rollback bring it back) and download it again. Everything
    else the user holds (another model after `spec.model.name` changed, a permission above
    READ that someone gave it) goes.
    """
    wanted = {Grant(REGISTERED_MODEL, model)} | {Grant(EXPERIMENT, e) for e in experiments}
    if writes is not None:
        wanted.add(Grant(EXPERIMENT, writes, EDIT))
    kept_experiments = {
        g
        for g in current
        if g.resource_type == EXPERIMENT and g.permission == READ and g.resource_id != writes
    }
    revoke = sorted(current - wanted - kept_experiments, key=_order)
    grant = sorted(wanted - current, key=_order)
    return revoke, grant


def fingerprint(
    username: str, password: str, model: str, experiments: Set[str], writes: str | None = None
) -> str:
    """What the user was last made to be, without keeping its password in memory."""
    text = "\n".join([username, password, model, *sorted(experiments), f"writes {writes}"])
    return hashlib.sha256(text.encode()).hexdigest()


def _order(grant: Grant) -> tuple[str, str, str]:
    return grant.resource_type, grant.resource_id, grant.permission
