"""ModelDeployment rollouts and rollbacks on the real node: the serving pods run the project's
serving image, download the model from the local MLflow (through its proxy, on PostgreSQL and
MinIO), pass their probes, and answer predictions through the Service; a version whose model
cannot load crash-loops for real and is rolled back. No KWOK rule is involved in these tests.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from tests.cluster.launcher import KubeCluster
from tests.cluster.realnode import NodeInfo
from tests.e2e.gatewayapi import httproute_crd
from tests.e2e.kube import get_json, require_requests
from tests.e2e.modeldeployments import (
    RealPodsEnv,
    condition,
    events,
    eventually_condition,
    is_ready_on,
    model_deployment,
    status,
    template_version,
)
from tests.e2e.traffic import Traffic, from_failing_version
from tests.mlflowstack.broken_versions import CORPUS
from tests.mlflowstack.models import (
    DIFFERENT_C,
    ModelRegistry,
    TrainedVersion,
    sample_input,
)
from tests.support.polling import eventually

pytestmark = [pytest.mark.e2e, pytest.mark.integration]
POLL = 5.0
# A serving pod starts its server, downloads the model and answers /ping in ~10-20 s on a
# quiet 2-core machine; a rollout of two pods is two of those in a row.
ROLLOUT_TIMEOUT = 240.0
SERVING_UID = 1000  # what builders/modeldeployment.py declares


def on_real_node(node: NodeInfo, **serving: Any) -> dict[str, Any]:
    """A ModelDeployment's `serving` section whose pods run on the real node."""
    return {"replicas": 1, **serving, "podTemplate": dict(node.placement)}


def service_url(cluster: KubeCluster, namespace: str, name: str) -> str:
    service = get_json(cluster, "-n", namespace, "service", name)
    port = service["spec"]["ports"][0]["port"]
    return f"http://{service['spec']['clusterIP']}:{port}"


def predict(url: str, timeout: float = 30.0) -> list[int]:
    """The Service's answer for the sample rows, as MLflow's scoring protocol gives it."""
    body = {"dataframe_split": json.loads(sample_input().to_json(orient="split", index=False))}
    session = requests.Session()
    session.trust_env = False  # straight to the ClusterIP, never through a proxy
    response = session.post(f"{url}/invocations", json=body, timeout=timeout)
    response.raise_for_status()
    return [int(p) for p in response.json()["predictions"]]


def eventually_served(url: str, version: TrainedVersion) -> None:
    """The Service answers with version's predictions. Not at the instant the ModelDeployment
    says Ready: kube-proxy stops sending to a replaced pod a moment after its endpoint goes."""
    eventually(
        lambda: predict(url) == version.predict(), timeout=30, what=f"v{version.version} answers"
    )


def serving_pods(cluster: KubeCluster, namespace: str, name: str) -> list[dict[str, Any]]:
    selector = f"mlflowops.dev/modeldeployment={name}"
    pods: list[dict[str, Any]] = get_json(cluster, "-n", namespace, "pods", "-l", selector)["items"]
    return pods


def pods_of_version(pods: list[dict[str, Any]], version: str) -> list[dict[str, Any]]:
    return [p for p in pods if p["metadata"]["labels"]["mlflowops.dev/model-version"] == version]


def restarts(pod: dict[str, Any]) -> int:
    return sum(c.get("restartCount", 0) for c in pod["status"].get("containerStatuses", []))


def assert_pods_run_as_declared(
    cluster: KubeCluster, namespace: str, node: NodeInfo, name: str
) -> None:
    """Each serving pod runs on the real node, as the non-root user the builder declares, with
    its probes passing and the pinned model in its environment."""
    for pod in serving_pods(cluster, namespace, name):
        assert pod["spec"]["nodeName"] == node.name
        (container,) = pod["status"]["containerStatuses"]
        assert container["ready"], container
        assert container["started"], container
        ids = cluster.kubectl(
            "exec", "-n", namespace, pod["metadata"]["name"], "--",
            "python3", "-c", "import os; print(os.getuid(), os.getgid())",
        ).stdout.split()  # fmt: skip
        assert ids == [str(SERVING_UID), str(SERVING_UID)]
        env = cluster.kubectl(
            "exec", "-n", namespace, pod["metadata"]["name"], "--", "printenv", "MODEL_URI"
        ).stdout.strip()
        version = pod["metadata"]["labels"]["mlflowops.dev/model-version"]
        assert env.endswith(f"/{version}")


@pytest.mark.parametrize("runtime", ["mlflow", "batched"])
def test_an_alias_move_rolls_out_real_pods_that_serve_the_new_version(
    pods_env: RealPodsEnv, runtime: str
) -> None:
    ns = pods_env.namespace
    v1 = pods_env.registry.log_version(pods_env.model)
    pods_env.registry.set_alias(pods_env.model, "champion", v1.version)
    serving = on_real_node(pods_env.node, runtime=runtime, replicas=2)
    pods_env.cluster.apply(
        model_deployment("iris", ns, pods_env.model, pods_env.tracking_uri, serving=serving)
    )
    started = time.monotonic()
    eventually(
        lambda: is_ready_on(pods_env.cluster, ns, "iris", v1.version),
        timeout=ROLLOUT_TIMEOUT,
        what="v1",
    )
    print(f"{runtime}: first version Ready in {time.monotonic() - started:.1f}s")
    url = service_url(pods_env.cluster, ns, "iris")
    eventually_served(url, v1)
    assert_pods_run_as_declared(pods_env.cluster, ns, pods_env.node, "iris")

    v2 = pods_env.registry.log_version(pods_env.model, c=DIFFERENT_C)
    assert v2.predict() != v1.predict()  # else the check below could not tell them apart
    moved = time.monotonic()
    pods_env.registry.set_alias(pods_env.model, "champion", v2.version)
    eventually(
        lambda: is_ready_on(pods_env.cluster, ns, "iris", v2.version),
        timeout=ROLLOUT_TIMEOUT,
        what="v2",
    )
    print(f"{runtime}: alias move to Ready on v2 in {time.monotonic() - moved:.1f}s")
    eventually_served(url, v2)
    eventually(
        lambda: not pods_of_version(serving_pods(pods_env.cluster, ns, "iris"), v1.version),
        timeout=60,
        what="v1's pods gone",
    )
    assert_pods_run_as_declared(pods_env.cluster, ns, pods_env.node, "iris")


def test_tagging_a_newer_version_rolls_out_real_pods_and_untagging_rolls_back(
    pods_env: RealPodsEnv,
) -> None:
    """spec.model.selector on real pods: the version tag set in MLflow decides what the
    Service answers with; a version outside the semver range never serves."""
    ns = pods_env.namespace
    v1 = pods_env.registry.log_version(pods_env.model)
    pods_env.registry.tag_version(pods_env.model, v1.version, "semver", "1.0.0")
    pods_env.registry.tag_version(pods_env.model, v1.version, "stage", "prod")
    md = model_deployment(
        "tagged", ns, pods_env.model, pods_env.tracking_uri,
        selector={"selector": {"tags": {"stage": "prod"}, "semver": "^1"}},
        serving=on_real_node(pods_env.node),
    )  # fmt: skip
    pods_env.cluster.apply(md)
    eventually(
        lambda: is_ready_on(pods_env.cluster, ns, "tagged", v1.version),
        timeout=ROLLOUT_TIMEOUT,
        what="v1",
    )
    url = service_url(pods_env.cluster, ns, "tagged")
    eventually_served(url, v1)

    v2 = pods_env.registry.log_version(pods_env.model, c=DIFFERENT_C)
    assert v2.predict() != v1.predict()  # else the checks below could not tell them apart
    pods_env.registry.tag_version(pods_env.model, v2.version, "semver", "2.0.0")  # outside ^1
    pods_env.registry.tag_version(pods_env.model, v2.version, "stage", "prod")
    time.sleep(POLL + 2)
    assert template_version(pods_env.cluster, ns, "tagged") == v1.version
    pods_env.registry.tag_version(pods_env.model, v2.version, "semver", "1.1.0")  # now inside ^1
    eventually(
        lambda: is_ready_on(pods_env.cluster, ns, "tagged", v2.version),
        timeout=ROLLOUT_TIMEOUT,
        what="v2",
    )
    eventually_served(url, v2)
    assert status(pods_env.cluster, ns, "tagged")["selection"].startswith(
        f"version {v2.version}, semver 1.1.0: the newest of 2 READY version(s)"
    )

    pods_env.registry.delete_version_tag(pods_env.model, v2.version, "stage")
    eventually(
        lambda: is_ready_on(pods_env.cluster, ns, "tagged", v1.version),
        timeout=ROLLOUT_TIMEOUT,
        what="v1",
    )
    eventually_served(url, v1)


GATES = {
    "requireTags": {"validation_status": "approved"},
    "metrics": [{"name": "accuracy", "min": 0.8}],
    "notWorseThanServing": [{"metric": "accuracy", "tolerance": 0.01}],
}


def gated_version(
    registry: ModelRegistry, model: str, accuracy: float, *, approved: bool, c: float = 1.0
) -> TrainedVersion:
    """A version whose run logged `accuracy`, tagged approved or not."""
    version = registry.log_version(
        model, c=c, tags={"validation_status": "approved"} if approved else None
    )
    registry.client.log_metric(version.run_id, "accuracy", accuracy)
    return version


def assert_held_on(env: RealPodsEnv, name: str, serving: str, held: str, seconds: float) -> None:
    """For `seconds`: the template pins `serving`, no pod of `held` exists, Ready stays."""
    until = time.monotonic() + seconds
    while time.monotonic() < until:
        assert template_version(env.cluster, env.namespace, name) == serving
        assert not pods_of_version(serving_pods(env.cluster, env.namespace, name), held)
        assert is_ready_on(env.cluster, env.namespace, name, serving)
        time.sleep(1)


def test_gates_hold_a_version_without_a_pod_until_approved_and_block_one_worse_than_serving(
    pods_env: RealPodsEnv,
) -> None:
    """spec.gates on real pods and a real MLflow: an unapproved version never gets a pod while
    the serving one keeps answering; tagging it approved rolls it out; an approved version
    whose run's accuracy is worse than the serving version's is blocked with the numbers."""
    ns, registry, model = pods_env.namespace, pods_env.registry, pods_env.model
    v1 = gated_version(registry, model, 0.90, approved=True)
    registry.set_alias(model, "champion", v1.version)
    md = model_deployment(
        "gated", ns, model, pods_env.tracking_uri, serving=on_real_node(pods_env.node)
    )
    md["spec"]["gates"] = GATES
    pods_env.cluster.apply(md)
    eventually(
        lambda: is_ready_on(pods_env.cluster, ns, "gated", v1.version),
        timeout=ROLLOUT_TIMEOUT,
        what="v1 (it passes the gates)",
    )
    url = service_url(pods_env.cluster, ns, "gated")
    eventually_served(url, v1)

    v2 = gated_version(registry, model, 0.95, approved=False, c=DIFFERENT_C)
    assert v2.predict() != v1.predict()  # else the checks below could not tell them apart
    registry.set_alias(model, "champion", v2.version)
    blocked = eventually_condition(
        pods_env.cluster, ns, "gated", "Progressing", lambda c: c["reason"] == "GateBlocked",
        timeout=60, what="v2 blocked by the approval gate",
    )  # fmt: skip
    assert blocked["message"] == (
        f"version {v2.version} is blocked: tag validation_status is not set, not 'approved' "
        "(spec.gates.requireTags)"
    )
    assert_held_on(pods_env, "gated", v1.version, v2.version, seconds=2 * POLL)
    assert predict(url) == v1.predict()
    st = status(pods_env.cluster, ns, "gated")
    assert st["gates"] == {
        "version": v2.version,
        "verdict": "Blocked",
        "message": blocked["message"],
    }
    assert "GateBlocked" in [e["reason"] for e in events(pods_env.cluster, ns, "gated")]
    key = f"mlflow-operator.{ns}.gated"
    tag = eventually(
        lambda: registry.get_version(model, v2.version).tags.get(key),
        timeout=30, what="the verdict tagged on v2 in MLflow",
    )  # fmt: skip
    assert tag.startswith("blocked by spec.gates at ")
    assert blocked["message"] in tag

    registry.tag_version(model, v2.version, "validation_status", "approved")
    eventually(
        lambda: is_ready_on(pods_env.cluster, ns, "gated", v2.version),
        timeout=ROLLOUT_TIMEOUT,
        what="v2 rolled out once approved",
    )
    eventually_served(url, v2)
    assert status(pods_env.cluster, ns, "gated")["gates"]["verdict"] == "Passed"

    v3 = gated_version(registry, model, 0.90, approved=True)
    registry.set_alias(model, "champion", v3.version)
    blocked = eventually_condition(
        pods_env.cluster, ns, "gated", "Progressing",
        lambda c: c["reason"] == "GateBlocked" and f"version {v3.version}" in c["message"],
        timeout=60, what="v3 blocked: worse than the serving version",
    )  # fmt: skip
    assert blocked["message"] == (
        f"version {v3.version} is blocked: accuracy 0.9 vs 0.95 of serving version "
        f"{v2.version}: worse by 0.05, more than the tolerance 0.01 (higher is better; "
        "spec.gates.notWorseThanServing[0])"
    )
    assert_held_on(pods_env, "gated", v2.version, v3.version, seconds=POLL)
    assert predict(url) == v2.predict()


def test_versions_the_serving_image_cannot_run_are_reported_and_never_get_a_pod(
    pods_env: RealPodsEnv,
) -> None:
    """Pre-flight on real pods, a real MLflow and the serving image built here: the corpus of
    broken versions (tests/mlflowstack/broken_versions.py), each followed by a ModelDeployment
    of its own, is reported with the requirement at fault and never gets a Deployment or a
    pod; a serving ModelDeployment whose alias moves to one keeps serving, with an Event and an
    MLflow tag, and rolls out the next good version. No pod restarts anywhere."""
    ns, registry, model, cluster = (
        pods_env.namespace, pods_env.registry, pods_env.model, pods_env.cluster,
    )  # fmt: skip
    v1 = registry.log_version(model)
    registry.set_alias(model, "champion", v1.version)
    cluster.apply(model_deployment("checked", ns, model, pods_env.tracking_uri,
                                   serving=on_real_node(pods_env.node)))  # fmt: skip
    eventually(
        lambda: is_ready_on(cluster, ns, "checked", v1.version),
        timeout=ROLLOUT_TIMEOUT, what="v1 (compatible)",
    )  # fmt: skip
    assert status(cluster, ns, "checked")["preflight"]["verdict"] == "Compatible"
    url = service_url(cluster, ns, "checked")
    eventually_served(url, v1)

    corpus = [b for b in CORPUS if b.verdict == "Incompatible"]
    assert len(corpus) >= 10
    versions = {}
    for broken in corpus:
        versions[broken.key] = broken.register(registry, model)
        registry.set_alias(model, broken.key, versions[broken.key])
        cluster.apply(model_deployment(f"pf-{broken.key}", ns, model, pods_env.tracking_uri,
                                       selector={"alias": broken.key},
                                       serving=on_real_node(pods_env.node)))  # fmt: skip
    missing = versions["missing-package"]
    registry.set_alias(model, "champion", missing)
    moved = time.monotonic()

    def reported() -> list[str]:
        waiting = []
        for broken in corpus:
            st = status(cluster, ns, f"pf-{broken.key}")
            preflight, ready = st.get("preflight") or {}, condition(st, "Ready")
            if not (
                preflight.get("version") == versions[broken.key]
                and preflight.get("verdict") == "Incompatible"
                and broken.names in preflight.get("message", "")
                and ready.get("reason") == "VersionIncompatible"
                and broken.names in ready.get("message", "")
            ):
                waiting.append(f"{broken.key}: {preflight} / {ready}")
        return waiting

    eventually(lambda: not reported(), timeout=90, what="every broken version reported")
    print(f"preflight: {len(corpus)} broken versions reported {time.monotonic() - moved:.1f}s "
          "after the last was registered")  # fmt: skip
    for broken in corpus:  # never a Deployment, so never a pod
        found = cluster.kubectl("-n", ns, "get", "deployment", f"pf-{broken.key}", check=False)
        assert found.returncode != 0, broken.key

    held = eventually_condition(
        cluster, ns, "checked", "Progressing",
        lambda c: c["reason"] == "VersionIncompatible", timeout=60,
        what="the serving ModelDeployment holds the version its alias moved to",
    )  # fmt: skip
    assert held["message"] == (
        f"version {missing} cannot run on the serving image: needs nonexistent-serving-lib==1.0 "
        "(requirements.txt), the image has no nonexistent-serving-lib"
    )
    assert_held_on(pods_env, "checked", v1.version, missing, seconds=2 * POLL)
    assert predict(url) == v1.predict()
    assert "VersionIncompatible" in [e["reason"] for e in events(cluster, ns, "checked")]
    key = f"mlflow-operator.{ns}.checked"
    tag = eventually(
        lambda: registry.get_version(model, missing).tags.get(key),
        timeout=30, what="the verdict tagged on the version in MLflow",
    )  # fmt: skip
    assert tag.startswith("incompatible with the serving image at ")

    v3 = registry.log_version(model, c=DIFFERENT_C)
    registry.set_alias(model, "champion", v3.version)
    eventually(
        lambda: is_ready_on(cluster, ns, "checked", v3.version),
        timeout=ROLLOUT_TIMEOUT, what="the next compatible version rolled out",
    )  # fmt: skip
    eventually_served(url, v3)
    pods = get_json(cluster, "-n", ns, "pods")["items"]
    restarts = {
        p["metadata"]["name"]: c["restartCount"]
        for p in pods
        for c in p["status"].get("containerStatuses") or []
        if c["restartCount"]
    }
    assert restarts == {}
    bad = set(versions.values())
    assert not [
        p for p in pods if p["metadata"]["labels"].get("mlflowops.dev/model-version") in bad
    ]


CANARY_ROLLOUT = {
    "strategy": "Canary",
    "canary": {
        "steps": [{"weight": 10, "pause": "5s"}, {"weight": 50, "pause": "5s"}],
        # latency is not what these versions differ in; on 2 busy cores it only adds noise
        # 40 answers: a version failing every second request shows at most 2 failures in them
        # (and passes) with a chance of 1e-9; one failing a fifth of them, of 1e-2
        "analysis": {"interval": "5s", "minRequests": 40, "maxErrorRate": 0.05,
                     "maxP99LatencyRatio": 20},
    },
}  # fmt: skip


@contextlib.contextmanager
def promotion_watch(
    cluster: KubeCluster, namespace: str, version: str, name: str = "canary"
) -> Iterator[list[str]]:
    """Every 0.3 s: the serving Deployment pins `version` only once its canary passed
    (status.rollout.phase Promoting or Promoted: written before the template moves, and read
    after it here). Yields the violations seen."""
    seen: list[str] = []
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            with contextlib.suppress(Exception):  # a read that fails is tried again
                if template_version(cluster, namespace, name) == version:
                    phase = (status(cluster, namespace, name).get("rollout") or {}).get("phase")
                    if phase not in ("Promoting", "Promoted"):
                        seen.append(f"template on {version} in phase {phase}")
            stop.wait(0.3)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    try:
        yield seen
    finally:
        stop.set()
        thread.join(timeout=10)


def test_a_canary_that_fails_some_requests_is_aborted_and_a_good_one_is_promoted(
    pods_env: RealPodsEnv,
) -> None:
    """strategy Canary on real pods, judged on the batched runtime's own /metrics with real
    requests through the Service: a version failing half of the requests (HTTP 400, as
    MLflow answers a model's exception) gets a share of the pods, is aborted after its first
    judgement (traffic back on the serving version, the version failed and tagged in MLflow);
    a good version walks both steps and is promoted, though the operator is SIGKILLed during
    its canary: it resumes, and the serving pods never move before the canary passed."""
    ns, registry, model, cluster = (
        pods_env.namespace, pods_env.registry, pods_env.model, pods_env.cluster,
    )  # fmt: skip
    v1 = registry.log_version(model)
    registry.set_alias(model, "champion", v1.version)
    serving = on_real_node(pods_env.node, runtime="batched", replicas=2)
    md = model_deployment(
        "canary", ns, model, pods_env.tracking_uri, serving=serving, rollout=CANARY_ROLLOUT
    )
    cluster.apply(md)
    eventually(
        lambda: is_ready_on(cluster, ns, "canary", v1.version),
        timeout=ROLLOUT_TIMEOUT,
        what="v1 (the first version has nothing to canary against)",
    )
    url = service_url(cluster, ns, "canary")
    eventually_served(url, v1)

    with Traffic(url, bad_every=2) as traffic:
        bad = registry.log_failing_version(model)
        moved = time.monotonic()
        registry.set_alias(model, "champion", bad)
        eventually_condition(
            cluster, ns, "canary", "Progressing", lambda c: c["reason"] == "Canary",
            timeout=60, what="the canary of the failing version starts",
        )  # fmt: skip
        assert template_version(cluster, ns, "canary") == v1.version
        degraded = eventually_condition(
            cluster, ns, "canary", "Degraded", lambda c: c["reason"] == "CanaryAborted",
            timeout=ROLLOUT_TIMEOUT, what="the failing canary aborted",
        )  # fmt: skip
        aborted = time.monotonic()
        failures = [a for a in traffic.since(moved) if a[1] != 200]
        assert failures, "the canary answered no request with an error before its abort"
        first_failure = failures[0][0]
        print(
            f"canary: first failed answer {first_failure - moved:.1f}s after the alias move, "
            f"aborted {aborted - first_failure:.1f}s after it (at most one status read late)"
        )
        assert aborted - first_failure <= 30
        assert "error rate" in degraded["message"]
        st = status(cluster, ns, "canary")
        assert st["failedVersions"] == [bad]
        assert st["rollout"]["phase"] == "Aborted"
        eventually(
            lambda: not pods_of_version(serving_pods(cluster, ns, "canary"), bad),
            timeout=60, what="the canary's pods gone",
        )  # fmt: skip
        settled = time.monotonic() + 2  # kube-proxy drops the gone endpoints a moment later
        time.sleep(7)
        after = traffic.since(settled)
        assert after
        assert all(code == 200 for _, code, _ in after), after[:5]
        during = [a for a in traffic.since(moved) if a[0] < aborted]
        exposed = [a for a in during if from_failing_version(a)]
        print(f"canary: {len(exposed)} of {len(during)} answers came from the failing version")
        assert len(exposed) <= 0.6 * len(during)
        key = f"mlflow-operator.{ns}.canary"
        tag = eventually(
            lambda: registry.get_version(model, bad).tags.get(key),
            timeout=30, what="the abort tagged on the version in MLflow",
        )  # fmt: skip
        assert "canary aborted at 33%: error rate" in tag

        good = registry.log_version(model, c=DIFFERENT_C)

        def canary_starts() -> list[dict[str, Any]]:
            return [
                e for e in events(cluster, ns, "canary")
                if e["reason"] == "RolloutStarted"
                and f"canary of version {good.version}" in e["message"]
            ]  # fmt: skip

        with promotion_watch(cluster, ns, good.version) as early:
            registry.set_alias(model, "champion", good.version)
            # kopf posts Events in the background, so a SIGKILL right after the status write
            # can lose the start's Event (Events are best effort): kill once it is posted, and
            # the count below shows whether the resumed operator starts the canary again
            eventually(
                lambda: (status(cluster, ns, "canary").get("rollout") or {}).get("version")
                == good.version
                and canary_starts(),
                timeout=60, what="the good version's canary and its RolloutStarted Event",
            )  # fmt: skip
            # SIGKILLed mid-canary: nothing moves while it is gone, and it resumes the canary
            # (one start, one history entry) instead of starting over or promoting at once
            pods_env.operator.kill()
            time.sleep(3)
            assert template_version(cluster, ns, "canary") == v1.version
            pods_env.operator.start()
            eventually(
                lambda: is_ready_on(cluster, ns, "canary", good.version),
                timeout=2 * ROLLOUT_TIMEOUT,
                what="the good version promoted after its two steps",
            )
        assert early == [], f"serving pods moved to {good.version} before its canary passed"

    started = canary_starts()
    assert len(started) == 1, started
    st = status(cluster, ns, "canary")
    assert [h["version"] for h in st["history"]].count(good.version) == 1
    assert st["rollout"]["phase"] in ("Promoting", "Promoted")
    reasons = [e["reason"] for e in events(cluster, ns, "canary")]
    assert {"CanaryAborted", "CanaryStep", "CanaryPromoted"} <= set(reasons)
    eventually(
        lambda: status(cluster, ns, "canary")["rollout"]["phase"] == "Promoted",
        timeout=60, what="the canary Deployment retired",
    )  # fmt: skip
    eventually(
        lambda: cluster.kubectl("-n", ns, "get", "deployment", "canary-canary", check=False)
        .returncode != 0,
        timeout=60, what="the canary Deployment deleted",
    )  # fmt: skip
    eventually_served(url, good)


SHADOW_ROLLOUT = {
    "strategy": "Shadow",
    # every request copied: 40 copies take 2 s of the test's traffic once the serving pods
    # read the mirror ConfigMap (seconds: the operator annotates them, and the kubelet syncs
    # them at once; its own periodic sync would take up to a minute and a half); same limits
    # as the canary's
    "shadow": {"percent": 100, "duration": "20s",
               "analysis": {"interval": "5s", "minRequests": 40, "maxErrorRate": 0.05,
                            "maxP99LatencyRatio": 20}},
}  # fmt: skip
# a slow kubelet may only refresh the ConfigMap on its periodic sync (1 min, jittered)
MIRROR_PROPAGATION = 120


def test_a_shadow_never_answers_callers_is_aborted_on_its_errors_and_a_good_one_moves_an_alias(
    pods_env: RealPodsEnv,
) -> None:
    """strategy Shadow on real pods with real requests through the Service: the serving pod
    copies every request to the candidate's pod (outside the Service) and callers get the
    serving version's answers, byte for byte, all along. A version failing half of the copies
    is aborted on its error rate, with the disagreement of its predictions in status; a good
    one is promoted after its duration, and promote.setAlias moves `champion` to it in MLflow
    (the ModelDeployment follows `challenger`)."""
    ns, registry, model, cluster = (
        pods_env.namespace, pods_env.registry, pods_env.model, pods_env.cluster,
    )  # fmt: skip
    v1 = registry.log_version(model)
    registry.set_alias(model, "challenger", v1.version)
    md = model_deployment(
        "shadow", ns, model, pods_env.tracking_uri, selector={"alias": "challenger"},
        serving=on_real_node(pods_env.node, runtime="batched", replicas=1), rollout=SHADOW_ROLLOUT,
    )  # fmt: skip
    md["spec"]["promote"] = {"setAlias": "champion"}
    cluster.apply(md)
    eventually(
        lambda: is_ready_on(cluster, ns, "shadow", v1.version),
        timeout=ROLLOUT_TIMEOUT,
        what="v1 (the first version has nothing to shadow)",
    )
    url = service_url(cluster, ns, "shadow")
    eventually_served(url, v1)
    session = requests.Session()
    session.trust_env = False

    with Traffic(url, bad_every=2) as traffic:
        # what v1 answers the two requests the traffic sends: all a caller may ever see
        expected = {
            session.post(f"{url}/invocations", json=body, timeout=10).content
            for body in traffic.request_bodies()
        }
        bad = registry.log_failing_version(model)
        moved = time.monotonic()
        registry.set_alias(model, "challenger", bad)
        eventually_condition(
            cluster, ns, "shadow", "Progressing", lambda c: c["reason"] == "Shadow",
            timeout=60, what="the shadow of the failing version starts",
        )  # fmt: skip
        pods = serving_pods(cluster, ns, "shadow")
        assert pods_of_version(pods, bad), "no pod of the shadowed version"
        service = get_json(cluster, "-n", ns, "service", "shadow")
        for pod in pods_of_version(pods, bad):  # outside the Service callers use
            labels = pod["metadata"]["labels"]
            assert not all(labels.get(k) == v for k, v in service["spec"]["selector"].items())
        degraded = eventually_condition(
            cluster, ns, "shadow", "Degraded", lambda c: c["reason"] == "CanaryAborted",
            timeout=ROLLOUT_TIMEOUT + MIRROR_PROPAGATION, what="the failing shadow aborted",
        )  # fmt: skip
        aborted = time.monotonic()
        assert "error rate" in degraded["message"]
        st = status(cluster, ns, "shadow")
        assert st["failedVersions"] == [bad]
        assert st["rollout"]["phase"] == "Aborted"
        # the failing version predicts class 7 for every row it answers: all differ
        assert st["rollout"]["disagreementRate"] == 1.0, st["rollout"]
        assert "predictions differ on 100.0%" in st["rollout"]["analysis"]
        answered = traffic.since(moved)
        print(f"shadow: {len(answered)} answers while the failing version was shadowed")
        assert answered
        assert all(code == 200 for _, code, _ in answered), answered[:5]
        assert set(traffic.bodies_since(moved)) <= expected
        key = f"mlflow-operator.{ns}.shadow"
        tag = eventually(
            lambda: registry.get_version(model, bad).tags.get(key),
            timeout=30, what="the abort tagged on the version in MLflow",
        )  # fmt: skip
        assert tag is not None
        assert "shadow aborted: error rate" in tag
        for kind in ("deployment", "service", "configmap"):
            eventually(
                lambda kind=kind: cluster.kubectl(
                    "-n", ns, "get", kind, "shadow-shadow", check=False
                ).returncode != 0,
                timeout=60, what=f"the shadow's {kind} deleted",
            )  # fmt: skip
        print(f"shadow: aborted {aborted - moved:.1f}s after the alias move")

        good = registry.log_version(model, c=DIFFERENT_C)
        rates: list[float] = []
        with promotion_watch(cluster, ns, good.version, name="shadow") as early:
            moved = time.monotonic()
            registry.set_alias(model, "challenger", good.version)

            def judged_with_disagreement() -> bool:
                # the judgement that first sees the copies may already pass the shadow (its
                # duration is long over): then the rate is in Promoting's status
                rollout = status(cluster, ns, "shadow").get("rollout") or {}
                if rollout.get("version") == good.version and rollout.get("phase") in (
                    "Shadow", "Promoting", "Promoted",
                ):  # fmt: skip
                    rate = rollout.get("disagreementRate")
                    if rate is not None:
                        rates.append(rate)
                return bool(rates)

            eventually(
                judged_with_disagreement, timeout=ROLLOUT_TIMEOUT + MIRROR_PROPAGATION,
                what="the good shadow judged, its disagreement rate in status",
            )  # fmt: skip
            judged = time.monotonic()
            shadowing = traffic.since(moved)
            assert set(traffic.bodies_since(moved)) <= expected
            eventually(
                lambda: is_ready_on(cluster, ns, "shadow", good.version),
                timeout=2 * ROLLOUT_TIMEOUT, what="the good version promoted after its shadow",
            )  # fmt: skip
        assert early == [], f"serving pods moved to {good.version} before its shadow passed"
        print(
            f"shadow: disagreement {rates[-1]:.3f} over {len(shadowing)} answers to callers, "
            f"judged {judged - moved:.1f}s after the alias move"
        )
        assert all(code == 200 for _, code, _ in shadowing)
    eventually(
        lambda: registry.client.get_model_version_by_alias(model, "champion").version
        == good.version,
        timeout=60, what="promote.setAlias moved champion to the promoted version",
    )  # fmt: skip
    reasons = [e["reason"] for e in events(cluster, ns, "shadow")]
    assert {"CanaryAborted", "CanaryPromoted", "AliasMoved"} <= set(reasons)
    eventually_served(url, good)


FIRST_STEP = [("routed", 80), ("routed-canary", 20)]
SECOND_STEP = [("routed", 40), ("routed-canary", 60)]
ALL_STABLE = [("routed", 100)]


def route_backends(cluster: KubeCluster, namespace: str, name: str) -> list[tuple[str, int]]:
    route = get_json(cluster, "-n", namespace, "httproute", name)
    return [(r["name"], r.get("weight", 1)) for r in route["spec"]["rules"][0]["backendRefs"]]


def service_endpoints(cluster: KubeCluster, namespace: str, service: str) -> set[str]:
    slices = get_json(
        cluster, "-n", namespace, "endpointslices", "-l", f"kubernetes.io/service-name={service}"
    )["items"]
    return {a for s in slices for e in s.get("endpoints") or [] for a in e["addresses"]}


def ips(pods: list[dict[str, Any]]) -> set[str]:
    return {
        p["status"]["podIP"]
        for p in pods
        if p["status"].get("podIP") and not p["metadata"].get("deletionTimestamp")
    }


def test_a_canary_with_an_http_route_sets_each_steps_weight_and_takes_it_back_on_abort(
    pods_env: RealPodsEnv,
) -> None:
    """canary.httpRouteRef on real pods and a real Gateway API HTTPRoute. No Gateway serves the
    route here: the test reads what the operator writes, and sends what a Gateway would to
    each backend. A route that does not exist yet is a Warning naming the field. Once the user
    creates it (sending to Service `routed`), a failing version's canary gets exactly its
    step's weight on `routed-canary`, whose endpoints are the canary pod, while Service
    `routed` keeps only the serving pod; it is aborted on its errors and the route goes back to
    100 on `routed`. A good version walks 20 then 60 and ends with 100 on `routed`, which then
    selects the promoted pods."""
    ns, registry, model, cluster = (
        pods_env.namespace, pods_env.registry, pods_env.model, pods_env.cluster,
    )  # fmt: skip
    cluster.apply(httproute_crd())
    # polled, not `kubectl wait`: that errors on a CRD whose status has no conditions yet
    eventually(
        lambda: any(
            c["type"] == "Established" and c["status"] == "True"
            for c in get_json(cluster, "crd", "httproutes.gateway.networking.k8s.io")
            .get("status", {}).get("conditions") or []
        ),
        timeout=60, what="the HTTPRoute CRD established",
    )  # fmt: skip
    v1 = registry.log_version(model)
    registry.set_alias(model, "champion", v1.version)
    rollout = {
        "strategy": "Canary",
        "canary": {
            "steps": [{"weight": 20, "pause": "5s"}, {"weight": 60, "pause": "5s"}],
            "analysis": CANARY_ROLLOUT["canary"]["analysis"],  # type: ignore[index]
            "httpRouteRef": {"name": "web"},
        },
    }
    md = model_deployment(
        "routed", ns, model, pods_env.tracking_uri,
        serving=on_real_node(pods_env.node, runtime="batched", replicas=1), rollout=rollout,
    )  # fmt: skip
    cluster.apply(md)
    eventually(
        lambda: is_ready_on(cluster, ns, "routed", v1.version),
        timeout=ROLLOUT_TIMEOUT, what="v1",
    )  # fmt: skip
    missing = eventually(
        lambda: [e for e in events(cluster, ns, "routed") if e["reason"] == "HTTPRouteUnusable"],
        timeout=60, what="a Warning that the route does not exist",
    )  # fmt: skip
    assert "spec.rollout.canary.httpRouteRef: HTTPRoute 'web' not found" in missing[0]["message"]
    cluster.apply(
        {
            "apiVersion": "gateway.networking.k8s.io/v1",
            "kind": "HTTPRoute",
            "metadata": {"name": "web", "namespace": ns},
            "spec": {
                "parentRefs": [{"name": "public"}],
                "rules": [
                    {
                        "matches": [{"path": {"type": "PathPrefix", "value": "/"}}],
                        "backendRefs": [{"name": "routed", "port": 80}],
                    }
                ],
            },
        }
    )
    eventually(
        lambda: route_backends(cluster, ns, "web") == ALL_STABLE,
        timeout=60, what="the route's backend written with its weight, 100 on routed",
    )  # fmt: skip
    url, canary_url = service_url(cluster, ns, "routed"), service_url(cluster, ns, "routed-canary")
    seen: list[list[tuple[str, int]]] = []

    def record() -> bool:
        backends = route_backends(cluster, ns, "web")
        if not seen or seen[-1] != backends:
            seen.append(backends)
        return True

    # what a Gateway would send: the serving Service and the canary's, each its share
    with Traffic(url, bad_every=2), Traffic(canary_url, bad_every=2):
        bad = registry.log_failing_version(model)
        registry.set_alias(model, "champion", bad)
        eventually(
            lambda: route_backends(cluster, ns, "web") == FIRST_STEP,
            timeout=ROLLOUT_TIMEOUT, what="the failing canary's step weight in the route",
        )  # fmt: skip

        def each_service_has_its_version() -> bool:
            pods = serving_pods(cluster, ns, "routed")
            canary, stable = ips(pods_of_version(pods, bad)), ips(pods_of_version(pods, v1.version))
            return (
                service_endpoints(cluster, ns, "routed-canary") == canary != set()
                and service_endpoints(cluster, ns, "routed") == stable != set()
            )

        # the canary's pods are outside Service routed: in-cluster callers never reach them
        eventually(
            each_service_has_its_version, timeout=30,
            what="routed-canary has the canary pod, routed the serving pod only",
        )  # fmt: skip
        eventually_condition(
            cluster, ns, "routed", "Degraded", lambda c: c["reason"] == "CanaryAborted",
            timeout=ROLLOUT_TIMEOUT, what="the failing canary aborted",
        )  # fmt: skip
        eventually(
            lambda: route_backends(cluster, ns, "web") == ALL_STABLE,
            timeout=60, what="the route back on the serving pods",
        )  # fmt: skip

    with Traffic(url, bad_every=10**9), Traffic(canary_url, bad_every=10**9):
        good = registry.log_version(model, c=DIFFERENT_C)
        registry.set_alias(model, "champion", good.version)
        eventually(
            lambda: record() and is_ready_on(cluster, ns, "routed", good.version)
            and seen[-1] == ALL_STABLE,
            timeout=2 * ROLLOUT_TIMEOUT, what="the good version promoted, the route on routed",
            interval=0.5,
        )  # fmt: skip
    steps = [b for b in seen if len(b) == 2]
    print(f"route weights seen: {seen}")
    assert FIRST_STEP in steps
    assert SECOND_STEP in steps
    assert steps.index(FIRST_STEP) < steps.index(SECOND_STEP)

    def routed_serves_the_good_version() -> bool:
        pods = serving_pods(cluster, ns, "routed")
        serving = ips([p for p in pods_of_version(pods, good.version)
                       if "mlflowops.dev/track" not in p["metadata"]["labels"]])  # fmt: skip
        return bool(serving) and service_endpoints(cluster, ns, "routed") == serving

    eventually(
        routed_serves_the_good_version,
        timeout=60, what="Service routed selects the promoted pods, and only them",
    )  # fmt: skip


def _broken_or_good(registry: ModelRegistry, model: str, broken: bool) -> TrainedVersion | str:
    return (
        registry.log_broken_version(model) if broken else registry.log_version(model, c=DIFFERENT_C)
    )


@pytest.mark.parametrize("broken", [True, False], ids=["model-fails-to-load", "good-model"])
def test_a_version_whose_model_cannot_load_is_rolled_back_for_that_reason(
    pods_env: RealPodsEnv, broken: bool
) -> None:
    """The same steps with a good version and with one whose model file is junk: only the
    junk one fails, because its server really cannot load it."""
    ns = pods_env.namespace
    deadline = 45
    v1 = pods_env.registry.log_version(pods_env.model)
    pods_env.registry.set_alias(pods_env.model, "champion", v1.version)
    pods_env.cluster.apply(
        model_deployment(
            "rb",
            ns,
            pods_env.model,
            pods_env.tracking_uri,
            serving=on_real_node(pods_env.node),
            deadline=deadline,
        )
    )
    eventually(
        lambda: is_ready_on(pods_env.cluster, ns, "rb", v1.version),
        timeout=ROLLOUT_TIMEOUT,
        what="v1",
    )
    url = service_url(pods_env.cluster, ns, "rb")

    candidate = _broken_or_good(pods_env.registry, pods_env.model, broken)
    version = candidate if isinstance(candidate, str) else candidate.version
    pods_env.registry.set_alias(pods_env.model, "champion", version)
    if not broken:
        assert isinstance(candidate, TrainedVersion)
        eventually(
            lambda: is_ready_on(pods_env.cluster, ns, "rb", version),
            timeout=ROLLOUT_TIMEOUT,
            what="good",
        )
        eventually_served(url, candidate)
        assert status(pods_env.cluster, ns, "rb").get("failedVersions", []) == []
        return

    # Its pod starts, fails to load the model, and restarts: the real reason, in its log.
    def failing_pod() -> dict[str, Any] | None:
        pods = pods_of_version(serving_pods(pods_env.cluster, ns, "rb"), version)
        return next((p for p in pods if restarts(p) > 0), None)

    pod = eventually(
        failing_pod, timeout=ROLLOUT_TIMEOUT, what=f"a pod of version {version} restarted"
    )
    log = pods_env.cluster.kubectl(
        "logs", "-n", ns, pod["metadata"]["name"], "--previous", check=False
    ).stdout
    assert "Traceback" in log, log[-2000:]
    assert predict(url) == v1.predict()  # the old version serves meanwhile

    eventually(
        lambda: condition(status(pods_env.cluster, ns, "rb"), "Degraded").get("status") == "True",
        timeout=deadline + 60,
        what="Degraded after the progress deadline",
    )
    st = status(pods_env.cluster, ns, "rb")
    assert st["failedVersions"] == [version]
    assert st["servingVersion"] == v1.version
    assert condition(st, "Degraded")["reason"] == "RolloutFailed"
    # why, in the words of the pod's own log, kept after its pods are gone
    last_line = log.strip().splitlines()[-1].strip()
    assert last_line[-80:] in condition(st, "Degraded")["message"], (last_line, st)
    (failed,) = [h for h in st["history"] if h["version"] == version]
    assert failed["result"] == "RolledBack"
    assert last_line[-80:] in failed["message"]
    eventually(
        lambda: template_version(pods_env.cluster, ns, "rb") == v1.version,
        timeout=30,
        what="rolled back",
    )
    eventually(
        lambda: not pods_of_version(serving_pods(pods_env.cluster, ns, "rb"), version),
        timeout=60,
        what="the failed version's pods gone",
    )
    warnings = [e for e in events(pods_env.cluster, ns, "rb") if e["type"] == "Warning"]
    assert any(e["reason"] == "RolloutFailed" and last_line[-80:] in e["message"] for e in warnings)
    assert last_line[-80:] in condition(status(pods_env.cluster, ns, "rb"), "Degraded")["message"]

    # Never retried while the registry still selects it.
    time.sleep(3 * POLL)
    assert template_version(pods_env.cluster, ns, "rb") == v1.version
    assert not pods_of_version(serving_pods(pods_env.cluster, ns, "rb"), version)
    assert predict(url) == v1.predict()
    tags = pods_env.registry.get_version(pods_env.model, version).tags
    assert tags[f"mlflow-operator.{ns}.rb"].startswith("rollout failed at ")

    # The registry moves on: the next good version rolls out.
    v3 = pods_env.registry.log_version(pods_env.model, c=DIFFERENT_C)
    pods_env.registry.set_alias(pods_env.model, "champion", v3.version)
    eventually(
        lambda: is_ready_on(pods_env.cluster, ns, "rb", v3.version),
        timeout=ROLLOUT_TIMEOUT,
        what="v3",
    )
    eventually_served(url, v3)
    assert status(pods_env.cluster, ns, "rb").get("failedVersions", []) == []


def test_a_memory_limit_too_small_is_reported_as_oomkilled_with_the_limit(
    pods_env: RealPodsEnv,
) -> None:
    """The server process is killed by the kernel while it starts: the user reads why, and
    which limit to raise, in Progressing while it happens and in Degraded after the deadline."""
    ns = pods_env.namespace
    v1 = pods_env.registry.log_version(pods_env.model)
    pods_env.registry.set_alias(pods_env.model, "champion", v1.version)
    small = {"limits": {"memory": "64Mi"}, "requests": {"memory": "64Mi"}}
    serving = on_real_node(pods_env.node, resources=small)
    pods_env.cluster.apply(
        model_deployment(
            "oom", ns, pods_env.model, pods_env.tracking_uri, serving=serving, deadline=45
        )
    )
    progressing = eventually_condition(
        pods_env.cluster, ns, "oom", "Progressing", lambda c: "OOMKilled" in c.get("message", ""),
        timeout=ROLLOUT_TIMEOUT, what="Progressing names the OOM kill",
    )  # fmt: skip
    assert progressing["status"] == "True"
    assert "memory limit 64Mi" in progressing["message"]
    degraded = eventually_condition(
        pods_env.cluster, ns, "oom", "Degraded", lambda c: c.get("status") == "True",
        timeout=45 + 60, what="Degraded after the progress deadline",
    )  # fmt: skip
    assert degraded["reason"] == "RolloutFailed"
    assert "OOMKilled: the container ran out of its memory limit 64Mi" in degraded["message"]
    (pod,) = serving_pods(pods_env.cluster, ns, "oom")
    (container,) = pod["status"]["containerStatuses"]
    assert container["lastState"]["terminated"]["reason"] == "OOMKilled"  # the kubelet agrees


def test_an_image_that_does_not_exist_blocks_the_rollout_and_names_the_image(
    pods_env: RealPodsEnv,
) -> None:
    """An image nobody can pull is the cluster's problem, not the version's: the rollout is
    blocked (not failed) and the message names the image. The registry is on loopback's
    discard port, so the pull is refused at once and nothing leaves the machine."""
    ns = pods_env.namespace
    image = "127.0.0.1:9/mlflow-operator/serving-cpu:does-not-exist"
    v1 = pods_env.registry.log_version(pods_env.model)
    pods_env.registry.set_alias(pods_env.model, "champion", v1.version)
    serving = on_real_node(pods_env.node, image=image)
    pods_env.cluster.apply(
        model_deployment(
            "noimg", ns, pods_env.model, pods_env.tracking_uri, serving=serving, deadline=30
        )
    )
    progressing = eventually_condition(
        pods_env.cluster, ns, "noimg", "Progressing", lambda c: c.get("reason") == "RolloutBlocked",
        timeout=ROLLOUT_TIMEOUT, what="Progressing says the rollout is blocked",
    )  # fmt: skip
    assert image in progressing["message"]
    assert "ImagePullBackOff" in progressing["message"] or "ErrImagePull" in progressing["message"]
    degraded = eventually_condition(
        pods_env.cluster, ns, "noimg", "Degraded", lambda c: c.get("status") == "True",
        timeout=30 + 60, what="Degraded after the progress deadline",
    )  # fmt: skip
    assert degraded["reason"] == "RolloutBlocked"
    assert image in degraded["message"]
    assert status(pods_env.cluster, ns, "noimg").get("failedVersions", []) == []


def serve_a_first_version(env: RealPodsEnv, name: str, *, replicas: int) -> TrainedVersion:
    """A version under the alias, served by a `batched` ModelDeployment once it is Ready."""
    v1 = env.registry.log_version(env.model)
    env.registry.set_alias(env.model, "champion", v1.version)
    serving = on_real_node(env.node, runtime="batched", replicas=replicas)
    env.cluster.apply(
        model_deployment(name, env.namespace, env.model, env.tracking_uri, serving=serving)
    )
    eventually(
        lambda: is_ready_on(env.cluster, env.namespace, name, v1.version),
        timeout=ROLLOUT_TIMEOUT,
        what=f"{replicas} pod(s) of v1",
    )
    return v1


def evict(cluster: KubeCluster, namespace: str, pod: dict[str, Any]) -> tuple[bool, str]:
    """Ask for a pod's eviction as `kubectl drain` does: (granted, the API server's answer)."""
    name = pod["metadata"]["name"]
    eviction = {
        "apiVersion": "policy/v1",
        "kind": "Eviction",
        "metadata": {"name": name, "namespace": namespace},
    }
    result = cluster.kubectl(
        "create", "--raw", f"/api/v1/namespaces/{namespace}/pods/{name}/eviction", "-f", "-",
        input=json.dumps(eviction), check=False,
    )  # fmt: skip
    return result.returncode == 0, result.stdout + result.stderr


def test_serving_pods_fit_a_quota_namespace_and_a_drain_evicts_one_at_a_time(
    pods_env: RealPodsEnv,
) -> None:
    """A namespace whose ResourceQuota counts requests refuses any pod that requests nothing;
    with two replicas, a node drain takes one serving pod at a time, and the budget goes when
    the deployment is scaled back to one."""
    ns, cluster = pods_env.namespace, pods_env.cluster
    require_requests(cluster, ns)
    v1 = serve_a_first_version(pods_env, "drained", replicas=2)
    pods = serving_pods(cluster, ns, "drained")
    assert len(pods) == 2
    for pod in pods:
        (container,) = pod["spec"]["containers"]
        assert container["resources"]["requests"] == {"cpu": "100m", "memory": "256Mi"}
    eventually(
        lambda: (
            get_json(cluster, "-n", ns, "pdb", "drained")
            .get("status", {})
            .get("disruptionsAllowed")
            == 1
        ),
        timeout=30,
        what="the budget allows one disruption",
    )
    first, second = pods
    granted, answer = evict(cluster, ns, first)
    assert granted, answer
    granted, answer = evict(cluster, ns, second)
    assert not granted
    assert "disruption budget" in answer, answer
    eventually(
        lambda: is_ready_on(cluster, ns, "drained", v1.version),
        timeout=ROLLOUT_TIMEOUT,
        what="the evicted pod replaced",
    )

    cluster.kubectl(
        "-n", ns, "patch", "modeldeployment", "drained", "--type=merge",
        "-p", json.dumps({"spec": {"serving": {"replicas": 1}}}),
    )  # fmt: skip
    eventually(
        lambda: cluster.kubectl("-n", ns, "get", "pdb", "drained", check=False).returncode != 0,
        timeout=30,
        what="the budget deleted at one replica",
    )


def test_kubectl_scale_and_an_hpa_scale_the_model_deployment_and_the_operator_keeps_it(
    pods_env: RealPodsEnv,
) -> None:
    """The scale subresource: `kubectl scale mdep` and a HorizontalPodAutoscaler change
    spec.serving.replicas, and the operator rolls that out instead of undoing it. The HPA has
    no metrics here (no metrics server): it scales to its minReplicas through /scale alone."""
    ns, cluster = pods_env.namespace, pods_env.cluster
    v1 = serve_a_first_version(pods_env, "scaled", replicas=1)

    def scale() -> dict[str, Any]:
        found: dict[str, Any] = get_json(
            cluster, "-n", ns, "--subresource=scale", "modeldeployment", "scaled"
        )
        return found

    def ready_pods() -> int:
        return sum(
            1
            for pod in serving_pods(cluster, ns, "scaled")
            if pod["metadata"].get("deletionTimestamp") is None
            and all(c.get("ready") for c in pod["status"].get("containerStatuses", [{}]))
        )

    assert scale()["status"]["replicas"] == 1
    selected = cluster.kubectl(
        "-n", ns, "get", "pods", "-l", scale()["status"]["selector"], "-o", "name"
    ).stdout.split()  # fmt: skip
    assert len(selected) == 1  # the selector HPAs use finds exactly the serving pods

    cluster.kubectl("-n", ns, "scale", "modeldeployment", "scaled", "--replicas=2")
    eventually(lambda: ready_pods() == 2, timeout=ROLLOUT_TIMEOUT, what="two ready pods")
    eventually(lambda: scale()["status"]["replicas"] == 2, timeout=30, what="status.replicas at 2")

    hpa: dict[str, object] = {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": "scaled", "namespace": ns},
        "spec": {
            "scaleTargetRef": {
                "apiVersion": "mlflowops.dev/v1alpha1",
                "kind": "ModelDeployment",
                "name": "scaled",
            },
            "minReplicas": 3,
            "maxReplicas": 4,
            "metrics": [
                {
                    "type": "Resource",
                    "resource": {
                        "name": "cpu",
                        "target": {"type": "Utilization", "averageUtilization": 80},
                    },
                }
            ],
        },
    }
    cluster.apply(hpa)
    eventually(
        lambda: (
            get_json(cluster, "-n", ns, "modeldeployment", "scaled")["spec"]["serving"]["replicas"]
            == 3
        ),
        timeout=60,
        what="the HPA raised spec.serving.replicas to its minimum",
    )
    eventually(lambda: ready_pods() == 3, timeout=ROLLOUT_TIMEOUT, what="three ready pods")
    able = next(
        c
        for c in get_json(cluster, "-n", ns, "hpa", "scaled")["status"]["conditions"]
        if c["type"] == "AbleToScale"
    )
    # it read and wrote the ModelDeployment's /scale (SucceededRescale, or SucceededGetScale
    # at its next resync)
    assert able["status"] == "True", able
    assert able["reason"] in {"SucceededRescale", "SucceededGetScale"}, able
    # reconciles ran after the HPA's write (its rollout was rechecked every 2 s until the
    # three pods were Ready); a little longer, nothing is undone either
    time.sleep(10)
    deployment = get_json(cluster, "-n", ns, "deployment", "scaled")
    assert deployment["spec"]["replicas"] == 3
    assert ready_pods() == 3
    assert status(cluster, ns, "scaled")["servingVersion"] == v1.version


class LoadGenerator:
    """Bounded load on the Service from this machine: `clients` threads, each one request at
    a time, for at most `limit` seconds. Counts answers and failures."""

    def __init__(self, url: str, clients: int, limit: float) -> None:
        self.url, self.limit = url, limit
        self.answered = self.failed = 0
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(clients)]

    def __enter__(self) -> LoadGenerator:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=40)

    def _run(self) -> None:
        body = {"dataframe_split": json.loads(sample_input().to_json(orient="split", index=False))}
        session = requests.Session()
        session.trust_env = False
        ends = time.monotonic() + self.limit
        while not self._stop.is_set() and time.monotonic() < ends:
            try:
                ok = session.post(f"{self.url}/invocations", json=body, timeout=30).ok
            except requests.RequestException:
                ok = False
            with self._lock:
                if ok:
                    self.answered += 1
                else:
                    self.failed += 1


def test_the_autoscaler_follows_the_load_down_to_zero_and_a_burst_at_zero_loses_nothing(
    pods_env: RealPodsEnv,
) -> None:
    """serving.autoscaling on the real node: the operator reads the pods' own /metrics (no
    Prometheus, no metrics server), adds pods while a load generator runs, and removes them all
    scaleDownDelay after it stops (minReplicas 0); no request fails meanwhile. At zero the
    Service sends to the operator's activator: a burst of 50 requests starts a pod, and every
    one of them gets the version's answer."""
    ns, cluster = pods_env.namespace, pods_env.cluster
    v1 = serve_a_first_version(pods_env, "autoscaled", replicas=1)
    autoscaling = {
        "minReplicas": 0,
        "maxReplicas": 3,
        "target": {"requestsPerSecond": 5},
        "scaleDownDelay": "10s",
    }
    cluster.kubectl(
        "-n", ns, "patch", "modeldeployment", "autoscaled", "--type=merge", "-p",
        json.dumps({"spec": {"serving": {"autoscaling": autoscaling}}}),
    )  # fmt: skip

    def ready_pods() -> int:
        return sum(
            1
            for pod in serving_pods(cluster, ns, "autoscaled")
            if pod["metadata"].get("deletionTimestamp") is None
            and all(c.get("ready") for c in pod["status"].get("containerStatuses", [{}]))
        )

    url = service_url(cluster, ns, "autoscaled")
    started = time.monotonic()
    with LoadGenerator(url, clients=4, limit=ROLLOUT_TIMEOUT) as load:
        eventually(lambda: ready_pods() == 3, timeout=ROLLOUT_TIMEOUT, what="three ready pods")
        scaled_up = time.monotonic() - started
    stopped = time.monotonic()
    assert load.failed == 0, f"{load.failed} of {load.answered + load.failed} requests failed"
    scaling = status(cluster, ns, "autoscaled")["autoscaling"]
    assert scaling["desiredReplicas"] == 3
    assert scaling["load"].startswith("requestsPerSecond ")
    wait_scaled_to_zero(pods_env, "autoscaled")
    scaled_down = time.monotonic() - stopped
    endpoints = get_json(cluster, "-n", ns, "endpointslice", "autoscaled-activator")
    assert endpoints["metadata"]["labels"]["kubernetes.io/service-name"] == "autoscaled"
    assert endpoints["endpoints"][0]["addresses"] == [pods_env.node.host_ip]
    assert condition(status(cluster, ns, "autoscaled"), "Ready").get("status") == "True"

    answers, seconds = burst(url, 50)
    failed = [a for a in answers if a != v1.predict()]
    assert len(answers) == 50
    assert failed == [], failed[:3]
    assert status(cluster, ns, "autoscaled")["autoscaling"]["desiredReplicas"] >= 1
    # kopf posts Events from a queue of its own: the last may come a moment after the scale
    eventually(
        lambda: any(m.startswith("0 -> ") for m in scaled_messages(cluster, ns, "autoscaled")),
        timeout=30,
        what="a Scaled Event for the wake-up",
    )
    messages = scaled_messages(cluster, ns, "autoscaled")
    assert any(" -> 3 pods " in m for m in messages), messages
    assert any(m.startswith("3 -> 0 pods") for m in messages), messages
    # a ready pod: requests go straight to it again, not through the operator
    eventually(
        lambda: get_json(cluster, "-n", ns, "endpointslice", "-l",
                         "endpointslice.kubernetes.io/managed-by=activator.mlflowops.dev")["items"]
        == [],
        timeout=30, what="the activator's EndpointSlice gone",
    )  # fmt: skip
    print(
        f"autoscaler: 1 -> 3 ready pods {scaled_up:.1f}s after the load started "
        f"({load.answered} answers, {load.answered / scaled_up:.0f}/s); no pod "
        f"{scaled_down:.1f}s after it stopped (scaleDownDelay 10s); 50 requests at zero pods: "
        f"first answer {min(seconds):.1f}s, last {max(seconds):.1f}s, 0 failures"
    )


def wait_scaled_to_zero(env: RealPodsEnv, name: str) -> None:
    eventually(
        lambda: (
            (status(env.cluster, env.namespace, name).get("autoscaling") or {}).get(
                "desiredReplicas"
            )
            == 0
            and serving_pods(env.cluster, env.namespace, name) == []
        ),
        timeout=120,
        what="no pod left",
    )


def scaled_messages(cluster: KubeCluster, namespace: str, name: str) -> list[str]:
    return [e["message"] for e in events(cluster, namespace, name) if e["reason"] == "Scaled"]


def burst(url: str, count: int) -> tuple[list[list[int] | str], list[float]]:
    """`count` requests at once: each one's predictions (or why it failed), and the seconds
    each took to its answer."""
    body = {"dataframe_split": json.loads(sample_input().to_json(orient="split", index=False))}
    answers: list[list[int] | str] = []
    seconds: list[float] = []
    lock = threading.Lock()
    started = time.monotonic()

    def ask() -> None:
        session = requests.Session()
        session.trust_env = False
        try:
            answer = session.post(f"{url}/invocations", json=body, timeout=ROLLOUT_TIMEOUT)
            result: list[int] | str = (
                [int(p) for p in answer.json()["predictions"]]
                if answer.ok
                else f"{answer.status_code} {answer.text[:200]}"
            )
        except requests.RequestException as error:
            result = repr(error)
        with lock:
            answers.append(result)
            seconds.append(time.monotonic() - started)

    threads = [threading.Thread(target=ask) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=ROLLOUT_TIMEOUT + 10)
    return answers, seconds
