"""NetworkPolicies as VPP ACL-plugin rules on the pods' interfaces.

Exports :data:`MESSAGES` (what the agent needs of VPP's ACL plugin),
:func:`descriptors` (ACLs and per-interface ACL lists,
:mod:`agent.vpp.poldesc`) and :class:`AclPolicyRenderer` (a
:class:`agent.dataplane.PolicyRenderer`). Why the ACL plugin and not npol,
and what it costs: docs/vpp-policies.md.

What a pod gets -- on its interface and, when it has one, on its memif
(the same lists: the memif is no way around its policies) -- (VPP *output* on
an interface is the pod's ingress, *input* its egress; VPP checks a direction only when it has a list there, takes the
first matching rule across the list and denies when none matches):

* isolated for ingress: ``pol-node`` (the node's own addresses, so kubelet
  probes pass), one *anchor* per isolating policy (an empty ACL tagged with
  the policy: ``show acl-plugin acl`` says who isolates which interface, and
  the list is never empty -- an empty list would filter nothing), then the
  *shared* ACLs of those policies' ingress rules; likewise for egress,
  without ``pol-node``;
* isolated in one direction only: ``pol-any`` (permit+reflect everything) in
  the other, so that the pod's own connections there make sessions and their
  replies pass the isolated side; every rule is permit+reflect, so replies of
  admitted connections pass (VPP's sessions are per interface, both ways);
* a shared ACL is one (direction, peer, ports): the peer's addresses (pod
  IPs, collapsed into prefixes; an ipBlock minus its excepts) times the
  ports, named after ``Peer.ident`` and the ports. Every policy and pod with
  that peer and ports uses the one ACL, and a pod entering or leaving a peer
  (a *move*) replaces only the ACLs of that peer, in place -- no list
  changes, no other ACL. Named ports: ingress, resolved against the pod
  (part of the ACL's identity); egress, per peer pod inside the ACL.

Partitions: ``polbase`` (``pol-node``, ``pol-any``), ``pol/<ns>/<name>`` (a
policy's anchors, when it selects a local pod), ``polacl/<name>`` (a shared
ACL, while some local pod uses it), ``polpod/<ns>/<name>`` (a local pod's
list; past VPP's 255 ACLs per interface, one union ACL per direction).

Not expressible in VPP's ACL plugin (the pod is then denied, never
admitted): SCTP port numbers (the plugin reads no SCTP ports; every-port
SCTP rules work), IPv6 peers (pods are IPv4).
"""
from __future__ import annotations

import functools
import hashlib
import ipaddress
from collections import Counter
from typing import Callable, Iterable, Mapping

from agent.builders.policies import CompiledPolicy, Peer, PodInfo, Port
from agent.dataplane import Patches, Partitions, PolicyDelta
from agent.vpp.poldesc import (ALL_PORTS, ANY4, MAX_LIST, Acl, AclBatch, AclDescriptor, AclList,
                               AclListDescriptor, AclRule, acl_key, acllist_key)
from agent.vpp.values import memif_ifname, pod_ifname

MESSAGES = ("acl_add_replace", "acl_del", "acl_dump", "acl_interface_set_acl_list",
            "acl_interface_list_dump")

NODE, ANY = "pol-node", "pol-any"
BASE = "polbase"
PROTO = {"TCP": 6, "UDP": 17, "SCTP": 132}
_PROTO_NAME = {v: k for k, v in PROTO.items()}
SCTP = PROTO["SCTP"]
#: a shared ACL's identity: (direction "i"/"e", peer ident or "*", ports);
#: ports: sorted (proto, first, last, name) -- name set: egress named port
Spec = tuple[str, str, tuple[tuple[int, int, int, str], ...]]


def descriptors(api, ifs) -> list:
    """The ACL and ACL-list descriptors (in retrieve order: ACLs first, the
    lists name them), sharing one batch group."""
    batch = AclBatch(api, ifs)
    return [AclDescriptor(api, ifs, batch), AclListDescriptor(api, ifs, batch)]


def _h(text: str, n: int) -> str:
    return hashlib.sha1(text.encode()).hexdigest()[:n]


def anchor_name(ref: str, direction: str) -> str:
    """A policy's (empty) ACL for one direction, named after it (tags hold 63 bytes)."""
    return f"pol-p{direction[0]}-{_h(ref, 10)}-{ref}"[:56]


def spec_name(spec: Spec) -> str:
    return f"pol-s{spec[0]}-{_h(repr(spec), 16)}"


def union_name(direction: str, ifname: str) -> str:
    return f"pol-u{direction[0]}-{ifname}"


@functools.lru_cache(maxsize=4096)  # ipBlocks repeat across policies; ipaddress is slow
def cidr_prefixes(cidr: str, excepts: tuple[str, ...]) -> tuple[str, ...]:
    """An ipBlock as IPv4 prefixes (CIDR minus every except; excepts may
    overlap, in any order). IPv6 blocks give nothing: pods are IPv4."""
    nets = [ipaddress.ip_network(cidr)]
    if nets[0].version != 4:
        return ()
    for e in excepts:
        en = ipaddress.ip_network(e)
        nxt = []
        for n in nets:
            if en.version == n.version and en.subnet_of(n):
                nxt.extend(n.address_exclude(en))
            elif not (en.version == n.version and n.subnet_of(en)):
                nxt.append(n)
        nets = nxt
    return tuple(sorted(str(n) for n in ipaddress.collapse_addresses(nets)))


def _collapse(ips: Iterable[str]) -> tuple[str, ...]:
    addrs = sorted({ipaddress.ip_address(ip) for ip in ips})
    return tuple(str(n) for n in ipaddress.collapse_addresses(a for a in addrs if a.version == 4))


def rule_ports(ports: tuple[Port, ...], dst: PodInfo | None) -> tuple | None:
    """A rule's ports in ACL terms; ``dst``: the pod named ports resolve
    against (ingress), None to keep them by name (egress: per peer pod).
    () every port of every protocol; None: the rule admits nothing here."""
    if not ports:
        return ()
    out = set()
    for pt in ports:
        proto = PROTO[pt.protocol]
        if pt.name:
            if dst is None:
                out.add((proto, 0, 0, pt.name))
                continue
            n = dst.named_port(pt.name, pt.protocol)
            if n is None:
                continue
            lo = hi = n
        elif pt.port is None:
            lo, hi = ALL_PORTS
        else:
            lo, hi = pt.port, pt.end or pt.port
        if proto == SCTP and (lo, hi) != ALL_PORTS:
            continue  # the ACL plugin sees SCTP ports as 0: fail closed, never open
        out.add((proto, lo, hi, ""))
    return tuple(sorted(out)) or None


class AclPolicyRenderer:
    """Compiled policies to ACL values (see the module docstring).

    ``node_ips``: called at each render, the node's own addresses (traffic
    from them into isolated pods is always admitted). State kept between
    calls -- the policies rendered here, each peer's pods, which local pod
    uses which shared ACL -- is rebuilt from scratch after :meth:`reset`.
    """

    def __init__(self, node_ips: Callable[[], Iterable[str]] | None = None,
                 memif: Callable[[str], bool] | None = None) -> None:
        self._node_ips = node_ips or (lambda: ())
        # whether the local pod of this address has a memif: its lists go on
        # both interfaces, so the memif is no way around the pod's policies
        self._memif = memif or (lambda ip: False)
        self.reset()

    def reset(self) -> None:
        self._base: tuple[str, ...] | None = None
        self._policies: dict[str, CompiledPolicy] = {}  # rendered here
        self._idents: dict[str, set[str]] = {}  # peer ident -> policies here with it
        self._peers: dict[str, Peer] = {}  # peer ident -> its latest compiled Peer
        self._members: dict[str, frozenset[str]] = {}  # pod peer ident -> pod refs
        self._specs: dict[str, Spec] = {}  # shared ACL name -> what it holds
        self._users: Counter = Counter()  # shared ACL name -> local pod sides using it
        self._by_ident: dict[str, set[str]] = {}  # peer ident -> shared ACLs of it
        self._content: dict[str, tuple[AclRule, ...]] = {}
        # local pod -> (its interfaces, ingress list, egress list)
        self._pods: dict[str, tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]] = {}
        self._unions: set[str] = set()  # local pods past MAX_LIST

    # ------------------------------------------------------------ render
    def render(self, delta: PolicyDelta, pods: Mapping[str, PodInfo]) -> tuple[Partitions, Patches]:
        if delta.full:
            self.reset()
        parts: Partitions = {}
        base = self._render_base(delta.full)
        if base is not None:
            parts[BASE] = base
        dirty: set[str] = set()  # peer idents whose ACLs must be recomputed
        for ref in sorted(delta.policies):
            cp = delta.policies[ref]
            here = cp is not None and ref in delta.here
            self._set_policy(ref, cp if here else None, dirty)
            parts[f"pol/{ref}"] = self._anchors(cp) if here else {}
        compiled = set(dirty)
        for ident, pod, joined in delta.moves:
            m = self._members.get(ident)
            if m is None or ident in compiled:
                continue  # no policy here has it / its compile is the truth already
            new = m | {pod.ref} if joined else m - {pod.ref}
            if new != m:
                self._members[ident] = new
                dirty.add(ident)
        fresh: set[str] = set()
        stale: set[str] = set()
        for ref in sorted(delta.dispatch):
            pod, ingress, egress = delta.dispatch[ref]
            self._set_pod(ref, pod, ingress, egress, fresh, stale)
        changed = self._contents(fresh, stale, dirty, pods, parts)
        for ref in sorted(delta.dispatch):
            parts[f"polpod/{ref}"] = self._pod_part(ref)
        if base is not None:
            changed.add(NODE)
        for ref in sorted(self._unions - set(delta.dispatch)):
            _, ing, eg = self._pods[ref]
            if changed.intersection(ing + eg):
                parts[f"polpod/{ref}"] = self._pod_part(ref)
        return parts, {}

    def _render_base(self, force: bool) -> dict | None:
        ips = []
        for ip in self._node_ips() or ():
            try:
                a = ipaddress.ip_address(str(ip))
            except ValueError:
                continue
            if a.version == 4:
                ips.append(str(a))
        key = tuple(sorted(set(ips)))
        if not force and key == self._base:
            return None
        self._base = key
        return {acl_key(NODE): Acl(NODE, tuple(AclRule(src=f"{ip}/32") for ip in key)),
                acl_key(ANY): Acl(ANY, (AclRule(),))}

    @staticmethod
    def _anchors(cp: CompiledPolicy) -> dict:
        names = [anchor_name(cp.ref, d) for d in ("ingress", "egress") if d.capitalize() in cp.types]
        return {acl_key(n): Acl(n) for n in names}

    # ------------------------------------------------------------ policies and peers
    def _set_policy(self, ref: str, cp: CompiledPolicy | None, dirty: set[str]) -> None:
        """Install (None: drop) a policy rendered here. A fresh compile is the
        truth about its peers' pods; every ACL of its peers is recomputed
        (egress named ports depend on the peer pods' ports, not only who they are)."""
        old = self._policies.pop(ref, None)
        old_ids = {pe.ident for r in old.rules for pe in r.peers or ()} if old else set()
        new_ids: set[str] = set()
        if cp is not None:
            self._policies[ref] = cp
            for r in cp.rules:
                if r.peers is None:
                    dirty.add("*")
                for pe in r.peers or ():
                    if not pe.ident:
                        raise ValueError(f"peer {pe.text!r} of {ref} has no ident")
                    new_ids.add(pe.ident)
                    self._peers[pe.ident] = pe
                    if pe.kind == "pods":
                        self._members[pe.ident] = pe.pods
                    dirty.add(pe.ident)
        for ident in new_ids:
            self._idents.setdefault(ident, set()).add(ref)
        for ident in old_ids - new_ids:
            users = self._idents.get(ident, set())
            users.discard(ref)
            if not users:
                # no policy here has it: its ACLs lose their last pod in this pass
                self._idents.pop(ident, None)
                self._peers.pop(ident, None)
                self._members.pop(ident, None)

    # ------------------------------------------------------------ local pods
    def _set_pod(self, ref: str, pod: PodInfo | None, ingress: tuple[str, ...],
                 egress: tuple[str, ...], fresh: set[str], stale: set[str]) -> None:
        old = self._pods.pop(ref, None)
        self._unions.discard(ref)
        specs: dict[str, Spec] = {}
        if pod is not None and (ingress or egress):
            ing = ((NODE,) + self._side(pod, ingress, "ingress", specs)) if ingress else (ANY,)
            eg = self._side(pod, egress, "egress", specs) if egress else (ANY,)
            ifnames = (pod_ifname(pod.ip),) + ((memif_ifname(pod.ip),) if self._memif(pod.ip) else ())
            self._pods[ref] = (ifnames, ing, eg)
            if len(ing) + len(eg) > MAX_LIST:
                self._unions.add(ref)
        # count the new uses before dropping the old: a shared ACL both use stays
        for name, spec in specs.items():
            if not self._users[name]:
                self._specs[name] = spec
                self._by_ident.setdefault(spec[1], set()).add(name)
                fresh.add(name)
            self._users[name] += 1
        for name in self._shared(old):
            self._users[name] -= 1
            if not self._users[name]:
                stale.add(name)

    @staticmethod
    def _shared(entry) -> set[str]:
        return {n for n in entry[1] + entry[2] if n.startswith("pol-s")} if entry else set()

    def _side(self, pod: PodInfo, refs: tuple[str, ...], direction: str,
              specs: dict[str, Spec]) -> tuple[str, ...]:
        """The anchors of the isolating policies, then the shared ACLs of their rules."""
        anchors, shared = [], set()
        for ref in refs:
            anchors.append(anchor_name(ref, direction))
            cp = self._policies.get(ref)
            if cp is None or cp.error:
                continue  # an invalid policy isolates and admits nothing (fails closed)
            for r in cp.rules:
                if r.direction != direction:
                    continue
                ports = rule_ports(r.ports, pod if direction == "ingress" else None)
                if ports is None:
                    continue
                for pe in r.peers if r.peers is not None else (None,):
                    spec = (direction[0], pe.ident if pe is not None else "*", ports)
                    name = spec_name(spec)
                    specs[name] = spec
                    shared.add(name)
        return tuple(sorted(anchors)) + tuple(sorted(shared))

    def _pod_part(self, ref: str) -> dict:
        entry = self._pods.get(ref)
        if entry is None:
            return {}
        ifnames, ing, eg = entry
        if ref not in self._unions:
            return {acllist_key(ifname): AclList(ifname, ing, eg) for ifname in ifnames}
        # more ACLs than VPP takes on one interface: their rules, in order, as
        # one ACL per direction (first match stays first match)
        out: dict = {}
        sides = [(direction, tuple(dict.fromkeys(r for n in side for r in self._rules_of(n))))
                 for direction, side in (("ingress", ing), ("egress", eg))]
        for ifname in ifnames:
            names = []
            for direction, rules in sides:
                name = union_name(direction, ifname)
                out[acl_key(name)] = Acl(name, rules)
                names.append((name,))
            out[acllist_key(ifname)] = AclList(ifname, names[0], names[1])
        return out

    def _rules_of(self, name: str) -> tuple[AclRule, ...]:
        if name == NODE:
            return tuple(AclRule(src=f"{ip}/32") for ip in self._base or ())
        if name == ANY:
            return (AclRule(),)
        return self._content.get(name, ())  # anchors: none

    # ------------------------------------------------------------ shared ACLs
    def _contents(self, fresh: set[str], stale: set[str], dirty: set[str],
                  pods: Mapping[str, PodInfo], parts: Partitions) -> set[str]:
        """Render the shared ACLs that appeared or whose peer changed; remove
        those no local pod uses any more. Returns the names whose rules changed."""
        changed = set()
        todo = set(fresh)
        for ident in dirty:
            todo |= self._by_ident.get(ident, set())
        for name in sorted(todo):
            if not self._users[name]:
                continue
            rules = self.rules(self._specs[name], pods)
            if name in fresh or rules != self._content.get(name):
                self._content[name] = rules
                parts[f"polacl/{name}"] = {acl_key(name): Acl(name, rules)}
                changed.add(name)
        for name in sorted(stale):
            if self._users[name]:
                continue
            del self._users[name]
            spec = self._specs.pop(name)
            self._content.pop(name, None)
            names = self._by_ident.get(spec[1], set())
            names.discard(name)
            if not names:
                self._by_ident.pop(spec[1], None)
            parts[f"polacl/{name}"] = {}
        return changed

    def rules(self, spec: Spec, pods: Mapping[str, PodInfo]) -> tuple[AclRule, ...]:
        """The rules of a shared ACL: the peer's addresses times the ports
        (ingress: sources; egress: destinations), permit+reflect, sorted."""
        direction, ident, ports = spec
        peer = None if ident == "*" else self._peers.get(ident)
        if peer is None and ident != "*":
            return ()  # no policy here has this peer (cannot happen): admit nothing
        members = [pods[r] for r in sorted(self._members.get(ident, ())) if r in pods]
        if peer is None:
            nets: tuple[str, ...] = (ANY4,)
        elif peer.kind == "cidr":
            nets = cidr_prefixes(peer.cidr, peer.excepts)
        else:
            nets = _collapse(p.ip for p in members)
        out: set[AclRule] = set()

        def add(net: str, proto: int = 0, lo: int = 0, hi: int = 65535) -> None:
            if direction == "i":
                out.add(AclRule(src=net, proto=proto, dports=(lo, hi)))
            else:
                out.add(AclRule(dst=net, proto=proto, dports=(lo, hi)))
        for net in nets:
            if not ports:
                add(net)
            for proto, lo, hi, name in ports:
                if not name:
                    add(net, proto, lo, hi)
        named = [(proto, name) for proto, _, _, name in ports if name]
        if named:
            # egress by port name: resolved against each destination pod
            if peer is None:
                dsts = list(pods.values())
            elif peer.kind == "pods":
                dsts = members
            else:
                blocks = [ipaddress.ip_network(n) for n in nets]
                dsts = [p for p in pods.values()
                        if any(ipaddress.ip_address(p.ip) in b for b in blocks)]
            for p in dsts:
                for proto, name in named:
                    port = p.named_port(name, _PROTO_NAME[proto])
                    if port is not None and proto != SCTP:
                        add(f"{p.ip}/32", proto, port, port)
        return tuple(sorted(out))
