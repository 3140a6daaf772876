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


#: what a trace probe speaks
TRACE_PROTOCOLS = ("TCP", "UDP", "ICMP")


@dataclass(frozen=True, slots=True)
class TraceFlow(_Record):
    """The probe a trace follows, as the source pod sends it: ``sport`` is the
    probe's source port (ICMP: the echo identifier), ``dport`` 0 for ICMP.
    ``dst`` is what the probe addresses (a pod, or a Service's virtual IP):
    a data plane may translate it, so a packet belongs to the flow by its
    source side (request) or its destination side (reply) -- see :meth:`direction`."""

    protocol: str
    src: str
    sport: int
    dst: str
    dport: int = 0

    def direction(self, protocol: str, src: str, sport: int, dst: str, dport: int) -> str:
        """``request``, ``reply`` or "" (not this flow) for a packet seen with
        this 5-tuple (``protocol`` in any case)."""
        if protocol.upper() != self.protocol:
            return ""
        if src == self.src and sport == self.sport:
            return "request"
        if dst == self.src and (dport == self.sport or (self.protocol == "ICMP" and sport == self.sport)):
            return "reply"  # an echo reply carries the request's identifier, wherever it is read into
        return ""


#: what a trace step is, for every data plane (the Kubernetes labels hang on these)
STEP_KINDS = ("in", "service", "policy", "route", "tunnel", "deliver", "drop", "step")


@dataclass(frozen=True, slots=True)
class TraceStep(_Record):
    """One step of a traced packet through a data plane, in its own words:
    ``name`` a VPP graph node (``ip4-lookup``) or a netfilter hook and chain
    (``forward ip contiv pol-ingress``); ``kind`` one of :data:`STEP_KINDS`:

    * ``in``: the packet arrived (``interface``: on which);
    * ``service``: a Service translation was applied;
    * ``policy``: a NetworkPolicy check (``verdict`` accept | drop);
    * ``route``: the forwarding decision (``interface``: out of which);
    * ``tunnel``: encapsulated towards another node (``text`` names the peer);
    * ``deliver``: handed to a local pod's interface (``interface``);
    * ``drop``: dropped here (``text``: why, in the data plane's words);
    * ``step``: anything else on the way.

    ``side``: of a ``policy`` step, which isolation it checks -- ``egress``
    (of the packet's sender) or ``ingress`` (of its receiver).
    ``label`` is the Kubernetes reading the agent adds (empty from a data plane)."""

    name: str
    kind: str
    text: str = ""
    verdict: str = ""
    interface: str = ""
    side: str = ""
    label: str = ""

    _omit_empty = ("text", "verdict", "interface", "side", "label")


@dataclass(frozen=True, slots=True)
class TracedPacket(_Record):
    """One packet of a traced flow on one node: its 5-tuple as it arrived
    there (``direction``: ``request`` or ``reply``, see :meth:`TraceFlow.direction`)
    and its steps in order."""

    direction: str
    protocol: str
    src: str
    sport: int
    dst: str
    dport: int
    steps: tuple[TraceStep, ...] = ()
