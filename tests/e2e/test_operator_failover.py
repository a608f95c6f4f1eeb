"""Two replicas of the operator with leader election (the chart's default), on real pods: one
acts, the other stands by; SIGKILL the one that acts in the middle of a rollout and the other
takes over within 15 s, finishes the rollout once, and a version that fails after a second
failover stays failed. The rollout guarantees I1-I6 are audited throughout (the sampler of
test_operator_kills). And a second install that would watch the same namespace refuses to act.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.cluster.fixtures import create_namespace
from tests.cluster.launcher import KubeCluster
from tests.cluster.realnode import NodeInfo
from tests.e2e.kube import get_json
from tests.e2e.modeldeployments import condition, is_ready_on, model_deployment, status
from tests.e2e.operator_process import OperatorProcess, local_images_env
from tests.e2e.test_modeldeployment_pods import eventually_served, on_real_node, service_url
from tests.e2e.test_operator_kills import sampling
from tests.mlflowstack.models import DIFFERENT_C, ModelRegistry
from tests.support.polling import eventually
from tests.support.processes import http_ok

pytestmark = [pytest.mark.e2e, pytest.mark.integration]
NAME = "chaos"  # the sampler audits this ModelDeployment
TAKEOVER_GOAL = 15.0  # seconds from the SIGKILL to the standby acting (issue scale-ha)
DEADLINE = 30


def replica(
    cluster: KubeCluster, workdir: Path, lease_namespace: str, watched: str, lease: str = "op"
) -> OperatorProcess:
    """One replica of an install: its leader Lease is `lease_namespace/lease`."""
    workdir.mkdir(parents=True, exist_ok=True)
    return OperatorProcess(
        kubeconfig=cluster.kubeconfig,
        workdir=workdir,
        namespaces=(watched,),
        extra_env={
            **local_images_env(cluster),
            "MLFLOW_OPERATOR_LEADER_ELECTION": "true",
            "MLFLOW_OPERATOR_LEADER_ELECTION_NAMESPACE": lease_namespace,
            "MLFLOW_OPERATOR_LEADER_ELECTION_LEASE": lease,
        },
    )


def leading(operator: OperatorProcess) -> bool:
    try:
        return operator.metric("mlflow_operator_leading") == 1
    except OSError:  # killed
        return False


def lease_holder(cluster: KubeCluster, namespace: str, name: str) -> str:
    lease = get_json(cluster, "-n", namespace, "lease", name)
    return str(lease["spec"].get("holderIdentity") or "")


@pytest.fixture
def ha_namespace(kube_cluster: KubeCluster) -> Iterator[str]:
    namespace = create_namespace(kube_cluster, prefix="ha")  # not the session operator's
    yield namespace
    kube_cluster.kubectl("delete", "namespace", namespace, "--wait=false", check=False)


def test_the_standby_takes_over_within_15_s_of_a_sigkill_mid_rollout_and_nothing_is_lost(
    kube_cluster: KubeCluster,
    crds_installed: KubeCluster,
    real_node: NodeInfo,
    pods_tracking_uri: str,
    mlflow_registry: ModelRegistry,
    model_name: str,
    ha_namespace: str,
    tmp_path: Path,
) -> None:
    ns = ha_namespace
    first = replica(kube_cluster, tmp_path / "a", ns, ns).start()
    eventually(lambda: leading(first), timeout=30, what="the first replica leads")
    second = replica(kube_cluster, tmp_path / "b", ns, ns).start()
    registry = mlflow_registry
    tracking_uri = pods_tracking_uri

    with sampling(kube_cluster, ns) as sampler, contextlib.ExitStack() as cleanup:
        cleanup.callback(first.stop)
        cleanup.callback(second.stop)
        cleanup.callback(
            kube_cluster.kubectl, "delete", "-n", ns, "mdep", "--all", "--timeout=60s", check=False
        )

        def move(version: str) -> None:
            sampler.selected = version
            registry.set_alias(model_name, "champion", version)

        def converge(what: str, done: Callable[[], bool]) -> None:
            logs = f"\nfirst:\n{first.log_tail(40)}\nsecond:\n{second.log_tail(40)}"
            try:
                eventually(done, timeout=240, what=what)
            except AssertionError as error:
                raise AssertionError(f"{error}{logs}") from None
            sampler.audit(quiet=True)
            assert sampler.auditor.violations == [], sampler.auditor.violations

        def rolling_out(version: str) -> Callable[[], bool]:
            def check() -> bool:
                deployment = get_json(kube_cluster, "-n", ns, "deployment", NAME)
                labels = deployment["spec"]["template"]["metadata"]["labels"]
                return bool(labels.get("mlflowops.dev/model-version") == version)

            return check

        def fail_over(dying: OperatorProcess, standby: OperatorProcess) -> float:
            dying.kill()
            killed = time.monotonic()
            eventually(lambda: leading(standby), timeout=60, what="the standby leads", interval=0.2)
            return time.monotonic() - killed

        v1 = registry.log_version(model_name)
        move(v1.version)
        kube_cluster.apply(
            model_deployment(
                NAME, ns, model_name, tracking_uri,
                serving=on_real_node(real_node, runtime="batched"), deadline=DEADLINE,
            )
        )  # fmt: skip
        converge("Ready on v1", lambda: is_ready_on(kube_cluster, ns, NAME, v1.version))
        # the standby has done nothing: no reconcile, no write
        assert not leading(second)
        assert second.reconciles("ModelDeployment") == 0
        assert second.kube_writes() == 0
        assert lease_holder(kube_cluster, ns, "op").startswith(first.process_id())

        # a good version: the leader dies once the new template is out, mid-rollout
        v2 = registry.log_version(model_name, c=DIFFERENT_C)
        move(v2.version)
        eventually(rolling_out(v2.version), timeout=60, what="v2's rollout started")
        takeover = fail_over(first, second)
        print(f"takeover after SIGKILL mid-rollout: {takeover:.1f} s")
        assert takeover <= TAKEOVER_GOAL
        converge("Ready on v2", lambda: is_ready_on(kube_cluster, ns, NAME, v2.version))
        history = status(kube_cluster, ns, NAME).get("history") or []
        assert [h["version"] for h in history].count(v2.version) == 1  # not rolled out twice
        eventually_served(service_url(kube_cluster, ns, NAME), v2)

        # a version that cannot load: the killed replica is back as the standby, the new
        # leader dies mid-rollout, and the failure is still recorded and sticks
        first.start()
        eventually(
            lambda: "standby" in first.log(), timeout=30, what="the restarted replica stands by"
        )
        v3 = registry.log_broken_version(model_name)
        move(v3)
        eventually(rolling_out(v3), timeout=60, what="v3's rollout started")
        takeover = fail_over(second, first)
        print(f"second takeover: {takeover:.1f} s")
        assert takeover <= TAKEOVER_GOAL

        def rolled_back() -> bool:
            st = status(kube_cluster, ns, NAME)
            ready = condition(st, "Ready")
            return (
                v3 in (st.get("failedVersions") or [])
                and st.get("servingVersion") == v2.version
                and (ready.get("status"), ready.get("reason")) == ("True", "ServingPreviousVersion")
            )

        converge("v3 failed, back on v2", rolled_back)
        time.sleep(10)  # two polls later the registry still selects v3: it stays failed
        assert rolled_back()
        assert sampler.errors == []
        assert sampler.auditor.violations == []
        eventually_served(service_url(kube_cluster, ns, NAME), v2)


def test_a_second_install_watching_the_same_namespace_refuses_to_act_until_the_first_goes(
    kube_cluster: KubeCluster, crds_installed: KubeCluster, ha_namespace: str, tmp_path: Path
) -> None:
    ns = ha_namespace
    other_install = create_namespace(kube_cluster, prefix="ha-ops")
    first = replica(kube_cluster, tmp_path / "a", ns, ns, lease="first").start()
    second = replica(kube_cluster, tmp_path / "b", other_install, ns, lease="second")
    try:
        eventually(lambda: leading(first), timeout=30, what="the first install leads")
        second.start(ready=False)  # it refuses to act: never ready
        assert not http_ok(f"http://127.0.0.1:{second.health_port}/readyz")
        kube_cluster.apply(
            model_deployment("refused", ns, "no-such-model", "http://127.0.0.1:9", poll="5s")
        )
        eventually(
            lambda: first.reconciles("ModelDeployment") > 0, timeout=60, what="first reconciles"
        )
        eventually(
            lambda: "already acts in namespace" in second.log(),
            timeout=30,
            what="the second install's log line",
        )
        line = next(s for s in second.log().splitlines() if "already acts in namespace" in s)
        assert f"{ns}/first" in line, line
        assert f"{other_install}/second" in line, line
        events = get_json(kube_cluster, "-n", ns, "events")["items"]
        conflicts = [e for e in events if e["reason"] == "InstallConflict"]
        assert len(conflicts) == 1, conflicts
        assert conflicts[0]["type"] == "Warning"
        assert conflicts[0]["involvedObject"]["name"] == "mlflow-operator-claim"
        time.sleep(5)  # a poll interval: it still does nothing
        assert not leading(second)
        assert second.reconciles("ModelDeployment") == 0
        assert second.kube_writes() == 0

        # the first install goes (a clean stop hands its claim back): the second acts at once
        first.stop()
        eventually(lambda: leading(second), timeout=15, what="the second install leads")
        eventually(
            lambda: second.reconciles("ModelDeployment") > 0, timeout=60, what="second reconciles"
        )
        claim = get_json(kube_cluster, "-n", ns, "lease", "mlflow-operator-claim")
        assert claim["spec"]["holderIdentity"] == f"{other_install}/second"
    finally:
        first.stop()
        second.stop()
        kube_cluster.kubectl("delete", "-n", ns, "mdep", "--all", "--timeout=60s", check=False)
        kube_cluster.kubectl("delete", "namespace", other_install, "--wait=false", check=False)
