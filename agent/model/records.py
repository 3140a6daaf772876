"""Records the agents keep in etcd: node registry, pod allocations, agent status.

Each record is a frozen dataclass with ``to_json``/``from_json``; unknown JSON
fields are ignored so that a newer agent's records stay readable by an older one.
Addresses are kept as tuples of strings (CIDR or address) per family, so that
dual-stack is a second element, not a schema change.
"""
from __future__ import annotations

import json
import types
import typing
from dataclasses import dataclass, field, fields

from agent.errors import InvalidInput


class _Record:
    """JSON round-trip shared by the records of the model.

    ``from_dict`` follows the field annotations: a field annotated with a
    record (or ``tuple[Record, ...]``, or ``Record | None``) is converted
    recursively; a ``tuple[...]`` field accepts a JSON list. Fields named in
    ``_omit_empty`` are left out of ``to_dict`` when empty, so a record keeps
    the exact JSON shape the API documents (docs/api.yaml)."""

    _omit_empty: tuple[str, ...] = ()

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), separators=(",", ":"), sort_keys=True)

    def to_dict(self) -> dict:
        # names cached per class: dataclasses.fields() per record was most of
        # the cost of a 10,000-record answer (nat sessions)
        names = _NAMES.get(type(self)) or _names(type(self))
        d = {k: _plain(getattr(self, k)) for k in names}
        for k in self._omit_empty:
            if not d.get(k):
                d.pop(k, None)
        return d

    @classmethod
    def from_json(cls, raw: bytes | str):
        try:
            data = json.loads(raw)
        except ValueError as e:
            raise InvalidInput(f"{cls.__name__}: stored value is not JSON: {e}") from None
        return cls.from_dict(data)

    @classmethod
    def from_dict(cls, data: dict):
        if not isinstance(data, dict):
            raise InvalidInput(f"{cls.__name__}: stored value is not an object")
        conv = _converters(cls)
        if _FLAT[cls] and data.keys() <= conv.keys():
            try:  # no nested record and no unknown field: the values as they are
                return cls(**data)
            except TypeError as e:
                raise InvalidInput(f"{cls.__name__}: {e}") from None
        kwargs = {}
        for k, v in data.items():
            c = conv.get(k, _MISSING)
            if c is _MISSING:
                continue  # a newer writer's field: ignored
            kwargs[k] = c(v) if c is not None and v is not None else v
        try:
            return cls(**kwargs)
        except TypeError as e:
            raise InvalidInput(f"{cls.__name__}: {e}") from None


def _plain(v):
    """A field value as JSON data; nested records through their own to_dict
    (which may shape themselves, e.g. omit empty fields)."""
    if v is None or type(v) in _SCALARS:
        return v
    if isinstance(v, _Record):
        return v.to_dict()
    if isinstance(v, (tuple, list)):
        return [_plain(x) for x in v]
    if isinstance(v, dict):
        return {k: _plain(x) for k, x in v.items()}
    return v


_MISSING = object()
_CONVERTERS: dict[type, dict] = {}
_FLAT: dict[type, bool] = {}  # every field is taken as it is (no converter)
_NAMES: dict[type, tuple[str, ...]] = {}
_SCALARS = (str, int, float, bool)


def _names(cls) -> tuple[str, ...]:
    names = _NAMES[cls] = tuple(f.name for f in fields(cls))
    return names


def _converter(tp):
    """A function turning JSON into the annotated type, or None (as is)."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return _converter(args[0]) if len(args) == 1 else None
    if origin is tuple:
        args = typing.get_args(tp)
        inner = _converter(args[0]) if args else None
        if inner is None:
            return lambda v: tuple(v) if isinstance(v, list) else v
        return lambda v: tuple(inner(x) for x in v) if isinstance(v, (list, tuple)) else v
    if isinstance(tp, type) and issubclass(tp, _Record):
        return tp.from_dict
    return None


def _converters(cls) -> dict:
    """Field name -> converter of a record class (computed once per class)."""
    conv = _CONVERTERS.get(cls)
    if conv is None:
        hints = typing.get_type_hints(cls)
        conv = _CONVERTERS[cls] = {f.name: _converter(hints[f.name]) for f in fields(cls)}
        _FLAT[cls] = all(c is None for c in conv.values())
    return conv


@dataclass(frozen=True, slots=True)
class NodeInfo(_Record):
    """One node in the registry (``/contiv/nodes/<name>``), written by its agent.

    ``index`` is the node's subnet index in the cluster pod CIDR and doubles as
    a small numeric node ID (VXLAN MAC, VPP tags). ``node_ip`` is the underlay
    address that VXLAN tunnels terminate on; ``vtep_mac`` the MAC of the node's
    VXLAN device; ``gateways`` the pods' gateway address per family.
    """

    name: str
    index: int
    node_ip: str
    pod_subnets: tuple[str, ...]
    gateways: tuple[str, ...]
    vtep_mac: str = ""
    dataplane: str = "linux"
    node_ips: tuple[str, ...] = ()  # every address of the node (NodePort listens on all)


@dataclass(frozen=True, slots=True)
class Allocation(_Record):
    """A pod attachment's addresses (``/contiv/ipam/pods/<node>/<cid>/<ifname>``).

    The allocation is also the agent's durable record of a local pod: after a
    restart the agent rebuilds every local pod's desired data-plane values from
    these records alone (level-triggered resync), so it carries the netns path
    and the pod identity from CNI_ARGS.
    """

    _omit_empty = ("memif",)

    node: str
    container_id: str
    ifname: str
    ips: tuple[str, ...]  # addresses with prefix length, e.g. "10.1.1.5/32"
    netns: str = ""
    pod_namespace: str = ""
    pod_name: str = ""
    created: float = 0.0
    mtu: int = 0  # from the network configuration; 0: the node's pod MTU
    #: the address of the pod's memif (VPP only, asked for by annotation:
    #: agent.podopts), e.g. "10.1.1.6/32"; "" when the pod has none
    memif: str = ""

    @property
    def addresses(self) -> tuple[str, ...]:
        """Every address this allocation holds (claimed and released together)."""
        return self.ips + ((self.memif,) if self.memif else ())

    @property
    def pod_ref(self) -> str:
        """``ns/name`` if the runtime told us, else the container ID."""
        if self.pod_name:
            # podman and other non-Kubernetes runtimes send a name without a namespace
            return f"{self.pod_namespace}/{self.pod_name}" if self.pod_namespace else self.pod_name
        return self.container_id


@dataclass(frozen=True, slots=True)
class AgentStatus(_Record):
    """What an agent reports about itself (``/contiv/status/<node>``).

    ``applied_revision`` is the etcd revision whose effects the agent has fully
    rendered into its data plane; the lab waits on it after every apply.
    """

    node: str
    applied_revision: int
    ready: bool
    pid: int = 0
    started: float = 0.0
    heartbeat: float = 0.0
    dataplane: str = "linux"
    failed_values: int = 0
    message: str = ""
    version: str = field(default="")
