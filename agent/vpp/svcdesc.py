"""Services in VPP's cnat plugin: translations, their descriptor and batch.

The design -- which traffic cnat translates where, and why -- is in
:mod:`agent.vpp.services` (which also holds the descriptors of the fixed
parts: cnat on interfaces, the SNAT policy) and docs/vpp-services.md.

* ``vpp/cnat/<proto>/<vip>/<port>`` -- :class:`CnatTranslation`: a frontend
  (cluster IP, node address, external IP) and the endpoints it balances over.

cnat has no tags. A translation is ours when its VIP lies in the prefixes the
plane owns (Service CIDR), is an address of one of our interfaces (node
ports), is a VIP we want (external IPs), or when every endpoint it balances
over lies in the owned prefixes (pod CIDR) -- an external IP a Service
dropped while the agent was down is found that way too.
"""
from __future__ import annotations

import functools
import ipaddress
from dataclasses import dataclass

from agent.errors import InvalidInput
from agent.reconciler import Dependency, Retrieved
from agent.reconciler.plan import OpKind
from agent.vpp.base import VppDescriptor, call_each
from agent.vpp.errors import VppApiError
from agent.vpp.values import NONE, if_key_of, route_key

PROTOCOLS = {"tcp": 6, "udp": 17, "sctp": 132}
_PROTO_NAMES = {v: k for k, v in PROTOCOLS.items()}
# cnat.api enums (cnat_translation_flags, cnat_lb_type, cnat_snat_policies,
# cnat_snat_policy_table, cnat_snat_policy_flags) and ip_flow_hash_config_v2
FLAG_ALLOC_PORT, FLAG_NO_CLIENT = 1, 8
LB_DEFAULT, LB_MAGLEV = 0, 1
FLOW_HASH_SRC_IP = 1
SNAT_POLICY_K8S = 2
SNAT_TABLE_POD = 2
SNAT_FLAG_NO_CLIENT = 2
#: an endpoint resolved from an interface without an address never resolves:
#: a path to it makes a load balancer of no usable bucket, which cnat drops
#: (local0 always exists and never has an address)
DROP_IF = 0
SNAT_KEY = "vpp/cnatsnat/default"
# retvals that mean "already gone" when deleting
GONE = (-2, -6, -30, -169)


@dataclass(frozen=True, slots=True)
class CnatPath:
    """One endpoint of a translation. ``ip`` empty: drop (no usable endpoint).
    ``snat``: our interface whose address becomes the packet's source -- set
    for external traffic to an endpoint on another node, so its answer comes
    back through this node."""

    ip: str
    port: int
    snat: str = ""


@dataclass(frozen=True, slots=True)
class CnatTranslation:
    """A frontend (``vip``:``port``/``proto``) balanced over ``paths``.

    ``client``: cnat also puts the VIP in the FIB, so that traffic from
    anywhere (the uplink) is translated -- external frontends; without it
    only what pods send is (their interfaces' cnat feature), which is all a
    cluster IP needs and costs no FIB entry. ``affinity``: a client always
    gets the same endpoint (the flow hash covers the source address only,
    with Maglev so that an endpoint change moves few clients)."""

    vip: str
    port: int
    proto: str
    paths: tuple[CnatPath, ...]
    client: bool = False
    affinity: bool = False


def translation_key(proto: str, vip: str, port: int) -> str:
    return f"vpp/cnat/{proto}/{vip}/{port}"


def _ip4(text: str) -> bool:
    try:
        return ipaddress.ip_address(text).version == 4
    except ValueError:
        return False


def _inside(ip: str, owned) -> bool:
    a = ipaddress.ip_address(ip)
    return any(a in n for n in owned if n.version == a.version)


@functools.lru_cache(maxsize=1 << 16)
def _address(text: str) -> ipaddress.IPv4Address:
    """An address object, parsed once: the validator and vpp_papi both take
    it as it is, where a string would be parsed by each, for every path of
    every request (a fifth of a 10,000-Service sync)."""
    return ipaddress.IPv4Address(text or "0.0.0.0")


class CnatTranslationDescriptor(VppDescriptor):
    """Translations, updated in place (one message per frontend whatever the
    change); many at once go through ``call_many`` (:class:`CnatBatch`).
    Metadata: ``{"id": n}`` (VPP's translation index)."""

    name = "vpp-cnat-translation"
    key_prefix = "vpp/cnat/"
    supports_update = True

    def __init__(self, api, ifs, owned) -> None:
        super().__init__(api, ifs)
        self.owned = tuple(ipaddress.ip_network(p) for p in owned)
        self.batch_group = CnatBatch(self)

    def validate(self, key, v: CnatTranslation) -> None:
        if not _ip4(v.vip) or key != translation_key(v.proto, v.vip, v.port):
            raise InvalidInput(f"key {key} does not name the IPv4 frontend {v.vip}:{v.port}/{v.proto}")
        if v.proto not in PROTOCOLS or not 0 < v.port < 65536:
            raise InvalidInput(f"frontend {v.vip}:{v.port}/{v.proto}: bad protocol or port")
        if not v.paths:
            # VPP 26.10 aborts on a translation without paths (vec_validate of
            # n_paths - 1): a frontend that must drop gets a drop path instead
            raise InvalidInput(f"frontend {v.vip}:{v.port}/{v.proto} has no path")
        for p in v.paths:
            if (p.ip and not _ip4(p.ip)) or not 0 <= p.port < 65536 or (p.snat and not p.ip):
                raise InvalidInput(f"frontend {v.vip}:{v.port}/{v.proto}: bad path {p}")

    def dependencies(self, key, v: CnatTranslation):
        deps = [Dependency("snat-interface-exists", if_key_of(s))
                for s in sorted({p.snat for p in v.paths if p.snat})]
        if v.client:
            # A FIB-entry translation forwards through what cnat's tracker of
            # each endpoint's FIB entry contributed when the path was made,
            # and VPP 26.10 does not refresh it when a route for exactly that
            # /32 appears later (measured: after a VPP restart the resync made
            # translations before the pods' routes, and the node port sent
            # local pods' traffic to loop0's glean). So a local endpoint (no
            # SNAT, inside the owned prefixes: a pod) waits for its pod's
            # route. A prefix's last address is the reject target, never a pod.
            deps += [Dependency("endpoint-route-exists", route_key(0, f"{p.ip}/32"))
                     for p in v.paths if p.ip and not p.snat and self._pod_address(p.ip)]
        return tuple(deps)

    def _pod_address(self, ip: str) -> bool:
        a = ipaddress.ip_address(ip)
        return any(a in n and a != n.broadcast_address for n in self.owned if n.version == a.version)

    def needs_recreate(self, key, old: CnatTranslation, new: CnatTranslation) -> bool:
        # VPP fixes the FIB entry's kind and the load balancer's kind and
        # hash when it first makes a translation; an update keeps them
        return (old.client, old.affinity) != (new.client, new.affinity)

    def request(self, v: CnatTranslation, ctx) -> dict:
        """The cnat_translation_update arguments of ``v``."""
        def ep(addr: str, port: int, sw: int = NONE) -> dict:
            return {"addr": _address(addr), "sw_if_index": sw, "if_af": 0, "port": port}
        paths = [{"dst_ep": ep(p.ip, p.port) if p.ip else ep("", p.port, DROP_IF),
                  "src_ep": ep("", 0, self.sw(p.snat, ctx) if p.snat else NONE), "flags": 0}
                 for p in v.paths]
        # complete as it is (n_paths included): fill() would only walk it
        # again, a third of the cost of a large sync
        return dict(translation={
            "vip": ep(v.vip, v.port), "id": NONE, "ip_proto": PROTOCOLS[v.proto],
            # real IP: cnat's FIB entry interposes on the address's own (a
            # node address keeps being the node's; a port without a
            # translation follows the FIB: the Service CIDR's unreach route)
            "is_real_ip": 1,
            "flags": FLAG_ALLOC_PORT if v.client else FLAG_NO_CLIENT,
            "lb_type": LB_MAGLEV if v.affinity else LB_DEFAULT,
            "flow_hash_config": FLOW_HASH_SRC_IP if v.affinity else 0,
            "n_paths": len(paths), "paths": paths})

    def retrieve(self, correlate, ctx):
        names = self.ifs.by_index()
        local = {str(getattr(d.prefix, "ip", d.prefix)).split("/")[0]  # node ports' VIPs
                 for sw in names for d in self.api.dump("ip_address_dump", sw_if_index=sw,
                                                        is_ipv6=False)}
        wanted = {(v.vip, v.port, v.proto) for v in correlate.values()}
        out = []
        for d in self.api.dump("cnat_translation_dump"):
            t = d.translation
            proto = _PROTO_NAMES.get(int(t.ip_proto))
            vip = str(t.vip.addr)
            if proto is None or not _ip4(vip):
                continue
            paths = []
            for p in t.paths:
                snat = names.get(p.src_ep.sw_if_index, "") if p.src_ep.sw_if_index != NONE else ""
                drop = p.dst_ep.sw_if_index == DROP_IF
                paths.append(CnatPath("" if drop else str(p.dst_ep.addr), p.dst_ep.port, snat))
            ours = (_inside(vip, self.owned) or vip in local or (vip, t.vip.port, proto) in wanted
                    or (paths and all(not p.ip or _inside(p.ip, self.owned) for p in paths)))
            if not ours:
                continue
            key = translation_key(proto, vip, t.vip.port)
            want = correlate.get(key)
            # the dump says nothing of the FIB entry's kind: take the desired one
            v = CnatTranslation(vip, t.vip.port, proto, tuple(paths), want.client if want else False,
                                int(t.lb_type) == LB_MAGLEV)
            out.append(Retrieved(key, v, {"id": t.id}))
        return out


class CnatBatch:
    """The batch group of translations: a run of creates/updates goes to VPP
    as one ``call_many`` of cnat_translation_update (VPP answers them in
    order; measured 10,000 x 5 endpoints in ~2 s against ~4 s one by one),
    a run of deletes as one of cnat_translation_del. Results per operation:
    metadata, or the exception of that one request."""

    def __init__(self, desc: CnatTranslationDescriptor) -> None:
        self.desc = desc

    def apply(self, ops, descriptors, ctx) -> list:
        results: list = [None] * len(ops)
        i = 0
        while i < len(ops):
            deleting = ops[i].kind is OpKind.DELETE
            j = i
            while j < len(ops) and (ops[j].kind is OpKind.DELETE) == deleting:
                j += 1
            self._run(ops, range(i, j), deleting, ctx, results)
            i = j
        return results

    def _run(self, ops, idx, deleting: bool, ctx, results: list) -> None:
        d = self.desc
        todo, reqs = [], []
        for k in idx:
            o = ops[k]
            try:
                if deleting:
                    tid = (ctx.metadata(o.key) or {}).get("id")
                    if tid is None:
                        continue  # nothing known to delete: gone already
                    reqs.append({"id": tid})
                else:
                    reqs.append(d.request(o.value, ctx))
                todo.append(k)
            except Exception as e:  # noqa: BLE001 -- this operation fails, not the batch
                results[k] = e
        if not reqs:
            return
        name = "cnat_translation_del" if deleting else "cnat_translation_update"
        for k, r in zip(todo, call_each(d.api, name, reqs)):
            if isinstance(r, VppApiError) and deleting and r.retval in GONE:
                continue  # gone already
            if isinstance(r, Exception):
                results[k] = r
            elif not deleting:
                results[k] = {"id": r.id}
