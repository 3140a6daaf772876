"""A small RTNETLINK client for the pod-start path: hand-encoded messages over
a raw ``AF_NETLINK`` socket.

Why: pyroute2 encodes and decodes every message in Python objects (about
0.3 ms a message on these machines), which on the pod-start path cost more
than the kernel's own work. The few messages an ADD (and a DEL) sends are
fixed in shape, so they are packed here with :mod:`struct` -- byte for byte
what pyroute2 would send (``tests/unit/test_rtnl.py`` checks that) -- and
only the attributes the callers read are decoded from the answers.

What is here, and nothing else: the veth pair's ``RTM_NEWLINK`` (peer straight
into the pod namespace by file descriptor, with its name, MTU and MAC; the
host end up), an alias or the up flag on a link (``RTM_NEWLINK`` on an
index), a link by index or name (``RTM_GETLINK``), an address
(``RTM_NEWADDR``), and a route (``RTM_NEWROUTE``/``RTM_DELROUTE``); several
of them in one datagram (:meth:`Rtnl.batch`). Dumps, deletion of links and
everything else stay with pyroute2.

The peer cannot be brought up by the creating request, although the kernel's
veth_newlink applies the peer's ifinfomsg flags: it opens the peer before the
two ends are paired, and veth_open answers ENOTCONN (seen on 6.18). So the
pod end goes up with a second request, from the pod namespace.

Errors: a negative acknowledgement raises :class:`RtnlError`, an ``OSError``
whose ``errno`` (also ``code``, as pyroute2's ``NetlinkError`` has it) is the
kernel's; ``agent.linux.netns.is_errno`` and ``nl_error`` accept both.

Standard library only (:mod:`agent.linux.nlmsg`, the framing it shares with
:mod:`agent.linux.nft.wire`, is too); a :class:`Rtnl` is bound to the network
namespace of the thread that creates its socket (see ``agent.linux.netns``).
"""
from __future__ import annotations

import errno
import itertools
import os
import socket
import struct
import threading
from typing import NamedTuple

from agent.linux.nlmsg import attrs, message as _msg, messages, nla as _nla, nla_str as _str

NETLINK_ROUTE = 0
SOL_NETLINK = 270
NETLINK_CAP_ACK = 10  # errors do not echo our request back: less to copy

NLMSG_ERROR, NLMSG_DONE = 2, 3
RTM_NEWLINK, RTM_GETLINK = 16, 18
RTM_NEWADDR = 20
RTM_NEWROUTE, RTM_DELROUTE = 24, 25

NLM_F_REQUEST, NLM_F_ACK, NLM_F_ECHO = 0x1, 0x4, 0x8
NLM_F_REPLACE, NLM_F_EXCL, NLM_F_CREATE = 0x100, 0x200, 0x400
F_REQ = NLM_F_REQUEST | NLM_F_ACK
F_CREATE = F_REQ | NLM_F_CREATE | NLM_F_EXCL
F_REPLACE = F_REQ | NLM_F_CREATE | NLM_F_REPLACE

IFF_UP = 0x1
IFLA_ADDRESS, IFLA_IFNAME, IFLA_MTU, IFLA_LINK = 1, 3, 4, 5
IFLA_LINKINFO, IFLA_IFALIAS, IFLA_NET_NS_FD = 18, 20, 28
IFLA_INFO_KIND, IFLA_INFO_DATA = 1, 2
VETH_INFO_PEER = 1
IFA_ADDRESS, IFA_LOCAL = 1, 2
RTA_DST, RTA_OIF, RTA_GATEWAY, RTA_PREFSRC, RTA_TABLE = 1, 4, 5, 7, 15
RTN_UNSPEC, RTN_UNICAST = 0, 1
AF_INET, AF_INET6 = socket.AF_INET, socket.AF_INET6

_IFI = struct.Struct("=BxHiII")  # ifinfomsg: family, type, index, flags, change
_IFA = struct.Struct("=BBBBI")  # ifaddrmsg: family, prefixlen, flags, scope, index
_RTM = struct.Struct("=BBBBBBBBI")  # rtmsg: family, dst/src len, tos, table, proto, scope, type, flags
_U32 = struct.Struct("=I")
_I32 = struct.Struct("=i")


class RtnlError(OSError):
    """The kernel refused a request: ``errno`` (and ``code``) is its error."""

    @property
    def code(self) -> int:
        return self.errno


class Link(NamedTuple):
    """What the callers read of an ``RTM_NEWLINK`` answer."""

    index: int
    flags: int
    name: str = ""
    mtu: int = 0
    mac: str = ""
    link: int | None = None  # IFLA_LINK: a veth's peer index (in the peer's namespace)
    alias: str = ""
    kind: str = ""


# --------------------------------------------------------------------------- encoding
# _nla, _str, _msg (and messages, attrs below): agent.linux.nlmsg's, shared
# with agent.linux.nft.wire
def _u32(kind: int, v: int) -> bytes:
    return _nla(kind, _U32.pack(v))


def mac_bytes(mac: str) -> bytes:
    b = bytes.fromhex(mac.replace(":", ""))
    if len(b) != 6:
        raise ValueError(f"bad MAC address {mac!r}")
    return b


def veth_newlink(seq: int, name: str, peer: str, netns_fd: int, mtu: int, peer_mac: str = "",
                 *, up: bool = True, peer_up: bool = False, echo: bool = True) -> bytes:
    """One ``RTM_NEWLINK`` creating a veth pair: ``name`` here, ``peer`` in the
    namespace open at ``netns_fd``; both ends with ``mtu``, the peer with
    ``peer_mac`` (if given). ``up`` brings this end up in the same request;
    ``peer_up`` asks it for the peer (in the peer's ifinfomsg) -- which the
    kernel refuses with ENOTCONN (see the module docstring)."""
    pflags = IFF_UP if peer_up else 0
    peer_attrs = _str(IFLA_IFNAME, peer) + _u32(IFLA_NET_NS_FD, netns_fd) + _u32(IFLA_MTU, mtu)
    if peer_mac:
        peer_attrs += _nla(IFLA_ADDRESS, mac_bytes(peer_mac))
    info = _str(IFLA_INFO_KIND, "veth") + _nla(IFLA_INFO_DATA, _nla(
        VETH_INFO_PEER, _IFI.pack(0, 0, 0, pflags, pflags) + peer_attrs))
    flags = IFF_UP if up else 0
    body = (_IFI.pack(0, 0, 0, flags, flags) + _str(IFLA_IFNAME, name) + _u32(IFLA_MTU, mtu)
            + _nla(IFLA_LINKINFO, info))
    return _msg(RTM_NEWLINK, F_CREATE | (NLM_F_ECHO if echo else 0), seq, body)


def link_set(seq: int, index: int, *, alias: str | None = None, up: bool = False) -> bytes:
    """``RTM_NEWLINK`` on an existing link: set its alias and/or bring it up
    (what pyroute2's ``link("set", index=..., ifalias=... | state="up")`` sends)."""
    flags = IFF_UP if up else 0
    body = _IFI.pack(0, 0, index, flags, flags)
    if alias is not None:
        body += _str(IFLA_IFALIAS, alias)
    return _msg(RTM_NEWLINK, F_REQ, seq, body)


def link_get(seq: int, index: int = 0, name: str = "") -> bytes:
    body = _IFI.pack(0, 0, index, 0, 0)
    if name:
        body += _str(IFLA_IFNAME, name)
    return _msg(RTM_GETLINK, F_REQ, seq, body)


def _packed(family: int, address: str) -> bytes:
    try:
        return socket.inet_pton(family, address)
    except OSError:
        raise ValueError(f"bad IPv{4 if family == AF_INET else 6} address {address!r}") from None


def addr_new(seq: int, index: int, address: str, prefixlen: int) -> bytes:
    """``RTM_NEWADDR`` (create, exclusive): IPv4 carries ``IFA_ADDRESS`` and
    ``IFA_LOCAL``, IPv6 ``IFA_ADDRESS`` only -- as pyroute2 and iproute2 do."""
    family = AF_INET6 if ":" in address else AF_INET
    packed = _packed(family, address)
    body = _IFA.pack(family, prefixlen, 0, 0, index) + _nla(IFA_ADDRESS, packed)
    if family == AF_INET:
        body += _nla(IFA_LOCAL, packed)
    return _msg(RTM_NEWADDR, F_CREATE, seq, body)


def route_msg(seq: int, kind: int, flags: int, *, family: int, dst: str, dst_len: int,
              gateway: str = "", oif: int = 0, rtm_flags: int = 0, scope: int = 0,
              proto: int = 0, table: int = 254, prefsrc: str = "") -> bytes:
    """``RTM_NEWROUTE``/``RTM_DELROUTE`` in the layout pyroute2's ``route()``
    gives the same arguments: RTA_DST (left out for a default route), RTA_OIF
    (if given), RTA_TABLE, RTA_GATEWAY and RTA_PREFSRC (if given); type
    unicast on add, unspecified on delete."""
    rtype = RTN_UNICAST if kind == RTM_NEWROUTE else RTN_UNSPEC
    body = _RTM.pack(family, dst_len, 0, 0, table if table < 256 else 252, proto, scope, rtype,
                     rtm_flags)
    if dst_len:
        body += _nla(RTA_DST, _packed(family, dst))
    if oif:
        body += _u32(RTA_OIF, oif)
    body += _u32(RTA_TABLE, table)
    if gateway:
        body += _nla(RTA_GATEWAY, _packed(family, gateway))
    if prefsrc:
        body += _nla(RTA_PREFSRC, _packed(family, prefsrc))
    return _msg(kind, flags, seq, body)


# --------------------------------------------------------------------------- decoding
def _cstr(b: bytes) -> str:
    return b.split(b"\0", 1)[0].decode(errors="replace")


def decode_link(payload: bytes) -> Link:
    """The attributes of an ``RTM_NEWLINK`` message the callers read."""
    _, _, index, flags, _ = _IFI.unpack_from(payload)
    name = mac = alias = kind = ""
    mtu, peer = 0, None
    for t, v in attrs(payload, _IFI.size):
        if t == IFLA_IFNAME:
            name = _cstr(v)
        elif t == IFLA_MTU:
            mtu = _U32.unpack_from(v)[0]
        elif t == IFLA_ADDRESS:
            mac = ":".join(f"{b:02x}" for b in v)
        elif t == IFLA_LINK:
            peer = _I32.unpack_from(v)[0]
        elif t == IFLA_IFALIAS:
            alias = _cstr(v)
        elif t == IFLA_LINKINFO:
            for t2, v2 in attrs(v):
                if t2 == IFLA_INFO_KIND:
                    kind = _cstr(v2)
    return Link(index, flags, name, mtu, mac, peer, alias, kind)


# --------------------------------------------------------------------------- the socket
class Rtnl:
    """A raw rtnetlink socket in the namespace of the thread that creates it
    (or around ``sock``, made elsewhere). Thread-safe: one request at a time;
    each reads its answers up to its acknowledgement, skipping anything else
    (a stale answer of an interrupted request)."""

    def __init__(self, sock: socket.socket | None = None) -> None:
        if sock is None:
            sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_ROUTE)
        self.sock = sock
        try:
            sock.setsockopt(SOL_NETLINK, NETLINK_CAP_ACK, 1)
        except OSError:  # an old kernel: errors then echo the request, which is skipped
            pass
        self._seq = itertools.count(1)
        self._lock = threading.Lock()

    def fileno(self) -> int:
        return self.sock.fileno()

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> Rtnl:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _next_seq(self) -> int:
        return next(self._seq) & 0xFFFFFFFF or next(self._seq)

    def request(self, build, *args, **kwargs) -> list[tuple[int, bytes]]:
        """Send ``build(seq, *args, **kwargs)``; return the answers (type,
        payload) before the acknowledgement; raise :class:`RtnlError` on a
        negative one."""
        (out,) = self.batch([lambda seq: build(seq, *args, **kwargs)])
        if isinstance(out, RtnlError):
            raise out
        return out

    def batch(self, builds) -> list[list[tuple[int, bytes]] | RtnlError]:
        """Several requests in one datagram (one system call; the kernel
        handles them in order, each whatever became of the one before):
        ``builds`` are functions of the sequence number returning a message.
        Returns, per request, its answers or its error (not raised)."""
        with self._lock:
            seqs = [self._next_seq() for _ in builds]
            self.sock.send(b"".join(b(seq) for b, seq in zip(builds, seqs)))
            pending = dict(zip(seqs, range(len(seqs))))
            results: list = [[] for _ in seqs]
            while pending:
                data = self.sock.recv(65536)
                for kind, _, mseq, payload in messages(data):
                    i = pending.get(mseq)
                    if i is None:
                        continue  # not ours: a stale answer, or a notification
                    if kind == NLMSG_ERROR:
                        err = -_I32.unpack_from(payload)[0]
                        if err:
                            results[i] = RtnlError(err, os.strerror(err))
                        del pending[mseq]
                    elif kind == NLMSG_DONE:
                        del pending[mseq]
                    else:
                        results[i].append((kind, payload))
            return results

    # -- the operations --------------------------------------------------------
    def veth_add(self, name: str, peer: str, netns_fd: int, mtu: int, peer_mac: str = "") -> Link:
        """Create a veth pair (see :func:`veth_newlink`), this end up; the
        answer is the new host end as the kernel echoes it (index, MAC, the
        peer's index), or read back when a kernel does not echo."""
        for kind, payload in self.request(veth_newlink, name, peer, netns_fd, mtu, peer_mac):
            if kind == RTM_NEWLINK:
                link = decode_link(payload)
                if link.name == name:
                    return link
        return self.link(name=name)

    def link(self, index: int = 0, name: str = "") -> Link:
        for kind, payload in self.request(link_get, index, name):
            if kind == RTM_NEWLINK:
                return decode_link(payload)
        raise RtnlError(errno.ENODEV, os.strerror(errno.ENODEV))  # no answer is no link

    def link_set(self, index: int, *, alias: str | None = None, up: bool = False) -> None:
        self.request(link_set, index, alias=alias, up=up)

    def addr_add(self, index: int, address: str, prefixlen: int) -> None:
        self.request(addr_new, index, address, prefixlen)

    def route(self, cmd: str, **kwargs) -> None:
        """``cmd``: ``add`` (exclusive create), ``replace`` or ``del``;
        ``kwargs`` as :func:`route_msg` takes them."""
        kind, flags = {"add": (RTM_NEWROUTE, F_CREATE), "replace": (RTM_NEWROUTE, F_REPLACE),
                       "del": (RTM_DELROUTE, F_REQ)}[cmd]
        self.request(route_msg, kind, flags, **kwargs)


# -- ethtool -------------------------------------------------------------------
SIOCETHTOOL = 0x8946
ETHTOOL_GTXCSUM, ETHTOOL_STXCSUM = 0x16, 0x17


def tx_checksum(sock, ifname: str, on: bool | None = None) -> bool:
    """The TX checksum offload of ``ifname`` in the namespace of ``sock`` (any
    socket made there: the ioctl acts in its namespace): set to ``on`` when
    given (and ``on`` returned, not read back), else read."""
    import ctypes  # noqa: PLC0415 -- only on the VPP data plane's path
    import fcntl  # noqa: PLC0415

    def ethtool(cmd: int, data: int = 0) -> int:
        ev = ctypes.create_string_buffer(struct.pack("II", cmd, data), 8)
        ifr = struct.pack("16sP", ifname.encode(), ctypes.addressof(ev)).ljust(40, b"\0")
        fcntl.ioctl(sock.fileno(), SIOCETHTOOL, ifr)
        return struct.unpack("II", ev.raw)[1]
    if on is not None:
        ethtool(ETHTOOL_STXCSUM, int(on))
        return on
    return bool(ethtool(ETHTOOL_GTXCSUM))
