"""The rule compiler and the element encoder against everything the renderers write.

``agent.linux.nft.rules.compile_rule`` only has to know the rule text that
``svcrender`` and ``polrender`` produce: a form it does not compile goes to
libnftables (slower, but correct), a form it compiles that no renderer writes
is dead code. Here every kind of chain and element the two renderers produce
-- Services with and without endpoints, affinity, traffic policies, node
ports, hairpin, the lb chains; policies with pod peers, ipBlocks with except,
named ports, port ranges, both directions, an invalid policy, group chains,
dispatch elements -- is rendered through their public functions and must take
the netlink path, except the few forms deliberately left to libnftables,
which must take that one. No kernel: the netlink batch is built, not sent.
"""
from __future__ import annotations

import re

import pytest

from agent.builders.policies import PolicyModel, pod_info
from agent.builders.services import Endpoint, Frontend, ServicePort
from agent.linux import polrender, svcrender
from agent.linux.nft import wire
from agent.linux.nft.batch import NftBatch
from agent.linux.nft.descriptors import ChainDescriptor, ElementDescriptor, ElementsDescriptor
from agent.linux.nft.rules import compile_rule
from agent.linux.nft.values import TABLE, NftChain, NftElement, NftElements, NftSet
from agent.reconciler.plan import Operation, OpKind

# Rules of regular chains that libnftables installs, on purpose: the fixed
# Service chains, written once at start-up, where compiling fib and
# map-to-mark expressions would buy nothing.
LIBNFT_RULES = {
    "mark from a map": re.compile(r"^(fib daddr type local )?meta mark set .* map @svc-(fe|np) goto "),
    "fib (node ports)": re.compile(r"^fib daddr type local "),
    "affinity update with timeout": re.compile(r"^meta mark @svc-aff-\d+ update @svc-aff \{"),
}
# Elements that libnftables installs, on purpose: interval sets (ipBlocks).
LIBNFT_SETS = {"type ipv4_addr; flags interval;"}


# --------------------------------------------------------------------------- Services
CIP = Frontend("10.96.0.10", 80, False, "cluster-ip")
NP = Frontend("", 30080, True, "node-port")
EIP = Frontend("203.0.113.7", 80, True, "external-ip")
LB = Frontend("198.51.100.1", 80, True, "load-balancer")
EPS = (Endpoint("10.1.1.2", 8080, "node1", True, "default/web-a"),
       Endpoint("10.1.2.2", 8080, "node2", False, "default/web-b"),
       Endpoint("10.1.3.2", 8080, "node3", False, "default/web-c"))
SERVICE_PORTS = [
    ServicePort("default/none", "http", "TCP", (CIP, NP, EIP), ()),
    ServicePort("default/web", "http", "TCP", (CIP, NP, EIP, LB), EPS),
    ServicePort("default/dns", "", "UDP", (CIP,), EPS[:1]),
    ServicePort("default/sticky", "s", "SCTP", (CIP, NP), EPS, affinity_timeout=10800),
    ServicePort("default/ext-local", "http", "TCP", (CIP, NP, LB), EPS, external_local=True),
    ServicePort("default/int-local", "http", "TCP", (CIP, NP), EPS, internal_local=True),
    ServicePort("default/both-local", "http", "TCP", (CIP, NP), EPS[1:], 60, True, True),
]


def service_values() -> list[object]:
    out = list(svcrender.render_base("10.1.1.1", "contiv-vx").values())
    gid = 0
    sizes, timeouts = set(), set()
    for sp in SERVICE_PORTS:
        groups = svcrender.groups_needed(sp)
        gids = {g: (gid := gid + 1) for g in groups}
        out += svcrender.render_service_port(sp, gids, groups).values()
        n, t = svcrender.lb_inputs(sp, groups)
        sizes |= n
        timeouts |= t
    assert sizes and timeouts, "the ports above need lb chains and affinity"
    out += svcrender.render_lb(sizes, timeouts).values()
    out += svcrender.render_lb(set(), set()).values()  # no Service yet: empty affinity chain
    out += svcrender.render_hairpin("10.1.1.2").values()
    return out


# --------------------------------------------------------------------------- policies
def _pod(ns, name, ip, labels, node="node1", ports=()):
    return pod_info({"metadata": {"namespace": ns, "name": name, "labels": labels},
                     "spec": {"nodeName": node, "containers": [{"name": "c", "ports": [
                         {"name": n, "protocol": p, "containerPort": c} for n, p, c in ports]}]},
                     "status": {"podIP": ip}})


PODS = [_pod("x", "web", "10.1.1.2", {"app": "web"}, ports=[("http", "TCP", 8080)]),
        _pod("x", "client", "10.1.1.3", {"app": "client"}),
        _pod("y", "mon", "10.1.2.2", {"app": "mon"}, "node2", [("metrics", "TCP", 9100)])]
NAMESPACES = {"x": {"team": "a"}, "y": {"team": "b"}}


def _policy(name, spec, ns="x"):
    return {"metadata": {"namespace": ns, "name": name}, "spec": spec}


POLICIES = [
    _policy("web", {
        "podSelector": {"matchLabels": {"app": "web"}}, "policyTypes": ["Ingress", "Egress"],
        "ingress": [
            {"from": [{"podSelector": {"matchLabels": {"app": "client"}}},
                      {"namespaceSelector": {"matchLabels": {"team": "b"}}, "podSelector": {}},
                      {"ipBlock": {"cidr": "192.168.0.0/16", "except": ["192.168.1.0/24"]}}],
             "ports": [{"protocol": "TCP", "port": 80}, {"protocol": "UDP", "port": 53},
                       {"protocol": "TCP", "port": 8000, "endPort": 8080}, {"protocol": "SCTP"},
                       {"protocol": "TCP", "port": "http"}]},
            {"ports": [{"port": 443}]},  # every peer, one port
            {}],  # every peer, every port
        "egress": [
            {"to": [{"ipBlock": {"cidr": "10.0.0.0/8"}}]},
            {"to": [{"namespaceSelector": {}}], "ports": [{"protocol": "TCP", "port": "metrics"}]},
            {"ports": [{"protocol": "TCP", "port": "metrics"}]}]}),  # named port, every peer
    _policy("deny-egress", {"podSelector": {}, "policyTypes": ["Egress"]}),
    _policy("broken", {"podSelector": {"matchLabels": {"app": "web"}},  # except outside cidr
                       "ingress": [{"from": [{"ipBlock": {"cidr": "10.0.0.0/8",
                                                          "except": ["192.168.0.0/16"]}}]}]}),
]


def policy_values() -> list[object]:
    model = PolicyModel(PODS, NAMESPACES, POLICIES)
    assert any(cp.error for cp in model.policies), "one policy must be invalid (fails closed)"
    out = list(polrender.render_base().values())
    groups = set()
    for cp in model.policies:
        out += polrender.render_policy(cp, model.pods).values()
        for r in cp.rules:
            for pe in r.peers or ():
                out += polrender.render_peer_set(*polrender.peer_set(pe, model.pods)).values()
    for pod in model.pods.values():
        if pod.node != "node1":
            continue
        refs = {d: tuple(c.ref for c in model.selecting(pod, d)) for d in ("ingress", "egress")}
        out += polrender.render_dispatch(pod, refs["ingress"], refs["egress"]).values()
        groups |= {(d, pols) for d, pols in refs.items() if pols}
    out += polrender.render_groups(groups).values()
    _, peer_el = polrender.peer_element("pp-0123456789abcdef", "10.1.1.9")
    return out + [NftSet(peer_el.set, "type ipv4_addr;"), peer_el]


RENDERED = service_values() + policy_values()
CHAINS = [v for v in RENDERED if isinstance(v, NftChain)]
REGULAR = [c for c in CHAINS if not c.hook]
RULES = [r for c in REGULAR for r in c.rendered_rules()]


def _libnft_form(rule: str) -> str | None:
    return next((why for why, rx in LIBNFT_RULES.items() if rx.search(rule)), None)


def _group() -> NftBatch:
    """A batch group that knows every rendered set's key layout (no kernel)."""
    g = NftBatch(None)
    for v in RENDERED:
        if isinstance(v, NftSet):
            g.learn_set(v)
    return g


# --------------------------------------------------------------------------- rules
def test_the_inputs_cover_every_kind_of_rule_the_renderers_write():
    text = "\n".join(RULES)
    for form in ("ip saddr @pp-", "ip saddr @pc-", "ip daddr @pp-", "ip daddr @pc-",
                 "ip daddr . meta l4proto . th dport @pn-", "th dport 8000-8080", "meta l4proto sctp accept",
                 "meta l4proto udp th dport 53", "jump pin-", "jump peg-", "reject with icmp type admin-prohibited",
                 "dnat ip addr . port to meta mark . numgen random mod 3 map @svc-be",
                 "dnat ip addr . port to ip saddr . meta mark map @svc-aff", "vmap @svc-lbmap",
                 "reject with tcp reset", "@svc-noep goto reject-chain"):
        assert form in text, form
    assert "\naccept comment " in "\n" + text  # a rule for every peer and port
    assert any(not c.rules and "INVALID" in c.comment for c in REGULAR)
    assert all(any(rx.search(r) for r in RULES) for rx in LIBNFT_RULES.values()), \
        "a form listed as left to libnftables that no renderer writes any more"


@pytest.mark.parametrize("rule", RULES)
def test_every_rule_of_a_regular_chain_compiles_or_is_left_to_libnftables(rule):
    if _libnft_form(rule):
        with pytest.raises(wire.Unsupported):
            compile_rule(rule)
    else:
        exprs, comment = compile_rule(rule)
        assert exprs
        assert comment == (m.group(1) if (m := re.search(r'comment "([^"]*)"$', rule)) else "")


@pytest.mark.parametrize("chain", CHAINS, ids=[c.name for c in CHAINS])
def test_every_chain_takes_the_path_meant_for_it(chain):
    desc = ChainDescriptor(None, _group())
    op = Operation(OpKind.CREATE, f"nft/chain/{chain.name}", chain, "test")
    b = wire.Batch(TABLE)
    want_wire = not chain.hook and not any(_libnft_form(r) for r in chain.rendered_rules())
    assert desc.wire_ops(op, b, desc.batch_group) is want_wire
    if want_wire:  # the chain, its flush, and every rule
        assert len(b.messages()) == 2 + len(chain.rules)


# --------------------------------------------------------------------------- elements
ELEMENTS = [v for v in RENDERED if isinstance(v, (NftElement, NftElements))]


@pytest.mark.parametrize("value", ELEMENTS, ids=[f"{v.set}:{getattr(v, 'key', '*')}" for v in ELEMENTS])
def test_every_element_takes_the_path_meant_for_it(value):
    g = _group()
    specs = {v.name: v.spec for v in RENDERED if isinstance(v, NftSet)}
    desc = (ElementsDescriptor if isinstance(value, NftElements) else ElementDescriptor)(None, g)
    op = Operation(OpKind.CREATE, "nft/element/test", value, "test")
    want_wire = specs[value.set] not in LIBNFT_SETS
    assert desc.wire_capable(op, g) is want_wire
    assert desc.wire_ops(op, wire.Batch(TABLE), g) is want_wire
