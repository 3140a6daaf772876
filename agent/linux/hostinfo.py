"""Facts about the node's own network namespace: the underlay interface, its
address and MTU (read once at start-up)."""
from __future__ import annotations

from dataclasses import dataclass

from pyroute2 import IPRoute

from agent.errors import InvalidInput
from agent.linux.values import TAG_PREFIX


@dataclass(frozen=True, slots=True)
class Underlay:
    ifname: str
    ip: str
    mtu: int
    all_ips: tuple[str, ...]  # every global IPv4 address of the node


def detect_underlay(ifname: str = "", node_ip: str = "") -> Underlay:
    """The underlay: ``ifname`` if given, else the link of ``node_ip`` if given,
    else the link holding the default route, else the first non-loopback link
    with a global IPv4 address that is not ours."""
    with IPRoute() as ipr:
        links = {lk["index"]: lk for lk in ipr.get_links()}
        addrs = [(a["index"], a.get_attr("IFA_ADDRESS")) for a in ipr.get_addr(family=2)
                 if a["scope"] == 0]
        ours = {i for i, lk in links.items() if (lk.get_attr("IFLA_IFALIAS") or "").startswith(TAG_PREFIX)}
        names = {i: lk.get_attr("IFLA_IFNAME") for i, lk in links.items()}
        cands = [(i, a) for i, a in addrs if i not in ours and names.get(i) != "lo"]
        chosen = None
        if ifname:
            chosen = next(((i, a) for i, a in cands if names[i] == ifname), None)
            if chosen is None:
                raise InvalidInput(f"underlay interface {ifname} has no global IPv4 address",
                                   hint="check underlay_if / --underlay-if")
        elif node_ip:
            chosen = next(((i, a) for i, a in cands if a == node_ip), None)
            if chosen is None:
                raise InvalidInput(f"node IP {node_ip} is not an address of this node")
        else:
            default = [r.get_attr("RTA_OIF") for r in ipr.get_default_routes(family=2)]
            chosen = next(((i, a) for i, a in cands if i in default), None) or \
                (cands[0] if cands else None)
        if chosen is None:
            raise InvalidInput("cannot find the node's underlay address: no global IPv4 address",
                               hint="set node_ip or underlay_if")
        i, a = chosen
        return Underlay(names[i], a, links[i].get_attr("IFLA_MTU"), tuple(x for _, x in cands))
