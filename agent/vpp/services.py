"""Kubernetes Services in VPP: the cnat plugin (a :class:`agent.dataplane.ServiceRenderer`).

Why cnat and not nat44-ed (measured on VPP 26.10, docs/vpp-services.md): cnat
can SNAT *only* external traffic that goes to an endpoint on another node
(a source per endpoint), so a local endpoint keeps the client's address even
with ``externalTrafficPolicy: Cluster``; nat44-ed's twice-NAT is per mapping
(all endpoints or none). Programming costs the same order (10,000 Services x
5 endpoints: cnat ~2 s, nat44-ed ~1.3 s; one endpoint change < 1 ms each).

How a Service port is held (one :class:`~agent.vpp.svcdesc.CnatTranslation`
per frontend, i.e. per cluster IP, node address and external IP):

* a **cluster IP** is translated where pods send (cnat's feature on every pod
  interface, :func:`pod_values`), to every ready endpoint -- or to the local
  ones with ``internalTrafficPolicy: Local`` -- with the client's address
  kept; the translation has no FIB entry;
* an **external frontend** (node port on every node address, external IP,
  load-balancer IP) is a FIB entry of cnat's too, so traffic from the uplink
  is translated where it is routed; an endpoint on another node gets this
  node's gateway as source (so the answer comes back here), a local one
  keeps the client's address; ``externalTrafficPolicy: Local``: local
  endpoints only, none -- a drop path;
* a **node port of another node**, reached from a pod here, is translated
  here as a cluster IP is (no FIB entry): sent on, it would be translated in
  that node's FIB, where cnat learns the pod's address as a client of its
  own and then mistranslates flows to that pod (measured);
* **session affinity**: the flow hash covers the client address only (Maglev
  keeps most clients on their endpoint when endpoints change). There is no
  timeout: a client keeps its endpoint while the endpoints stay the same;
* **no endpoint**: a cluster-IP port has no translation but an unreach
  route for the cluster IP (as the Service CIDR's, :func:`node_values`, for
  any port nothing translates): VPP answers ICMP host unreachable (TCP
  connects fail at once; Linux reports it to UDP sockets only with
  IP_RECVERR); an external frontend is translated to an address of the
  Service CIDR's route (its last address), and cnat translates the ICMP error
  back; without a known Service CIDR it has no translation (UDP: ICMP port
  unreachable from VPP itself; TCP: dropped);
* **hairpin** (a pod reaching itself): cnat's Kubernetes SNAT policy, with
  every pod interface listed, SNATs it to the gateway.

The renderer keeps no state but which Service holds which frontend (two
Services claiming one external IP and port: the first keeps it). The
translations' descriptor is in :mod:`agent.vpp.svcdesc`; this module holds
the fixed parts' (cnat on our interfaces, ``vpp/cnatif/<if>``; the SNAT
policy, ``vpp/cnatsnat/default``).
"""
from __future__ import annotations

import ipaddress
import logging
import socket
import struct
from dataclasses import dataclass
from typing import Callable, Mapping, Sequence

from agent.errors import InvalidInput
from agent.model.diag import Session
from agent.reconciler import Dependency, Retrieved
from agent.vpp import svcdesc as D
from agent.vpp.base import VppDescriptor
from agent.vpp.errors import VppApiError
from agent.vpp.values import BVI, NONE, Route, if_key_of, route_key

log = logging.getLogger(__name__)

#: every message this module and its descriptors send (checked at connect)
MESSAGES = (
    "cnat_translation_update", "cnat_translation_del", "cnat_translation_dump",
    "cnat_session_dump", "cnat_set_snat_addresses_v2", "cnat_snat_addresses_dump",
    "cnat_set_snat_policy", "cnat_snat_policy_add_del_if", "feature_cnat_enable_disable",
    "feature_enable_disable", "feature_is_enabled", "ip_address_dump", "sw_interface_dump",
    "cli_inband",
)
_PROTO = {"TCP": "tcp", "UDP": "udp", "SCTP": "sctp"}
_IP_PROTO_NAMES = {1: "icmp", 6: "tcp", 17: "udp", 132: "sctp"}
SESSION_IS_RETURN = 1 << 4  # cnat_session.h


# ------------------------------------------------------------ the fixed parts
@dataclass(frozen=True, slots=True)
class CnatInterface:
    """cnat on one of our interfaces. ``mode``:

    * ``pod``: the whole feature set (``feature_cnat_enable_disable``): what
      the pod sends is translated on input; answers are translated back on
      output; the SNAT policy decides on output (``hairpin``: this interface
      is one of its pod interfaces, so a pod reaching itself is SNATed);
    * ``return``: only session lookup on input and the return-session
      writeback on output -- the pods' gateway, through which answers from
      other nodes arrive and pod flows to other nodes leave. Not the whole
      set: cnat's output rewrite there would rewrite again the outer header
      of tunnelled packets (measured: VXLAN packets left with the inner
      flow's addresses)."""

    ifname: str
    mode: str
    hairpin: bool = False


@dataclass(frozen=True, slots=True)
class CnatSnat:
    """The SNAT policy (Kubernetes flavour) with the address of ``ifname``."""

    ifname: str


def interface_key(ifname: str) -> str:
    return f"vpp/cnatif/{ifname}"


class CnatInterfaceDescriptor(VppDescriptor):
    """cnat's features on our interfaces (see :class:`CnatInterface`)."""

    name = "vpp-cnat-interface"
    key_prefix = "vpp/cnatif/"
    FEATURES = {"return": (("ip4-unicast", "cnat-lookup-ip4"), ("ip4-output", "cnat-writeback-ip4"))}

    def validate(self, key, v: CnatInterface) -> None:
        if key != interface_key(v.ifname) or v.mode not in ("pod", "return"):
            raise InvalidInput(f"{key}: bad cnat interface setting {v}")
        if v.hairpin and v.mode != "pod":
            raise InvalidInput(f"{key}: hairpin SNAT needs the whole cnat feature set (mode pod)")

    def dependencies(self, key, v: CnatInterface):
        deps = [Dependency("interface-exists", if_key_of(v.ifname))]
        if v.hairpin:
            deps.append(Dependency("snat-policy-exists", D.SNAT_KEY))
        return tuple(deps)

    def _set(self, v: CnatInterface, sw: int, on: bool) -> None:
        if v.mode == "pod":
            if not on and v.hairpin:
                self.call("cnat_snat_policy_add_del_if", sw_if_index=sw, is_add=0,
                          table=D.SNAT_TABLE_POD)
            self.call("feature_cnat_enable_disable", sw_if_index=sw, enable_disable=on)
            if on and v.hairpin:
                self.call("cnat_snat_policy_add_del_if", sw_if_index=sw, is_add=1,
                          table=D.SNAT_TABLE_POD)
            return
        for arc, feature in self.FEATURES[v.mode]:
            self.call("feature_enable_disable", sw_if_index=sw, enable=on, arc_name=arc,
                      feature_name=feature)

    def create(self, key, v: CnatInterface, ctx):
        self._set(v, self.sw(v.ifname, ctx), True)

    def delete(self, key, v: CnatInterface, metadata, ctx):
        sw = self.ifs.index(v.ifname)
        if sw is None:
            return  # the interface went, and its features with it
        try:
            self._set(v, sw, False)
        except VppApiError as e:
            if e.retval not in D.GONE:
                raise

    def retrieve(self, correlate, ctx):
        names = self.ifs.names()
        if not names:
            return []
        order = sorted(names)

        def enabled(arc: str, feature: str) -> dict[str, bool]:
            replies = self.api.call_many("feature_is_enabled", [
                {"arc_name": arc, "feature_name": feature, "sw_if_index": names[n]} for n in order])
            return {n: bool(r.is_enabled) for n, r in zip(order, replies)}
        full = enabled("ip4-unicast", "cnat-input-ip4")
        lookup = enabled("ip4-unicast", "cnat-lookup-ip4")
        pods = self._snat_pod_interfaces()
        out = []
        for n in order:
            if full[n]:
                v = CnatInterface(n, "pod", n in pods)
            elif lookup[n]:
                v = CnatInterface(n, "return")
            else:
                continue
            out.append(Retrieved(interface_key(n), v))
        return out

    def _snat_pod_interfaces(self) -> set[str]:
        """Our interfaces listed as pod interfaces of the SNAT policy. VPP has
        no dump for that list; ``show cnat snat-policy`` prints it by VPP's
        interface names, which sw_interface_dump maps to our indexes."""
        try:
            text = self.api.cli("show cnat snat-policy")
        except VppApiError:
            return set()  # "no default snat policy" (retval -1): nothing is listed in one
        listed, inside = set(), False
        for line in text.splitlines():
            if line.strip() == "k8s pod interfaces:":
                inside = True
            elif inside and line.startswith(" ") and line.strip():
                listed.add(line.strip())
            elif inside:
                break
        if not listed:
            return set()
        ours = self.ifs.by_index()
        return {ours[d.sw_if_index] for d in self.api.dump("sw_interface_dump", sw_if_index=NONE)
                if d.interface_name in listed and d.sw_if_index in ours}


class CnatSnatDescriptor(VppDescriptor):
    """The SNAT policy: its address follows ``ifname``'s (the pods' gateway).
    No FIB entry for that address (flag NO_CLIENT): with one, cnat would take
    every packet to the gateway, pods' pings included, and drop it."""

    name = "vpp-cnat-snat"
    key_prefix = "vpp/cnatsnat/"

    def validate(self, key, v: CnatSnat) -> None:
        if key != D.SNAT_KEY:
            raise InvalidInput(f"the cnat SNAT policy is one value, {D.SNAT_KEY}, not {key}")

    def dependencies(self, key, v: CnatSnat):
        return (Dependency("interface-exists", if_key_of(v.ifname)),)

    def _addresses(self, sw: int) -> None:
        self.call("cnat_set_snat_addresses_v2", fwd_fib_index=0, ret_fib_index=0, snat_ip4="0.0.0.0",
                  snat_ip6="::", sw_if_index=sw, flags=D.SNAT_FLAG_NO_CLIENT if sw != NONE else 0)

    def create(self, key, v: CnatSnat, ctx):
        self._addresses(self.sw(v.ifname, ctx))
        self.call("cnat_set_snat_policy", policy=D.SNAT_POLICY_K8S)

    def delete(self, key, v: CnatSnat, metadata, ctx):
        try:
            self._addresses(NONE)  # no interface, no address: VPP removes the policy
        except VppApiError as e:
            if e.retval not in D.GONE:
                raise

    def retrieve(self, correlate, ctx):
        names = self.ifs.by_index()
        # the policy's kind is not in the dump: what is ours is ours by its interface
        return [Retrieved(D.SNAT_KEY, CnatSnat(names[d.sw_if_index]))
                for d in self.api.dump("cnat_snat_addresses_dump") if d.sw_if_index in names][:1]


def descriptors(api, ifs, owned: tuple[str, ...]) -> list:
    """The Service descriptors, in retrieve order (the policy before the
    interfaces listed in it). ``owned``: pod CIDR and Service CIDR."""
    return [CnatSnatDescriptor(api, ifs), CnatInterfaceDescriptor(api, ifs),
            D.CnatTranslationDescriptor(api, ifs, owned)]


def node_values(bvi_ifname: str, service_cidr: str) -> dict[str, object]:
    """What every node needs for Services: the SNAT policy (hairpin) with the
    gateway's address; session lookup and return-session writeback on the
    gateway (answers from other nodes arrive through it); an unreach route
    for the Service CIDR (a port without endpoints is rejected). Nothing on
    the uplink: external frontends are FIB entries, and cnat's output node
    there would rewrite tunnelled packets' outer headers."""
    out: dict[str, object] = {
        D.SNAT_KEY: CnatSnat(bvi_ifname),
        interface_key(bvi_ifname): CnatInterface(bvi_ifname, "return"),
    }
    if service_cidr:
        net = str(ipaddress.ip_network(service_cidr))
        out[route_key(0, net)] = Route(net, kind="unreach")
    return out


def pod_values(pod_ifname: str) -> dict[str, object]:
    """What a local pod's VPP interface needs: cnat's features (its Service
    traffic is translated as it enters) and hairpin SNAT."""
    return {interface_key(pod_ifname): CnatInterface(pod_ifname, "pod", hairpin=True)}


class CnatServiceRenderer:
    """Service ports to cnat translations (see the module docstring).

    ``node_ips()``: this node's addresses at call time (node ports answer on
    each); ``service_cidr``: where the reject target of external frontends
    lies (empty: none); ``peers``: the other nodes' addresses, whose node
    ports this node's pods reach through a translation here, kept current
    by :meth:`nodes` (a change rebuilds every Service).
    External traffic to remote endpoints SNATs to the BVI's address."""

    #: one translation balances over its paths in a VPP load balancer; a
    #: thousand keeps the request within one API message and Maglev's table
    endpoint_limit = 1000

    def __init__(self, node_ips: Callable[[], Sequence[str]], service_cidr: str = "",
                 peers: Sequence[str] = ()) -> None:
        self.node_ips = node_ips
        self.peers = tuple(sorted(peers))
        self.reject_ip = (str(ipaddress.ip_network(service_cidr).broadcast_address)
                          if service_cidr else "")
        self._owner: dict[str, tuple[str, str]] = {}  # translation key -> Service
        self._keys: dict[tuple[str, str], set[str]] = {}  # Service -> its translation keys
        self._warned: set[tuple[str, tuple[str, str]]] = set()

    def reset(self) -> None:
        self._owner.clear()
        self._keys.clear()


    def nodes(self, t) -> bool:
        peers = tuple(sorted(p.node_ip for p in t.peers))
        changed, self.peers = peers != self.peers, peers
        return changed
    def service(self, key: tuple[str, str], ports: Sequence) -> dict[str, object]:
        values: dict[str, object] = {}
        for sp in ports:
            for k, v in self._port(sp):
                owner = self._owner.get(k)
                if owner is not None and owner != key:
                    if (k, key) not in self._warned:
                        self._warned.add((k, key))
                        log.warning("service %s/%s: %s is already held by service %s/%s (skipped)",
                                    *key, k, *owner)
                    continue
                values[k] = v
        for k in self._keys.pop(key, set()) - set(values):
            if self._owner.get(k) == key:
                del self._owner[k]
        if values:
            self._keys[key] = set(values)
            for k in values:
                self._owner[k] = key
        return values

    def _port(self, sp):
        proto = _PROTO[sp.protocol]
        for f in sp.frontends:
            affinity = bool(sp.affinity_timeout)
            if f.ip or not f.external:
                ips, peers = [f.ip], []
            else:  # a node port: on this node's addresses, and pods' way to the peers'
                ips = sorted(a for a in self.node_ips() if ":" not in a)  # IPv4 Services only
                peers = sorted({a for a in self.peers if ":" not in a} - set(ips))
            if not sp.endpoints and not f.external:
                # rejected by an unreach route for the cluster IP (the Service
                # CIDR's says the same, where it is known): a translation to
                # the reject target would answer an ICMP error that cnat does
                # not translate back for pods (measured: the client times out)
                yield route_key(0, f"{f.ip}/32"), Route(f"{f.ip}/32", kind="unreach")
                continue
            paths = self._paths(sp, f.port, f.external)
            if paths:
                for ip in ips:
                    yield D.translation_key(proto, ip, f.port), D.CnatTranslation(
                        ip, f.port, proto, paths, client=f.external, affinity=affinity)
            # Pods reach another node's node port through a translation here
            # (no FIB entry: what pods send only), balanced as a cluster IP.
            # Sent on to that node, their traffic would be translated there in
            # the FIB, where cnat learns the pod's address as a client and
            # then mistranslates flows to it (docs/vpp-services.md).
            inner = self._paths(sp, f.port, False) if peers and sp.endpoints else ()
            for ip in peers if inner else ():
                yield D.translation_key(proto, ip, f.port), D.CnatTranslation(
                    ip, f.port, proto, inner, client=False, affinity=affinity)

    def _paths(self, sp, port: int, external: bool) -> tuple:
        """The paths of a frontend of ``sp`` on ``port``; empty: no translation."""
        local = sp.external_local if external else sp.internal_local
        eps = (sp.local_endpoints if local else sp.endpoints)[:self.endpoint_limit]
        if not sp.endpoints:
            if not self.reject_ip:
                return ()  # no reject target known: VPP itself answers (or drops)
            return (D.CnatPath(self.reject_ip, port),)
        if not eps:
            return (D.CnatPath("", port),)  # traffic policy Local, none here: drop
        return tuple(D.CnatPath(e.ip, e.port, BVI if external and not e.local else "")
                     for e in eps)

    def local_pods(self, changes: Mapping[str, str | None]) -> dict[str, dict]:
        return {}  # hairpin is every pod interface's SNAT policy membership (pod_values)

    def shared(self, force: bool = False) -> dict[str, dict]:
        return {}  # nothing is shared between Services (node_values holds the fixed parts)

    def describe(self, values: Mapping[str, object]) -> list[str]:
        """``tcp 10.96.0.10:80 -> 10.1.1.2:8080, 10.1.2.2:8080 (snat loop0)``."""
        out = []
        for v in values.values():
            if isinstance(v, Route):
                out.append(f"{v.prefix.split('/')[0]}: rejected (ICMP unreachable)")
            if not isinstance(v, D.CnatTranslation):
                continue
            eps = ", ".join(("drop" if not p.ip else f"{p.ip}:{p.port}")
                            + (f" (snat {p.snat})" if p.snat else "") for p in v.paths)
            extra = (" [fib]" if v.client else "") + (" [affinity]" if v.affinity else "")
            out.append(f"{v.proto} {v.vip}:{v.port} -> {eps}{extra}")
        return out


def _swap16(p: int) -> int:
    # cnat_session_dump sends ports in network byte order inside a field that
    # vpp_papi reads as big-endian: swapped once more here
    return ((p & 0xFF) << 8) | (p >> 8)


#: cnat_session_details, packed (26.10: _vl_msg_id, context, then the session:
#: two addresses (family + 16 bytes), two ports, protocol, ts_index, flags);
#: tests/unit/test_vpp_services.py checks it against vpp_papi's packing
_SESSION = struct.Struct(">HIB16sB16sHHBII")


def _addr(af: int, raw: bytes) -> str:
    return socket.inet_ntop(socket.AF_INET6, raw) if af else socket.inet_ntop(socket.AF_INET, raw[:4])


def sessions(api) -> list[Session]:
    """cnat's sessions as connections: each forward session (the flow as
    the client sent it) with what its return session says answers it.
    Decoded by hand from the raw details (``dump_raw``): 20,000 records
    through vpp_papi's decoder took 0.9 s, this a tenth of it."""
    fwd: list[tuple[int, tuple]] = []
    ret: dict[int, tuple] = {}
    unpack = _SESSION.unpack_from
    for raw in api.dump_raw("cnat_session_dump"):
        _, _, af0, a0, af1, a1, p0, p1, proto, ts, flags = unpack(raw)
        item = (_IP_PROTO_NAMES.get(proto, str(proto)), _addr(af0, a0), _swap16(p0), _addr(af1, a1), _swap16(p1))
        if flags & SESSION_IS_RETURN:
            ret[ts] = item
        else:
            fwd.append((ts, item))
    out = []
    for ts, (proto, src, sport, dst, dport) in fwd:
        back = ret.get(ts)
        reply_src, reply_sport = (back[1], back[2]) if back else (dst, dport)
        out.append(Session(proto, src, sport, dst, dport, reply_src, reply_sport))
    return sorted(out, key=lambda s: (s.protocol, s.src, s.sport, s.dst, s.dport))
