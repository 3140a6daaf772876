"""Linux data-plane values: what the descriptors create, as frozen dataclasses.

Keys (one prefix per descriptor)::

    linux/veth/<host-ifname>              Veth: a pod's veth pair + its addresses
    linux/podroute/<host-ifname>/<dst>    PodRoute: a route inside a pod's namespace
    linux/local/<name>                    LocalLink: a port-less link holding node addresses
    linux/vxlan/<name>                    Vxlan: the node-to-node VXLAN device
    linux/route/<dst>                     Route: a route in the node's main table
    linux/neigh/<dev>/<ip>                Neighbor: a permanent neighbour entry
    linux/fdb/<dev>/<mac>                 Fdb: a VXLAN forwarding entry
    linux/sysctl/<name>                   Sysctl: a kernel setting
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass

#: Routes we create carry this protocol number: it is how retrieve knows them.
#: (Not in iproute2's rt_protos; Calico's bird uses 12, kernel 2, static 4.)
RTPROT_CONTIV = 173

#: Link alias prefix marking links we own.
TAG_PREFIX = "contiv:"


def host_ifname(container_id: str, ifname: str) -> str:
    """Deterministic host-side veth name (≤ 15 bytes): DEL can find it even
    when the allocation record is already gone."""
    return "cv" + hashlib.sha1(f"{container_id}/{ifname}".encode()).hexdigest()[:11]


@dataclass(frozen=True, slots=True)
class Veth:
    """A veth pair: ``host_if`` in the node namespace, ``pod_if`` in ``netns``
    with ``ips`` (CIDR strings). Both ends up, with ``mtu``."""

    host_if: str
    netns: str
    pod_if: str
    ips: tuple[str, ...]
    mtu: int
    tag: str  # link alias of the host end, e.g. "contiv:pod:default/web-1"
    #: TX checksum offload of the pod end. Off where the node end is read by
    #: something that does not complete checksums (VPP's af_packet).
    tx_checksum: bool = True
    #: the pod end's MAC ("": derived from its first IPv4 address)
    mac: str = ""
    #: the pod end's addresses are someone else's to set (STN's ``stn-host``
    #: carries the node's while the NIC is stolen): neither set nor compared
    foreign_ips: bool = False


@dataclass(frozen=True, slots=True)
class PodRoute:
    """A route inside a pod namespace. ``via`` empty for a link-scope route;
    ``onlink`` lets the gateway be outside the pod's own (/32) prefix."""

    host_if: str  # the pod's veth (key of the dependency)
    netns: str
    pod_if: str
    dst: str
    via: str = ""
    onlink: bool = False
    src: str = ""  # the preferred source address ("": the kernel's choice)


@dataclass(frozen=True, slots=True)
class LocalLink:
    """A link that only holds node-local addresses (the pods' gateway): a
    ``dummy`` link, or a port-less ``bridge`` on kernels without the dummy driver."""

    name: str
    ips: tuple[str, ...]
    tag: str
    mtu: int = 1500


@dataclass(frozen=True, slots=True)
class Vxlan:
    """The node's VXLAN device; learning is off, peers come from Fdb entries."""

    name: str
    vni: int
    local: str
    port: int
    mac: str
    mtu: int
    dev: str  # underlay link ("" = any)
    tag: str


@dataclass(frozen=True, slots=True)
class Route:
    """A route in the node namespace's main table, protocol RTPROT_CONTIV."""

    dst: str
    dev: str
    via: str = ""
    onlink: bool = False
    dev_key: str = ""  # the reconciler key of the link this route needs


@dataclass(frozen=True, slots=True)
class Neighbor:
    dev: str
    ip: str
    mac: str
    dev_key: str = ""


@dataclass(frozen=True, slots=True)
class Fdb:
    dev: str
    mac: str
    dst: str
    dev_key: str = ""


@dataclass(frozen=True, slots=True)
class Sysctl:
    name: str  # dotted, e.g. net.ipv4.ip_forward
    value: str


def veth_key(host_if: str) -> str:
    return f"linux/veth/{host_if}"


def podroute_key(host_if: str, dst: str) -> str:
    return f"linux/podroute/{host_if}/{dst}"


def local_key(name: str) -> str:
    return f"linux/local/{name}"


def vxlan_key(name: str) -> str:
    return f"linux/vxlan/{name}"


def route_key(dst: str) -> str:
    return f"linux/route/{dst}"


def neigh_key(dev: str, ip: str) -> str:
    return f"linux/neigh/{dev}/{ip}"


def fdb_key(dev: str, mac: str) -> str:
    return f"linux/fdb/{dev}/{mac}"


def sysctl_key(name: str) -> str:
    return f"linux/sysctl/{name}"
