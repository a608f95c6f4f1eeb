"""The host side of the real test node: its slot, namespaces, network, cgroups, and cleanup.

The real node lives in a network namespace and a mount namespace of its own, like a small VM
without the VM: containerd, the kubelet, kube-proxy and CoreDNS run inside both, so their
bridges, routes, nftables tables, pod network namespaces and every mount they make (container
root filesystems, volume tmpfs) stay out of the host's tables. What the host gets is a veth
pair to the node (the node's address 10.251.S.2, the host's 10.251.S.1), two routes (pods and
Services via the node), one cgroup subtree per v1 hierarchy, and the files under the work
directory. The host's sysctls are never written: the kubelet sees its required kernel settings
through files bound over /proc/sys inside its mount namespace only.

Slots let several sessions on one machine each run a node (subnets, names and the Service
range derive from the slot index). A slot is held by an exclusive lock on a file for as long as
its session lives; the lock dies with the process, so a session that finds a slot unlocked but
with a state file left behind knows its owner crashed and cleans up after it (`clean_slot`).
"""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO

from tests.support.cache import cache_root, state_dir

SLOTS = 8
CGROUP_ROOT = Path("/sys/fs/cgroup")
# The kubelet validates these when protectKernelDefaults is on and would otherwise write them
# host-wide (pkg/kubelet/cm/container_manager_linux.go): the node sees them bound over /proc/sys.
KUBELET_KERNEL_SETTINGS = {
    "vm/overcommit_memory": "1",
    "vm/panic_on_oom": "0",
    "kernel/panic": "10",
    "kernel/panic_on_oops": "1",
    "kernel/keys/root_maxkeys": "1000000",
    "kernel/keys/root_maxbytes": "25000000",
}
REQUIRED_COMMANDS = ("ip", "nft", "nsenter", "unshare", "mount", "umount", "runc")
CNI_PLUGINS_DIR = Path("/usr/lib/cni")


class NodeSetupError(RuntimeError):
    """The host cannot run a real node; the message is one line that says what to do."""


@dataclass(frozen=True)
class NodeSlot:
    """Names and addresses of the node in one slot; all derived from the index."""

    index: int

    @property
    def name(self) -> str:
        return f"realnode-{self.index}"

    @property
    def netns(self) -> str:
        return f"mlflow-operator-node-{self.index}"

    @property
    def host_veth(self) -> str:
        return f"mlfonode{self.index}"

    @property
    def host_ip(self) -> str:
        """The host's address on the link to the node: the API server and host services."""
        return f"10.251.{self.index}.1"

    @property
    def node_ip(self) -> str:
        return f"10.251.{self.index}.2"

    @property
    def link_cidr(self) -> str:
        return f"10.251.{self.index}.0/30"

    @property
    def pod_cidr(self) -> str:
        return f"10.250.{self.index}.0/24"

    @property
    def pod_gateway(self) -> str:
        return f"10.250.{self.index}.1"

    @property
    def service_cidr(self) -> str:
        # Each slot's cluster gets its own Service range: the host routes it to that node.
        return f"10.{96 + self.index}.0.0/16"

    @property
    def cgroup_name(self) -> str:
        return f"mlflow-operator-node-{self.index}"

    def lock_path(self) -> Path:
        return state_dir() / f"realnode-{self.index}.lock"

    def containerd_root(self) -> Path:
        """containerd's root (images, snapshots): kept between sessions of this slot."""
        return cache_root() / "realnode" / f"slot-{self.index}" / "containerd"

    def state_path(self) -> Path:
        return state_dir() / f"realnode-{self.index}.json"


def first_service_ip(service_cidr: str) -> str:
    """The `kubernetes` Service's ClusterIP: the first address of the range."""
    return str(next(ipaddress.ip_network(service_cidr).hosts()))


@dataclass
class NodeState:
    """What a node created on the host; written before it is created, so a crash leaves a map."""

    slot: int
    workdir: str
    owner_pid: int
    mount_ns_file: str

    def save(self, path: Path) -> None:
        partial = path.with_suffix(".partial")
        partial.write_text(json.dumps(asdict(self)))
        partial.replace(path)

    @classmethod
    def load(cls, path: Path) -> NodeState | None:
        try:
            return cls(**json.loads(path.read_text()))
        except (OSError, ValueError, TypeError):
            return None


# -- prerequisites -----------------------------------------------------------------------------


def check_host() -> None:
    """Fail fast, with one line, when this host cannot run the node."""
    if os.geteuid() != 0:
        raise NodeSetupError(
            "the real node needs root (network namespaces, cgroups, mounts); run as root, or "
            "set MLFLOW_OPERATOR_TEST_REAL_NODE=0 to run with simulated (KWOK) nodes only"
        )
    missing = [c for c in REQUIRED_COMMANDS if shutil.which(c) is None]
    if not (CNI_PLUGINS_DIR / "bridge").exists():
        missing.append("CNI plugins (/usr/lib/cni/bridge)")
    if missing:
        raise NodeSetupError(
            f"the real node needs {', '.join(missing)}: run `make env` (it installs runc, "
            "containernetworking-plugins, nftables and the other Debian packages)"
        )
    controllers = ("cpu", "cpuacct", "cpuset", "memory", "pids")
    absent = [c for c in controllers if not (CGROUP_ROOT / c / "cgroup.procs").exists()]
    if absent:
        raise NodeSetupError(
            f"the real node runs the kubelet on cgroup v1 hierarchies; {', '.join(absent)} "
            f"not mounted under {CGROUP_ROOT}"
        )


def overlapping_routes(route_lines: list[str], cidrs: list[str]) -> list[str]:
    """The routes (lines of `ip -4 -o route show table all`) that overlap any of cidrs."""
    wanted = [ipaddress.ip_network(c) for c in cidrs]
    found = []
    for line in route_lines:
        words = line.split()
        # "10.0.0.0/8 via ...", "local 10.1.2.3 dev ...", "broadcast ...": the target is the
        # first word that parses as an address or network
        for word in words[:2]:
            try:
                net = ipaddress.ip_network(word, strict=False)
            except ValueError:
                continue
            if net.prefixlen and any(net.overlaps(w) for w in wanted):
                found.append(line.strip())
            break
    return found


def _routes_overlapping(cidrs: list[str]) -> list[str]:
    out = subprocess.run(
        ["ip", "-4", "-o", "route", "show", "table", "all"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    return overlapping_routes(out.splitlines(), cidrs)


def _slot_ranges(slot: NodeSlot) -> list[str]:
    return [slot.link_cidr, slot.pod_cidr, slot.service_cidr]


# -- slots -------------------------------------------------------------------------------------


@dataclass
class HeldSlot:
    slot: NodeSlot
    lock: IO[str]

    def release(self) -> None:
        with contextlib.suppress(OSError):
            fcntl.flock(self.lock, fcntl.LOCK_UN)
        self.lock.close()


def acquire_slot() -> HeldSlot:
    """The first slot no live session holds, after cleaning every slot a crashed session left."""
    chosen: HeldSlot | None = None
    busy: list[str] = []
    for index in range(SLOTS):
        slot = NodeSlot(index)
        if chosen is not None and not slot.state_path().exists():
            continue  # nothing to clean there, and a slot is found already
        lock = slot.lock_path().open("a+")
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.close()
            busy.append(f"slot {index} is held by a running session")
            continue
        if slot.state_path().exists():  # its session died without cleaning up
            clean_slot(slot)
        overlapping = _routes_overlapping(_slot_ranges(slot))
        if chosen is None and not overlapping:
            chosen = HeldSlot(slot, lock)
            continue
        if overlapping:
            busy.append(f"slot {index}: the host route {overlapping[0]!r} overlaps its subnets")
        fcntl.flock(lock, fcntl.LOCK_UN)
        lock.close()
    if chosen is None:
        raise NodeSetupError(
            "no free real-node slot (" + "; ".join(busy) + "): stop the other test sessions "
            "or free those subnets"
        )
    _drop_idle_image_stores(chosen.slot)
    return chosen


def _drop_idle_image_stores(chosen: NodeSlot) -> None:
    """Delete the containerd roots of idle slots but the first: each holds gigabytes of images,
    and a slot other than 0 is used only while another session runs (a later one re-imports)."""
    for index in range(1, SLOTS):
        slot = NodeSlot(index)
        if slot == chosen or not slot.containerd_root().exists():
            continue
        with slot.lock_path().open("a+") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue  # in use
            shutil.rmtree(slot.containerd_root().parent, ignore_errors=True)


# -- commands ----------------------------------------------------------------------------------


def run(*argv: str, check: bool = True, input: str | None = None) -> str:
    result = subprocess.run(argv, capture_output=True, text=True, input=input, check=False)
    if check and result.returncode != 0:
        raise NodeSetupError(f"{' '.join(argv)} failed: {result.stderr.strip() or result.stdout}")
    return result.stdout


def in_node(slot: NodeSlot, mount_ns_file: Path) -> list[str]:
    """The argv prefix that runs a program inside the node's network and mount namespaces."""
    return ["nsenter", f"--net=/run/netns/{slot.netns}", f"--mount={mount_ns_file}"]


# -- network -----------------------------------------------------------------------------------


def create_network(slot: NodeSlot) -> None:
    """The node's network namespace, the veth pair to it, host routes, and an egress guard."""
    run("ip", "netns", "add", slot.netns)
    node_if = f"{slot.host_veth}n"
    run("ip", "link", "add", slot.host_veth, "type", "veth", "peer", "name", node_if)
    run("ip", "link", "set", node_if, "netns", slot.netns)
    run("ip", "addr", "add", f"{slot.host_ip}/30", "dev", slot.host_veth)
    run("ip", "link", "set", slot.host_veth, "up")
    node = ["ip", "-n", slot.netns]
    run(*node, "link", "set", "lo", "up")
    run(*node, "link", "set", node_if, "name", "eth0")
    run(*node, "addr", "add", f"{slot.node_ip}/30", "dev", "eth0")
    run(*node, "link", "set", "eth0", "up")
    run(*node, "route", "add", "default", "via", slot.host_ip)
    for cidr in (slot.pod_cidr, slot.service_cidr):
        run("ip", "route", "add", cidr, "via", slot.node_ip, "dev", slot.host_veth)
    # The namespace's own forwarding switch (a fresh namespace starts with it off); the host's
    # settings are not touched.
    run("ip", "netns", "exec", slot.netns, "sysctl", "-q", "-w", "net.ipv4.ip_forward=1")
    # Pods may talk to each other, to Services and to the host's address on the link (the API
    # server, the test MLflow); anything else they send towards the host is dropped here, so no
    # pod traffic leaves this machine.
    guard = f"""
table inet egress_guard {{
  chain forward {{
    type filter hook forward priority 0; policy accept;
    iifname != "eth0" oifname "eth0" ip daddr != {slot.host_ip} counter drop
  }}
}}
"""
    run("ip", "netns", "exec", slot.netns, "nft", "-f", "-", input=guard)


def delete_network(slot: NodeSlot) -> None:
    for cidr in (slot.pod_cidr, slot.service_cidr):
        run("ip", "route", "del", cidr, check=False)
    run("ip", "link", "del", slot.host_veth, check=False)  # takes its peer along
    run("ip", "netns", "del", slot.netns, check=False)


# -- mount namespace ---------------------------------------------------------------------------


def create_mount_namespace(slot: NodeSlot, workdir: Path) -> Path:
    """A persistent mount namespace for the node (bound to a file), set up for the kubelet.

    Inside it, private tmpfs hide /run, /var/lib and /var/log (containerd's shim sockets, CNI's
    cache, the kubelet's device-plugin socket and /var/log/containers links land there, not on
    the host), and files holding the kubelet's required kernel settings are bound over the
    /proc/sys entries it checks.
    """
    ns_dir = workdir / "ns"
    ns_dir.mkdir(parents=True, exist_ok=True)
    ns_file = ns_dir / "mnt"
    ns_file.touch()
    # unshare --mount=FILE needs FILE on a mount with private propagation.
    run("mount", "--bind", str(ns_dir), str(ns_dir))
    run("mount", "--make-private", str(ns_dir))
    settings_dir = workdir / "kernel-settings"
    settings_dir.mkdir(exist_ok=True)
    binds = []
    for key, value in KUBELET_KERNEL_SETTINGS.items():
        current = Path("/proc/sys", key)
        if not current.exists() or current.read_text().strip() == value:
            continue
        holder = settings_dir / key.replace("/", ".")
        holder.write_text(value + "\n")
        binds.append(f"mount --bind {holder} {current}")
    script = "\n".join(
        [
            "set -eu",
            "mount --make-rprivate /",
            "for dir in /run /var/lib /var/log; do mount -t tmpfs -o mode=0755 tmpfs $dir; done",
            "mkdir -p /run/netns /var/lib/kubelet/device-plugins /var/log/containers",
            *binds,
        ]
    )
    run("unshare", f"--mount={ns_file}", "--propagation", "private", "sh", "-c", script)
    return ns_file


# -- cgroups -----------------------------------------------------------------------------------


def cgroup_hierarchies() -> list[Path]:
    return [
        p
        for p in sorted(CGROUP_ROOT.iterdir())
        if (p / "cgroup.procs").exists() and not p.is_symlink()
    ]


def create_cgroup_root(slot: NodeSlot) -> None:
    """The node's cgroup in every v1 hierarchy (the kubelet's cgroupRoot must exist)."""
    for hierarchy in cgroup_hierarchies():
        path = hierarchy / slot.cgroup_name
        path.mkdir(exist_ok=True)
        if hierarchy.name == "cpuset":  # a new cpuset holds no CPUs until given its parent's
            for name in ("cpuset.cpus", "cpuset.mems"):
                (path / name).write_text((hierarchy / name).read_text())


def _cgroup_dirs(slot: NodeSlot) -> list[Path]:
    found: list[Path] = []
    for hierarchy in cgroup_hierarchies():
        root = hierarchy / slot.cgroup_name
        if root.is_dir():
            found.extend(p for p in root.rglob("*") if p.is_dir())
            found.append(root)
    return sorted(found, key=lambda p: len(p.parts), reverse=True)  # deepest first


def _pids_in_cgroups(slot: NodeSlot) -> set[int]:
    pids: set[int] = set()
    for directory in _cgroup_dirs(slot):
        with contextlib.suppress(OSError):
            pids.update(int(p) for p in (directory / "cgroup.procs").read_text().split())
    return pids


def remove_cgroups(slot: NodeSlot) -> list[str]:
    """rmdir the node's cgroup trees, deepest first; returns the ones that would not go."""
    left = []
    for directory in _cgroup_dirs(slot):
        try:
            directory.rmdir()
        except OSError:
            left.append(str(directory))
    return left


# -- processes ---------------------------------------------------------------------------------


def _ns_inode(path: str) -> int | None:
    try:
        return os.stat(path).st_ino
    except OSError:
        return None


def _pids_in_namespaces(inodes: set[int]) -> set[int]:
    pids = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        for kind in ("net", "mnt"):
            if _ns_inode(f"{entry}/ns/{kind}") in inodes:
                pids.add(int(entry.name))
                break
    return pids


def kill_node_processes(slot: NodeSlot, mount_ns_file: Path | None) -> None:
    """SIGKILL everything of the node: its agents and shims (in its namespaces) and every
    container process (in its cgroups). Shims and containers outlive a killed containerd, so
    stopping the agents alone is not enough."""
    inodes = {
        i
        for i in (_ns_inode(f"/run/netns/{slot.netns}"), _ns_inode(str(mount_ns_file or "")))
        if i is not None
    }
    inodes.discard(_ns_inode("/proc/self/ns/net"))  # never the host's own namespaces
    inodes.discard(_ns_inode("/proc/self/ns/mnt"))
    for _ in range(50):
        pids = _pids_in_namespaces(inodes) | _pids_in_cgroups(slot)
        pids.discard(os.getpid())
        if not pids:
            return
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.1)


# -- cleanup -----------------------------------------------------------------------------------


def _mounts_under(path: Path) -> list[str]:
    prefix = str(path)
    mounts = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        target = line.split()[4].replace("\\040", " ")
        if target == prefix or target.startswith(prefix + "/"):
            mounts.append(target)
    return sorted(mounts, key=len, reverse=True)


def clean_slot(slot: NodeSlot) -> None:
    """Remove what a node of this slot left on the host. Idempotent; safe when nothing is left.

    Runs under the slot's lock: at start (after a crash) and at stop.
    """
    state = NodeState.load(slot.state_path())
    mount_ns = Path(state.mount_ns_file) if state else None
    kill_node_processes(slot, mount_ns)
    if state is not None:
        workdir = Path(state.workdir)
        for target in _mounts_under(workdir):
            run("umount", "-l", target, check=False)
    delete_network(slot)
    for _ in range(20):  # a cgroup goes once the kernel has reaped its last task
        if not remove_cgroups(slot):
            break
        time.sleep(0.1)
    if state is not None:
        shutil.rmtree(state.workdir, ignore_errors=True)
    slot.state_path().unlink(missing_ok=True)


@contextlib.contextmanager
def held_slot() -> Iterator[HeldSlot]:
    held = acquire_slot()
    try:
        yield held
    finally:
        held.release()
