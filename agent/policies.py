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

Peer sets are shared: every policy (rendered here) whose peer selects the
same thing uses one set, in partition ``polset/<name>``, kept while some
policy uses it. A pod entering or leaving a peer is one element of that set,
however many policies are written with the peer.

The renderer (``agent.linux.polrender`` for the Linux data plane) provides
``render_policy``, ``peer_set``, ``peer_set_name``, ``render_peer_set``, ``peer_element``,
``render_dispatch`` and ``render_groups``.
"""
from __future__ import annotations

import logging
from typing import Any

from agent import policyindex as pi
from agent.builders.policies import CompiledPolicy, Peer, PodInfo, PolicyError, PolicyModel, pod_info
from agent.cluster import Change, ClusterSnapshot
from agent.desired import DesiredState

log = logging.getLogger(__name__)
GROUPS = "polgroups"


class PolicySync:
    def __init__(self, snapshot: ClusterSnapshot, desired: DesiredState, node: str,
                 renderer: Any) -> None:
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
        self._groups_last: set = set()
        self._groups_stale = False
        # shared peer sets: name -> (spec, elements); name -> policies using it;
        # policy -> names it uses (only policies rendered here use sets)
        self._sets: dict[str, tuple[str, frozenset]] = {}
        self._set_users: dict[str, set[str]] = {}
        self._uses: dict[str, set[str]] = {}

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
            self._groups_stale = True
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

    def _rendered_here(self, cp: CompiledPolicy) -> bool:
        return any(self._local(r) for r in cp.selected)

    def _policy_values(self, cp: CompiledPolicy, changed_sets: set[str]) -> dict:
        """The policy's own values; records the shared sets it uses (those whose
        elements or users changed go to ``changed_sets``)."""
        here = self._rendered_here(cp)
        sets: dict[str, tuple[str, frozenset]] = {}
        for rule in cp.rules if here else ():
            for pe in rule.peers or ():
                name, spec, elems = self.r.peer_set(pe, self.pods)
                sets[name] = (spec, elems)
        self._use(cp.ref, sets, changed_sets)
        return self.r.render_policy(cp, self.pods) if here else {}

    def _use(self, ref: str, sets: dict[str, tuple[str, frozenset]], changed: set[str]) -> None:
        old = self._uses.pop(ref, set())
        if sets:
            self._uses[ref] = set(sets)
        for name in old - sets.keys():
            users = self._set_users.get(name, set())
            users.discard(ref)
            if not users:
                self._set_users.pop(name, None)
                self._sets.pop(name, None)
                changed.add(name)
        for name, content in sets.items():
            self._set_users.setdefault(name, set()).add(ref)
            if self._sets.get(name) != content:
                # freshly compiled from the current pods: this is the truth
                self._sets[name] = content
                changed.add(name)

    def _set_parts(self, names: set[str]) -> dict[str, dict]:
        return {f"polset/{n}": self.r.render_peer_set(n, *self._sets[n]) if n in self._sets else {}
                for n in names}

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
        return self.r.render_dispatch(self.pods[ref], self._policies_of(ref, "Ingress"),
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
        self._sets.clear()
        self._set_users.clear()
        self._uses.clear()
        for c in model.policies:
            self._report(c)
            self._set_compiled(c.ref, c)
        changed: set[str] = set()
        parts = {f"pol/{c.ref}": self._policy_values(c, changed) for c in model.policies}
        parts.update(self._set_parts(changed))
        for ref in self.pods:
            parts[f"polpod/{ref}"] = self._dispatch(ref)
        self._groups_last = self._group_set()
        parts[GROUPS] = self.r.render_groups(self._groups_last)
        for name in self.desired.names("pol"):
            parts.setdefault(name, {})
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
        if dirty_p:
            with self.snapshot.lock:
                objs = self._policy_objs()
            model = self._model([])
        parts: dict[str, dict] = {}
        changed_sets: set[str] = set()
        for ref in sorted(dirty_p):
            obj = objs.get(ref)
            if obj is None:
                dirty_pods |= self._set_compiled(ref, None)
                self._use(ref, {}, changed_sets)
                parts[f"pol/{ref}"] = {}
                self.reported.pop(ref, None)
                continue
            cp = model.compile(obj)
            self._report(cp)
            dirty_pods |= self._set_compiled(ref, cp)
            parts[f"pol/{ref}"] = self._policy_values(cp, changed_sets)
        patches = self._apply_moves(moves, changed_sets)
        parts.update(self._set_parts(changed_sets))
        for ref in sorted(dirty_pods):
            parts[f"polpod/{ref}"] = self._dispatch(ref)
        # the groups follow which policies select which local pod: only a
        # recompile or a pod appearing, going or moving can change them
        groups = self._group_set() if dirty_p or self._groups_stale else self._groups_last
        self._groups_stale = False
        if groups != self._groups_last:
            parts[GROUPS] = self.r.render_groups(groups)
            self._groups_last = groups
        what = sorted(dirty_p)[:3] or sorted(dirty_pods)[:3] or sorted({m[1] for m in moves})[:3]
        res = self.desired.set_partitions(parts, patches=patches,
                                          description="network policies: " + ", ".join(what))
        if res.errors:
            log.warning("network policies: %d value(s) failed: %s", len(res.errors),
                        "; ".join(f"{k}: {e}" for k, e in sorted(res.errors.items())[:3]))
        return len(dirty_p) + len(dirty_pods) + len(moves)

    def _apply_moves(self, moves, changed_sets: set[str]) -> dict[str, tuple[dict, set]]:
        """Pods entering/leaving peers: patch the elements of the shared sets in
        use -- once per set, however many policies share it. Sets re-rendered
        whole in this flush (``changed_sets``) were compiled from the current
        pods already. (Compiled policies keep the peer pods of their last
        compile: nothing reads them before the next one, and ``explain``
        compiles afresh.)"""
        patches: dict[str, tuple[dict, set]] = {}
        for ident, pod_ref, joined in moves:
            pod = self.pods.get(pod_ref)
            if pod is not None:
                name = self.r.peer_set_name(Peer("pods", ident=ident))
                self._move_element(name, pod.ip, joined, patches, changed_sets)
        return patches

    def _move_element(self, name: str, ip: str, joined: bool, patches: dict, changed_sets: set[str]) -> None:
        content = self._sets.get(name)
        if content is None:  # no policy rendered here uses it
            return
        elems = content[1] | {ip} if joined else content[1] - {ip}
        if elems == content[1]:
            return  # another policy's move already did it
        self._sets[name] = (content[0], elems)
        if name in changed_sets:
            return
        key, value = self.r.peer_element(name, ip)
        up, rm = patches.setdefault(f"polset/{name}", ({}, set()))
        if joined:
            up[key] = value
            rm.discard(key)
        else:
            rm.add(key)
            up.pop(key, None)

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
