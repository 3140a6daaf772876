"""Render Service intents into the ``ip contiv`` nftables table (pure).

Every Service lives in *map elements*; the rules are few and fixed::

  nat prerouting/output -> services:
     meta mark set ip daddr . meta l4proto . th dport map @svc-fe  goto dispatch
     fib daddr type local: meta mark set meta l4proto . th dport map @svc-np  goto dispatch
  dispatch:
     dnat to ip saddr . meta mark map @svc-aff          (session affinity: a known client)
     meta mark & 0x3ff vmap @svc-lbmap                  (0: drop, n: goto lb-n; n = group size)
  lb-n:  dnat to meta mark . numgen random mod n map @svc-be
  nat postrouting:
     jump svc-affinity   (per timeout: mark in @svc-aff-<T> -> update @svc-aff {client . mark : endpoint})
     ip saddr . ip daddr @svc-hairpin       snat to the node gateway   (a pod reaching itself)
     meta mark @svc-ext oifname <overlay>   snat to the node gateway   (external -> remote endpoint)
  filter hooks, before DNAT: @svc-noep / @svc-noep-np -> reject-chain (TCP RST, ICMP port unreachable)

A frontend maps to a *group mark* ``gen<<28 | gid<<10 | n``: a group is a list
of endpoints (all, local only, or all-for-external-traffic), ``gid`` its id,
``n`` its size, ``gen`` a hash of its endpoints for affinity groups (so that
changed endpoints start fresh affinities). Backends are ``(mark . bucket) ->
ip . port``.

Why: adding or changing a rule makes the kernel re-validate the whole table
(every jump, every NAT statement) -- ~35 ms per change next to 10,000
Services with one chain each -- while set elements are updated in ~0.1 ms
whatever the table holds. Here a Service change is only element updates, and
a packet costs the same few hash lookups whatever the number of Services.
"""
from __future__ import annotations

import hashlib

from agent.builders.services import Endpoint, ServicePort
from agent.linux.nft.values import (TABLE_KEY, NftChain, NftElement, NftElements, NftSet,
                                    NftTable, chain_key, element_key, elements_key, set_key)

FE, NP, BE, LBMAP = "svc-fe", "svc-np", "svc-be", "svc-lbmap"
AFF, EXT, HAIRPIN = "svc-aff", "svc-ext", "svc-hairpin"
NOEP_IPS, NOEP_NODEPORTS = "svc-noep", "svc-noep-np"
REJECT = "reject-chain"
DISPATCH, AFFINITY = "dispatch", "svc-affinity"
N_BITS, GID_BITS = 10, 18
MAX_ENDPOINTS = (1 << N_BITS) - 1
MAX_GID = (1 << GID_BITS) - 1
#: sets whose elements belong to Service ports (NftElements values, one per port and set)
GROUPED = (FE, NP, BE, EXT, NOEP_IPS, NOEP_NODEPORTS)


def group_mark(gid: int, n: int, gen: int = 0) -> int:
    return (gen & 0xF) << 28 | (gid & MAX_GID) << N_BITS | min(n, MAX_ENDPOINTS)


def _sets() -> dict[str, NftSet]:
    # the sets of GROUPED hold Service ports' elements as NftElements groups
    def nft_set(name: str, spec: str, static: bool = True) -> NftSet:
        return NftSet(name, spec, static, grouped=name in GROUPED)
    return {
        FE: nft_set(FE, "type ipv4_addr . inet_proto . inet_service : mark;"),
        NP: nft_set(NP, "type inet_proto . inet_service : mark;"),
        BE: nft_set(BE, "typeof meta mark . numgen random mod 2 : ip daddr . th dport;"),
        AFF: nft_set(AFF, "typeof ip saddr . meta mark : ip daddr . th dport; flags dynamic,timeout; "
                          "timeout 3h;", static=False),
        EXT: nft_set(EXT, "type mark;"),
        HAIRPIN: nft_set(HAIRPIN, "type ipv4_addr . ipv4_addr;"),
        NOEP_IPS: nft_set(NOEP_IPS, "type ipv4_addr . inet_proto . inet_service;"),
        NOEP_NODEPORTS: nft_set(NOEP_NODEPORTS, "type inet_proto . inet_service;"),
        LBMAP: nft_set(LBMAP, "type mark : verdict;"),
    }


def render_base(gateway: str, overlay_dev: str) -> dict[str, object]:
    """The table, its maps and the fixed chains."""
    out: dict[str, object] = {TABLE_KEY: NftTable()}
    sets = _sets()
    for name, s in sets.items():
        out[set_key(name)] = s
    for name in GROUPED:
        # an empty claim on each Service-owned set: resync then also finds (and
        # removes) elements nobody owns even when no Service exists
        out[elements_key(name, "~all")] = NftElements(name, ())

    def chain(name, rules, hook="", refs=(), comment=""):
        out[chain_key(name)] = NftChain(name, tuple(rules), hook, comment or f"contiv:{name}", tuple(refs))

    chain(REJECT, ["meta l4proto tcp reject with tcp reset", "reject"],
          comment="contiv: Service without endpoints")
    chain("services", [f"meta mark set ip daddr . meta l4proto . th dport map @{FE} goto {DISPATCH}",
                       f"fib daddr type local meta mark set meta l4proto . th dport map @{NP} "
                       f"goto {DISPATCH}"],
          refs=(set_key(FE), set_key(NP), chain_key(DISPATCH)))
    chain("nat-prerouting", ["jump services"], "type nat hook prerouting priority dstnat; policy accept;",
          (chain_key("services"),))
    chain("nat-output", ["jump services"], "type nat hook output priority -100; policy accept;",
          (chain_key("services"),))
    chain("nat-postrouting", [f"jump {AFFINITY}",
                              f"ip saddr . ip daddr @{HAIRPIN} snat ip to {gateway}",
                              f"meta mark @{EXT} oifname \"{overlay_dev}\" snat ip to {gateway}"],
          "type nat hook postrouting priority srcnat; policy accept;",
          (chain_key(AFFINITY), set_key(HAIRPIN), set_key(EXT)))
    chain("endpoints-check", [f"ip daddr . meta l4proto . th dport @{NOEP_IPS} goto {REJECT}"],
          refs=(set_key(NOEP_IPS), chain_key(REJECT)))
    chain("nodeport-check", [f"fib daddr type local meta l4proto . th dport @{NOEP_NODEPORTS} goto {REJECT}"],
          refs=(set_key(NOEP_NODEPORTS), chain_key(REJECT)))
    check = chain_key("endpoints-check")
    chain("filter-input", ["ct state new jump nodeport-check", "ct state new jump endpoints-check"],
          "type filter hook input priority -110; policy accept;", (chain_key("nodeport-check"), check))
    chain("filter-forward", ["ct state new jump endpoints-check"],
          "type filter hook forward priority -110; policy accept;", (check,))
    chain("filter-output", ["ct state new jump endpoints-check"],
          "type filter hook output priority -110; policy accept;", (check,))
    return out


def render_lb(counts: set[int], timeouts: set[int]) -> dict[str, object]:
    """What depends on which group sizes and affinity timeouts exist (it
    changes only when a new size or timeout appears).

    The map-driven NAT rules are installed over netlink only: nftables 1.0.6
    refuses to *parse* them against maps declared with ``typeof`` (a bug in
    its protocol-context check), although it lists them fine."""
    out: dict[str, object] = {}
    counts = sorted({n for n in counts if 1 <= n <= MAX_ENDPOINTS})
    for n in counts:
        name = f"lb-{n}"
        out[chain_key(name)] = NftChain(
            name, (f"dnat ip addr . port to meta mark . numgen random mod {n} map @{BE}",),
            "", f"contiv: balance over {n} endpoint(s)", (set_key(BE),))
        out[element_key(LBMAP, str(n))] = NftElement(LBMAP, str(n), f"goto {name}",
                                                    refs=(chain_key(name),))
    out[element_key(LBMAP, "0")] = NftElement(LBMAP, "0", "drop")
    out[chain_key(DISPATCH)] = NftChain(
        DISPATCH, (f"dnat ip addr . port to ip saddr . meta mark map @{AFF}",
                   f"meta mark & {MAX_ENDPOINTS:#x} vmap @{LBMAP}"),
        "", "contiv: Service dispatch", (set_key(AFF), set_key(LBMAP)))
    rules, refs = [], [set_key(AFF)]
    for t in sorted(timeouts):
        name = f"svc-aff-{t}"
        out[set_key(name)] = NftSet(name, "type mark;")
        rules.append(f"meta mark @{name} update @{AFF} {{ ip saddr . meta mark timeout {t}s : "
                     f"ip daddr . th dport }}")
        refs.append(set_key(name))
    out[chain_key(AFFINITY)] = NftChain(AFFINITY, tuple(rules), "",
                                        "contiv: remember session affinity", tuple(refs))
    return out


def _gen(eps: tuple[Endpoint, ...]) -> int:
    return int(hashlib.sha1(",".join(f"{e.ip}:{e.port}" for e in eps).encode()).hexdigest()[:2], 16) & 0xF


def groups_needed(sp: ServicePort) -> dict[str, tuple[Endpoint, ...]]:
    """Endpoint groups a Service port needs: c (all, cluster IP), l (local
    only), x (all, external traffic: SNAT when it leaves for another node)."""
    if not sp.endpoints:
        return {}
    out = {}
    has_cluster = any(not f.external for f in sp.frontends)
    has_ext = any(f.external for f in sp.frontends)
    if has_cluster and not sp.internal_local:
        out["c"] = sp.endpoints
    if (has_cluster and sp.internal_local) or (has_ext and sp.external_local):
        out["l"] = sp.local_endpoints
    if has_ext and not sp.external_local:
        out["x"] = sp.endpoints
    return out


def render_service_port(sp: ServicePort, gids: dict[str, int],
                        groups: dict[str, tuple[Endpoint, ...]] | None = None) -> dict[str, object]:
    """The port's elements, one NftElements value per set; ``gids`` maps each
    needed group (:func:`groups_needed`, passed in ``groups`` if already known)
    to its id."""
    items: dict[str, list] = {}
    proto = sp.protocol.lower()
    comment = f"{sp.service}:{sp.name or sp.frontends[0].port}"

    def elem(set_name: str, key: str, value: str = "", note: str = "") -> None:
        items.setdefault(set_name, []).append((key, value, note))

    if not sp.endpoints:
        for f in sp.frontends:
            if f.ip:
                elem(NOEP_IPS, f"{f.ip} . {proto} . {f.port}", note=comment)
            else:
                elem(NOEP_NODEPORTS, f"{proto} . {f.port}", note=comment)
    else:
        marks = {}
        for g, eps in (groups if groups is not None else groups_needed(sp)).items():
            eps = eps[:MAX_ENDPOINTS]
            w = group_mark(gids[g], len(eps), _gen(eps) if sp.affinity_timeout else 0)
            marks[g] = w
            for k, e in enumerate(eps):
                elem(BE, f"{w} . {k}", f"{e.ip} . {e.port}")
            if g == "x":
                elem(EXT, str(w))
            if sp.affinity_timeout and eps:
                elem(f"svc-aff-{sp.affinity_timeout}", str(w))
        for f in sp.frontends:
            if f.external:
                w = marks["l"] if sp.external_local else marks["x"]
            else:
                w = marks["l"] if sp.internal_local else marks["c"]
            if f.ip:
                elem(FE, f"{f.ip} . {proto} . {f.port}", str(w), comment)
            else:
                elem(NP, f"{proto} . {f.port}", str(w), comment)
    out: dict[str, object] = {}
    for set_name, its in items.items():
        if set_name in GROUPED:
            out[elements_key(set_name, sp.id)] = NftElements(set_name, tuple(sorted(its)))
        else:  # the affinity-class sets, shared by every port with that timeout
            for k, v, c in its:
                out[element_key(set_name, k)] = NftElement(set_name, k, v, c)
    return out


def render_hairpin(ip: str) -> dict[str, object]:
    """A local pod that may reach itself through a Service (SNAT to the gateway)."""
    return {element_key(HAIRPIN, f"{ip} . {ip}"): NftElement(HAIRPIN, f"{ip} . {ip}")}


def lb_inputs(sp: ServicePort, groups: dict | None = None) -> tuple[set[int], set[int]]:
    """(group sizes, affinity timeouts) this port needs from :func:`render_lb`."""
    sizes = {min(len(e), MAX_ENDPOINTS) for e in (groups if groups is not None else groups_needed(sp)).values()}
    return {n for n in sizes if n}, ({sp.affinity_timeout} if sp.affinity_timeout and sp.endpoints else set())
