"""Records of the diagnostics a data plane offers (see :mod:`agent.dataplane`).

Data-plane neutral: the Linux data plane fills them from netlink (link
statistics, conntrack), VPP from its stats segment and session dumps.
"""
from __future__ import annotations

from dataclasses import dataclass

from agent.model.records import _Record


@dataclass(frozen=True, slots=True)
class InterfaceCounters(_Record):
    """Counters of one interface; ``owner`` is a pod ref, or ``node`` for the
    node's own interfaces (uplink, tunnels, the pods' gateway)."""

    name: str
    owner: str
    rx_packets: int = 0
    rx_bytes: int = 0
    rx_drops: int = 0
    rx_errors: int = 0
    tx_packets: int = 0
    tx_bytes: int = 0
    tx_drops: int = 0
    tx_errors: int = 0


@dataclass(frozen=True, slots=True)
class Session(_Record):
    """One connection as the data plane tracks it: the original direction
    (``src:sport -> dst:dport``) and, when translated, where it really goes
    (``reply_src:reply_sport``, the answering side as seen by the reply)."""

    protocol: str  # tcp | udp | icmp | sctp | <number>
    src: str
    sport: int
    dst: str
    dport: int
    reply_src: str
    reply_sport: int
    state: str = ""
    timeout: int = 0  # seconds left, where the data plane says
    packets: int = 0
    bytes: int = 0

    @property
    def translated(self) -> bool:
        return (self.reply_src, self.reply_sport) != (self.dst, self.dport)


@dataclass(frozen=True, slots=True)
class SocketInfo(_Record):
    """One TCP or UDP socket of a network namespace, as ``ss -tuna`` shows it
    (read through netlink sock_diag). ``state`` uses ss's names (``ESTAB``,
    ``LISTEN``, ``UNCONN``...); ``peer`` is ``*``-less: an unconnected
    socket's is the unspecified address and port 0."""

    protocol: str  # tcp | udp
    state: str
    local: str
    lport: int
    peer: str
    pport: int
    recv_q: int = 0
    send_q: int = 0
    uid: int = 0
    inode: int = 0
