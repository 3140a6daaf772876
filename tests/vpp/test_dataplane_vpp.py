"""The data-plane contract (tests/dataplane_contract.py) against the VPP data
plane on a real VPP (root; skipped with how to get one where there is none).

Each case gets a fresh "node" namespace running its own VPP, whose uplink
``vpp0`` is a veth to a "gateway" namespace (192.168.77.1); the test's thread
enters the node namespace for the case (the plane's netlink sockets for the
pods' veths open there) and goes back home afterwards, even on failure.
"""
from __future__ import annotations

import os
import time
from types import SimpleNamespace

import pytest

from agent.vpp.process import availability
from tests.dataplane_contract import DataplaneContract
from tests.nodens import GATEWAY, NodeNamespaces, ip

HAVE_VPP, WHY = availability()
pytestmark = [pytest.mark.root, pytest.mark.vpp,
              pytest.mark.skipif(not HAVE_VPP, reason=f"needs a VPP: {WHY}")]


class VppHarness(NodeNamespaces):
    def __init__(self, tmp) -> None:
        from agent.vpp.process import VppProcess  # noqa: PLC0415
        self.vpp = None
        super().__init__("dv", "vpp0")
        try:
            self.vpp = VppProcess(tmp / "vpp", netns=self.node)
            self.vpp.start(15)
            self.enter()
            from agent.dataplane import create  # noqa: PLC0415
            self.plane = create("vpp")
            self.facts = self.plane.open(SimpleNamespace(
                vpp_uplink="vpp0", vpp_uplink_cidr="192.168.77.2/24", vpp_uplink_gateway=GATEWAY,
                vpp_api_socket=str(self.vpp.api_socket),
                vpp_stats_socket=str(self.vpp.config.stats_socket),
                mtu=0, pod_cidr="10.1.0.0/16", service_cidr="10.96.0.0/12"))
            deadline = time.monotonic() + 10
            while self.plane.ready() and time.monotonic() < deadline:
                time.sleep(0.1)
            assert self.plane.ready() == "", self.plane.ready()
            self.api = self.plane.api
        except BaseException:
            self.close()
            raise

    def release(self) -> None:
        if self.vpp is not None:
            self.vpp.stop()
            self.vpp.close()
            self.vpp = None

    def call(self, name, **kw):
        return self.api.call(name, **self.api.fill(name, **kw))

    def foreign(self):
        """An untagged loopback with an address and a route through it."""
        sw = self.call("create_loopback_instance", is_specified=True, user_instance=9).sw_if_index
        self.call("sw_interface_add_del_address", sw_if_index=sw, is_add=True, prefix="10.9.9.1/24")
        self.call("ip_route_add_del", is_add=True, route={
            "prefix": "10.8.0.0/16", "paths": [{"sw_if_index": sw, "nh": {"address": {"ip4": "10.9.9.2"}}}]})

        def exists() -> bool:
            ifs = [d.sw_if_index for d in self.api.dump("sw_interface_dump", sw_if_index=sw)]
            routes = [str(d.route.prefix) for d in self.api.dump("ip_route_v2_dump",
                                                                 table={"table_id": 0}, src=8)]
            return ifs == [sw] and "10.8.0.0/16" in routes
        return exists

    def sabotage(self, key: str, value) -> None:
        plane, kind = key.split("/")[:2]
        if plane == "linux":
            if kind == "veth":
                ip("-n", self.node, "link", "del", value.host_if)
            elif kind == "podroute":
                ip("-n", os.path.basename(value.netns), "route", "del", value.dst)
            return
        if kind == "interface" and value.kind == "af_packet":
            self.call("af_packet_delete", host_if_name=value.host_if)
        elif kind == "route":
            sw = self.plane.descriptors()[2].ifs.index(value.ifname)
            self.call("ip_route_add_del", is_add=False, route={
                "prefix": value.prefix, "paths": [{"sw_if_index": sw,
                                                   "nh": {"address": {"ip4": value.via}}}]})
        elif kind == "neighbor":
            sw = self.plane.descriptors()[2].ifs.index(value.ifname)
            self.call("ip_neighbor_add_del", is_add=False, neighbor={
                "sw_if_index": sw, "mac_address": value.mac, "ip_address": value.ip})
        else:
            raise AssertionError(f"no way to sabotage {key} here")


class TestVppDataplane(DataplaneContract):
    @pytest.fixture
    def h(self, tmp_path):
        harness = VppHarness(tmp_path)
        try:
            yield harness
        finally:
            harness.close()
