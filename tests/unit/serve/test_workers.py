"""Worker count from the cgroup CPU limit, and the listening socket's options."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from mlflow_operator_serve import workers


@pytest.fixture
def cpus(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(workers, "available_cpus", lambda: 8)


@pytest.mark.parametrize(
    ("cpu_max", "expected"),
    [("max 100000", 8), ("200000 100000", 2), ("150000 100000", 1), ("50000 100000", 1)],
)
@pytest.mark.usefixtures("cpus")
def test_cgroup_v2(tmp_path: Path, cpu_max: str, expected: int) -> None:
    (tmp_path / "cpu.max").write_text(f"{cpu_max}\n")
    assert workers.default_worker_count(tmp_path) == expected


@pytest.mark.parametrize(("quota", "expected"), [("-1", 8), ("300000", 3), ("2000000", 8)])
@pytest.mark.usefixtures("cpus")
def test_cgroup_v1(tmp_path: Path, quota: str, expected: int) -> None:
    v1 = tmp_path / "cpu,cpuacct"
    v1.mkdir()
    (v1 / "cpu.cfs_quota_us").write_text(f"{quota}\n")
    (v1 / "cpu.cfs_period_us").write_text("100000\n")
    assert workers.default_worker_count(tmp_path) == expected


@pytest.mark.usefixtures("cpus")
def test_no_cgroup_files_means_all_cpus(tmp_path: Path) -> None:
    assert workers.cgroup_cpu_limit(tmp_path) is None
    assert workers.default_worker_count(tmp_path) == 8


def test_listening_socket_sets_tcp_nodelay() -> None:
    sock = workers.listening_socket("127.0.0.1", 0)
    try:
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
        with socket.create_connection(sock.getsockname()[:2]) as client:
            client.sendall(b"x")
            sock.setblocking(True)
            accepted, _ = sock.accept()
            with accepted:
                # Linux copies the option to accepted sockets; aiohttp sets it again anyway.
                assert accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
    finally:
        sock.close()
