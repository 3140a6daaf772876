"""Keeps NetworkPolicy enforcement current, incrementally.

Partitions: ``pol/<ns>/<name>`` (a policy's chains and sets, rendered only
when it selects a pod of this node), ``polpod/<ns>/<name>`` (a local pod's
dispatch elements) and ``polgroups`` (the group chains in use). Everything a
flush changes goes to the scheduler as one transaction.

What a pod change costs:

* a **label change** looks only at the policies whose pod selectors can
  answer differently: indexed by the (key, value) pairs of matchLabels, In
  and NotIn, and by the keys of Exists/DoesNotExist. Where the pod only enters or
  leaves a peer set, that is one set element added or removed -- the policy
  is neither recompiled nor re-rendered; where its own selection changes (or
  the policy resolves named ports) the policy is recompiled;
* a pod **appearing, going, or changing address or ports** is checked
  against every policy's selectors, and recompiles only those it matters to;
* which policies select which local pod is an index too, so dispatch and the
  group chains never scan all policies for all pods.
"""
from __future__ import annotations

import logging
from dataclasses import replace
from typing import Callable

from agent.builders.policies import (CompiledPolicy, PodInfo, PolicyError, PolicyModel, pod_info,
                                     selects)
from agent.cluster import Change, ClusterSnapshot
from agent.desired import DesiredState

log = logging.getLogger(__name__)
GROUPS = "polgroups"


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


def _peers(spec: dict):
    """(direction, rule index, peer index, peer) of every selector peer."""
    for direction, key in (("ingress", "from"), ("egress", "to")):
        for i, r in enumerate(spec.get(direction) or []):
            for j, p in enumerate((r or {}).get(key) or []):
                if isinstance(p, dict) and "ipBlock" not in p:
                    yield direction, i, j, p


def _pod_label_index(obj: dict) -> tuple[set, set]:
    """(key, value) pairs and presence keys of a policy's *pod* selectors."""
    spec = obj.get("spec") or {}
    kv: set = set()
    presence: set = set()
    _sel_index(spec.get("podSelector"), kv, presence)
    for _, _, _, p in _peers(spec):
        _sel_index(p.get("podSelector"), kv, presence)
    return kv, presence


def _egress_named_ports(obj: dict) -> bool:
    """Egress rules naming ports resolve them on each *peer* pod, so a pod
    entering or leaving those peers changes more than one element. (Ingress
    names resolve on the selected pods: a selection change recompiles anyway.)"""
    for r in (obj.get("spec") or {}).get("egress") or []:
        for p in (r or {}).get("ports") or []:
            if isinstance(p, dict) and isinstance(p.get("port"), str) and not p["port"].isdigit():
                return True
    return False


def _membership(obj: dict, pod: PodInfo | None, ns_labels: dict) -> tuple:
    """(selected by the policy, in each selector peer...) for ``pod``."""
    if pod is None:
        return ()
    md, spec = obj.get("metadata") or {}, obj.get("spec") or {}
    ns = md.get("namespace", "default")
    labels = pod.label_dict()
    try:
        ps = spec.get("podSelector")
        out = [pod.namespace == ns and _sel_ok(ps) and selects(ps, labels)]
        for _, _, _, p in _peers(spec):
            pps, nss = p.get("podSelector"), p.get("namespaceSelector")
            in_ns = selects(nss, ns_labels.get(pod.namespace, {})) if _sel_ok(nss) else pod.namespace == ns
            out.append(in_ns and (pps is None or (_sel_ok(pps) and selects(pps, labels))))
    except (KeyError, TypeError, AttributeError):
        return ("unreadable",)
    return tuple(out)


class PolicySync:
    def __init__(self, snapshot: ClusterSnapshot, desired: DesiredState, node: str, *,
                 render_policy: Callable, render_dispatch: Callable, render_groups: Callable,
                 peer_element: Callable) -> None:
        self.snapshot = snapshot
        self.desired = desired
        self.node = node
        self._render_policy = render_policy
        self._render_dispatch = render_dispatch
        self._render_groups = render_groups
        #: (policy ref, direction, rule, peer, pod IP) -> (key, value) of that set element
        self._peer_element = peer_element
        self.pods: dict[str, PodInfo] = {}
        self.compiled: dict[str, CompiledPolicy] = {}
        self.dirty_policies: set[str] = set()
        self.dirty_pods: set[str] = set()
        self.reported: dict[str, str] = {}
        # label (key, value) / presence key -> policies whose pod selectors can
        # change their answer with it; and what each policy is indexed under
        self._by_kv: dict[tuple[str, str], set[str]] = {}
        self._by_presence: dict[str, set[str]] = {}
        self._index_of: dict[str, tuple[set, set]] = {}
        self._named: set[str] = set()  # policies resolving named ports on peers (egress)
        self._selecting: dict[str, set[str]] = {}  # pod ref -> policies selecting it
        self._peer_moves: list[tuple[str, str, int, int, str, bool]] = []
        self._groups_last: set = set()

    # ------------------------------------------------------------ inputs
    def _policy_objs(self) -> dict[str, dict]:
        return {f"{ns}/{n}": o for (ns, n), o in self.snapshot.objects["networkpolicy"].items()}

    def _ns_labels(self) -> dict:
        return {n: (o.get("metadata") or {}).get("labels") or {}
                for (_, n), o in self.snapshot.objects["namespace"].items()}

    def _index_policy(self, ref: str, obj: dict | None) -> None:
        kv, presence = self._index_of.pop(ref, (set(), set()))
        for x in kv:
            self._by_kv.get(x, set()).discard(ref)
        for k in presence:
            self._by_presence.get(k, set()).discard(ref)
        self._named.discard(ref)
        if obj is None:
            return
        kv, presence = _pod_label_index(obj)
        self._index_of[ref] = (kv, presence)
        for x in kv:
            self._by_kv.setdefault(x, set()).add(ref)
        for k in presence:
            self._by_presence.setdefault(k, set()).add(ref)
        if _egress_named_ports(obj):
            self._named.add(ref)

    def _candidates(self, before: dict, after: dict) -> set[str]:
        """Policies whose pod selectors may answer differently for these labels."""
        out: set[str] = set()
        for k in set(before) | set(after):
            old, new = before.get(k), after.get(k)
            if old == new:
                continue
            for v in (old, new):
                if v is not None:
                    out |= self._by_kv.get((k, v), set())
            if old is None or new is None:
                out |= self._by_presence.get(k, set())
        return out

    def on_change(self, ch: Change) -> None:
        with self.snapshot.lock:
            if ch.kind == "networkpolicy":
                ref = f"{ch.namespace}/{ch.name}"
                self.dirty_policies.add(ref)
                self._index_policy(ref, self.snapshot.objects["networkpolicy"].get((ch.namespace, ch.name)))
            elif ch.kind == "namespace":
                # namespace labels feed namespaceSelectors: re-evaluate them all
                self.dirty_policies |= set(self._policy_objs())
            elif ch.kind == "pod":
                self._pod_changed(ch)

    def _pod_changed(self, ch: Change) -> None:
        ref = f"{ch.namespace}/{ch.name}"
        old = self.pods.get(ref)
        obj = self.snapshot.objects["pod"].get((ch.namespace, ch.name))
        new = pod_info(obj) if obj is not None else None
        if new == old:
            return
        objs = self._policy_objs()
        ns_labels = self._ns_labels()
        if old is not None and new is not None and (old.ip, old.ports, old.node, old.namespace) == \
                (new.ip, new.ports, new.node, new.namespace):
            # labels only: just the policies that look at a changed key
            for pref in self._candidates(old.label_dict(), new.label_dict()):
                pobj = objs.get(pref)
                if pobj is None:
                    continue
                m_old, m_new = _membership(pobj, old, ns_labels), _membership(pobj, new, ns_labels)
                if m_old == m_new:
                    continue
                if m_old[:1] != m_new[:1] or pref in self._named or "unreadable" in m_old + m_new \
                        or len(m_old) != len(m_new) or pref in self.dirty_policies:
                    self.dirty_policies.add(pref)
                    continue
                peers = list(_peers(pobj.get("spec") or {}))
                for (direction, i, j, _), was, now in zip(peers, m_old[1:], m_new[1:]):
                    if was != now:
                        self._peer_moves.append((pref, direction, i, j, ref, now))
        else:
            # appeared, gone, or moved: every policy it matters to is recompiled
            for pref, pobj in objs.items():
                if pref in self._named or any(_membership(pobj, old, ns_labels)) or \
                        any(_membership(pobj, new, ns_labels)):
                    self.dirty_policies.add(pref)
        if new is None:
            self.pods.pop(ref, None)
        else:
            self.pods[ref] = new
        self.dirty_pods.add(ref)

    # ------------------------------------------------------------ build
    def _model(self, policies: list[dict]) -> PolicyModel:
        with self.snapshot.lock:
            return PolicyModel(self.pods.values(), self._ns_labels(), policies)

    def _report(self, cp: CompiledPolicy) -> None:
        if cp.error and self.reported.get(cp.ref) != cp.error:
            log.warning("NetworkPolicy %s is invalid (%s): it fails closed -- the pods it selects "
                        "stay isolated, none of its rules applies", cp.ref, cp.error)
        if cp.error:
            self.reported[cp.ref] = cp.error
        else:
            self.reported.pop(cp.ref, None)

    def _local(self, ref: str) -> bool:
        p = self.pods.get(ref)
        return p is not None and p.node == self.node

    def _rendered_here(self, cp: CompiledPolicy) -> bool:
        return any(self._local(r) for r in cp.selected)

    def _policy_values(self, cp: CompiledPolicy) -> dict:
        return self._render_policy(cp, self.pods) if self._rendered_here(cp) else {}

    def _set_compiled(self, ref: str, cp: CompiledPolicy | None) -> set[str]:
        """Install a compiled policy (None: gone); returns pods whose selection changed."""
        old = self.compiled.pop(ref, None)
        touched = set()
        if old is not None:
            for p in old.selected:
                self._selecting.get(p, set()).discard(ref)
            touched |= old.selected
        if cp is not None:
            self.compiled[ref] = cp
            for p in cp.selected:
                self._selecting.setdefault(p, set()).add(ref)
            touched |= cp.selected
        return touched

    def _policies_of(self, pod_ref: str, policy_type: str) -> tuple[str, ...]:
        return tuple(sorted(r for r in self._selecting.get(pod_ref, ())
                            if policy_type in self.compiled[r].types))

    def _dispatch(self, ref: str) -> dict:
        if not self._local(ref):
            return {}
        return self._render_dispatch(self.pods[ref], self._policies_of(ref, "Ingress"),
                                     self._policies_of(ref, "Egress"))

    def _group_set(self) -> set:
        groups = set()
        for ref in self._selecting:
            if not self._local(ref):
                continue
            for d, t in (("ingress", "Ingress"), ("egress", "Egress")):
                g = self._policies_of(ref, t)
                if g:
                    groups.add((d, g))
        return groups

    def load_pods(self) -> None:
        with self.snapshot.lock:
            self.pods = {}
            for obj in self.snapshot.objects["pod"].values():
                p = pod_info(obj)
                if p is not None:
                    self.pods[p.ref] = p

    def partitions(self) -> dict[str, dict]:
        """Every partition, from scratch (start-up resync)."""
        self.load_pods()
        with self.snapshot.lock:
            objs = self._policy_objs()
        self._by_kv.clear()
        self._by_presence.clear()
        self._index_of.clear()
        self._named.clear()
        for ref, obj in objs.items():
            self._index_policy(ref, obj)
        model = self._model(list(objs.values()))
        self.compiled.clear()
        self._selecting.clear()
        for c in model.policies:
            self._report(c)
            self._set_compiled(c.ref, c)
        parts = {f"pol/{c.ref}": self._policy_values(c) for c in model.policies}
        for ref in self.pods:
            parts[f"polpod/{ref}"] = self._dispatch(ref)
        self._groups_last = self._group_set()
        parts[GROUPS] = self._render_groups(self._groups_last)
        self.dirty_policies.clear()
        self.dirty_pods.clear()
        self._peer_moves.clear()
        return parts

    def flush(self) -> int:
        if not self.dirty_policies and not self.dirty_pods and not self._peer_moves:
            return 0
        dirty_p, self.dirty_policies = self.dirty_policies, set()
        dirty_pods, self.dirty_pods = self.dirty_pods, set()
        moves, self._peer_moves = self._peer_moves, []
        with self.snapshot.lock:
            objs = self._policy_objs()
        model = self._model([])
        parts: dict[str, dict] = {}
        for ref in sorted(dirty_p):
            obj = objs.get(ref)
            if obj is None:
                dirty_pods |= self._set_compiled(ref, None)
                parts[f"pol/{ref}"] = {}
                self.reported.pop(ref, None)
                continue
            cp = model.compile(obj)
            self._report(cp)
            dirty_pods |= self._set_compiled(ref, cp)
            parts[f"pol/{ref}"] = self._policy_values(cp)
        patches = self._apply_moves([m for m in moves if m[0] not in dirty_p])
        for ref in sorted(dirty_pods):
            parts[f"polpod/{ref}"] = self._dispatch(ref)
        groups = self._group_set()
        if groups != self._groups_last:
            parts[GROUPS] = self._render_groups(groups)
            self._groups_last = groups
        what = sorted(dirty_p)[:3] or sorted(dirty_pods)[:3] or sorted({m[4] for m in moves})[:3]
        res = self.desired.set_partitions(parts, patches=patches,
                                          description="network policies: " + ", ".join(what))
        if res.errors:
            log.warning("network policies: %d value(s) failed: %s", len(res.errors),
                        "; ".join(f"{k}: {e}" for k, e in sorted(res.errors.items())[:3]))
        return len(dirty_p) + len(dirty_pods) + len(moves)

    def _apply_moves(self, moves) -> dict[str, tuple[dict, set]]:
        """Pods entering/leaving peer sets: update the compiled peers (explain
        and later renders see them) and patch those set elements."""
        patches: dict[str, tuple[dict, set]] = {}
        for pref, direction, i, j, pod_ref, joined in moves:
            cp = self.compiled.get(pref)
            pod = self.pods.get(pod_ref)
            if cp is None or pod is None:
                continue
            for n, r in enumerate(cp.rules):
                if r.direction == direction and r.index == i and r.peers is not None and j < len(r.peers):
                    pe = r.peers[j]
                    pods = pe.pods | {pod_ref} if joined else pe.pods - {pod_ref}
                    peers = r.peers[:j] + (replace(pe, pods=frozenset(pods)),) + r.peers[j + 1:]
                    cp.rules[n] = replace(r, peers=peers)
            if not self._rendered_here(cp):
                continue
            key, value = self._peer_element(pref, direction, i, j, pod.ip)
            up, rm = patches.setdefault(f"pol/{pref}", ({}, set()))
            if joined:
                up[key] = value
                rm.discard(key)
            else:
                rm.add(key)
                up.pop(key, None)
        return patches

    # ------------------------------------------------------------ diagnostics
    def model(self) -> PolicyModel:
        with self.snapshot.lock:
            objs = list(self._policy_objs().values())
        return self._model(objs)

    def describe(self, namespace: str | None = None, pod: str | None = None) -> list[dict]:
        m = self.model()
        out = []
        for ref, p in sorted(m.pods.items()):
            if (namespace and p.namespace != namespace) or (pod and ref != pod and p.name != pod):
                continue
            out.append(m.effective(p))
        return out

    def explain(self, src: str, dst: str, port: int, protocol: str) -> dict:
        try:
            return self.model().explain(src, dst, port, protocol)
        except PolicyError as e:
            from agent.errors import InvalidInput  # noqa: PLC0415
            raise InvalidInput(str(e)) from None
