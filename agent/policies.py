"""Keeps NetworkPolicy enforcement current, incrementally.

Data-plane neutral: it compiles policies (:mod:`agent.builders.policies`),
knows which policies select which pod and which pods each peer admits, and
hands each change as a :class:`agent.dataplane.PolicyDelta` to the data
plane's :class:`agent.dataplane.PolicyRenderer`, whose partitions (names
starting with ``pol``) go to the scheduler as one transaction per flush.

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

A pod entering or leaving a peer is a *move* of that peer (its ident names
what it selects, shared by every policy written with it): the renderer can
make it one element of one shared set (nftables) however many policies
share the peer.
"""
from __future__ import annotations

import logging

from agent import policyindex as pi
from agent.builders.policies import CompiledPolicy, PodInfo, PolicyError, PolicyModel, pod_info
from agent.cluster import Change, ClusterSnapshot
from agent.dataplane import PolicyDelta, PolicyRenderer
from agent.desired import DesiredState
from agent.errors import InvalidInput
from agent.model import api as rec

log = logging.getLogger(__name__)


class PolicySync:
    def __init__(self, snapshot: ClusterSnapshot, desired: DesiredState, node: str,
                 renderer: PolicyRenderer) -> None:
        self.snapshot = snapshot
        self.desired = desired
        self.node = node
        self.r = renderer
        self.pods: dict[str, PodInfo] = {}
        self.compiled: dict[str, CompiledPolicy] = {}
        self.dirty_policies: set[str] = set()
        self.dirty_pods: set[str] = set()
        self.reported: dict[str, str] = {}
        # which labels can change which policy's selection (and, for policies
        # resolving named ports on peers, its peers), and which shared peer
        self._policy_index = pi.LabelIndex()
        self._peer_index = pi.LabelIndex()
        self._shapes: dict[str, pi.Shape] = {}
        self._peer_users: dict[str, set[str]] = {}  # peer ident -> policies with it
        self._peer_def: dict[str, tuple] = {}  # peer ident -> (namespace, Shape peer)
        self._named: set[str] = set()  # policies resolving named ports on peers (egress)
        self._selecting: dict[str, set[str]] = {}  # pod ref -> policies selecting it
        self._peer_moves: list[tuple[str, str, bool]] = []  # (peer ident, pod ref, joined)

    # ------------------------------------------------------------ inputs
    def _policy_objs(self) -> dict[str, dict]:
        return {f"{ns}/{n}": o for (ns, n), o in self.snapshot.objects["networkpolicy"].items()}

    def _ns_labels(self, only: set[str] | None = None) -> dict:
        """Namespace name -> labels (of ``only`` those namespaces if given)."""
        objs = self.snapshot.objects["namespace"]
        if only is None:
            return {n: (o.get("metadata") or {}).get("labels") or {} for (_, n), o in objs.items()}
        return {n: (objs[("", n)].get("metadata") or {}).get("labels") or {}
                for n in only if ("", n) in objs}

    def _index_policy(self, ref: str, obj: dict | None) -> None:
        old = self._shapes.pop(ref, None)
        for p in old.peers if old else ():
            users = self._peer_users.get(p[3], set())
            users.discard(ref)
            if not users:
                self._peer_users.pop(p[3], None)
                self._peer_def.pop(p[3], None)
                self._peer_index.remove(p[3])
        self._policy_index.remove(ref)
        self._named.discard(ref)
        if obj is None:
            return
        shape = self._shapes[ref] = pi.Shape(obj)
        named = pi.egress_named_ports(obj)
        if named:
            self._named.add(ref)
        self._policy_index.add(ref, [shape.selector] + ([p[4] for p in shape.peers] if named else []))
        for p in shape.peers:
            if p[3] not in self._peer_users:
                self._peer_def[p[3]] = (shape.ns, p)
                self._peer_index.add(p[3], [p[4]])
            self._peer_users.setdefault(p[3], set()).add(ref)

    def _candidates(self, before: dict, after: dict) -> set[str]:
        """Policies whose pod selectors may answer differently for these labels."""
        out = self._policy_index.candidates(before, after)
        for ident in self._peer_index.candidates(before, after):
            out |= self._peer_users.get(ident, set())
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
        # only the pod's own namespace is ever looked up (namespaceSelectors):
        # not every namespace's labels on every pod event
        ns_labels = self._ns_labels({p.namespace for p in (old, new) if p is not None})
        memo_old: dict = {}
        memo_new: dict = {}
        if old is not None and new is not None and (old.ip, old.ports, old.node, old.namespace) == \
                (new.ip, new.ports, new.node, new.namespace):
            # labels only: just the policies that look at a changed key. A
            # policy whose selection changes is recompiled; otherwise the pod
            # moves between shared peer sets -- once per peer, not per policy
            moved: dict[str, bool] = {}
            before, after = old.label_dict(), new.label_dict()
            keys = {k for k in before.keys() | after.keys() if before.get(k) != after.get(k)}
            for pref in self._policy_index.candidates(before, after):
                shape = self._shapes.get(pref)
                if shape is None or pref in self.dirty_policies:
                    continue
                try:
                    if pi.reads(shape.sel_keys, keys) and pi.selected(shape, old) != pi.selected(shape, new):
                        self.dirty_policies.add(pref)
                    elif pref in self._named and any(
                            pi.reads(p[6], keys) and pi.in_peer(p, shape.ns, old, ns_labels, memo_old)
                            != pi.in_peer(p, shape.ns, new, ns_labels, memo_new) for p in shape.peers):
                        self.dirty_policies.add(pref)
                except (KeyError, TypeError, AttributeError):
                    self.dirty_policies.add(pref)  # unreadable: recompile, it fails closed
            for ident in self._peer_index.candidates(before, after):
                ns, p = self._peer_def[ident]
                try:
                    now = pi.in_peer(p, ns, new, ns_labels, memo_new)
                    if pi.in_peer(p, ns, old, ns_labels, memo_old) != now:
                        moved[ident] = now
                except (KeyError, TypeError, AttributeError):
                    self.dirty_policies |= self._peer_users.get(ident, set())
            self._peer_moves += [(ident, ref, now) for ident, now in moved.items()]
        else:
            # appeared, gone, or moved: every policy it matters to is recompiled
            for pref, shape in self._shapes.items():
                if pref in self._named or pi.matters(shape, old, ns_labels, memo_old) or \
                        pi.matters(shape, new, ns_labels, memo_new):
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

    def _dispatch(self, ref: str) -> tuple[PodInfo | None, tuple[str, ...], tuple[str, ...]]:
        """A pod's entry of :attr:`PolicyDelta.dispatch` (None: not a local pod)."""
        if not self._local(ref):
            return None, (), ()
        return self.pods[ref], self._policies_of(ref, "Ingress"), self._policies_of(ref, "Egress")

    def load_pods(self) -> None:
        with self.snapshot.lock:
            self.pods = {}
            for obj in self.snapshot.objects["pod"].values():
                p = pod_info(obj)
                if p is not None:
                    self.pods[p.ref] = p

    def partitions(self) -> dict[str, dict]:
        """Every partition, from scratch (start-up resync, relist). Partitions
        held now that the rebuild does not produce -- a policy or pod deleted
        while the watch was down, a peer set nobody uses any more -- come back
        empty, so that replacing them removes them."""
        self.load_pods()
        with self.snapshot.lock:
            objs = self._policy_objs()
        self._policy_index.clear()
        self._peer_index.clear()
        self._shapes.clear()
        self._peer_users.clear()
        self._peer_def.clear()
        self._named.clear()
        for ref, obj in objs.items():
            self._index_policy(ref, obj)
        model = self._model(list(objs.values()))
        self.compiled.clear()
        self._selecting.clear()
        for c in model.policies:
            self._report(c)
            self._set_compiled(c.ref, c)
        delta = PolicyDelta(full=True)
        for c in model.policies:
            self._add_policy(delta, c.ref, c)
        delta.dispatch = {ref: self._dispatch(ref) for ref in self.pods}
        parts, _ = self.r.render(delta, self.pods)
        for name in self.desired.names("pol"):
            parts.setdefault(name, {})
        self.dirty_policies.clear()
        self.dirty_pods.clear()
        self._peer_moves.clear()
        return parts

    def _add_policy(self, delta: PolicyDelta, ref: str, cp: CompiledPolicy | None) -> None:
        delta.policies[ref] = cp
        if cp is not None and any(self._local(r) for r in cp.selected):
            delta.here.add(ref)

    def flush(self) -> int:
        if not self.dirty_policies and not self.dirty_pods and not self._peer_moves:
            return 0
        dirty_p, self.dirty_policies = self.dirty_policies, set()
        dirty_pods, self.dirty_pods = self.dirty_pods, set()
        moves, self._peer_moves = self._peer_moves, []
        if dirty_p:
            with self.snapshot.lock:
                objs = self._policy_objs()
            model = self._model([])
        delta = PolicyDelta()
        for ref in sorted(dirty_p):
            obj = objs.get(ref)
            if obj is None:
                dirty_pods |= self._set_compiled(ref, None)
                self._add_policy(delta, ref, None)
                self.reported.pop(ref, None)
                continue
            cp = model.compile(obj)
            self._report(cp)
            dirty_pods |= self._set_compiled(ref, cp)
            self._add_policy(delta, ref, cp)
        delta.moves = [(ident, self.pods[ref], joined) for ident, ref, joined in moves
                       if ref in self.pods]
        delta.dispatch = {ref: self._dispatch(ref) for ref in dirty_pods}
        parts, patches = self.r.render(delta, self.pods)
        what = sorted(dirty_p)[:3] or sorted(dirty_pods)[:3] or sorted({m[1] for m in moves})[:3]
        res = self.desired.set_partitions(parts, patches=patches,
                                          description="network policies: " + ", ".join(what))
        if res.errors:
            log.warning("network policies: %d value(s) failed: %s", len(res.errors),
                        "; ".join(f"{k}: {e}" for k, e in sorted(res.errors.items())[:3]))
        return len(dirty_p) + len(dirty_pods) + len(moves)

    # ------------------------------------------------------------ diagnostics
    def pod_infos(self) -> dict[str, PodInfo]:
        """The cluster's pods with an address (ref -> PodInfo: IP, node), as
        kept current here -- without compiling a model of every policy."""
        with self.snapshot.lock:
            return dict(self.pods)

    def model(self) -> PolicyModel:
        with self.snapshot.lock:
            objs = list(self._policy_objs().values())
        return self._model(objs)

    def describe(self, namespace: str | None = None, pod: str | None = None) -> list[rec.PodPolicies]:
        m = self.model()
        out = []
        for ref, p in sorted(m.pods.items()):
            if (namespace and p.namespace != namespace) or (pod and ref != pod and p.name != pod):
                continue
            out.append(rec.PodPolicies.from_dict(m.effective(p)))
        return out

    def explain(self, src: str, dst: str, port: int, protocol: str) -> rec.Explanation:
        try:
            return rec.Explanation.from_dict(self.model().explain(src, dst, port, protocol))
        except PolicyError as e:
            raise InvalidInput(str(e)) from None
