"""VPP layer 3: routes, static neighbours, proxy ARP, STN rules. See :mod:`agent.vpp.values`.

Ownership without tags: routes are ours when VPP's API added them (FIB
source API) and they go through one of our interfaces or lie inside the
prefixes the plane owns (pod CIDR, Service CIDR); neighbours when static on
our interfaces; proxy-ARP ranges inside the owned prefixes; STN rules when
they hand packets to one of our interfaces.
"""
from __future__ import annotations

import ipaddress

from agent.errors import InvalidInput
from agent.reconciler import Dependency, Retrieved
from agent.vpp.base import VppDescriptor
from agent.vpp.errors import VppApiError
from agent.vpp.values import (FIB_SOURCE_API, NONE, Neighbor, ProxyArp, ProxyArpIf, Route, StnRule,
                              if_key_of, neighbor_key, proxyarp_key, proxyarpif_key, route_key, stn_key)

NEIGHBOR_STATIC = 1
PATH_TYPES = {"normal": 0, "drop": 2, "unreach": 5}
_KINDS = {v: k for k, v in PATH_TYPES.items()}


def _inside(ip: str, owned) -> bool:
    a = ipaddress.ip_interface(ip).network
    return any(a.subnet_of(n) for n in owned if a.version == n.version)


class RouteDescriptor(VppDescriptor):
    """A route of one path: via a next hop on an interface, attached to an
    interface, or a special (``unreach``: ICMP unreachable, ``drop``)."""

    name = "vpp-route"
    key_prefix = "vpp/route/"

    def __init__(self, api, ifs, owned) -> None:
        super().__init__(api, ifs)
        self.owned = tuple(ipaddress.ip_network(p) for p in owned)

    def validate(self, key, v: Route) -> None:
        try:
            ipaddress.ip_network(v.prefix)
        except ValueError as e:
            raise InvalidInput(f"route prefix {v.prefix!r}: {e}") from None
        if key != route_key(v.table, v.prefix):
            raise InvalidInput(f"key {key} does not match route {v.prefix} in table {v.table}")
        if v.kind not in PATH_TYPES or (v.kind == "normal") != bool(v.ifname):
            raise InvalidInput(f"route {v.prefix}: a {v.kind} route needs "
                               f"{'an' if v.kind == 'normal' else 'no'} interface")

    def dependencies(self, key, v: Route):
        return (Dependency("interface-exists", if_key_of(v.ifname)),) if v.ifname else ()

    def _set(self, v: Route, ctx, is_add: bool) -> None:
        path = {"type": PATH_TYPES[v.kind], "sw_if_index": self.sw(v.ifname, ctx) if v.ifname else NONE}
        if v.via:
            path["nh"] = {"address": {"ip4": v.via}}
        self.call("ip_route_add_del", is_add=is_add, route={
            "table_id": v.table, "prefix": v.prefix, "paths": [path]})

    def create(self, key, v: Route, ctx):
        self._set(v, ctx, True)

    def delete(self, key, v: Route, metadata, ctx):
        if v.ifname and self.ifs.index(v.ifname) is None:
            return  # its interface went, and the route with it
        try:
            self._set(v, ctx, False)
        except VppApiError as e:
            if e.retval != -6:  # no such entry: gone already
                raise

    def retrieve(self, correlate, ctx):
        names = self.ifs.by_index()
        tables = {v.table for v in correlate.values()} | {0}
        out = []
        for table in sorted(tables):
            for d in self.api.dump("ip_route_v2_dump", table={"table_id": table}, src=FIB_SOURCE_API):
                r = d.route
                if r.src != FIB_SOURCE_API or r.n_paths != 1:
                    continue
                path = r.paths[0]
                prefix = str(r.prefix)
                ifname = names.get(path.sw_if_index, "")
                kind = _KINDS.get(int(path.type), "other")
                if not (ifname or (kind != "normal" and _inside(prefix, self.owned))):
                    continue  # not through our interfaces, not in our prefixes: not ours
                via = str(path.nh.address.ip4) if kind == "normal" else ""
                v = Route(prefix, ifname if kind == "normal" else "",
                          "" if via == "0.0.0.0" else via, table, kind)
                out.append(Retrieved(route_key(table, prefix), v))
        return out


class NeighborDescriptor(VppDescriptor):
    """A static neighbour (IP -> MAC) on one of our interfaces."""

    name = "vpp-neighbor"
    key_prefix = "vpp/neighbor/"

    def dependencies(self, key, v: Neighbor):
        return (Dependency("interface-exists", if_key_of(v.ifname)),)

    def _set(self, v: Neighbor, ctx, is_add: bool) -> None:
        self.call("ip_neighbor_add_del", is_add=is_add, neighbor={
            "sw_if_index": self.sw(v.ifname, ctx), "flags": NEIGHBOR_STATIC, "mac_address": v.mac,
            "ip_address": v.ip})

    def create(self, key, v: Neighbor, ctx):
        self._set(v, ctx, True)

    def delete(self, key, v: Neighbor, metadata, ctx):
        if self.ifs.index(v.ifname) is not None:
            try:
                self._set(v, ctx, False)
            except VppApiError as e:
                if e.retval != -6:
                    raise

    def retrieve(self, correlate, ctx):
        names = self.ifs.by_index()
        out = []
        for d in self.api.dump("ip_neighbor_dump", sw_if_index=NONE, af=0):
            n = d.neighbor
            name = names.get(n.sw_if_index)
            if name is None or not int(n.flags) & NEIGHBOR_STATIC:
                continue
            v = Neighbor(name, str(n.ip_address), str(n.mac_address).lower())
            out.append(Retrieved(neighbor_key(name, v.ip), v))
        return out


class ProxyArpDescriptor(VppDescriptor):
    """A proxy-ARP range: VPP answers ARP for these addresses (the pods'
    gateway) on the interfaces that enable it."""

    name = "vpp-proxyarp"
    key_prefix = "vpp/proxyarp/"

    def __init__(self, api, ifs, owned) -> None:
        super().__init__(api, ifs)
        self.owned = tuple(ipaddress.ip_network(p) for p in owned)

    def _set(self, v: ProxyArp, is_add: bool) -> None:
        self.call("proxy_arp_add_del", is_add=is_add, proxy={"table_id": v.table, "low": v.low,
                                                             "hi": v.hi})

    def create(self, key, v: ProxyArp, ctx):
        self._set(v, True)

    def delete(self, key, v: ProxyArp, metadata, ctx):
        try:
            self._set(v, False)
        except VppApiError as e:
            if e.retval not in (-6, -1):
                raise

    def retrieve(self, correlate, ctx):
        out = []
        for d in self.api.dump("proxy_arp_dump"):
            p = d.proxy
            low, hi = str(p.low), str(p.hi)
            if _inside(low, self.owned):
                out.append(Retrieved(proxyarp_key(low, hi), ProxyArp(low, hi, p.table_id)))
        return out


class ProxyArpIfDescriptor(VppDescriptor):
    name = "vpp-proxyarpif"
    key_prefix = "vpp/proxyarpif/"

    def dependencies(self, key, v: ProxyArpIf):
        return (Dependency("interface-exists", if_key_of(v.ifname)),)

    def create(self, key, v: ProxyArpIf, ctx):
        self.call("proxy_arp_intfc_enable_disable", sw_if_index=self.sw(v.ifname, ctx), enable=True)

    def delete(self, key, v: ProxyArpIf, metadata, ctx):
        if self.ifs.index(v.ifname) is not None:
            self.call("proxy_arp_intfc_enable_disable", sw_if_index=self.sw(v.ifname, ctx),
                      enable=False)

    def retrieve(self, correlate, ctx):
        names = self.ifs.by_index()
        return [Retrieved(proxyarpif_key(names[d.sw_if_index]), ProxyArpIf(names[d.sw_if_index]))
                for d in self.api.dump("proxy_arp_intfc_dump") if d.sw_if_index in names]


class StnRuleDescriptor(VppDescriptor):
    """An STN rule: what VPP does not consume of the traffic for the node's
    address goes to the host (docs/stn.md)."""

    name = "vpp-stn"
    key_prefix = "vpp/stn/"

    def validate(self, key, v: StnRule) -> None:
        try:
            ipaddress.ip_address(v.ip)
        except ValueError as e:
            raise InvalidInput(f"STN rule address {v.ip!r}: {e}") from None

    def dependencies(self, key, v: StnRule):
        return (Dependency("interface-exists", if_key_of(v.ifname)),)

    def create(self, key, v: StnRule, ctx):
        sw = self.sw(v.ifname, ctx)
        self.call("stn_add_del_rule", ip_address=v.ip, sw_if_index=sw, is_add=True)
        # The plugin turns IPv4 on for the interface by counting one more user
        # of it, and never counts that user out (its delete does not, nor does
        # deleting the interface): a new interface that gets the freed
        # sw_if_index starts counted, so its first user makes no 0 -> 1
        # transition and IPv4 stays off ("ip4-not-enabled" drops the host's
        # packets). A steal after a restore met exactly that; the node turns
        # the drop off itself (idempotent: removing a feature not there is a no-op).
        for arc in ("ip4-unicast", "ip4-multicast"):
            self.call("feature_enable_disable", sw_if_index=sw, enable=False, arc_name=arc,
                      feature_name="ip4-not-enabled")

    def delete(self, key, v: StnRule, metadata, ctx):
        # the plugin finds a rule by its address alone
        try:
            self.call("stn_add_del_rule", ip_address=v.ip, sw_if_index=self.ifs.index(v.ifname) or 0,
                      is_add=False)
        except VppApiError as e:
            if e.retval != -6:  # no such rule: gone already
                raise

    def retrieve(self, correlate, ctx):
        names = self.ifs.by_index()
        return [Retrieved(stn_key(str(d.ip_address)), StnRule(str(d.ip_address), names[d.sw_if_index]))
                for d in self.api.dump("stn_rules_dump") if d.sw_if_index in names]
