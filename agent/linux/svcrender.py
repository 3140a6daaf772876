"""Render Service intents into the ``ip contiv`` nftables table (pure).

Packet path (kube-proxy's nftables design, with fewer objects per Service)::

  nat prerouting/output -> services:
      ip daddr . l4proto . dport  vmap @service-ips        (cluster, external, LB IPs)
      fib daddr local: l4proto . dport vmap @service-nodeports
  @service-ips element -> goto svc-*  (cluster chain: every endpoint)
                       -> goto svl-*  (local endpoints only: *TrafficPolicy Local)
                       -> goto svx-*  (external traffic: mark "SNAT if it leaves
                                       through the overlay", then svc-*)
                       -> drop        (Local policy and no local endpoint)
  svc-*/svl-*: one rule per endpoint, ``numgen random mod (n-k) 0`` picks the
      k-th with probability 1/(n-k) -- uniform overall, no sets per Service
      (anonymous sets make nftables load time quadratic in their number);
      endpoints on this node go through sep-* to mark hairpin traffic (a pod
      reaching itself through its Service is SNATed to the gateway).
  session affinity: per endpoint a dynamic set of client addresses with the
      timeout; the chain first sends a known client to its endpoint.
  filter hooks (before DNAT): @no-endpoint-services / @no-endpoint-nodeports
      -> reject (TCP reset, ICMP port unreachable) for Service ports without
      endpoints, as kube-proxy does.
  nat postrouting: mark 0x4000 -> SNAT to the node gateway (hairpin);
      mark 0x8000 and leaving through the VXLAN device -> SNAT (external
      traffic to a remote endpoint; local endpoints keep the client address).
"""
from __future__ import annotations

import hashlib

from agent.builders.services import Endpoint, ServicePort
from agent.linux.nft.values import (TABLE_KEY, NftChain, NftElement, NftSet, NftTable,
                                    chain_key, element_key, set_key)

MARK_MASQ = 0x4000
MARK_EXT = 0x8000
SERVICE_IPS = "service-ips"
SERVICE_NODEPORTS = "service-nodeports"
NOEP_IPS = "no-endpoint-services"
NOEP_NODEPORTS = "no-endpoint-nodeports"
REJECT = "reject-chain"


def _maps() -> dict[str, NftSet]:
    ipk = "type ipv4_addr . inet_proto . inet_service : verdict;"
    npk = "type inet_proto . inet_service : verdict;"
    return {n: NftSet(n, spec) for n, spec in ((SERVICE_IPS, ipk), (SERVICE_NODEPORTS, npk),
                                                (NOEP_IPS, ipk), (NOEP_NODEPORTS, npk))}


def render_base(gateway: str, overlay_dev: str) -> dict[str, object]:
    """The table, maps and base chains every Service relies on."""
    out: dict[str, object] = {TABLE_KEY: NftTable()}
    for name, s in _maps().items():
        out[set_key(name)] = s
    sets = tuple(set_key(n) for n in _maps())

    def chain(name, rules, hook="", refs=(), comment=""):
        out[chain_key(name)] = NftChain(name, tuple(rules), hook, comment or f"contiv:{name}", tuple(refs))

    chain(REJECT, ["meta l4proto tcp reject with tcp reset", "reject"],
          comment="contiv: Service without endpoints")
    chain("services", [f"ip daddr . meta l4proto . th dport vmap @{SERVICE_IPS}",
                       f"fib daddr type local meta l4proto . th dport vmap @{SERVICE_NODEPORTS}"],
          refs=sets)
    chain("nat-prerouting", ["jump services"], "type nat hook prerouting priority dstnat; policy accept;",
          (chain_key("services"),))
    chain("nat-output", ["jump services"], "type nat hook output priority -100; policy accept;",
          (chain_key("services"),))
    chain("nat-postrouting", [f"meta mark & {MARK_MASQ:#x} == {MARK_MASQ:#x} snat ip to {gateway}",
                              f"meta mark & {MARK_EXT:#x} == {MARK_EXT:#x} oifname \"{overlay_dev}\" "
                              f"snat ip to {gateway}"],
          "type nat hook postrouting priority srcnat; policy accept;")
    chain("endpoints-check", [f"ip daddr . meta l4proto . th dport vmap @{NOEP_IPS}"],
          refs=(set_key(NOEP_IPS), chain_key(REJECT)))
    chain("nodeport-check", [f"fib daddr type local meta l4proto . th dport vmap @{NOEP_NODEPORTS}"],
          refs=(set_key(NOEP_NODEPORTS), chain_key(REJECT)))
    check = chain_key("endpoints-check")
    chain("filter-input", ["ct state new jump nodeport-check", "ct state new jump endpoints-check"],
          "type filter hook input priority -110; policy accept;", (chain_key("nodeport-check"), check))
    chain("filter-forward", ["ct state new jump endpoints-check"],
          "type filter hook forward priority -110; policy accept;", (check,))
    chain("filter-output", ["ct state new jump endpoints-check"],
          "type filter hook output priority -110; policy accept;", (check,))
    return out


def _h(text: str, n: int = 8) -> str:
    return hashlib.sha1(text.encode()).hexdigest()[:n]


def render_service_port(sp: ServicePort) -> dict[str, object]:
    out: dict[str, object] = {}
    proto = sp.protocol.lower()
    sid = _h(sp.id)
    label = f"{sp.service}/{proto}/{sp.name or sp.frontends[0].port}"
    comment = f"contiv:svc:{sp.service}:{sp.name or sp.frontends[0].port}"

    def add_chain(name, rules, refs=(), note=""):
        out[chain_key(name)] = NftChain(name, tuple(rules), "", note or comment, tuple(refs))
        return chain_key(name)

    def ep_chain(e: Endpoint) -> tuple[str, str] | None:
        """Per-endpoint chain when the endpoint needs more than a DNAT:
        returns (chain name, affinity set name or "")."""
        if not (sp.affinity_timeout or e.local):
            return None
        eh = _h(f"{e.ip}:{e.port}", 6)
        rules, refs, aff = [], [], ""
        if sp.affinity_timeout:
            aff = f"aff-{sid}-{eh}"
            out[set_key(aff)] = NftSet(aff, f"type ipv4_addr; flags dynamic,timeout; "
                                            f"timeout {sp.affinity_timeout}s;", static=False)
            rules.append(f"update @{aff} {{ ip saddr }}")
            refs.append(set_key(aff))
        if e.local:
            rules.append(f"ip saddr {e.ip} meta mark set meta mark | {MARK_MASQ:#x}")
        rules.append(f"meta l4proto {proto} dnat to {e.ip}:{e.port}")
        name = f"sep-{sid}-{eh}-{label}"
        add_chain(name, rules, refs, f"{comment} endpoint {e.pod or e.ip}")
        return name, aff

    def lb_chain(prefix: str, eps: tuple[Endpoint, ...], note: str) -> str:
        rules, refs = [], []
        targets = [(e, ep_chain(e)) for e in eps]
        for e, t in targets:
            if t and t[1]:  # a client seen before goes back to its endpoint
                rules.append(f"ip saddr @{t[1]} goto {t[0]}")
                refs.append(set_key(t[1]))
        n = len(targets)
        for k, (e, t) in enumerate(targets):
            pick = f"numgen random mod {n - k} 0 " if k < n - 1 else ""
            if t:
                rules.append(f"{pick}goto {t[0]}")
                refs.append(chain_key(t[0]))
            else:
                rules.append(f"{pick}meta l4proto {proto} dnat to {e.ip}:{e.port}")
        return add_chain(f"{prefix}-{sid}-{label}", rules, refs, f"{comment} {note}".strip())

    def element(set_name: str, key: str, target: str | None) -> None:
        """``target`` a chain key, or None for drop."""
        value = f"goto {target[len('nft/chain/'):]}" if target else "drop"
        out[element_key(set_name, key)] = NftElement(set_name, key, value, comment,
                                                     (target,) if target else ())

    fronts_ip = [f for f in sp.frontends if f.ip]
    fronts_np = [f for f in sp.frontends if not f.ip]
    if not sp.endpoints:
        reject = chain_key(REJECT)
        for f in fronts_ip:
            element(NOEP_IPS, f"{f.ip} . {proto} . {f.port}", reject)
        for f in fronts_np:
            element(NOEP_NODEPORTS, f"{proto} . {f.port}", reject)
        return out

    # the cluster chain only when some frontend goes there (not, e.g., for a
    # ClusterIP Service with internalTrafficPolicy Local): no unreachable chains
    cluster = lb_chain("svc", sp.endpoints, "") if any(
        (sp.external_local if f.external else sp.internal_local) is False
        for f in sp.frontends) else None
    local = lb_chain("svl", sp.local_endpoints, "local endpoints") \
        if sp.local_endpoints and (sp.internal_local or sp.external_local) else None
    external = None
    if any(f.external for f in sp.frontends) and not sp.external_local:
        external = add_chain(f"svx-{sid}-{label}", [f"meta mark set meta mark | {MARK_EXT:#x}",
                                                    f"goto {cluster[len('nft/chain/'):]}"],
                             (cluster,), f"{comment} external")
    for f in sp.frontends:
        if f.external:
            target = local if sp.external_local else external
        else:
            target = local if sp.internal_local else cluster
        if f.ip:
            element(SERVICE_IPS, f"{f.ip} . {proto} . {f.port}", target)
        else:
            element(SERVICE_NODEPORTS, f"{proto} . {f.port}", target)
    return out


def render_service(ports: list[ServicePort]) -> dict[str, object]:
    out: dict[str, object] = {}
    for sp in ports:
        out.update(render_service_port(sp))
    return out
