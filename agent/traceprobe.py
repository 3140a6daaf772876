"""The probe a trace follows: one real packet from inside a pod's network
namespace, with the source port (ICMP: echo identifier) the trace was armed
for, and what came back.

* TCP: a connect from that port -- the SYN is the probe, a SYN-ACK the
  answer; the socket is then reset (SO_LINGER 0), so the port is not held in
  TIME_WAIT and nothing is sent to the server but the handshake's last ACK.
* UDP: one datagram; the answer is a datagram back, or an ICMP error.
* ICMP: one echo request on a raw socket; the answer is the matching reply.

Data-plane neutral: pods are Linux network namespaces on every data plane.
The socket is created inside the pod's namespace (:func:`agent.nsenter.socket_in`)
and used from the calling thread, which never changes namespace itself.
"""
from __future__ import annotations

import errno
import select
import socket
import struct
import time
from dataclasses import dataclass

from agent.errors import Conflict, InvalidInput
from agent.model.diag import TraceFlow
from agent.nsenter import socket_in

IP_RECVERR = getattr(socket, "IP_RECVERR", 11)
_ERRORS = {errno.ECONNREFUSED: "refused", errno.ECONNRESET: "reset",
           errno.EHOSTUNREACH: "unreachable (ICMP host unreachable or administratively prohibited)",
           errno.ENETUNREACH: "network unreachable", errno.EACCES: "administratively prohibited"}


@dataclass(frozen=True, slots=True)
class Outcome:
    """``answered`` when the destination's answer came back; ``error`` says
    what came instead (refused, unreachable, timeout...); ``ms`` from send to
    answer or give-up."""

    answered: bool
    error: str
    ms: float


def send(netns: str, flow: TraceFlow, timeout: float) -> Outcome:
    """Send ``flow``'s probe from ``netns`` and wait up to ``timeout`` s."""
    t0 = time.perf_counter()
    try:
        if flow.protocol == "ICMP":
            err = _icmp(netns, flow, timeout)
        else:
            err = _socket(netns, flow, timeout)
    except OSError as e:
        if e.errno == errno.EADDRINUSE:
            raise Conflict(f"port {flow.sport} is in use in the pod: the probe cannot be sent from it",
                           hint="run the trace again (it picks another source port)") from None
        if e.errno == errno.EADDRNOTAVAIL:
            raise InvalidInput(f"{flow.src} is not an address of the pod's namespace") from None
        err = _ERRORS.get(e.errno, e.strerror or str(e))
    return Outcome(not err, err, round((time.perf_counter() - t0) * 1000, 3))


def _socket(netns: str, flow: TraceFlow, timeout: float) -> str:
    tcp = flow.protocol == "TCP"
    s = socket_in(netns, socket.AF_INET, socket.SOCK_STREAM if tcp else socket.SOCK_DGRAM)
    try:
        s.bind((flow.src, flow.sport))
        s.settimeout(timeout)
        try:
            if tcp:
                s.connect((flow.dst, flow.dport))
                return ""
            # every ICMP error reaches a connected UDP socket with IP_RECVERR
            s.setsockopt(socket.IPPROTO_IP, IP_RECVERR, 1)
            s.connect((flow.dst, flow.dport))
            s.send(b"contivctl trace\n")
            s.recv(2048)
            return ""
        except socket.timeout:
            return "timeout: no answer" + ("" if tcp else " (UDP: the server may not answer at all)")
    finally:
        if tcp:  # reset, not FIN: the port is free again at once
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        s.close()


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    total = (total >> 16) + (total & 0xFFFF)
    total += total >> 16
    return ~total & 0xFFFF


def _icmp(netns: str, flow: TraceFlow, timeout: float) -> str:
    body = struct.pack("!HH", flow.sport, 1) + b"contivctl trace"
    msg = struct.pack("!BBH", 8, 0, 0) + body
    msg = struct.pack("!BBH", 8, 0, _checksum(msg)) + body
    s = socket_in(netns, socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    try:
        s.sendto(msg, (flow.dst, 0))
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            if not select.select([s], [], [], left)[0]:
                break
            data = s.recv(2048)
            icmp = data[(data[0] & 0x0F) * 4:]
            if len(icmp) < 8:
                continue
            kind = icmp[0]
            if kind == 0 and struct.unpack_from("!H", icmp, 4)[0] == flow.sport:
                return ""
            if kind == 3 and len(icmp) >= 36:  # an error quoting our request
                inner = icmp[8:]
                quoted = inner[(inner[0] & 0x0F) * 4:]
                if len(quoted) >= 6 and struct.unpack_from("!H", quoted, 4)[0] == flow.sport:
                    return {13: "administratively prohibited"}.get(
                        icmp[1], f"unreachable (ICMP destination unreachable, code {icmp[1]})")
        return "timeout: no echo reply"
    finally:
        s.close()

