"""One path out of a trace's per-node segments (pure; unit-tested).

Each node's agent reports what it saw of the probe (``TraceSegment``: the
first request packet and the first reply, each step labelled). The path is
the request from the source node onwards -- the next node being the one the
tunnel step leads to -- then the reply back from the node that answered;
each hop names its node. Nodes that saw nothing add nothing. The verdict:
``delivered`` when the request reached a pod or node, else ``dropped`` (a
drop or a refusing policy step names the stage and why) or ``lost`` (it left
a node and no node reported it again).
"""
from __future__ import annotations

import re

_TUNNEL_TO = re.compile(r"tunnel to node (\S+)")


def _packets(segments: list[dict], direction: str) -> dict[str, dict]:
    """node -> its packet of ``direction``."""
    out = {}
    for seg in segments:
        for p in seg["packets"]:
            if p["direction"] == direction:
                out[seg["node"]] = p
    return out


def _chain(packets: dict[str, dict], first: str | None) -> list[str]:
    """Nodes in the order the packet crossed them: from ``first`` (else any
    node whose packet came in from a pod), following each tunnel step."""
    if first not in packets:
        first = next((n for n, p in packets.items()
                      if p["steps"] and p["steps"][0].get("label", "").startswith("from pod")), None)
        if first is None:
            first = next(iter(sorted(packets)), None)
    order: list[str] = []
    node = first
    while node in packets and node not in order:
        order.append(node)
        nxt = None
        for s in packets[node]["steps"]:
            m = _TUNNEL_TO.search(s.get("label", ""))
            if s["kind"] == "tunnel" and m:
                nxt = m.group(1)
        node = nxt
    return order + sorted(n for n in packets if n not in order)


def stitch(segments: list[dict], src_node: str) -> dict:
    """``{"path": [hop...], "nodes": [...], "verdict": ..., "reason": ...}``;
    a hop is a step (its fields) with ``node`` and ``direction``."""
    path: list[dict] = []
    nodes: list[str] = []
    outcome = {}
    for direction in ("request", "reply"):
        pk = _packets(segments, direction)
        first = src_node if direction == "request" else (nodes[-1] if nodes else None)
        for node in _chain(pk, first):
            if node not in nodes:
                nodes.append(node)
            for s in pk[node]["steps"]:
                path.append({"node": node, "direction": direction, **s})
        if direction == "request":
            outcome = _verdict([h for h in path if h["direction"] == "request"], bool(pk))
    return {"path": path, "nodes": nodes, **outcome}


def _verdict(hops: list[dict], seen: bool) -> dict:
    if not seen:
        return {"verdict": "not seen", "reason": "no node saw the probe (is the source pod's node traced?)"}
    for h in hops:
        if h["kind"] == "drop" or (h["kind"] == "policy" and h.get("verdict") == "drop"):
            return {"verdict": "dropped", "reason": f"on {h['node']} at {h['name']}: {h.get('label') or h.get('text')}"}
    last = hops[-1] if hops else None
    if last is not None and last["kind"] == "deliver":
        return {"verdict": "delivered", "reason": f"on {last['node']}: {last.get('label', '')}"}
    where = f"{last['node']} at {last['name']}" if last else "?"
    return {"verdict": "lost", "reason": f"last seen on {where}; no node reported it after that"}
