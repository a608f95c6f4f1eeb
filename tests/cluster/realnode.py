"""A real Kubernetes node next to the simulated ones: containerd, the kubelet, kube-proxy and
CoreDNS, running the project's images in real containers (runc).

The node runs in namespaces of its own (tests/cluster/nodehost.py); the launcher starts it in
two steps so that containerd and the image import overlap with the control plane's start:
``RealNode.start_runtime()`` before the API server, ``RealNode.join(...)`` after it.

Pods land here only when they ask for it (the node carries a NoSchedule taint; see
``PLACEMENT``); everything else still goes to the KWOK nodes. See tests/cluster/README.md.
"""

from __future__ import annotations

import json
import os
import subprocess
import textwrap
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tests.cluster import nodehost
from tests.cluster.api import ApiClient
from tests.cluster.nodebuild import NodePrograms
from tests.cluster.nodehost import HeldSlot, NodeSlot, NodeState
from tests.support.polling import eventually
from tests.support.processes import ManagedProcess, http_ok

NODE_LABEL = "node.mlflowops.dev/pool"
NODE_POOL = "real"
TAINT_KEY = "node.mlflowops.dev/real"
# What a pod spec adds to run on the real node (and only there).
PLACEMENT: dict[str, Any] = {
    "nodeSelector": {NODE_LABEL: NODE_POOL},
    "tolerations": [{"key": TAINT_KEY, "operator": "Exists", "effect": "NoSchedule"}],
}
# containerd's sandbox image: built locally (tests/images), never pulled.
PAUSE_IMAGE = "localhost/mlflow-operator/pause:3.10"
LOCAL_IMAGE_PREFIX = "localhost/mlflow-operator/"  # images of tests/images
IMPORT_FLAGS = ("--local", "--discard-unpacked-layers")
CLUSTER_DOMAIN = "cluster.local"
KUBE_PROXY_HEALTH_PORT = 10256
COREDNS_READY_PORT = 8181
READY_TIMEOUT = 120.0


@dataclass(frozen=True)
class NodeInfo:
    """What tests need to know of the real node."""

    name: str
    node_ip: str
    host_ip: str  # the host's address as pods see it: where host services are reachable
    pod_cidr: str
    service_cidr: str
    images: Mapping[str, str]  # image name (tests/images) -> the tag containerd has
    ctr: tuple[str, ...]  # ctr's argv for the node's containerd (namespace k8s.io)

    @property
    def placement(self) -> dict[str, Any]:
        return PLACEMENT

    def tag_image(self, source: str, target: str) -> None:
        """Give an image the node has a second name (as a registry would serve a new tag)."""
        subprocess.run(
            [*self.ctr, "images", "tag", "--force", source, target], capture_output=True, check=True
        )


@dataclass
class RealNode:
    held: HeldSlot
    workdir: Path
    programs: NodePrograms
    cluster_binary: Path
    # full image name -> docker-archive tar; None: import nothing and leave the store alone
    image_archives: Mapping[str, Path] | None
    processes: list[ManagedProcess] = field(default_factory=list)
    _imports: list[subprocess.Popen[bytes]] = field(default_factory=list)
    _mount_ns: Path | None = None

    @property
    def slot(self) -> NodeSlot:
        return self.held.slot

    @property
    def socket(self) -> Path:
        return self.workdir / "containerd.sock"

    # -- step 1: namespaces, containerd, image import ------------------------------------------

    def start_runtime(self) -> None:
        """Namespaces, network and containerd; starts importing the images in the background."""
        slot = self.slot
        self.workdir.mkdir(parents=True, exist_ok=True)
        NodeState(
            slot=slot.index,
            workdir=str(self.workdir),
            owner_pid=os.getpid(),
            mount_ns_file=str(self.workdir / "ns" / "mnt"),
        ).save(slot.state_path())
        nodehost.create_network(slot)
        self._mount_ns = nodehost.create_mount_namespace(slot, self.workdir)
        nodehost.create_cgroup_root(slot)
        config = self.workdir / "containerd.toml"
        config.write_text(containerd_config(self.workdir, slot.containerd_root(), self.socket))
        cni = self.workdir / "cni"
        cni.mkdir(exist_ok=True)
        (cni / "10-realnode.conflist").write_text(cni_config(slot, self.workdir))
        self._start_containerd(config)
        if self._ctr_list("containers") or self._ctr_list("sandboxes"):
            self._forget_pods_of_earlier_sessions(config)
        self._start_image_imports()

    def _start_containerd(self, config: Path) -> None:
        containerd = self._start(
            "containerd",
            [str(self.programs.containerd), "--config", str(config)],
            # containers inherit the shim's limits, and runc may only lower them here
            prefix=["prlimit", "--nofile=20000:20000", "--nproc=4096:4096"],
        )
        eventually(
            lambda: self._ctr("version").returncode == 0,
            timeout=60,
            what="containerd answers",
            interval=0.1,
            processes=[containerd],
        )

    def _forget_pods_of_earlier_sessions(self, config: Path) -> None:
        """containerd's root outlives sessions (the images in it take a minute to import), and
        with it the records of an earlier session's containers and pod sandboxes, whose
        processes are gone. Remove them, and restart containerd so that its CRI plugin does not
        keep them in memory: the new kubelet starts on an empty node."""
        for kind in ("containers", "sandboxes"):
            stale = self._ctr_list(kind)
            if stale:
                self._ctr(kind, "rm", *stale)
        (containerd,) = [p for p in self.processes if p.name == "containerd"]
        containerd.stop(timeout=10)
        self.processes.remove(containerd)
        self._start_containerd(config)

    def _start_image_imports(self) -> None:
        """Import the images containerd lacks, in the background; remove ones no longer built."""
        if self.image_archives is None:
            return
        present = set(self._ctr_list("images"))
        wanted = set(self.image_archives)
        stale = [name for name in present - wanted if name.startswith(LOCAL_IMAGE_PREFIX)]
        if stale:
            # --sync: wait for the garbage collector to free their snapshots (gigabytes)
            self._ctr("images", "rm", "--sync", *stale)
        for name, archive in self.image_archives.items():
            if name in present:
                continue
            self._imports.append(
                subprocess.Popen(
                    # The unpacked snapshots are what runs; the layer blobs would only cost disk
                    # (discarding them needs the client-side import: --local).
                    [*self._ctr_argv(), "images", "import", *IMPORT_FLAGS, str(archive)],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.PIPE,
                )
            )

    # -- step 2: the agents, once the API server is up -----------------------------------------

    def join(self, api: ApiClient, kubeconfig: Path) -> None:
        """kubelet, kube-proxy and CoreDNS; returns when all three work."""
        slot = self.slot
        self._wait_for_imports()
        kubelet_config = self.workdir / "kubelet.yaml"
        kubelet_config.write_text(kubelet_config_yaml(slot, self.workdir, self.socket, kubeconfig))
        kubelet = self._start(
            "kubelet",
            [
                str(self.cluster_binary),
                "kubelet",
                f"--config={kubelet_config}",
                f"--kubeconfig={kubeconfig}",
                f"--root-dir={self.workdir / 'kubelet'}",
                f"--cert-dir={self.workdir / 'kubelet' / 'pki'}",
                f"--hostname-override={slot.name}",
                f"--node-ip={slot.node_ip}",
                f"--node-labels=type=real,{NODE_LABEL}={NODE_POOL}",
                f"--register-with-taints={TAINT_KEY}=true:NoSchedule",
                "--v=1",
            ],
        )
        proxy = self._start(
            "kube-proxy",
            [
                str(self.cluster_binary),
                "kube-proxy",
                f"--kubeconfig={kubeconfig}",
                f"--hostname-override={slot.name}",
                "--proxy-mode=nftables",
                f"--cluster-cidr={slot.pod_cidr}",
                f"--bind-address={slot.node_ip}",
                f"--healthz-bind-address={slot.node_ip}:{KUBE_PROXY_HEALTH_PORT}",
                "--metrics-bind-address=127.0.0.1:10249",
                "--oom-score-adj=0",
                # zeros: leave the host's conntrack sysctls as they are
                "--conntrack-max-per-core=0",
                "--conntrack-tcp-timeout-established=0",
                "--conntrack-tcp-timeout-close-wait=0",
                "--conntrack-udp-timeout=0",
                "--conntrack-udp-timeout-stream=0",
                f"--nodeport-addresses={slot.node_ip}/32",
            ],
        )
        corefile = self.workdir / "Corefile"
        corefile.write_text(corefile_text(slot, kubeconfig))
        coredns = self._start("coredns", [str(self.programs.coredns), "-conf", str(corefile)])
        watched = [kubelet, proxy, coredns, *self.processes[:1]]
        eventually(
            lambda: _node_ready(api, slot.name),
            timeout=READY_TIMEOUT,
            what=f"{slot.name} Ready",
            interval=0.2,
            processes=watched,
        )
        eventually(
            lambda: http_ok(f"http://{slot.node_ip}:{KUBE_PROXY_HEALTH_PORT}/healthz"),
            timeout=READY_TIMEOUT,
            what="kube-proxy /healthz",
            interval=0.2,
            processes=watched,
        )
        eventually(
            lambda: http_ok(f"http://{slot.node_ip}:{COREDNS_READY_PORT}/ready"),
            timeout=READY_TIMEOUT,
            what="CoreDNS /ready",
            interval=0.2,
            processes=watched,
        )

    def info(self, images: Mapping[str, str]) -> NodeInfo:
        slot = self.slot
        return NodeInfo(
            name=slot.name,
            node_ip=slot.node_ip,
            host_ip=slot.host_ip,
            pod_cidr=slot.pod_cidr,
            service_cidr=slot.service_cidr,
            images=dict(images),
            ctr=tuple(self._ctr_argv()),
        )

    # -- stop ----------------------------------------------------------------------------------

    def stop(self) -> None:
        """Stop the agents, kill every container, and leave the host as it was."""
        for importing in self._imports:
            importing.kill()
        for process in reversed(self.processes):
            process.stop(timeout=5)
        self.processes.clear()
        nodehost.clean_slot(self.slot)
        self.held.release()

    def log_tails(self, lines: int = 40) -> str:
        return "\n".join(p.log_tail(lines) for p in self.processes)

    # -- helpers -------------------------------------------------------------------------------

    def _start(
        self, name: str, argv: list[str], *, prefix: list[str] | None = None
    ) -> ManagedProcess:
        """Start a program inside the node's namespaces."""
        assert self._mount_ns is not None
        process = ManagedProcess(
            name=name,
            argv=[*nodehost.in_node(self.slot, self._mount_ns), *(prefix or []), *argv],
            log_path=self.workdir / "logs" / f"{name}.log",
            cwd=self.workdir,
            # containerd finds the shim and runc on PATH
            env={
                "PATH": f"{self.programs.shim.parent}:/usr/local/sbin:/usr/local/bin:"
                "/usr/sbin:/usr/bin:/sbin:/bin",
                "GOGC": "50",
            },
        ).start()
        self.processes.append(process)
        return process

    def _ctr_argv(self) -> list[str]:
        return [str(self.programs.ctr), "--address", str(self.socket), "--namespace", "k8s.io"]

    def _ctr(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*self._ctr_argv(), *args], capture_output=True, text=True, check=False
        )

    def _ctr_list(self, kind: str) -> list[str]:
        return self._ctr(kind, "ls", "-q").stdout.split()

    def _wait_for_imports(self) -> None:
        failures = []
        for process in self._imports:
            _, stderr = process.communicate(timeout=600)
            if process.returncode != 0:
                lines = stderr.decode(errors="replace").strip().splitlines()
                failures.append(" ".join(line for line in lines if "DEPRECATION" not in line))
        self._imports.clear()
        if failures:
            raise nodehost.NodeSetupError(f"importing images into containerd: {failures[0]}")


def _node_ready(api: ApiClient, name: str) -> bool:
    node = api.get(f"/api/v1/nodes/{name}").json()
    return any(
        c["type"] == "Ready" and c["status"] == "True"
        for c in node.get("status", {}).get("conditions", [])
    )


# -- configuration files -----------------------------------------------------------------------


def containerd_config(workdir: Path, root: Path, socket: Path) -> str:
    """containerd for CRI on this host: no CAP_SYS_RESOURCE, cgroup v1, local images only."""
    return textwrap.dedent(
        f"""\
        version = 3
        root = '{root}'
        state = '{workdir / "containerd" / "state"}'
        oom_score = 0
        [grpc]
          address = '{socket}'
        [ttrpc]
          address = '{socket}.ttrpc'
        [plugins]
          [plugins.'io.containerd.cri.v1.images']
            snapshotter = 'overlayfs'
            [plugins.'io.containerd.cri.v1.images'.pinned_images]
              sandbox = '{PAUSE_IMAGE}'
          [plugins.'io.containerd.cri.v1.runtime']
            enable_selinux = false
            disable_apparmor = true
            # without CAP_SYS_RESOURCE, negative OOM scores (sandbox -998) must be clamped
            restrict_oom_score_adj = true
            tolerate_missing_hugetlb_controller = true
            disable_hugetlb_controller = true
            netns_mounts_under_state_dir = true
            enable_unprivileged_ports = true
            enable_unprivileged_icmp = true
            cdi_spec_dirs = []
            [plugins.'io.containerd.cri.v1.runtime'.containerd]
              default_runtime_name = 'runc'
              [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
                runtime_type = 'io.containerd.runc.v2'
                [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
                  BinaryName = '/usr/sbin/runc'
                  Root = '{workdir / "runc"}'
                  SystemdCgroup = false
            [plugins.'io.containerd.cri.v1.runtime'.cni]
              bin_dirs = ['{nodehost.CNI_PLUGINS_DIR}']
              conf_dir = '{workdir / "cni"}'
              max_conf_num = 1
          [plugins.'io.containerd.grpc.v1.cri']
            disable_tcp_service = true
            stream_server_address = '127.0.0.1'
            stream_server_port = '0'
          [plugins.'io.containerd.nri.v1.nri']
            disable = true
        """
    )


def cni_config(slot: NodeSlot, workdir: Path) -> str:
    """A bridge for the pods; hairpin so that a pod reaches itself through its Service."""
    return json.dumps(
        {
            "cniVersion": "1.0.0",
            "name": f"realnode-{slot.index}",
            "plugins": [
                {
                    "type": "bridge",
                    "bridge": "cni0",
                    "isGateway": True,
                    "ipMasq": False,
                    "hairpinMode": True,
                    "ipam": {
                        "type": "host-local",
                        "ranges": [[{"subnet": slot.pod_cidr, "gateway": slot.pod_gateway}]],
                        "routes": [{"dst": "0.0.0.0/0"}],
                        "dataDir": str(workdir / "cni-ipam"),
                    },
                }
            ],
        },
        indent=2,
    )


def kubelet_config_yaml(slot: NodeSlot, workdir: Path, socket: Path, kubeconfig: Path) -> str:
    resolv = workdir / "resolv.conf"
    # The pods' resolver is the cluster DNS; no search domains or servers of the host leak in.
    resolv.write_text("")
    ca = kubeconfig.parent / "pki" / "ca.crt"
    config = {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "failCgroupV1": False,  # this host has cgroup v1 hierarchies
        "cgroupDriver": "cgroupfs",
        "cgroupRoot": f"/{slot.cgroup_name}",
        "cgroupsPerQOS": True,
        "enforceNodeAllocatable": ["pods"],
        "failSwapOn": False,
        "oomScoreAdj": 0,  # the default -999 needs CAP_SYS_RESOURCE
        "maxOpenFiles": 20000,  # the host's hard limit
        # Check, never write, the kernel settings (they are bound over /proc/sys in the
        # node's mount namespace); and no iptables chains of the kubelet's own.
        "protectKernelDefaults": True,
        "makeIPTablesUtilChains": False,
        "volumePluginDir": str(workdir / "kubelet" / "volume-plugins"),
        "containerRuntimeEndpoint": f"unix://{socket}",
        "imageServiceEndpoint": f"unix://{socket}",
        "address": slot.node_ip,
        "port": 10250,
        "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1",
        "healthzPort": 10248,
        "authentication": {
            "anonymous": {"enabled": False},
            "webhook": {"enabled": True},
            "x509": {"clientCAFile": str(ca)},
        },
        "authorization": {"mode": "Webhook"},
        "podLogsDir": str(workdir / "pod-logs"),
        "resolvConf": str(resolv),
        "clusterDomain": CLUSTER_DOMAIN,
        "clusterDNS": [slot.node_ip],
        "serializeImagePulls": False,
        "podPidsLimit": -1,
        "imageGCHighThresholdPercent": 95,
        "imageGCLowThresholdPercent": 90,
        "evictionHard": {
            "memory.available": "100Mi",
            "nodefs.available": "5%",
            "imagefs.available": "5%",
        },
    }
    return yaml.safe_dump(config)


def corefile_text(slot: NodeSlot, kubeconfig: Path) -> str:
    """Cluster DNS only: Service and pod names; other names get no answer (no egress)."""
    return textwrap.dedent(
        f"""\
        .:53 {{
            bind {slot.node_ip}
            errors
            health 127.0.0.1:8080
            ready {slot.node_ip}:{COREDNS_READY_PORT}
            kubernetes {CLUSTER_DOMAIN} in-addr.arpa ip6.arpa {{
                kubeconfig {kubeconfig}
                pods insecure
                fallthrough in-addr.arpa ip6.arpa
            }}
            cache 30
        }}
        """
    )
