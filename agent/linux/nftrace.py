"""nftables packet tracing, scoped to one flow: the Linux half of ``contivctl trace``.

A trace adds a table of its own (``contiv-trace-<n>``) whose chains sit on
every IPv4 hook at the extremes of priority: ``prerouting`` and ``output``
first (priority -300, before conntrack and the Services' DNAT) set
``meta nftrace`` on the probe's packets only -- matched by the probe's source
side going out and its destination side coming back, so that a translated
destination is still recognised -- and ``input``, ``forward``, ``postrouting``
hold no rule: their chain policy alone makes the kernel report when the packet
passes, with its interfaces. The kernel then reports every rule of every
table that the packet meets (``NFT_MSG_TRACE`` on the ``NFNLGRP_NFTRACE``
netlink group): our Services' and policies' chains among them.

Events are decoded by hand (:mod:`agent.linux.nlmsg`); :func:`packets` turns
them into data-plane-neutral steps (:class:`agent.model.diag.TracedPacket`).
The table holds only addresses and port numbers we formatted ourselves from
parsed values, never text from a request.
"""
from __future__ import annotations

import ipaddress
import itertools
import re
import socket
import struct
from dataclasses import dataclass, field
from typing import Callable, Iterable, Mapping

from agent.linux.nlmsg import attrs, messages
from agent.model.diag import TracedPacket, TraceFlow, TraceStep

NFNLGRP_NFTRACE = 9
SOL_NETLINK, NETLINK_ADD_MEMBERSHIP = 270, 1
NFT_MSG_TRACE = (10 << 8) | 17  # NFNL_SUBSYS_NFTABLES, NFT_MSG_TRACE

# enum nft_trace_attributes (include/uapi/linux/netfilter/nf_tables.h)
(A_TABLE, A_CHAIN, A_HANDLE, A_TYPE, A_VERDICT, A_ID, _LL, A_NETWORK, A_TRANSPORT, A_IIF, _IIFTYPE,
 A_OIF) = range(1, 13)
TYPE_POLICY, TYPE_RETURN, TYPE_RULE = 1, 2, 3
VERDICTS = {0: "drop", 1: "accept", 2: "stolen", 3: "queue", 4: "repeat", -1: "continue",
            -2: "break", -3: "jump", -4: "goto", -5: "return"}

#: the priority of the trace's first chains: before conntrack (-200) and DNAT (-100)
FIRST, LAST = -300, 300
#: chains of the trace table: hook -> whether it marks the flow's packets
HOOKS = {"prerouting": True, "output": True, "input": False, "forward": False, "postrouting": False}
_IDS = itertools.count(1)
_BE16, _BE32, _BE64, _I32 = (struct.Struct(f) for f in (">H", ">I", ">Q", ">i"))
#: the identity our values append to their rules' comments (agent.linux.nft.values)
_VALUE_ID = re.compile(r"\s*#[0-9a-f]{8,}$")
PROTO_NAMES = {1: "ICMP", 6: "TCP", 17: "UDP", 132: "SCTP"}


def table_name() -> str:
    return f"contiv-trace-{next(_IDS)}"


def ruleset(flow: TraceFlow, table: str) -> str:
    """The nft commands of a trace table for ``flow`` (addresses and ports
    re-formatted from parsed values: nothing of the request is pasted)."""
    src = str(ipaddress.IPv4Address(flow.src))
    sport = int(flow.sport)
    if flow.protocol == "ICMP":
        out_match, back_match = f"icmp type echo-request icmp id {sport}", f"icmp type echo-reply icmp id {sport}"
    else:
        proto = {"TCP": "tcp", "UDP": "udp"}[flow.protocol]
        out_match, back_match = f"{proto} sport {sport}", f"{proto} dport {sport}"
    cmds = [f"add table ip {table}"]
    for hook, marks in HOOKS.items():
        prio = FIRST if marks or hook != "postrouting" else LAST
        cmds.append(f"add chain ip {table} {hook} {{ type filter hook {hook} priority {prio}; policy accept; }}")
        if marks:
            cmds.append(f"add rule ip {table} {hook} ip saddr {src} {out_match} meta nftrace set 1")
            cmds.append(f"add rule ip {table} {hook} ip daddr {src} {back_match} meta nftrace set 1")
    return "\n".join(cmds)


@dataclass(slots=True)
class Event:
    """One ``NFT_MSG_TRACE``: a packet met a rule (``kind`` TYPE_RULE, with
    ``handle``), left a base chain by its policy (TYPE_POLICY) or returned
    from a chain (TYPE_RETURN). The packet's headers and interfaces come with
    the first event of each hook only."""

    id: int
    kind: int
    table: str = ""
    chain: str = ""
    handle: int = 0
    verdict: str = ""
    target: str = ""  # the chain of a jump or goto
    iif: int = 0
    oif: int = 0
    network: bytes = b""
    transport: bytes = b""


def _cstr(b: bytes) -> str:
    return b.rstrip(b"\0").decode()


#: attribute -> (Event field, how to read it)
_DECODE = {A_TABLE: ("table", _cstr), A_CHAIN: ("chain", _cstr), A_HANDLE: ("handle", lambda v: _BE64.unpack(v)[0]),
           A_TYPE: ("kind", lambda v: _BE32.unpack(v)[0]), A_ID: ("id", lambda v: _BE32.unpack(v)[0]),
           A_IIF: ("iif", lambda v: _BE32.unpack(v)[0]), A_OIF: ("oif", lambda v: _BE32.unpack(v)[0]),
           A_NETWORK: ("network", bytes), A_TRANSPORT: ("transport", bytes)}


def decode(payload: bytes) -> Event:
    """An event from an ``NFT_MSG_TRACE`` payload (after the nfgenmsg)."""
    ev = Event(0, 0)
    for kind, val in attrs(payload, 4):
        if kind == A_VERDICT:
            for k, v in attrs(val):
                if k == 1:  # NFTA_VERDICT_CODE
                    code = _I32.unpack(v)[0]
                    ev.verdict = VERDICTS.get(code, str(code))
                elif k == 2:  # NFTA_VERDICT_CHAIN
                    ev.target = _cstr(v)
        elif kind in _DECODE:
            name, conv = _DECODE[kind]
            setattr(ev, name, conv(val))
    if ev.kind == TYPE_POLICY and not ev.verdict:
        ev.verdict = "accept"  # NFTA_TRACE_POLICY: our chains' policy is accept
    return ev


def read_events(sock: socket.socket) -> list[Event]:
    """Every trace event queued on ``sock`` (non-blocking drain)."""
    out = []
    while True:
        try:
            data = sock.recv(1 << 16, socket.MSG_DONTWAIT)
        except (BlockingIOError, TimeoutError):
            return out
        for kind, _, _, payload in messages(data):
            if kind == NFT_MSG_TRACE:
                out.append(decode(payload))


def subscribe(sock: socket.socket) -> None:
    """Join the trace group on a ``NETLINK_NETFILTER`` socket (the node's namespace)."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
    sock.bind((0, 0))
    sock.setsockopt(SOL_NETLINK, NETLINK_ADD_MEMBERSHIP, NFNLGRP_NFTRACE)


@dataclass(frozen=True, slots=True)
class Header:
    """The IPv4 5-tuple of a traced packet (ICMP: ``sport`` is the echo id)."""

    protocol: str
    src: str
    sport: int
    dst: str
    dport: int


def header(network: bytes, transport: bytes) -> Header | None:
    if len(network) < 20 or network[0] >> 4 != 4:
        return None
    proto = network[9]
    src, dst = socket.inet_ntoa(network[12:16]), socket.inet_ntoa(network[16:20])
    sport = dport = 0
    if proto in (6, 17, 132) and len(transport) >= 4:
        sport, dport = _BE16.unpack_from(transport)[0], _BE16.unpack_from(transport, 2)[0]
    elif proto == 1 and len(transport) >= 6 and transport[0] in (0, 8):
        sport = _BE16.unpack_from(transport, 4)[0]  # echo identifier
    return Header(PROTO_NAMES.get(proto, str(proto)), src, sport, dst, dport)


@dataclass(slots=True)
class _Packet:
    first: Header
    direction: str
    events: list[Event] = field(default_factory=list)


def group(flow: TraceFlow, events: Iterable[Event]) -> list[_Packet]:
    """The first packet of each direction with its events: a probe is one
    packet and its answer (a TCP probe's later ACK and RST are the kernel's
    own follow-up, not part of the path). Each packet has its own trace id."""
    by_id: dict[int, _Packet] = {}
    firsts: dict[str, _Packet] = {}
    for ev in events:
        p = by_id.get(ev.id)
        if p is None:
            h = header(ev.network, ev.transport) if ev.network else None
            d = flow.direction(h.protocol, h.src, h.sport, h.dst, h.dport) if h else ""
            if not d or d in firsts:
                continue  # another packet of the flow, or somebody else's with nftrace set
            p = by_id[ev.id] = firsts[d] = _Packet(h, d)
        p.events.append(ev)
    return sorted(firsts.values(), key=lambda p: p.direction != "request")


#: our base chains that check NetworkPolicies, and which side of the flow they check
POLICY_BASES = {"pol-egress": "egress", "pol-egress-input": "egress", "pol-ingress": "ingress"}
NAT_BASES = ("nat-prerouting", "nat-output", "nat-postrouting")


@dataclass(frozen=True, slots=True)
class Node:
    """What the step builder needs to know of the node: names of interfaces
    by index, the tunnel device, the route to an address (the kernel's text)."""

    ifname: Callable[[int], str]
    tunnel_dev: str
    route: Callable[[str], str]


def steps(p: _Packet, trace_table: str, node: Node,
          comments: Mapping[tuple[str, int], str]) -> list[TraceStep]:
    """One packet's events as steps: where it came in, each of our base chains
    that decided something about it (Services, policies), the route it took,
    how it left, and a drop where it ended. ``comments``: (chain, rule handle)
    -> the rule's comment (our rules name the policy rule they come from)."""
    out: list[TraceStep] = []
    last = p.first
    base, path, nat_by = "", [], None
    for ev in p.events:
        if ev.network:  # the first event of a base chain carries the packet
            base, path = ev.chain, [ev.chain]
            h = header(ev.network, ev.transport) or last
            if (h.dst, h.dport) != (last.dst, last.dport):
                out.append(TraceStep(nat_by[0] if nat_by else "dnat", "service",
                                     f"DNAT {last.dst}:{last.dport} -> {h.dst}:{h.dport}"
                                     + (f" ({nat_by[1]})" if nat_by else "")))
            elif (h.src, h.sport) != (last.src, last.sport):
                # on a reply: conntrack undoing a Service's DNAT
                out.append(TraceStep(nat_by[0] if nat_by else "conntrack",
                                     "service" if p.direction == "reply" else "step",
                                     f"SNAT {last.src}:{last.sport} -> {h.src}:{h.sport}"
                                     + (f" ({nat_by[1]})" if nat_by else "")))
            last = h
            if ev.table == trace_table:
                out.extend(_hook_step(ev, h, node))
                continue
        if ev.table != "contiv":
            continue
        if ev.verdict in ("jump", "goto"):
            path.append(ev.target)
            continue
        if ev.kind == TYPE_RETURN or ev.verdict in ("continue", "return", "break"):
            if ev.kind == TYPE_RETURN and path:
                path.pop()
            continue
        where = " -> ".join(path) + (f" rule {ev.handle}" if ev.kind == TYPE_RULE else " (chain policy)")
        note = comments.get((ev.chain, ev.handle), "")
        text = where + (f': "{note}"' if note else "")
        name = f"ip contiv {base}"
        if base in POLICY_BASES:
            out.append(TraceStep(name, "policy", text, ev.verdict, side=POLICY_BASES[base]))
        elif base in NAT_BASES and ev.verdict == "accept" and ev.kind == TYPE_RULE:
            nat_by = (name, where)  # its effect shows on the next hook's packet
            continue
        if ev.verdict == "drop":
            out.append(TraceStep(name, "drop", text))
    return out


def _hook_step(ev: Event, h: Header, node: Node) -> list[TraceStep]:
    """The step a hook of the trace table stands for."""
    hook = ev.chain
    if hook == "prerouting":
        return [TraceStep("prerouting", "in", "", interface=node.ifname(ev.iif))]
    if hook == "output":
        return [TraceStep("output", "in", "sent by the node itself")]
    if hook == "input":
        return [TraceStep("input", "deliver", "to the node itself", interface=node.ifname(ev.iif))]
    if hook == "forward":
        return [TraceStep("forward", "route", node.route(h.dst), interface=node.ifname(ev.oif))]
    if hook == "postrouting" and ev.oif:
        out = node.ifname(ev.oif)
        if out == node.tunnel_dev:
            return [TraceStep("postrouting", "tunnel", f"VXLAN {out}: {node.route(h.dst)}", interface=out)]
        return [TraceStep("postrouting", "deliver", f"out of {out}", interface=out)]
    return []


def packets(flow: TraceFlow, events: Iterable[Event], trace_table: str, node: Node,
            comments: Mapping[tuple[str, int], str] | None = None) -> list[TracedPacket]:
    """The flow's packets with their steps (pure: the caller read the events)."""
    out = []
    for p in group(flow, events):
        h = p.first
        out.append(TracedPacket(p.direction, h.protocol, h.src, h.sport, h.dst, h.dport,
                                tuple(steps(p, trace_table, node, comments or {}))))
    return out


def _udata_comment(udata: bytes) -> str:
    """The comment in a rule's user data (libnftnl's TLVs: type, length, value)."""
    off = 0
    while off + 2 <= len(udata):
        kind, n = udata[off], udata[off + 1]
        if kind == 0:  # NFTNL_UDATA_RULE_COMMENT
            text = udata[off + 2:off + 2 + n].rstrip(b"\0").decode(errors="replace")
            return _VALUE_ID.sub("", text).strip()
        off += 2 + n
    return ""


def rule_comments(sock: socket.socket, table: str, chains: Iterable[str]) -> dict[tuple[str, int], str]:
    """(chain, handle) -> comment of the rules of ``chains`` of ip ``table``:
    one filtered ``NFT_MSG_GETRULE`` dump per chain (only the few chains a
    trace met: never the whole ruleset, which may hold thousands of elements)."""
    from agent.linux.nlmsg import NLM_F_DUMP, NLM_F_REQUEST, message, nla_str  # noqa: PLC0415
    from agent.linux.nlmsg import dump as nl_dump  # noqa: PLC0415
    out: dict[tuple[str, int], str] = {}
    for seq, chain in enumerate(sorted(set(chains)), start=1):
        req = message((10 << 8) | 7, NLM_F_REQUEST | NLM_F_DUMP, seq,
                      struct.pack("=BBH", socket.AF_INET, 0, 0) + nla_str(1, table) + nla_str(2, chain))
        for _, payload in nl_dump(sock, req, seq):
            handle, note = 0, ""
            for kind, val in attrs(payload, 4):
                if kind == 3:  # NFTA_RULE_HANDLE
                    handle = _BE64.unpack(val)[0]
                elif kind == 7:  # NFTA_RULE_USERDATA
                    note = _udata_comment(val)
            if note:
                out[(chain, handle)] = note
    return out


class Tracer:
    """One trace on the node's namespace (the calling thread's): the trace
    table and the netlink socket that hears its events. ``run`` executes
    nft command text (:class:`agent.linux.nft.lib.Nftables.run`)."""

    def __init__(self, flow: TraceFlow, run: Callable[[str], object]) -> None:
        self.flow = flow
        self.table = table_name()
        self._run = run
        self._sock: socket.socket | None = None

    def start(self) -> "Tracer":
        self._sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 12)  # NETLINK_NETFILTER
        try:
            subscribe(self._sock)  # before the table: no event may be missed
            self._run(ruleset(self.flow, self.table))
        except BaseException:
            self.stop()
            raise
        return self

    def collect(self, node: Node) -> list[TracedPacket]:
        """The flow's packets (the events queued so far); the trace is removed."""
        try:
            events = read_events(self._sock)
            chains = {e.chain for e in events if e.table == "contiv"}
            comments = rule_comments(self._sock, "contiv", chains) if chains else {}
        finally:
            self.stop()
        return packets(self.flow, events, self.table, node, comments)

    def stop(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
            try:
                self._run(f"delete table ip {self.table}")
            except Exception:  # noqa: BLE001 -- never created, or already gone
                pass


def stale_tables(names: Iterable[str]) -> list[str]:
    """Trace tables among ``names`` (left by an agent that stopped mid-trace)."""
    return [n for n in names if n.startswith("contiv-trace-")]
