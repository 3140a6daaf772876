"""Render data-plane-neutral intents into VPP values (pure).

Node (:func:`render_node`):

* the uplink: an af_packet interface on the node's data NIC (DPDK in
  production) holding the node's address -- the VXLAN endpoint; on a node
  whose only NIC STN steals (``vpp_stn``), with the NIC's MAC and a host
  interconnect (:func:`render_stn_host`), the address only while the NIC
  is stolen (:func:`render_stn`);
* ``loop0``: a loopback with the node's VTEP MAC and the pods' gateway
  address (the subnet's first address), BVI of bridge domain 1; proxy ARP
  answers pods asking for the gateway;
* per peer node: a VXLAN tunnel in the bridge domain (split-horizon group 1),
  a static MAC entry (its BVI MAC behind the tunnel), a static neighbour
  (its gateway -> its BVI MAC) and a route to its pod subnet via its gateway
  -- the same shape as the Linux data plane's FDB, neighbour and route, so a
  VPP node and a Linux node of one cluster reach each other's pods.

Pod (:func:`render_pod`): a veth pair (the Linux data plane's, with the pod's
address, default route via the gateway, TX checksum offload off in the pod)
whose node end VPP takes as an af_packet interface, unnumbered to ``loop0``,
with proxy ARP for the gateway, a static neighbour (the pod's MAC) and a /32
route to the pod; a pod that asked for a memif also gets one
(:func:`render_memif`).

Both also carry what Services need of every node and every pod interface
(:func:`agent.vpp.services.node_values`, :func:`agent.vpp.services.pod_values`).
"""
from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from agent.builders.nodes import NodeTransport
import re

from agent.errors import PodOptionError
from agent.builders.pods import PodAttachment
from agent.linux import values as lv
from agent.linux.links import pod_mac
from agent.vpp import values as vv

BVI = vv.BVI
UPLINK = "uplink"
BD = 1
#: the host interconnect (render_host): VPP's interface, the veth's two ends,
#: the /30 between them, and the node's own namespace (as the agent sees it)
HOST = "host"
HOST_VETH = "contiv-vh"
HOST_LINUX_IF = "contiv-host"
HOST_LINUX_IP, HOST_VPP_IP = "169.254.99.1", "169.254.99.2"
NODE_NETNS = "/proc/self/ns/net"
#: STN's host interconnect (render_stn_host): VPP's interface, the veth's
#: two ends, and the MAC of the host's end
STN_HOST, STN_VETH, STN_HOST_IF = "stnhost", "stn-vpp", "stn-host"
STN_HOST_MAC = "00:00:00:00:00:02"
#: what VPP reads of a socket filename's name and netns (vppinfra/socket.c)
_VPP_SOCKET_WORD = re.compile(r"[A-Za-z0-9/_.-]+")


@dataclass(frozen=True, slots=True)
class Uplink:
    """The node's data NIC as VPP takes it: ``host_if`` its Linux name,
    ``cidr`` the node's address on it, ``gateway`` the next hop for
    everything else (empty: none)."""

    host_if: str
    cidr: str
    gateway: str = ""
    mac: str = ""  # "" : one derived from the address; STN: the NIC's own
    stn: bool = False  # a NIC stolen by STN: the host's traffic goes through VPP
    carry: bool = True  # VPP holds the node's address (STN: only while the NIC is stolen)


def _mac(prefix: str, ip: str) -> str:
    """02:fe/02:fd + the IPv4 address: VPP's MACs stay the same across a restart."""
    return prefix + ":" + ":".join(f"{b:02x}" for b in ipaddress.ip_address(ip).packed)


def vtep_index(mac: str) -> int:
    """The node index a VTEP MAC encodes (agent.builders.nodes.vtep_mac)."""
    return int(mac.replace(":", "")[-8:], 16)


def render_host(pod_cidr: str, service_cidr: str, mtu: int, host_ip: str = "") -> dict[str, object]:
    """The host interconnect: the node's own network stack reaches pods and
    Services through a veth pair whose VPP end VPP takes as ``host``
    (af_packet; 169.254.99.2/30) and whose Linux end ``contiv-host`` holds
    169.254.99.1/30, with routes for the pod and Service CIDRs via VPP.
    ``host_ip`` (the node's own address in its pod subnet,
    :func:`agent.builders.nodes.host_address`) is on ``contiv-host`` too and
    those routes' source, VPP routes it to the host: pods on other nodes
    answer the node through the overlay (169.254.99.1 is every node's).
    Services' cnat runs on ``host`` as on a pod's interface, so the node
    reaches Services too; policies admit the node's addresses (kubelet probes)."""
    from agent.vpp import services  # noqa: PLC0415
    ips = (f"{HOST_LINUX_IP}/30",) + ((f"{host_ip}/32",) if host_ip else ())
    out: dict[str, object] = {
        lv.veth_key(HOST_VETH): lv.Veth(HOST_VETH, NODE_NETNS, HOST_LINUX_IF, ips,
                                        mtu, f"{lv.TAG_PREFIX}pod:~node", tx_checksum=False),
        vv.interface_key(HOST): vv.Interface(HOST, "af_packet", "02:fd:a9:fe:63:02", host_if=HOST_VETH,
                                             needs=lv.veth_key(HOST_VETH)),
        vv.address_key(HOST, f"{HOST_VPP_IP}/30"): vv.Address(HOST, f"{HOST_VPP_IP}/30"),
    }
    if host_ip:
        out[vv.route_key(0, f"{host_ip}/32")] = vv.Route(f"{host_ip}/32", HOST, HOST_LINUX_IP)
    for dst in (pod_cidr, service_cidr):
        if dst:
            out[lv.podroute_key(HOST_VETH, dst)] = lv.PodRoute(HOST_VETH, NODE_NETNS, HOST_LINUX_IF,
                                                              dst, HOST_VPP_IP, src=host_ip)
    out.update(services.pod_values(HOST))
    return out


def render_stn_host(mtu: int) -> dict[str, object]:
    """STN's host interconnect, on every ``vpp_stn`` node whether the NIC is
    stolen or not (docs/stn.md): a veth pair whose end ``stn-host`` carries
    the node's addresses and routes while the NIC is stolen (``contivctl stn``
    puts them there: they are not the agent's) and whose end ``stn-vpp`` VPP
    takes as ``stnhost``. It outlives every steal on purpose: VPP's ``stn``
    plugin counts IPv4 on for its interface and never counts it out, so an
    interface deleted and made again with the same ``sw_if_index`` would
    start counted -- and the first user's "on" would never switch IPv4 on.
    ``stn-host`` has the MAC the plugin writes on what it hands the host.
    ``mtu``: the NIC's."""
    veth = lv.veth_key(STN_VETH)
    return {
        veth: lv.Veth(STN_VETH, NODE_NETNS, STN_HOST_IF, (), mtu, f"{lv.TAG_PREFIX}pod:~stn",
                      tx_checksum=False, mac=STN_HOST_MAC, foreign_ips=True),
        vv.interface_key(STN_HOST): vv.Interface(STN_HOST, "af_packet", "02:fd:00:00:00:01",
                                                 host_if=STN_VETH, needs=veth),
    }


def render_stn(uplink: Uplink) -> dict[str, object]:
    """What VPP holds for a stolen NIC beyond the uplink, once it carries the
    node's address: ``stnhost`` unnumbered to the uplink (IP on it without
    an address of its own), proxy ARP for the uplink's subnet there (the
    host's packets come to VPP, which routes them out of the NIC), and an
    STN rule handing the host what comes for the node's address and VPP
    does not consume itself."""
    iface = ipaddress.ip_interface(uplink.cidr)
    net = iface.network
    out: dict[str, object] = {
        vv.unnumbered_key(STN_HOST): vv.Unnumbered(STN_HOST, UPLINK),
        vv.proxyarpif_key(STN_HOST): vv.ProxyArpIf(STN_HOST),
        vv.stn_key(str(iface.ip)): vv.StnRule(str(iface.ip), STN_HOST),
    }
    if net.num_addresses > 2:
        low, hi = str(net[1]), str(net[-2])
    elif uplink.gateway:  # a /32 or /31 (clouds): the host asks for its gateway alone
        low = hi = uplink.gateway
    else:
        return out
    out[vv.proxyarp_key(low, hi)] = vv.ProxyArp(low, hi)
    return out


def is_stn_key(key: str) -> bool:
    """Whether ``key`` is one of the values a stolen NIC needs (the uplink
    with its address and default route, STN's host interconnect and rule)."""
    return key in (vv.interface_key(UPLINK), vv.interface_key(STN_HOST), lv.veth_key(STN_VETH),
                   vv.unnumbered_key(STN_HOST), vv.proxyarpif_key(STN_HOST), vv.route_key(0, "0.0.0.0/0")) \
        or key.startswith(("vpp/stn/", vv.address_key(UPLINK, "")))


def render_node(t: NodeTransport, uplink: Uplink, service_cidr: str = "",
                pod_cidr: str = "", host_ip: str = "") -> dict[str, object]:
    """``service_cidr``: a port without endpoints is rejected there (see
    :func:`agent.vpp.services.node_values`); with ``pod_cidr``, the host
    interconnect (:func:`render_host`, ``host_ip`` the node's own address
    in its pod subnet, "" none) is part of the node. ``uplink.carry``
    False: the NIC open, the node's address left to Linux (STN)."""
    from agent.vpp import services  # noqa: PLC0415 -- builds on what this renders
    node_ip = str(ipaddress.ip_interface(uplink.cidr).ip)
    out: dict[str, object] = dict(services.node_values(BVI, service_cidr))
    if pod_cidr:
        out.update(render_host(pod_cidr, service_cidr, t.mtu, host_ip))

    def put(key: str, value: object) -> None:
        out[key] = value
    put(vv.interface_key(UPLINK), vv.Interface(UPLINK, "af_packet", uplink.mac or _mac("02:fd", node_ip),
                                               host_if=uplink.host_if))
    if uplink.carry:
        put(vv.address_key(UPLINK, uplink.cidr), vv.Address(UPLINK, uplink.cidr))
        if uplink.gateway:
            put(vv.route_key(0, "0.0.0.0/0"), vv.Route("0.0.0.0/0", UPLINK, uplink.gateway))
        if uplink.stn:
            out.update(render_stn(uplink))
    put(vv.interface_key(BVI), vv.Interface(BVI, "loopback", t.me.vtep_mac, instance=0))
    put(vv.bd_key(BD), vv.BridgeDomain(BD))
    put(vv.bdport_key(BVI), vv.BridgePort(BVI, BD, bvi=True))
    for gw, subnet in zip(t.me.gateways, t.me.pod_subnets):
        plen = ipaddress.ip_network(subnet).prefixlen
        put(vv.address_key(BVI, f"{gw}/{plen}"), vv.Address(BVI, f"{gw}/{plen}"))
        put(vv.proxyarp_key(gw, gw), vv.ProxyArp(gw, gw))
    for peer in t.peers:
        tunnel = f"vx-{peer.name}"[:40]
        put(vv.vxlan_key(tunnel), vv.Vxlan(tunnel, node_ip, peer.node_ip, t.vni,
                                            vtep_index(peer.vtep_mac), t.port))
        put(vv.bdport_key(tunnel), vv.BridgePort(tunnel, BD, shg=1))
        put(vv.l2fib_key(BD, peer.vtep_mac), vv.L2Fib(BD, peer.vtep_mac, tunnel))
        for gw, subnet in zip(peer.gateways, peer.pod_subnets):
            put(vv.neighbor_key(BVI, gw), vv.Neighbor(BVI, gw, peer.vtep_mac))
            put(vv.route_key(0, subnet), vv.Route(subnet, BVI, gw))
    return out


def render_pod(p: PodAttachment) -> dict[str, object]:
    host_if = lv.host_ifname(p.container_id, p.ifname)
    out: dict[str, object] = {
        lv.veth_key(host_if): lv.Veth(host_if, p.netns, p.ifname, tuple(p.ips), p.mtu,
                                      f"{lv.TAG_PREFIX}pod:{p.pod_ref}", tx_checksum=False),
    }
    for gw in p.gateways:
        out[lv.podroute_key(host_if, "0.0.0.0/0")] = lv.PodRoute(host_if, p.netns, p.ifname,
                                                                "0.0.0.0/0", gw, True)
    ip = str(ipaddress.ip_interface(p.ips[0]).ip)
    name = vv.pod_ifname(ip)
    out[vv.interface_key(name)] = vv.Interface(name, "af_packet", _mac("02:fe", ip), host_if=host_if,
                                               needs=lv.veth_key(host_if))
    out[vv.neighbor_key(name, ip)] = vv.Neighbor(name, ip, pod_mac(p.ips))
    out.update(_routed(name, ip))
    if p.memif:
        out.update(render_memif(p))
    return out


def _routed(name: str, ip: str) -> dict[str, object]:
    """What makes VPP interface ``name`` a pod's way in for address ``ip``
    (a pod's eth0, a pod's memif): unnumbered to ``loop0``, proxy ARP for
    the gateway, a /32 route, and what Services need of a pod interface."""
    from agent.vpp import services  # noqa: PLC0415
    return {vv.unnumbered_key(name): vv.Unnumbered(name, BVI),
            vv.proxyarpif_key(name): vv.ProxyArpIf(name),
            vv.route_key(0, f"{ip}/32"): vv.Route(f"{ip}/32", name, ip),
            **services.pod_values(name)}


def memif_socket_path(ifname: str) -> str:
    """The pod's memif socket as its program names it: the abstract socket
    ``@contiv/memif-<ifname>`` of its own network namespace."""
    return "@" + vv.MEMIF_SOCKET_PREFIX.partition(":")[2] + ifname


def memif_socket(netns: str, ifname: str) -> str:
    """The pod's memif socket in VPP's syntax: an abstract socket named
    after the pod's interface, inside the pod's network namespace (a path
    under /var/run/netns is given by its name, which VPP looks up there:
    a shorter filename)."""
    for d in ("/var/run/netns/", "/run/netns/"):
        if netns.startswith(d) and "/" not in netns[len(d):]:
            netns = netns[len(d):]
            break
    for what, text in (("network namespace", netns), ("interface name", ifname)):
        if not _VPP_SOCKET_WORD.fullmatch(text):  # VPP stops reading there: "unknown input"
            raise PodOptionError(f"a memif needs a {what} of letters, digits and /_.- only "
                                 f"(VPP's socket syntax), not {text!r}")
    name = f"{vv.MEMIF_SOCKET_PREFIX}{ifname},netns_name={netns}"
    if len(name) > vv.MEMIF_FILENAME_MAX:
        raise PodOptionError(f"a memif socket in network namespace {netns!r} would be longer than "
                             f"VPP's {vv.MEMIF_FILENAME_MAX} bytes")
    return name


def render_memif(p: PodAttachment) -> dict[str, object]:
    """A pod's memif (docs/vpp.md, "memif"): a master in VPP on an abstract
    socket in the pod's namespace (``@contiv/memif-<ifname>``: the pod's
    program connects as the slave), with the pod's second address
    (``p.memif``) routed to it exactly as a pod's eth0 is -- unnumbered to
    ``loop0``, proxy ARP for the gateway, a /32 route -- but no static
    neighbour (the slave's MAC is the slave's: VPP asks by ARP), and what
    Services need of a pod interface. Its name comes from the pod's eth0
    address (:func:`agent.vpp.values.memif_ifname`), so the pod's policies
    find it (:mod:`agent.vpp.policies`). The socket id is the memif address
    as a number: unique on the node, the same after a restart."""
    ip = str(ipaddress.ip_interface(p.memif).ip)
    socket_id = int(ipaddress.ip_address(ip))
    name = vv.memif_ifname(str(ipaddress.ip_interface(p.ips[0]).ip))
    sock = vv.memifsock_key(socket_id)
    return {
        sock: vv.MemifSocket(socket_id, memif_socket(p.netns, p.ifname)),
        vv.interface_key(name): vv.Interface(name, "memif", _mac("02:fc", ip), instance=socket_id,
                                             mtu=p.mtu, needs=sock),
        **_routed(name, ip),
    }
