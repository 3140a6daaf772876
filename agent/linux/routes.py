"""Route descriptors: routes in the node's main table and inside pod namespaces.

Ours carry protocol :data:`RTPROT_CONTIV`; retrieve returns only those.
"""
from __future__ import annotations

import errno
import ipaddress

from agent.errors import InvalidInput, NotFound
from agent.linux.netns import Netlink, is_errno, nl_error
from agent.linux.values import RTPROT_CONTIV, PodRoute, Route, podroute_key, route_key, veth_key
from agent.reconciler import Dependency, Descriptor, Retrieved

RTNH_F_ONLINK = 4
RT_SCOPE_UNIVERSE, RT_SCOPE_LINK = 0, 253
MAIN_TABLE = 254


def _route_args(dst: str, via: str, onlink: bool, oif: int, src: str = "") -> dict:
    """The keywords of :meth:`agent.linux.rtnl.Rtnl.route` (``oif`` 0: none;
    ``src`` "": the kernel picks the source address)."""
    net = ipaddress.ip_network(dst)
    args = {"dst": str(net.network_address), "dst_len": net.prefixlen, "oif": oif,
            "proto": RTPROT_CONTIV, "table": MAIN_TABLE, "family": 10 if net.version == 6 else 2}
    if via:
        args["gateway"] = via
        if onlink:
            args["rtm_flags"] = RTNH_F_ONLINK
    else:
        args["scope"] = RT_SCOPE_LINK
    if src:
        args["prefsrc"] = src
    return args


def _add_route(rt, args: dict, what: dict) -> None:
    """Create a route over an :class:`agent.linux.rtnl.Rtnl` (the pod-start
    path: hand-encoded, the bytes pyroute2 would send)."""
    try:
        rt.route("add", **args)
    except Exception as e:  # noqa: BLE001
        if not is_errno(e, errno.EEXIST):
            raise nl_error(e, "route add", **what) from None
        try:
            rt.route("replace", **args)  # ours from an interrupted attempt
        except Exception as e2:  # noqa: BLE001
            raise nl_error(e2, "route replace", **what) from None


def _del_route(rt, args: dict, what: dict) -> None:
    try:
        rt.route("del", **args)
    except Exception as e:  # noqa: BLE001
        if not is_errno(e, errno.ESRCH, errno.ENODEV, errno.ENOENT):
            raise nl_error(e, "route del", **what) from None


def _dump(ipr, oif: int | None = None):
    """Our routes: (dst CIDR, gateway, onlink, oif, preferred source)."""
    kwargs = {"table": MAIN_TABLE}
    for r in ipr.get_routes(**kwargs):
        if r["proto"] != RTPROT_CONTIV:
            continue
        o = r.get_attr("RTA_OIF")
        if oif is not None and o != oif:
            continue
        dst = r.get_attr("RTA_DST") or ("::" if r["family"] == 10 else "0.0.0.0")
        yield (f"{dst}/{r['dst_len']}", r.get_attr("RTA_GATEWAY") or "",
               bool(r["flags"] & RTNH_F_ONLINK), o, r.get_attr("RTA_PREFSRC") or "")


def _check(dst: str, via: str, onlink: bool, src: str = "") -> None:
    if onlink and not via:
        raise InvalidInput(f"route {dst}: onlink needs a gateway")
    try:
        ipaddress.ip_network(dst)
        for addr in (via, src):
            if addr:
                ipaddress.ip_address(addr)
    except ValueError as e:
        raise InvalidInput(f"route {dst} via {via or '-'}{f' src {src}' if src else ''}: {e}") from None


class RouteDescriptor(Descriptor):
    """A route in the node namespace; depends on its output link's value."""

    name = "linux-route"
    key_prefix = "linux/route/"

    def __init__(self, nl: Netlink) -> None:
        self.nl = nl

    def validate(self, key, v: Route) -> None:
        _check(v.dst, v.via, v.onlink)
        if not v.dev_key:
            raise InvalidInput(f"route {v.dst}: dev_key (the link it needs) is missing")

    def dependencies(self, key, v: Route):
        return (Dependency("interface-exists", v.dev_key),) if v.dev_key else ()

    def _oif(self, v: Route, ctx) -> int:
        meta = ctx.metadata(v.dev_key)
        if not meta:
            raise NotFound(f"route {v.dst}: link {v.dev} has no index yet")
        return meta["index"]

    def create(self, key, v: Route, ctx):
        _add_route(self.nl.fast, _route_args(v.dst, v.via, v.onlink, self._oif(v, ctx)),
                   {"dst": v.dst, "via": v.via, "dev": v.dev})

    def delete(self, key, v: Route, metadata, ctx) -> None:
        _del_route(self.nl.fast, _route_args(v.dst, v.via, v.onlink, 0), {"dst": v.dst, "dev": v.dev})

    def retrieve(self, correlate, ctx):
        names = {link["index"]: link.get_attr("IFLA_IFNAME") for link in self.nl.node.get_links()}
        out = []
        for dst, via, onlink, oif, _ in _dump(self.nl.node):
            key = route_key(dst)
            want = correlate.get(key)
            dev = names.get(oif, "")
            dev_key = want.dev_key if want is not None and want.dev == dev else ""
            out.append(Retrieved(key, Route(dst, dev, via, onlink if via else False, dev_key)))
        return out


class PodRouteDescriptor(Descriptor):
    """A route inside a pod namespace (e.g. the default route via the gateway)."""

    name = "linux-podroute"
    key_prefix = "linux/podroute/"

    def __init__(self, nl: Netlink) -> None:
        self.nl = nl

    def validate(self, key, v: PodRoute) -> None:
        _check(v.dst, v.via, v.onlink, v.src)

    def dependencies(self, key, v: PodRoute):
        return (Dependency("pod-interface-exists", veth_key(v.host_if)),)

    def create(self, key, v: PodRoute, ctx):
        meta = ctx.metadata(veth_key(v.host_if))
        _add_route(self.nl.pod_fast(v.netns),
                   _route_args(v.dst, v.via, v.onlink, meta["pod_index"], v.src),
                   {"dst": v.dst, "via": v.via, "netns": v.netns})

    def delete(self, key, v: PodRoute, metadata, ctx) -> None:
        try:
            rt = self.nl.pod_fast(v.netns)
        except NotFound:
            return  # the namespace is gone, and the route with it
        _del_route(rt, _route_args(v.dst, v.via, v.onlink, 0), {"dst": v.dst, "netns": v.netns})

    def retrieve(self, correlate, ctx):
        # Pod namespaces cannot be enumerated from here: look where the
        # desired values say, on the pod interface the veth metadata names.
        out = []
        by_pod: dict[str, list[PodRoute]] = {}
        for v in correlate.values():
            by_pod.setdefault(v.host_if, []).append(v)
        for host_if, wants in by_pod.items():
            meta = ctx.metadata(veth_key(host_if))
            if not meta or "pod_index" not in meta:
                continue
            netns, pod_if = wants[0].netns, wants[0].pod_if
            try:
                routes = list(_dump(self.nl.pod(netns), meta["pod_index"]))
            except NotFound:
                continue
            for dst, via, onlink, _, src in routes:
                out.append(Retrieved(podroute_key(host_if, dst),
                                     PodRoute(host_if, netns, pod_if, dst, via, onlink if via else False,
                                              src)))
        return out
