"""One probe's packets through VPP's graph: the VPP half of ``contivctl trace``.

:func:`start` arms a trace of a flow (:class:`agent.model.diag.TraceFlow`), the
caller sends its probe, :func:`collect` returns the flow's packets, one step
per graph node (:func:`packets` is pure: the unit tier feeds it real captures).

Arming: a pcap expression of the flow (``bpf_trace_filter_set``) becomes VPP's
trace filter function, and each device-input node captures up to
:data:`MAX_PACKETS` packets that pass it. The filter sees a packet as it
enters VPP, outer headers first: so it also admits VXLAN packets whose
*inner* header is the flow's (by offset into the UDP payload), and the parser
keeps only packets whose inner 5-tuple :meth:`TraceFlow.direction` knows. The
expression is formatted from parsed addresses and integers only.

VPP has one filter function and one BPF program: one trace at a time per VPP
(``Conflict``). :func:`collect` always stops the capture, deletes the program
and restores the filter function selected before, even when the dump fails;
a trace never collected is cleared by the first :func:`start` :data:`STALE`
seconds later (one armed by somebody else -- an agent that died mid-trace --
likewise, counted from when it is first seen).
"""
from __future__ import annotations

import ipaddress
import logging
import re
import threading
import time
import weakref
from dataclasses import dataclass, field
from typing import Callable, Iterable

from agent.errors import Conflict, InvalidInput, NotFound
from agent.model.diag import TracedPacket, TraceFlow, TraceStep
from agent.vpp.errors import VppApiError
from agent.vpp.values import NONE, untag

MESSAGES = ("get_node_index", "bpf_trace_filter_set", "trace_filter_function_dump",
            "trace_set_filter_function", "trace_capture_packets", "trace_clear_capture",
            "trace_v2_dump", "trace_clear_cache", "sw_interface_dump", "vxlan_tunnel_v2_dump",
            "acl_dump", "acl_interface_list_dump", "cli_inband")
BPF, DEFAULT_FUNCTION = "bpf_trace_filter", "vnet_is_packet_traced"
#: where packets enter VPP (those this VPP lacks are skipped)
INPUT_NODES = ("af-packet-input", "virtio-input", "memif-input", "dpdk-input")
MAX_PACKETS = 100  # per input node: a probe is a handful; room for retransmissions
STALE = 30.0  # seconds after which an uncollected trace is cleared by the next start
VXLAN_PORT = 4789
_PROTO = {"TCP": 6, "UDP": 17, "ICMP": 1}
_POD_IF = re.compile(r"p[0-9a-f]{8}")  # agent.vpp.values.pod_ifname
_ANCHOR = re.compile(r"pol-p[ie]-[0-9a-f]{10}-(.+)")  # agent.vpp.policies.anchor_name

log = logging.getLogger(__name__)


@dataclass(eq=False)
class Trace:
    """The handle of a running trace."""

    flow: TraceFlow
    started: float
    restore: str  # the filter function selected before


_lock = threading.Lock()
_running: "weakref.WeakKeyDictionary[object, Trace]" = weakref.WeakKeyDictionary()
_foreign: "weakref.WeakKeyDictionary[object, float]" = weakref.WeakKeyDictionary()


def bpf_filter(flow: TraceFlow, vxlan_ports: Iterable[int] = (VXLAN_PORT,)) -> str:
    """The pcap expression admitting the flow's packets, plain or inside VXLAN."""
    try:
        src, sport = ipaddress.IPv4Address(flow.src), int(flow.sport)
    except (ValueError, TypeError):
        src, sport = None, 0
    if src is None or flow.protocol not in _PROTO or not 0 < sport < 65536:
        raise InvalidInput(f"cannot trace {_flow_text(flow)}: TCP, UDP or ICMP from an IPv4 "
                           "address and port (ICMP: echo id) 1-65535")
    hexsrc = f"0x{int(src):08x}"
    # inside VXLAN: the inner IPv4 header starts 30 bytes into the UDP header
    # (UDP 8, VXLAN 8, Ethernet 14): protocol at +9, addresses at +12/+16, ports after 20
    if flow.protocol == "ICMP":
        plain = f"(icmp and host {src} and icmp[4:2] = {sport})"
        inner = f"udp[39] = 1 and (udp[42:4] = {hexsrc} or udp[46:4] = {hexsrc}) and udp[54:2] = {sport}"
    else:
        p = flow.protocol.lower()
        plain = f"({p} and src host {src} and src port {sport}) or ({p} and dst host {src} and dst port {sport})"
        inner = (f"udp[39] = {_PROTO[flow.protocol]} and ((udp[42:4] = {hexsrc} and udp[50:2] = {sport})"
                 f" or (udp[46:4] = {hexsrc} and udp[52:2] = {sport}))")
    ports = " or ".join(f"udp dst port {int(x)}" for x in sorted(set(vxlan_ports)))
    return f"{plain} or (({ports}) and {inner})"


def start(api, flow: TraceFlow, *, now: Callable[[], float] = time.monotonic) -> Trace:
    """Arm a trace of ``flow`` on the VPP behind ``api`` (see the module docstring)."""
    with _lock:
        ports = {int(d.dst_port) for d in api.dump("vxlan_tunnel_v2_dump", sw_if_index=NONE)}
        expr = bpf_filter(flow, ports or {VXLAN_PORT})  # invalid input: before anything is set
        t = now()
        mine = _running.get(api)
        if mine is not None:
            if t - mine.started < STALE:
                raise Conflict(f"a trace of {_flow_text(mine.flow)} is running on this VPP "
                               f"(for {t - mine.started:.0f} s); VPP has one trace filter",
                               hint="retry when it is collected")
            log.warning("clearing a trace of %s never collected (%.0f s)", _flow_text(mine.flow),
                        t - mine.started)
            del _running[api]
            _release(api, mine)
        selected = [d.name for d in api.dump("trace_filter_function_dump") if d.selected]
        restore = selected[0] if selected else DEFAULT_FUNCTION
        if restore == BPF:  # armed, but not through this connection
            first = _foreign.setdefault(api, t)
            if t - first < STALE:
                raise Conflict("VPP's trace filter is in use by somebody else (another trace, "
                               "or one left behind by an agent that stopped)",
                               hint=f"retry in {STALE - (t - first):.0f} s: it is then taken over")
            restore = DEFAULT_FUNCTION
        _foreign.pop(api, None)
        trace = Trace(flow, t, restore)
        try:
            api.call("trace_clear_capture")
            api.call("bpf_trace_filter_set", is_add=True, filter=expr)
            api.call("trace_set_filter_function", filter_function_name=BPF)
            for name in INPUT_NODES:
                try:
                    index = api.call("get_node_index", node_name=name).node_index
                except VppApiError:  # NO_SUCH_NODE: that driver is not loaded here
                    continue
                api.call("trace_capture_packets", node_index=index, max_packets=MAX_PACKETS,
                         use_filter=True, verbose=False, pre_capture_clear=False)
        except BaseException:
            _release(api, trace)
            raise
        _running[api] = trace
        return trace


def collect(api, trace: Trace) -> list[TracedPacket]:
    """Stop ``trace`` and return its packets in the order VPP saw them; the
    capture, the filter and the filter function are released whatever fails."""
    with _lock:
        if _running.get(api) is not trace:
            raise NotFound(f"the trace of {_flow_text(trace.flow)} is not running any more "
                           f"(collected, or cleared after {STALE:g} s)")
        del _running[api]
        try:
            texts = [d.trace_data for d in api.dump("trace_v2_dump", thread_id=NONE, position=0,
                                                     max=MAX_PACKETS * len(INPUT_NODES),
                                                     clear_cache=True)]
        except BaseException:
            _release(api, trace)  # the dump's error is the one to report
            raise
        err = _release(api, trace)
        if err is not None:
            raise err
    return packets(trace.flow, texts, Names.read(api, texts))


def _release(api, trace: Trace) -> Exception | None:
    """Undo what :func:`start` set, every part tried; the first error, if any."""
    first = None
    for name, kw in (("trace_clear_capture", {}), ("bpf_trace_filter_set", {"is_add": False, "filter": ""}),
                     ("trace_set_filter_function", {"filter_function_name": trace.restore}),
                     ("trace_clear_cache", {})):
        try:
            api.call(name, **kw)
        except Exception as e:  # noqa: BLE001 -- the rest must still be undone
            log.warning("releasing the trace of %s: %s failed: %s", _flow_text(trace.flow), name, e)
            first = first or e
    return first


def _flow_text(f: TraceFlow) -> str:
    return f"{f.protocol} {f.src}:{f.sport} -> {f.dst}:{f.dport}"


# --------------------------------------------------------------------------- reading the text
@dataclass
class Names:
    """What the trace text refers to by number, read from VPP when collected."""

    sw: dict[int, str] = field(default_factory=dict)  # sw_if_index -> VPP's name
    ours: dict[int, str] = field(default_factory=dict)  # sw_if_index -> the agent's name (tag)
    hw: dict[int, str] = field(default_factory=dict)  # hw_if_index -> VPP's name
    tunnels: dict[int, tuple[str, int]] = field(default_factory=dict)  # sw_if_index -> (remote, port)
    acls: dict[int, str] = field(default_factory=dict)  # acl_index -> tag
    lists: dict[int, tuple[tuple[int, ...], tuple[int, ...]]] = field(default_factory=dict)  # input, output

    @classmethod
    def read(cls, api, texts: list[str]) -> "Names":
        n = cls()
        if not texts:
            return n
        for d in api.dump("sw_interface_dump", sw_if_index=NONE):
            n.sw[d.sw_if_index], n.ours[d.sw_if_index] = d.interface_name, untag(d.tag or "") or ""
        n.tunnels = {d.sw_if_index: (str(d.dst_address), int(d.dst_port))
                     for d in api.dump("vxlan_tunnel_v2_dump", sw_if_index=NONE)}
        # no API message names hardware interfaces (af-packet-input gives only that index)
        n.hw = {int(m[2]): m[1] for m in re.finditer(r"^(\S+)\s+(\d+)\s+(?:up|down)\b",
                                                    api.cli("show hardware-interfaces brief"), re.M)}
        if any("acl-plugin" in t for t in texts):
            n.acls = {d.acl_index: untag(d.tag) or d.tag for d in api.dump("acl_dump", acl_index=NONE)}
            n.lists = {d.sw_if_index: (tuple(d.acls[:d.n_input]), tuple(d.acls[d.n_input:d.count]))
                       for d in api.dump("acl_interface_list_dump", sw_if_index=NONE)}
        return n

    def linux(self, name: str) -> str:
        """An af_packet interface by the Linux interface it reads."""
        return name[5:] if name.startswith("host-") else name


_NODE = re.compile(r"^(\d+):(\d+):(\d+):(\d+): (\S+)$")
_IP = re.compile(r"^\s*(\w+): (\d+\.\d+\.\d+\.\d+) -> (\d+\.\d+\.\d+\.\d+)")
_PORTS = re.compile(r"^\s*(TCP|UDP): (\d+) -> (\d+)$")
_ICMP = re.compile(r"^\s*ICMP echo_(request|reply) .*\bid (\d+)")
# the rewrite cnat applied (a session's own rewrites show as "[ in ] ..." / "[rout] ...")
_CNAT = re.compile(r"^\s*(TCP|UDP|ICMP) \[([\d.]+);(\d+) -> ([\d.]+);(\d+)\]")
_ACL = re.compile(r"sw_if_index (\d+), next index \d+, action: (\d+), match: acl (-?\d+) "
                  r"rule (-?\d+) trace_bits ([0-9a-f]+)")
_REWRITE = re.compile(r"tx_sw_if_index (\d+) .*: ipv4 via (\S+) ")
Header = tuple  # (protocol, src, sport, dst, dport)


def blocks(text: str) -> list[tuple[float, str, list[str]]]:
    """A packet's text as (seconds, graph node, its lines)."""
    out: list = []
    for line in text.splitlines():
        if m := _NODE.match(line):
            out.append((int(m[1]) * 3600 + int(m[2]) * 60 + int(m[3]) + int(m[4]) / 1e6, m[5], []))
        elif out and line.strip():
            out[-1][2].append(line)
    return out


def headers(lines: list[str]) -> list[Header]:
    """The IPv4 headers a node's text shows (ICMP echo: the id as the
    requester's port, see :class:`TraceFlow`)."""
    out: list = []
    for line in lines:
        if m := _IP.match(line):
            out.append([m[1], m[2], 0, m[3], 0])
        elif out and (m := _PORTS.match(line)) and m[1] == out[-1][0]:
            out[-1][2], out[-1][4] = int(m[2]), int(m[3])
        elif out and (m := _ICMP.match(line)) and out[-1][0] == "ICMP":
            out[-1][2 if m[1] == "request" else 4] = int(m[2])
    return [tuple(h) for h in out]


def packets(flow: TraceFlow, texts: Iterable[str], names: Names) -> list[TracedPacket]:
    """The flow's packets among the captured ones, ordered by arrival."""
    outer = {p for _, p in names.tunnels.values()} or {VXLAN_PORT}
    found = []
    for text in texts:
        bs = blocks(text)
        arrival = next((h for _, _, lines in bs for h in headers(lines)
                        if not (h[0] == "UDP" and h[4] in outer)), None)
        way = flow.direction(*arrival) if arrival else ""
        if way and bs:
            found.append((bs[0][0], TracedPacket(way, *arrival, steps=tuple(steps(bs, names)))))
    return [p for _, p in sorted(found, key=lambda x: x[0])]


def steps(bs: list[tuple[float, str, list[str]]], names: Names) -> list[TraceStep]:
    """One step per graph node (see :data:`agent.model.diag.STEP_KINDS`)."""
    out: list[TraceStep] = []
    cur: Header | None = None  # the packet's header as the graph has it now
    for i, (_, node, lines) in enumerate(bs):
        out.append(_step(node, lines, bs, i, names, cur, out))
        hs = [_rewritten(lines)] if out[-1].kind == "service" else headers(lines)
        cur = hs[-1] if hs else cur
    return out


def _step(node: str, lines: list[str], bs, i: int, names: Names, cur, done) -> TraceStep:
    body = " ".join(lines)
    ifname = lambda sw: names.linux(names.sw.get(sw, f"sw_if_index {sw}"))  # noqa: E731
    if node in INPUT_NODES:  # af_packet, virtio, memif name the hardware index; dpdk the interface
        m = re.search(r"hw_if_index (\d+)", body)
        vpp = names.hw.get(int(m[1]), f"hw_if_index {m[1]}") if m else \
            next((n for n in names.sw.values() if body.startswith(n + " ")), "")
        return TraceStep(node, "in", vpp, interface=names.linux(vpp))
    if node == "vxlan4-input":  # the tunnel: the bridge port it enters by, else the outer source
        sw = _near(bs, range(i + 1, len(bs)), "l2-input")
        return _vxlan(node, "in", names, sw, cur[1] if cur else "", body)
    if node == "vxlan4-encap":  # the bridge port it left by, else the outer destination
        sw = _near(bs, range(i - 1, -1, -1), "l2-output")
        ahead = next((h for _, _, ls in bs[i + 1:] for h in headers(ls)), None)
        return _vxlan(node, "tunnel", names, sw, ahead[3] if ahead else "", body)
    if "cnat" in node:
        new = _rewritten(lines)
        # cnat shows the header it rewrote the packet to (an ICMP echo id as both ports)
        n = 1 if new and new[0] == "ICMP" else 2
        changed = [k for k in (3, 1) if cur and new and new[1] != "0.0.0.0" and cur[k:k + n] != new[k:k + n]]
        if changed:
            return TraceStep(node, "service", ", ".join(
                ("source " if k == 1 else "") + " -> ".join(":".join(map(str, h[k:k + n])) for h in (cur, new))
                for k in changed))
        return TraceStep(node, "step", _first(lines))
    if node.startswith("acl-plugin") and (m := _ACL.search(body)):
        return _policy(node, m, names, ifname(int(m[1])))
    if node in ("ip4-lookup", "ip4-rewrite"):
        # the lookup's choice shows in the rewrite (or receive) that follows it
        after = next((b for b in bs[i:] if b[1] in ("ip4-rewrite", "ip4-receive")), (0, "", []))
        m = _REWRITE.search(" ".join(after[2])) if after[1] == "ip4-rewrite" else None
        if m is None:  # to VPP itself: a tunnel's end (what arrives shows in the input after it)
            return TraceStep(node, "step", "to VPP itself") if after[1] == "ip4-receive" else \
                TraceStep(node, "route", _first(lines))
        return TraceStep(node, "route", f"via {m[2]}", interface=ifname(int(m[1])))
    if re.search(r"(^|-)drop$", node):
        reason = next((_first(ls) for _, n, ls in bs[i:] if n == "drop"), _first(lines))
        return TraceStep(node, "step" if any(s.kind == "drop" for s in done) else "drop", reason)
    if node.endswith(("-tx", "-output")):
        vpp = node.rsplit("-", 1)[0]
        sw = next((k for k, v in names.sw.items() if v == vpp), None)
        ours = names.ours.get(sw, "")
        if node.endswith("-tx") and (_POD_IF.fullmatch(ours) or ours == "host"):
            return TraceStep(node, "deliver", "to the node" if ours == "host" else vpp,
                             interface=names.linux(vpp))
        return TraceStep(node, "step", _first(lines), interface=names.linux(vpp) if sw is not None else "")
    return TraceStep(node, "step", _first(lines))


def _policy(node: str, m, names: Names, interface: str) -> TraceStep:
    """An ACL-plugin node: who decided, and the NetworkPolicy when a tag names it."""
    sw, action, acl, rule, bits = int(m[1]), int(m[2]), int(m[3]), int(m[4]), int(m[5], 16)
    side = "egress" if "-in-" in node else "ingress"  # VPP input on a pod's interface: what it sends
    if bits & 0x80000000:  # the plugin found a session: a reply or a later packet of an admitted connection
        text = "session of an admitted connection"
    elif acl < 0:
        ins, outs = names.lists.get(sw, ((), ()))
        refs = [a[1] for x in (ins if side == "egress" else outs)
                if (a := _ANCHOR.fullmatch(names.acls.get(x, "")))]
        text = "no rule matched, denied by default" + \
            (f" (isolated by {', '.join(refs)})" if refs else "")
    else:
        tag = names.acls.get(acl, "")
        text = f"acl {acl} rule {rule}" + (f" ({tag})" if tag else "")
    return TraceStep(node, "policy", text, "accept" if action else "drop", interface, side)


def _vxlan(node: str, kind: str, names: Names, sw: int | None, addr: str, body: str) -> TraceStep:
    """A tunnel step naming the remote VTEP (``sw``: the tunnel interface, if known)."""
    vni = re.search(r"vni (\d+)", body)
    extra = [x for x in (names.ours.get(sw) or names.sw.get(sw), vni and f"vni {vni[1]}") if x]
    text = f"VXLAN {'from' if kind == 'in' else 'to'} {names.tunnels.get(sw, (addr or '?',))[0]}"
    return TraceStep(node, kind, ", ".join([text, *extra]), interface=names.sw.get(sw, ""))


def _near(bs, order, node: str) -> int | None:
    """The sw_if_index the nearest ``node`` in ``order`` names."""
    found = (re.search(r"sw_if_index (\d+)", " ".join(bs[j][2])) for j in order if bs[j][1] == node)
    return next((int(m[1]) for m in found if m), None)


def _rewritten(lines: list[str]) -> Header | None:
    m = next((x for x in map(_CNAT.match, reversed(lines)) if x), None)
    return (m[1], m[2], int(m[3]), m[4], int(m[5])) if m else None


def _first(lines: list[str]) -> str:
    """A node's first line of text, as a short note."""
    h = headers(lines)[:1]
    return f"{h[0][0]} {h[0][1]}:{h[0][2]} -> {h[0][3]}:{h[0][4]}" if h else \
        (lines[0].strip()[:120] if lines else "")
