"""A NIC's kernel configuration as data: capture it, and put it onto a link.

:func:`capture` reads what a steal must carry over and a restore must put
back: the link's MAC, MTU, state; its addresses (IPv4, and IPv6 ones that
are permanent and not link-local -- the kernel re-creates the link-local
address and router advertisements the rest); its routes in every table,
without those the kernel makes from an address (protocol ``kernel``) or
learns from router advertisements; the policy rules that name it; its
permanent neighbours. The ``put_*`` functions apply one saved object onto a
given link, tolerating "already there" so that every step can be repeated.

All through pyroute2 (netlink) in the calling process's network namespace:
no command line is built from anything read here.
"""
from __future__ import annotations

import socket
import time

from agent.errors import InvalidInput, NotFound
from agent.model.stn import SNAPSHOT_VERSION, Snapshot

IFF_UP = 0x1
IFA_F_PERMANENT = 0x80
NUD_PERMANENT = 0x80
RTPROT_KERNEL, RTPROT_RA = 2, 9
RTNH_F_ONLINK = 0x4
#: route types a snapshot keeps (local/broadcast/multicast entries follow addresses)
RTN_KEEP = {1: "unicast", 2: "local", 6: "blackhole", 7: "unreachable", 8: "prohibit", 9: "throw"}
_FAMILY = {socket.AF_INET: 4, socket.AF_INET6: 6}
_AF = {4: socket.AF_INET, 6: socket.AF_INET6}


def ifindex(ipr, name: str) -> int:
    """The index of link ``name``, or NotFound."""
    found = ipr.link_lookup(ifname=name)
    if not found:
        raise NotFound(f"interface {name} does not exist")
    return found[0]


def link_info(ipr, idx: int) -> dict:
    """mac, mtu, up, master (index, 0 when none) and kind of link ``idx``."""
    m = ipr.get_links(idx)[0]
    info = m.get_attr("IFLA_LINKINFO")
    return {"mac": m.get_attr("IFLA_ADDRESS"), "mtu": m.get_attr("IFLA_MTU"),
            "up": bool(m["flags"] & IFF_UP), "master": m.get_attr("IFLA_MASTER") or 0,
            "kind": info.get_attr("IFLA_INFO_KIND") if info else ""}


def _address(m) -> dict | None:
    fam = _FAMILY.get(m["family"])
    flags = m.get_attr("IFA_FLAGS") or m["flags"]
    addr = m.get_attr("IFA_LOCAL") or m.get_attr("IFA_ADDRESS")
    if fam == 6 and (addr.lower().startswith("fe80:") or not flags & IFA_F_PERMANENT):
        return None  # the kernel and the router re-create these
    out = {"family": fam, "address": addr, "prefixlen": m["prefixlen"], "scope": m["scope"]}
    if m.get_attr("IFA_BROADCAST"):
        out["broadcast"] = m.get_attr("IFA_BROADCAST")
    if fam == 4 and m.get_attr("IFA_LABEL"):
        out["label"] = m.get_attr("IFA_LABEL")
    return out


def _route(m, idx: int) -> dict | None:
    if m.get_attr("RTA_MULTIPATH"):
        if any(h["oif"] == idx for h in m.get_attr("RTA_MULTIPATH")):
            dst = m.get_attr("RTA_DST") or "default"
            raise InvalidInput(f"route {dst}/{m['dst_len']} has several next hops, one through this interface: "
                               "STN does not carry multipath routes over", hint="remove it first, or steal by hand")
        return None
    if m.get_attr("RTA_OIF") != idx or m["proto"] in (RTPROT_KERNEL, RTPROT_RA) or m["type"] not in RTN_KEEP:
        return None
    out = {"family": _FAMILY[m["family"]], "table": m.get_attr("RTA_TABLE") or m["table"],
           "dst": m.get_attr("RTA_DST") or "", "dst_len": m["dst_len"], "proto": m["proto"],
           "scope": m["scope"], "type": m["type"], "tos": m["tos"], "onlink": bool(m["flags"] & RTNH_F_ONLINK)}
    for attr, key in (("RTA_GATEWAY", "gateway"), ("RTA_PREFSRC", "prefsrc"), ("RTA_PRIORITY", "priority")):
        if m.get_attr(attr) is not None:
            out[key] = m.get_attr(attr)
    metrics = m.get_attr("RTA_METRICS")
    if metrics:
        out["metrics"] = {name: val for name, val in metrics["attrs"]}
    return out


_RULE_ATTRS = (("FRA_PRIORITY", "priority"), ("FRA_TABLE", "table"), ("FRA_SRC", "src"), ("FRA_DST", "dst"),
               ("FRA_IIFNAME", "iifname"), ("FRA_OIFNAME", "oifname"), ("FRA_FWMARK", "fwmark"))


def _rule(m, name: str) -> dict | None:
    if name not in (m.get_attr("FRA_IIFNAME"), m.get_attr("FRA_OIFNAME")):
        return None
    out = {"family": _FAMILY[m["family"]], "action": m["action"], "src_len": m["src_len"],
           "dst_len": m["dst_len"], "tos": m["tos"]}
    for attr, key in _RULE_ATTRS:
        if m.get_attr(attr) is not None:
            out[key] = m.get_attr(attr)
    return out


#: per-interface sysctls a steal may change (VPP's: the kernel must ignore
#: what arrives on a NIC VPP reads through af_packet) and a restore puts back
SYSCTLS = ("ipv4/conf/{}/rp_filter", "ipv4/conf/{}/arp_ignore", "ipv6/conf/{}/disable_ipv6")


def read_sysctls(name: str) -> dict[str, str]:
    """The :data:`SYSCTLS` of link ``name`` in this network namespace (those
    that exist: no IPv6 on the node, no IPv6 keys)."""
    out = {}
    for key in SYSCTLS:
        try:
            with open(f"/proc/sys/net/{key.format(name)}") as f:
                out[key.split("/")[0] + "/" + key.split("/")[-1]] = f.read().strip()
        except OSError:
            pass
    return out


def write_sysctls(name: str, values: dict[str, str]) -> None:
    """Set ``values`` (as :func:`read_sysctls` names them) on link ``name``."""
    for k, v in values.items():
        family, leaf = k.split("/")
        if not (family in ("ipv4", "ipv6") and leaf.isidentifier() and str(v).lstrip("-").isdigit()):
            raise InvalidInput(f"sysctl {k}={v!r} is not one STN sets")
        with open(f"/proc/sys/net/{family}/conf/{name}/{leaf}", "w") as f:
            f.write(str(v))


def capture(ipr, name: str) -> Snapshot:
    """The snapshot of link ``name``; InvalidInput when it cannot be stolen
    (enslaved already, no IPv4 address, a multipath route through it)."""
    idx = ifindex(ipr, name)
    link = link_info(ipr, idx)
    if link["master"]:
        master = ipr.get_links(link["master"])[0].get_attr("IFLA_IFNAME")
        raise InvalidInput(f"{name} is enslaved to {master}: is it stolen already?",
                           hint="contivctl stn status")
    addresses = [a for a in (_address(m) for m in ipr.get_addr(index=idx)) if a]
    if not any(a["family"] == 4 for a in addresses):
        raise InvalidInput(f"{name} has no IPv4 address: there is no node address to keep",
                           hint="STN steals the NIC that carries the node's address")
    routes = []
    for fam in (socket.AF_INET, socket.AF_INET6):
        routes += [r for r in (_route(m, idx) for m in ipr.get_routes(family=fam)) if r]
    rules = [r for fam in (socket.AF_INET, socket.AF_INET6)
             for r in (_rule(m, name) for m in ipr.get_rules(family=fam)) if r]
    neigh = [{"family": _FAMILY[m["family"]], "dst": m.get_attr("NDA_DST"), "lladdr": m.get_attr("NDA_LLADDR")}
             for m in ipr.get_neighbours(ifindex=idx) if m["state"] & NUD_PERMANENT and m.get_attr("NDA_LLADDR")]
    return Snapshot(SNAPSHOT_VERSION, name, time.time(),
                    {**{k: link[k] for k in ("mac", "mtu", "up")}, "sysctl": read_sysctls(name)},
                    tuple(addresses), tuple(routes),
                    tuple(rules), tuple(neigh))


# ------------------------------------------------------------------ apply
def _ok_exists(fn, *args, **kw) -> None:
    from pyroute2.netlink.exceptions import NetlinkError  # noqa: PLC0415
    try:
        fn(*args, **kw)
    except NetlinkError as e:
        if e.code != 17:  # EEXIST: the step ran before (a retried step)
            raise


def _ok_missing(fn, *args, **kw) -> None:
    from pyroute2.netlink.exceptions import NetlinkError  # noqa: PLC0415
    try:
        fn(*args, **kw)
    except NetlinkError as e:
        if e.code not in (2, 3, 19, 99):  # ENOENT, ESRCH, ENODEV, EADDRNOTAVAIL: gone already
            raise


def put_address(ipr, idx: int, a: dict, label: str | None = None) -> None:
    """Add address ``a`` to link ``idx`` (``label``: the label it takes there)."""
    kw = {"index": idx, "address": a["address"], "prefixlen": a["prefixlen"], "scope": a.get("scope", 0)}
    if a.get("broadcast"):
        kw["broadcast"] = a["broadcast"]
    if a["family"] == 4 and (label or a.get("label")):
        kw["label"] = label or a["label"]
    _ok_exists(ipr.addr, "add", **kw)


def drop_address(ipr, idx: int, a: dict) -> None:
    _ok_missing(ipr.addr, "del", index=idx, address=a["address"], prefixlen=a["prefixlen"])


def _route_kw(idx: int, r: dict) -> dict:
    kw = {"family": _AF[r["family"]], "dst_len": r["dst_len"], "table": r["table"], "proto": r["proto"],
          "scope": r["scope"], "type": r["type"], "tos": r["tos"]}
    if r["dst"]:
        kw["dst"] = r["dst"]
    if r["type"] == 1:  # unicast: through the link (the others have no device)
        kw["oif"] = idx
    for key in ("gateway", "prefsrc", "priority"):
        if key in r:
            kw[key] = r[key]
    if r.get("onlink"):
        kw["flags"] = RTNH_F_ONLINK
    if r.get("metrics"):
        kw["metrics"] = {"attrs": list(r["metrics"].items())}
    return kw


def put_route(ipr, idx: int, r: dict) -> None:
    """Route ``r`` through link ``idx`` (replacing one of the same key)."""
    ipr.route("replace", **_route_kw(idx, r))


def drop_route(ipr, idx: int, r: dict) -> None:
    _ok_missing(ipr.route, "del", **_route_kw(idx, r))


def _rule_kw(r: dict, rename: tuple[str, str] | None) -> dict:
    kw = {"family": _AF[r["family"]], "action": r["action"], "src_len": r["src_len"],
          "dst_len": r["dst_len"], "tos": r["tos"]}
    for _attr, key in _RULE_ATTRS:
        if key in r:
            kw[key] = r[key]
    if rename:
        for key in ("iifname", "oifname"):
            if kw.get(key) == rename[0]:
                kw[key] = rename[1]
    return kw


def put_rule(ipr, r: dict, rename: tuple[str, str] | None = None) -> None:
    """Add rule ``r``; ``rename`` (old, new) moves it from one link name to another."""
    _ok_exists(ipr.rule, "add", **_rule_kw(r, rename))


def drop_rule(ipr, r: dict, rename: tuple[str, str] | None = None) -> None:
    _ok_missing(ipr.rule, "del", **_rule_kw(r, rename))


def put_neighbour(ipr, idx: int, n: dict) -> None:
    ipr.neigh("replace", family=_AF[n["family"]], dst=n["dst"], lladdr=n["lladdr"], ifindex=idx,
              state=NUD_PERMANENT)


def drop_neighbour(ipr, idx: int, n: dict) -> None:
    _ok_missing(ipr.neigh, "del", family=_AF[n["family"]], dst=n["dst"], ifindex=idx)


def set_link(ipr, idx: int, **kw) -> None:
    """Set link attributes (``address``, ``mtu``, ``state``, ``master``)."""
    ipr.link("set", index=idx, **kw)


def delete_link(ipr, name: str) -> bool:
    """Delete link ``name`` if it exists; whether it did."""
    found = ipr.link_lookup(ifname=name)
    if found:
        _ok_missing(ipr.link, "del", index=found[0])
    return bool(found)
