"""Services -> nftables values (``agent.linux.svcrender``), without a kernel.

The renderer puts every Service into map elements behind a few fixed rules
(see its module docstring): a frontend maps to a *group mark* (group id,
endpoint count, affinity generation), ``svc-be`` maps ``mark . bucket`` to an
endpoint, ``lb-<n>`` chains pick a bucket, ``svc-lbmap`` sends a group of 0
endpoints to ``drop``, ``svc-ext`` marks external traffic for SNAT when it
leaves for another node, ``svc-hairpin`` SNATs a pod reaching itself,
``svc-aff-<T>`` turns on session affinity with timeout T.

Checked here: where each kind of frontend goes under each traffic policy,
that every endpoint is reachable exactly once and uniformly, rejection
without endpoints, the affinity and hairpin pieces, that one endpoint change
is one element, and that the dependency graph the reconciler derives from
``refs`` is closed and complete (every key a value names exists, every chain
or set a rule uses is named in its ``refs``). The rendered text meets a real
kernel in tests/e2e/test_services.py.
"""
from __future__ import annotations

import re

import pytest

from agent.builders.services import Endpoint, Frontend, ServicePort
from agent.linux import svcrender as R
from agent.linux.nft.descriptors import ChainDescriptor, SetDescriptor
from agent.linux.nft.values import (TABLE_KEY, NftChain, NftElement, NftElements, NftSet,
                                    chain_key, element_key, set_key)

CIP = Frontend("10.96.0.10", 80, False, "cluster-ip")
NP = Frontend("", 30080, True, "node-port")
EIP = Frontend("203.0.113.7", 80, True, "external-ip")
LB = Frontend("198.51.100.1", 80, True, "load-balancer")
LOCAL = (Endpoint("10.1.1.2", 8080, "node1", True, "default/web-a"),
         Endpoint("10.1.1.3", 8080, "node1", True, "default/web-c"))
REMOTE = (Endpoint("10.1.2.2", 8080, "node2", False, "default/web-b"),
          Endpoint("10.1.3.2", 8080, "node3", False, "default/web-d"))
GW = "10.1.1.1"
BASE = R.render_base(GW, "vxlan-contiv")
GIDS = {"c": 11, "l": 12, "x": 13}


def port(fronts=(CIP,), eps=LOCAL[:1] + REMOTE[:1], *, proto="TCP", name="http", aff=0,
         ext_local=False, int_local=False, service="default/web") -> ServicePort:
    return ServicePort(service, name, proto, tuple(fronts), tuple(eps), aff, ext_local, int_local)


def render_grouped(sp: ServicePort, gids=None) -> dict:
    return R.render_service_port(sp, gids or {g: GIDS[g] for g in R.groups_needed(sp)})


def flatten(out: dict) -> dict:
    """A port's NftElements values as the individual elements they stand for
    (keyed as single elements), so element-level properties read naturally."""
    flat = {}
    for k, v in out.items():
        if isinstance(v, NftElements):
            for key, val, c in v.items:
                flat[element_key(v.set, key)] = NftElement(v.set, key, val, c, v.refs)
        else:
            flat[k] = v
    return flat


def render(sp: ServicePort, gids=None) -> dict:
    return flatten(render_grouped(sp, gids))


def elements(out: dict, set_name: str) -> dict[str, NftElement]:
    """Every element of a set, whether rendered alone or in a port's NftElements."""
    out_ = {v.key: v for v in out.values() if isinstance(v, NftElement) and v.set == set_name}
    for v in out.values():
        if isinstance(v, NftElements) and v.set == set_name:
            for k, val, c in v.items:
                out_[k] = NftElement(v.set, k, val, c)
    return out_


def backends(out: dict, mark: int) -> list[str]:
    """The endpoints behind a group mark, in bucket order."""
    be = elements(out, R.BE)
    n = mark & R.MAX_ENDPOINTS
    assert {k for k in be if k.startswith(f"{mark} . ")} == {f"{mark} . {k}" for k in range(n)}
    return [be[f"{mark} . {k}"].value for k in range(n)]


def ep_text(eps) -> list[str]:
    return [f"{e.ip} . {e.port}" for e in eps]


def gid_of(mark: int) -> int:
    return (mark >> R.N_BITS) & R.MAX_GID


# --------------------------------------------------------------------------- marks
@pytest.mark.parametrize("gid,n,gen", [(1, 1, 0), (R.MAX_GID, R.MAX_ENDPOINTS, 15), (12345, 5, 7),
                                       (1, 0, 0)])
def test_group_mark_layout(gid, n, gen):
    m = R.group_mark(gid, n, gen)
    assert 0 <= m < 1 << 32
    assert (m & R.MAX_ENDPOINTS, gid_of(m), m >> 28) == (n, gid, gen)


def test_group_marks_are_distinct_per_group():
    marks = {R.group_mark(g, n) for g in (1, 2, 3, R.MAX_GID) for n in (0, 1, 2, R.MAX_ENDPOINTS)}
    assert len(marks) == 16


# --------------------------------------------------------------------------- frontends, backends
@pytest.mark.parametrize("proto", ["TCP", "UDP", "SCTP"])
@pytest.mark.parametrize("n", [1, 2, 3, 5])
def test_endpoints_put_frontend_in_svc_fe_and_every_endpoint_in_svc_be(proto, n):
    eps = tuple(Endpoint(f"10.1.2.{i + 2}", 8080 + i, "node2", False, f"default/p{i}") for i in range(n))
    out = render(port(eps=eps, proto=proto))
    p = proto.lower()
    (fe,) = elements(out, R.FE).values()
    assert fe.key == f"10.96.0.10 . {p} . 80"
    assert out[element_key(R.FE, fe.key)] is fe
    mark = int(fe.value)
    assert mark == R.group_mark(GIDS["c"], n)
    # every endpoint exactly once, one bucket each: lb-n picks a bucket uniformly
    assert sorted(backends(out, mark)) == sorted(ep_text(eps))
    lb = R.render_lb({n}, set())
    assert lb[chain_key(f"lb-{n}")].rules == (f"dnat ip addr . port to meta mark . numgen random mod {n} "
                                              f"map @{R.BE}",)
    assert lb[element_key(R.LBMAP, str(n))].value == f"goto lb-{n}"
    # nothing else: no rejection, no external or affinity marks
    assert {v.set for v in out.values()} == {R.FE, R.BE}
    assert R.lb_inputs(port(eps=eps, proto=proto)) == ({n}, set())


@pytest.mark.parametrize("fronts,want", [
    ((CIP,), {(R.NOEP_IPS, "10.96.0.10 . tcp . 80")}),
    ((CIP, NP), {(R.NOEP_IPS, "10.96.0.10 . tcp . 80"), (R.NOEP_NODEPORTS, "tcp . 30080")}),
    ((CIP, NP, EIP, LB), {(R.NOEP_IPS, "10.96.0.10 . tcp . 80"), (R.NOEP_NODEPORTS, "tcp . 30080"),
                          (R.NOEP_IPS, "203.0.113.7 . tcp . 80"), (R.NOEP_IPS, "198.51.100.1 . tcp . 80")}),
])
@pytest.mark.parametrize("policies", [(False, False), (True, True)])
def test_no_endpoints_rejects(fronts, want, policies):
    sp = port(fronts, (), ext_local=policies[0], int_local=policies[1])
    out = render(sp, {})
    assert R.groups_needed(sp) == {}
    assert {(v.set, v.key) for v in out.values()} == want
    assert all(isinstance(v, NftElement) and v.value == "" for v in out.values())
    assert R.lb_inputs(sp) == (set(), set())
    # the filter hooks send those to the reject chain (TCP reset / ICMP port unreachable)
    assert BASE[chain_key("endpoints-check")].rules == (
        f"ip daddr . meta l4proto . th dport @{R.NOEP_IPS} goto {R.REJECT}",)
    assert BASE[chain_key("nodeport-check")].rules == (
        f"fib daddr type local meta l4proto . th dport @{R.NOEP_NODEPORTS} goto {R.REJECT}",)
    assert BASE[chain_key(R.REJECT)].rules == ("meta l4proto tcp reject with tcp reset", "reject")


# --------------------------------------------------------------------------- traffic policies
# Which endpoint group each kind of frontend uses, and who is in it:
# c = every endpoint (cluster IP), l = local ones only, x = every endpoint,
# marked for SNAT when leaving for another node (external traffic).
POLICY_CASES = [
    # id,                        int_local, ext_local, endpoints,      cluster-ip, external
    ("cluster",                  False, False, LOCAL + REMOTE, "c", "x"),
    ("cluster-remote-only",      False, False, REMOTE,         "c", "x"),
    ("external-local",           False, True,  LOCAL + REMOTE, "c", "l"),
    ("external-local-none-here", False, True,  REMOTE,         "c", "l"),
    ("internal-local",           True,  False, LOCAL + REMOTE, "l", "x"),
    ("internal-local-none-here", True,  False, REMOTE,         "l", "x"),
    ("both-local",               True,  True,  LOCAL + REMOTE, "l", "l"),
    ("both-local-none-here",     True,  True,  REMOTE,         "l", "l"),
]
WHO = {"c": lambda eps: eps, "x": lambda eps: eps, "l": lambda eps: tuple(e for e in eps if e.local)}


@pytest.mark.parametrize("int_local,ext_local,eps,want_cluster,want_external",
                         [c[1:] for c in POLICY_CASES], ids=[c[0] for c in POLICY_CASES])
def test_traffic_policies(int_local, ext_local, eps, want_cluster, want_external):
    sp = port((CIP, NP, EIP, LB), eps, ext_local=ext_local, int_local=int_local)
    assert set(R.groups_needed(sp)) == {want_cluster, want_external}
    out = render(sp)
    fe, np_ = elements(out, R.FE), elements(out, R.NP)
    assert set(fe) == {"10.96.0.10 . tcp . 80", "203.0.113.7 . tcp . 80", "198.51.100.1 . tcp . 80"}
    assert set(np_) == {"tcp . 30080"}
    cluster = int(fe["10.96.0.10 . tcp . 80"].value)
    external = {int(fe["203.0.113.7 . tcp . 80"].value), int(fe["198.51.100.1 . tcp . 80"].value),
                int(np_["tcp . 30080"].value)}
    assert len(external) == 1  # every external frontend alike
    (external,) = external
    for mark, g in ((cluster, want_cluster), (external, want_external)):
        members = WHO[g](eps)
        assert mark == R.group_mark(GIDS[g], len(members))
        assert sorted(backends(out, mark)) == sorted(ep_text(members))
    # only external traffic of a Cluster policy is marked for SNAT: a Local
    # policy keeps the client's address
    assert set(elements(out, R.EXT)) == ({str(external)} if want_external == "x" else set())
    # a Local group with nobody in it has count 0: dispatch drops it
    empty = [m for m in (cluster, external) if m & R.MAX_ENDPOINTS == 0]
    assert bool(empty) == any(g == "l" and not WHO["l"](eps) for g in (want_cluster, want_external))
    lb = R.render_lb(R.lb_inputs(sp)[0], set())
    assert lb[element_key(R.LBMAP, "0")].value == "drop"
    assert lb[chain_key(R.DISPATCH)].rules[-1] == f"meta mark & {R.MAX_ENDPOINTS:#x} vmap @{R.LBMAP}"


def test_external_local_does_not_change_cluster_ip_traffic():
    a = render(port((CIP,), LOCAL + REMOTE))
    b = render(port((CIP,), LOCAL + REMOTE, ext_local=True))
    assert a == b


def test_external_snat_only_towards_the_overlay():
    post = BASE[chain_key("nat-postrouting")]
    assert post.hook.startswith("type nat hook postrouting")
    assert f'meta mark @{R.EXT} oifname "vxlan-contiv" snat ip to {GW}' in post.rules


# --------------------------------------------------------------------------- hairpin
def test_hairpin_snats_a_pod_reaching_itself_to_the_gateway():
    assert R.render_hairpin("10.1.1.2") == {
        element_key(R.HAIRPIN, "10.1.1.2 . 10.1.1.2"): NftElement(R.HAIRPIN, "10.1.1.2 . 10.1.1.2")}
    post = BASE[chain_key("nat-postrouting")]
    assert f"ip saddr . ip daddr @{R.HAIRPIN} snat ip to {GW}" in post.rules
    assert set_key(R.HAIRPIN) in post.refs


# --------------------------------------------------------------------------- affinity
@pytest.mark.parametrize("timeout", [1, 60, 10800, 86400])
@pytest.mark.parametrize("fronts", [(CIP,), (CIP, NP)], ids=["cluster", "nodeport"])
def test_session_affinity(timeout, fronts):
    sp = port(fronts, LOCAL + REMOTE, aff=timeout)
    out = render(sp)
    marks = {int(v.value) for v in out.values() if v.set in (R.FE, R.NP)}
    # every group of the Service is in the affinity set of its timeout
    assert set(elements(out, f"svc-aff-{timeout}")) == {str(m) for m in marks}
    assert R.lb_inputs(sp)[1] == {timeout}
    lb = R.render_lb({4}, {timeout})
    aff_set = lb[set_key(f"svc-aff-{timeout}")]
    assert aff_set.spec == "type mark;" and aff_set.static
    (rule,) = lb[chain_key(R.AFFINITY)].rules
    assert rule == (f"meta mark @svc-aff-{timeout} update @{R.AFF} {{ ip saddr . meta mark timeout "
                    f"{timeout}s : ip daddr . th dport }}")
    # a known client is sent back before load balancing
    assert lb[chain_key(R.DISPATCH)].rules[0] == f"dnat ip addr . port to ip saddr . meta mark map @{R.AFF}"
    aff = BASE[set_key(R.AFF)]
    assert aff.static is False and "flags dynamic,timeout;" in aff.spec


def test_affinity_generation_changes_with_the_endpoints():
    """Changed endpoints start fresh affinities (a remembered client . mark
    would otherwise point at a gone endpoint), unchanged ones keep them."""
    gens = set()
    for eps in (LOCAL + REMOTE, LOCAL + REMOTE[:1], REMOTE, LOCAL[:1] + REMOTE):
        out = render(port((CIP,), eps, aff=60))
        (fe,) = elements(out, R.FE).values()
        gens.add(int(fe.value) >> 28)
        assert render(port((CIP,), eps, aff=60)) == out
    assert len(gens) > 1
    plain = render(port((CIP,), LOCAL + REMOTE))
    assert all(int(v.value) >> 28 == 0 for v in elements(plain, R.FE).values())


def test_without_affinity_no_affinity_elements():
    out = render(port((CIP, NP), LOCAL + REMOTE))
    assert not any(v.set.startswith("svc-aff") for v in out.values())
    (rule_free,) = [R.render_lb({4}, set())[chain_key(R.AFFINITY)]]
    assert rule_free.rules == ()


# --------------------------------------------------------------------------- the graph
ALL_SHAPES = [
    port((Frontend("10.96.1.1", 80, False, "cluster-ip"),), (), service="default/none"),
    port((Frontend("10.96.1.2", 80, False, "cluster-ip"), Frontend("", 30002, True, "node-port"), EIP, LB),
         (), service="default/none-ext"),
    port((Frontend("10.96.1.3", 53, False, "cluster-ip"),), REMOTE, proto="UDP", name="dns",
         service="default/dns"),
    port((Frontend("10.96.1.4", 80, False, "cluster-ip"), Frontend("", 30004, True, "node-port")),
         LOCAL + REMOTE, aff=60, service="default/aff"),
    port((Frontend("10.96.1.5", 80, False, "cluster-ip"), Frontend("", 30005, True, "node-port"),
          Frontend("203.0.113.5", 80, True, "external-ip")), LOCAL + REMOTE, ext_local=True,
         service="default/etp"),
    port((Frontend("10.96.1.6", 80, False, "cluster-ip"), Frontend("", 30006, True, "node-port")), REMOTE,
         ext_local=True, int_local=True, service="default/none-here"),
    port((Frontend("10.96.1.7", 3868, False, "cluster-ip"), Frontend("198.51.100.7", 3868, True,
                                                                     "load-balancer")),
         LOCAL, int_local=True, aff=10800, proto="SCTP", name="", service="default/sctp"),
    port((Frontend("10.96.1.8", 80, False, "cluster-ip"),), LOCAL + REMOTE, int_local=True, aff=5,
         service="default/itp"),
]
USE = re.compile(r"(?:goto|jump) ([\w./:-]+)|@([\w./:-]+)")


def _used(text: str) -> set[str]:
    return {chain_key(g) if g else set_key(s) for g, s in USE.findall(text)}


def _all(shapes=ALL_SHAPES) -> tuple[dict, dict]:
    """(values of every shape, with distinct group ids), (render_lb of what they need)."""
    services, sizes, timeouts, gid = {}, set(), set(), 1
    for sp in shapes:
        gids = {}
        for g in R.groups_needed(sp):
            gids[g] = gid
            gid += 1
        out = R.render_service_port(sp, gids)
        assert not set(out) & set(services)  # Services never render the same key
        out = flatten(out)
        services.update(out)
        s, t = R.lb_inputs(sp)
        sizes |= s
        timeouts |= t
    return services, R.render_lb(sizes, timeouts)


def _check_value(k, v, keys: set[str]) -> None:
    if isinstance(v, NftChain):
        assert k == chain_key(v.name)
        assert set(v.refs) <= keys, (k, set(v.refs) - keys)
        used = set().union(*map(_used, v.rules)) if v.rules else set()
        assert used <= set(v.refs), (k, used - set(v.refs))
        ChainDescriptor(None, None).validate(k, v)
    elif isinstance(v, NftElement):
        assert k == element_key(v.set, v.key)
        assert set_key(v.set) in keys, k
        assert set(v.refs) <= keys
        assert set(v.refs) == _used(v.value)
    elif isinstance(v, NftSet):
        assert k == set_key(v.name)
        SetDescriptor(None, None).validate(k, v)
    elif isinstance(v, NftElements):
        assert k.startswith(f"nft/elements/{v.set}/") and set_key(v.set) in keys
        assert v.set in R.GROUPED and not v.items  # the base's empty claims
    else:
        assert k == TABLE_KEY


def test_refs_are_closed_and_complete():
    services, lb = _all()
    assert not set(services) & set(BASE) and not set(lb) & set(BASE) and not set(services) & set(lb)
    merged = {**BASE, **lb, **services}
    for k, v in merged.items():
        _check_value(k, v, set(merged))
    # Services render map elements only; their sets exist in the base or in render_lb
    assert all(isinstance(v, NftElement) for v in services.values())


def test_base_alone_is_closed():
    lb = R.render_lb(set(), set())  # nothing in use yet: dispatch and affinity still exist
    merged = {**BASE, **lb}
    for k, v in merged.items():
        _check_value(k, v, set(merged))
    for hook in ("filter-input", "filter-forward", "filter-output"):
        # before DNAT (nat prerouting is -100): the filter hooks still see the Service address
        assert "priority -110;" in BASE[chain_key(hook)].hook


def test_every_group_has_its_lb_chain():
    services, lb = _all()
    for v in services.values():
        if v.set in (R.FE, R.NP):
            n = int(v.value) & R.MAX_ENDPOINTS
            want = "drop" if n == 0 else f"goto lb-{n}"
            assert lb[element_key(R.LBMAP, str(n))].value == want, v


def test_rendering_is_deterministic():
    assert _all() == _all()


# --------------------------------------------------------------------------- incremental cost
def _diff(a: dict, b: dict) -> set[str]:
    return {k for k in set(a) | set(b) if a.get(k) != b.get(k)}


def test_one_remote_endpoint_change_touches_only_its_backend_elements():
    before = render(port((CIP, NP), LOCAL + REMOTE))
    moved = (REMOTE[0], Endpoint("10.1.3.9", 8080, "node3", False, "default/web-e"))
    after = render(port((CIP, NP), LOCAL + moved))
    changed = _diff(before, after)
    assert len(changed) == 2 and {after[k].set for k in changed} == {R.BE}  # c and x groups
    assert {after[k].value for k in changed} == {"10.1.3.9 . 8080"}


def test_first_endpoint_moves_frontend_from_reject_to_service_map():
    before = render(port((CIP,), ()), {})
    after = render(port((CIP,), REMOTE[:1]))
    assert set(elements(before, R.NOEP_IPS)) == set(elements(after, R.FE)) == {"10.96.0.10 . tcp . 80"}
    assert not elements(after, R.NOEP_IPS)


def test_a_group_holds_at_most_max_endpoints_and_the_sync_says_so():
    """Groups hold MAX_ENDPOINTS (1023) endpoints; the renderer uses the first
    ones and ServiceSync reports the rest as a problem of the Service."""
    eps = tuple(Endpoint(f"10.2.{i // 250}.{i % 250 + 1}", 8080, "node2", False) for i in range(1500))
    out = render(port((CIP,), eps))
    assert len(elements(out, R.BE)) == R.MAX_ENDPOINTS
    from agent.cluster import ClusterSnapshot
    from agent.desired import DesiredState
    from agent.reconciler import Scheduler
    from agent.linux.svcstate import NftServiceRenderer
    from agent.services import ServiceSync
    snap = ClusterSnapshot()
    snap.objects["service"][("default", "big")] = {
        "metadata": {"name": "big", "namespace": "default"},
        "spec": {"clusterIP": "10.96.9.9", "ports": [{"port": 80, "protocol": "TCP", "targetPort": 8080}]}}
    snap.objects["endpointslice"][("default", "big-0")] = {
        "metadata": {"name": "big-0", "namespace": "default",
                     "labels": {"kubernetes.io/service-name": "big"}},
        "addressType": "IPv4", "ports": [{"port": 8080, "protocol": "TCP", "name": ""}],
        "endpoints": [{"addresses": [e.ip], "conditions": {"ready": True}} for e in eps]}
    sync = ServiceSync(snap, DesiredState(Scheduler()), "node1", NftServiceRenderer())
    sync._reindex()
    import logging
    records = []
    handler = logging.Handler()
    handler.emit = records.append
    logging.getLogger("agent.services").addHandler(handler)
    try:
        for _ in range(3):  # rebuilt three times: reported once (the issue: "logged once")
            sync.build(("default", "big"))
    finally:
        logging.getLogger("agent.services").removeHandler(handler)
    assert any("1500 endpoints, only the first 1023" in p for p in sync.problems[("default", "big")])
    assert sum("only the first 1023" in r.getMessage() for r in records) == 1, [r.getMessage() for r in records]

# --------------------------------------------------------------------------- grouping
def test_a_port_is_one_value_per_set_and_one_endpoint_change_is_one_value():
    """Ports render NftElements (one per set): a large sync has a handful of
    values per Service, and an endpoint change updates one value, whose
    descriptor then touches only the differing elements."""
    sp = port((CIP, NP), LOCAL + REMOTE)
    before = render_grouped(sp)
    assert all(isinstance(v, NftElements) for v in before.values())
    assert set(before) == {f"nft/elements/{s}/{sp.id}" for s in (R.FE, R.NP, R.BE, R.EXT)}
    moved = (REMOTE[0], Endpoint("10.1.3.9", 8080, "node3", False, "default/web-e"))
    after = render_grouped(port((CIP, NP), LOCAL + moved))
    assert _diff(before, after) == {f"nft/elements/{R.BE}/{sp.id}"}
    b, a = before[f"nft/elements/{R.BE}/{sp.id}"].mapping(), after[f"nft/elements/{R.BE}/{sp.id}"].mapping()
    assert {k for k in set(a) | set(b) if a.get(k) != b.get(k)} == \
        {k for k, (v, _) in a.items() if v == "10.1.3.9 . 8080"}
