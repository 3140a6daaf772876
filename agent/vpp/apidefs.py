"""VPP API definitions: load ``*.api.json``, index them, validate messages.

VPP installs one JSON file per API module (``share/vpp/api/{core,plugins}``).
Each describes messages (fields, CRC), types, unions, enums, enumflags and
aliases. :class:`ApiDefs` loads every file under a directory and answers:

* ``defs.message(name)``: a message's fields (type, array length, count
  field, default) and CRC; ``defs.service(name)`` its reply and whether it
  is a dump (a stream of details);
* ``defs.validate(name, kwargs)``: raise :class:`VppMessageInvalid` naming
  the message and the bad field, *before* anything is sent (the checks are
  in :mod:`agent.vpp.validate`);
* ``defs.fill(name, kwargs)``: the same arguments with count fields set and
  fixed arrays padded to their declared length, e.g. the 16 entries of a
  route path's ``label_stack``;
* ``defs.record(type_name, values)``: a reply-like named tuple, zero-filled.

This module is pure Python (``json`` only); it never imports ``vpp_papi``,
so the unit tier checks messages against the real definitions without a VPP.
``find_api_dir()`` locates the definitions of the installed VPP.
"""
from __future__ import annotations

import collections
import difflib
import functools
import json
import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

from agent.vpp.errors import VppMessageInvalid, VppUnavailable

#: The fields every message starts with; vpp_papi sets them, callers must not.
HEADER_FIELDS = frozenset({"_vl_msg_id", "client_index", "context"})
_NO_DEFAULT = object()
# Plain `enum`s that VPP uses as bit sets (if_status_flags: ADMIN_UP|LINK_UP);
# only `enumflag` is declared as such in the files.
_FLAGS_NAME = re.compile(r"(_flags|_mask|_features_\w+)$")


def short_type(name: str) -> str:
    """``vl_api_address_t`` -> ``address``; base types are unchanged."""
    if name.startswith("vl_api_") and name.endswith("_t"):
        return name[7:-2]
    return name


@dataclass(frozen=True)
class Field:
    """One field of a message, type or union.

    ``type`` is a base type (``u32``, ``string``...) or the short name of a
    defined type/enum/alias/union (``address``). ``length``: None for a
    scalar, N > 0 for a fixed array (for ``string``: the buffer size, so at
    most N-1 characters), 0 for a variable-length array or string.
    ``count_field`` names the sibling field that holds a variable array's
    length. ``default`` is the API file's default (else VPP receives 0).
    """

    name: str
    type: str
    length: int | None = None
    count_field: str | None = None
    default: Any = _NO_DEFAULT
    discriminator: str | None = None   # union field: the enum field selecting the arm
    case: str | None = None            # union arm: the enum member that selects it

    @property
    def has_default(self) -> bool:
        return self.default is not _NO_DEFAULT


@dataclass(frozen=True)
class Struct:
    """A message, type or union: ``kind`` is ``message``, ``type`` or ``union``."""

    name: str
    kind: str
    fields: tuple[Field, ...]
    crc: str | None = None
    module: str = ""
    by_name: Mapping[str, Field] = field(default_factory=dict, compare=False, repr=False)


@dataclass(frozen=True)
class Enum:
    """An enum or enumflag. ``flags``: any OR of the values is valid (so is 0)."""

    name: str
    base: str
    values: Mapping[str, int]
    flags: bool

    @functools.cached_property
    def by_value(self) -> dict[int, str]:
        return {v: k for k, v in self.values.items()}

    @functools.cached_property
    def mask(self) -> int:
        m = 0
        for v in self.values.values():
            m |= v
        return m

    def describe(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in self.values.items())


@dataclass(frozen=True)
class Alias:
    """``interface_index`` = u32, ``mac_address`` = u8[6]..."""

    name: str
    type: str
    length: int | None = None


@dataclass(frozen=True)
class Service:
    """A request and what answers it.

    ``stream``: a dump; VPP answers with ``details`` messages (and, for
    ``stream_msg`` services, a final ``reply`` carrying a retval).
    """

    request: str
    reply: str
    stream: bool = False
    details: str | None = None


def _parse_field(raw: list) -> Field:
    opts: dict = {}
    parts = []
    for x in raw:
        if isinstance(x, dict):
            opts.update(x)
        else:
            parts.append(x)
    ftype, fname = short_type(parts[0]), parts[1]
    length = parts[2] if len(parts) > 2 else None
    count = parts[3] if len(parts) > 3 else None
    return Field(fname, ftype, length, count, opts.get("default", _NO_DEFAULT),
                 opts.get("discriminator"), opts.get("case"))


def _parse_struct(raw: list, kind: str, module: str) -> Struct:
    fields, crc = [], None
    for x in raw[1:]:
        if isinstance(x, dict):
            crc = x.get("crc", crc)
        else:
            fields.append(_parse_field(x))
    name = short_type(raw[0])
    return Struct(name, kind, tuple(fields), crc, module, {f.name: f for f in fields})


def _parse_enum(raw: list, declared_flags: bool) -> Enum:
    base, values = "u32", {}
    for x in raw[1:]:
        if isinstance(x, dict):
            base = x.get("enumtype", base)
        else:
            values[x[0]] = x[1]
    name = short_type(raw[0])
    flags = declared_flags or bool(_FLAGS_NAME.search(name)) or (
        name.endswith("_flag") and all(v & (v - 1) == 0 for v in values.values()))
    return Enum(name, base, values, flags)


class ApiDefs:
    """Every message, type and service under one API directory.

    Build with :func:`load` (cached per directory). Lookups raise
    :class:`VppMessageInvalid` for unknown names, suggesting near matches.
    """

    def __init__(self, documents: list[tuple[str, dict]], source: str = "") -> None:
        self.source = source
        self.messages: dict[str, Struct] = {}
        self.types: dict[str, Struct] = {}      # types and unions
        self.enums: dict[str, Enum] = {}
        self.aliases: dict[str, Alias] = {}
        self.services: dict[str, Service] = {}
        for module, doc in documents:
            self._add(module, doc)
        self._checkers: dict[str, Any] = {}
        self._must_give: dict[str, bool] = {}   # caches of agent.vpp.validate
        self._risky: dict[str, frozenset] = {}
        self._tuples: dict[str, type] = {}

    def _add(self, module: str, doc: dict) -> None:
        for raw in doc.get("enums", []):
            e = _parse_enum(raw, False)
            self.enums[e.name] = e
        for raw in doc.get("enumflags", []):
            e = _parse_enum(raw, True)
            self.enums[e.name] = e
        for raw in doc.get("types", []):
            t = _parse_struct(raw, "type", module)
            self.types[t.name] = t
        for raw in doc.get("unions", []):
            t = _parse_struct(raw, "union", module)
            self.types[t.name] = t
        for name, a in doc.get("aliases", {}).items():
            self.aliases[name] = Alias(name, short_type(a["type"]), a.get("length"))
        for raw in doc.get("messages", []):
            m = _parse_struct(raw, "message", module)
            self.messages[m.name] = m
        for req, s in doc.get("services", {}).items():
            self.services[req] = Service(req, s.get("reply", ""), bool(s.get("stream")),
                                         s.get("stream_msg") or (s["reply"] if s.get("stream")
                                                                 else None))

    @classmethod
    def from_dir(cls, api_dir: str | os.PathLike) -> "ApiDefs":
        root = Path(api_dir)
        files = sorted(root.rglob("*.api.json"))
        if not files:
            raise VppUnavailable(f"no VPP API definitions (*.api.json) under {root}",
                                 hint=_HOW_TO_GET_DEFS)
        docs = []
        for f in files:
            with open(f, encoding="utf-8") as fh:
                docs.append((f.name[: -len(".api.json")], json.load(fh)))
        return cls(docs, source=str(root))

    # -- lookups -----------------------------------------------------------
    def message(self, name: str) -> Struct:
        """The message called ``name``; VppMessageInvalid if there is none."""
        try:
            return self.messages[name]
        except KeyError:
            close = difflib.get_close_matches(name, self.messages, n=3)
            raise VppMessageInvalid(name, None, "unknown message" + (
                f" (did you mean {', '.join(close)}?)" if close else ""),
                hint=f"messages come from the API definitions in {self.source}") from None

    def crc(self, name: str) -> str:
        return self.message(name).crc or ""

    def service(self, name: str) -> Service:
        """How ``name`` is answered; VppMessageInvalid if it is not a request."""
        self.message(name)
        s = self.services.get(name)
        if s is None or s.reply in ("", "null"):
            raise VppMessageInvalid(name, None, "not a request message (no reply defined)")
        return s

    def is_dump(self, name: str) -> bool:
        return self.service(name).stream

    def related(self, name: str) -> list[str]:
        """The request, its reply and its details message: what must match in VPP."""
        s = self.service(name)
        out = [name, s.reply]
        if s.details and s.details not in out:
            out.append(s.details)
        return [n for n in out if n in self.messages]

    # -- checks and helpers (agent.vpp.validate) ------------------------------
    def validate(self, name: str, kwargs: Mapping[str, Any]) -> None:
        """Raise VppMessageInvalid unless ``kwargs`` is a valid ``name`` message.

        Checked: unknown message or field, header fields, Python types,
        integer ranges, enum values (enumflags: any OR of the members),
        omitted enum fields whose implicit 0 is not a member, string lengths,
        fixed array lengths, count fields against their arrays, nested types
        and unions (including the union arm against its discriminator), and
        the address forms vpp_papi converts (``"10.1.1.1"``, ``IPv4Address``,
        ``"10.1.0.0/24"``, ``IPv4Network``, ``IPv4Interface``...).
        Omitted fields are fine: VPP receives 0 or the file's default.
        """
        checker = self._checkers.get(name)
        if checker is None:
            from agent.vpp.validate import Checker
            checker = self._checkers[name] = Checker(self, self.message(name))
        checker.check(kwargs)

    def validate_many(self, name: str, requests: Iterable[Mapping[str, Any]]) -> list:
        """Validate every request of a batch (naming the bad one); return them."""
        items = list(requests)
        for i, kw in enumerate(items):
            try:
                self.validate(name, kw)
            except VppMessageInvalid as e:
                raise VppMessageInvalid(name, e.field, f"request #{i}: {e.reason}",
                                        hint=e.hint) from None
        return items

    def fill(self, name: str, kwargs: Mapping[str, Any]) -> dict:
        """``kwargs`` completed: count fields set from their arrays when left out,
        fixed arrays padded with zero entries (bytes with NULs) to their length.
        Nested dicts are completed too. Nothing is validated here."""
        from agent.vpp.validate import fill_struct
        return fill_struct(self, self.message(name), kwargs)

    def zero(self, ftype: str, length: int | None = None) -> Any:
        """What VPP sends for an all-zero value of this type (for fakes)."""
        if length:
            if ftype == "string":
                return ""
            return bytes(length) if ftype == "u8" else [self.zero(ftype) for _ in range(length)]
        if length == 0:
            return "" if ftype == "string" else (b"" if ftype == "u8" else [])
        if ftype == "string":
            return ""
        if ftype == "bool":
            return False
        if ftype == "f64":
            return 0.0
        if ftype in self.aliases:
            a = self.aliases[ftype]
            return self.zero(a.type, a.length)
        if ftype in self.types:
            return self.record(ftype, {})
        return 0

    def record(self, type_name: str, values: Mapping[str, Any]) -> Any:
        """A named tuple of message/type ``type_name``: ``values`` over zeros.

        Shaped like what vpp_papi returns (attribute access by field name);
        used by the recording fake for replies and details."""
        st = self.messages.get(type_name) or self.types.get(type_name)
        if st is None:
            self.message(type_name)  # raises with a suggestion
        cls = self._tuples.get(type_name)
        if cls is None:
            cls = self._tuples[type_name] = collections.namedtuple(
                type_name, [f.name for f in st.fields], rename=True)
        unknown = set(values) - set(st.by_name)
        if unknown:
            raise VppMessageInvalid(type_name, sorted(unknown)[0], "unknown field")
        return cls(*[values[f.name] if f.name in values else self.zero(f.type, f.length)
                     for f in st.fields])


_HOW_TO_GET_DEFS = ("install VPP (its API definitions are under PREFIX/share/vpp/api) "
                    "or set VPP_PREFIX to where VPP is installed")


def find_api_dir(prefix: str | os.PathLike | None = None) -> Path | None:
    """The API definitions of the installed VPP, or None.

    Looks at ``PREFIX/share/vpp/api`` for, in order: ``prefix``,
    ``$VPP_PREFIX``, the prefix of ``vpp`` on PATH (``PREFIX/bin/vpp``);
    then ``/usr/share/vpp/api`` and ``/opt/vpp/share/vpp/api``.
    """
    candidates: list[Path] = []
    for p in (prefix, os.environ.get("VPP_PREFIX")):
        if p:
            candidates.append(Path(p) / "share/vpp/api")
    exe = shutil.which("vpp")
    if exe:
        candidates.append(Path(exe).resolve().parent.parent / "share/vpp/api")
    candidates += [Path("/usr/share/vpp/api"), Path("/opt/vpp/share/vpp/api")]
    for c in candidates:
        if c.is_dir() and next(c.rglob("*.api.json"), None) is not None:
            return c
    return None


@functools.lru_cache(maxsize=8)
def _load_cached(resolved: str) -> ApiDefs:
    return ApiDefs.from_dir(resolved)


def load(api_dir: str | os.PathLike | None = None) -> ApiDefs:
    """The definitions under ``api_dir`` (default: :func:`find_api_dir`), cached."""
    if api_dir is None:
        api_dir = find_api_dir()
        if api_dir is None:
            raise VppUnavailable("no VPP API definitions found", hint=_HOW_TO_GET_DEFS)
    return _load_cached(str(Path(api_dir).resolve()))

