"""A network namespace's TCP and UDP sockets, read as ``ss`` reads them:
netlink ``sock_diag`` (``SOCK_DIAG_BY_FAMILY`` dumps of ``inet_diag_req_v2``),
hand-encoded with :mod:`agent.linux.nlmsg` -- no ``ss`` output parsed.

Used by ``contivctl netstat -s`` for a pod's namespace on either data plane
(pods are Linux network namespaces on both). Standard library only.
"""
from __future__ import annotations

import ipaddress
import socket
import struct

from agent.errors import DataplaneError, NotFound
from agent.linux.nlmsg import NLM_F_DUMP, NLM_F_REQUEST, message
from agent.linux.nlmsg import dump as nl_dump
from agent.model.diag import SocketInfo
from agent.nsenter import socket_in

NETLINK_SOCK_DIAG = 4
SOCK_DIAG_BY_FAMILY = 20
ALL_STATES = 0xFFFFFFFF

# inet_diag_req_v2: family, protocol, ext, pad, states; then inet_diag_sockid
# (sport, dport big-endian; src[16], dst[16]; if; cookie[2]) -- 56 bytes
_REQ = struct.Struct("=BBBxI48x")
# inet_diag_msg: family, state, timer, retrans; sockid; expires, rqueue, wqueue, uid, inode
_MSG = struct.Struct("=BBBB2H16s16sI8sIIIII")

#: the kernel's TCP states (include/net/tcp_states.h) by ss's names; UDP
#: sockets use two: 1 (connected) and 7 (unconnected)
STATES = {1: "ESTAB", 2: "SYN-SENT", 3: "SYN-RECV", 4: "FIN-WAIT-1", 5: "FIN-WAIT-2",
          6: "TIME-WAIT", 7: "UNCONN", 8: "CLOSE-WAIT", 9: "LAST-ACK", 10: "LISTEN",
          11: "CLOSING", 12: "NEW-SYN-RECV"}
PROTOCOLS = {"tcp": socket.IPPROTO_TCP, "udp": socket.IPPROTO_UDP}


def request(seq: int, family: int, protocol: int) -> bytes:
    """The dump request for every socket of one family and protocol."""
    return message(SOCK_DIAG_BY_FAMILY, NLM_F_REQUEST | NLM_F_DUMP, seq,
                   _REQ.pack(family, protocol, 0, ALL_STATES))


def _addr(family: int, raw: bytes) -> str:
    return str(ipaddress.ip_address(raw[:4] if family == socket.AF_INET else raw))


def parse(proto: str, payload: bytes) -> SocketInfo:
    """One ``inet_diag_msg`` (the payload of one dump message)."""
    fam, state, _, _, sport, dport, src, dst, _, _, _, rq, wq, uid, inode = _MSG.unpack_from(payload)
    if proto == "tcp" and state == 7:
        state_name = "CLOSE"
    else:
        state_name = STATES.get(state, str(state))
    return SocketInfo(proto, state_name, _addr(fam, src), socket.ntohs(sport),
                      _addr(fam, dst), socket.ntohs(dport), rq, wq, uid, inode)


def dump(sock: socket.socket, protocols: tuple[str, ...] = ("tcp", "udp")) -> list[SocketInfo]:
    """Every socket of ``protocols`` (IPv4 and IPv6) in the namespace ``sock``
    (a ``NETLINK_SOCK_DIAG`` socket) was made in; sorted as ss sorts them
    roughly: by protocol, then local address and port."""
    out: list[SocketInfo] = []
    seq = 0
    for proto in protocols:
        for family in (socket.AF_INET, socket.AF_INET6):
            seq += 1
            try:
                out.extend(parse(proto, payload) for kind, payload in
                           nl_dump(sock, request(seq, family, PROTOCOLS[proto]), seq)
                           if kind == SOCK_DIAG_BY_FAMILY)
            except OSError as e:
                why = f"errno {e.errno}" if e.errno else e  # no errno: a receive timeout
                raise DataplaneError(f"sock_diag dump of {proto} sockets failed: {why}",
                                     op="sock_diag", args={"errno": e.errno, "protocol": proto}) from None
    return out


def pod_sockets(path: str) -> list[SocketInfo]:
    """The TCP and UDP sockets of the network namespace at ``path`` (NotFound
    if it is gone)."""
    try:
        s = socket_in(path, socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_SOCK_DIAG)
    except FileNotFoundError:
        raise NotFound(f"network namespace {path} does not exist (the pod is gone?)") from None
    except OSError as e:
        raise DataplaneError(f"cannot read the sockets of {path}: {e.strerror or e}",
                             op="sock_diag", args={"netns": path}) from None
    with s:
        s.settimeout(5)
        return dump(s)
