"""Node-to-node connectivity: this node's overlay endpoint and every remote peer."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

from agent.model.records import NodeInfo


@dataclass(frozen=True, slots=True)
class Peer:
    """A remote node as the overlay needs it."""

    name: str
    node_ip: str
    vtep_mac: str
    pod_subnets: tuple[str, ...]
    gateways: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class NodeTransport:
    me: NodeInfo
    peers: tuple[Peer, ...]
    vni: int
    port: int
    mtu: int  # of the overlay device (underlay MTU minus encapsulation)
    underlay_dev: str
    forwarding: bool = True


def node_transport(me: NodeInfo, registry: Iterable[NodeInfo], *, vni: int, port: int,
                   mtu: int, underlay_dev: str) -> NodeTransport:
    """Every other registered node with a subnet and an underlay address is a peer."""
    peers = tuple(sorted(
        (Peer(n.name, n.node_ip, n.vtep_mac, tuple(n.pod_subnets), tuple(n.gateways))
         for n in registry if n.name != me.name and n.node_ip and n.pod_subnets and n.vtep_mac),
        key=lambda p: p.name))
    return NodeTransport(me, peers, vni, port, mtu, underlay_dev)


def host_address(subnet: str) -> str:
    """The node's own address in its pod subnet: the last usable one. A data
    plane whose host reaches the pods through a link of its own (VPP's host
    interconnect) sends from it, so that pods on other nodes answer through
    the overlay; IPAM never hands it out there."""
    import ipaddress  # noqa: PLC0415
    return str(ipaddress.ip_network(subnet)[-2])


def vtep_mac(index: int) -> str:
    """The VXLAN device MAC of the node with subnet ``index`` (locally administered)."""
    return "02:c0:%02x:%02x:%02x:%02x" % ((index >> 24) & 0xff, (index >> 16) & 0xff,
                                          (index >> 8) & 0xff, index & 0xff)


def node_object_facts(raw: bytes | dict | None) -> tuple[str | None, str | None]:
    """(pod subnet, node address) a reflected Kubernetes Node (its JSON, as
    etcd holds it) states, IPv4 only, None where it states none:
    ``spec.podCIDRs``/``spec.podCIDR`` (set when the cluster allocates pod
    CIDRs) and the first ``InternalIP`` of ``status.addresses``. What wins
    over what: docs/etcd-layout.md, "Node facts"."""
    import ipaddress  # noqa: PLC0415
    import json  # noqa: PLC0415
    try:
        obj = json.loads(raw) if isinstance(raw, (bytes, str)) else raw
    except ValueError:
        obj = None  # not JSON: as if there were no Node object
    if not isinstance(obj, dict):
        return None, None
    spec, status = obj.get("spec") or {}, obj.get("status") or {}

    def v4(text, net: bool) -> str | None:
        try:
            x = ipaddress.ip_network(text, strict=True) if net else ipaddress.ip_address(text)
        except (TypeError, ValueError):
            return None
        return str(x) if x.version == 4 else None
    cidrs = list(spec.get("podCIDRs") or []) + ([spec["podCIDR"]] if spec.get("podCIDR") else [])
    cidr = next((c for c in map(lambda t: v4(t, True), cidrs) if c), None)
    addrs = [a.get("address") for a in status.get("addresses") or [] if isinstance(a, dict)
             and a.get("type") == "InternalIP"]
    ip = next((a for a in map(lambda t: v4(t, False), addrs) if a), None)
    return cidr, ip


def with_node_object(cfg, raw: bytes | None):
    """(configuration, pod subnet) once the reflected Node object is taken
    into account: its InternalIP becomes the underlay address on a Linux
    node that names none (``node_ip``, ``underlay_if``: an operator's choice
    wins; the default route's interface may be another one); its podCIDR is
    the subnet to claim (:meth:`agent.ipam.subnets.SubnetAllocator.claim`)."""
    import dataclasses  # noqa: PLC0415
    import logging  # noqa: PLC0415
    cidr, ip = node_object_facts(raw)
    if ip and not cfg.node_ip and not cfg.underlay_if and cfg.dataplane == "linux":
        logging.getLogger(__name__).info("node %s: underlay address %s from its Node object", cfg.node, ip)
        cfg = dataclasses.replace(cfg, node_ip=ip)
    return cfg, cidr

