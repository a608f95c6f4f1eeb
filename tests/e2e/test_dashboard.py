"""The Grafana dashboard's queries, each run against a real Prometheus that scrapes the operator
and a serving pod, and each returning data; and a canary judged from that Prometheus when the
operator is given its URL (prometheus_url).

Prometheus (tests/prometheus, built without Kubernetes service discovery) scrapes the session's
operator process and the pod of a ModelDeployment of runtime `batched` on the real node, every
second. The pod's target carries the labels the chart's PodMonitor gives it (`namespace`, and
`modeldeployment` relabelled from the pod's label), the operator's is scraped with honor_labels
as the ServiceMonitor does. Grafana's variables are replaced as Grafana would with "All"
selected, `$__rate_interval` by a window that holds enough one-second scrapes.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from tests.e2e.kube import get_json
from tests.e2e.modeldeployments import (
    RealPodsEnv,
    eventually_condition,
    is_ready_on,
    model_deployment,
    status,
)
from tests.e2e.operator_process import OperatorProcess
from tests.e2e.traffic import Traffic
from tests.helm import dashboard
from tests.mlflowstack.models import sample_input
from tests.prometheus.build import ensure_built
from tests.support.polling import eventually
from tests.support.processes import ManagedProcess, free_port

pytestmark = [pytest.mark.e2e, pytest.mark.integration]
ROLLOUT_TIMEOUT = 240.0
RATE_WINDOW = "30s"


def session() -> requests.Session:
    s = requests.Session()
    s.trust_env = False  # pod IPs and loopback, never through a proxy
    return s


@pytest.fixture
def prometheus(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A running prometheus with an empty scrape config (the test writes it and reloads)."""
    port = free_port()
    config = tmp_path / "prometheus.yml"
    config.write_text(yaml.safe_dump({"global": {"scrape_interval": "1s"}}))
    process = ManagedProcess(
        "prometheus",
        [
            str(ensure_built("prometheus", quiet=True)),
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp_path / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--web.enable-lifecycle",
        ],
        tmp_path / "prometheus.log",
    ).start()
    url = f"http://127.0.0.1:{port}"
    try:
        eventually(
            lambda: session().get(f"{url}/-/ready", timeout=2).ok,
            timeout=60,
            what="prometheus ready",
        )
        yield url, config
    finally:
        process.stop()


def scrape(prometheus: tuple[str, Path], operator: OperatorProcess, pod: dict[str, Any]) -> None:
    url, config = prometheus
    operator_target = operator.metrics_url.removeprefix("http://").removesuffix("/metrics")
    labels = pod["metadata"]["labels"]
    scrape_configs = [
        {
            "job_name": "mlflow-operator",
            "honor_labels": True,
            "static_configs": [{"targets": [operator_target]}],
        },
        {
            "job_name": "mlflow-serving",
            "static_configs": [
                {
                    "targets": [f"{pod['status']['podIP']}:8080"],
                    "labels": {
                        "namespace": pod["metadata"]["namespace"],
                        "modeldeployment": labels["mlflowops.dev/modeldeployment"],
                        "pod": pod["metadata"]["name"],
                    },
                }
            ],
        },
    ]
    config.write_text(
        yaml.safe_dump({"global": {"scrape_interval": "1s"}, "scrape_configs": scrape_configs})
    )
    session().post(f"{url}/-/reload", timeout=10).raise_for_status()

    def both_up() -> bool:
        targets = session().get(f"{url}/api/v1/targets", timeout=5).json()["data"]
        return {t["labels"]["job"]: t["health"] for t in targets["activeTargets"]} == {
            "mlflow-operator": "up",
            "mlflow-serving": "up",
        }

    eventually(both_up, timeout=60, what="prometheus scrapes the operator and the serving pod")


def as_grafana_sends_it(expr: str, namespace: str) -> str:
    return (
        expr.replace("$__rate_interval", RATE_WINDOW)
        .replace("$namespace", namespace)
        .replace("$modeldeployment", ".*")
    )


def query(prometheus_url: str, expr: str) -> list[dict[str, Any]]:
    answer = session().get(f"{prometheus_url}/api/v1/query", params={"query": expr}, timeout=10)
    body = answer.json()
    assert body["status"] == "success", (expr, body)
    result: list[dict[str, Any]] = body["data"]["result"]
    return result


def test_every_dashboard_query_returns_data(
    pods_env: RealPodsEnv, prometheus: tuple[str, Path]
) -> None:
    ns = pods_env.namespace
    v1 = pods_env.registry.log_version(pods_env.model)
    pods_env.registry.set_alias(pods_env.model, "champion", v1.version)
    serving = {
        "replicas": 1, "runtime": "batched", "podTemplate": dict(pods_env.node.placement),
        # the monitoring row: drift scores from the 101st row after a reference of 100, and
        # the live accuracy once 10 sampled rows have labels
        "monitoring": {
            "drift": {"referenceRows": 100}, "thresholds": {"drift": 0.25}, "sampleRate": 1.0,
            "quality": {"metric": "accuracy", "minLabelled": 10},
        },
    }  # fmt: skip
    pods_env.cluster.apply(
        model_deployment("dash", ns, pods_env.model, pods_env.tracking_uri, serving=serving)
    )
    eventually(
        lambda: is_ready_on(pods_env.cluster, ns, "dash", v1.version),
        timeout=ROLLOUT_TIMEOUT,
        what="v1",
    )
    (pod,) = get_json(
        pods_env.cluster, "-n", ns, "pods", "-l", "mlflowops.dev/modeldeployment=dash"
    )["items"]
    scrape(prometheus, pods_env.operator, pod)

    # traffic for the serving row: answers, and one error (JSON the scoring protocol refuses)
    invocations = f"http://{pod['status']['podIP']}:8080/invocations"
    rows = {"dataframe_split": json.loads(sample_input().to_json(orient="split", index=False))}
    http = session()
    for i in range(30):  # 300 rows: the drift reference, then scores
        http.post(
            invocations, json=rows, headers={"X-Request-ID": f"r{i}"}, timeout=30
        ).raise_for_status()
    labels = [{"request_id": f"r{i}", "label": v1.predict()} for i in range(30)]
    http.post(invocations.replace("/invocations", "/labels"), json={"labels": labels},
              timeout=30).raise_for_status()  # fmt: skip
    refused = http.post(invocations, json={"no such field": 1}, timeout=30)
    assert refused.status_code >= 400, refused.status_code
    started = time.monotonic()

    url = prometheus[0]
    queries = [
        (panel.title, as_grafana_sends_it(q.expr, ns))
        for panel in dashboard.panels()
        for q in panel.queries
    ]
    for variable in dashboard.dashboard()["templating"]["list"][1:]:
        label_values = variable["query"]["query"]  # label_values(metric{...}, label)
        metric = label_values.removeprefix("label_values(").rsplit(",", 1)[0]
        queries.append((variable["name"], as_grafana_sends_it(metric, ns)))

    empty: list[tuple[str, str]] = []
    for title, expr in queries:
        try:
            # the live quality needs the pod's first upload (30 s) and the operator's read
            eventually(
                lambda expr=expr: query(url, expr), timeout=90, what=f"{title}: {expr}", interval=1
            )
        except AssertionError:
            empty.append((title, expr))
    # what the operator says it judged (the live-quality panel draws its status)
    assert empty == [], (empty, status(pods_env.cluster, ns, "dash").get("monitoring"))
    seconds = time.monotonic() - started
    print(f"{len(queries)} dashboard queries answered, {seconds:.0f}s after the traffic")


def scrape_pods_of(
    prometheus: tuple[str, Path], targets: Path, cluster: Any, namespace: str, name: str
) -> None:
    """Prometheus scrapes every running pod of the ModelDeployment `name` (serving and canary)
    through a file_sd file, written now: the labels a PodMonitor gives them."""
    url, config = prometheus
    pods = get_json(cluster, "-n", namespace, "pods", "-l", f"mlflowops.dev/modeldeployment={name}")
    groups = [
        {
            "targets": [f"{pod['status']['podIP']}:8080"],
            "labels": {
                "namespace": namespace,
                "modeldeployment": name,
                "pod": pod["metadata"]["name"],
            },
        }
        for pod in pods["items"]
        if pod["status"].get("podIP")
    ]
    targets.write_text(json.dumps(groups))
    scrape_configs = [
        {"job_name": "mlflow-serving", "file_sd_configs": [{"files": [str(targets)]}]}
    ]
    config.write_text(
        yaml.safe_dump({"global": {"scrape_interval": "1s"}, "scrape_configs": scrape_configs})
    )
    session().post(f"{url}/-/reload", timeout=10).raise_for_status()


def test_a_canary_is_judged_from_prometheus_when_the_operator_is_given_one(
    pods_env: RealPodsEnv, prometheus: tuple[str, Path], tmp_path: Path
) -> None:
    """With prometheus_url the operator judges a canary from Prometheus, not from the pods:
    while Prometheus scrapes none of the pods the canary waits for its data (the pods' own
    /metrics would have failed it), and once it scrapes them the canary of a version failing
    half of the requests is aborted on its error rate."""
    ns, cluster, operator = pods_env.namespace, pods_env.cluster, pods_env.operator
    operator.extra_env["MLFLOW_OPERATOR_PROMETHEUS_URL"] = prometheus[0]
    operator.restart()
    try:
        v1 = pods_env.registry.log_version(pods_env.model)
        pods_env.registry.set_alias(pods_env.model, "champion", v1.version)
        serving = {
            "replicas": 1,
            "runtime": "batched",
            "podTemplate": dict(pods_env.node.placement),
        }
        rollout = {
            "strategy": "Canary",
            "canary": {"steps": [{"weight": 50, "pause": "5s"}],
                       "analysis": {"interval": "5s", "minRequests": 40, "maxErrorRate": 0.05,
                                    "maxP99LatencyRatio": 20}},
        }  # fmt: skip
        md = model_deployment(
            "promcanary", ns, pods_env.model, pods_env.tracking_uri, serving=serving,
            rollout=rollout,
        )  # fmt: skip
        cluster.apply(md)
        eventually(
            lambda: is_ready_on(cluster, ns, "promcanary", v1.version),
            timeout=ROLLOUT_TIMEOUT, what="v1",
        )  # fmt: skip
        service = get_json(cluster, "-n", ns, "service", "promcanary")
        url = f"http://{service['spec']['clusterIP']}:{service['spec']['ports'][0]['port']}"
        targets = tmp_path / "targets.json"
        scrape_pods_of(prometheus, targets, cluster, ns, "nothing")  # no pod scraped yet
        with Traffic(url, bad_every=2):
            bad = pods_env.registry.log_failing_version(pods_env.model)
            pods_env.registry.set_alias(pods_env.model, "champion", bad)
            eventually_condition(
                cluster, ns, "promcanary", "Progressing", lambda c: c["reason"] == "Canary",
                timeout=60, what="the canary starts",
            )  # fmt: skip

            def analysis() -> str:
                return str((status(cluster, ns, "promcanary").get("rollout") or {}).get("analysis"))

            waiting = eventually(
                lambda: "no data in Prometheus" in analysis() and analysis(),
                timeout=ROLLOUT_TIMEOUT, what="the canary waits for Prometheus' data",
            )  # fmt: skip
            print(f"prometheus canary: {waiting}")
            time.sleep(10)  # the canary pod answered failures meanwhile: still not judged on them
            assert (status(cluster, ns, "promcanary").get("rollout") or {})["phase"] == "Canary"
            scrape_pods_of(prometheus, targets, cluster, ns, "promcanary")
            degraded = eventually_condition(
                cluster, ns, "promcanary", "Degraded", lambda c: c["reason"] == "CanaryAborted",
                timeout=120, what="the canary aborted on Prometheus' numbers",
            )  # fmt: skip
        assert "error rate" in degraded["message"], degraded
        assert status(cluster, ns, "promcanary")["failedVersions"] == [bad]
    finally:
        operator.extra_env.pop("MLFLOW_OPERATOR_PROMETHEUS_URL", None)
        operator.restart()
