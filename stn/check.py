"""The automatic confirmation of a steal: does TARGET answer?

TARGET is an address (one ICMP echo on a raw socket, answered by a matching
reply) or ``host:port`` (a TCP connection that opens, e.g. the Kubernetes
API server). Probes repeat until one answers or the time is up: the first
ones may go out while the data plane is still learning its neighbours.
"""
from __future__ import annotations

import ipaddress
import os
import select
import socket
import struct
import time

from agent.errors import InvalidInput


def parse_target(target: str) -> tuple[str, int]:
    """(address, port) of a TARGET; port 0 means ICMP. InvalidInput when it
    is neither an IPv4 address nor ``address:port``."""
    host, sep, port = target.rpartition(":") if target.count(":") == 1 else (target, "", "")
    try:
        ipaddress.IPv4Address(host)
        p = int(port) if sep else 0
        if sep and not 0 < p < 65536:
            raise ValueError
    except ValueError:
        raise InvalidInput(f"--check {target!r} is not an IPv4 address or ADDRESS:PORT",
                           hint="e.g. --check 192.0.2.1 or --check 192.0.2.10:6443 (or --check none)") from None
    return host, p


def _sum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    s = (s >> 16) + (s & 0xFFFF)
    return ~(s + (s >> 16)) & 0xFFFF


def _ping(host: str, timeout: float, seq: int) -> bool:
    ident = os.getpid() & 0xFFFF
    body = struct.pack("!BBHHH", 8, 0, 0, ident, seq) + b"contiv-stn"
    pkt = body[:2] + struct.pack("!H", _sum(body)) + body[4:]
    with socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP) as s:
        s.sendto(pkt, (host, 0))
        end = time.monotonic() + timeout
        while (left := end - time.monotonic()) > 0:
            if not select.select([s], [], [], left)[0]:
                return False
            data, addr = s.recvfrom(2048)
            ihl = (data[0] & 0xF) * 4
            typ, _code, _ck, rid, rseq = struct.unpack("!BBHHH", data[ihl:ihl + 8])
            if addr[0] == host and typ == 0 and rid == ident and rseq == seq:
                return True
    return False


def _connect(host: str, port: int, timeout: float) -> bool:
    try:
        socket.create_connection((host, port), timeout=timeout).close()
        return True
    except OSError:
        return False


def answers(target: str, within: float, every: float = 0.5) -> bool:
    """Whether ``target`` answers one probe within ``within`` seconds."""
    host, port = parse_target(target)
    end = time.monotonic() + within
    seq = 0
    while (left := end - time.monotonic()) > 0:
        seq += 1
        start = time.monotonic()
        try:
            ok = _connect(host, port, min(left, 2.0)) if port else _ping(host, min(left, every * 2), seq)
        except OSError:
            ok = False  # no route yet: the data plane is still taking the NIC
        if ok:
            return True
        time.sleep(max(0.0, min(every - (time.monotonic() - start), end - time.monotonic())))
    return False
