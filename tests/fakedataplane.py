"""A fake data plane: the whole :class:`agent.dataplane.Dataplane` protocol
over dicts, for tests without root (not collected).

:class:`FakeKernel` holds what "really" exists and can be told to fail an
operation; objects carry an owner tag, and ``retrieve`` returns only ours --
so resync, drift detection and "never delete what is not ours" behave as
they do on a real data plane. It passes the data-plane contract suite
(``tests/dataplane_contract.py``), which is what makes it a fair stand-in.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

from agent.dataplane import NodeFacts, PodInterface, PolicyDelta
from agent.errors import InvalidInput, NotSupported
from agent.model.diag import InterfaceCounters, Session
from agent.reconciler import Dependency, Descriptor, Retrieved

OURS = "contiv:"


@dataclass(frozen=True)
class PodLink:
    """A host-side interface paired with ``ifname`` in ``netns`` (a veth, say)."""

    host_if: str
    netns: str
    ifname: str
    ips: tuple[str, ...]
    mtu: int
    owner: str


@dataclass(frozen=True)
class HostRoute:
    dst: str
    dev: str


@dataclass(frozen=True)
class Thing:
    """Any other object (node gateway, tunnel, translation, policy...)."""

    what: str
    data: tuple = ()
    owner: str = OURS + "node"


def fake_mac(seed: str) -> str:
    h = hashlib.sha1(seed.encode()).digest()
    return "02:" + ":".join(f"{b:02x}" for b in h[:5])


def host_ifname(container_id: str, ifname: str) -> str:
    return "h" + hashlib.sha1(f"{container_id}/{ifname}".encode()).hexdigest()[:12]


def link_key(host_if: str) -> str:
    return f"fake/link/{host_if}"


class FakeKernel:
    """What "really" exists, and failures to inject: (op, key) -> exception."""

    def __init__(self) -> None:
        self.links: dict[str, PodLink] = {}
        self.routes: dict[str, HostRoute] = {}
        self.things: dict[str, Thing] = {}  # key -> thing
        self.fail: dict[tuple[str, str], Exception] = {}
        self.log: list[tuple[str, str]] = []

    def check(self, op: str, key: str) -> None:
        err = self.fail.get((op, key))
        if err is not None:
            raise err

    def record(self, op: str, key: str) -> None:
        self.check(op, key)
        self.log.append((op, key))


class LinkDescriptor(Descriptor):
    name = "fake-link"
    key_prefix = "fake/link/"

    def __init__(self, kernel: FakeKernel) -> None:
        self.k = kernel

    def validate(self, key, value):
        if not value.ips:
            raise InvalidInput("a pod link needs an address")
        if len(value.host_if) > 15:
            raise InvalidInput(f"interface name {value.host_if!r} is longer than 15 bytes")

    def create(self, key, value, ctx):
        self.k.record("create", key)
        self.k.links[value.host_if] = value
        return {"mac": fake_mac(value.host_if), "pod_mac": fake_mac(value.host_if + "/pod")}

    def delete(self, key, value, metadata, ctx):
        self.k.record("delete", key)
        self.k.links.pop(value.host_if, None)

    def retrieve(self, correlate, ctx):
        return [Retrieved(f"{self.key_prefix}{link.host_if}", link,
                          {"mac": fake_mac(link.host_if), "pod_mac": fake_mac(link.host_if + "/pod")})
                for link in self.k.links.values() if link.owner.startswith(OURS)]


class RouteDescriptor(Descriptor):
    name = "fake-route"
    key_prefix = "fake/route/"

    def __init__(self, kernel: FakeKernel) -> None:
        self.k = kernel

    def dependencies(self, key, value):
        return [Dependency("interface-exists", f"fake/link/{value.dev}")]

    def create(self, key, value, ctx):
        self.k.record("create", key)
        self.k.routes[value.dst] = value

    def delete(self, key, value, metadata, ctx):
        self.k.record("delete", key)
        self.k.routes.pop(value.dst, None)

    def retrieve(self, correlate, ctx):
        return [Retrieved(f"{self.key_prefix}{r.dst}", r) for r in self.k.routes.values()]


class ThingDescriptor(Descriptor):
    """One descriptor per kind of thing (``fake/<kind>/``), tagged by owner."""

    supports_update = True

    def __init__(self, kernel: FakeKernel, kind: str) -> None:
        self.k = kernel
        self.name = f"fake-{kind}"
        self.key_prefix = f"fake/{kind}/"

    def create(self, key, value, ctx):
        self.k.record("create", key)
        self.k.things[key] = value

    def update(self, key, old, new, metadata, ctx):
        self.k.record("update", key)
        self.k.things[key] = new

    def delete(self, key, value, metadata, ctx):
        self.k.record("delete", key)
        self.k.things.pop(key, None)

    def retrieve(self, correlate, ctx):
        return [Retrieved(k, v) for k, v in self.k.things.items()
                if k.startswith(self.key_prefix) and v.owner.startswith(OURS)]


THING_KINDS = ("node", "svc", "pol")


class FakeServiceRenderer:
    """One translation per Service port; a shared value counting Services;
    one value per local pod."""

    endpoint_limit = 64

    def __init__(self) -> None:
        self._services: set = set()
        self._last_count = -1

    def reset(self) -> None:
        self._services.clear()
        self._last_count = -1


    def nodes(self, t) -> bool:
        return False
    def service(self, key, ports: Sequence[Any]) -> dict[str, object]:
        ns, name = key
        out = {}
        for sp in ports:
            fronts = tuple(sorted(f"{f.ip or '*'}:{f.port}" for f in sp.frontends))
            eps = tuple(f"{e.ip}:{e.port}" for e in sp.endpoints[:self.endpoint_limit])
            out[f"fake/svc/{ns}/{name}/{sp.name or sp.protocol}"] = Thing(
                "translation", (sp.protocol, fronts, eps or ("reject",)), f"{OURS}svc:{ns}/{name}")
        if out:
            self._services.add(key)
        else:
            self._services.discard(key)
        return out

    def local_pods(self, changes: Mapping[str, str | None]) -> dict[str, dict]:
        return {f"svc-fakepod/{ref}": ({f"fake/svc/~pod/{ref}": Thing("hairpin", (ip,))} if ip else {})
                for ref, ip in changes.items()}

    def shared(self, force: bool = False) -> dict[str, dict]:
        n = len(self._services)
        if not force and n == self._last_count:
            return {}
        self._last_count = n
        return {"svc-fakeshared": {"fake/svc/~shared": Thing("services", (n,))}}

    def describe(self, values: Mapping[str, object]) -> list[str]:
        return [f"{v.data[0]} {','.join(v.data[1])} -> {','.join(v.data[2])}" for v in values.values()]


class FakePolicyRenderer:
    """One value per policy rendered here (its rules as text, peers resolved to
    addresses) and one per isolated local pod."""

    def reset(self) -> None:
        pass

    def render(self, delta: PolicyDelta, pods: Mapping[str, Any]):
        parts: dict[str, dict] = {}
        for ref, cp in delta.policies.items():
            if cp is None or ref not in delta.here:
                parts[f"pol/{ref}"] = {}
                continue
            rules = tuple((r.direction, r.index, tuple(sorted(
                ip for pe in r.peers or () for ip in
                ((pods[p].ip for p in pe.pods if p in pods) if pe.kind == "pods" else (pe.cidr,)))),
                tuple(p.text() for p in r.ports)) for r in cp.rules)
            parts[f"pol/{ref}"] = {f"fake/pol/{ref}": Thing("policy", rules, f"{OURS}netpol:{ref}")}
        for ref, (pod, ingress, egress) in delta.dispatch.items():
            parts[f"polpod/{ref}"] = {} if pod is None or not (ingress or egress) else {
                f"fake/pol/~pod/{ref}": Thing("dispatch", (pod.ip, ingress, egress))}
        return parts, {}  # moves are not patched in: the fake shows peers as last compiled


class FakeDataplane:
    """See the module docstring. ``kernel`` may be shared with the test."""

    name = "fake"

    def __init__(self, kernel: FakeKernel | None = None, *, mtu: int = 1450, cfg=None,
                 memif: bool = False) -> None:
        self.kernel = kernel or FakeKernel()
        self._mtu = mtu
        self.supports_memif = memif  # a memif: a route to its address, a socket in the result
        self.host_in_subnet, self.host_address = False, ""
        self.not_ready = ""

    def open(self, cfg) -> NodeFacts:
        ip = getattr(cfg, "node_ip", "") or "192.168.0.1"
        return NodeFacts("fake0", ip, (ip,), getattr(cfg, "mtu", 0) or self._mtu)

    def descriptors(self) -> list:
        return [LinkDescriptor(self.kernel), RouteDescriptor(self.kernel)] + [
            ThingDescriptor(self.kernel, k) for k in THING_KINDS]

    def ready(self) -> str:
        return self.not_ready

    def generation(self) -> int:
        return 1

    def render_node(self, t) -> dict[str, object]:
        out: dict[str, object] = {f"fake/node/gw/{g}": Thing("gateway", (g,)) for g in t.me.gateways}
        for p in t.peers:
            out[f"fake/node/tunnel/{p.name}"] = Thing("tunnel", (p.node_ip, t.vni, p.pod_subnets))
        return out

    def render_pod(self, p) -> dict[str, object]:
        h = host_ifname(p.container_id, p.ifname)
        out: dict[str, object] = {link_key(h): PodLink(h, p.netns, p.ifname, p.ips, p.mtu,
                                                       f"{OURS}pod:{p.pod_ref}")}
        for ip in p.ips + ((p.memif,) if p.memif else ()):
            out[f"fake/route/{ip}"] = HostRoute(ip, h)
        return out

    def pod_interfaces(self, p, metadata: Callable[[str], Any]) -> tuple[PodInterface, ...]:
        h = host_ifname(p.container_id, p.ifname)
        meta = metadata(link_key(h)) or {}
        out = PodInterface(h, meta.get("mac", "")), PodInterface(p.ifname, meta.get("pod_mac", ""),
                                                                 p.netns)
        if p.memif:
            out += (PodInterface("memif-" + p.ifname, "", p.netns, "@fake/memif"),)
        return out

    def pod_host_if(self, container_id: str, ifname: str) -> str:
        return host_ifname(container_id, ifname)

    def service_renderer(self) -> FakeServiceRenderer:
        return FakeServiceRenderer()

    def policy_renderer(self) -> FakePolicyRenderer:
        return FakePolicyRenderer()

    def prefetch(self) -> None:
        pass

    def wait_prefetch(self) -> None:
        pass

    def discard_prefetch(self) -> None:
        pass

    def stn_keys(self) -> tuple[str, ...]:
        return ()

    def close(self) -> None:
        pass

    def counters(self, pods: Mapping[str, str]) -> list[InterfaceCounters]:
        return [InterfaceCounters(name, owner, rx_packets=len(self.kernel.log))
                for name, owner in [("fake0", "node"), *pods.items()] if name == "fake0"
                or name in self.kernel.links]

    def sessions(self) -> list[Session]:
        return []

    def session_limit(self) -> int | None:
        return None

    def sockets(self, netns: str) -> list:
        raise NotSupported("the fake data plane's pods have no network namespaces")

    def trace_start(self, flow):
        raise NotSupported("the fake data plane carries no packets")

    def trace_collect(self, handle) -> list:
        raise NotSupported("the fake data plane carries no packets")

    def cli(self, command: str) -> str:
        raise NotSupported("the fake data plane has no CLI")

    def dump(self, what: str) -> list[dict]:
        if what == "interfaces":
            return [{"name": n, "owner": link.owner} for n, link in sorted(self.kernel.links.items())]
        raise NotSupported(f"the fake data plane has no {what}")
