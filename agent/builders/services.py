"""Services: Kubernetes Services + EndpointSlices -> data-plane-neutral intents.

Pure; unit-tested without root. Semantics follow Kubernetes (and kube-proxy
where Kubernetes leaves it to the proxy):

* frontends: the cluster IP (not for headless Services), every node address
  on each ``nodePort`` (NodePort, LoadBalancer), ``externalIPs`` and the
  LoadBalancer ingress IPs -- the last three are *external*;
* endpoints: from the Service's EndpointSlices (label
  ``kubernetes.io/service-name``), port matched by name and protocol (the
  slice carries the target port already resolved per pod); only ready, not
  terminating endpoints (``ready`` unset means ready); endpoints whose target
  pod is unknown are skipped and reported;
* ``internalTrafficPolicy: Local`` -- cluster-IP traffic goes to endpoints on
  this node only (dropped when there is none); ``externalTrafficPolicy:
  Local`` -- the same for external frontends, with the client's source kept;
* ``sessionAffinity: ClientIP`` with its timeout;
* a Service port without any usable endpoint *rejects* (the data plane
  answers TCP RST / ICMP port unreachable) instead of black-holing.

Invalid Services (bad port, bad targetPort, node port outside the range)
produce no intent and one problem report, and nothing else is affected.
"""
from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass, field
from typing import NamedTuple

NODEPORT_RANGE = (30000, 32767)
PROTOCOLS = ("TCP", "UDP", "SCTP")
DEFAULT_AFFINITY_TIMEOUT = 10800


# Endpoint and Frontend are named tuples, not frozen dataclasses: a 10,000-
# Service sync makes 50,000 of them, and a frozen dataclass costs three times
# as much to construct (object.__setattr__ per field).
class Endpoint(NamedTuple):
    ip: str
    port: int
    node: str
    local: bool
    pod: str = ""  # "ns/name" of the target pod


class Frontend(NamedTuple):
    """``ip`` empty means "every address of this node" (a node port)."""

    ip: str
    port: int
    external: bool
    kind: str  # cluster-ip | node-port | external-ip | load-balancer


@dataclass(frozen=True, slots=True)
class ServicePort:
    """One port of one Service, with everything needed to render it."""

    service: str  # ns/name
    name: str  # the Service port's name ("" when unnamed)
    protocol: str
    frontends: tuple[Frontend, ...]
    endpoints: tuple[Endpoint, ...]  # usable ones, sorted
    affinity_timeout: int = 0  # seconds; 0: no session affinity
    external_local: bool = False
    internal_local: bool = False

    @property
    def id(self) -> str:
        return f"{self.service}:{self.name or self.protocol.lower()}"

    @property
    def local_endpoints(self) -> tuple[Endpoint, ...]:
        return tuple(e for e in self.endpoints if e.local)


@dataclass(slots=True)
class BuildResult:
    ports: list[ServicePort] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def _is_ipv4(text) -> bool:
    """Dotted-quad IPv4, as ``ipaddress.IPv4Address`` accepts it, at a tenth
    of the cost (it runs for every Service of a full sync)."""
    if not isinstance(text, str) or not text.isascii():
        return False
    try:
        socket.inet_pton(socket.AF_INET, text)
    except (OSError, ValueError):  # ValueError: an embedded NUL
        return False
    return True


def _version(text: str) -> int:
    """4 or 6 for an address in text, 0 for anything else."""
    try:
        return ipaddress.ip_address(text).version
    except ValueError:
        return 0


def _valid_port(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= 65535


def _ready(ep: dict) -> bool:
    cond = ep.get("conditions") or {}
    if cond.get("terminating") is True:
        return False
    return cond.get("ready") is not False  # nil means ready (EndpointConditions docs)


def build_service(svc: dict, slices: list[dict], pods: dict[tuple[str, str], dict], node: str,
                  *, nodeport_range: tuple[int, int] = NODEPORT_RANGE) -> BuildResult:
    """Intents for one Service. ``slices`` are that Service's EndpointSlices,
    ``pods`` every known pod by (namespace, name), ``node`` this node's name."""
    out = BuildResult()
    md = svc.get("metadata") or {}
    spec = svc.get("spec") or {}
    ref = f"{md.get('namespace', 'default')}/{md.get('name', '?')}"
    typ = spec.get("type", "ClusterIP")
    if typ == "ExternalName":
        return out
    cluster_ip = spec.get("clusterIP") or ""
    headless = cluster_ip in ("", "None")
    if not headless and not _is_ipv4(cluster_ip):
        if isinstance(cluster_ip, str) and _version(cluster_ip) == 6:
            out.problems.append(f"service {ref}: IPv6 cluster IP {cluster_ip} is not supported yet")
        else:
            out.problems.append(f"service {ref}: clusterIP {cluster_ip!r} is not an address")
        return out
    aff = 0
    if spec.get("sessionAffinity") == "ClientIP":
        aff = ((spec.get("sessionAffinityConfig") or {}).get("clientIP") or {}).get(
            "timeoutSeconds", DEFAULT_AFFINITY_TIMEOUT)
        if not isinstance(aff, int) or not 1 <= aff <= 86400:
            out.problems.append(f"service {ref}: sessionAffinity timeout {aff!r} is invalid")
            return out
    ext_local = spec.get("externalTrafficPolicy") == "Local" and typ in ("NodePort", "LoadBalancer")
    int_local = spec.get("internalTrafficPolicy") == "Local"
    ext = [(ip, "external-ip") for ip in spec.get("externalIPs") or []]
    if typ == "LoadBalancer":
        ext += [(i["ip"], "load-balancer") for i in ((svc.get("status") or {}).get("loadBalancer")
                                                    or {}).get("ingress") or []
                if isinstance(i, dict) and i.get("ip")]
    for ip, _ in ext:
        if not _is_ipv4(ip):
            out.problems.append(f"service {ref}: external IP {ip!r} is not an IPv4 address")
            return out
    # address -> kind; an address both in externalIPs and in the LoadBalancer
    # ingress is one frontend (an external IP)
    external_ips: dict[str, str] = {}
    for ip, kind in ext:
        external_ips.setdefault(ip, kind)

    # endpoints by (port name, protocol) from the slices
    by_port: dict[tuple[str, str], list[Endpoint]] = {}
    for sl in slices:
        if sl.get("addressType", "IPv4") != "IPv4":
            continue
        sports = sl.get("ports") or []
        for ep in sl.get("endpoints") or []:
            if not _ready(ep):
                continue
            tref = ep.get("targetRef") or {}
            pod_ref = ""
            if tref.get("kind") == "Pod":
                key = (tref.get("namespace", md.get("namespace", "default")), tref.get("name", ""))
                if key not in pods:
                    out.problems.append(f"endpointslice {md.get('namespace')}/"
                                        f"{(sl.get('metadata') or {}).get('name')}: endpoint "
                                        f"{ep.get('addresses')} points to unknown pod {key[0]}/{key[1]}")
                    continue
                pod_ref = f"{key[0]}/{key[1]}"
            ep_node = ep.get("nodeName") or ""
            for addr in ep.get("addresses") or []:
                for sp in sports:
                    if not _valid_port(sp.get("port")):
                        continue
                    k = (sp.get("name") or "", sp.get("protocol") or "TCP")
                    by_port.setdefault(k, []).append(
                        Endpoint(addr, sp["port"], ep_node, ep_node == node, pod_ref))

    for i, p in enumerate(spec.get("ports") or []):
        proto = p.get("protocol") or "TCP"
        pname = p.get("name") or ""
        if proto not in PROTOCOLS or not _valid_port(p.get("port")):
            out.problems.append(f"service {ref}: port #{i} ({p.get('port')!r}/{proto}) is invalid")
            continue
        tp = p.get("targetPort", p["port"])
        if not (_valid_port(tp) or (isinstance(tp, str) and tp and len(tp) <= 15)):
            out.problems.append(f"service {ref}: port {pname or p['port']}: targetPort {tp!r} is invalid")
            continue
        fronts = []
        if not headless:
            fronts.append(Frontend(cluster_ip, p["port"], False, "cluster-ip"))
        if typ in ("NodePort", "LoadBalancer") and "nodePort" in p:
            np = p["nodePort"]
            if not (_valid_port(np) and nodeport_range[0] <= np <= nodeport_range[1]):
                out.problems.append(f"service {ref}: nodePort {np!r} is outside "
                                    f"{nodeport_range[0]}-{nodeport_range[1]}")
                continue
            fronts.append(Frontend("", np, True, "node-port"))
        for ip, kind in external_ips.items():
            fronts.append(Frontend(ip, p["port"], True, kind))
        if not fronts:
            continue
        eps = sorted(set(by_port.get((pname, proto), [])), key=lambda e: (e.ip, e.port))
        out.ports.append(ServicePort(ref, pname, proto, tuple(fronts), tuple(eps), aff,
                                     ext_local, int_local))
    return out

