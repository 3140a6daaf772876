"""The data-plane contract (tests/dataplane_contract.py) against the Linux
data plane, for real: netlink and nftables in network namespaces (root).

Each case gets a fresh "node" namespace whose ``eth0`` is a veth to a
"gateway" namespace; the test's thread enters the node namespace for the
case (the plane opens its netlink and nftables sockets there, and the
threads it starts inherit it) and goes back home afterwards, even on failure.
"""
from __future__ import annotations

import os
import secrets
import subprocess
from types import SimpleNamespace

import pytest

from agent.nsenter import setns
from tests.dataplane_contract import DataplaneContract

pytestmark = pytest.mark.root


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


class LinuxHarness:
    def __init__(self) -> None:
        tag = secrets.token_hex(3)
        self.node, self.gw = f"dpn-{tag}", f"dpg-{tag}"
        self.netns: list[str] = []
        self.plane = None
        self._home = os.open("/proc/self/ns/net", os.O_RDONLY)
        for ns in (self.node, self.gw):
            ip("netns", "add", ns)
            self.netns.append(ns)
        ip("-n", self.node, "link", "add", "eth0", "type", "veth", "peer", "name", "up0",
           "netns", self.gw)
        ip("-n", self.node, "addr", "add", "192.168.77.2/24", "dev", "eth0")
        ip("-n", self.gw, "addr", "add", "192.168.77.1/24", "dev", "up0")
        for ns, dev in ((self.node, "eth0"), (self.node, "lo"), (self.gw, "up0"), (self.gw, "lo")):
            ip("-n", ns, "link", "set", dev, "up")
        ip("-n", self.node, "route", "add", "default", "via", "192.168.77.1")
        fd = os.open(f"/run/netns/{self.node}", os.O_RDONLY)
        try:
            setns(fd, self.node)
        finally:
            os.close(fd)
        from agent.dataplane import create  # noqa: PLC0415
        self.plane = create("linux")
        self.facts = self.plane.open(SimpleNamespace(underlay_if="", node_ip="", mtu=0))

    def close(self) -> None:
        try:
            if self.plane is not None:
                self.plane.close()
        finally:
            setns(self._home, "the test's own")
            os.close(self._home)
            for ns in self.netns:
                subprocess.run(["ip", "netns", "del", ns], capture_output=True)

    def new_netns(self, name: str) -> str:
        ns = f"{self.node}-{name}"
        ip("netns", "add", ns)
        self.netns.append(ns)
        ip("-n", ns, "link", "set", "lo", "up")
        return f"/run/netns/{ns}"

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
