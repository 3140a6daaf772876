"""Checks a message's arguments against its VPP API definition.

Used through :meth:`agent.vpp.apidefs.ApiDefs.validate`. vpp_papi itself
checks only the top-level field names: a misspelt field inside a nested type
is silently dropped (VPP receives 0), an enum accepts any integer, a count
field may disagree with its array (VPP then reads past the message), and a
short ``bytes`` is zero-padded. These checks reject all of that, naming the
message and the dotted path of the field (``route.paths[0].label_stack``).

The accepted Python forms are exactly those vpp_papi 2.4.2 packs
(``vpp_papi/vpp_format.py``): it picks a conversion by the *exact* type name
of the value, so e.g. a ``str`` subclass is not converted.
"""
from __future__ import annotations

import difflib
import re
import socket
from typing import Any, Mapping

from agent.vpp.apidefs import HEADER_FIELDS, ApiDefs, Field, Struct
from agent.vpp.errors import VppMessageInvalid

INT_RANGES = {"u8": (0, 0xFF), "i8": (-0x80, 0x7F), "u16": (0, 0xFFFF),
              "i16": (-0x8000, 0x7FFF), "u32": (0, 0xFFFFFFFF),
              "i32": (-0x80000000, 0x7FFFFFFF), "u64": (0, 2**64 - 1),
              "i64": (-2**63, 2**63 - 1)}
_FAMILIES = {"ip4": (socket.AF_INET, 32), "ip6": (socket.AF_INET6, 128)}
_MAC = re.compile(r"[0-9A-Fa-f]{12}")

# Types vpp_papi converts from other Python objects, by the object's type
# name; "str" values are parsed as noted. (vl_api_timestamp_t is in its table
# under "datetime.datetime", a name no type has, so datetimes never convert.)
_CONVERSIONS: dict[str, dict[str, str | None]] = {
    "ip4_address": {"IPv4Address": None, "str": "ip4"},
    "ip6_address": {"IPv6Address": None, "str": "ip6"},
    "address": {"IPv4Address": None, "IPv6Address": None, "str": "ip"},
    "prefix": {"IPv4Network": None, "IPv6Network": None, "str": "ip/len"},
    "ip4_prefix": {"IPv4Network": None, "str": "ip4/len"},
    "ip6_prefix": {"IPv6Network": None, "str": "ip6/len"},
    "address_with_prefix": {"IPv4Interface": None, "IPv6Interface": None, "str": "ip/len"},
    "ip4_address_with_prefix": {"IPv4Interface": None, "str": "ip4/len"},
    "ip6_address_with_prefix": {"IPv6Interface": None, "str": "ip6/len"},
    "mac_address": {"MACAddress": None, "str": "mac"},
}


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _kind(v: Any) -> str:
    return type(v).__name__


class Checker:
    """Validates the arguments of one message; built once per message name."""

    def __init__(self, defs: ApiDefs, message: Struct) -> None:
        self.defs = defs
        self.msg = message

    def check(self, kwargs: Mapping[str, Any]) -> None:
        if not isinstance(kwargs, Mapping):
            self.fail("", f"arguments must be a dict, got {_kind(kwargs)}")
        for k in kwargs:
            if k in HEADER_FIELDS:
                self.fail(k, "is set by the API client; do not pass it")
        self.struct(self.msg, kwargs, "")

    def fail(self, path: str, reason: str, hint: str | None = None):
        raise VppMessageInvalid(self.msg.name, path or None, reason, hint=hint)

    # -- containers ------------------------------------------------------------
    def struct(self, st: Struct, data: Any, path: str) -> None:
        if not isinstance(data, Mapping):
            self.fail(path, f"expected a dict of {st.name} fields, got {_kind(data)}")
        for k in data:
            if k not in st.by_name:  # (header fields: refused by check())
                names = [f for f in st.by_name if f not in HEADER_FIELDS]
                close = difflib.get_close_matches(str(k), names, n=2)
                self.fail(_join(path, str(k)), f"unknown field of {st.name}" + (
                    f" (did you mean {' or '.join(close)}?)" if close else
                    f" (fields: {', '.join(names)})"))
        risky = self._risky(st)
        for f in st.fields:
            if f.name in data:
                self.field(f, data[f.name], _join(path, f.name))
            elif f.name in risky:
                self.omitted(f, _join(path, f.name))
            if f.count_field:
                self.count(f, data, path)
            if f.discriminator and f.name in data:
                self.discriminated(st, f, data, path)

    def _risky(self, st: Struct) -> frozenset:
        """Fields of ``st`` that may not be left out (see omitted()), cached."""
        hit = self.defs._risky.get(st.name)
        if hit is None:
            names = []
            for f in st.fields:
                if must_be_given(self.defs, f) or self._zero_invalid(f) is not None:
                    names.append(f.name)
            hit = self.defs._risky[st.name] = frozenset(names)
        return hit

    def omitted(self, f: Field, path: str) -> None:
        if must_be_given(self.defs, f):
            self.fail(path, "left out, but vpp_papi cannot send a missing fixed array "
                      f"of {f.type} (it fails on it)" if f.length else
                      f"left out, but {f.type} holds a fixed array that vpp_papi cannot "
                      "send missing", hint="use fill() to add it, zero-filled")
        e = self._zero_invalid(f)
        if e is not None:
            self.fail(path, f"left out, so VPP would receive 0, which is not a value of "
                            f"{e.name} ({e.describe()})")

    def _zero_invalid(self, f: Field):
        """The enum of ``f`` when leaving it out is never valid: VPP receives 0
        for a field left out, and this enum (af_packet_mode) has no 0 member."""
        e = self.defs.enums.get(f.type)
        if (e is not None and f.length is None and not f.has_default and not e.flags
                and 0 not in e.by_value):
            return e
        return None

    def count(self, f: Field, data: Mapping, path: str) -> None:
        items = data.get(f.name)
        n = len(items) if items is not None and hasattr(items, "__len__") else 0
        given = data.get(f.count_field)
        cpath = _join(path, f.count_field)
        if given is None:
            if n:
                self.fail(cpath, f"must be given: {f.name} has {n} entries "
                                 "(vpp_papi does not set it)", hint="use fill() to set it")
        elif given != n:
            self.fail(cpath, f"is {given!r} but {f.name} has {n} entries")

    def discriminated(self, st: Struct, f: Field, data: Mapping, path: str) -> None:
        arm_value = data[f.name]
        if not isinstance(arm_value, Mapping) or len(arm_value) != 1:
            return
        arm = self.defs.types[f.type].by_name.get(next(iter(arm_value)))
        disc = st.by_name.get(f.discriminator)
        e = self.defs.enums.get(disc.type) if disc else None
        if arm is None or arm.case is None or e is None or arm.case not in e.values:
            return
        given = data.get(f.discriminator, 0)
        if given != e.values[arm.case]:
            self.fail(_join(path, f.name), f"holds {arm.name} but {f.discriminator} is "
                      f"{given!r} (needs {arm.case}={e.values[arm.case]})")

    # -- one field ---------------------------------------------------------------
    def field(self, f: Field, v: Any, path: str) -> None:
        if v is None:
            self.fail(path, "is None; leave the field out to send 0 (or its default)")
        if f.type == "string":
            self.string(f, v, path)
        elif f.length is None:
            self.value(f.type, v, path)
        else:
            self.array(f.type, f.length, v, path, counted=f.count_field is not None)

    def string(self, f: Field, v: Any, path: str) -> None:
        if type(v) is not str:
            self.fail(path, f"expected str, got {_kind(v)}")
        if not v.isascii():
            self.fail(path, "must be ASCII (vpp_papi encodes strings as ASCII)")
        if f.length and len(v) > f.length - 1:
            self.fail(path, f"too long: {len(v)} characters, at most {f.length - 1} "
                            f"(a {f.length}-byte buffer with its NUL)")

    def array(self, ftype: str, length: int, v: Any, path: str, counted: bool) -> None:
        if ftype == "u8":
            if isinstance(v, (bytes, bytearray)):
                if length and len(v) != length:
                    self.fail(path, f"fixed array of {length} bytes, got {len(v)}",
                              hint="use fill() to pad it")
                return
            # a legacy variable array (no count field) also takes a list of ints
            if not (length == 0 and not counted and isinstance(v, (list, tuple))):
                self.fail(path, f"expected bytes, got {_kind(v)}")
        elif not isinstance(v, (list, tuple)):
            self.fail(path, f"expected a list of {ftype}, got {_kind(v)}")
        if length and len(v) != length:
            self.fail(path, f"fixed array of {length} {ftype} entries, got {len(v)}",
                      hint="use fill() to pad it to its declared length")
        for i, item in enumerate(v):
            self.value(ftype, item, f"{path}[{i}]")

    def value(self, ftype: str, v: Any, path: str) -> None:
        if ftype in INT_RANGES:
            self.integer(ftype, v, path)
        elif ftype == "bool":
            if not (type(v) is bool or (type(v) is int and v in (0, 1))):
                self.fail(path, f"expected bool, got {v!r}")
        elif ftype == "f64":
            if type(v) is bool or not isinstance(v, (int, float)):
                self.fail(path, f"expected a number, got {_kind(v)}")
        elif ftype in self.defs.enums:
            self.enum(ftype, v, path)
        elif ftype in _CONVERSIONS and self.converted(ftype, v, path):
            return
        elif ftype in self.defs.aliases:
            a = self.defs.aliases[ftype]
            if a.length is None:
                self.value(a.type, v, path)
            else:
                self.array(a.type, a.length, v, path, counted=False)
        elif ftype in self.defs.types:
            t = self.defs.types[ftype]
            if t.kind == "union":
                self.union(t, v, path)
            else:
                self.struct(t, v, path)
        else:
            self.fail(path, f"has type {ftype}, which the definitions do not define")

    def integer(self, ftype: str, v: Any, path: str) -> None:
        if type(v) is bool or not isinstance(v, int):
            self.fail(path, f"expected an integer ({ftype}), got {_kind(v)}")
        lo, hi = INT_RANGES[ftype]
        if not lo <= v <= hi:
            self.fail(path, f"{v} is out of range for {ftype} ({lo}..{hi})")

    def enum(self, ftype: str, v: Any, path: str) -> None:
        e = self.defs.enums[ftype]
        self.integer(e.base, v, path)
        if e.flags:
            if v & ~e.mask:
                self.fail(path, f"{v:#x} has bits outside the flags {e.name} ({e.describe()})")
        elif v not in e.by_value:
            self.fail(path, f"{v} is not a value of {e.name} ({e.describe()})")

    def union(self, t: Struct, v: Any, path: str) -> None:
        if not isinstance(v, Mapping):
            self.fail(path, f"expected a dict with one of {', '.join(t.by_name)}, got {_kind(v)}")
        if len(v) > 1:
            self.fail(path, f"a union holds one member, got {', '.join(map(str, v))}")
        for k, item in v.items():
            if k not in t.by_name:
                self.fail(_join(path, str(k)), f"unknown member of {t.name} "
                          f"(members: {', '.join(t.by_name)})")
            self.field(t.by_name[k], item, _join(path, k))

    # -- the forms vpp_papi converts ---------------------------------------------
    def converted(self, ftype: str, v: Any, path: str) -> bool:
        """True if ``v`` is a form vpp_papi converts for ``ftype`` (and valid)."""
        how = _CONVERSIONS[ftype]
        name = _kind(v)
        if name not in how:
            return False
        rule = how[name]
        if rule is None:
            return True
        if rule == "mac":
            if not _MAC.fullmatch(v.replace(":", "")):
                self.fail(path, f"{v!r} is not a MAC address (aa:bb:cc:dd:ee:ff)")
            return True
        addr, _, plen = rule.partition("/")
        text = v
        if plen:
            parts = v.split("/")
            if len(parts) != 2 or not parts[1].isdigit():
                self.fail(path, f"{v!r} is not ADDRESS/LENGTH")
            text = parts[0]
        fam = self._family(text, addr)
        if fam is None:
            want = {"ip": "an IP", "ip4": "an IPv4", "ip6": "an IPv6"}[addr]
            self.fail(path, f"{text!r} is not {want} address")
        if plen and int(v.split("/")[1]) > _FAMILIES[fam][1]:
            self.fail(path, f"prefix length {v.split('/')[1]} is over {_FAMILIES[fam][1]}")
        return True

    @staticmethod
    def _family(text: str, want: str) -> str | None:
        # vpp_papi parses with inet_pton (IPv6 first), so mirror it exactly.
        for fam in ("ip6", "ip4") if want == "ip" else (want,):
            try:
                socket.inet_pton(_FAMILIES[fam][0], text)
                return fam
            except OSError:
                continue
        return None


def must_be_given(defs: ApiDefs, f: Field) -> bool:
    """True if vpp_papi fails to pack ``f`` when it is missing.

    A missing field is packed from None: fine for scalars, strings, unions
    and u8 arrays (zero-filled), but a fixed array of anything else calls
    ``len(None)`` -- also inside a struct that is itself left out."""
    if f.length is not None:
        return bool(f.length) and f.type not in ("u8", "string")
    key = f.type
    hit = defs._must_give.get(key)
    if hit is None:
        hit = False
        a = defs.aliases.get(key)
        t = defs.types.get(key)
        if a is not None:
            hit = bool(a.length) and a.type != "u8"
        elif t is not None and t.kind == "type":
            defs._must_give[key] = False   # guards against recursive types
            hit = any(must_be_given(defs, g) for g in t.fields)
        defs._must_give[key] = hit
    return hit


def _zero_items(defs: ApiDefs, ftype: str, n: int) -> list:
    t = defs.types.get(ftype)
    if t is not None and t.kind == "type":
        return [fill_struct(defs, t, {}) for _ in range(n)]
    if t is not None:
        return [{} for _ in range(n)]   # vpp_papi packs {} as all zeros
    return [0] * n


def fill_struct(defs: ApiDefs, st: Struct, data: Mapping[str, Any]) -> dict:
    """See :meth:`ApiDefs.fill`."""
    out = dict(data)
    for f in st.fields:
        v = out.get(f.name)
        if isinstance(v, Mapping) and f.type in defs.types and f.length is None:
            t = defs.types[f.type]
            if t.kind == "union":
                out[f.name] = {k: (fill_struct(defs, defs.types[t.by_name[k].type], x)
                                   if k in t.by_name and isinstance(x, Mapping)
                                   and t.by_name[k].type in defs.types else x)
                               for k, x in v.items()}
            else:
                out[f.name] = fill_struct(defs, t, v)
        elif isinstance(v, (list, tuple)) and f.type != "string":
            items = [fill_struct(defs, defs.types[f.type], x)
                     if isinstance(x, Mapping) and f.type in defs.types else x for x in v]
            if f.length and len(items) < f.length:
                items += _zero_items(defs, f.type, f.length - len(items))
            out[f.name] = items
        elif isinstance(v, (bytes, bytearray)) and f.length and len(v) < f.length:
            out[f.name] = bytes(v).ljust(f.length, b"\0")
        elif f.name not in out and must_be_given(defs, f):
            if f.length:
                out[f.name] = _zero_items(defs, f.type, f.length)
            elif f.type in defs.types:
                out[f.name] = fill_struct(defs, defs.types[f.type], {})
        if f.count_field and f.count_field not in out:
            out[f.count_field] = len(v) if v is not None else 0
    return out
