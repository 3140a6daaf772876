"""Values of the VPP data plane: frozen dataclasses and their keys (no I/O).

Interfaces are named by the agent (``name``, e.g. ``loop0``, ``uplink``, a
pod's host-side veth name) and carry the tag ``contiv:<name>`` in VPP, which
is how ``retrieve`` tells ours from everybody else's and maps them back to
keys. Everything else refers to interfaces by that name; descriptors resolve
it to a ``sw_if_index`` through the interface's metadata.

Keys (``vpp/<type>/...``):

* ``vpp/interface/<name>``       -- :class:`Interface` (loopback, af_packet, memif)
* ``vpp/memifsock/<id>``         -- :class:`MemifSocket` (where a pod's memif listens)
* ``vpp/address/<if>/<cidr>``    -- :class:`Address`
* ``vpp/unnumbered/<if>``        -- :class:`Unnumbered` (borrows another's address)
* ``vpp/proxyarp/<low>-<hi>``    -- :class:`ProxyArp` (answer ARP for a range)
* ``vpp/proxyarpif/<if>``        -- :class:`ProxyArpIf` (on that interface)
* ``vpp/neighbor/<if>/<ip>``     -- :class:`Neighbor` (static)
* ``vpp/route/<table>/<prefix>`` -- :class:`Route`
* ``vpp/bd/<id>``                -- :class:`BridgeDomain`
* ``vpp/bdport/<if>``            -- :class:`BridgePort` (an interface in a BD)
* ``vpp/vxlan/<name>``           -- :class:`Vxlan` (a tunnel interface)
* ``vpp/l2fib/<bd>/<mac>``       -- :class:`L2Fib` (a static MAC entry)
* ``vpp/stn/<ip>``               -- :class:`StnRule` (the host's traffic, handed over)
"""
from __future__ import annotations

from dataclasses import dataclass

#: the pods' gateway loopback: BVI of the overlay bridge domain, and the SNAT
#: source of external traffic to remote endpoints and of hairpin connections
BVI = "loop0"
TAG_PREFIX = "contiv:"
#: the start of every memif socket filename of ours: an abstract socket
#: ``contiv/memif-<ifname>`` (agent.vpp.render.render_memif)
MEMIF_SOCKET_PREFIX = "abstract:contiv/memif-"
#: the longest memif socket filename VPP's dump gives back whole (108 with its NUL)
MEMIF_FILENAME_MAX = 107
#: VPP's FIB source of routes added through the API (vnet/fib/fib_source.h:
#: a compile-time enum, FIB_SOURCE_API)
FIB_SOURCE_API = 8
#: ~0: "no such index" in VPP's API (an unset sw_if_index, a new ACL...)
NONE = 0xFFFFFFFF


def pod_ifname(ip: str) -> str:
    """The name of a pod's VPP interface: from its address, so that whatever
    knows the pod (Services, policies) names its interface without knowing
    its container ("p" + the IPv4 address in hex: "p0a010102")."""
    import ipaddress  # noqa: PLC0415 -- this module is otherwise import-free
    return "p" + ipaddress.ip_address(ip).packed.hex()


def memif_ifname(pod_ip: str) -> str:
    """The name of a pod's memif: from the pod's (eth0's) address, like
    :func:`pod_ifname`, so that policies find it from the pod alone."""
    return "m" + pod_ifname(pod_ip)[1:]


def tag(name: str) -> str:
    return TAG_PREFIX + name


def untag(t: str) -> str | None:
    return t[len(TAG_PREFIX):] if t.startswith(TAG_PREFIX) else None


@dataclass(frozen=True, slots=True)
class Interface:
    """``kind``: ``loopback`` (``instance`` is its number), ``af_packet``
    (``host_if``: the Linux interface it attaches to) or ``memif`` (a master,
    id 0, on the socket ``instance``: a :class:`MemifSocket`'s id). ``mac``:
    fixed, so that neighbours keep it across a VPP restart."""

    name: str
    kind: str
    mac: str
    host_if: str = ""
    instance: int = 0
    mtu: int = 0  # 0: VPP's default
    #: the key of what the interface needs first: an af_packet interface the
    #: Linux link it reads (when it is ours), a memif its socket
    needs: str = ""


@dataclass(frozen=True, slots=True)
class MemifSocket:
    """A memif socket of VPP's (``id``: VPP's socket id, ours to choose):
    ``filename`` in VPP's syntax -- a pod's is an abstract socket in the
    pod's network namespace (``abstract:NAME,netns_name=NETNS``), so the pod
    reaches it without a mount and nobody outside the pod does."""

    id: int
    filename: str


@dataclass(frozen=True, slots=True)
class Address:
    ifname: str
    cidr: str


@dataclass(frozen=True, slots=True)
class Unnumbered:
    ifname: str
    via: str  # the interface whose address it borrows


@dataclass(frozen=True, slots=True)
class ProxyArp:
    low: str
    hi: str
    table: int = 0


@dataclass(frozen=True, slots=True)
class ProxyArpIf:
    ifname: str


@dataclass(frozen=True, slots=True)
class Neighbor:
    ifname: str
    ip: str
    mac: str


@dataclass(frozen=True, slots=True)
class Route:
    """``via`` empty: an attached route through ``ifname``; ``ifname``
    empty and ``kind`` ``unreach``/``drop``: a special route (no path
    interface)."""

    prefix: str
    ifname: str = ""
    via: str = ""
    table: int = 0
    kind: str = "normal"  # normal | unreach | drop


@dataclass(frozen=True, slots=True)
class BridgeDomain:
    id: int
    learn: bool = False
    flood: bool = True


@dataclass(frozen=True, slots=True)
class BridgePort:
    ifname: str
    bd: int
    bvi: bool = False
    shg: int = 0  # split-horizon group (tunnels: 1, so BUM never goes tunnel to tunnel)


@dataclass(frozen=True, slots=True)
class Vxlan:
    name: str
    src: str
    dst: str
    vni: int
    instance: int
    port: int = 4789


@dataclass(frozen=True, slots=True)
class L2Fib:
    bd: int
    mac: str
    ifname: str


@dataclass(frozen=True, slots=True)
class StnRule:
    """VPP's ``stn`` plugin: packets for ``ip`` that VPP does not consume
    itself (TCP and UDP to ports it does not serve, echo replies) go out of
    ``ifname`` -- the host interconnect of a stolen NIC -- as they came."""

    ip: str
    ifname: str


def interface_key(name: str) -> str:
    return f"vpp/interface/{name}"


def memifsock_key(socket_id: int) -> str:
    return f"vpp/memifsock/{socket_id}"


def address_key(ifname: str, cidr: str) -> str:
    return f"vpp/address/{ifname}/{cidr}"


def unnumbered_key(ifname: str) -> str:
    return f"vpp/unnumbered/{ifname}"


def proxyarp_key(low: str, hi: str) -> str:
    return f"vpp/proxyarp/{low}-{hi}"


def proxyarpif_key(ifname: str) -> str:
    return f"vpp/proxyarpif/{ifname}"


def neighbor_key(ifname: str, ip: str) -> str:
    return f"vpp/neighbor/{ifname}/{ip}"


def route_key(table: int, prefix: str) -> str:
    return f"vpp/route/{table}/{prefix}"


def bd_key(bd: int) -> str:
    return f"vpp/bd/{bd}"


def bdport_key(ifname: str) -> str:
    return f"vpp/bdport/{ifname}"


def vxlan_key(name: str) -> str:
    return f"vpp/vxlan/{name}"


def l2fib_key(bd: int, mac: str) -> str:
    return f"vpp/l2fib/{bd}/{mac}"


def stn_key(ip: str) -> str:
    return f"vpp/stn/{ip}"


def if_key_of(ifname: str) -> str:
    """The key that makes the interface ``ifname`` (a tunnel is a vxlan value)."""
    return vxlan_key(ifname) if ifname.startswith("vx-") else interface_key(ifname)
