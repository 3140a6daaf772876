"""A fake data plane implementing the descriptor protocol, for reconciler tests.

It holds objects in a dict like a kernel would, distinguishes ours from
foreign ones by an owner tag, and can be told to fail operations.
"""
from __future__ import annotations

from dataclasses import dataclass

from agent.errors import InvalidInput, TemporaryError
from agent.reconciler import Dependency, Descriptor, Retrieved


@dataclass(frozen=True)
class Iface:
    name: str
    mtu: int = 1500


@dataclass(frozen=True)
class Route:
    dst: str
    iface: str


class FakePlane:
    def __init__(self):
        self.objects: dict[str, tuple[object, str]] = {}  # key -> (value, owner)
        self.log: list[tuple[str, str]] = []
        self.fail: dict[tuple[str, str], Exception] = {}  # (op, key) -> error (once)

    def maybe_fail(self, op, key):
        err = self.fail.pop((op, key), None)
        if err:
            raise err


class _Base(Descriptor):
    def __init__(self, plane: FakePlane):
        self.plane = plane

    def create(self, key, value, ctx):
        self.plane.maybe_fail("create", key)
        self.plane.log.append(("create", key))
        self.plane.objects[key] = (value, "contiv")
        return {"created": key}

    def delete(self, key, value, metadata, ctx):
        self.plane.maybe_fail("delete", key)
        self.plane.log.append(("delete", key))
        self.plane.objects.pop(key, None)

    def retrieve(self, correlate, ctx):
        return [Retrieved(k, v, None) for k, (v, owner) in self.plane.objects.items()
                if k.startswith(self.key_prefix) and owner == "contiv"]


class IfaceDescriptor(_Base):
    name = "fake-iface"
    key_prefix = "fake/iface/"
    supports_update = True

    def validate(self, key, value):
        if len(value.name) > 15:
            raise InvalidInput("name too long")

    def update(self, key, old, new, metadata, ctx):
        self.plane.maybe_fail("update", key)
        self.plane.log.append(("update", key))
        self.plane.objects[key] = (new, "contiv")
        return metadata

    def needs_recreate(self, key, old, new):
        return old.name != new.name


class RouteDescriptor(_Base):
    name = "fake-route"
    key_prefix = "fake/route/"

    def dependencies(self, key, value):
        return [Dependency("interface-exists", f"fake/iface/{value.iface}")]


def iface(name, mtu=1500):
    return f"fake/iface/{name}", Iface(name, mtu)


def route(dst, ifname):
    return f"fake/route/{dst}", Route(dst, ifname)


def temp(msg="busy"):
    return TemporaryError(msg)


@dataclass(frozen=True)
class Thing:
    name: str
    needs: tuple = ()


class ThingDescriptor(_Base):
    """Depends on every key in ``needs`` (for dependency-graph shapes)."""

    name = "fake-thing"
    key_prefix = "fake/thing/"

    def dependencies(self, key, value):
        return [Dependency("needs", k) for k in value.needs]


def thing(name, *needs):
    return f"fake/thing/{name}", Thing(name, tuple(f"fake/thing/{n}" for n in needs))
