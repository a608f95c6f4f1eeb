"""The real node's host-side decisions that need no root: slot addresses, subnet conflicts and
the one-line errors of a host that cannot run it. The node itself is tested by every e2e test
that runs a real pod."""

from __future__ import annotations

import ipaddress
import itertools

import pytest

from tests.cluster import nodehost
from tests.cluster.nodehost import NodeSetupError, NodeSlot, overlapping_routes

ROUTES = [
    "default via 192.0.2.1 dev eth0 ",
    "10.88.0.0/16 dev cni-podman0 proto kernel scope link src 10.88.0.1 linkdown ",
    "192.0.2.0/24 dev eth0 proto kernel scope link src 192.0.2.2 ",
    "local 10.88.0.1 dev cni-podman0 table local proto kernel scope host src 10.88.0.1 ",
    "broadcast 127.255.255.255 dev lo table local proto kernel scope link src 127.0.0.1 ",
]


def test_slots_never_share_an_address_range_or_a_name() -> None:
    slots = [NodeSlot(i) for i in range(nodehost.SLOTS)]
    ranges = [
        ipaddress.ip_network(cidr)
        for slot in slots
        for cidr in (slot.link_cidr, slot.pod_cidr, slot.service_cidr)
    ]
    for a, b in itertools.combinations(ranges, 2):
        assert not a.overlaps(b), (a, b)
    for attribute in ("name", "netns", "host_veth", "cgroup_name"):
        assert len({getattr(s, attribute) for s in slots}) == len(slots)
    # Linux interface names are at most 15 characters
    assert all(len(s.host_veth) + 1 <= 15 for s in slots)  # its peer gets one more
    slot = NodeSlot(3)
    assert ipaddress.ip_address(slot.host_ip) in ipaddress.ip_network(slot.link_cidr)
    assert ipaddress.ip_address(slot.node_ip) in ipaddress.ip_network(slot.link_cidr)
    assert nodehost.first_service_ip(slot.service_cidr) == "10.99.0.1"


def test_a_route_in_a_slots_subnets_is_found_and_others_are_not() -> None:
    assert overlapping_routes(ROUTES, [NodeSlot(0).pod_cidr, NodeSlot(0).service_cidr]) == []
    # a host that already routes 10.96.0.0/12 (another cluster's Services) blocks slot 0
    busy = [*ROUTES, "10.96.0.0/12 via 192.0.2.9 dev eth0 "]
    assert overlapping_routes(busy, [NodeSlot(0).service_cidr]) == [busy[-1].strip()]
    # a single address counts too
    assert overlapping_routes(ROUTES, ["10.88.0.0/30"]) == [ROUTES[1].strip(), ROUTES[3].strip()]


def test_a_host_without_root_is_told_how_to_run_without_the_node(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(nodehost.os, "geteuid", lambda: 1000)
    with pytest.raises(NodeSetupError) as error:
        nodehost.check_host()
    assert "MLFLOW_OPERATOR_TEST_REAL_NODE=0" in str(error.value)
    assert "\n" not in str(error.value)


def test_a_missing_program_is_named_with_the_command_that_installs_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(nodehost.os, "geteuid", lambda: 0)
    monkeypatch.setattr(nodehost.shutil, "which", lambda name: None if name == "nft" else name)
    with pytest.raises(NodeSetupError) as error:
        nodehost.check_host()
    message = str(error.value)
    assert "nft" in message
    assert "make env" in message
    assert "\n" not in message
