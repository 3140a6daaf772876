"""VPP ACL-plugin objects of NetworkPolicy enforcement: values, descriptors
and the batch group they share. See :mod:`agent.vpp.policies` for what the
renderer puts in them and docs/vpp-policies.md for why.

Keys:

* ``vpp/acl/<name>``        -- :class:`Acl`: one ACL (``acl_add_replace``),
  tagged ``contiv:<name>`` (names start with ``pol``); metadata
  ``{"acl_index": n}``. Changed in place (``acl_add_replace`` on its index):
  every interface using it sees the new rules at once, its list is untouched;
* ``vpp/acllist/<if>``      -- :class:`AclList`: the ACLs checked on one pod
  interface (``acl_interface_set_acl_list``), by name. VPP's *output* on the
  pod's interface is what reaches the pod (its ingress), *input* what the pod
  sends (its egress). An interface with no list is not filtered at all.

Ownership: ACLs by their tag; lists on our pod interfaces (``p<hex ip>``).

Why a batch group: a list must be set before an ACL it stops using can be
deleted (VPP refuses: ACL_IN_USE), and the scheduler cascades the removal of
an ACL to the lists that use it -- delete the list, delete the ACL, create
the list again. Clearing a pod's list, even for a moment, leaves the pod
unfiltered, and a connection that starts in that moment gets a session that
outlives the moment. Within one run of operations the group sets lists
before deleting ACLs and turns "delete the list, create it again" into one
set (VPP swaps a list atomically); a list removed only because an ACL it
used goes is never cleared (its new value follows in the same transaction,
and until then the old list is the safer one). Requests of one kind go
pipelined (``call_many``): programming a thousand ACLs is one round trip's
worth of latency, not a thousand.
"""
from __future__ import annotations

import functools
import ipaddress
import re
from dataclasses import dataclass
from typing import Any

from agent.errors import InvalidInput
from agent.reconciler import Dependency, OpKind, Retrieved
from agent.vpp.base import IndexMap, Interfaces, VppDescriptor, call_each
from agent.vpp.errors import VppApiError
from agent.vpp.values import NONE, if_key_of, tag, untag

DENY, PERMIT, PERMIT_REFLECT = 0, 1, 2
ANY4 = "0.0.0.0/0"
ALL_PORTS = (0, 65535)
#: acl_interface_set_acl_list.count is a u8: input and output ACLs together
MAX_LIST = 255
#: our ACLs' names (and so their tags, after "contiv:")
NAME_PREFIX = "pol"
ACL_PREFIX, LIST_PREFIX = "vpp/acl/", "vpp/acllist/"
_POD_IF = re.compile(r"p[0-9a-f]{8}")
# retvals meaning "already gone" (no such ACL / interface)
_GONE = (-6, -2)


@dataclass(frozen=True, slots=True, order=True)
class AclRule:
    """One ACE. ``dports``/``sports``: inclusive ranges (ICMP: type/code);
    ``proto`` 0: every protocol (ports then ignored)."""

    src: str = ANY4
    dst: str = ANY4
    proto: int = 0
    dports: tuple[int, int] = ALL_PORTS
    sports: tuple[int, int] = ALL_PORTS
    action: int = PERMIT_REFLECT


@dataclass(frozen=True, slots=True)
class Acl:
    name: str
    rules: tuple[AclRule, ...] = ()


@dataclass(frozen=True, slots=True)
class AclList:
    """``ingress``: ACL names checked on what reaches the pod (VPP output);
    ``egress``: on what it sends (VPP input)."""

    ifname: str
    ingress: tuple[str, ...] = ()
    egress: tuple[str, ...] = ()


def acl_key(name: str) -> str:
    return ACL_PREFIX + name


def acllist_key(ifname: str) -> str:
    return LIST_PREFIX + ifname


@functools.lru_cache(maxsize=65536)  # every rule of an ACL is validated on each change of it
def _family(prefix: str) -> int:
    return ipaddress.ip_network(prefix).version


def _f(x: Any, name: str) -> Any:
    """A field of a vpp_papi record (attribute) or of a recorded dict."""
    return x[name] if isinstance(x, dict) else getattr(x, name)


def rule_request(r: AclRule) -> dict:
    return {"is_permit": r.action, "src_prefix": r.src, "dst_prefix": r.dst, "proto": r.proto,
            "srcport_or_icmptype_first": r.sports[0], "srcport_or_icmptype_last": r.sports[1],
            "dstport_or_icmpcode_first": r.dports[0], "dstport_or_icmpcode_last": r.dports[1]}


def rule_of(d: Any) -> AclRule:
    """An ACE as VPP dumps it, in the form we render it."""
    return AclRule(str(_f(d, "src_prefix")), str(_f(d, "dst_prefix")), int(_f(d, "proto")),
                   (int(_f(d, "dstport_or_icmpcode_first")), int(_f(d, "dstport_or_icmpcode_last"))),
                   (int(_f(d, "srcport_or_icmptype_first")), int(_f(d, "srcport_or_icmptype_last"))),
                   int(_f(d, "is_permit")))


class AclIndex(IndexMap):
    """Our ACLs: name <-> acl_index, kept by the ACL descriptor (create,
    delete, retrieve) for the list descriptor."""


class _Batched(VppDescriptor):
    """Both descriptors: every operation goes through their batch group
    (:class:`AclBatch`), which orders them across the two kinds."""

    def __init__(self, api, ifs: Interfaces, batch: "AclBatch") -> None:
        super().__init__(api, ifs)
        self.batch_group = batch
        self.acls = batch.acls


class AclDescriptor(_Batched):
    """One ACL of ours (see the module docstring)."""

    name = "vpp-acl"
    key_prefix = ACL_PREFIX
    supports_update = True

    def validate(self, key, v: Acl) -> None:
        if key != acl_key(v.name) or not v.name.startswith(NAME_PREFIX):
            raise InvalidInput(f"key {key} does not name our ACL {v.name!r} ({NAME_PREFIX}...)")
        if len(tag(v.name).encode()) > 63:
            raise InvalidInput(f"ACL name {v.name!r} is too long for a tag")
        for r in v.rules:
            try:
                same = _family(r.src) == _family(r.dst)
            except ValueError as e:
                raise InvalidInput(f"ACL {v.name}: {e}") from None
            if not same or not (0 <= r.proto <= 255) or r.action not in (0, 1, 2) \
                    or not all(0 <= lo <= hi <= 65535 for lo, hi in (r.dports, r.sports)):
                raise InvalidInput(f"ACL {v.name}: bad rule {r}")

    def request(self, v: Acl, index: int) -> dict:
        return self.api.fill("acl_add_replace", acl_index=index, tag=tag(v.name),
                             r=[rule_request(r) for r in v.rules])

    def retrieve(self, correlate, ctx):
        out, found = [], {}
        for d in self.api.dump("acl_dump", acl_index=NONE):
            name = untag(d.tag or "")
            if name is None or not name.startswith(NAME_PREFIX):
                continue
            found[name] = d.acl_index
            out.append(Retrieved(acl_key(name), Acl(name, tuple(rule_of(r) for r in d.r)),
                                 {"acl_index": d.acl_index}))
        self.acls.replace(found)
        return out


class AclListDescriptor(_Batched):
    """The ACLs checked on one pod interface (see the module docstring)."""

    name = "vpp-acllist"
    key_prefix = LIST_PREFIX
    supports_update = True

    def validate(self, key, v: AclList) -> None:
        if key != acllist_key(v.ifname):
            raise InvalidInput(f"key {key} does not match the ACL list of {v.ifname}")
        if len(v.ingress) + len(v.egress) > MAX_LIST:
            raise InvalidInput(f"{v.ifname}: {len(v.ingress) + len(v.egress)} ACLs, VPP takes "
                               f"at most {MAX_LIST} per interface")
        for side in (v.ingress, v.egress):
            if len(set(side)) != len(side):
                raise InvalidInput(f"{v.ifname}: an ACL twice in one direction ({side})")

    def dependencies(self, key, v: AclList):
        return (Dependency("interface-exists", if_key_of(v.ifname)),
                *(Dependency("acl-exists", acl_key(n)) for n in dict.fromkeys(v.egress + v.ingress)))

    def request(self, v: AclList, ctx, local: dict[str, int]) -> dict:
        """The set request; ``local``: ACLs made earlier in this batch."""
        def index(name: str) -> int:
            i = local.get(name)
            if i is None:
                meta = ctx.metadata(acl_key(name)) if ctx is not None else None
                i = meta.get("acl_index") if isinstance(meta, dict) else None
            if i is None:
                i = self.acls.index(name)
            if i is None:
                raise VppApiError("acl_interface_set_acl_list", {"acl": name}, -6)
            return i
        acls = [index(n) for n in v.egress] + [index(n) for n in v.ingress]
        return self.api.fill("acl_interface_set_acl_list", sw_if_index=self.sw(v.ifname, ctx),
                             n_input=len(v.egress), acls=acls)

    def clear_request(self, v: AclList) -> dict | None:
        sw = self.ifs.index(v.ifname)
        if sw is None:
            return None  # the interface is gone, and its lists with it
        return self.api.fill("acl_interface_set_acl_list", sw_if_index=sw, n_input=0, acls=[])

    def retrieve(self, correlate, ctx):
        names = self.ifs.by_index()
        acls = self.acls.by_index()
        out = []
        for d in self.api.dump("acl_interface_list_dump", sw_if_index=NONE):
            ifname = names.get(d.sw_if_index)
            if ifname is None or not _POD_IF.fullmatch(ifname) or not d.count:
                continue
            # an ACL that is not ours gets a name no value has: the list differs
            got = [acls.get(i, f"#{i}") for i in list(d.acls)[:d.count]]
            out.append(Retrieved(acllist_key(ifname), AclList(
                ifname, tuple(got[d.n_input:]), tuple(got[:d.n_input]))))
        return out


class AclBatch:
    """The batch group of the two descriptors (see the module docstring):
    per run, ACLs made or changed, then lists set, then ACLs deleted."""

    def __init__(self, api, ifs: Interfaces) -> None:
        self.api = api
        self.ifs = ifs
        self.acls = AclIndex()

    def apply(self, ops, descs, ctx) -> list:
        return self._run(ops, descs, ctx, {})

    def _run(self, ops, descs, ctx, metas: dict) -> list:
        results: list = [None] * len(ops)

        def meta(key: str):
            if key in metas:
                return metas[key]
            return ctx.metadata(key) if ctx is not None else None

        # 1. ACLs made or changed (in place: an update keeps the index)
        local: dict[str, int] = {}
        acl_ops = [(i, o) for i, o in enumerate(ops)
                   if o.key.startswith(ACL_PREFIX) and o.kind is not OpKind.DELETE]
        reqs = []
        for i, o in acl_ops:
            m = meta(o.key) if o.kind is OpKind.UPDATE else None
            index = m.get("acl_index", NONE) if isinstance(m, dict) else NONE
            reqs.append(descs[i].request(o.value, index))
        for (i, o), res in zip(acl_ops, call_each(self.api, "acl_add_replace", reqs)):
            if isinstance(res, Exception):
                results[i] = res
                continue
            local[o.value.name] = res.acl_index
            self.acls.set(o.value.name, res.acl_index)
            results[i] = {"acl_index": res.acl_index}
        # 2. lists: set, or cleared when no longer wanted at all
        list_ops = [(i, o) for i, o in enumerate(ops) if o.key.startswith(LIST_PREFIX)]
        setting = {o.key for _, o in list_ops if o.kind is not OpKind.DELETE}
        todo, reqs = [], []
        for i, o in list_ops:
            try:
                if o.kind is not OpKind.DELETE:
                    req = descs[i].request(o.value, ctx, local)
                elif o.key in setting or o.still_desired:
                    continue  # replaced in this run, or still wanted: kept until its new value
                else:
                    req = descs[i].clear_request(o.value)
                    if req is None:
                        continue
            except Exception as e:  # noqa: BLE001 -- that op fails, the others go on
                results[i] = e
                continue
            todo.append(i)
            reqs.append(req)
        for i, res in zip(todo, call_each(self.api, "acl_interface_set_acl_list", reqs)):
            if isinstance(res, VppApiError) and ops[i].kind is OpKind.DELETE and res.retval in _GONE:
                res = None
            results[i] = res if isinstance(res, Exception) else None
        # 3. ACLs deleted, now that no list set above uses them
        del_ops = [(i, o) for i, o in enumerate(ops)
                   if o.key.startswith(ACL_PREFIX) and o.kind is OpKind.DELETE]
        todo, reqs = [], []
        for i, o in del_ops:
            m = meta(o.key)
            index = m.get("acl_index") if isinstance(m, dict) else self.acls.index(o.value.name)
            if index is None:
                continue  # never made, or gone with a restarted VPP
            todo.append((i, o))
            reqs.append({"acl_index": index})
        for (i, o), res in zip(todo, call_each(self.api, "acl_del", reqs)):
            if isinstance(res, VppApiError) and res.retval in _GONE:
                res = None
            if res is None:
                self.acls.drop(o.value.name)
            results[i] = res if isinstance(res, Exception) else None
        return results
