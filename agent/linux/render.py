"""Render data-plane-neutral intents into Linux values (pure).

Pod: a veth pair (pod end ``eth0`` with the pod's /32, host end in the node),
a default route in the pod via the gateway (onlink: the gateway is outside
the pod's /32), and a /32 host route to the pod in the node.

Node: a local link ``contiv-gw`` holding the gateway address (so the node
answers the pods' ARP for it), the VXLAN device, and for every peer a
permanent neighbour (its gateway -> its VTEP MAC), an FDB entry (its VTEP MAC
-> its underlay address) and a route to its pod subnet via its gateway.
"""
from __future__ import annotations

import ipaddress

from agent.builders.nodes import NodeTransport
from agent.builders.pods import PodAttachment
from agent.linux import values as lv

GW_DEV = "contiv-gw"
VXLAN_DEV = "contiv-vx"


def _default_dst(gw: str) -> str:
    return "::/0" if ipaddress.ip_address(gw).version == 6 else "0.0.0.0/0"


def render_pod(p: PodAttachment) -> dict[str, object]:
    host_if = lv.host_ifname(p.container_id, p.ifname)
    out: dict[str, object] = {
        lv.veth_key(host_if): lv.Veth(host_if, p.netns, p.ifname, tuple(p.ips), p.mtu,
                                      f"{lv.TAG_PREFIX}pod:{p.pod_ref}"),
    }
    for gw in p.gateways:
        dst = _default_dst(gw)
        out[lv.podroute_key(host_if, dst)] = lv.PodRoute(host_if, p.netns, p.ifname, dst, gw, True)
    for ip in p.ips:
        host = str(ipaddress.ip_interface(ip).ip)
        dst = f"{host}/{ipaddress.ip_interface(ip).max_prefixlen}"
        out[lv.route_key(dst)] = lv.Route(dst, host_if, dev_key=lv.veth_key(host_if))
    return out


def render_node(t: NodeTransport) -> dict[str, object]:
    out: dict[str, object] = {}
    if t.forwarding:
        out[lv.sysctl_key("net.ipv4.ip_forward")] = lv.Sysctl("net.ipv4.ip_forward", "1")
    gw_ips = tuple(f"{g}/{ipaddress.ip_address(g).max_prefixlen}" for g in t.me.gateways)
    out[lv.local_key(GW_DEV)] = lv.LocalLink(GW_DEV, gw_ips, lv.TAG_PREFIX + "node")
    vx_key = lv.vxlan_key(VXLAN_DEV)
    out[vx_key] = lv.Vxlan(VXLAN_DEV, t.vni, t.me.node_ip, t.port, t.me.vtep_mac, t.mtu,
                           t.underlay_dev, lv.TAG_PREFIX + "node")
    for peer in t.peers:
        out[lv.fdb_key(VXLAN_DEV, peer.vtep_mac)] = lv.Fdb(VXLAN_DEV, peer.vtep_mac, peer.node_ip,
                                                          vx_key)
        for gw, subnet in zip(peer.gateways, peer.pod_subnets):
            out[lv.neigh_key(VXLAN_DEV, gw)] = lv.Neighbor(VXLAN_DEV, gw, peer.vtep_mac, vx_key)
            out[lv.route_key(subnet)] = lv.Route(subnet, VXLAN_DEV, gw, True, vx_key)
    return out
