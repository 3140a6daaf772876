"""What ``contivctl vpp dump`` shows: VPP's own objects, read from its API
dumps and turned into plain JSON (read-only; ours and everybody else's, with
the tag that says whose). See :meth:`agent.dataplane.Dataplane.dump`."""
from __future__ import annotations

from typing import Callable

from agent.vpp.values import NONE, TAG_PREFIX

_PATH_TYPES = {0: "normal", 1: "local", 2: "drop", 5: "unreach", 6: "prohibit"}
_ACTIONS = {0: "deny", 1: "permit", 2: "permit+reflect"}
_PROTO = {0: "any", 1: "icmp", 6: "tcp", 17: "udp", 132: "sctp"}


def _names(api) -> dict[int, str]:
    return {d.sw_if_index: d.interface_name for d in api.dump("sw_interface_dump", sw_if_index=NONE)}


def interfaces(api) -> list[dict]:
    out = []
    for d in api.dump("sw_interface_dump", sw_if_index=NONE):
        flags = int(d.flags)
        out.append({"sw_if_index": d.sw_if_index, "name": d.interface_name, "tag": d.tag,
                    "ours": (d.tag or "").startswith(TAG_PREFIX), "mac": str(d.l2_address),
                    "admin_up": bool(flags & 1), "link_up": bool(flags & 2), "mtu": d.mtu[0]})
    return out


def routes(api) -> list[dict]:
    names = _names(api)
    out = []
    for d in api.dump("ip_route_v2_dump", table={"table_id": 0}, src=0):
        r = d.route
        paths = [{"type": _PATH_TYPES.get(int(p.type), str(int(p.type))),
                  "interface": names.get(p.sw_if_index, ""),
                  "via": str(p.nh.address.ip4)} for p in r.paths[:r.n_paths]]
        out.append({"prefix": str(r.prefix), "table": r.table_id, "source": r.src, "paths": paths})
    return out


def nat(api) -> list[dict]:
    """cnat's translations: a frontend and its endpoints."""
    out = []
    for d in api.dump("cnat_translation_dump"):
        t = d.translation
        out.append({"id": t.id, "vip": f"{t.vip.addr}:{t.vip.port}",
                    "protocol": _PROTO.get(int(t.ip_proto), str(int(t.ip_proto))),
                    "paths": [f"{p.dst_ep.addr}:{p.dst_ep.port}" for p in t.paths[:t.n_paths]]})
    return out


def acl(api) -> list[dict]:
    lists: dict[int, dict] = {}
    names = _names(api)
    for d in api.dump("acl_interface_list_dump", sw_if_index=NONE):
        lists[d.sw_if_index] = {"input": list(d.acls[:d.n_input]),
                                "output": list(d.acls[d.n_input:d.count])}
    out = []
    for d in api.dump("acl_dump", acl_index=NONE):
        rules = [{"action": _ACTIONS.get(int(r.is_permit), str(int(r.is_permit))),
                  "src": str(r.src_prefix), "dst": str(r.dst_prefix),
                  "protocol": _PROTO.get(r.proto, str(r.proto)),
                  "ports": f"{r.dstport_or_icmpcode_first}-{r.dstport_or_icmpcode_last}"}
                 for r in d.r[:d.count]]
        used = [f"{names.get(sw, sw)}:{way}" for sw, ways in sorted(lists.items())
                for way in ("input", "output") if d.acl_index in ways[way]]
        out.append({"acl_index": d.acl_index, "tag": d.tag, "rules": rules, "on": used})
    return out


def vxlan(api) -> list[dict]:
    names = _names(api)
    return [{"interface": names.get(d.sw_if_index, ""), "instance": d.instance,
             "src": str(d.src_address), "dst": str(d.dst_address), "vni": d.vni,
             "port": d.dst_port} for d in api.dump("vxlan_tunnel_v2_dump", sw_if_index=NONE)]


def sessions(api) -> list[dict]:
    from agent.vpp.services import sessions as cnat_sessions  # noqa: PLC0415
    return [s.to_dict() for s in cnat_sessions(api)]


DUMPS: dict[str, Callable] = {"interfaces": interfaces, "routes": routes, "nat": nat, "acl": acl,
                              "vxlan": vxlan, "sessions": sessions}
