"""The data-plane contract (tests/dataplane_contract.py) against the Linux
data plane, for real: netlink and nftables in network namespaces (root).

Each case gets a fresh "node" namespace whose ``eth0`` is a veth to a
"gateway" namespace; the test's thread enters the node namespace for the
case (the plane opens its netlink and nftables sockets there, and the
threads it starts inherit it) and goes back home afterwards, even on failure.
"""
from __future__ import annotations

import os
import subprocess
from types import SimpleNamespace

import pytest

from tests.dataplane_contract import DataplaneContract
from tests.nodens import GATEWAY, NodeNamespaces, ip

pytestmark = pytest.mark.root


class LinuxHarness(NodeNamespaces):
    def __init__(self) -> None:
        super().__init__("dp", "eth0")
        try:
            ip("-n", self.node, "addr", "add", "192.168.77.2/24", "dev", "eth0")
            ip("-n", self.node, "route", "add", "default", "via", GATEWAY)
            self.enter()
            from agent.dataplane import create  # noqa: PLC0415
            self.plane = create("linux")
            self.facts = self.plane.open(SimpleNamespace(underlay_if="", node_ip="", mtu=0))
        except BaseException:
            self.close()
            raise

    def foreign(self):
        ip("-n", self.node, "link", "add", "fx0", "type", "veth", "peer", "name", "fx1")
        ip("-n", self.node, "link", "set", "fx0", "up")
        ip("-n", self.node, "route", "add", "10.9.0.0/16", "dev", "fx0")
        ip("-n", self.node, "route", "add", "10.1.9.0/24", "dev", "fx0", "proto", "static")

        def exists() -> bool:
            out = subprocess.run(["ip", "-n", self.node, "route", "show"], capture_output=True,
                                 text=True).stdout
            return "10.9.0.0/16 dev fx0" in out and "10.1.9.0/24 dev fx0" in out
        return exists

    def sabotage(self, key: str, value) -> None:
        kind = key.split("/")[1]
        if kind == "veth":
            ip("-n", self.node, "link", "del", value.host_if)
        elif kind == "podroute":
            ip("-n", os.path.basename(value.netns), "route", "del", value.dst)
        elif kind == "route":
            ip("-n", self.node, "route", "del", value.dst)
        else:
            raise AssertionError(f"no way to sabotage {key} here")


class TestLinuxDataplane(DataplaneContract):
    @pytest.fixture
    def h(self):
        harness = LinuxHarness()
        try:
            yield harness
        finally:
            harness.close()


def test_opening_removes_trace_tables_a_stopped_agent_left():
    harness = LinuxHarness()
    try:
        run = harness.plane.nft.run
        run("add table ip contiv-trace-77\nadd table ip other-table")
        harness.plane.close()  # an agent starting again on the same node
        harness.plane.open(SimpleNamespace(underlay_if="", node_ip="", mtu=0))
        names = [t["table"]["name"] for t in harness.plane.nft.list_json("tables ip") if "table" in t]
        assert "contiv-trace-77" not in names and "other-table" in names  # only ours go
        harness.plane.nft.run("delete table ip other-table")
    finally:
        harness.close()
