"""The Helm chart, rendered by the real helm CLI: lint, schema validation of every object,
values.schema.json, RBAC shape, security defaults, and agreement with the operator's code.

No cluster needed; the install tests are in tests/e2e/test_install.py.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from mlflow_operator import metrics
from mlflow_operator.builders.modeldeployment import serving_labels
from mlflow_operator.config import ENV_PREFIX, OperatorConfig
from mlflow_operator.core.naming import LABEL_MODEL_DEPLOYMENT
from mlflow_operator_serve.metrics import ServingMetrics
from tests.cluster.build import KUBERNETES_VERSION as CLUSTER_VERSION
from tests.helm import dashboard, manifests, valuesdoc
from tests.helm.chart import (
    CHART,
    CHART_CRDS,
    CRDS,
    by_kind,
    command_blocks,
    helm,
    notes,
    one,
    operator_service,
    render,
)
from tests.images.build import publish_module
from tests.unit.manifests import schema_errors

SCENARIOS = sorted((CHART / "ci").glob("*-values.yaml"))
KUBERNETES_VERSION = "1.37.0"  # the test cluster's minor; kubernetes-validate bundles it
OUR_GROUP = "mlflowops.dev"
MONITORING_GROUP = "monitoring.coreos.com"


def scenario_values(path: Path) -> dict[str, Any]:
    return yaml.safe_load(path.read_text()) or {}


def render_scenario(path: Path) -> list[dict[str, Any]]:
    return render(scenario_values(path), include_crds=True)


# -- the chart's CRDs are the generated ones ------------------------------------------------


def test_chart_crds_are_the_generated_crds() -> None:
    generated = {p.name: p.read_bytes() for p in CRDS.glob("*.yaml")}
    in_chart = {p.name: p.read_bytes() for p in CHART_CRDS.glob("*.yaml")}
    assert generated, "crds/ is empty"
    assert in_chart == generated, (
        "charts/mlflow-operator/crds/ differs from crds/: run `python -m tests.helm.manifests`"
    )


def test_plain_manifests_are_generated_from_the_chart() -> None:
    assert manifests.main(["--check"]) == 0, "run `python -m tests.helm.manifests`"


# -- lint and schema validation of every rendered object ------------------------------------


@pytest.mark.parametrize("values", SCENARIOS, ids=lambda p: p.stem)
def test_helm_lint_is_clean(values: Path) -> None:
    result = helm("lint", str(CHART), "--strict", "--values", str(values))
    assert "[WARNING]" not in result.stdout, result.stdout
    assert "[ERROR]" not in result.stdout, result.stdout


@pytest.mark.parametrize("values", SCENARIOS, ids=lambda p: p.stem)
def test_every_rendered_object_passes_its_schema(values: Path) -> None:
    objects = render_scenario(values)
    assert objects
    for obj in objects:
        group = obj["apiVersion"].split("/")[0]
        name = f"{obj['kind']}/{obj['metadata']['name']}"
        if group == OUR_GROUP:
            assert schema_errors(obj) == [], name
        elif group == MONITORING_GROUP:
            _check_monitoring_object(obj, objects)
        else:
            try:
                kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
            except kubernetes_validate.ValidationError as exc:
                pytest.fail(f"{name}: {exc.message} at {'.'.join(map(str, exc.path))}")


def _check_monitoring_object(obj: dict[str, Any], objects: list[dict[str, Any]]) -> None:
    """No schema is bundled for the Prometheus Operator's kinds: check what they refer to."""
    if obj["kind"] == "ServiceMonitor":
        service = operator_service(objects)
        ports = {p["name"] for p in service["spec"]["ports"]}
        assert {e["port"] for e in obj["spec"]["endpoints"]} <= ports
        selector = obj["spec"]["selector"]["matchLabels"]
        assert selector.items() <= service["metadata"]["labels"].items()
    elif obj["kind"] == "PodMonitor":
        # what the operator puts on serving pods: the labels it selects, the port it scrapes
        pod_labels = serving_labels("fraud")
        assert obj["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
        assert [e["port"] for e in obj["spec"]["podMetricsEndpoints"]] == ["http"]
        label = "__meta_kubernetes_pod_label_" + re.sub(r"[^a-z0-9]", "_", LABEL_MODEL_DEPLOYMENT)
        (relabel,) = obj["spec"]["podMetricsEndpoints"][0]["relabelings"]
        assert relabel["sourceLabels"] == [label]
    elif obj["kind"] == "PrometheusRule":
        for rule in obj["spec"]["groups"][0]["rules"]:
            assert set(rule) <= {"alert", "expr", "for", "labels", "annotations"}, rule
    else:
        pytest.fail(f"unexpected {obj['kind']}")


# -- values.schema.json ---------------------------------------------------------------------


def test_schema_refuses_a_value_of_the_wrong_type() -> None:
    result = helm("template", "x", str(CHART), "--set-json", 'metrics={"port":"8080"}', check=False)
    assert result.returncode != 0
    assert "/metrics/port" in result.stderr
    assert "want integer" in result.stderr


def test_schema_refuses_an_unknown_top_level_key() -> None:
    result = helm("template", "x", str(CHART), "--set", "replicaCount=2", check=False)
    assert result.returncode != 0
    assert "additional properties 'replicaCount' not allowed" in result.stderr


def test_schema_refuses_an_unknown_nested_key() -> None:
    result = helm("template", "x", str(CHART), "--set", "image.tags=1.0", check=False)
    assert result.returncode != 0
    assert "'tags' not allowed" in result.stderr


def _leaf_paths(values: Any, prefix: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    if isinstance(values, dict) and values:
        for key, value in values.items():
            yield from _leaf_paths(value, (*prefix, key))
    else:
        yield prefix


def _schema_at(schema: dict[str, Any], path: tuple[str, ...]) -> dict[str, Any] | None:
    node = schema
    for key in path:
        properties = node.get("properties")
        if properties is None:  # a free-form object (resources, mlflowServer.spec)
            return node if node.get("type") == "object" else None
        if key not in properties:
            return None
        node = properties[key]
    return node


def test_schema_covers_and_accepts_every_default_value() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    jsonschema.Draft7Validator.check_schema(schema)
    assert list(jsonschema.Draft7Validator(schema).iter_errors(values)) == []
    uncovered = [".".join(p) for p in _leaf_paths(values) if _schema_at(schema, p) is None]
    assert uncovered == []
    undescribed = [
        ".".join(p)
        for p in _leaf_paths(values)
        if not (_schema_at(schema, p) or {}).get("description")
    ]
    assert undescribed == []


def test_every_value_has_a_comment() -> None:
    """A comment right above every value: values.yaml is the chart's reference."""
    schema = json.loads((CHART / "values.schema.json").read_text())
    lines = (CHART / "values.yaml").read_text().splitlines()
    stack: list[tuple[int, str]] = []  # (indent, key) of the sections around a line
    missing = []
    for index, line in enumerate(lines):
        match = re.match(r"^( *)([A-Za-z]\w*):(.*)$", line)
        if not match:
            continue
        indent, key, rest = len(match[1]), match[2], match[3].strip()
        while stack and stack[-1][0] >= indent:
            stack.pop()
        parents = tuple(k for _, k in stack)
        stack.append((indent, key))
        parent_schema = _schema_at(schema, parents) if parents else schema
        if parent_schema is not None and "properties" not in parent_schema:
            continue  # inside a value given as a block (resources, mlflowServer.spec)
        if rest and not lines[index - 1].strip().startswith("#"):
            missing.append(".".join((*parents, key)))
    assert missing == []


# -- what the chart renders -----------------------------------------------------------------


def test_operator_deployment_is_locked_down() -> None:
    deployment = one(render(), "Deployment")
    spec = deployment["spec"]
    assert spec["replicas"] == 2  # one acts (leader election), one stands by
    pod = spec["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    (container,) = pod["containers"]
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["privileged"] is False
    assert security["capabilities"] == {"drop": ["ALL"]}
    for probe in ("startupProbe", "livenessProbe"):
        assert container[probe]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "health"}
    assert container["resources"]["requests"]
    assert container["resources"]["limits"]["memory"]
    assert container["image"] == "ghcr.io/mlflow-operator/mlflow-operator:0.1.0"


def test_two_replicas_elect_a_leader_behind_a_pdb_and_the_service_reaches_only_it() -> None:
    objects = render(namespace="ops")
    deployment = one(objects, "Deployment")
    assert deployment["spec"]["replicas"] == 2
    assert deployment["spec"]["strategy"]["type"] == "RollingUpdate"
    env = {e["name"]: e for e in operator_container(objects)["env"]}
    assert env["MLFLOW_OPERATOR_LEADER_ELECTION"]["value"] == "true"
    assert env["MLFLOW_OPERATOR_LEADER_ELECTION_NAMESPACE"]["value"] == "ops"
    lease = env["MLFLOW_OPERATOR_LEADER_ELECTION_LEASE"]["value"]
    assert lease == deployment["metadata"]["name"]
    assert env["POD_NAME"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    config = OperatorConfig(
        leader_election=True,
        leader_election_namespace="ops",
        lease_duration_seconds=int(env["MLFLOW_OPERATOR_LEASE_DURATION_SECONDS"]["value"]),
        lease_renew_deadline_seconds=float(
            env["MLFLOW_OPERATOR_LEASE_RENEW_DEADLINE_SECONDS"]["value"]
        ),
        lease_retry_seconds=float(env["MLFLOW_OPERATOR_LEASE_RETRY_SECONDS"]["value"]),
    )  # the chart's timings pass the operator's own check
    assert config.lease_duration_seconds == 10
    pdb = one(objects, "PodDisruptionBudget")
    assert pdb["spec"]["minAvailable"] == 1
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert pdb["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    assert operator_service(objects)["spec"]["selector"]["mlflowops.dev/leader"] == "true"
    (election,) = [
        r for r in by_kind(objects, "Role") if r["metadata"]["name"].endswith("-election")
    ]
    assert election["metadata"]["namespace"] == "ops"
    assert {"leases", "pods"} == {res for rule in election["rules"] for res in rule["resources"]}
    assert any("leases" in rule["resources"] for rule in _rules(objects))  # claims

    single = render({"replicas": 1, "leaderElection": {"enabled": False}})
    deployment = one(single, "Deployment")
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    assert not by_kind(single, "PodDisruptionBudget")
    assert "mlflowops.dev/leader" not in operator_service(single)["spec"]["selector"]
    assert all("leases" not in rule["resources"] for rule in _rules(single))
    refused = helm(
        "template", "x", str(CHART), "--set", "leaderElection.enabled=false", check=False
    )
    assert refused.returncode != 0
    assert "replicas: 2 needs leaderElection.enabled" in refused.stderr


def test_one_value_moves_every_image_to_another_registry() -> None:
    """imageRegistry (and imageTag) name the operator image and, through the operator's
    settings, the images it creates, as `make images REGISTRY=...` names them."""
    publish = publish_module()
    registry = "registry.example.com/ml"
    (container,) = one(render({"imageRegistry": registry, "imageTag": "t1"}), "Deployment")["spec"][
        "template"
    ]["spec"]["containers"]
    (operator_image,) = [i for i in publish.IMAGES if i.target == "operator"]
    assert container["image"] == operator_image.reference(registry, "t1")
    env = {e["name"]: e.get("value") for e in container["env"]}
    config = OperatorConfig(
        image_registry=env["MLFLOW_OPERATOR_IMAGE_REGISTRY"],
        image_tag=env["MLFLOW_OPERATOR_IMAGE_TAG"],
    )
    by_target = {i.target: i.reference(registry, "t1") for i in publish.IMAGES}
    assert config.serving_image_cpu == by_target["serving-cpu"]
    assert config.serving_image_gpu == by_target["serving-gpu"]
    assert config.tracking_server_image == by_target["mlflow-server"]
    assert config.minio_image == by_target["minio"]
    default_env = {
        e["name"]: e.get("value")
        for e in one(render(), "Deployment")["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    assert default_env["MLFLOW_OPERATOR_IMAGE_TAG"] == "0.1.0"  # appVersion


def test_helm_test_asks_the_operator_through_its_service() -> None:
    objects = render()
    pod = one(objects, "Pod")
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    (container,) = pod["spec"]["containers"]
    assert (
        container["image"]
        == one(objects, "Deployment")["spec"]["template"]["spec"]["containers"][0]["image"]
    )  # nothing else to pull
    service = operator_service(objects)
    port = {p["name"]: p["port"] for p in service["spec"]["ports"]}["metrics"]
    url = f"http://{service['metadata']['name']}.mlflow-operator.svc:{port}/metrics"
    assert url in container["args"][0]
    assert not by_kind(render({"metrics": {"enabled": False}}), "Pod")


def test_deployment_environment_names_only_real_settings() -> None:
    """Every MLFLOW_OPERATOR_* variable the chart sets is a setting of config.py."""
    values = {
        "webhook": {"existingSecret": "hook"},
        "operator": {
            "images": dict.fromkeys(("servingCpu", "servingGpu", "minio"), "img:1"),
            "prometheusUrl": "http://prometheus:9090",
        },
    }
    (container,) = one(render(values), "Deployment")["spec"]["template"]["spec"]["containers"]
    names = [e["name"] for e in container["env"] if e["name"].startswith(ENV_PREFIX)]
    settings = {f"{ENV_PREFIX}{field.upper()}" for field in OperatorConfig.model_fields}
    assert set(names) <= settings, set(names) - settings
    assert "MLFLOW_OPERATOR_WEBHOOK_SECRET_FILE" in names
    assert "MLFLOW_OPERATOR_SERVING_IMAGE_CPU" in names
    assert "MLFLOW_OPERATOR_PROMETHEUS_URL" in names
    assert "MLFLOW_OPERATOR_POSTGRES_IMAGE" not in names  # empty: the operator's default


def test_a_prometheus_url_sets_canary_analysis_from_prometheus_and_empty_sets_nothing() -> None:
    def operator_env(values: dict[str, Any]) -> dict[str, Any]:
        (container,) = one(render(values), "Deployment")["spec"]["template"]["spec"]["containers"]
        return {e["name"]: e.get("value") for e in container["env"]}

    url = "http://prometheus-operated.monitoring.svc:9090"
    assert operator_env({"operator": {"prometheusUrl": url}})["MLFLOW_OPERATOR_PROMETHEUS_URL"] == (
        url
    )
    # unset, not "": the operator's default (the pods' /metrics), and no empty variable that a
    # URL from a Secret in extraEnv would have to follow
    assert "MLFLOW_OPERATOR_PROMETHEUS_URL" not in operator_env({})
    assert "MLFLOW_OPERATOR_PROMETHEUS_URL" not in operator_env({"operator": {"prometheusUrl": ""}})
    refused = helm(
        "template", "x", str(CHART), "--set", "operator.prometheusUrl=prometheus:9090", check=False
    )
    assert refused.returncode != 0
    assert "/operator/prometheusUrl" in refused.stderr


def test_service_exposes_metrics_and_webhook_ports() -> None:
    service = operator_service(render())
    ports = {p["name"]: p["port"] for p in service["spec"]["ports"]}
    assert ports == {"metrics": 8080, "webhook": 8443}
    neither = {"metrics": {"enabled": False}, "webhook": {"enabled": False}}
    assert not by_kind(render(neither), "Service")


def test_the_model_cache_runs_on_every_node_restricted_and_the_operator_is_told_where() -> None:
    objects = render(
        {"watchNamespaces": ["ml-prod"], "modelCache": {"enabled": True}}, namespace="ops"
    )
    daemonset = one(objects, "DaemonSet")
    pod = daemonset["spec"]["template"]
    (container,) = pod["spec"]["containers"]
    assert container["args"][0] == "model-cache"
    assert container["image"] == operator_container(objects)["image"]  # nothing else to pull
    assert pod["spec"]["tolerations"] == [{"operator": "Exists"}]  # GPU nodes included
    assert pod["spec"]["automountServiceAccountToken"] is False  # it never calls the API
    # PodSecurity restricted by default: the cache lives in an emptyDir on the node's disk
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert pod["spec"]["securityContext"]["runAsNonRoot"] is True
    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    assert "emptyDir" in volumes["models"]
    assert not any("hostPath" in v for v in volumes.values())

    (service,) = [s for s in by_kind(objects, "Service") if s not in [operator_service(objects)]]
    assert service["spec"]["trafficDistribution"] == "PreferSameNode"
    assert service["spec"]["selector"].items() <= pod["metadata"]["labels"].items()
    assert not pod["metadata"]["labels"].items() >= (
        one(objects, "Deployment")["spec"]["selector"]["matchLabels"].items()
    )  # the operator's own Deployment and Service never select a cache pod
    env = {e["name"]: e.get("value") for e in operator_container(objects)["env"]}
    port = service["spec"]["ports"][0]["port"]
    name = service["metadata"]["name"]
    assert env["MLFLOW_OPERATOR_MODEL_CACHE_URL"] == f"http://{name}.ops.svc:{port}"
    assert env["MLFLOW_OPERATOR_MODEL_CACHE_NAMESPACE"] == "ops"
    selector = dict(p.split("=") for p in env["MLFLOW_OPERATOR_MODEL_CACHE_SELECTOR"].split(","))
    assert selector == daemonset["spec"]["selector"]["matchLabels"]
    # the operator lists the cache pods in its own namespace, which it does not watch
    (role,) = [r for r in by_kind(objects, "Role") if r["metadata"]["name"].endswith("-cache")]
    assert role["metadata"]["namespace"] == "ops"
    assert role["rules"] == [{"apiGroups": [""], "resources": ["pods"], "verbs": ["list"]}]

    on_host = one(
        render({"modelCache": {"enabled": True, "hostPath": "/var/lib/mlflow-models"}}),
        "DaemonSet",
    )
    volumes = {v["name"]: v for v in on_host["spec"]["template"]["spec"]["volumes"]}
    assert volumes["models"]["hostPath"]["path"] == "/var/lib/mlflow-models"

    off = render()  # the default
    assert not by_kind(off, "DaemonSet")
    env = {e["name"] for e in operator_container(off)["env"]}
    assert "MLFLOW_OPERATOR_MODEL_CACHE_URL" not in env


def operator_container(objects: list[dict[str, Any]]) -> dict[str, Any]:
    (container,) = one(objects, "Deployment")["spec"]["template"]["spec"]["containers"]
    return dict(container)


def _rules(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [rule for obj in by_kind(objects, "ClusterRole") for rule in obj["rules"]]


@pytest.mark.parametrize("values", SCENARIOS, ids=lambda p: p.stem)
def test_rbac_has_no_wildcards_and_cannot_enumerate_secrets(values: Path) -> None:
    objects = render_scenario(values)
    for rule in _rules(objects):
        for key in ("apiGroups", "resources", "verbs"):
            assert "*" not in rule[key], rule
        if "secrets" in rule["resources"]:
            assert set(rule["verbs"]) <= {"get", "create", "delete"}, rule  # never list, change
    for binding in by_kind(objects, "ClusterRoleBinding") + by_kind(objects, "RoleBinding"):
        assert binding["roleRef"]["name"] not in {"cluster-admin", "admin", "edit"}


def test_namespaced_mode_binds_the_workload_role_only_in_watched_namespaces() -> None:
    objects = render({"watchNamespaces": ["ml-prod", "ml-staging"]}, namespace="ops")
    role_bindings = [b for b in by_kind(objects, "RoleBinding") if b["roleRef"]["kind"] != "Role"]
    assert sorted(b["metadata"]["namespace"] for b in role_bindings) == ["ml-prod", "ml-staging"]
    workload_role = by_kind(objects, "ClusterRole")[0]["metadata"]["name"]
    cluster_bindings = by_kind(objects, "ClusterRoleBinding")
    assert all(b["roleRef"]["name"] != workload_role for b in cluster_bindings)
    (discovery,) = cluster_bindings
    discovery_rules = next(
        r["rules"]
        for r in by_kind(objects, "ClusterRole")
        if r["metadata"]["name"] == discovery["roleRef"]["name"]
    )
    assert {res for rule in discovery_rules for res in rule["resources"]} == {
        "customresourcedefinitions",
        "namespaces",
    }
    assert all(set(rule["verbs"]) == {"list", "watch"} for rule in discovery_rules)
    (container,) = one(objects, "Deployment")["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["MLFLOW_OPERATOR_NAMESPACES"] == "ml-prod,ml-staging"


def test_an_mlflowserver_outside_the_watched_namespaces_is_refused() -> None:
    result = helm(
        "template",
        "x",
        str(CHART),
        "--namespace",
        "ops",
        "--set",
        "mlflowServer.enabled=true",
        "--set",
        "watchNamespaces={ml-prod}",
        check=False,
    )
    assert result.returncode != 0
    assert 'release namespace "ops"' in result.stderr


def test_mlflowserver_is_kept_on_uninstall() -> None:
    server = one(render({"mlflowServer": {"enabled": True}}), "MLflowServer")
    assert server["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    assert server["spec"]["backendStore"]["postgres"]["managed"]["storage"] == "10Gi"


def operator_metric_names() -> set[str]:
    """Every series name the operator exports: its metric objects and its collectors' families
    (the per-ModelDeployment series and the registry gauges are built at scrape time)."""
    exported = {
        metric._name  # prometheus_client keeps the name without _total there
        for metric in vars(metrics).values()
        if hasattr(metric, "_name") and hasattr(metric, "_type")
    }
    exported |= {f"{name}_total" for name in exported}
    registries = metrics.RegistryCollector(lambda: [("http://mlflow:5000", True, None, ())])
    for family in [*registries.collect(), *metrics.ModelDeploymentCollector().collect()]:
        exported.add(family.name)
        if family.type == "counter":
            exported.add(f"{family.name}_total")
    return exported


def test_alerts_use_metrics_the_operator_exports() -> None:
    objects = render({"metrics": {"prometheusRule": {"enabled": True}}})
    rules = one(objects, "PrometheusRule")["spec"]["groups"][0]["rules"]
    alerts = {r["alert"] for r in rules}
    assert {
        "MLflowModelServingVersionBehindTarget",
        "MLflowModelRolloutFailed",
        "MLflowRegistryUnreachable",
    } <= alerts
    exported = operator_metric_names()
    for rule in rules:
        used = set(re.findall(r"\b(mlflow_operator_[a-z_]+)\b", rule["expr"]))
        assert used <= exported, (rule["alert"], used - exported)


def test_notes_tell_the_next_step() -> None:
    text = notes({"mlflowServer": {"enabled": True}}, namespace="ops", release="x")
    assert "kubectl -n ops wait --for=condition=Ready mlflowserver/mlflow" in text
    assert "kind: ModelDeployment" in text
    assert "serverRef: {name: mlflow}" in text
    assert "helm test x -n ops" in text


@pytest.mark.parametrize(
    "values",
    [
        {},
        {"mlflowServer": {"enabled": True}},
        {"watchNamespaces": ["ml-prod", "ml-staging"], "metrics": {"enabled": False}},
        {"webhook": {"existingSecret": "hook"}, "metrics": {"serviceMonitor": {"enabled": True}}},
    ],
    ids=["defaults", "mlflowserver", "namespaced", "monitoring"],
)
def test_notes_paste_cleanly(values: dict[str, Any]) -> None:
    """Every command of NOTES is a complete shell command as printed: no <placeholder>, no
    here-document left open, nothing bash would refuse (the quick start e2e runs them)."""
    text = notes(values)
    blocks = command_blocks(text)
    assert len(blocks) >= 2, text
    for block in blocks:
        assert not re.search(r"<[a-z][a-z -]*>", block), block
        assert not re.search(r"^\s", block.splitlines()[0]), block
        result = subprocess.run(
            ["bash", "-n"], input=block, capture_output=True, text=True, check=False
        )
        assert result.returncode == 0, (block, result.stderr)
    heredocs = [b for b in blocks if "<<" in b]
    assert heredocs, text
    for block in heredocs:
        manifest = block.split("\n", 1)[1].rsplit("EOF", 1)[0]
        document = yaml.safe_load(manifest)
        assert document["kind"] == "ModelDeployment"
        assert schema_errors(document) == []


def test_readme_values_table_is_values_yaml() -> None:
    """The chart README's table is generated from values.yaml's comments: every documented
    value has its row, with the default values.yaml has, and the check sees a stale table."""
    assert valuesdoc.is_fresh(), "run `python -m tests.helm.valuesdoc` (make manifests)"
    readme = valuesdoc.README.read_text()
    assert "| `imageRegistry` | `ghcr.io/mlflow-operator` |" in readme
    assert "| `metrics.prometheusRule.versionMismatchFor` | `15m` |" in readme
    stale = readme.replace("| `webhook.port` | `8443` |", "| `webhook.port` | `9443` |")
    assert stale != readme
    assert valuesdoc.rendered(stale) == readme


def test_dashboard_queries_use_metrics_that_exist() -> None:
    """Every series a dashboard query names is one the operator or the batched serving runtime
    exports (tests/e2e/test_dashboard.py then runs each query against a real Prometheus)."""
    exported = operator_metric_names()
    serving = ServingMetrics("m", "1")
    for family in serving.registry.collect():
        exported |= {sample.name for sample in family.samples} | {family.name}
    serving.request_done(200, 0.01)
    serving.batch_done(1, 1, 0.01)
    serving.ground_truth_labels("written", 1)
    for family in serving.registry.collect():
        exported |= {sample.name for sample in family.samples}
    queries = [q.expr for panel in dashboard.panels() for q in panel.queries]
    assert len(queries) >= 10
    for expr in queries:
        used = set(re.findall(r"\b(mlflow_(?:operator|serving)_[a-z_0-9]+)\b", expr))
        assert used, expr
        assert used <= exported, (expr, used - exported)


def test_dashboard_configmap_is_opt_in_with_the_sidecar_label() -> None:
    assert not by_kind(render(), "ConfigMap")
    configmap = one(
        render({"grafanaDashboard": {"enabled": True, "namespace": "grafana"}}), "ConfigMap"
    )
    assert configmap["metadata"]["namespace"] == "grafana"
    assert configmap["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(configmap["data"]["mlflow-operator.json"]) == dashboard.dashboard()


def test_kubernetes_floor_is_the_version_the_tests_run() -> None:
    """The chart promises no Kubernetes older than the test cluster's (docs/install.md)."""
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    minor = CLUSTER_VERSION.removeprefix("v").rsplit(".", 1)[0]
    assert chart["kubeVersion"] == f">={minor}.0-0"
    assert f"**{minor}** or newer" in (CHART.parents[1] / "docs" / "install.md").read_text()


def test_a_ca_bundle_is_mounted_where_the_operator_setting_points() -> None:
    objects = render_scenario(CHART / "ci" / "egress-values.yaml")
    bundle = next(
        c for c in by_kind(objects, "ConfigMap") if c["metadata"]["name"].endswith("-ca-bundle")
    )
    assert "BEGIN CERTIFICATE" in bundle["data"]["ca.crt"]
    pod = one(objects, "Deployment")["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    path = env[f"{ENV_PREFIX}CA_BUNDLE_FILE"]
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert path == f"{mounts['ca-bundle']}/ca.crt"
    assert volumes["ca-bundle"]["configMap"]["name"] == bundle["metadata"]["name"]
    # a bundle kept elsewhere: the user's volumes and mounts pass through as written
    assert mounts["company-cas"] == "/etc/company-cas"
    assert volumes["company-cas"]["configMap"] == {"name": "company-cas"}
    assert env["HTTPS_PROXY"] == "http://proxy.example:3128"
    # without a bundle, nothing of it is rendered
    plain = render()
    assert not [
        c for c in by_kind(plain, "ConfigMap") if c["metadata"]["name"].endswith("-ca-bundle")
    ]


def test_the_webhook_secret_and_certificate_are_mounted_files_the_operator_rereads() -> None:
    """Files, not env vars: the kubelet updates a mounted Secret in place, and the operator
    re-reads both, so rotating either needs no restart."""
    values = {"webhook": {"existingSecret": "hook", "tls": {"secretName": "hook-tls"}}}
    pod = one(render(values), "Deployment")["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    secret_file = env[f"{ENV_PREFIX}WEBHOOK_SECRET_FILE"]
    assert secret_file == f"{mounts['webhook-secret']}/secret"
    assert volumes["webhook-secret"]["secret"] == {
        "secretName": "hook",
        "items": [{"key": "webhook-secret", "path": "secret"}],
    }
    assert env[f"{ENV_PREFIX}WEBHOOK_TLS_CERT_FILE"] == f"{mounts['webhook-tls']}/tls.crt"
    assert env[f"{ENV_PREFIX}WEBHOOK_TLS_KEY_FILE"] == f"{mounts['webhook-tls']}/tls.key"
    assert volumes["webhook-tls"]["secret"] == {"secretName": "hook-tls"}
    assert not any("subPath" in m for m in container["volumeMounts"])  # subPaths never update


@pytest.mark.parametrize(
    ("values", "extra", "expected"),
    [
        ({}, (), "false"),
        ({}, ("--api-versions", "security.openshift.io/v1"), "true"),  # auto: detected
        ({"openshift": True}, (), "true"),
        ({"openshift": False}, ("--api-versions", "security.openshift.io/v1"), "false"),
    ],
    ids=["auto-elsewhere", "auto-on-openshift", "forced-on", "forced-off"],
)
def test_on_openshift_no_pod_sets_its_own_ids(
    values: dict[str, Any], extra: tuple[str, ...], expected: str
) -> None:
    """restricted-v2 assigns the uid and fsGroup from the namespace's range and refuses others:
    the operator's pod and (through the setting) every pod it creates leave them unset."""
    pod = one(render(values, extra=extra), "Deployment")["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env[f"{ENV_PREFIX}OPENSHIFT"] == expected
    ids = {"runAsUser", "runAsGroup", "fsGroup"} & set(pod["securityContext"])
    assert ids == (set() if expected == "true" else {"runAsUser", "runAsGroup", "fsGroup"})
    assert pod["securityContext"]["runAsNonRoot"] is True


def test_network_policies_are_opt_in_and_the_role_grows_with_them() -> None:
    def networkpolicy_rules(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [r for r in _rules(objects) if "networkpolicies" in r.get("resources", [])]

    plain = render()
    assert by_kind(plain, "NetworkPolicy") == []
    assert networkpolicy_rules(plain) == []
    assert {"name": f"{ENV_PREFIX}NETWORK_POLICIES", "value": "false"} in one(plain, "Deployment")[
        "spec"
    ]["template"]["spec"]["containers"][0]["env"]

    objects = render_scenario(CHART / "ci" / "egress-values.yaml")
    (rule,) = networkpolicy_rules(objects)
    assert set(rule["verbs"]) == {"get", "create", "patch"}
    policy = one(objects, "NetworkPolicy")
    deployment = one(objects, "Deployment")
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    match = policy["spec"]["podSelector"]["matchLabels"]
    assert match.items() <= pod_labels.items()  # it holds the operator's pod
    webhook_rule = next(
        r for r in policy["spec"]["ingress"] if {"protocol": "TCP", "port": "webhook"} in r["ports"]
    )
    tracking = {"app.kubernetes.io/component": "tracking-server"}
    assert webhook_rule["from"][0]["podSelector"]["matchLabels"].items() >= tracking.items()
    assert len(webhook_rule["from"]) == 2  # and the one webhookFrom names


def test_the_activator_is_reached_at_the_pods_ip_and_may_write_endpointslices_only_when_on() -> (
    None
):
    def endpointslice_rules(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [r for r in _rules(objects) if "endpointslices" in r.get("resources", [])]

    objects = render()
    container = one(objects, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e for e in container["env"]}
    assert env[f"{ENV_PREFIX}ACTIVATOR_ADDRESS"]["valueFrom"] == {
        "fieldRef": {"fieldPath": "status.podIP"}
    }
    assert env[f"{ENV_PREFIX}ACTIVATOR_PORT"]["value"] == "8082"
    assert {"name": "activator", "containerPort": 8082, "protocol": "TCP"} in container["ports"]
    (rule,) = endpointslice_rules(objects)
    assert rule["apiGroups"] == ["discovery.k8s.io"]
    assert set(rule["verbs"]) == {"get", "create", "patch", "delete"}

    off = render({"activator": {"enabled": False}})
    container = one(off, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e for e in container["env"]}
    assert env[f"{ENV_PREFIX}ACTIVATOR_PORT"]["value"] == "0"
    assert f"{ENV_PREFIX}ACTIVATOR_ADDRESS" not in env
    assert endpointslice_rules(off) == []
