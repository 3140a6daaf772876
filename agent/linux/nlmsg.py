"""The netlink framing both hand-encoded clients share: message headers and
attributes, packed and walked with :mod:`struct` (standard library only).

Used by :mod:`agent.linux.rtnl` (RTNETLINK, the pod-start path) and
:mod:`agent.linux.nft.wire` (nf_tables, the Services path): hot paths both,
so the structs are compiled once and the helpers do nothing else.
"""
from __future__ import annotations

import os
import struct

HDR = struct.Struct("=IHHII")  # nlmsghdr: len, type, flags, seq, pid
NLA = struct.Struct("=HH")  # nlattr: len, type
NLA_TYPE_MASK = 0x3FFF  # without NLA_F_NESTED / NLA_F_NET_BYTEORDER

_hdr_pack, _nla_pack = HDR.pack, NLA.pack


def nla(kind: int, data: bytes) -> bytes:
    """An attribute: header, ``data``, padding to 4 bytes."""
    n = 4 + len(data)
    return _nla_pack(n, kind) + data + b"\0" * (-n & 3)


def nla_str(kind: int, s: str) -> bytes:
    """A NUL-terminated string attribute."""
    return nla(kind, s.encode() + b"\0")


def message(kind: int, flags: int, seq: int, body: bytes) -> bytes:
    """A netlink message: the header (port id 0: the kernel's) and ``body``."""
    return _hdr_pack(16 + len(body), kind, flags, seq, 0) + body


def messages(data: bytes):
    """(type, flags, seq, payload) of each whole netlink message in a datagram."""
    off, end = 0, len(data)
    while off + 16 <= end:
        n, kind, flags, seq, _ = HDR.unpack_from(data, off)
        if n < 16 or off + n > end:
            break
        yield kind, flags, seq, data[off + 16:off + n]
        off += (n + 3) & ~3


def attrs(data: bytes, off: int = 0):
    """(type, value bytes) of each attribute from ``off``."""
    end = len(data)
    while off + 4 <= end:
        n, kind = NLA.unpack_from(data, off)
        if n < 4:
            break
        yield kind & NLA_TYPE_MASK, data[off + 4:off + n]
        off += (n + 3) & ~3


NLM_F_REQUEST, NLM_F_DUMP = 0x1, 0x300
NLMSG_ERROR, NLMSG_DONE = 2, 3
_I32 = struct.Struct("=i")


def dump(sock, request: bytes, seq: int, bufsize: int = 1 << 16):
    """Send one dump ``request`` (sequence number ``seq``) and yield (type,
    payload) of each answer to it until ``NLMSG_DONE``; answers to other
    sequence numbers are skipped. A negative acknowledgement raises OSError
    with the kernel's errno."""
    sock.send(request)
    while True:
        for kind, _, mseq, payload in messages(sock.recv(bufsize)):
            if mseq != seq:
                continue
            if kind == NLMSG_DONE:
                return
            if kind == NLMSG_ERROR:
                code = -_I32.unpack_from(payload)[0]
                if code:
                    raise OSError(code, os.strerror(code))
                continue
            yield kind, payload
