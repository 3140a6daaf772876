"""Which policies and peers a pod label change can affect (pure).

PolicySync asks two questions on every pod event, and both must cost what the
change touches, not what the cluster holds:

* which policies' *selection* can answer differently -- a ``LabelIndex`` of
  the (key, value) pairs and presence keys their podSelectors read;
* which *peers* can -- the same index over the distinct selector peers, each
  named by its ident (``agent.builders.policies.peer_ident``), so a peer that
  1,000 policies repeat is evaluated once.

``Shape`` is what a policy's membership answers are computed from, read once
per policy version.
"""
from __future__ import annotations

from agent.builders.policies import PodInfo, peer_ident, selects


def _sel_ok(sel) -> bool:
    return isinstance(sel, dict)


def _sel_index(sel, kv: set, presence: set) -> None:
    """What a selector's result can depend on: (key, value) pairs (matchLabels,
    In, NotIn) and keys whose mere presence counts (Exists, DoesNotExist)."""
    if not isinstance(sel, dict):
        return
    for k, v in (sel.get("matchLabels") or {}).items():
        kv.add((str(k), str(v)))
    for e in sel.get("matchExpressions") or []:
        if not isinstance(e, dict) or "key" not in e:
            continue
        if e.get("operator") in ("In", "NotIn"):
            kv.update((str(e["key"]), str(v)) for v in e.get("values") or [])
        else:
            presence.add(str(e["key"]))


def _selector_peers(spec: dict):
    """(direction, rule index, peer index, peer) of every selector peer."""
    for direction, key in (("ingress", "from"), ("egress", "to")):
        for i, r in enumerate(spec.get(direction) or []):
            for j, p in enumerate((r or {}).get(key) or []):
                if isinstance(p, dict) and "ipBlock" not in p:
                    yield direction, i, j, p


class LabelIndex:
    """Label (key, value) pairs and presence keys -> the items (policies, or
    peers by ident) whose pod selectors read them: a label change looks only
    at items whose answer it can change."""

    def __init__(self) -> None:
        self._kv: dict[tuple[str, str], set] = {}
        self._presence: dict[str, set] = {}
        self._of: dict[object, tuple[set, set]] = {}

    def add(self, item, selectors) -> None:
        self.remove(item)
        kv: set = set()
        presence: set = set()
        for sel in selectors:
            _sel_index(sel, kv, presence)
        self._of[item] = (kv, presence)
        for x in kv:
            self._kv.setdefault(x, set()).add(item)
        for k in presence:
            self._presence.setdefault(k, set()).add(item)

    def remove(self, item) -> None:
        kv, presence = self._of.pop(item, ((), ()))
        for x in kv:
            self._kv.get(x, set()).discard(item)
        for k in presence:
            self._presence.get(k, set()).discard(item)

    def clear(self) -> None:
        self._kv.clear()
        self._presence.clear()
        self._of.clear()

    def candidates(self, before: dict, after: dict) -> set:
        out: set = set()
        for k in before.keys() | after.keys():
            old, new = before.get(k), after.get(k)
            if old == new:
                continue
            for v in (old, new):
                if v is not None:
                    out |= self._kv.get((k, v), set())
            if old is None or new is None:
                out |= self._presence.get(k, set())
        return out


def egress_named_ports(obj: dict) -> bool:
    """Egress rules naming ports resolve them on each *peer* pod, so a pod
    entering or leaving those peers changes more than one element. (Ingress
    names resolve on the selected pods: a selection change recompiles anyway.)"""
    for r in (obj.get("spec") or {}).get("egress") or []:
        for p in (r or {}).get("ports") or []:
            if isinstance(p, dict) and isinstance(p.get("port"), str) and not p["port"].isdigit():
                return True
    return False


def _sel_keys(sel) -> frozenset | None:
    """The label keys a pod selector reads (None: unreadable, assume any)."""
    if sel is None:
        return frozenset()
    if not isinstance(sel, dict):
        return None
    try:
        keys = [str(k) for k in (sel.get("matchLabels") or {})]
        keys += [str(e["key"]) for e in sel.get("matchExpressions") or []]
    except (TypeError, KeyError, AttributeError):
        return None
    return frozenset(keys)


class Shape:
    """What a policy's pod membership is computed from, read once per policy
    version: its namespace, podSelector and selector peers, with the label
    keys each reads (a change to other keys cannot change its answer) and the
    peers' idents (one label change evaluates each distinct peer once, not
    once per policy that has it)."""

    __slots__ = ("ns", "selector", "sel_keys", "peers")

    def __init__(self, obj: dict) -> None:
        md, spec = obj.get("metadata") or {}, obj.get("spec") or {}
        spec = spec if isinstance(spec, dict) else {}
        self.ns = md.get("namespace", "default")
        self.selector = spec.get("podSelector")
        self.sel_keys = _sel_keys(self.selector)
        self.peers = []
        for d, i, j, p in _selector_peers(spec):
            try:
                ident = peer_ident(self.ns, p)
            except (TypeError, ValueError):
                ident = f"unreadable {d}[{i}][{j}] of {id(p)}"
            self.peers.append((d, i, j, ident, p.get("podSelector"), p.get("namespaceSelector"),
                               _sel_keys(p.get("podSelector"))))


def reads(keys: frozenset | None, changed: set) -> bool:
    return keys is None or not keys.isdisjoint(changed)


def selected(shape: Shape, pod: PodInfo) -> bool:
    ps = shape.selector
    return pod.namespace == shape.ns and _sel_ok(ps) and selects(ps, pod.label_dict())


def in_peer(peer: tuple, ns: str, pod: PodInfo, ns_labels: dict, memo: dict) -> bool:
    """Is ``pod`` in this selector peer? ``memo`` caches the answer by the
    peer's ident for one pod version (many policies share a peer)."""
    _, _, _, ident, pps, nss, _ = peer
    v = memo.get(ident)
    if v is None:
        in_ns = selects(nss, ns_labels.get(pod.namespace, {})) if _sel_ok(nss) else pod.namespace == ns
        v = memo[ident] = in_ns and (pps is None or (_sel_ok(pps) and selects(pps, pod.label_dict())))
    return v


def matters(shape: Shape, pod: PodInfo | None, ns_labels: dict, memo: dict) -> bool:
    """Does ``pod`` take part in the policy at all (selected or in a peer)?"""
    if pod is None:
        return False
    try:
        return selected(shape, pod) or any(in_peer(p, shape.ns, pod, ns_labels, memo) for p in shape.peers)
    except (KeyError, TypeError, AttributeError):
        return True  # unreadable: recompile (it fails closed)
