"""The conntrack table of this thread's network namespace, read as
``conntrack -L`` reads it: one ctnetlink dump (``IPCTNL_MSG_CT_GET`` with
``NLM_F_DUMP``) per address family, hand-decoded with :mod:`agent.linux.nlmsg`.

Why not pyroute2's ``Conntrack``: it decoded 8,400 entries in 1.8 s here
(docs/performance.md, bench/diag_scale.py) and drops the counters; this walks
only the attributes a :class:`agent.model.diag.Session` needs. Standard
library only.
"""
from __future__ import annotations

import errno
import socket
import struct

from agent.errors import DataplaneError
from agent.linux.nlmsg import NLM_F_DUMP, NLM_F_REQUEST, attrs, message
from agent.linux.nlmsg import dump as nl_dump
from agent.model.diag import Session

NETLINK_NETFILTER = 12
NFNL_SUBSYS_CTNETLINK = 1
IPCTNL_MSG_CT_GET = 1

# attributes (include/uapi/linux/netfilter/nfnetlink_conntrack.h)
CTA_TUPLE_ORIG, CTA_TUPLE_REPLY, CTA_PROTOINFO, CTA_TIMEOUT = 1, 2, 4, 7
CTA_COUNTERS_ORIG = 9
CTA_TUPLE_IP, CTA_TUPLE_PROTO = 1, 2
CTA_IP_V4_SRC, CTA_IP_V4_DST, CTA_IP_V6_SRC, CTA_IP_V6_DST = 1, 2, 3, 4
CTA_PROTO_NUM, CTA_PROTO_SRC_PORT, CTA_PROTO_DST_PORT = 1, 2, 3
CTA_PROTOINFO_TCP, CTA_PROTOINFO_TCP_STATE = 1, 1
CTA_COUNTERS_PACKETS, CTA_COUNTERS_BYTES = 1, 2

#: conntrack's TCP states (enum tcp_conntrack), named as conntrack -L names them
TCP_STATES = ("NONE", "SYN_SENT", "SYN_RECV", "ESTABLISHED", "FIN_WAIT", "CLOSE_WAIT", "LAST_ACK",
              "TIME_WAIT", "CLOSE", "SYN_SENT2")
PROTOCOLS = {socket.IPPROTO_TCP: "tcp", socket.IPPROTO_UDP: "udp", socket.IPPROTO_ICMP: "icmp",
             socket.IPPROTO_IGMP: "igmp", socket.IPPROTO_ICMPV6: "ipv6-icmp", 132: "sctp"}

_NFGEN = struct.Struct("=BBH")  # nfgenmsg: family, version, res_id
_BE16, _BE32, _BE64 = struct.Struct(">H"), struct.Struct(">I"), struct.Struct(">Q")


def request(seq: int, family: int) -> bytes:
    """The dump request of every entry of one address family."""
    return message((NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_GET, NLM_F_REQUEST | NLM_F_DUMP, seq,
                   _NFGEN.pack(family, 0, 0))


def _tuple(data: bytes) -> tuple[str, str, int, int, int]:
    """(src, dst, protocol number, sport, dport) of a CTA_TUPLE_* nest."""
    src = dst = ""
    proto = sport = dport = 0
    for kind, val in attrs(data):
        if kind == CTA_TUPLE_IP:
            for k, v in attrs(val):
                if k in (CTA_IP_V4_SRC, CTA_IP_V6_SRC):
                    src = socket.inet_ntop(socket.AF_INET if k == CTA_IP_V4_SRC else socket.AF_INET6, v)
                elif k in (CTA_IP_V4_DST, CTA_IP_V6_DST):
                    dst = socket.inet_ntop(socket.AF_INET if k == CTA_IP_V4_DST else socket.AF_INET6, v)
        elif kind == CTA_TUPLE_PROTO:
            for k, v in attrs(val):
                if k == CTA_PROTO_NUM:
                    proto = v[0]
                elif k == CTA_PROTO_SRC_PORT:
                    sport = _BE16.unpack(v)[0]
                elif k == CTA_PROTO_DST_PORT:
                    dport = _BE16.unpack(v)[0]
    return src, dst, proto, sport, dport


def parse(payload: bytes) -> Session | None:
    """One entry (the payload of one dump message: nfgenmsg, attributes);
    None without both tuples."""
    orig = reply = None
    state, timeout, packets, nbytes = "", 0, 0, 0
    for kind, val in attrs(payload, _NFGEN.size):
        if kind == CTA_TUPLE_ORIG:
            orig = _tuple(val)
        elif kind == CTA_TUPLE_REPLY:
            reply = _tuple(val)
        elif kind == CTA_TIMEOUT:
            timeout = _BE32.unpack(val)[0]
        elif kind == CTA_PROTOINFO:
            for k, v in attrs(val):
                if k == CTA_PROTOINFO_TCP:
                    for k2, v2 in attrs(v):
                        if k2 == CTA_PROTOINFO_TCP_STATE and v2[0] < len(TCP_STATES):
                            state = TCP_STATES[v2[0]]
        elif kind == CTA_COUNTERS_ORIG:  # present only with nf_conntrack_acct=1
            for k, v in attrs(val):
                if k == CTA_COUNTERS_PACKETS:
                    packets = _BE64.unpack(v)[0]
                elif k == CTA_COUNTERS_BYTES:
                    nbytes = _BE64.unpack(v)[0]
    if orig is None or reply is None:
        return None
    src, dst, proto, sport, dport = orig
    # the reply tuple's source is who really answers (the DNAT target)
    return Session(PROTOCOLS.get(proto, str(proto)), src, sport, dst, dport, reply[0], reply[3],
                   state, timeout, packets, nbytes)


def dump(sock: socket.socket) -> list[Session]:
    """Every IPv4 and IPv6 entry, over a ``NETLINK_NETFILTER`` socket."""
    out: list[Session] = []
    for seq, family in enumerate((socket.AF_INET, socket.AF_INET6), 1):
        try:
            for _, payload in nl_dump(sock, request(seq, family), seq, 1 << 20):
                s = parse(payload)
                if s is not None:
                    out.append(s)
        except OSError as e:
            why = errno.errorcode.get(e.errno, e) if e.errno else e  # no errno: a receive timeout
            raise DataplaneError(f"conntrack dump failed: {why}",
                                 op="ctnetlink", args={"errno": e.errno}) from None
    return out


def sessions() -> list[Session]:
    """The conntrack table of this thread's network namespace."""
    try:
        sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
    except OSError as e:
        raise DataplaneError(f"cannot open ctnetlink: {e.strerror or e}", op="ctnetlink") from None
    with sock:
        sock.settimeout(10)
        # a large table arrives in many datagrams: room for them while we decode
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
        return dump(sock)
