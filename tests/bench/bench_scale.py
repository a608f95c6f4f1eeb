"""ModelDeployments by the thousand: operator memory, idle API requests, registry requests, and
one alias move rolled out to 1,000 of them.

    .venv/bin/python -m tests.bench.bench_scale [--scales 1000,5000,10000] [--hot 1000]
        [--models 1000] [--idle 60] [--operator-env NAME=VALUE ...]

Runs the real pieces with simulated pods, as issue scale-ha allows for scale: the local control
plane with KWOK nodes only (no real node), MLflow on PostgreSQL and MinIO, and `mlflow-operator
run` as a process with leader election on (as the chart runs it), as a ServiceAccount whose
requests the API server's audit log records (tests/support/audit.py): API requests are counted
by the API server, not estimated. Prints numbers; nothing here passes or fails.

`--models` registered models; the first (the hot one) is followed by the first `--hot`
ModelDeployments, one pod each; the others follow the rest round robin with `replicas: 0`.
At each scale N (cumulative, one namespace):

- ready_s: from the apply of the new ones until the last of the N turned Ready (its Ready
  condition's lastTransitionTime);
- idle: the operator's API requests in `--idle` seconds with nothing changing, per second and
  by verb and resource; status writes among them;
- registry_gets_per_interval: MLflow GETs per poll interval (30 s), through a counting proxy
  (null when `--idle` is shorter than the interval: such a window may hold no poll at all);
- rss_mib, peak_rss_mib: the operator process's resident memory, now and at its highest
  (`peak_rss_mib_after_move` again after the alias move);
- alias move: the hot model's alias moved to a new version; seconds until all `--hot` are
  Ready on it (every pod of it ready; the last Ready condition's lastTransitionTime), the
  API requests the operator made meanwhile, its reconciles and their mean duration, where the
  time went (`move_timeline`), the API server's busiest kinds of request meanwhile (everyone's,
  with their mean latency), and how many serving Deployments have each generation after it.
  MLflow's webhook tells the operator of the move (docs/modeldeployment.md#webhooks, for fast
  promotion); without it the move is seen at the next poll, up to 30 s later.

`--floor`: after the last scale, the same rollout without the operator, to tell its share from
the cluster's: the operator stopped, the `--hot` serving Deployments it made given a new pod
template at once (what `kubectl rollout restart` patches: a rollout like a version change's),
16 patches at a time as the operator's reconcile slots would (not by kubectl itself, whose
client-side rate limit took 18 s for 50); seconds until the last of them has all its pods on
the new template and available (its Progressing condition's lastUpdateTime at reason
NewReplicaSetAvailable). What the control plane alone needs for that many rollouts on this
machine: no operator can roll them out faster.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import requests
from lightkube import AsyncClient, KubeConfig
from lightkube.resources.apps_v1 import Deployment
from prometheus_client.parser import text_string_to_metric_families

from mlflow_operator.builders.modeldeployment import serving_name
from mlflow_operator.registry.client import RegistryClient
from mlflow_operator.registry.webhook import EVENTS
from tests.bench.bench_promotion import operator_rss_mib
from tests.bench.world import wait
from tests.cluster.launcher import ControlPlane, KubeCluster
from tests.cluster.simulation import cpu_node
from tests.e2e.modeldeployments import model_deployment
from tests.e2e.operator_process import OperatorProcess
from tests.mlflowstack import stack as stack_module
from tests.mlflowstack.models import ModelRegistry
from tests.support.audit import AuditedRequest, audited_kubeconfig, requests_of
from tests.support.counting_proxy import CountingProxy

ROOT = Path(__file__).resolve().parents[2]
NAMESPACE = "bench-scale"
HOT_LABEL = "bench.mlflowops.dev/hot"
POLL = 30.0
APPLY_BATCH = 200
WRITES = ("create", "update", "patch", "delete")
PROGRESS_EVERY = 10.0
DONE_POLL = 10.0
FLOOR_PATCHES = 16  # the operator's reconcile slots (max_concurrent_reconciles)
CONTROLLER_MANAGER_AT_SCALE = (
    "--kube-api-qps=300",
    "--kube-api-burst=600",
    "--concurrent-deployment-syncs=50",
    "--concurrent-replicaset-syncs=50",
)


def add_pod_room(cluster: KubeCluster, pods: int) -> None:
    """Simulated nodes with room for `pods` pods (the cluster's own hold 330)."""
    per_node = 1000
    for index in range(-(-pods // per_node)):
        node = cpu_node(100 + index)
        name = f"kwok-bench-{index}"
        node["metadata"]["name"] = name
        node["metadata"]["labels"]["kubernetes.io/hostname"] = name
        room = {"cpu": "2000", "memory": "8Ti", "pods": str(per_node), "ephemeral-storage": "10Ti"}
        node["status"] = {"allocatable": room, "capacity": room}
        cluster.apply(node)


def register_models(tracking_uri: str, registry: ModelRegistry, count: int) -> list[str]:
    """`count` registered models, each with version 1 behind alias champion. One real logged
    model; the others' versions name the same artifacts (the registry is what is measured)."""
    hot = "bench-hot"
    first = registry.log_version(hot)
    registry.set_alias(hot, "champion", first.version)
    source = str(registry.client.get_model_version(hot, first.version).source)  # models:/m-<id>
    model_id = source.rsplit("/", 1)[-1]  # MLflow 3 wants the logged model that holds it
    api = f"{tracking_uri}/api/2.0/mlflow"
    session = requests.Session()
    names = [hot]
    for index in range(1, count):
        name = f"bench-{index}"
        for path, body in (
            ("registered-models/create", {"name": name}),
            ("model-versions/create", {"name": name, "source": source, "model_id": model_id}),
            ("registered-models/alias", {"name": name, "alias": "champion", "version": "1"}),
        ):
            session.post(f"{api}/{path}", json=body, timeout=30).raise_for_status()
        names.append(name)
    return names


def deployments(names: list[str], start: int, stop: int, hot: int, uri: str) -> list[Any]:
    found = []
    for index in range(start, stop):
        is_hot = index < hot
        model = names[0] if is_hot else names[1 + index % (len(names) - 1)]
        manifest = model_deployment(
            f"md-{index}", NAMESPACE, model, uri, poll=f"{POLL:.0f}s",
            serving={"replicas": 1 if is_hot else 0},
        )  # fmt: skip
        manifest["metadata"]["labels"] = {HOT_LABEL: str(is_hot).lower()}
        found.append(manifest)
    return found


def readiness(cluster: KubeCluster, *selector: str) -> list[tuple[str, str, str]]:
    """(servingVersion, Ready status, since when) of every ModelDeployment (matching
    `selector`)."""
    template = (
        '{range .items[*]}{.status.servingVersion}{" "}'
        '{.status.conditions[?(@.type=="Ready")].status}{" "}'
        '{.status.conditions[?(@.type=="Ready")].lastTransitionTime}{"\\n"}{end}'
    )
    out = cluster.kubectl("get", "mdep", "-n", NAMESPACE, *selector, "-o", f"jsonpath={template}")
    return [tuple(line.split(" ", 2)) for line in out.stdout.splitlines()]  # type: ignore[misc]


def condition_time(text: str) -> datetime:
    """A condition's lastTransitionTime or lastUpdateTime (RFC 3339, whole seconds, `Z`)."""
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def ready_times(cluster: KubeCluster, *selector: str) -> list[datetime]:
    """When each ModelDeployment (matching `selector`) last turned Ready or not Ready."""
    return [condition_time(when) for _, _, when in readiness(cluster, *selector)]


def seconds_until_last_ready(cluster: KubeCluster, since: datetime, *selector: str) -> float:
    """From `since` until the last of them turned Ready, as their Ready conditions record it:
    the bench lists 1,000 ModelDeployments (6.7 MB) only every DONE_POLL seconds, so its own
    reads neither load the API server much nor round the time up to a poll."""
    return (max(ready_times(cluster, *selector)) - since).total_seconds()


class Progress:
    """Prints how many are done every PROGRESS_EVERY seconds of a long wait."""

    def __init__(self, what: str) -> None:
        self.what, self.started, self.said = what, time.monotonic(), 0.0

    def tell(self, done: int, expected: int) -> None:
        elapsed = time.monotonic() - self.started
        if elapsed - self.said >= PROGRESS_EVERY:
            self.said = elapsed
            print(f"  {self.what}: {done}/{expected} after {elapsed:.0f}s", flush=True)


def all_ready(
    cluster: KubeCluster,
    expected: int,
    *selector: str,
    version: str = "",
    progress: Progress | None = None,
) -> bool:
    rows = readiness(cluster, *selector)
    done = sum(
        1 for serving, ready, _ in rows if ready == "True" and (not version or serving == version)
    )
    if progress is not None:
        progress.tell(done, expected)
    return len(rows) == expected and done == expected


def generations(cluster: KubeCluster) -> dict[str, int]:
    """How many serving Deployments have each metadata.generation: 1 for one never changed, 2
    for one rolled out once since it was made (each spec change is a generation, and a rollout
    the deployment controller must start)."""
    out = cluster.kubectl(
        "get", "deployments", "-n", NAMESPACE,
        "-o", 'jsonpath={range .items[*]}{.metadata.generation}{"\\n"}{end}',
    )  # fmt: skip
    return dict(sorted(Counter(out.stdout.split()).items()))


def summary(requests_seen: list[AuditedRequest]) -> dict[str, int]:
    return dict(Counter(r.what for r in requests_seen).most_common())


def measure(
    cluster: KubeCluster,
    registry: ModelRegistry,
    operator: OperatorProcess,
    user: str,
    proxy: CountingProxy,
    names: list[str],
    scales: list[int],
    hot: int,
    idle_seconds: float,
) -> None:
    created = 0
    hot_version = 1
    for target in scales:
        batch = deployments(names, created, target, hot, proxy.url)
        started = datetime.now(UTC)
        for first in range(0, len(batch), APPLY_BATCH):
            items = {
                "apiVersion": "v1",
                "kind": "List",
                "items": batch[first : first + APPLY_BATCH],
            }
            cluster.kubectl("apply", "--server-side", "-f", "-", input=json.dumps(items))
        created = target

        applied = Progress(f"Ready of {target}")

        def everything_ready(count: int = target, progress: Progress = applied) -> bool:
            return all_ready(cluster, count, progress=progress)

        wait(everything_ready, 3600, f"{target} Ready", every=DONE_POLL)
        ready_s = seconds_until_last_ready(cluster, started)

        time.sleep(POLL)  # the last rollouts' status writes and Events
        seen = len(requests_of(cluster, user))
        gets = proxy.total("GET ")
        time.sleep(idle_seconds)
        idle = requests_of(cluster, user)[seen:]
        registry_gets = (proxy.total("GET ") - gets) / (idle_seconds / POLL)
        status_writes = [r for r in idle if r.resource.endswith("/status") and r.verb in WRITES]
        row: dict[str, Any] = {
            "deployments": target,
            "ready_s": round(ready_s, 1),
            "idle_requests_per_s": round(len(idle) / idle_seconds, 3),
            "idle_status_writes": len(status_writes),
            "idle_requests": summary(idle),
            "registry_gets_per_interval": round(registry_gets, 1) if idle_seconds >= POLL else None,
            "rss_mib": round(operator_rss_mib(operator), 1),
            "peak_rss_mib": round(operator_rss_mib(operator, "VmHWM"), 1),
        }
        print(json.dumps(row), flush=True)  # at rest, before the move (which may take long)
        row = {"deployments": target}

        hot_version += 1
        version = registry.log_version(names[0]).version
        assert int(version) == hot_version, (version, hot_version)
        seen = len(requests_of(cluster, user))
        reconciles_before = reconciles(operator)
        served_before = api_server_requests(cluster)
        moved = datetime.now(UTC)
        registry.set_alias(names[0], "champion", version)

        rolled = Progress(f"Ready on version {version}")

        def hot_ready(on: str = version, progress: Progress = rolled) -> bool:
            return all_ready(cluster, hot, "-l", f"{HOT_LABEL}=true", version=on, progress=progress)

        wait(hot_ready, 1800, f"{hot} Ready on version {version}", every=DONE_POLL)
        row["alias_move_rolled_out_s"] = round(
            seconds_until_last_ready(cluster, moved, "-l", f"{HOT_LABEL}=true"), 1
        )
        during = requests_of(cluster, user)[seen:]
        row["alias_move_timeline_s"] = move_timeline(cluster, during, moved, hot)
        count, seconds = difference(reconciles(operator), reconciles_before)
        row["alias_move_reconciles"] = int(count)
        row["alias_move_reconcile_mean_s"] = round(seconds / count, 3) if count else None
        row["alias_move_api_server_busiest"] = busiest(api_server_requests(cluster), served_before)
        row["alias_move_requests"] = len(during)
        row["alias_move_requests_by_kind"] = summary(during)
        row["serving_deployment_generations"] = generations(cluster)
        row["peak_rss_mib_after_move"] = round(operator_rss_mib(operator, "VmHWM"), 1)
        print(json.dumps(row), flush=True)


def rollouts_done(cluster: KubeCluster, names: set[str]) -> list[datetime]:
    """When each of `names` finished its last rollout, for those that have: every pod on the
    newest template and available, no old one left."""
    template = (
        '{range .items[*]}{.metadata.name}{" "}{.metadata.generation}{" "}'
        '{.status.observedGeneration}{" "}{.spec.replicas}{" "}{.status.replicas}{" "}'
        '{.status.updatedReplicas}{" "}{.status.availableReplicas}{" "}'
        '{.status.conditions[?(@.type=="Progressing")].reason}{" "}'
        '{.status.conditions[?(@.type=="Progressing")].lastUpdateTime}{"\\n"}{end}'
    )
    out = cluster.kubectl("get", "deployments", "-n", NAMESPACE, "-o", f"jsonpath={template}")
    done = []
    for line in out.stdout.splitlines():
        name, generation, observed, wanted, *counts, reason, when = line.split(" ")
        if (
            name in names
            and generation == observed
            and counts == [wanted] * 3
            and reason == "NewReplicaSetAvailable"
        ):
            done.append(condition_time(when))
    return done


def reconciles(operator: OperatorProcess) -> tuple[float, float]:
    """How many ModelDeployment reconciles the operator has run, and their seconds in all."""
    name = "mlflow_operator_reconcile_duration_seconds"
    return (
        operator.metric(f"{name}_count", kind="ModelDeployment"),
        operator.metric(f"{name}_sum", kind="ModelDeployment"),
    )


def api_server_requests(cluster: KubeCluster) -> dict[str, tuple[float, float]]:
    """Every client's requests the API server has answered, by verb and resource: how many
    and their seconds in all (its apiserver_request_duration_seconds; watches left out)."""
    text = cluster.kubectl("get", "--raw", "/metrics").stdout
    found: dict[str, tuple[float, float]] = {}
    for family in text_string_to_metric_families(text):
        if family.name != "apiserver_request_duration_seconds":
            continue
        for sample in family.samples:
            labels = sample.labels
            if sample.name.endswith("_bucket") or labels.get("verb") in ("WATCH", "CONNECT"):
                continue
            what = f"{labels['verb']} {labels['resource']}"
            if labels.get("subresource"):
                what += f"/{labels['subresource']}"
            count, seconds = found.get(what, (0.0, 0.0))
            if sample.name.endswith("_count"):
                count += sample.value
            else:
                seconds += sample.value
            found[what] = (count, seconds)
    return found


def busiest(
    now: dict[str, tuple[float, float]], before: dict[str, tuple[float, float]], top: int = 10
) -> dict[str, list[float]]:
    """The `top` kinds of request the API server answered most between `before` and `now`:
    how many, and their mean milliseconds (the operator's and the cluster's own)."""
    served = {what: difference(now[what], before.get(what, (0.0, 0.0))) for what in now}
    ranked = sorted(served.items(), key=lambda item: -item[1][0])[:top]
    return {
        what: [int(count), round(1000 * seconds / count, 1)]
        for what, (count, seconds) in ranked
        if count
    }


def difference(now: tuple[float, float], before: tuple[float, float]) -> tuple[float, float]:
    """(count, seconds) since `before`."""
    return now[0] - before[0], now[1] - before[1]


def quantiles(seconds: list[float]) -> list[float]:
    """Median, 90th percentile and last of `seconds`."""
    ordered = sorted(seconds)
    if not ordered:
        return []
    return [round(ordered[int(len(ordered) * q)], 1) for q in (0.5, 0.9)] + [round(ordered[-1], 1)]


def move_timeline(
    cluster: KubeCluster, during: list[AuditedRequest], moved: datetime, hot: int
) -> dict[str, list[float]]:
    """Where a move's time goes, in seconds after it (median, 90th percentile, last): the
    operator patched each serving Deployment (its first patch: the new template), the cluster
    rolled it out, the operator saw that and turned the ModelDeployment Ready."""
    names = {serving_name(f"md-{index}") for index in range(hot)}
    patched: dict[str, datetime] = {}
    for request in during:
        name = request.uri.split("?", 1)[0].rsplit("/", 1)[-1]
        if request.what == "patch deployments" and name in names:
            patched.setdefault(name, request.at)
    return {
        name: quantiles([(at - moved).total_seconds() for at in times])
        for name, times in (
            ("deployment_patched", list(patched.values())),
            ("deployment_rolled_out", rollouts_done(cluster, names)),
            ("ready", ready_times(cluster, "-l", f"{HOT_LABEL}=true")),
        )
    }


async def restart(cluster: KubeCluster, names: list[str], when: datetime) -> None:
    """What `kubectl rollout restart` patches, into each of `names`, FLOOR_PATCHES at a time."""
    client = AsyncClient(config=KubeConfig.from_file(cluster.kubeconfig))
    slots = asyncio.Semaphore(FLOOR_PATCHES)
    stamp = {"kubectl.kubernetes.io/restartedAt": when.isoformat()}
    patch = {"spec": {"template": {"metadata": {"annotations": stamp}}}}

    async def one(name: str) -> None:
        async with slots:
            await client.patch(Deployment, name, patch, namespace=NAMESPACE)

    try:
        await asyncio.gather(*(one(name) for name in names))
    finally:
        await client.close()


def control_plane_floor(cluster: KubeCluster, hot: int) -> None:
    """The `--hot` serving Deployments rolled out with no operator running (see --floor)."""
    names = [serving_name(f"md-{index}") for index in range(hot)]
    started = datetime.now(UTC)
    clock = time.monotonic()
    asyncio.run(restart(cluster, names, started))
    patched_s = time.monotonic() - clock
    rolled = Progress("rolled out without the operator")

    def everything_rolled_out() -> bool:
        done = rollouts_done(cluster, set(names))
        rolled.tell(len(done), hot)
        # the conditions' times are whole seconds
        return len(done) == hot and all(when >= started.replace(microsecond=0) for when in done)

    wait(everything_rolled_out, 1800, f"{hot} rolled out", every=DONE_POLL)
    last = max(rollouts_done(cluster, set(names)))
    row = {
        "floor_deployments": hot,
        "patches_sent_s": round(patched_s, 1),
        "rolled_out_s": round((last - started).total_seconds(), 1),
    }
    print(json.dumps(row), flush=True)


async def webhook(tracking_uri: str, operator: OperatorProcess) -> None:
    client = RegistryClient(tracking_uri)
    await client.create_webhook(
        "bench", operator.webhook_url, list(EVENTS), operator.webhook_secret
    )
    await client.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--scales", default="1000,5000,10000")
    parser.add_argument("--hot", type=int, default=1000)
    parser.add_argument("--models", type=int, default=1000)
    parser.add_argument("--idle", type=float, default=60.0)
    parser.add_argument(
        "--floor",
        action="store_true",
        help="then roll out the --hot serving Deployments with the operator stopped",
    )
    parser.add_argument(
        "--operator-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="an environment variable for the operator process (e.g. its allocator's)",
    )
    args = parser.parse_args()
    operator_env = dict(item.split("=", 1) for item in args.operator_env)
    scales = [int(s) for s in args.scales.split(",") if s]
    workdir = Path(tempfile.mkdtemp(prefix="bench-scale-"))
    # kube-controller-manager's defaults (20 requests/s to the API server, 5 Deployments and 5
    # ReplicaSets synced at once) roll out ~5 Deployments a second whatever the operator does:
    # 1,000 at once took minutes in the deployment controller's queue (generation ahead of
    # observedGeneration). Large clusters raise them; so does this bench.
    plane = ControlPlane(
        real_node=False,
        controller_args=CONTROLLER_MANAGER_AT_SCALE,
        etcd_quota_bytes=8 << 30,  # etcd's own limit; 256 MiB filled during the alias move
    )
    try:
        cluster = plane.start()
        cluster.kubectl("apply", "--server-side", "-f", str(ROOT / "crds"))
        cluster.kubectl("wait", "--for=condition=Established", "crd/modeldeployments.mlflowops.dev")
        cluster.kubectl("create", "namespace", NAMESPACE)
        add_pod_room(cluster, 2 * args.hot)  # a rollout surges a new pod before the old goes
        with stack_module.running(workdir / "mlflow") as stack:
            registry = ModelRegistry(stack.tracking_uri)
            started = time.monotonic()
            names = register_models(stack.tracking_uri, registry, args.models)
            print(f"{len(names)} registered models in {time.monotonic() - started:.0f}s")
            kubeconfig, user = audited_kubeconfig(cluster, "bench", workdir / "kubeconfig")
            proxy = CountingProxy(stack.tracking_uri).start()
            operator = OperatorProcess(
                kubeconfig,
                workdir,
                extra_env={
                    "MLFLOW_OPERATOR_LEADER_ELECTION": "true",
                    "MLFLOW_OPERATOR_LEADER_ELECTION_NAMESPACE": "audited",
                    **operator_env,
                },
            ).start()
            asyncio.run(webhook(stack.tracking_uri, operator))
            try:
                measure(cluster, registry, operator, user, proxy, names, scales, args.hot,
                        args.idle)  # fmt: skip
                if args.floor:
                    operator.stop()
                    control_plane_floor(cluster, args.hot)
            finally:
                operator.stop()
                proxy.stop()
    finally:
        plane.cleanup()


if __name__ == "__main__":
    main()
