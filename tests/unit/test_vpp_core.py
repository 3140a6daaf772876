"""The VPP data plane's node and pod values, without a VPP (unit tier).

Rendering is checked for its shape; programming goes through the real
descriptors over the recording fake (agent/vpp/recorder.py), which checks
every message against VPP 26.10's API definitions -- a misspelt field, a
wrong enum or array length fails here. The fake is not a VPP: what VPP does
with the messages is tested in tests/vpp (real VPP).
"""
from __future__ import annotations

import pytest

from agent.builders.nodes import node_transport, vtep_mac
from agent.builders.pods import PodAttachment
from agent.model.records import NodeInfo
from agent.reconciler import Descriptor, Retrieved, Scheduler
from agent.vpp import render, values as vv
from agent.vpp.base import Interfaces
from agent.vpp.descriptors import core, descriptors
from agent.vpp.recorder import Recorder, default_api_dir

pytestmark = pytest.mark.skipif(not default_api_dir().is_dir(),
                                reason="no VPP API definitions (../shared/vpp-api) next to the repository")

ME = NodeInfo("node1", 1, "192.168.56.101", ("10.1.1.0/24",), ("10.1.1.1",), vtep_mac(1))
PEERS = [NodeInfo(f"node{i}", i, f"192.168.56.{100 + i}", (f"10.1.{i}.0/24",), (f"10.1.{i}.1",),
                  vtep_mac(i)) for i in (2, 3)]
UPLINK = render.Uplink("vpp0", "192.168.56.101/24", "192.168.56.1")
POD = PodAttachment("cid1", "eth0", "/run/netns/p1", ("10.1.1.2/32",), ("10.1.1.1",), 1450, "x/a")


class Accept(Descriptor):
    """Stands in for the Linux descriptors of the pods' veths (not VPP)."""

    def __init__(self, prefix):
        self.key_prefix, self.name = prefix, "accept-" + prefix

    def create(self, key, value, ctx):
        return {"mac": "02:00:00:00:00:01", "pod_mac": "0a:58:0a:01:01:02"}

    def delete(self, key, value, metadata, ctx):
        pass

    def retrieve(self, correlate, ctx):
        return [Retrieved(k, v) for k, v in correlate.items()]


def transport(peers=PEERS):
    return node_transport(ME, [ME, *peers], vni=10, port=4789, mtu=1450, underlay_dev="vpp0")


def scheduler(rec):
    return Scheduler([Accept("linux/veth/"), Accept("linux/podroute/")] +
                     descriptors(rec, ("10.1.0.0/16", "10.96.0.0/12")))


def test_the_node_is_an_uplink_a_gateway_loopback_and_a_tunnel_per_peer():
    v = render.render_node(transport(), UPLINK)
    assert v[vv.interface_key("loop0")] == vv.Interface("loop0", "loopback", ME.vtep_mac)
    assert v[vv.address_key("loop0", "10.1.1.1/24")]
    assert v[vv.bdport_key("loop0")] == vv.BridgePort("loop0", 1, bvi=True)
    assert v[vv.proxyarp_key("10.1.1.1", "10.1.1.1")]
    assert v[vv.route_key(0, "0.0.0.0/0")] == vv.Route("0.0.0.0/0", "uplink", "192.168.56.1")
    for p in PEERS:
        t = f"vx-{p.name}"
        assert v[vv.vxlan_key(t)] == vv.Vxlan(t, "192.168.56.101", p.node_ip, 10, p.index, 4789)
        assert v[vv.bdport_key(t)] == vv.BridgePort(t, 1, shg=1)
        assert v[vv.l2fib_key(1, p.vtep_mac)] == vv.L2Fib(1, p.vtep_mac, t)
        assert v[vv.neighbor_key("loop0", p.gateways[0])] == vv.Neighbor("loop0", p.gateways[0], p.vtep_mac)
        assert v[vv.route_key(0, p.pod_subnets[0])] == vv.Route(p.pod_subnets[0], "loop0", p.gateways[0])
    assert render.render_node(transport(), UPLINK) == v, "rendering is pure"


def test_a_pod_is_a_veth_and_an_af_packet_interface_named_after_its_address():
    v = render.render_pod(POD)
    veth = v["linux/veth/" + next(k.split("/")[-1] for k in v if k.startswith("linux/veth/"))]
    assert veth.tx_checksum is False, "VPP's af_packet does not complete checksums"
    name = vv.pod_ifname("10.1.1.2")
    assert name == "p0a010102"
    iface = v[vv.interface_key(name)]
    assert iface.kind == "af_packet" and iface.host_if == veth.host_if
    assert v[vv.unnumbered_key(name)] == vv.Unnumbered(name, "loop0")
    assert v[vv.route_key(0, "10.1.1.2/32")] == vv.Route("10.1.1.2/32", name, "10.1.1.2")
    assert v[vv.neighbor_key(name, "10.1.1.2")].mac == "0a:58:0a:01:01:02"


def test_programming_a_node_and_a_pod_sends_only_valid_messages():
    rec = Recorder()
    s = scheduler(rec)
    res = s.apply({**render.render_node(transport(), UPLINK), **render.render_pod(POD)})
    assert res.ok, res.errors
    (afp_up, afp_pod) = rec.calls_to("af_packet_create_v3")
    assert {afp_up["host_if_name"], afp_pod["host_if_name"]} >= {"vpp0"}
    for a in (afp_up, afp_pod):
        assert (a["mode"], a["tx_frame_size"], a["flags"]) == (1, 2048, 1)
    for t in rec.calls_to("vxlan_add_del_tunnel_v3"):
        assert t["decap_next_index"] == vv.NONE, "0 would drop everything the tunnel receives"
    tags = {c["tag"] for c in rec.calls_to("sw_interface_tag_add_del")}
    assert tags == {"contiv:uplink", "contiv:loop0", "contiv:vx-node2", "contiv:vx-node3",
                    "contiv:p0a010102"}
    # dependencies are data: the pod's route is added after its interface
    names = rec.names()
    assert names.index("af_packet_create_v3") < names.index("ip_route_add_del")


def test_the_host_interconnect_is_a_veth_into_the_node_with_routes_via_vpp():
    """With the pod CIDR, the node gets a veth whose VPP end is ``host`` and whose
    Linux end routes the pod and Service CIDRs via VPP; its messages are valid."""
    v = render.render_node(transport(), UPLINK, "10.96.0.0/12", "10.1.0.0/16", "10.1.1.254")
    host = v[vv.interface_key(render.HOST)]
    veth_key = "linux/veth/" + render.HOST_VETH
    assert host.kind == "af_packet" and host.host_if == render.HOST_VETH and host.needs == veth_key
    assert v[veth_key].tx_checksum is False and v[veth_key].netns == render.NODE_NETNS
    assert v[vv.address_key(render.HOST, f"{render.HOST_VPP_IP}/30")]
    routes = {k: r for k, r in v.items() if k.startswith("linux/podroute/")}
    assert {r.dst for r in routes.values()} == {"10.1.0.0/16", "10.96.0.0/12"}
    assert {r.via for r in routes.values()} == {render.HOST_VPP_IP}
    # the node's own address in its pod subnet: on the host's end, the routes'
    # source, routed to the host by VPP -- pods on other nodes answer it
    assert v[veth_key].ips == (f"{render.HOST_LINUX_IP}/30", "10.1.1.254/32")
    assert {r.src for r in routes.values()} == {"10.1.1.254"}
    assert v[vv.route_key(0, "10.1.1.254/32")] == vv.Route("10.1.1.254/32", render.HOST, render.HOST_LINUX_IP)
    assert vv.interface_key(render.HOST) not in render.render_node(transport(), UPLINK), "no pod CIDR: none"
    rec = Recorder()
    res = scheduler(rec).apply(v)
    assert res.ok, res.errors
    assert render.HOST_VETH in {c["host_if_name"] for c in rec.calls_to("af_packet_create_v3")}
    assert "contiv:host" in {c["tag"] for c in rec.calls_to("sw_interface_tag_add_del")}


def test_removing_a_pod_and_a_peer_sends_only_valid_messages():
    rec = Recorder()
    s = scheduler(rec)
    pod = render.render_pod(POD)
    assert s.apply({**render.render_node(transport(), UPLINK), **pod}).ok
    rec.clear()
    node_without = render.render_node(transport(PEERS[:1]), UPLINK)
    res = s.replace(node_without)  # the pod and node3 go
    assert res.ok, res.errors
    assert {"af_packet_delete", "vxlan_add_del_tunnel_v3", "ip_route_add_del"} <= set(rec.names())
    assert [c["host_if_name"] for c in rec.calls_to("af_packet_delete")] == [
        pod[vv.interface_key("p0a010102")].host_if]


def test_retrieve_finds_only_tagged_interfaces():
    rec = Recorder()
    s = scheduler(rec)
    assert s.apply(render.render_node(transport([]), UPLINK)).ok
    rec.call("create_loopback_instance", **rec.fill("create_loopback_instance", is_specified=True,
                                                  user_instance=7))  # not ours: no tag
    ifs = Interfaces()
    desc = core(rec, ifs, ("10.1.0.0/16",))[0]
    found = {r.key for r in desc.retrieve({}, None)}
    assert found == {vv.interface_key("uplink"), vv.interface_key("loop0")}


def test_the_transport_reads_on_the_callers_thread():
    """agent.vpp.papi.direct_transport: no reader thread; ``read`` returns
    whole frames from a buffer, None on a timeout or a closed socket."""
    import inspect  # noqa: PLC0415
    import socket  # noqa: PLC0415
    import struct  # noqa: PLC0415

    from vpp_papi import vpp_papi as client, vpp_transport_socket  # noqa: PLC0415

    from agent.vpp.transport import direct_transport  # noqa: PLC0415
    src = inspect.getsource(vpp_transport_socket.VppTransport)
    # what the patch relies on: if vpp_papi changes this, the patch must change too
    assert "def connect(self, name, pfx, msg_handler, rx_qlen, do_async=False)" in src
    assert "def read(self, timeout=None)" in src and 'self.header = struct.Struct(">QII")' in src
    assert "self.transport.read(timeout=timeout)" in inspect.getsource(client.VPPApiClient.read_blocking)
    t = vpp_transport_socket.VppTransport(None, 1.0, "/nonexistent")
    direct_transport(t)
    direct_transport(t)  # twice: one subclass
    assert type(t).__mro__[1] is vpp_transport_socket.VppTransport
    a, b = socket.socketpair()
    t.socket, t.connected = b, True
    frame = lambda m: struct.pack(">QII", 0, len(m), 0) + m  # noqa: E731
    a.sendall(frame(b"one") + frame(b"two")[:10])
    assert t.read(0.5) == b"one"
    assert t.read(0.05) is None  # half a frame: a timeout, and the half is kept
    a.sendall(frame(b"two")[10:])
    assert t.read(0.5) == b"two"
    a.close()
    assert t.read(0.5) is None  # closed: vpp_papi says "read failed"
    b.close()
