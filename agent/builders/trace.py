"""A traced packet's steps read in Kubernetes terms (pure; unit-tested without root).

A data plane reports what a probe met in its own words
(:class:`agent.model.diag.TracedPacket`: graph nodes, netfilter chains); this
labels each step with the Kubernetes object behind it, from what the agent
knows: pods by address and by host interface, the Services' frontends, the
node registry, and the offline policy verdict (``explain``, the very model
``contivctl policies explain`` answers from). Where the data plane's verdict
and the offline one differ, the label says so: that is a bug to report.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Callable, Iterable, Mapping

from agent.builders.sessions import NODE_ADDRESS, frontend_index
from agent.model.diag import TracedPacket, TraceStep

_ADDR_PORT = re.compile(r"(\d+\.\d+\.\d+\.\d+):(\d+)\s*->\s*(\d+\.\d+\.\d+\.\d+):(\d+)")
_IPV4 = re.compile(r"\b\d+\.\d+\.\d+\.\d+\b")


@dataclass(frozen=True)
class Cluster:
    """What the labels are made of. ``pods``: IP -> pod ref (cluster-wide);
    ``pod_nodes``: pod ref -> node; ``host_ifs``: this node's pods by host
    interface; ``nodes``: node name -> its addresses (underlay IP, pod
    gateways); ``explain(src, dst, port, protocol)``: the offline verdict
    (an :class:`agent.model.api.Explanation`) or None where it has none."""

    node: str
    node_ips: tuple[str, ...]
    pods: Mapping[str, str]
    pod_nodes: Mapping[str, str]
    host_ifs: Mapping[str, str]
    nodes: Mapping[str, tuple[str, ...]]
    services: Iterable
    explain: Callable[[str, str, int, str], object | None]


def label(packets: Iterable[TracedPacket], c: Cluster) -> list[TracedPacket]:
    fronts = frontend_index(c.services)
    return [replace(p, steps=tuple(_label_packet(p, c, fronts))) for p in packets]


def _pod_or(c: Cluster, ip: str) -> str:
    ref = c.pods.get(ip)
    return f"pod {ref} ({ip})" if ref else ip


def _node_of(c: Cluster, text: str) -> str:
    """The node one of whose addresses ``text`` names ("" when none)."""
    found = set(_IPV4.findall(text))
    for name, addrs in c.nodes.items():
        if name != c.node and found & set(addrs):
            return name
    return ""


def _label_packet(p: TracedPacket, c: Cluster, fronts: Mapping) -> list[TraceStep]:
    dst, dport = p.dst, p.dport
    verdicts = None  # the offline verdict, per side, once the destination is known
    out = []
    for s in p.steps:
        text = ""
        if s.kind == "in":
            pod = c.host_ifs.get(s.interface)
            if pod:
                text = f"from pod {pod}"
            elif p.src in c.pods and c.pod_nodes.get(c.pods[p.src]) not in ("", c.node):
                text = f"from node {c.pod_nodes[c.pods[p.src]]} through the tunnel"
            else:
                text = f"from {s.interface or 'the node'}"
        elif s.kind == "service":
            m = _ADDR_PORT.search(s.text)
            if m:
                fa, fp, ba, bp = m.group(1), int(m.group(2)), m.group(3), int(m.group(4))
                if p.direction == "reply":  # the answer's source back to the Service's address
                    fa, fp, ba, bp = ba, bp, fa, fp
                svc = fronts.get((fa, fp, p.protocol)) or (
                    fronts.get((NODE_ADDRESS, fp, p.protocol)) if fa in c.node_ips else None)
                what = f"Service {svc[0]} {fa}:{fp} ({svc[1]})" if svc else f"{fa}:{fp}"
                if p.direction == "reply":
                    text = f"answer of {_pod_or(c, ba)} port {bp} sent as from {what}"
                else:
                    text = f"{what} -> {_pod_or(c, ba)} port {bp}"
                    dst, dport = ba, bp
            else:
                text = "translated"
        elif s.kind == "policy":
            pod = c.pods.get(p.src if s.side == "egress" else dst, "")
            if s.verdict == "accept" and pod and c.pod_nodes.get(pod) != c.node:
                continue  # the other end's isolation is checked on its own node
            if p.direction == "reply":
                text = "reply of an admitted connection" if s.verdict == "accept" else "reply dropped"
            else:
                if verdicts is None:
                    verdicts = _verdicts(c, p, dst, dport)
                text = _policy_text(s, pod, verdicts.get(s.side))
        elif s.kind == "route":
            text = _where(c, dst, s.interface)
        elif s.kind == "tunnel":
            node = c.pod_nodes.get(c.pods.get(dst, ""), "") or _node_of(c, s.text)
            node = node if node != c.node else _node_of(c, s.text)
            text = f"VXLAN tunnel to node {node}" + (f" ({c.nodes[node][0]})" if node in c.nodes else "") \
                if node else "VXLAN tunnel"
        elif s.kind == "deliver":
            pod = c.host_ifs.get(s.interface) or (c.pods.get(dst) if c.pod_nodes.get(c.pods.get(dst, "")) == c.node
                                                   and s.interface not in ("", None) and "node" not in s.text
                                                   else None)
            text = f"delivered to pod {pod}" if pod else f"delivered to node {c.node}"
        elif s.kind == "drop":
            text = f"dropped here: {s.text or s.name}"
        out.append(replace(s, label=text))
    return out


def _where(c: Cluster, dst: str, interface: str) -> str:
    pod = c.pods.get(dst)
    node = c.pod_nodes.get(pod, "") if pod else ""
    if pod and node == c.node:
        return f"route to pod {pod} on this node"
    if pod and node:
        return f"route to node {node} (pod {pod})"
    return f"route to {dst}" + (f" via {interface}" if interface else "")


def _verdicts(c: Cluster, p: TracedPacket, dst: str, dport: int) -> dict:
    """side -> the offline verdict's step for that side."""
    ex = c.explain(p.src, dst, dport, p.protocol)
    if ex is None:
        return {}
    return {st.direction: st for st in ex.steps}


def _policy_text(s: TraceStep, pod: str, step) -> str:
    if step is None:  # explain checks pods only: an address outside the cluster
        expected, why = True, f"{s.side}: {pod or 'not a pod'}, no NetworkPolicy applies"
    else:
        expected, why = step.allowed, step.reason.replace("ICMP/0", "ICMP")
    seen = s.verdict == "accept"
    if seen != expected:
        return (f"DISAGREES with `policies explain` ({why}): the data plane "
                f"{'accepted' if seen else 'dropped'} it")
    return why
