"""What KWOK simulates: the nodes of the test cluster and the lifecycle stages of nodes and pods.

Pods never run a container. KWOK moves a scheduled pod to Running and Ready right away, except
pods selected by an *unready rule*: those become Running but never Ready, the way a serving pod
whose model fails to load looks on a real cluster (for rollback tests).

Unready rules
-------------
- Always on: a pod with the label ``kwok.mlflowops.dev/never-ready`` (any non-empty value).
- Set by a test at run time (``KubeCluster.keep_pods_unready``): a pod whose label ``<key>`` has
  one of the given values, e.g. ``mlflowops.dev/model-version in {"8"}``.

The stages are KWOK Stage objects in the cluster (KWOK runs with ``--enable-crds=Stage``), so a
test changes the rules by applying new Stage objects; KWOK picks them up within a second. A rule
acts on pods that start after it is applied: a pod that is already Ready stays Ready.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

STAGE_API_VERSION = "kwok.x-k8s.io/v1alpha1"
NEVER_READY_LABEL = "kwok.mlflowops.dev/never-ready"
GPU_RESOURCE = "nvidia.com/gpu"
GPU_LABEL = "nvidia.com/gpu.present"
# Stages this module owns carry this label, so that replacing the rules can prune stale ones.
MANAGED_BY_LABEL = "kwok.mlflowops.dev/managed-by"
MANAGED_BY = "mlflow-operator-tests"

Manifest = dict[str, Any]


@dataclass(frozen=True)
class UnreadyRule:
    """Pods whose label ``label`` has one of ``values`` (or any value, if none) stay unready."""

    label: str
    values: tuple[str, ...] = ()

    @property
    def query(self) -> str:
        # A KWOK selector key is a jq query over the pod; json.dumps quotes the label key for jq.
        return f".metadata.labels[{json.dumps(self.label)}]"

    def matches(self) -> dict[str, Any]:
        if self.values:
            return {"key": self.query, "operator": "In", "values": list(self.values)}
        return {"key": self.query, "operator": "Exists"}

    def excludes(self) -> dict[str, Any]:
        if self.values:
            return {"key": self.query, "operator": "NotIn", "values": list(self.values)}
        return {"key": self.query, "operator": "DoesNotExist"}


DEFAULT_UNREADY_RULES: tuple[UnreadyRule, ...] = (UnreadyRule(NEVER_READY_LABEL),)

# -- nodes -------------------------------------------------------------------------------------

CPU_NODES = 3
GPU_NODES = 2


def _node(name: str, memory: str, labels: dict[str, str], extra: dict[str, str]) -> Manifest:
    resources = {"cpu": "8", "memory": memory, "pods": "110", "ephemeral-storage": "100Gi", **extra}
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "labels": {
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
                "type": "kwok",
                **labels,
            },
            # Tells KWOK (and people) that no kubelet stands behind this node.
            "annotations": {"kwok.x-k8s.io/node": "fake", "node.alpha.kubernetes.io/ttl": "0"},
        },
        "spec": {},
        "status": {"allocatable": resources, "capacity": resources},
    }


def cpu_node(index: int) -> Manifest:
    return _node(f"kwok-cpu-{index}", "32Gi", {"node.mlflowops.dev/pool": "cpu"}, {})


def gpu_node(index: int) -> Manifest:
    node = _node(
        f"kwok-gpu-{index}",
        "64Gi",
        {"node.mlflowops.dev/pool": "gpu", GPU_LABEL: "true"},
        {GPU_RESOURCE: "4"},
    )
    # The taint GPU pools carry in real clusters: only pods that tolerate it land here.
    node["spec"]["taints"] = [{"key": GPU_RESOURCE, "value": "present", "effect": "NoSchedule"}]
    return node


def simulated_nodes() -> list[Manifest]:
    return [*(cpu_node(i) for i in range(CPU_NODES)), *(gpu_node(i) for i in range(GPU_NODES))]


# -- stages ------------------------------------------------------------------------------------

_NODE_READY_TEMPLATE = """\
{{ $now := Now }}
conditions:
{{ range NodeConditions }}
- lastHeartbeatTime: {{ $now | Quote }}
  lastTransitionTime: {{ $now | Quote }}
  message: {{ .message | Quote }}
  reason: {{ .reason | Quote }}
  status: {{ .status | Quote }}
  type: {{ .type | Quote }}
{{ end }}
addresses:
- address: {{ NodeIP | Quote }}
  type: InternalIP
- address: {{ NodeName | Quote }}
  type: Hostname
allocatable:
{{ YAML .status.allocatable 1 }}
capacity:
{{ YAML .status.capacity 1 }}
nodeInfo:
  architecture: amd64
  operatingSystem: linux
  kubeletVersion: {{ printf "kwok-%s" Version | Quote }}
  containerRuntimeVersion: {{ printf "kwok-%s" Version | Quote }}
phase: Running
"""

# Pod IPs come from KWOK's --cidr; hostIP is the node's simulated address.
_POD_STARTED_TEMPLATE = """\
{{ $now := Now }}
conditions:
- lastTransitionTime: {{ $now | Quote }}
  status: "True"
  type: Initialized
- lastTransitionTime: {{ $now | Quote }}
  status: "{{READY}}"
  type: ContainersReady
- lastTransitionTime: {{ $now | Quote }}
  status: "{{READY}}"
  type: Ready
{{ range .spec.readinessGates }}
- lastTransitionTime: {{ $now | Quote }}
  status: "{{READY}}"
  type: {{ .conditionType | Quote }}
{{ end }}
containerStatuses:
{{ range .spec.containers }}
- image: {{ .image | Quote }}
  name: {{ .name | Quote }}
  ready: {{READY_BOOL}}
  started: true
  restartCount: 0
  state:
    running:
      startedAt: {{ $now | Quote }}
{{ end }}
initContainerStatuses:
{{ range .spec.initContainers }}
- image: {{ .image | Quote }}
  name: {{ .name | Quote }}
  ready: true
  restartCount: 0
  state:
    terminated:
      exitCode: 0
      reason: Completed
      startedAt: {{ $now | Quote }}
      finishedAt: {{ $now | Quote }}
{{ end }}
hostIP: {{ NodeIPWith .spec.nodeName | Quote }}
{{ $meta := .metadata }}
podIP: {{ PodIPWith .spec.nodeName ( or .spec.hostNetwork false ) ( or $meta.uid "" )
  ( or $meta.name "" ) ( or $meta.namespace "" ) | Quote }}
phase: Running
startTime: {{ $now | Quote }}
"""

_POD_SUCCEEDED_TEMPLATE = """\
{{ $now := Now }}
conditions:
- lastTransitionTime: {{ $now | Quote }}
  status: "False"
  type: Ready
  reason: PodCompleted
containerStatuses:
{{ range .spec.containers }}
- image: {{ .image | Quote }}
  name: {{ .name | Quote }}
  ready: false
  started: false
  restartCount: 0
  state:
    terminated:
      exitCode: 0
      reason: Completed
      startedAt: {{ $now | Quote }}
      finishedAt: {{ $now | Quote }}
{{ end }}
phase: Succeeded
"""

_NOT_DELETED = {"key": ".metadata.deletionTimestamp", "operator": "DoesNotExist"}
_PENDING = {"key": ".status.phase", "operator": "In", "values": ["Pending"]}


def _pod_started_template(ready: bool) -> str:
    return _POD_STARTED_TEMPLATE.replace("{{READY}}", str(ready)).replace(
        "{{READY_BOOL}}", str(ready).lower()
    )


def _stage(name: str, kind: str, expressions: list[dict[str, Any]], nxt: Manifest) -> Manifest:
    return {
        "apiVersion": STAGE_API_VERSION,
        "kind": "Stage",
        "metadata": {"name": name, "labels": {MANAGED_BY_LABEL: MANAGED_BY}},
        "spec": {
            "resourceRef": {"apiGroup": "v1", "kind": kind},
            "selector": {"matchExpressions": expressions},
            "next": nxt,
        },
    }


def node_stages() -> list[Manifest]:
    not_ready = {
        "key": '.status.conditions.[] | select( .type == "Ready" ) | .status',
        "operator": "NotIn",
        "values": ["True"],
    }
    return [_stage("node-ready", "Node", [not_ready], {"statusTemplate": _NODE_READY_TEMPLATE})]


def pod_stages(unready_rules: Sequence[UnreadyRule] = DEFAULT_UNREADY_RULES) -> list[Manifest]:
    """Pending -> Running+Ready (or Running, never Ready for ruled pods); Job pods -> Succeeded."""
    ready = _stage(
        "pod-ready",
        "Pod",
        [_NOT_DELETED, _PENDING, *(rule.excludes() for rule in unready_rules)],
        {"statusTemplate": _pod_started_template(ready=True)},
    )
    unready = [
        _stage(
            f"pod-unready-{index}",
            "Pod",
            [_NOT_DELETED, _PENDING, rule.matches()],
            {"statusTemplate": _pod_started_template(ready=False)},
        )
        for index, rule in enumerate(unready_rules)
    ]
    job_done = _stage(
        "pod-job-succeeded",
        "Pod",
        [
            _NOT_DELETED,
            {"key": ".status.phase", "operator": "In", "values": ["Running"]},
            {"key": ".metadata.ownerReferences.[].kind", "operator": "In", "values": ["Job"]},
        ],
        {"statusTemplate": _POD_SUCCEEDED_TEMPLATE},
    )
    # Without a kubelet nobody finishes a graceful deletion: KWOK removes the pod at once.
    delete = _stage(
        "pod-delete",
        "Pod",
        [{"key": ".metadata.deletionTimestamp", "operator": "Exists"}],
        {"delete": True},
    )
    return [ready, *unready, job_done, delete]


def all_stages(unready_rules: Sequence[UnreadyRule] = DEFAULT_UNREADY_RULES) -> list[Manifest]:
    return [*node_stages(), *pod_stages(unready_rules)]
