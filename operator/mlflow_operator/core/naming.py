"""Names, labels and keys the operator puts on what it creates."""

from __future__ import annotations

import hashlib

from mlflow_operator.api import API_GROUP
from mlflow_operator.api.names import MAX_NAME, WRITE_BACK_TAG_PREFIX

FIELD_MANAGER = "mlflow-operator"

LABEL_NAME = "app.kubernetes.io/name"
LABEL_INSTANCE = "app.kubernetes.io/instance"
LABEL_COMPONENT = "app.kubernetes.io/component"
LABEL_PART_OF = "app.kubernetes.io/part-of"
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
LABEL_MODEL_DEPLOYMENT = f"{API_GROUP}/modeldeployment"
LABEL_MLFLOW_SERVER = f"{API_GROUP}/mlflowserver"
LABEL_MODEL_VERSION = f"{API_GROUP}/model-version"
# the pods of a canary Deployment (strategy Canary) carry this label, set to "canary"
LABEL_TRACK = f"{API_GROUP}/track"
ANNOTATION_MODEL_URI = f"{API_GROUP}/model-uri"
ANNOTATION_CONFIG_HASH = f"{API_GROUP}/config-hash"
ANNOTATION_IMAGE = f"{API_GROUP}/image"
# The hash of the manifest last applied to a child (core/applied.py). A label, not an
# annotation: the API server bumps a Deployment's generation (and the deployment controller
# rewrites its ReplicaSet) whenever its annotations change, never for its labels.
LABEL_APPLIED_HASH = f"{API_GROUP}/applied-hash"
# The rollout ledger on the serving Deployment (core/modeldeployment/ledger.py): the failed
# versions in an annotation (users clear it with `kubectl annotate`), the last good version in
# a label (it changes after every completed rollout, which must not bump the generation).
ANNOTATION_FAILED_VERSIONS = f"{API_GROUP}/failed-versions"
LABEL_LAST_GOOD_VERSION = f"{API_GROUP}/last-good-version"
# Where earlier builds kept the last good version: still read, so an upgrade keeps it.
ANNOTATION_LAST_GOOD_VERSION = LABEL_LAST_GOOD_VERSION
# The MLflowServer on which the user of a serving pods' credentials Secret lives
# (core/modeldeployment/serving_identity.py).
ANNOTATION_MLFLOW_SERVER = f"{API_GROUP}/mlflow-server"
# On the serving pods of a Shadow: which mirror ConfigMap they should see. Writing it makes the
# kubelet sync the pod, and so refresh the ConfigMap's files, at once instead of on its next
# periodic sync (a minute and more).
ANNOTATION_MIRROR_CONFIG = f"{API_GROUP}/mirror-config"


def write_back_tag(namespace: str, name: str) -> str:
    return f"{WRITE_BACK_TAG_PREFIX}{namespace}.{name}"


def drift_tag(namespace: str, name: str) -> str:
    """The version tag that records when the ModelDeployment saw the version's traffic drift."""
    return f"{write_back_tag(namespace, name)}.drift"


def quality_tag(namespace: str, name: str) -> str:
    """The version tag that records when the ModelDeployment saw the version's live quality
    fall below its training metric."""
    return f"{write_back_tag(namespace, name)}.quality"


def child_name(owner: str, suffix: str = "") -> str:
    """`<owner>-<suffix>`, at most 63 characters: long names are cut and given a hash."""
    name = f"{owner}-{suffix}" if suffix else owner
    if len(name) <= MAX_NAME:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:8]
    keep = MAX_NAME - len(digest) - 1
    return f"{name[:keep].rstrip('-.')}-{digest}"


def standard_labels(name: str, instance: str, component: str) -> dict[str, str]:
    """The app.kubernetes.io labels of one component of one custom resource."""
    return {
        LABEL_NAME: name,
        LABEL_INSTANCE: instance,
        LABEL_COMPONENT: component,
        LABEL_PART_OF: "mlflow-operator",
        LABEL_MANAGED_BY: FIELD_MANAGER,
    }


def model_uri(model: str, version: str) -> str:
    """The registry URI of one model version, as pods load it and status shows it."""
    return f"models:/{model}/{version}"
