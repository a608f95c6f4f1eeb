"""The serving Deployment and Service of a ModelDeployment: pure manifests from spec + version."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from mlflow_operator.api.modeldeployment import ModelDeploymentSpec, ServingMonitoring
from mlflow_operator.builders.meta import RESTRICTED_CONTAINER_SECURITY, Owner, child_metadata
from mlflow_operator.builders.pod import (
    disruption_budget,
    http_probe,
    ingress_policy,
    placement,
    pod_annotations,
    pod_labels,
    with_default_requests,
)
from mlflow_operator.config import OperatorConfig
from mlflow_operator.core.endpoint import (
    TRACKING_PASSWORD,
    TRACKING_TOKEN,
    TRACKING_USERNAME,
    TrackingEndpoint,
)
from mlflow_operator.core.model_cache import cached_tracking_uri
from mlflow_operator.core.modeldeployment.environment import (
    EXPERIMENT_VAR,
    IMAGE_VAR,
    builds_environments,
    environment_job_name,
)
from mlflow_operator.core.modeldeployment.ledger import RolloutLedger
from mlflow_operator.core.modeldeployment.serving_identity import (
    monitoring_experiment_name,
    reader_secret_name,
)
from mlflow_operator.core.naming import (
    ANNOTATION_MLFLOW_SERVER,
    ANNOTATION_MODEL_URI,
    LABEL_COMPONENT,
    LABEL_MODEL_DEPLOYMENT,
    LABEL_MODEL_VERSION,
    LABEL_TRACK,
    child_name,
    model_uri,
    standard_labels,
)

SERVING_PORT = 8080
COMPONENT = "serving"
# Seconds the pod keeps serving after it is marked for deletion, so Services stop sending first.
PRE_STOP_SLEEP = 5
# A model download can take minutes; the startup probe allows up to this long.
STARTUP_SECONDS = 600
# the serving pods' and their environment Jobs' (PodSecurity restricted; one user for both,
# so the environment a Job builds is the pods' to read)
SERVING_POD_SECURITY: dict[str, Any] = {
    "runAsNonRoot": True,
    "runAsUser": 1000,
    "runAsGroup": 1000,
    "fsGroup": 1000,
    "seccompProfile": {"type": "RuntimeDefault"},
}


def serving_name(md_name: str) -> str:
    return child_name(md_name)


CANARY_TRACK = "canary"


def canary_name(md_name: str) -> str:
    """The Deployment of a canary's pods (strategy Canary), beside the serving one."""
    return child_name(md_name, CANARY_TRACK)


SHADOW_TRACK = "shadow"
# where the serving pods of strategy Shadow find what to copy requests to (the runtime's
# --mirror-config); the ConfigMap exists only while a shadow runs, the volume is optional
MIRROR_DIR = "/etc/mlflow-operator/mirror"
MIRROR_FILE = "mirror.json"


def shadow_name(md_name: str) -> str:
    """The Deployment and Service of a shadow's pods (strategy Shadow), outside the serving
    Service, and the ConfigMap that points the serving pods at them."""
    return child_name(md_name, SHADOW_TRACK)


def selector_labels(md_name: str, component: str = COMPONENT) -> dict[str, str]:
    """Labels that select the pods; never the version (a Deployment's selector is immutable).
    A shadow's pods are a component of their own: the serving Service never selects them."""
    return {LABEL_MODEL_DEPLOYMENT: md_name, LABEL_COMPONENT: component}


def pod_selector(md_name: str) -> str:
    """`selector_labels` as a label selector string (status.selector, for the /scale of HPAs)."""
    return ",".join(f"{key}={value}" for key, value in selector_labels(md_name).items())


def serving_labels(md_name: str, component: str = COMPONENT) -> dict[str, str]:
    return {
        **standard_labels("mlflow-serving", md_name, component),
        **selector_labels(md_name, component),
    }


def serving_command(
    spec: ModelDeploymentSpec, uri: str, *, monitoring_run: str | None = None
) -> list[str]:
    """The container command per runtime; the same command the demo runs as a local process.
    `monitoring_run`: where the batched runtime writes samples and drift references, when not
    to the version's own run (serverRef with basic auth: reconcilers/serving_identity.py)."""
    serving = spec.serving
    if serving.runtime == "custom":
        return list(serving.command)
    if serving.runtime == "batched":
        return [
            "mlflow-operator-serve",
            "--model-uri", uri,
            "--host", "0.0.0.0",  # noqa: S104  (a pod serves on all its interfaces)
            "--port", str(SERVING_PORT),
            "--workers", str(serving.workers),
            "--timeout", str(serving.timeout_seconds),
            *_monitoring_args(serving.monitoring, monitoring_run),
        ]  # fmt: skip
    # the operator's images download the model once, MLflow's CLI twice (the serving
    # distribution's mlflow_cli.py says why); an image of the user's has only MLflow's
    launcher = ["mlflow", "models", "serve"] if serving.image else ["mlflow-operator-serve-mlflow"]
    return [
        *launcher,
        "--model-uri", uri,
        "--env-manager", serving.env_manager,
        "--host", "0.0.0.0",  # noqa: S104
        "--port", str(SERVING_PORT),
        "--workers", str(serving.workers),
        "--timeout", str(serving.timeout_seconds),
    ]  # fmt: skip


def _monitoring_args(monitoring: ServingMonitoring, run: str | None = None) -> list[str]:
    """The batched runtime's options for sampled prediction logging and drift: the excluded
    columns once, for both (they are neither written nor tracked)."""
    args: list[str] = []
    if monitoring.sample_rate > 0:
        args += ["--sample-rate", repr(monitoring.sample_rate)]
    if monitoring.drift_enabled:
        args += ["--drift", "--drift-reference-rows", str(monitoring.drift_reference_rows)]
    if args:
        args += [arg for name in monitoring.exclude_columns for arg in ("--sample-exclude", name)]
        args += ["--monitoring-run-id", run] if run else []
    return args


def serving_env(
    spec: ModelDeploymentSpec, uri: str, endpoint: TrackingEndpoint, *, cache_url: str = ""
) -> list[dict[str, Any]]:
    """Environment of the serving container; credentials only by secretKeyRef, never by value.

    `cache_url`: the operator's model cache (config.model_cache_url). With serving.cache on,
    the pods talk to MLflow through their node's cache, which keeps the artifacts they load.
    """
    env: dict[str, dict[str, Any]] = {}

    def put(name: str, **value: Any) -> None:
        env[name] = {"name": name, **value}

    cache = spec.serving.cache
    tracking = endpoint.url
    if cache.enabled and cache_url:
        try:
            tracking = cached_tracking_uri(cache_url, endpoint.url, cache.keep_versions)
        except ValueError:  # a URL the cache refuses to forward to: the pods go direct
            tracking = endpoint.url
    put("MLFLOW_TRACKING_URI", value=tracking)
    put("MODEL_URI", value=uri)
    put("PORT", value=str(SERVING_PORT))
    put("HOME", value="/tmp")  # noqa: S108  (the root filesystem is read-only; /tmp is a volume)
    put("MLFLOW_ENV_ROOT", value="/tmp/mlflow-envs")  # noqa: S108
    # MLflow 3.17 clients download artifacts of an S3-backed server through presigned URLs of
    # the object store whenever the server offers them, and the object store may be out of the
    # pods' reach. Downloads through the tracking server itself need its URL and nothing else.
    put("MLFLOW_ENABLE_PROXY_MULTIPART_DOWNLOAD", value="false")
    creds = endpoint.serving_credentials
    if creds is not None:
        for var, key in (
            (TRACKING_USERNAME, creds.username_key),
            (TRACKING_PASSWORD, creds.password_key),
            (TRACKING_TOKEN, creds.token_key),
        ):
            if key:
                ref = {"name": creds.name, "key": key, "optional": True}
                put(var, valueFrom={"secretKeyRef": ref})
    for user in spec.serving.env:  # the user's variables win over ours, by name
        env[user.name] = user.to_wire()
    return list(env.values())


def _resources(spec: ModelDeploymentSpec) -> dict[str, Any]:
    resources = spec.serving.resources.to_wire()
    gpu = spec.serving.gpu
    if gpu.count > 0:
        resources.setdefault("limits", {})[gpu.resource_name] = gpu.count
    return resources


def _gpu_tolerations(spec: ModelDeploymentSpec, config: OperatorConfig) -> list[dict[str, Any]]:
    if spec.serving.gpu.count == 0:
        return []
    return [{"key": config.gpu_toleration_key, "operator": "Exists", "effect": "NoSchedule"}]


def build_serving_deployment(
    spec: ModelDeploymentSpec,
    owner: Owner,
    version: str,
    endpoint: TrackingEndpoint,
    config: OperatorConfig,
    *,
    replace_in_place: bool = False,
    ledger: RolloutLedger | None = None,
    canary_replicas: int | None = None,
    shadow_replicas: int | None = None,
) -> dict[str, Any]:
    """The Deployment that serves `version` of the model.

    `ledger` goes into the Deployment's own metadata (never the pod template's), so that
    the write that changes the template also records why (core/modeldeployment/ledger.py).
    `canary_replicas`: build the canary's Deployment instead (strategy Canary): that many
    pods with the Service's labels, and a selector of its own (the track label).
    `shadow_replicas`: build the shadow's (strategy Shadow): that many pods the Service does
    not select.
    """
    name, component, track, replicas = (
        serving_name(owner.name),
        COMPONENT,
        {},
        spec.serving.replicas,
    )
    selector = selector_labels(owner.name)
    if canary_replicas is not None:
        name, track, replicas = (
            canary_name(owner.name),
            {LABEL_TRACK: CANARY_TRACK},
            canary_replicas,
        )
        # an HTTPRoute sends the canary its share through <name>-canary: outside the Service
        component = CANARY_TRACK if routed(spec) else COMPONENT
        selector = {LABEL_MODEL_DEPLOYMENT: owner.name, **track}  # the same either way
    if shadow_replicas is not None:
        name, component, replicas = shadow_name(owner.name), SHADOW_TRACK, shadow_replicas
        track = {LABEL_TRACK: SHADOW_TRACK}
        selector = {**selector_labels(owner.name, component), **track}
    mirrors = spec.rollout.strategy == "Shadow" and name == serving_name(owner.name)
    uri = model_uri(spec.model.name, version)
    serving = spec.serving
    template = serving.pod_template
    image = serving_image(spec, config)
    labels = pod_labels(
        template, {**serving_labels(owner.name, component), LABEL_MODEL_VERSION: version, **track}
    )
    annotations = pod_annotations(template, {ANNOTATION_MODEL_URI: uri})
    strategy = (
        {"maxSurge": 0, "maxUnavailable": 1}
        if replace_in_place
        else {"maxSurge": spec.rollout.max_surge, "maxUnavailable": spec.rollout.max_unavailable}
    )
    container = {
        "name": "server",
        "image": image,
        "command": serving_command(spec, uri, monitoring_run=endpoint.monitoring_runs.get(version)),
        "env": serving_env(spec, uri, endpoint, cache_url=config.model_cache_url)
        + _environment_env(spec, owner, image)
        + (_mirror_env() if mirrors else []),
        "ports": [{"name": "http", "containerPort": SERVING_PORT, "protocol": "TCP"}],
        # Short periods: a pod is Ready one startup period plus one readiness period after its
        # model answers (the kubelet's first readiness probe waits a period after the startup
        # probe passed), and a rollout waits for each surge pod in turn; /ping costs nothing.
        "startupProbe": http_probe("/ping", "http", period=2, failures=STARTUP_SECONDS // 2),
        "readinessProbe": http_probe("/ping", "http", period=3, failures=3),
        "livenessProbe": http_probe("/health", "http", period=10, failures=3),
        "resources": _resources(spec),
        "securityContext": {**RESTRICTED_CONTAINER_SECURITY, "readOnlyRootFilesystem": True},
        "volumeMounts": [
            {"name": "tmp", "mountPath": "/tmp"},  # noqa: S108
            *([{"name": "mirror", "mountPath": MIRROR_DIR, "readOnly": True}] if mirrors else []),
        ],
        "lifecycle": {"preStop": {"sleep": {"seconds": PRE_STOP_SLEEP}}},
        # A crash's last log lines land in the pod's status, where the operator (which may not
        # read logs) quotes them in the ModelDeployment's conditions.
        "terminationMessagePolicy": "FallbackToLogsOnError",
    }
    pod_spec: dict[str, Any] = {
        "automountServiceAccountToken": False,  # serving needs no Kubernetes API access
        # The pause process becomes PID 1. The kernel drops signals that PID 1 has no handler
        # for, and `mlflow models serve` installs none: as PID 1 it ignored SIGTERM and every
        # pod deletion took the whole grace period (seen on the real node).
        "shareProcessNamespace": True,
        "securityContext": {**SERVING_POD_SECURITY},
        "terminationGracePeriodSeconds": serving.timeout_seconds + PRE_STOP_SLEEP + 5,
        "containers": [container],
        "volumes": [
            {"name": "tmp", "emptyDir": {}},
            *([_mirror_volume(owner.name)] if mirrors else []),
        ],
        **placement(template, _gpu_tolerations(spec, config)),
    }
    ledger_labels, ledger_annotations = (
        (ledger.labels(), ledger.annotations()) if ledger else ({}, {})
    )
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": child_metadata(
            name,
            owner,
            {**serving_labels(owner.name, component), **track, **ledger_labels},
            {ANNOTATION_MODEL_URI: uri, **ledger_annotations},
        ),
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": selector},
            "progressDeadlineSeconds": spec.rollout.progress_deadline_seconds,
            "revisionHistoryLimit": 5,
            "strategy": {"type": "RollingUpdate", "rollingUpdate": strategy},
            "template": {
                "metadata": {"labels": labels, "annotations": annotations},
                "spec": with_default_requests(pod_spec),
            },
        },
    }


def serving_image(spec: ModelDeploymentSpec, config: OperatorConfig) -> str:
    """The serving pods' image: the user's, else the operator's CPU or GPU image."""
    serving = spec.serving
    gpu = serving.gpu.count > 0
    return serving.image or (config.serving_image_gpu if gpu else config.serving_image_cpu)


def _environment_env(spec: ModelDeploymentSpec, owner: Owner, image: str) -> list[dict[str, Any]]:
    """Where the Job keeps the version's environment and the pods find it (envManager uv)."""
    if not builds_environments(spec):
        return []
    experiment = monitoring_experiment_name(owner.namespace, owner.name)
    return [{"name": EXPERIMENT_VAR, "value": experiment}, {"name": IMAGE_VAR, "value": image}]


# an environment build installs packages and loads the model once; an hour is generous, and
# a Job that hangs (an index that never answers) must end for its failure to be seen
ENVIRONMENT_JOB_DEADLINE = 3600
COMPONENT_ENVIRONMENT = "environment"


def build_environment_job(
    spec: ModelDeploymentSpec,
    owner: Owner,
    version: str,
    endpoint: TrackingEndpoint,
    config: OperatorConfig,
) -> dict[str, Any]:
    """The Job that builds `version`'s environment once (serving.envManager uv): the serving
    image's `mlflow-operator-serve-env build`, with the serving pods' MLflow credentials (never
    the operator's: it installs and loads the model's code) and the user's variables (the
    package index: UV_INDEX_URL, UV_FIND_LINKS, PIP_INDEX_URL...). Its pod is placed as the
    serving pods are, without their GPUs. core/modeldeployment/environment.py says why."""
    image = serving_image(spec, config)
    uri = model_uri(spec.model.name, version)
    experiment = monitoring_experiment_name(owner.namespace, owner.name)
    labels = {
        **standard_labels("mlflow-serving", owner.name, COMPONENT_ENVIRONMENT),
        LABEL_MODEL_DEPLOYMENT: owner.name,
        LABEL_MODEL_VERSION: version,
    }
    resources = spec.serving.resources.to_wire()
    command = [
        "mlflow-operator-serve-env", "build",
        "--model-uri", uri, "--experiment", experiment, "--image", image,
    ]  # fmt: skip
    container = {
        "name": "build",
        "image": image,
        "command": command,
        # straight to MLflow, never through the node's model cache: the Job uploads
        "env": serving_env(spec, uri, endpoint) + _environment_env(spec, owner, image),
        "resources": resources,
        "securityContext": {**RESTRICTED_CONTAINER_SECURITY, "readOnlyRootFilesystem": True},
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],  # noqa: S108
        "terminationMessagePolicy": "FallbackToLogsOnError",
    }
    pod_spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "securityContext": {**SERVING_POD_SECURITY},
        "containers": [container],
        "volumes": [{"name": "tmp", "emptyDir": {}}],
        **placement(spec.serving.pod_template),
    }
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": child_metadata(
            environment_job_name(owner.name, version, image),
            owner,
            labels,
            {ANNOTATION_MODEL_URI: uri},
        ),
        "spec": {
            # a second try for a flaky index; a package that does not exist stays missing
            "backoffLimit": 1,
            "activeDeadlineSeconds": ENVIRONMENT_JOB_DEADLINE,
            "template": {
                "metadata": {"labels": labels},
                "spec": with_default_requests(pod_spec),
            },
        },
    }


def routed(spec: ModelDeploymentSpec) -> bool:
    """A canary split by an HTTPRoute's weights (canary.httpRouteRef)."""
    canary = spec.rollout.canary
    return (
        spec.rollout.strategy == "Canary"
        and canary is not None
        and canary.http_route_ref is not None
    )


def build_canary_service(spec: ModelDeploymentSpec, owner: Owner) -> dict[str, Any]:
    """<name>-canary: the canary's pods alone, the backend an HTTPRoute gives the canary's
    weight (the serving Service has the rest); the serving Service's port."""
    service = build_serving_service(spec, owner)
    service["metadata"] = child_metadata(canary_name(owner.name), owner, serving_labels(owner.name))
    service["spec"]["type"] = "ClusterIP"
    service["spec"]["selector"] = {LABEL_MODEL_DEPLOYMENT: owner.name, LABEL_TRACK: CANARY_TRACK}
    return service


def _mirror_env() -> list[dict[str, Any]]:
    return [{"name": "MLFLOW_OPERATOR_SERVE_MIRROR_CONFIG", "value": f"{MIRROR_DIR}/{MIRROR_FILE}"}]


def _mirror_volume(md_name: str) -> dict[str, Any]:
    return {"name": "mirror", "configMap": {"name": shadow_name(md_name), "optional": True}}


def build_mirror_config(owner: Owner, version: str, percent: int) -> dict[str, Any]:
    """What the serving pods copy requests to while a shadow of `version` runs (the runtime's
    --mirror-config): the shadow's Service, and the share of the requests."""
    url = f"http://{shadow_name(owner.name)}.{owner.namespace}.svc:{SERVING_PORT}/invocations"
    config = {"url": url, "percent": percent, "version": version}
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": child_metadata(
            shadow_name(owner.name), owner, serving_labels(owner.name, SHADOW_TRACK)
        ),
        "data": {MIRROR_FILE: json.dumps(config, sort_keys=True)},
    }


def mirror_config_digest(config: dict[str, Any] | None) -> str:
    """What the serving pods' mirror-config annotation says of a mirror ConfigMap ("none": no
    shadow runs)."""
    if config is None:
        return "none"
    text = json.dumps(config["data"], sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def mounts_mirror_config(pod: dict[str, Any], md_name: str) -> bool:
    """Whether the pod reads the ModelDeployment's mirror ConfigMap (a serving pod of a
    Shadow)."""
    volumes = (pod.get("spec") or {}).get("volumes") or []
    wanted = shadow_name(md_name)
    return any((v.get("configMap") or {}).get("name") == wanted for v in volumes)


def build_shadow_service(owner: Owner) -> dict[str, Any]:
    """The shadow's pods behind a Service of their own, which only the serving pods call."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": child_metadata(
            shadow_name(owner.name), owner, serving_labels(owner.name, SHADOW_TRACK)
        ),
        "spec": {
            "type": "ClusterIP",
            "selector": selector_labels(owner.name, SHADOW_TRACK),
            "ports": [
                {"name": "http", "port": SERVING_PORT, "targetPort": "http", "protocol": "TCP"}
            ],
        },
    }


def build_serving_service(spec: ModelDeploymentSpec, owner: Owner) -> dict[str, Any]:
    """The Service in front of the serving pods."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": child_metadata(serving_name(owner.name), owner, serving_labels(owner.name)),
        "spec": {
            "type": spec.service.type,
            "selector": selector_labels(owner.name),
            "ports": [
                {"name": "http", "port": spec.service.port, "targetPort": "http", "protocol": "TCP"}
            ],
        },
    }


ACTIVATOR_SLICE_MANAGER = "activator.mlflowops.dev"  # never the endpointslice controller's


def activator_slice_name(md_name: str) -> str:
    return child_name(md_name, "activator")


def build_activator_endpoint_slice(owner: Owner, address: str, port: int) -> dict[str, Any]:
    """One more EndpointSlice of the serving Service, pointing at the operator's activator
    (core/modeldeployment/activation.py): kube-proxy sends the Service's requests there while
    there is no ready pod. The port's name is the Service port's, as kube-proxy matches them."""
    labels = {
        **serving_labels(owner.name),
        "kubernetes.io/service-name": serving_name(owner.name),
        "endpointslice.kubernetes.io/managed-by": ACTIVATOR_SLICE_MANAGER,
    }
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": child_metadata(activator_slice_name(owner.name), owner, labels),
        "addressType": "IPv6" if ":" in address else "IPv4",
        "endpoints": [{"addresses": [address], "conditions": {"ready": True}}],
        "ports": [{"name": "http", "port": port, "protocol": "TCP"}],
    }


def build_serving_pdb(spec: ModelDeploymentSpec, owner: Owner) -> dict[str, Any] | None:
    """Node drains evict one serving pod at a time, with 2+ replicas; None with fewer."""
    metadata = child_metadata(serving_name(owner.name), owner, serving_labels(owner.name))
    return disruption_budget(metadata, selector_labels(owner.name), spec.serving.replicas)


def build_serving_network_policy(owner: Owner) -> dict[str, Any]:
    """Serving pods take connections on their port from anywhere, and on no other port; so do
    a canary's and a shadow's, which may be outside the serving Service (every pod of the
    ModelDeployment)."""
    metadata = child_metadata(serving_name(owner.name), owner, serving_labels(owner.name))
    return ingress_policy(metadata, {LABEL_MODEL_DEPLOYMENT: owner.name}, "http")


def service_url(spec: ModelDeploymentSpec, owner: Owner) -> str:
    return f"http://{serving_name(owner.name)}.{owner.namespace}.svc:{spec.service.port}"


def build_reader_secret(owner: Owner, username: str, password: str, server: str) -> dict[str, Any]:
    """The serving pods' MLflow credentials (core/modeldeployment/serving_identity.py), owned by
    the ModelDeployment: created once, gone with it, a new password when deleted. It records
    the MLflowServer `server` its user lives on, to be found there when the spec moves away."""
    labels = {
        **standard_labels("mlflow-serving", owner.name, "credentials"),
        LABEL_MODEL_DEPLOYMENT: owner.name,
    }
    annotations = {ANNOTATION_MLFLOW_SERVER: server}
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": child_metadata(reader_secret_name(owner.name), owner, labels, annotations),
        "type": "Opaque",
        "stringData": {TRACKING_USERNAME: username, TRACKING_PASSWORD: password},
    }
