"""STN records: what "steal the NIC" saves before touching a NIC, and where
the steal stands.

Two files per stolen NIC live under the STN directory
(``/var/lib/contiv/stn/`` by default), both written atomically by
:mod:`agent.stndir`:

* ``<iface>.snapshot.json`` -- :class:`Snapshot`: the NIC's whole
  configuration as the kernel held it before the steal (link, addresses,
  routes in every table, policy rules, permanent neighbours). Versioned:
  a snapshot of an unknown version is refused rather than half-restored.
* ``<iface>.state.json`` -- :class:`StnState`: which data plane holds the
  NIC, since when, and whether the steal is confirmed or still pending
  (with the deadline after which it rolls back by itself).

The records live in the model (the lowest layer) because two parties read
them: ``stn`` writes them, the agent reports them in ``status`` and, on a
VPP node, takes the NIC as its uplink from them.

Addresses, routes, rules and neighbours are kept as the kernel's own field
names (pyroute2's netlink attribute names), without interface indexes: an
ifindex changes when a link is re-created, names and MACs do not.
"""
from __future__ import annotations

from dataclasses import dataclass
from ipaddress import ip_interface

from agent.errors import InvalidInput
from agent.model.records import _Record

#: the snapshot format this code writes and the only one it restores
SNAPSHOT_VERSION = 1
#: how a steal stands: ``stealing`` (steps under way), ``pending`` (done,
#: waiting for confirmation until ``deadline``), ``confirmed``,
#: ``suspended`` (the watchdog gave the NIC back because the data plane
#: died; it steals again when the data plane returns), ``restoring``
PHASES = ("stealing", "pending", "confirmed", "suspended", "restoring")
DATAPLANES = ("linux", "vpp")


@dataclass(frozen=True, slots=True)
class Snapshot(_Record):
    """A NIC's configuration before a steal: ``link`` (mac, mtu, up, and
    ``sysctl``: the per-interface settings a steal may change), and lists of
    kernel objects that use it. Route ``table`` is the numeric table; a
    route through several next hops is refused at capture."""

    version: int
    iface: str
    taken_at: float
    link: dict
    addresses: tuple[dict, ...] = ()
    routes: tuple[dict, ...] = ()
    rules: tuple[dict, ...] = ()
    neighbours: tuple[dict, ...] = ()

    @classmethod
    def parse(cls, raw: bytes | str, path: str, iface: str) -> "Snapshot":
        """The snapshot of ``iface`` in ``raw`` (read from ``path``), or
        InvalidInput naming the file and what is wrong with it. Checked whole
        before anything uses it: a restore that stops halfway through a
        snapshot it cannot apply leaves the node worse than none."""
        hint = "restore by hand: docs/stn.md, 'Recovering by hand'"
        try:
            snap = cls.from_json(raw)
        except InvalidInput as e:
            raise InvalidInput(f"STN snapshot {path} is corrupt: {e.message}", hint=hint) from None
        if snap.version != SNAPSHOT_VERSION:
            raise InvalidInput(f"STN snapshot {path} is of version {snap.version!r}; "
                               f"this contivctl restores version {SNAPSHOT_VERSION} only",
                               hint="restore with the contivctl that took it, or by hand (docs/stn.md)")
        problem = _problem(snap, iface)
        if problem:
            raise InvalidInput(f"STN snapshot {path} is corrupt: {problem}", hint=hint)
        return snap

    def ipv4(self) -> list[str]:
        """The NIC's IPv4 addresses with their prefix (``192.0.2.10/24``)."""
        return [f"{a['address']}/{a['prefixlen']}" for a in self.addresses if a.get("family") == 4]

    def gateway(self) -> str:
        """The IPv4 default route's next hop in the main table, or ""."""
        for r in self.routes:
            if r.get("family") == 4 and r.get("dst_len") == 0 and r.get("table") == 254 and r.get("gateway"):
                return r["gateway"]
        return ""


#: what every saved object must hold, by list: (key, type) pairs
_SHAPE = {
    "addresses": (("family", int), ("address", str), ("prefixlen", int)),
    "routes": (("family", int), ("table", int), ("dst", str), ("dst_len", int), ("proto", int),
               ("scope", int), ("type", int), ("tos", int)),
    "rules": (("family", int), ("action", int), ("src_len", int), ("dst_len", int), ("tos", int)),
    "neighbours": (("family", int), ("dst", str), ("lladdr", str)),
}


def _problem(snap: Snapshot, iface: str) -> str:
    """What makes ``snap`` unusable as ``iface``'s snapshot ("" nothing)."""
    if snap.iface != iface:
        return f"it is of interface {snap.iface!r}, not {iface!r}"
    link = snap.link
    if not (isinstance(link, dict) and isinstance(link.get("mac"), str) and isinstance(link.get("mtu"), int)
            and isinstance(link.get("up"), bool) and isinstance(link.get("sysctl", {}), dict)):
        return "the link's mac, mtu and up are missing or of the wrong type"
    for what, shape in _SHAPE.items():
        for item in getattr(snap, what):
            if not isinstance(item, dict) or not all(isinstance(item.get(k), t) and not isinstance(item.get(k), bool)
                                                     for k, t in shape):
                return f"an entry of {what} lacks {', '.join(k for k, _ in shape)}: {item!r}"
            if item["family"] not in (4, 6):
                return f"an entry of {what} has family {item['family']!r}"
    return ""


@dataclass(frozen=True, slots=True)
class StnState(_Record):
    """Where the steal of ``iface`` stands. ``holder``: the link that carries
    the node's address while stolen (the Linux bridge, or the host end of
    VPP's host interconnect); ``deadline`` (epoch seconds): a pending steal
    rolls back then; ``check``: what confirms it automatically ("" = only
    ``contivctl stn confirm``); ``error``: the last failure met (or why it was restored)."""

    iface: str
    dataplane: str
    phase: str
    since: float
    holder: str
    deadline: float = 0.0
    check: str = ""
    confirmed_at: float = 0.0
    error: str = ""
    pid: int = 0  # the process in the middle of stealing or restoring
    #: the node's addresses have left the NIC: a data plane that takes the
    #: NIC (VPP) may answer for them now -- before, it only opens its
    #: interfaces (while the node still answers on the NIC), so that the
    #: time the node is unreachable stays short
    moved: bool = False

    @classmethod
    def parse(cls, raw: bytes | str, path: str, iface: str = "") -> "StnState":
        try:
            st = cls.from_json(raw)
        except InvalidInput as e:
            raise InvalidInput(f"STN state {path} is corrupt: {e.message}") from None
        if st.phase not in PHASES or st.dataplane not in DATAPLANES or (iface and st.iface != iface):
            raise InvalidInput(f"STN state {path} is corrupt: interface {st.iface!r}, phase {st.phase!r}, "
                               f"data plane {st.dataplane!r}")
        return st

    @property
    def carried(self) -> bool:
        """The node's addresses are off the NIC, on the data plane's holder:
        what a data plane answering for them (VPP) or leaving by it (Linux's
        VXLAN) waits for."""
        return self.phase in ("pending", "confirmed") or (self.phase == "stealing" and self.moved)


@dataclass(frozen=True, slots=True)
class StnEntry(_Record):
    """One NIC in ``contivctl stn status``: its state, and what the snapshot
    says the node's address and gateway are."""

    state: StnState
    addresses: tuple[str, ...]
    gateway: str
    snapshot: str


@dataclass(frozen=True, slots=True)
class StnStatus(_Record):
    """``contivctl stn status`` and the agent's ``status.stn``: every NIC
    with a steal on record under ``dir``, and files that could not be read."""

    dir: str
    entries: tuple[StnEntry, ...] = ()
    errors: tuple[str, ...] = ()


def uplink_of(snap: Snapshot) -> tuple[str, str, str]:
    """(cidr, gateway, mac) of a stolen NIC as a data plane takes it: its
    first IPv4 address, its default gateway, its MAC."""
    v4 = snap.ipv4()
    if not v4:
        raise InvalidInput(f"{snap.iface} has no IPv4 address in its STN snapshot")
    ip_interface(v4[0])  # checked: a corrupt file must not reach a data plane
    return v4[0], snap.gateway(), snap.link["mac"]
