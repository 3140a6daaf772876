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


def vtep_mac(index: int) -> str:
    """The VXLAN device MAC of the node with subnet ``index`` (locally administered)."""
    return "02:c0:%02x:%02x:%02x:%02x" % ((index >> 24) & 0xff, (index >> 16) & 0xff,
                                          (index >> 8) & 0xff, index & 0xff)
