"""One embedded test cluster used by two pytest processes at once (`make test`, tests/suite.py).

The e2e tier mostly waits (for pods, rollouts, the kubelet): on the 2-core machine a second
pytest process on the same cluster took a fresh clone's `make test` from 43.7 to 28-30 minutes,
where a second cluster of its own made every test slower (docs/testing.md). The first process
(the *owner*) starts the cluster as always and writes what the second (the *guest*) needs into a
directory both are given; the guest waits for it and starts nothing of the cluster's. The guest
holds ``session.lock`` shared for its whole life (tests/suite.py takes it and hands the
descriptor over; ``flock``: the kernel releases it when the process dies, so a crash never
leaves it held). The owner takes it exclusively before a test marked ``exclusive`` (a
cluster-wide operator, a restarted API server) and before it stops the cluster: those run once
the guest has ended, last in the owner's order. Not per test: the guest keeps objects between
its tests (test_mlflowserver.py's server lives for the module), and a cluster-wide operator
rewrote that server's StatefulSets with its own default images between two of them (a fresh run
of 2026-12-05 failed so).

Which tests run in the guest is decided per module (``GUEST_MODULES``): whole modules keep
module-scoped fixtures in one process. They must keep to their own namespaces (named
``u-*``; the owner's are ``t-*``) and never touch what is cluster-wide.
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Literal, TypeVar

from tests.cluster.launcher import KubeCluster
from tests.cluster.realnode import NodeInfo

ROLE_ENV = "MLFLOW_OPERATOR_TEST_SHARE_ROLE"  # "owner" or "guest"; unset: not shared
DIR_ENV = "MLFLOW_OPERATOR_TEST_SHARE_DIR"
NAMESPACE_PREFIX_ENV = "MLFLOW_OPERATOR_TEST_NAMESPACE_PREFIX"
GUEST_NAMESPACE_PREFIX = "u"
EXCLUSIVE_MARKER = "exclusive"
CLUSTER_WAIT_SECONDS = 1800.0  # a cold owner builds the cluster and images first

# Long modules whose tests keep to their own namespaces and real pods, chosen so both
# processes end about together (2026-12-05: 30.5 min with test_model_environments.py here as
# well, against 27.9 min for the owner's tests; it moved over).
GUEST_MODULES = (
    "tests/e2e/test_modeldeployment_pods.py",
    "tests/e2e/test_mlflowserver.py",
    "tests/e2e/test_monitoring.py",
)

Role = Literal["owner", "guest"]
T = TypeVar("T")


def role() -> Role | None:
    value = os.environ.get(ROLE_ENV, "")
    if value in ("owner", "guest"):
        return value  # type: ignore[return-value]
    if value:
        raise ValueError(f"{ROLE_ENV} must be 'owner' or 'guest', not {value!r}")
    return None


def share_dir() -> Path:
    return Path(os.environ[DIR_ENV])


def check_guest_item(nodeid: str, exclusive: bool) -> None:
    """A test of a guest module must not need the cluster to itself."""
    if exclusive:
        raise ValueError(
            f"{nodeid} is marked {EXCLUSIVE_MARKER}, but its module runs in the second process "
            "of a shared cluster: take the module out of GUEST_MODULES"
        )


def runs_in(module_path: str, who: Role) -> bool:
    """Whether a test of this module (a path relative to the repository) runs in `who`."""
    return (module_path in GUEST_MODULES) == (who == "guest")


# -- the cluster's description ---------------------------------------------------------------


def publish(cluster: KubeCluster, directory: Path) -> None:
    """Write what a guest needs of the owner's cluster (atomically: it polls for the file)."""
    info = {
        "kubeconfig": str(cluster.kubeconfig),
        "server": cluster.server,
        "node": asdict(cluster.node) if cluster.node is not None else None,
    }
    partial = directory / "cluster.json.partial"
    partial.write_text(json.dumps(info))
    partial.replace(directory / "cluster.json")


def published_cluster(directory: Path, timeout: float = CLUSTER_WAIT_SECONDS) -> KubeCluster:
    """The owner's cluster, once it has published it."""
    path = directory / "cluster.json"
    deadline = time.monotonic() + timeout
    while not path.exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"no cluster published in {path} after {timeout:.0f}s")
        time.sleep(1.0)
    info = json.loads(path.read_text())
    node = info["node"]
    return KubeCluster(
        kubeconfig=Path(info["kubeconfig"]),
        server=info["server"],
        node=NodeInfo(**{**node, "ctr": tuple(node["ctr"])}) if node else None,
        borrowed=True,
    )


# -- locks -----------------------------------------------------------------------------------


def open_session_lock(directory: Path) -> int:
    """For tests/suite.py: a descriptor holding ``session.lock`` shared, to hand to the guest
    (the lock lasts as long as any process keeps the descriptor open)."""
    fd = os.open(directory / "session.lock", os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(fd, fcntl.LOCK_SH)
    return fd


def wait_for_guest(directory: Path) -> None:
    """Block until no guest holds the session lock (it has exited)."""
    with (directory / "session.lock").open("ab") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)  # and let go when closed


def exclusive_last(items: list[T], exclusive: Callable[[T], bool]) -> list[T]:
    """The owner's tests in their order, those that need the cluster alone moved to the end."""
    return sorted(items, key=exclusive)  # stable: each group keeps its order
