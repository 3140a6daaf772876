"""End to end: the README's demo (`contivctl lab up --demo`) on each data
plane -- three nodes, examples/demo.yaml, and its probes: a Service, pod to
pod across nodes, a policy that allows and one that blocks."""
from __future__ import annotations

import json

import pytest

from tests.e2e.labtools import cli, leftovers, unique
from tests.helpers import dataplanes

pytestmark = [pytest.mark.root, pytest.mark.e2e]


def mixed():
    """node1 and node3 on VPP, node2 on Linux: pods and Services across both."""
    (vpp,) = [p for p in dataplanes() if p.values == ("vpp",)]
    return pytest.param("node1=vpp,node3=vpp", id="mixed", marks=vpp.marks)


@pytest.mark.parametrize("dataplane", dataplanes() + [mixed()])
def test_the_demo_behaves_as_the_readme_says(dataplane):
    name = unique("d")
    try:
        r = cli("lab", "up", "--name", name, "--demo", "--dataplane", dataplane, "-o", "json")
        assert r.returncode == 0, (r.stdout, r.stderr)
        probes = json.loads(r.stdout)["probes"]
        assert [(p["src"], p["dst"], p["expect"]) for p in probes] == [
            ("tools/client", "svc:shop/web", "allowed"), ("shop/web-1", "shop/web-2", "allowed"),
            ("shop/web-1", "shop/db", "allowed"), ("tools/client", "shop/db", "blocked")]
        assert all(p["ok"] for p in probes), probes
        assert probes[0]["answered_by"] in ("shop/web-1", "shop/web-2")
        assert f"all {len(probes)} probes behaved as expected" in r.stderr
    finally:
        down = cli("lab", "down", "--name", name)
        assert down.returncode == 0, down.stderr
    assert leftovers(name).empty()
