"""STN on VPP, unit tier: what the agent renders for a NIC ``contivctl stn``
stole, and that every message it sends for it is valid against the real API
definitions (the recorder, not a VPP). The real thing: tests/vpp/test_vpp_stn.py.
"""
from __future__ import annotations

import pytest

from agent.model.stn import SNAPSHOT_VERSION, Snapshot, StnState
from agent.stndir import StnDir
from agent.vpp import render, values as vv
from agent.vpp.recorder import Recorder, default_api_dir
from tests.unit.test_vpp_core import ME, scheduler, transport

pytestmark = pytest.mark.skipif(not default_api_dir().is_dir(),
                                reason="no VPP API definitions (../shared/vpp-api) next to the repository")

NIC_MAC = "52:54:00:12:34:56"
STOLEN = render.Uplink("eth0", "192.168.56.101/24", "192.168.56.1", NIC_MAC, stn=True)


def test_a_stolen_nic_is_the_uplink_with_its_own_mac_and_an_stn_host_interconnect():
    v = render.render_node(transport(), STOLEN)
    assert v[vv.interface_key("uplink")] == vv.Interface("uplink", "af_packet", NIC_MAC, host_if="eth0")
    assert v[vv.interface_key(render.STN_HOST)].host_if == render.STN_VETH == "stn-vpp"
    assert v[vv.unnumbered_key(render.STN_HOST)] == vv.Unnumbered(render.STN_HOST, "uplink")
    assert v[vv.proxyarp_key("192.168.56.1", "192.168.56.254")] == vv.ProxyArp("192.168.56.1", "192.168.56.254")
    assert v[vv.proxyarpif_key(render.STN_HOST)] == vv.ProxyArpIf(render.STN_HOST)
    assert v[vv.stn_key("192.168.56.101")] == vv.StnRule("192.168.56.101", render.STN_HOST)
    stn = {k for k in v if render.is_stn_key(k)}
    assert stn == {vv.interface_key("uplink"), vv.interface_key(render.STN_HOST),
                   vv.unnumbered_key(render.STN_HOST), vv.proxyarpif_key(render.STN_HOST),
                   vv.stn_key("192.168.56.101")}


def test_a_nic_not_stolen_is_left_to_linux():
    v = render.render_node(transport(), None)
    assert not any(k.startswith("vpp/interface/uplink") or k.startswith("vpp/stn/") for k in v)
    assert vv.route_key(0, "0.0.0.0/0") not in v
    # tunnels still start at the node's address
    assert {t.src for k, t in v.items() if k.startswith("vpp/vxlan/")} == {ME.node_ip}


def test_stealing_and_giving_back_send_only_valid_messages():
    rec = Recorder()
    s = scheduler(rec)
    res = s.apply(render.render_node(transport(), STOLEN))
    assert res.ok, res.errors
    (rule,) = rec.calls_to("stn_add_del_rule")
    assert rule["is_add"] and str(rule["ip_address"]) == "192.168.56.101"
    created = {c["host_if_name"]: c for c in rec.calls_to("af_packet_create_v3")}
    assert set(created) == {"eth0", "stn-vpp"}
    assert str(created["eth0"]["hw_addr"]).lower() == NIC_MAC
    assert {str(c["proxy"]["low"]) for c in rec.calls_to("proxy_arp_add_del")} >= {"192.168.56.1"}
    # VPP's stn plugin leaves IPv4 off on a new interface that reuses a freed index: turned on by hand
    assert {(c["arc_name"], c["feature_name"], c["enable"]) for c in rec.calls_to("feature_enable_disable")
            if c["feature_name"] == "ip4-not-enabled"} == \
        {("ip4-unicast", "ip4-not-enabled", False), ("ip4-multicast", "ip4-not-enabled", False)}
    rec.clear()
    res = s.replace(render.render_node(transport(), None))  # restored: VPP lets go
    assert res.ok, res.errors
    assert [r["is_add"] for r in rec.calls_to("stn_add_del_rule")] == [False]
    assert {c["host_if_name"] for c in rec.calls_to("af_packet_delete")} == {"eth0", "stn-vpp"}


class _Cfg:
    vpp_uplink, vpp_uplink_cidr, vpp_uplink_gateway = "eth0", "192.168.56.101/24", ""
    vpp_stn = True


@pytest.mark.parametrize("phase, dataplane, stolen", [
    ("pending", "vpp", True), ("confirmed", "vpp", True), ("stealing", "vpp", True),
    ("suspended", "vpp", False), ("restoring", "vpp", False), ("confirmed", "linux", False),
])
def test_the_plane_takes_the_nic_only_while_stns_record_says_vpp_holds_it(tmp_path, phase, dataplane, stolen):
    from agent.vpp.plane import VppDataplane
    files = StnDir(str(tmp_path))
    files.save_snapshot(Snapshot(SNAPSHOT_VERSION, "eth0", 1.0, {"mac": NIC_MAC, "mtu": 1500, "up": True},
                                 ({"family": 4, "address": "192.168.56.101", "prefixlen": 24, "scope": 0},),
                                 ({"family": 4, "table": 254, "dst": "", "dst_len": 0, "gateway": "192.168.56.1",
                                   "proto": 3, "scope": 0, "type": 1, "tos": 0},)))
    files.save_state(StnState("eth0", dataplane, phase, 1.0, "stn-host"))
    plane = VppDataplane()
    plane.uplink = render.Uplink("eth0", "192.168.56.101/24")
    plane._stn_dir = str(tmp_path)
    v = plane.render_node(transport())
    assert (vv.interface_key("uplink") in v) is stolen
    if stolen:
        assert v[vv.interface_key("uplink")].mac == NIC_MAC
        assert v[vv.route_key(0, "0.0.0.0/0")].via == "192.168.56.1", "the gateway comes from the snapshot"
        assert set(plane.stn_keys()) >= {vv.interface_key("uplink"), vv.stn_key("192.168.56.101")}
    else:
        assert plane.stn_keys() == ()


def test_a_corrupt_stn_record_leaves_the_nic_alone(tmp_path):
    from agent.vpp.plane import VppDataplane
    (tmp_path / "eth0.snapshot.json").write_text("{")
    StnDir(str(tmp_path)).save_state(StnState("eth0", "vpp", "confirmed", 1.0, "stn-host"))
    plane = VppDataplane()
    plane.uplink = render.Uplink("eth0", "192.168.56.101/24")
    plane._stn_dir = str(tmp_path)
    assert vv.interface_key("uplink") not in plane.render_node(transport())
