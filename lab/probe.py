"""Probes: real connections from inside a pod's network namespace.

TCP: connect, read the responder's ``namespace/name`` line. UDP: send a
datagram, wait for the reply (an ICMP port/admin-unreachable shows up as a
refused connection on a connected UDP socket). A probe is *connected* when
somebody answered; *blocked* otherwise, with the reason (timeout, refused,
reset, unreachable).

The probing thread enters the pod's namespace only to create its socket and
returns; the socket stays in the pod's namespace (lab code is a client, but it
follows the agent's rule anyway so that probes can run in parallel threads).
"""
from __future__ import annotations

import errno
import socket
import time
from dataclasses import asdict, dataclass

from agent.errors import InvalidInput
from lab.nsthread import in_netns

IP_RECVERR = getattr(socket, "IP_RECVERR", 11)
PROTOCOLS = {"TCP": (socket.SOCK_STREAM, 0), "UDP": (socket.SOCK_DGRAM, 0),
             "SCTP": (socket.SOCK_STREAM, getattr(socket, "IPPROTO_SCTP", 132))}


@dataclass
class ProbeResult:
    src: str
    dst: str
    address: str
    port: int
    protocol: str
    connected: bool
    answered_by: str = ""
    client_seen: str = ""  # the source address the destination saw (SNAT shows here)
    ms: float = 0.0
    error: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


def socket_in_netns(netns: str, stype: int, proto: int) -> socket.socket:
    """A socket created inside ``netns``."""
    return in_netns(netns, lambda: socket.socket(socket.AF_INET, stype, proto))


def probe(netns: str, address: str, port: int, protocol: str = "TCP", timeout: float = 2.0,
          *, src: str = "", dst: str = "") -> ProbeResult:
    protocol = protocol.upper()
    if protocol not in PROTOCOLS:
        raise InvalidInput(f"protocol {protocol!r} is not TCP, UDP or SCTP")
    res = ProbeResult(src, dst or f"{address}:{port}", address, port, protocol, False)
    stype, proto = PROTOCOLS[protocol]
    t0 = time.perf_counter()
    try:
        s = socket_in_netns(netns, stype, proto)
    except OSError as e:
        res.error = f"socket: {e.strerror or e}"
        return res
    try:
        s.settimeout(timeout)
        if stype == socket.SOCK_STREAM:
            s.connect((address, port))
            data = b""
            while not data.endswith(b"\n"):
                chunk = s.recv(256)
                if not chunk:
                    break
                data += chunk
        else:
            # every ICMP error reaches the socket, not only "fatal" ones: a host
            # unreachable (what VPP answers for a Service without endpoints)
            # would otherwise be ignored and the probe wait for its timeout
            s.setsockopt(socket.IPPROTO_IP, IP_RECVERR, 1)
            s.connect((address, port))
            s.send(b"probe\n")
            data = s.recv(256)
        reply = data.decode(errors="replace").split()
        res.answered_by = reply[0] if reply else ""
        res.client_seen = reply[1] if len(reply) > 1 else ""
        res.connected = bool(res.answered_by)
        if not res.connected:
            res.error = "connection closed without an answer"
    except socket.timeout:
        res.error = "timeout"
    except OSError as e:
        res.error = {errno.ECONNREFUSED: "refused", errno.ECONNRESET: "reset",
                     errno.EHOSTUNREACH: "unreachable (ICMP host unreachable or admin-prohibited)", errno.ENETUNREACH: "network unreachable",
                     errno.EACCES: "administratively prohibited"}.get(e.errno, e.strerror or str(e))
    finally:
        s.close()
        res.ms = round((time.perf_counter() - t0) * 1000, 3)
    return res
