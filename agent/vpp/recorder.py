"""The unit tier's recording fake of :class:`agent.vpp.papi.VppApi`.

**This is not a VPP. It checks message shapes, not behaviour.** Every
request is validated against the real VPP API definitions (by default the
VPP 26.10 files in ``../shared/vpp-api`` next to the repository, or any
directory given), exactly as :class:`VppApi` validates before sending, and is
recorded as ``Call(name, kwargs)``. Tests then assert on what a descriptor
would have sent. Nothing is forwarded, interpreted or simulated beyond this:

* every request is also packed by vpp_papi itself (``encode=True``), to
  prove the real client library can encode what validation accepted;
* replies are zero-filled records of the reply message; a reply field that
  names a new object (``sw_if_index``, ``acl_index``, ``bd_id``, ``id``...)
  gets a fresh number unless the request named one (then it is echoed);
* ``dump`` returns what a test seeded (:meth:`seed`) plus the interfaces and
  ACLs that recorded calls created (with their tags, admin flags and rules),
  minus those deleted;
* a request naming an interface (a top-level ``interface_index`` field) that
  was neither created, seeded nor ``local0`` fails with retval -2
  (INVALID_SW_IF_INDEX), and replacing or deleting an unknown ACL with -6 --
  as VPP would; turn this off with ``check_refs=False``;
* :meth:`fail` makes chosen requests fail with a retval, :meth:`restart`
  forgets every object and bumps ``generation``, :meth:`hide` makes
  ``require`` report messages as missing.

Whether VPP would *accept* a well-formed message (a route via an unreachable
next hop, a NAT mapping before the plugin is enabled...) is only known to a
real VPP: that is the job of ``tests/vpp``.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

from agent.vpp import apidefs, papi
from agent.vpp.errors import (VppApiError, VppMessageInvalid, VppVersionMismatch,
                              check_reply, raise_batch_failures)

NO_INDEX = 0xFFFFFFFF
#: Where the VPP 26.10 definitions live next to the repository (tests).
SHARED_API_DIR = Path(__file__).resolve().parents[3] / "shared" / "vpp-api"
# Reply fields that hand out the index of a new object.
_ALLOCATED = ("sw_if_index", "acl_index", "bd_id", "id", "stats_index",
              "policer_index", "sa_index", "instance")
_NAME_STEMS = {"af_packet_create": "host-{host_if_name}", "create_loopback": "loop{n}",
               "vxlan_add_del_tunnel": "vxlan_tunnel{n}", "tap_create": "tap{n}",
               "memif_create": "memif0/{n}", "bond_create": "BondEthernet{n}",
               "create_vlan_subif": "subif{n}"}


@dataclass(frozen=True)
class Call:
    """One recorded request: the message name and its arguments as given."""

    name: str
    kwargs: dict = field(default_factory=dict)


@dataclass
class _Failure:
    name: str
    retval: int
    times: int
    when: Callable[[dict], bool] | None


def default_api_dir() -> Path:
    """The shared VPP 26.10 definitions, else the installed VPP's."""
    if SHARED_API_DIR.is_dir():
        return SHARED_API_DIR
    found = apidefs.find_api_dir()
    return found if found is not None else SHARED_API_DIR


class Recorder:
    """Records what would be sent to VPP; same interface as VppApi (VppChannel)."""

    def __init__(self, api_dir: str | os.PathLike | None = None, *,
                 check_refs: bool = True, encode: bool = True) -> None:
        self.defs = apidefs.load(api_dir if api_dir is not None else default_api_dir())
        self.check_refs = check_refs
        self.encode = encode
        self.calls: list[Call] = []
        self.generation = 1
        self._hidden: set[str] = set()
        self._failures: list[_Failure] = []
        self._cli: dict[str, str] = {}
        self._seeded: dict[str, list[dict]] = {}
        self._reset_objects()

    def _reset_objects(self) -> None:
        self._next: dict[str, int] = {"sw_if_index": 1, "acl_index": 0, "bd_id": 1}
        self.interfaces: dict[int, dict] = {0: {"sw_if_index": 0, "interface_name": "local0"}}
        self.acls: dict[int, dict] = {}
        self._origin: dict[int, tuple[str, dict]] = {}   # sw_if_index -> creating call

    # -- what tests use -----------------------------------------------------------
    def names(self) -> list[str]:
        """Message names in the order they were sent."""
        return [c.name for c in self.calls]

    def calls_to(self, name: str) -> list[dict]:
        """The arguments of every recorded ``name`` request."""
        return [c.kwargs for c in self.calls if c.name == name]

    def clear(self) -> None:
        """Forget recorded calls (objects and seeds stay)."""
        self.calls.clear()

    def seed(self, dump_name: str, *details: Mapping[str, Any]) -> None:
        """Make ``dump(dump_name)`` also return these details (checked against
        the details message's fields)."""
        svc = self.defs.service(dump_name)
        if not svc.stream:
            raise VppMessageInvalid(dump_name, None, "is not a dump")
        for d in details:
            self.defs.record(svc.details, d)   # raises on an unknown field
            self._seeded.setdefault(dump_name, []).append(dict(d))

    def seed_cli(self, prefix: str, output: str) -> None:
        """``cli(cmd)`` returns ``output`` when ``cmd`` starts with ``prefix``."""
        self._cli[prefix] = output

    def fail(self, name: str, retval: int = -1, *, times: int = 1,
             when: Callable[[dict], bool] | None = None) -> None:
        """Make the next ``times`` ``name`` requests (matching ``when``) fail."""
        self.defs.service(name)
        self._failures.append(_Failure(name, retval, times, when))

    def hide(self, *names: str) -> None:
        """Pretend the VPP lacks these messages (``require`` fails)."""
        self._hidden.update(names)

    def restart(self) -> None:
        """Simulate a VPP restart: every object is gone, generation changes."""
        self._reset_objects()
        self.generation += 1

    # -- VppChannel -----------------------------------------------------------------
    def fill(self, name: str, /, **kwargs: Any) -> dict:
        return self.defs.fill(name, kwargs)

    def _check(self, name: str, kwargs: Mapping[str, Any]) -> None:
        self.defs.validate(name, kwargs)
        if self.encode:   # and prove that vpp_papi itself can encode it
            papi.encode(name, kwargs, self.defs.source)

    def call(self, name: str, /, **kwargs: Any) -> Any:
        if self.defs.service(name).stream:
            raise VppMessageInvalid(name, None, "is a dump: use dump()")
        self._check(name, kwargs)
        return check_reply(name, kwargs, self._handle(name, kwargs))

    def call_many(self, name: str, requests: Iterable[Mapping[str, Any]], /, *,
                  window: int = 256) -> list:
        if self.defs.service(name).stream:
            raise VppMessageInvalid(name, None, "is a dump: call_many sends requests")
        items = self.defs.validate_many(name, requests)
        for kw in items if self.encode else ():
            papi.encode(name, kw, self.defs.source)
        return raise_batch_failures(name, items, [self._handle(name, kw) for kw in items])

    def dump(self, name: str, /, **kwargs: Any) -> list:
        svc = self.defs.service(name)
        if not svc.stream:
            raise VppMessageInvalid(name, None, "is not a dump: use call()")
        self._check(name, kwargs)
        self.calls.append(Call(name, dict(kwargs)))
        self._injected(name, kwargs)
        rows = list(self._seeded.get(name, ()))
        if name == "sw_interface_dump":
            rows = list(self.interfaces.values()) + rows
        elif name == "acl_dump":
            rows = list(self.acls.values()) + rows
        detail_fields = self.defs.message(svc.details).by_name
        for k, v in kwargs.items():
            # a request field that the details carry too filters them (~0: all)
            if k in detail_fields and isinstance(v, int) and v != NO_INDEX:
                rows = [r for r in rows if r.get(k, v) == v]
        return [self.defs.record(svc.details, r) for r in rows]

    def dump_raw(self, name: str, /, **kwargs: Any) -> list[bytes]:
        """:meth:`dump`'s details packed as VPP sends them (by vpp_papi, from
        the API definitions): what a caller decoding them by hand must read."""
        svc = self.defs.service(name)
        return [papi.encode(svc.details, _plain(d), self.defs.source) for d in self.dump(name, **kwargs)]

    def require(self, messages: Iterable[str]) -> None:
        missing = []
        for m in messages:
            self.defs.message(m)
            related = self.defs.related(m) if m in self.defs.services else [m]
            missing += [n for n in related if n in self._hidden]
        if missing:
            raise VppVersionMismatch(missing, {})

    def cli(self, cmd: str) -> str:
        return self.call("cli_inband", cmd=cmd).reply

    # -- internals --------------------------------------------------------------------
    def _injected(self, name: str, kwargs: dict) -> None:
        for f in self._failures:
            if f.name == name and f.times > 0 and (f.when is None or f.when(kwargs)):
                f.times -= 1
                raise VppApiError(name, kwargs, f.retval)

    def _handle(self, name: str, kwargs: dict) -> Any:
        """Record one request and build its reply (retval set on failure)."""
        kwargs = dict(kwargs)
        self.calls.append(Call(name, kwargs))
        svc = self.defs.service(name)
        try:
            self._injected(name, kwargs)
            values = self._apply(name, kwargs)
        except VppApiError as e:
            return self.defs.record(svc.reply, {"retval": e.retval})
        return self.defs.record(svc.reply, values)

    def _is_add(self, name: str, kw: dict) -> bool:
        f = self.defs.message(name).by_name.get("is_add")
        if f is None:
            return True
        v = kw.get("is_add", f.default if f.has_default else 0)
        return v not in (0, False, "false")   # API files give "true" as a string

    def _check_refs(self, name: str, kw: dict, creates: bool) -> None:
        """Fail as VPP would on a reference to an interface or ACL it lacks."""
        if not self.check_refs:
            return
        known = set(self.interfaces) | {
            d.get("sw_if_index") for d in self._seeded.get("sw_interface_dump", ())}
        for f in self.defs.message(name).fields:
            v = kw.get(f.name)
            if (f.type == "interface_index" and not creates and isinstance(v, int)
                    and v != NO_INDEX and v not in known):
                raise VppApiError(name, kw, -2)
        acls = []
        if name in ("acl_add_replace", "acl_del") and kw.get("acl_index", 0) != NO_INDEX:
            acls = [kw.get("acl_index", 0)]
        elif name == "acl_interface_set_acl_list":
            acls = list(kw.get("acls", ()))
        if any(a not in self.acls for a in acls):
            raise VppApiError(name, kw, -6)

    def _apply(self, name: str, kw: dict) -> dict:
        """The reply's values; tracks interfaces and ACLs for dumps."""
        reply = self.defs.message(self.defs.service(name).reply)
        adding = self._is_add(name, kw)
        creates = adding and "sw_if_index" in reply.by_name and "sw_if_index" not in kw
        self._check_refs(name, kw, creates)
        values: dict[str, Any] = {}
        for f in reply.fields:
            if f.name not in _ALLOCATED:
                continue
            given = kw.get(f.name)
            if given is not None and given != NO_INDEX:
                values[f.name] = given
            elif adding:
                values[f.name] = self._allocate(f.name)
        if name == "cli_inband":
            cmd = kw.get("cmd", "")
            values["reply"] = next((out for prefix, out in self._cli.items()
                                    if cmd.startswith(prefix)), "")
        self._track(name, kw, values, adding, creates)
        return values

    def _allocate(self, what: str) -> int:
        n = self._next.get(what, 1)
        self._next[what] = n + 1
        return n

    def _track(self, name: str, kw: dict, values: dict, adding: bool, creates: bool) -> None:
        idx = kw.get("sw_if_index")
        if creates:
            new = values["sw_if_index"]
            stem = next((v for k, v in _NAME_STEMS.items() if name.startswith(k)),
                        name.split("_")[0] + "{n}")
            strings = {k: v for k, v in kw.items() if isinstance(v, str)}
            label = stem.format_map(_Default(strings, n=new))
            self.interfaces[new] = {"sw_if_index": new, "sup_sw_if_index": new,
                                    "interface_name": label}
            self._origin[new] = (name, {k: v for k, v in kw.items() if k != "is_add"})
        elif name.startswith("af_packet_delete"):
            label = "host-" + kw.get("host_if_name", "")
            self._drop([i for i, d in self.interfaces.items()
                        if d.get("interface_name") == label])
        elif not adding and "sw_if_index" in self.defs.message(
                self.defs.service(name).reply).by_name and idx is None:
            # an add_del tunnel deleted with the arguments that created it
            key = (name, {k: v for k, v in kw.items() if k != "is_add"})
            self._drop([i for i, o in self._origin.items() if o == key])
        elif (name.startswith("delete_") or name == "memif_delete") and idx in self.interfaces and idx != 0:
            self._drop([idx])
        elif name == "sw_interface_tag_add_del" and idx in self.interfaces:
            self.interfaces[idx]["tag"] = kw.get("tag", "") if adding else ""
        elif name == "sw_interface_set_flags" and idx in self.interfaces:
            self.interfaces[idx]["flags"] = kw.get("flags", 0)
        elif name == "acl_add_replace":
            i = values["acl_index"]
            self.acls[i] = {"acl_index": i, "tag": kw.get("tag", ""),
                            "count": kw.get("count", 0), "r": list(kw.get("r", ()))}
        elif name == "acl_del":
            self.acls.pop(kw.get("acl_index", 0), None)

    def _drop(self, indexes: list[int]) -> None:
        for i in indexes:
            self.interfaces.pop(i, None)
            self._origin.pop(i, None)


def _plain(v: Any) -> Any:
    """A record (named tuples, nested) as the dicts and lists vpp_papi packs."""
    if isinstance(v, tuple) and hasattr(v, "_asdict"):
        return {k: _plain(x) for k, x in v._asdict().items()}
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    return v


class _Default(dict):
    """str.format_map helper: a missing name renders as ''."""

    def __missing__(self, key: str) -> str:
        return ""
