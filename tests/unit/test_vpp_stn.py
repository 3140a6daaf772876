"""STN on VPP, unit tier: what the agent renders for a NIC ``contivctl stn``
stole, and that every message it sends for it is valid against the real API
definitions (the recorder, not a VPP). The real thing: tests/vpp/test_vpp_stn.py.
"""
from __future__ import annotations

import pytest

from agent.model.stn import SNAPSHOT_VERSION, Snapshot, StnState
from agent.linux import values as lv
from agent.stndir import StnDir
from agent.vpp import render, values as vv
from agent.vpp.recorder import Recorder, default_api_dir
from tests.unit.test_vpp_core import ME, scheduler, transport

pytestmark = pytest.mark.skipif(not default_api_dir().is_dir(),
                                reason="no VPP API definitions (../shared/vpp-api) next to the repository")

NIC_MAC = "52:54:00:12:34:56"
STOLEN = render.Uplink("eth0", "192.168.56.101/24", "192.168.56.1", NIC_MAC, stn=True)


def test_the_stn_host_interconnect_is_the_agents_and_leaves_the_hosts_addresses_alone():
    v = render.render_stn_host(1400)
    veth = v[lv.veth_key("stn-vpp")]
    assert (veth.pod_if, veth.mtu, veth.mac, veth.tx_checksum, veth.foreign_ips, veth.ips) == \
        ("stn-host", 1400, "00:00:00:00:00:02", False, True, ())
    assert v[vv.interface_key(render.STN_HOST)].host_if == render.STN_VETH == "stn-vpp"
    assert v[vv.interface_key(render.STN_HOST)].needs == lv.veth_key("stn-vpp")


def test_a_stolen_nic_is_the_uplink_with_its_own_mac_an_stn_rule_and_proxy_arp():
    v = render.render_node(transport(), STOLEN)
    assert v[vv.interface_key("uplink")] == vv.Interface("uplink", "af_packet", NIC_MAC, host_if="eth0")
    assert v[vv.unnumbered_key(render.STN_HOST)] == vv.Unnumbered(render.STN_HOST, "uplink")
    assert v[vv.proxyarp_key("192.168.56.1", "192.168.56.254")] == vv.ProxyArp("192.168.56.1", "192.168.56.254")
    assert v[vv.proxyarpif_key(render.STN_HOST)] == vv.ProxyArpIf(render.STN_HOST)
    assert v[vv.stn_key("192.168.56.101")] == vv.StnRule("192.168.56.101", render.STN_HOST)
    stn = {k for k in v if render.is_stn_key(k)}
    assert stn == {vv.interface_key("uplink"), vv.unnumbered_key(render.STN_HOST),
                   vv.proxyarpif_key(render.STN_HOST), vv.stn_key("192.168.56.101"),
                   vv.address_key("uplink", "192.168.56.101/24"), vv.route_key(0, "0.0.0.0/0")}


IDLE = render.Uplink("eth0", "192.168.56.101/24", "192.168.56.1", NIC_MAC, stn=True, carry=False)


def test_a_nic_not_stolen_is_open_in_vpp_and_its_address_left_to_linux():
    v = render.render_node(transport(), IDLE)
    assert v[vv.interface_key("uplink")] == vv.Interface("uplink", "af_packet", NIC_MAC, host_if="eth0")
    assert not any(k.startswith(("vpp/address/uplink", "vpp/stn/", "vpp/unnumbered/stnhost")) for k in v)
    assert vv.route_key(0, "0.0.0.0/0") not in v
    # tunnels still start at the node's address
    assert {t.src for k, t in v.items() if k.startswith("vpp/vxlan/")} == {ME.node_ip}


def test_a_slash_32_node_address_has_proxy_arp_for_its_gateway_alone():
    v = render.render_stn(render.Uplink("eth0", "10.0.0.5/32", "10.0.0.1", NIC_MAC, stn=True))
    assert v[vv.proxyarp_key("10.0.0.1", "10.0.0.1")] == vv.ProxyArp("10.0.0.1", "10.0.0.1")
    assert vv.stn_key("10.0.0.5") in v


def test_stealing_and_giving_back_send_only_valid_messages():
    rec = Recorder()
    s = scheduler(rec)
    host = render.render_stn_host(1400)
    assert s.apply({**render.render_node(transport(), IDLE), **host}).ok
    rec.clear()
    res = s.replace({**render.render_node(transport(), STOLEN), **host})
    assert res.ok, res.errors
    (rule,) = rec.calls_to("stn_add_del_rule")
    assert rule["is_add"] and str(rule["ip_address"]) == "192.168.56.101"
    assert rec.calls_to("af_packet_create_v3") == [], "VPP had the NIC and STN's interface open already"
    assert {str(c["proxy"]["low"]) for c in rec.calls_to("proxy_arp_add_del")} == {"192.168.56.1"}
    # VPP's stn plugin leaves IPv4 off on a new interface that reuses a freed index: turned on by hand
    assert {(c["arc_name"], c["feature_name"], c["enable"]) for c in rec.calls_to("feature_enable_disable")
            if c["feature_name"] == "ip4-not-enabled"} == \
        {("ip4-unicast", "ip4-not-enabled", False), ("ip4-multicast", "ip4-not-enabled", False)}
    rec.clear()
    res = s.replace({**render.render_node(transport(), IDLE), **host})  # given back
    assert res.ok, res.errors
    assert [r["is_add"] for r in rec.calls_to("stn_add_del_rule")] == [False]
    assert rec.calls_to("af_packet_delete") == [], "deleting it would take the NIC's link down"
    assert {str(c["prefix"]) for c in rec.calls_to("sw_interface_add_del_address")} == {"192.168.56.101/24"}


@pytest.mark.parametrize("phase, dataplane, moved, carries", [
    ("pending", "vpp", True, True), ("confirmed", "vpp", True, True), ("stealing", "vpp", True, True),
    # before the addresses left the NIC, and from the restore on: VPP keeps the NIC open, answers nothing
    ("stealing", "vpp", False, False), ("restoring", "vpp", True, False), ("suspended", "vpp", False, False),
    ("confirmed", "linux", True, False),
])
def test_vpp_carries_the_nodes_address_only_while_stns_record_says_it_left_the_nic(tmp_path, phase, dataplane,
                                                                                    moved, carries):
    files = StnDir(str(tmp_path))
    files.save_snapshot(Snapshot(SNAPSHOT_VERSION, "eth0", 1.0, {"mac": NIC_MAC, "mtu": 1500, "up": True},
                                 ({"family": 4, "address": "192.168.56.101", "prefixlen": 24, "scope": 0},),
                                 ({"family": 4, "table": 254, "dst": "", "dst_len": 0, "gateway": "192.168.56.1",
                                   "proto": 3, "scope": 0, "type": 1, "tos": 0},)))
    files.save_state(StnState("eth0", dataplane, phase, 1.0, "stn-host", moved=moved))
    plane = _plane(tmp_path)
    v = plane.render_node(transport())
    # VPP holds the NIC (and STN's interconnect) whatever the record says: af_packet takes the
    # NIC's link down when it lets go, and the network would forget the node for a while
    assert v[vv.interface_key("uplink")] == vv.Interface("uplink", "af_packet", NIC_MAC, host_if="eth0")
    assert set(render.render_stn_host(1500)) <= set(v)
    answers = {vv.address_key("uplink", "192.168.56.101/24"), vv.route_key(0, "0.0.0.0/0"),
               vv.stn_key("192.168.56.101"), vv.unnumbered_key(render.STN_HOST)}
    assert (answers <= set(v)) is carries and (not answers & set(v)) is (not carries)
    if carries:
        assert v[vv.route_key(0, "0.0.0.0/0")].via == "192.168.56.1", "the gateway comes from the snapshot"
        assert set(plane.stn_keys()) >= answers | {vv.interface_key("uplink"), lv.veth_key("stn-vpp")}
    else:
        assert plane.stn_keys() == ()


def _plane(stn_dir):
    from agent.vpp.plane import VppDataplane
    plane = VppDataplane()
    plane.uplink = render.Uplink("eth0", "192.168.56.101/24")
    plane._stn_dir, plane._stn_mac = str(stn_dir), NIC_MAC
    return plane


def test_a_corrupt_stn_record_leaves_the_nodes_address_to_linux(tmp_path):
    (tmp_path / "eth0.snapshot.json").write_text("{")
    StnDir(str(tmp_path)).save_state(StnState("eth0", "vpp", "confirmed", 1.0, "stn-host", moved=True))
    v = _plane(tmp_path).render_node(transport())
    assert vv.address_key("uplink", "192.168.56.101/24") not in v and vv.stn_key("192.168.56.101") not in v
