"""The serving Deployment and Service, field by field where users depend on it."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import pytest

from mlflow_operator.api.modeldeployment import ModelDeploymentSpec
from mlflow_operator.builders.meta import Owner
from mlflow_operator.builders.modeldeployment import (
    build_canary_service,
    build_environment_job,
    build_mirror_config,
    build_serving_deployment,
    build_serving_network_policy,
    build_serving_pdb,
    build_serving_service,
    build_shadow_service,
    service_url,
    shadow_name,
)
from mlflow_operator.config import OperatorConfig
from mlflow_operator.core.endpoint import CredentialsSecret, TrackingEndpoint
from mlflow_operator.core.modeldeployment.ledger import RolloutLedger, read_ledger
from tests.unit.specs import spec

OWNER = Owner("mlflowops.dev/v1alpha1", "ModelDeployment", "fraud", "ml-prod", "uid-1")
ENDPOINT = TrackingEndpoint(
    "http://mlflow.ml-prod.svc:5000",
    CredentialsSecret("operator-creds"),
    serving_credentials=CredentialsSecret("mlflow-creds"),
)
CONFIG = OperatorConfig()


def container(deployment: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = deployment["spec"]["template"]["spec"]["containers"][0]
    return result


def test_pins_the_version_in_command_label_and_annotation() -> None:
    dep = build_serving_deployment(spec(), OWNER, "8", ENDPOINT, CONFIG)
    template = dep["spec"]["template"]
    assert template["metadata"]["labels"]["mlflowops.dev/model-version"] == "8"
    assert template["metadata"]["annotations"]["mlflowops.dev/model-uri"] == "models:/fraud-model/8"
    # what the operator's Deployment watch selects (handlers/startup.py)
    assert dep["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "mlflow-operator"
    cmd = container(dep)["command"]
    # the operator's image: `mlflow models serve` with the model downloaded once
    assert cmd[0] == "mlflow-operator-serve-mlflow"
    assert cmd[cmd.index("--model-uri") + 1] == "models:/fraud-model/8"
    assert cmd[cmd.index("--env-manager") + 1] == "local"
    assert cmd[cmd.index("--workers") + 1] == "1"
    assert cmd[cmd.index("--host") + 1] == "0.0.0.0"
    # the selector never includes the version: it is immutable on a Deployment
    assert "mlflowops.dev/model-version" not in dep["spec"]["selector"]["matchLabels"]


def test_an_image_of_the_users_runs_mlflows_own_command() -> None:
    dep = build_serving_deployment(
        spec(serving={"image": "registry.example.com/team/mlflow:3"}), OWNER, "8", ENDPOINT, CONFIG
    )
    cmd = container(dep)["command"]
    assert cmd[:3] == ["mlflow", "models", "serve"]  # all such an image is sure to have
    assert cmd[cmd.index("--model-uri") + 1] == "models:/fraud-model/8"


def test_owner_reference_and_names() -> None:
    dep = build_serving_deployment(spec(), OWNER, "1", ENDPOINT, CONFIG)
    (ref,) = dep["metadata"]["ownerReferences"]
    assert ref == {
        "apiVersion": "mlflowops.dev/v1alpha1",
        "kind": "ModelDeployment",
        "name": "fraud",
        "uid": "uid-1",
        "controller": True,
        "blockOwnerDeletion": True,
    }
    assert dep["metadata"]["namespace"] == "ml-prod"
    svc = build_serving_service(spec(), OWNER)
    assert svc["spec"]["selector"] == dep["spec"]["selector"]["matchLabels"]
    assert svc["spec"]["ports"][0]["port"] == 80
    assert service_url(spec(), OWNER) == "http://fraud.ml-prod.svc:80"


def test_credentials_only_by_secret_key_ref() -> None:
    env = {
        e["name"]: e
        for e in container(build_serving_deployment(spec(), OWNER, "1", ENDPOINT, CONFIG))["env"]
    }
    assert env["MLFLOW_TRACKING_URI"]["value"] == "http://mlflow.ml-prod.svc:5000"
    for var in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN"):
        assert "value" not in env[var]
        assert env[var]["valueFrom"]["secretKeyRef"]["name"] == "mlflow-creds"


def test_the_operators_own_credentials_never_reach_a_pod() -> None:
    operator_only = TrackingEndpoint(ENDPOINT.url, CredentialsSecret("operator-creds"))
    for endpoint in (ENDPOINT, operator_only):
        built = build_serving_deployment(spec(), OWNER, "1", endpoint, CONFIG)
        assert "operator-creds" not in str(built)
    env = {e["name"] for e in container(build_serving_deployment(
        spec(), OWNER, "1", operator_only, CONFIG))["env"]}  # fmt: skip
    assert not env & {"MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"}


def test_artifacts_come_through_the_tracking_server_not_presigned_object_store_urls() -> None:
    """MLflow 3.17 clients follow presigned URLs of the object store when the server offers them
    (seen on the real node: the pod could not reach the store, the download retried for minutes).
    """
    env = {
        e["name"]: e.get("value")
        for e in container(build_serving_deployment(spec(), OWNER, "1", ENDPOINT, CONFIG))["env"]
    }
    assert env["MLFLOW_ENABLE_PROXY_MULTIPART_DOWNLOAD"] == "false"


def test_user_env_overrides_ours_without_duplicates() -> None:
    s = spec(
        serving={"env": [{"name": "HOME", "value": "/home/model"}, {"name": "X", "value": "1"}]}
    )
    env = container(build_serving_deployment(s, OWNER, "1", ENDPOINT, CONFIG))["env"]
    names = [e["name"] for e in env]
    assert len(names) == len(set(names))
    assert {"name": "HOME", "value": "/home/model"} in env


def test_security_and_probes() -> None:
    dep = build_serving_deployment(spec(), OWNER, "1", ENDPOINT, CONFIG)
    c = container(dep)
    assert c["securityContext"]["allowPrivilegeEscalation"] is False
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
    assert c["securityContext"]["runAsNonRoot"] is True
    assert c["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert c["readinessProbe"]["httpGet"]["path"] == "/ping"
    assert c["startupProbe"]["httpGet"]["path"] == "/ping"
    # a model download may take minutes: the startup probe allows ten
    assert c["startupProbe"]["periodSeconds"] * c["startupProbe"]["failureThreshold"] == 600
    assert dep["spec"]["template"]["spec"]["automountServiceAccountToken"] is False
    # the server is not PID 1, so SIGTERM stops it (MLflow's CLI installs no handler)
    assert dep["spec"]["template"]["spec"]["shareProcessNamespace"] is True
    assert c["lifecycle"]["preStop"] == {"sleep": {"seconds": 5}}


def test_gpu_sets_limit_image_and_toleration_and_keeps_user_settings() -> None:
    s = spec(
        serving={
            "gpu": {"count": 2},
            "resources": {"limits": {"memory": "8Gi"}},
            "podTemplate": {
                "nodeSelector": {"pool": "a100"},
                "runtimeClassName": "nvidia",
                "tolerations": [{"key": "dedicated", "operator": "Exists"}],
            },
        }
    )
    dep = build_serving_deployment(s, OWNER, "1", ENDPOINT, CONFIG)
    pod = dep["spec"]["template"]["spec"]
    assert container(dep)["resources"]["limits"] == {"memory": "8Gi", "nvidia.com/gpu": 2}
    assert container(dep)["image"] == CONFIG.serving_image_gpu
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod[
        "tolerations"
    ]
    assert {"key": "dedicated", "operator": "Exists"} in pod["tolerations"]
    assert pod["nodeSelector"] == {"pool": "a100"}
    assert pod["runtimeClassName"] == "nvidia"


def test_cpu_image_default_and_own_image() -> None:
    dep = build_serving_deployment(spec(), OWNER, "1", ENDPOINT, CONFIG)
    assert container(dep)["image"] == CONFIG.serving_image_cpu
    own = build_serving_deployment(
        spec(serving={"image": "me/img:1"}), OWNER, "1", ENDPOINT, CONFIG
    )
    assert container(own)["image"] == "me/img:1"


def test_strategy_from_spec_or_replace_in_place() -> None:
    dep = build_serving_deployment(spec(), OWNER, "1", ENDPOINT, CONFIG)
    assert dep["spec"]["strategy"]["rollingUpdate"] == {"maxSurge": 1, "maxUnavailable": 0}
    assert dep["spec"]["progressDeadlineSeconds"] == 600
    dep = build_serving_deployment(spec(), OWNER, "1", ENDPOINT, CONFIG, replace_in_place=True)
    assert dep["spec"]["strategy"]["rollingUpdate"] == {"maxSurge": 0, "maxUnavailable": 1}


def test_batched_runtime_command() -> None:
    dep = build_serving_deployment(
        spec(serving={"runtime": "batched"}), OWNER, "3", ENDPOINT, CONFIG
    )
    cmd = container(dep)["command"]
    assert cmd[0] == "mlflow-operator-serve"
    assert cmd[cmd.index("--model-uri") + 1] == "models:/fraud-model/3"


def test_sampling_is_in_the_batched_command_only_when_asked_for() -> None:
    plain = container(
        build_serving_deployment(spec(serving={"runtime": "batched"}), OWNER, "3", ENDPOINT, CONFIG)
    )["command"]
    assert "--sample-rate" not in plain
    monitored = spec(
        serving={
            "runtime": "batched",
            "monitoring": {"sampleRate": 0.05, "excludeColumns": ["ssn", "name, full"]},
        }
    )
    cmd = container(build_serving_deployment(monitored, OWNER, "3", ENDPOINT, CONFIG))["command"]
    assert cmd[cmd.index("--sample-rate") + 1] == "0.05"
    # one option per column: a name with a comma stays one name
    assert [cmd[i + 1] for i, arg in enumerate(cmd) if arg == "--sample-exclude"] == [
        "ssn",
        "name, full",
    ]


def batched_monitoring_args(monitoring: dict[str, Any]) -> list[str]:
    """What the batched command holds after its fixed options (--timeout N)."""
    s = spec(serving={"runtime": "batched", "monitoring": monitoring})
    cmd = container(build_serving_deployment(s, OWNER, "3", ENDPOINT, CONFIG))["command"]
    result: list[str] = cmd[cmd.index("--timeout") + 2 :]
    return result


def test_drift_alone_asks_the_batched_runtime_for_scores_without_sampling() -> None:
    assert batched_monitoring_args({"drift": {}}) == ["--drift", "--drift-reference-rows", "1000"]
    assert batched_monitoring_args({"drift": {"referenceRows": 5000}}) == [
        "--drift",
        "--drift-reference-rows",
        "5000",
    ]


def test_a_drift_threshold_alone_turns_drift_on() -> None:
    """API.md's `monitoring: {sampleRate: 0.1, thresholds: {drift: 0.2}}` scores drift."""
    assert batched_monitoring_args({"thresholds": {"drift": 0.2}}) == [
        "--drift",
        "--drift-reference-rows",
        "1000",
    ]
    assert batched_monitoring_args({"sampleRate": 0.1, "thresholds": {"drift": 0.2}}) == [
        "--sample-rate",
        "0.1",
        "--drift",
        "--drift-reference-rows",
        "1000",
    ]


def test_sampling_and_drift_together_pass_the_excluded_columns_once() -> None:
    """One list serves both: excluded columns are neither written nor tracked for drift."""
    args = batched_monitoring_args(
        {
            "sampleRate": 0.05,
            "excludeColumns": ["ssn", "name"],
            "drift": {"referenceRows": 200},
            "thresholds": {"drift": 0.25},
        }
    )
    assert args == [
        "--sample-rate",
        "0.05",
        "--drift",
        "--drift-reference-rows",
        "200",
        "--sample-exclude",
        "ssn",
        "--sample-exclude",
        "name",
    ]


def test_drift_alone_still_excludes_the_columns() -> None:
    args = batched_monitoring_args({"excludeColumns": ["ssn"], "drift": {}})
    assert args == ["--drift", "--drift-reference-rows", "1000", "--sample-exclude", "ssn"]


def test_no_monitoring_options_when_neither_sampling_nor_drift_is_on() -> None:
    assert batched_monitoring_args({}) == []
    # excluded columns alone, a zero rate, thresholds without a drift one: nothing to pass
    assert batched_monitoring_args({"sampleRate": 0, "excludeColumns": ["ssn"]}) == []
    assert batched_monitoring_args({"thresholds": {}}) == []


def test_pods_of_a_version_with_a_monitoring_run_write_there() -> None:
    """serverRef with basic auth: the operator's run of the version in the ModelDeployment's
    monitoring experiment (reconcilers/serving_identity.py)."""
    s = spec(serving={"runtime": "batched", "monitoring": {"drift": {}}})
    endpoint = replace(ENDPOINT, monitoring_runs={"3": "abc123"})
    cmd = container(build_serving_deployment(s, OWNER, "3", endpoint, CONFIG))["command"]
    assert cmd[cmd.index("--monitoring-run-id") + 1] == "abc123"
    other = container(build_serving_deployment(s, OWNER, "4", endpoint, CONFIG))["command"]
    assert "--monitoring-run-id" not in other  # no run of its own: the version's run
    quiet = spec(serving={"runtime": "batched"})
    cmd = container(build_serving_deployment(quiet, OWNER, "3", endpoint, CONFIG))["command"]
    assert "--monitoring-run-id" not in cmd  # nothing to write


def test_custom_runtime_uses_the_users_command_and_passes_the_uri() -> None:
    s = spec(serving={"runtime": "custom", "image": "me/srv:1", "command": ["my-server"]})
    c = container(build_serving_deployment(s, OWNER, "3", ENDPOINT, CONFIG))
    assert c["command"] == ["my-server"]
    assert {"name": "MODEL_URI", "value": "models:/fraud-model/3"} in c["env"]


def test_the_ledger_is_on_the_deployment_never_on_the_pod_template() -> None:
    """Recording a failure must not restart pods: only the Deployment's own metadata. The last
    good version, written after every completed rollout, is a label: a changed annotation
    would bump the Deployment's generation and rewrite its ReplicaSet."""
    ledger = RolloutLedger(failed_versions=("2",), last_good_version="1")
    dep = build_serving_deployment(spec(), OWNER, "1", ENDPOINT, CONFIG, ledger=ledger)
    metadata = dep["metadata"]
    assert metadata["annotations"]["mlflowops.dev/failed-versions"] == "2"
    assert metadata["labels"]["mlflowops.dev/last-good-version"] == "1"
    assert "mlflowops.dev/last-good-version" not in metadata["annotations"]
    template = dep["spec"]["template"]["metadata"]
    for keys in (template["annotations"], template["labels"]):
        assert not any(key.endswith(("failed-versions", "last-good-version")) for key in keys)
    assert read_ledger(metadata["annotations"], metadata["labels"]) == ledger


def test_the_last_good_version_of_an_earlier_build_is_kept() -> None:
    """Earlier builds kept the last good version in an annotation: an upgraded operator reads
    it there until its first apply writes the label; the label wins once both exist."""
    earlier = {"mlflowops.dev/failed-versions": "2", "mlflowops.dev/last-good-version": "1"}
    assert read_ledger(earlier) == RolloutLedger(("2",), "1")
    assert read_ledger(earlier, {"mlflowops.dev/last-good-version": "3"}) == RolloutLedger(
        ("2",), "3"
    )
    assert read_ledger(earlier, {"mlflowops.dev/last-good-version": ""}) == RolloutLedger(("2",))


def test_a_disruption_budget_only_for_two_replicas_or_more() -> None:
    assert build_serving_pdb(spec(serving={"replicas": 1}), OWNER) is None
    pdb = build_serving_pdb(spec(serving={"replicas": 3}), OWNER)
    assert pdb is not None
    dep = build_serving_deployment(spec(serving={"replicas": 3}), OWNER, "1", ENDPOINT, CONFIG)
    assert pdb["spec"]["selector"]["matchLabels"] == dep["spec"]["selector"]["matchLabels"]
    assert pdb["spec"]["maxUnavailable"] == 1
    # a crash-looping rollout must not block a node drain
    assert pdb["spec"]["unhealthyPodEvictionPolicy"] == "AlwaysAllow"
    assert pdb["metadata"]["ownerReferences"][0]["uid"] == "uid-1"


def test_requests_default_where_the_user_sets_neither_request_nor_limit() -> None:
    """A namespace whose ResourceQuota counts requests refuses pods without them."""
    plain = container(build_serving_deployment(spec(), OWNER, "1", ENDPOINT, CONFIG))
    assert plain["resources"] == {"requests": {"cpu": "100m", "memory": "256Mi"}}
    mine = spec(serving={"resources": {"requests": {"cpu": "2"}, "limits": {"memory": "64Mi"}}})
    resources = container(build_serving_deployment(mine, OWNER, "1", ENDPOINT, CONFIG))["resources"]
    # the user's request wins; a limit alone makes Kubernetes request the same (a default
    # request above a small limit would make the pod invalid)
    assert resources == {"requests": {"cpu": "2"}, "limits": {"memory": "64Mi"}}
    gpu = spec(serving={"gpu": {"count": 1}})
    resources = container(build_serving_deployment(gpu, OWNER, "1", ENDPOINT, CONFIG))["resources"]
    assert resources["requests"] == {"cpu": "100m", "memory": "256Mi"}
    assert resources["limits"] == {"nvidia.com/gpu": 1}


SHADOWED = spec(
    serving={"runtime": "batched", "replicas": 4},
    rollout={"strategy": "Shadow", "shadow": {"percent": 25}},
)
MIRROR_ENV = {
    "name": "MLFLOW_OPERATOR_SERVE_MIRROR_CONFIG",
    "value": "/etc/mlflow-operator/mirror/mirror.json",
}


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(key) == value for key, value in selector.items())


def test_a_shadows_pods_are_a_component_the_serving_service_never_selects() -> None:
    dep = build_serving_deployment(SHADOWED, OWNER, "2", ENDPOINT, CONFIG, shadow_replicas=1)
    assert dep["metadata"]["name"] == shadow_name("fraud") == "fraud-shadow"
    assert dep["spec"]["replicas"] == 1
    assert dep["spec"]["selector"]["matchLabels"] == {
        "mlflowops.dev/modeldeployment": "fraud",
        "app.kubernetes.io/component": "shadow",
        "mlflowops.dev/track": "shadow",
    }
    labels = dep["spec"]["template"]["metadata"]["labels"]
    assert labels["app.kubernetes.io/component"] == "shadow"
    assert labels["mlflowops.dev/model-version"] == "2"
    assert selects(dep["spec"]["selector"]["matchLabels"], labels)
    assert dep["metadata"]["labels"]["app.kubernetes.io/component"] == "shadow"
    assert dep["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "mlflow-operator"
    assert dep["metadata"]["ownerReferences"][0]["uid"] == "uid-1"
    cmd = container(dep)["command"]
    assert cmd[cmd.index("--model-uri") + 1] == "models:/fraud-model/2"
    # neither the serving Service, its disruption budget nor the serving Deployment take them
    assert not selects(build_serving_service(SHADOWED, OWNER)["spec"]["selector"], labels)
    serving = build_serving_deployment(SHADOWED, OWNER, "1", ENDPOINT, CONFIG)
    assert not selects(serving["spec"]["selector"]["matchLabels"], labels)
    pdb = build_serving_pdb(SHADOWED, OWNER)
    assert pdb is not None
    assert not selects(pdb["spec"]["selector"]["matchLabels"], labels)
    # nor does the shadow's selector take the serving pods
    serving_labels = serving["spec"]["template"]["metadata"]["labels"]
    assert not selects(dep["spec"]["selector"]["matchLabels"], serving_labels)
    # a shadow's pods copy nothing on: they have no mirror of their own
    assert MIRROR_ENV not in container(dep)["env"]
    assert all(v["name"] != "mirror" for v in dep["spec"]["template"]["spec"]["volumes"])


def test_the_shadows_service_selects_its_pods_only() -> None:
    dep = build_serving_deployment(SHADOWED, OWNER, "2", ENDPOINT, CONFIG, shadow_replicas=1)
    svc = build_shadow_service(OWNER)
    assert (svc["kind"], svc["metadata"]["name"], svc["metadata"]["namespace"]) == (
        "Service", "fraud-shadow", "ml-prod",
    )  # fmt: skip
    assert svc["spec"]["type"] == "ClusterIP"
    assert svc["spec"]["selector"] == {
        "mlflowops.dev/modeldeployment": "fraud",
        "app.kubernetes.io/component": "shadow",
    }
    assert selects(svc["spec"]["selector"], dep["spec"]["template"]["metadata"]["labels"])
    serving = build_serving_deployment(SHADOWED, OWNER, "1", ENDPOINT, CONFIG)
    assert not selects(svc["spec"]["selector"], serving["spec"]["template"]["metadata"]["labels"])
    canary = build_serving_deployment(SHADOWED, OWNER, "2", ENDPOINT, CONFIG, canary_replicas=1)
    assert not selects(svc["spec"]["selector"], canary["spec"]["template"]["metadata"]["labels"])
    (port,) = svc["spec"]["ports"]
    assert (port["port"], port["targetPort"]) == (8080, "http")
    assert container(dep)["ports"][0] == {"name": "http", "containerPort": 8080, "protocol": "TCP"}
    assert svc["metadata"]["ownerReferences"][0]["uid"] == "uid-1"


def test_the_mirror_config_points_the_serving_pods_at_the_shadows_service() -> None:
    config = build_mirror_config(OWNER, "2", 25)
    assert (config["apiVersion"], config["kind"]) == ("v1", "ConfigMap")
    assert (config["metadata"]["name"], config["metadata"]["namespace"]) == (
        "fraud-shadow", "ml-prod",
    )  # fmt: skip
    assert config["metadata"]["ownerReferences"][0]["uid"] == "uid-1"
    assert list(config["data"]) == ["mirror.json"]
    assert json.loads(config["data"]["mirror.json"]) == {
        "url": "http://fraud-shadow.ml-prod.svc:8080/invocations",
        "percent": 25,
        "version": "2",
    }
    svc = build_shadow_service(OWNER)
    port = svc["spec"]["ports"][0]["port"]
    assert json.loads(config["data"]["mirror.json"])["url"].startswith(
        f"http://{svc['metadata']['name']}.{svc['metadata']['namespace']}.svc:{port}/"
    )


def test_the_serving_pods_of_strategy_shadow_mount_the_mirror_config_when_there_is_one() -> None:
    dep = build_serving_deployment(SHADOWED, OWNER, "1", ENDPOINT, CONFIG)
    pod = dep["spec"]["template"]["spec"]
    # optional: between shadows the ConfigMap does not exist, and the pods start all the same
    assert {"name": "mirror", "configMap": {"name": "fraud-shadow", "optional": True}} in pod[
        "volumes"
    ]
    mount = {"name": "mirror", "mountPath": "/etc/mlflow-operator/mirror", "readOnly": True}
    assert mount in container(dep)["volumeMounts"]
    assert MIRROR_ENV in container(dep)["env"]
    names = [e["name"] for e in container(dep)["env"]]
    assert len(names) == len(set(names))
    # the file the runtime reads is the ConfigMap's key in the mounted folder
    (key,) = build_mirror_config(OWNER, "2", 25)["data"]
    assert MIRROR_ENV["value"] == f"{mount['mountPath']}/{key}"


def test_the_serving_pods_of_other_strategies_have_no_mirror() -> None:
    canary = spec(
        serving={"runtime": "batched", "replicas": 2},
        rollout={"strategy": "Canary", "canary": {"steps": [{"weight": 10}]}},
    )
    for s in (spec(), spec(rollout={"strategy": "RollingUpdate"}), canary):
        built = [build_serving_deployment(s, OWNER, "1", ENDPOINT, CONFIG)]
        if s.rollout.strategy == "Canary":
            built.append(
                build_serving_deployment(s, OWNER, "2", ENDPOINT, CONFIG, canary_replicas=1)
            )
        for dep in built:
            c = container(dep)
            assert c["volumeMounts"] == [{"name": "tmp", "mountPath": "/tmp"}]
            assert dep["spec"]["template"]["spec"]["volumes"] == [{"name": "tmp", "emptyDir": {}}]
            assert all(e["name"] != MIRROR_ENV["name"] for e in c["env"])


# -- canary.httpRouteRef -----------------------------------------------------------------------

TRACK = "mlflowops.dev/track"
COMPONENT = "app.kubernetes.io/component"
CANARY_SELECTOR = {"mlflowops.dev/modeldeployment": "fraud", TRACK: "canary"}


def canary_spec(route: bool, **overrides: Any) -> ModelDeploymentSpec:
    canary: dict[str, Any] = {"steps": [{"weight": 10}]}
    if route:
        canary["httpRouteRef"] = {"name": "fraud-route"}
    return spec(
        serving={"runtime": "batched", "replicas": 3},
        rollout={"strategy": "Canary", "canary": canary},
        **overrides,
    )


def pod_labels(deployment: dict[str, Any]) -> dict[str, str]:
    labels: dict[str, str] = deployment["spec"]["template"]["metadata"]["labels"]
    return labels


def test_an_http_route_changes_nothing_of_the_serving_deployment() -> None:
    """No track of its own: Service `<name>` selects the serving pods, routed or not, and a
    route the operator leaves alone at 100 on `<name>` always has endpoints."""
    routed = build_serving_deployment(canary_spec(True), OWNER, "1", ENDPOINT, CONFIG)
    plain = build_serving_deployment(canary_spec(False), OWNER, "1", ENDPOINT, CONFIG)
    # a Deployment's selector is immutable: turning httpRouteRef on or off must not change it
    assert routed["spec"]["selector"] == plain["spec"]["selector"]
    assert routed["metadata"]["labels"] == plain["metadata"]["labels"]
    assert pod_labels(routed) == pod_labels(plain)
    for dep in (routed, plain):
        assert TRACK not in pod_labels(dep)
        assert TRACK not in dep["spec"]["selector"]["matchLabels"]
        assert pod_labels(dep)[COMPONENT] == "serving"
        assert selects(dep["spec"]["selector"]["matchLabels"], pod_labels(dep))
        assert selects(build_serving_service(canary_spec(True), OWNER)["spec"]["selector"],
                       pod_labels(dep))  # fmt: skip
    for other in (spec(), spec(rollout={"strategy": "RollingUpdate"})):
        dep = build_serving_deployment(other, OWNER, "1", ENDPOINT, CONFIG)
        assert TRACK not in pod_labels(dep)


def test_a_routed_canarys_pods_are_outside_the_serving_service() -> None:
    """The route gives the canary its share through `<name>-canary`; were its pods in `<name>`
    too, they would also take a share of the rest, by pod count."""
    md = canary_spec(True)
    canary = build_serving_deployment(md, OWNER, "2", ENDPOINT, CONFIG, canary_replicas=1)
    assert canary["metadata"]["name"] == "fraud-canary"
    labels = pod_labels(canary)
    assert labels[COMPONENT] == "canary"
    assert labels[TRACK] == "canary"
    assert labels["mlflowops.dev/model-version"] == "2"
    assert selects(canary["spec"]["selector"]["matchLabels"], labels)
    assert not selects(build_serving_service(md, OWNER)["spec"]["selector"], labels)
    # nor does the serving Deployment's selector take them (it would count them as its own)
    serving = build_serving_deployment(md, OWNER, "1", ENDPOINT, CONFIG)
    assert not selects(serving["spec"]["selector"]["matchLabels"], labels)
    # nor the shadow's Service
    assert not selects(build_shadow_service(OWNER)["spec"]["selector"], labels)


def test_a_canary_without_a_route_is_in_the_serving_service() -> None:
    """Split by pod count: the serving Service sends to the canary's pods with the others'."""
    md = canary_spec(False)
    canary = build_serving_deployment(md, OWNER, "2", ENDPOINT, CONFIG, canary_replicas=1)
    labels = pod_labels(canary)
    assert labels[COMPONENT] == "serving"
    assert labels[TRACK] == "canary"
    assert selects(build_serving_service(md, OWNER)["spec"]["selector"], labels)
    assert selects(canary["spec"]["selector"]["matchLabels"], labels)
    # the serving Deployment's selector does not take them: each Deployment owns its pods
    serving = build_serving_deployment(md, OWNER, "1", ENDPOINT, CONFIG)
    assert not selects(canary["spec"]["selector"]["matchLabels"], pod_labels(serving))


def test_the_canary_deployments_selector_is_the_same_routed_or_not() -> None:
    """Immutable: httpRouteRef set or removed mid-canary only rolls the canary's pods."""
    routed = build_serving_deployment(
        canary_spec(True), OWNER, "2", ENDPOINT, CONFIG, canary_replicas=1
    )
    plain = build_serving_deployment(
        canary_spec(False), OWNER, "2", ENDPOINT, CONFIG, canary_replicas=1
    )
    assert routed["spec"]["selector"] == plain["spec"]["selector"]
    assert routed["spec"]["selector"]["matchLabels"] == CANARY_SELECTOR
    for dep in (routed, plain):
        assert selects(dep["spec"]["selector"]["matchLabels"], pod_labels(dep))
    # it takes neither the serving pods nor a shadow's
    serving = build_serving_deployment(canary_spec(True), OWNER, "1", ENDPOINT, CONFIG)
    shadow = build_serving_deployment(SHADOWED, OWNER, "2", ENDPOINT, CONFIG, shadow_replicas=1)
    for other in (serving, shadow):
        assert not selects(routed["spec"]["selector"]["matchLabels"], pod_labels(other))


@pytest.mark.parametrize("route", [True, False], ids=["routed", "by-pod-count"])
def test_the_canary_service_selects_the_canarys_pods_only(route: bool) -> None:
    md = canary_spec(route, service={"type": "LoadBalancer", "port": 8000})
    svc = build_canary_service(md, OWNER)
    serving = build_serving_service(md, OWNER)
    assert (svc["apiVersion"], svc["kind"]) == ("v1", "Service")
    assert (svc["metadata"]["name"], svc["metadata"]["namespace"]) == ("fraud-canary", "ml-prod")
    assert svc["metadata"]["ownerReferences"][0]["uid"] == "uid-1"
    assert svc["spec"]["type"] == "ClusterIP"  # a backend of the route, never exposed itself
    assert svc["spec"]["ports"] == serving["spec"]["ports"]
    assert svc["spec"]["ports"][0]["port"] == 8000
    assert svc["spec"]["selector"] == CANARY_SELECTOR
    stable = build_serving_deployment(md, OWNER, "1", ENDPOINT, CONFIG)
    canary = build_serving_deployment(md, OWNER, "2", ENDPOINT, CONFIG, canary_replicas=1)
    shadow = build_serving_deployment(SHADOWED, OWNER, "2", ENDPOINT, CONFIG, shadow_replicas=1)
    selected = {
        name: selects(svc["spec"]["selector"], pod_labels(dep))
        for name, dep in (("stable", stable), ("canary", canary), ("shadow", shadow))
    }
    assert selected == {"stable": False, "canary": True, "shadow": False}
    # and the serving Service selects the stable pods, the canary's only without a route
    assert selects(serving["spec"]["selector"], pod_labels(stable))
    assert selects(serving["spec"]["selector"], pod_labels(canary)) is not route


def test_the_serving_network_policy_opens_the_port_of_a_routed_canarys_pods() -> None:
    canary = build_serving_deployment(
        canary_spec(True), OWNER, "2", ENDPOINT, CONFIG, canary_replicas=1
    )
    policy = build_serving_network_policy(OWNER)
    assert selects(policy["spec"]["podSelector"]["matchLabels"], pod_labels(canary))


def env_of(c: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in c["env"]}


def test_uv_pods_are_told_where_their_built_environment_is_kept() -> None:
    uv = spec(serving={"envManager": "uv"})
    env = env_of(container(build_serving_deployment(uv, OWNER, "8", ENDPOINT, CONFIG)))
    assert env["MLFLOW_OPERATOR_ENV_EXPERIMENT"] == "mlflow-operator/ml-prod/fraud"
    assert env["MLFLOW_OPERATOR_SERVING_IMAGE"] == CONFIG.serving_image_cpu
    assert env["MLFLOW_ENV_ROOT"] == "/tmp/mlflow-envs"
    assert "--env-manager" in (
        cmd := container(build_serving_deployment(uv, OWNER, "8", ENDPOINT, CONFIG))["command"]
    )
    assert cmd[cmd.index("--env-manager") + 1] == "uv"
    local = env_of(container(build_serving_deployment(spec(), OWNER, "8", ENDPOINT, CONFIG)))
    assert "MLFLOW_OPERATOR_ENV_EXPERIMENT" not in local


def test_the_environment_job_builds_one_version_with_the_pods_credentials_and_no_gpu() -> None:
    uv = spec(
        serving={
            "envManager": "uv",
            "gpu": {"count": 1},
            "env": [{"name": "UV_INDEX_URL", "value": "http://pypi.internal/simple"}],
            "podTemplate": {"nodeSelector": {"pool": "ml"}},
        }
    )
    job = build_environment_job(uv, OWNER, "8", ENDPOINT, CONFIG)
    assert job["kind"] == "Job"
    assert job["metadata"]["name"].startswith("fraud-env-8-")
    assert job["metadata"]["ownerReferences"][0]["uid"] == "uid-1"
    pod = job["spec"]["template"]["spec"]
    assert pod["restartPolicy"] == "Never"
    assert pod["nodeSelector"] == {"pool": "ml"}
    c = pod["containers"][0]
    assert c["image"] == CONFIG.serving_image_gpu  # the image the pods will run
    assert c["command"] == [
        "mlflow-operator-serve-env", "build", "--model-uri", "models:/fraud-model/8",
        "--experiment", "mlflow-operator/ml-prod/fraud", "--image", CONFIG.serving_image_gpu,
    ]  # fmt: skip
    env = env_of(c)
    assert env["UV_INDEX_URL"] == "http://pypi.internal/simple"  # the user's index
    assert env["MLFLOW_TRACKING_USERNAME"]["secretKeyRef"]["name"] == "mlflow-creds"
    assert "operator-creds" not in json.dumps(job)  # it runs the model's code
    assert "nvidia.com/gpu" not in json.dumps(c["resources"])  # a GPU stays with the pods
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
    assert c["terminationMessagePolicy"] == "FallbackToLogsOnError"
    assert job["spec"]["activeDeadlineSeconds"] > 0
