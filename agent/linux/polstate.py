"""The nftables NetworkPolicy renderer: :mod:`agent.linux.polrender` plus the
state it keeps between changes (a :class:`agent.dataplane.PolicyRenderer`).

Partitions: ``pol/<ns>/<name>`` (a policy's chains, when it is rendered
here), ``polset/<name>`` (a peer set shared by every policy written with
that peer), ``polpod/<ns>/<name>`` (a local pod's dispatch elements) and
``polgroups`` (one group chain per distinct set of policies isolating a
local pod).

Shared peer sets are an nftables device: every rendered policy whose peer
selects the same thing (same ``Peer.ident``) uses one set, kept while some
policy uses it, so a pod entering or leaving that peer is one element --
patched in place -- however many policies share it.
"""
from __future__ import annotations

from collections import Counter
from typing import Mapping

from agent.builders.policies import Peer, PodInfo
from agent.dataplane import Patches, Partitions, PolicyDelta
from agent.linux import polrender as R

GROUPS = "polgroups"


class NftPolicyRenderer:
    """See the module docstring."""

    def __init__(self) -> None:
        # shared peer sets: name -> (spec, elements); name -> policies using it;
        # policy -> names it uses (only policies rendered here use sets)
        self._sets: dict[str, tuple[str, frozenset]] = {}
        self._set_users: dict[str, set[str]] = {}
        self._uses: dict[str, set[str]] = {}
        # local pod -> its groups; how many local pods use each group
        self._pod_groups: dict[str, tuple] = {}
        self._groups: Counter = Counter()
        self._groups_last: set | None = None

    def reset(self) -> None:
        self._sets.clear()
        self._set_users.clear()
        self._uses.clear()
        self._pod_groups.clear()
        self._groups.clear()
        self._groups_last = None

    def render(self, delta: PolicyDelta, pods: Mapping[str, PodInfo]) -> tuple[Partitions, Patches]:
        if delta.full:
            self.reset()
        parts: Partitions = {}
        changed_sets: set[str] = set()
        for ref in sorted(delta.policies):
            cp = delta.policies[ref]
            here = cp is not None and ref in delta.here
            sets: dict[str, tuple[str, frozenset]] = {}
            for rule in cp.rules if here else ():
                for pe in rule.peers or ():
                    name, spec, elems = R.peer_set(pe, pods)
                    sets[name] = (spec, elems)
            self._use(ref, sets, changed_sets)
            parts[f"pol/{ref}"] = R.render_policy(cp, pods) if here else {}
        patches = self._apply_moves(delta.moves, changed_sets)
        parts.update({f"polset/{n}": R.render_peer_set(n, *self._sets[n]) if n in self._sets else {}
                      for n in changed_sets})
        for ref in sorted(delta.dispatch):
            pod, ingress, egress = delta.dispatch[ref]
            parts[f"polpod/{ref}"] = R.render_dispatch(pod, ingress, egress) if pod is not None else {}
            self._set_pod_groups(ref, () if pod is None else
                                 tuple((d, g) for d, g in (("ingress", ingress), ("egress", egress)) if g))
        groups = set(self._groups)
        if groups != self._groups_last:
            parts[GROUPS] = R.render_groups(groups)
            self._groups_last = groups
        return parts, patches

    # ------------------------------------------------------------ shared sets
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

    def _apply_moves(self, moves, changed_sets: set[str]) -> Patches:
        """Pods entering/leaving peers: patch the elements of the shared sets in
        use -- once per set, however many policies share it. Sets re-rendered
        whole in this pass (``changed_sets``) were compiled from the current
        pods already."""
        patches: Patches = {}
        for ident, pod, joined in moves:
            name = R.peer_set_name(Peer("pods", ident=ident))
            content = self._sets.get(name)
            if content is None:  # no policy rendered here uses it
                continue
            elems = content[1] | {pod.ip} if joined else content[1] - {pod.ip}
            if elems == content[1]:
                continue  # another policy's move already did it
            self._sets[name] = (content[0], elems)
            if name in changed_sets:
                continue
            key, value = R.peer_element(name, pod.ip)
            up, rm = patches.setdefault(f"polset/{name}", ({}, set()))
            if joined:
                up[key] = value
                rm.discard(key)
            else:
                rm.add(key)
                up.pop(key, None)
        return patches

    # ------------------------------------------------------------ group chains
    def _set_pod_groups(self, ref: str, groups: tuple) -> None:
        """The group chains follow which policies isolate which local pod:
        counted, so that a change costs what it touches, not every pod."""
        for g in self._pod_groups.pop(ref, ()):
            n = self._groups[g] - 1
            if n:
                self._groups[g] = n
            else:
                del self._groups[g]
        if groups:
            self._pod_groups[ref] = groups
            for g in groups:
                self._groups[g] += 1
