"""The data-plane contract (tests/dataplane_contract.py) against the fake
data plane the unit tests stand on (tests/fakedataplane.py): no root."""
from __future__ import annotations

from types import SimpleNamespace

import pytest

from tests.dataplane_contract import DataplaneContract
from tests.fakedataplane import FakeDataplane, PodLink, Thing


class FakeHarness:
    def __init__(self, tmp_path) -> None:
        self.plane = FakeDataplane()
        self.facts = self.plane.open(SimpleNamespace(node_ip="192.168.0.1", mtu=0))
        self._tmp = tmp_path

    def new_netns(self, name: str) -> str:
        p = self._tmp / f"netns-{name}"
        p.touch()
        return str(p)

    def foreign(self):
        k = self.plane.kernel
        k.links["eth9"] = PodLink("eth9", "", "eth9", ("10.9.9.9/32",), 1500, "someone-else")
        k.things["fake/node/theirs"] = Thing("gateway", ("10.9.9.1",), "someone-else")
        return lambda: "eth9" in k.links and "fake/node/theirs" in k.things

    def sabotage(self, key, value) -> None:
        k = self.plane.kernel
        if isinstance(value, PodLink):
            del k.links[value.host_if]
        elif key in k.things:
            del k.things[key]
        else:
            del k.routes[value.dst]


class TestFakeDataplane(DataplaneContract):
    @pytest.fixture
    def h(self, tmp_path):
        return FakeHarness(tmp_path)
