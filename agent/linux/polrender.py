"""Render compiled NetworkPolicies into the ``ip contiv`` nftables table (pure).

Per-packet cost does not grow with the number of policies or pods:

  forward, priority 0   pol-egress:  established/related accept;
                                     ip saddr vmap @egress-pods   (local isolated pods only)
  input,   priority 0   pol-egress-input: the same for pod -> node traffic
  forward, priority 10  pol-ingress: established/related accept;
                                     ip daddr vmap @ingress-pods
  @*-pods element: pod IP -> goto grp-*   (one chain per distinct set of policies)
  grp-*:   jump pin-<policy> ... ; reject (admin-prohibited) "default deny ..."
  pin-*/peg-*: one rule per (peer, port) of the policy's rules, ending in accept;
           peers are named sets (pod IPs; ipBlock as interval sets), so a pod
           label change is set-element updates, not rule rewrites; named ports
           are sets of (pod IP . protocol . port).
  pp-*/pc-*: peer sets, named after what the peer selects (``Peer.ident``) and
           shared by every policy with that peer: a label change that moves a
           pod between the peers of 300 policies written with 10 distinct
           selectors is a handful of elements, not 300.

A packet of a new connection costs two hash lookups plus the rules of the
policies that select *its* pods; policies selecting other pods cost nothing.
An ``accept`` ends only its base chain: egress and ingress are separate base
chains so that both are checked. Traffic the node itself sends (kubelet
probes) uses the output hook and is not filtered.
"""
from __future__ import annotations

import functools
import hashlib
import ipaddress

from agent.builders.policies import CompiledPolicy, Peer, PodInfo, Port, Rule
from agent.linux.nft.values import NftChain, NftElement, NftSet, chain_key, element_key, set_key

INGRESS_PODS = "ingress-pods"
EGRESS_PODS = "egress-pods"
_DENY = "reject with icmp type admin-prohibited"


def _h(text: str, n: int = 8) -> str:
    return hashlib.sha1(text.encode()).hexdigest()[:n]


def render_base() -> dict[str, object]:
    out: dict[str, object] = {}
    for name in (INGRESS_PODS, EGRESS_PODS):
        out[set_key(name)] = NftSet(name, "type ipv4_addr : verdict;")

    def base(name, hook, vmap_rule, ref):
        out[chain_key(name)] = NftChain(name, ("ct state established,related accept",
                                               "ct state invalid drop", vmap_rule),
                                        hook, f"contiv:{name}", (set_key(ref),))
    base("pol-egress", "type filter hook forward priority 0; policy accept;",
         f"ip saddr vmap @{EGRESS_PODS}", EGRESS_PODS)
    base("pol-egress-input", "type filter hook input priority 0; policy accept;",
         f"ip saddr vmap @{EGRESS_PODS}", EGRESS_PODS)
    base("pol-ingress", "type filter hook forward priority 10; policy accept;",
         f"ip daddr vmap @{INGRESS_PODS}", INGRESS_PODS)
    return out


def policy_chain(ref: str, direction: str) -> str:
    return f"{'pin' if direction == 'ingress' else 'peg'}-{_h(ref)}-{ref}"


@functools.lru_cache(maxsize=4096)  # policies repeat ipBlocks; ipaddress is slow
def _cidr_ranges(cidr: str, excepts: tuple[str, ...]) -> tuple[str, ...]:
    nets = [ipaddress.ip_network(cidr)]
    for e in excepts:
        en = ipaddress.ip_network(e)
        nxt = []
        for n in nets:
            if en.subnet_of(n):
                nxt.extend(n.address_exclude(en))
            elif not n.subnet_of(en):  # excepts may overlap, in any order
                nxt.append(n)
        nets = nxt
    return tuple(sorted(str(n) for n in ipaddress.collapse_addresses(nets)))


def _port_match(pt: Port) -> str:
    proto = pt.protocol.lower()
    if pt.port is None:
        return f"meta l4proto {proto}"
    if pt.end:
        return f"meta l4proto {proto} th dport {pt.port}-{pt.end}"
    return f"meta l4proto {proto} th dport {pt.port}"


def render_policy(cp: CompiledPolicy, pods: dict[str, PodInfo]) -> dict[str, object]:
    """Values of one policy: its chains and named-port sets (``pods``: every
    known pod). The chains refer to the peers' shared sets (``peer_set``),
    which the caller renders once for all the policies using them."""
    out: dict[str, object] = {}
    pid = _h(cp.ref)
    for direction in ("ingress", "egress"):
        if direction.capitalize() not in cp.types:
            continue
        addr = "saddr" if direction == "ingress" else "daddr"
        verdict = "accept"
        rules: list[str] = []
        refs: list[str] = []

        for r in (x for x in cp.rules if x.direction == direction):
            note = f'comment "{cp.ref} {direction}[{r.index}]"'
            peer_matches = []
            for pe in r.peers or ():
                name = peer_set_name(pe)
                refs.append(set_key(name))
                peer_matches.append(f"ip {addr} @{name}")
            if r.peers is None:
                peer_matches = [""]
            named = [p for p in r.ports if p.name]
            plain = [p for p in r.ports if not p.name]
            port_matches = [_port_match(p) for p in plain] if r.ports else [""]
            for pm in peer_matches:
                for po in (port_matches if plain or not r.ports else []):
                    rules.append(" ".join(filter(None, [pm, po, verdict, note])))
            for k, p in enumerate(named):
                # the port number depends on the destination pod: (dst ip . proto . port)
                dsts = [pods[ref] for ref in sorted(cp.selected)] if direction == "ingress" else \
                    _peer_pods(r, pods)
                elems = sorted({f"{d.ip} . {p.protocol.lower()} . {d.named_port(p.name, p.protocol)}"
                                for d in dsts if d.named_port(p.name, p.protocol)})
                sname = f"pn-{pid}-{direction[0]}{r.index}-{k}"
                out.update(render_peer_set(sname, "type ipv4_addr . inet_proto . inet_service;", elems))
                refs.append(set_key(sname))
                for pm in peer_matches:
                    rules.append(" ".join(filter(None, [
                        pm, f"ip daddr . meta l4proto . th dport @{sname}", verdict, note])))
        name = policy_chain(cp.ref, direction)
        comment = f"contiv:netpol:{cp.ref}:{direction}" + (" INVALID (fails closed)" if cp.error else "")
        out[chain_key(name)] = NftChain(name, tuple(rules), "", comment, tuple(dict.fromkeys(refs)))
    return out


def _peer_pods(r: Rule, pods: dict[str, PodInfo]) -> list[PodInfo]:
    if r.peers is None:
        return list(pods.values())
    refs = set()
    for pe in r.peers:
        if pe.kind == "pods":
            refs |= pe.pods
    return [pods[x] for x in sorted(refs) if x in pods]


def peer_set_name(pe: Peer) -> str:
    """The shared set of a peer: pod IPs (``pp-``) or an ipBlock (``pc-``)."""
    if not pe.ident:
        raise ValueError(f"peer {pe.text!r} has no ident: it cannot be given a shared set")
    return f"{'pc' if pe.kind == 'cidr' else 'pp'}-{_h(pe.ident, 16)}"


def peer_set(pe: Peer, pods: dict[str, PodInfo]) -> tuple[str, str, frozenset[str]]:
    """(name, nft set spec, elements) of a peer's shared set."""
    if pe.kind == "cidr":
        return peer_set_name(pe), "type ipv4_addr; flags interval;", \
            frozenset(_cidr_ranges(pe.cidr, pe.excepts))
    return peer_set_name(pe), "type ipv4_addr;", frozenset(pods[x].ip for x in pe.pods if x in pods)


def render_peer_set(name: str, spec: str, elements: frozenset[str]) -> dict[str, object]:
    out: dict[str, object] = {set_key(name): NftSet(name, spec)}
    for e in sorted(elements):
        out[element_key(name, e)] = NftElement(name, e)
    return out


def group_chain(direction: str, policies: tuple[str, ...]) -> tuple[str, NftChain]:
    key = ",".join(policies)
    name = f"grp-{direction[0]}-{_h(key)}"
    rules = tuple(f"jump {policy_chain(p, direction)}" for p in policies) + (
        f'{_DENY} comment "default deny {direction}: isolated by {key[:90]}"',)
    return name, NftChain(name, rules, "", f"contiv:netpol-group:{direction}:{key[:80]}",
                          tuple(chain_key(policy_chain(p, direction)) for p in policies))


def render_dispatch(pod: PodInfo, ingress: tuple[str, ...], egress: tuple[str, ...]) -> dict[str, object]:
    """The local pod's dispatch elements (and the group chains they need)."""
    out: dict[str, object] = {}
    for direction, pols, m in (("ingress", ingress, INGRESS_PODS), ("egress", egress, EGRESS_PODS)):
        if not pols:
            continue
        name, chain = group_chain(direction, pols)
        out[element_key(m, pod.ip)] = NftElement(m, pod.ip, f"goto {name}", f"{pod.ref} {direction}",
                                                 (chain_key(name),))
    return out


def render_groups(groups: set[tuple[str, tuple[str, ...]]]) -> dict[str, object]:
    out: dict[str, object] = {}
    for direction, pols in groups:
        name, chain = group_chain(direction, pols)
        out[chain_key(name)] = chain
    return out


def peer_element(set_name: str, ip: str) -> tuple[str, NftElement]:
    """The element a pod has in a peer set (what a label change adds or removes)."""
    return element_key(set_name, ip), NftElement(set_name, ip)
