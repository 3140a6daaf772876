"""End to end: STN on a Linux lab node running its agent and pods. The node's
only NIC (``eth0``) is stolen into STN's bridge while pods on it talk to
pods on another node over VXLAN: the agent moves its VXLAN device onto the
bridge (``contivctl stn`` tells it through its API), the connections keep
working, and after the restore they work again through the NIC. Root.
"""
from __future__ import annotations

import json
import os
import subprocess

import pytest

from tests.e2e.labtools import kube_lab, wait_until
from tests.stnnet import CONTIVCTL

pytestmark = [pytest.mark.root, pytest.mark.e2e]
NS = "stn"


def pod(name: str, node: str) -> dict:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": NS},
            "spec": {"nodeName": node, "containers": [{"name": "c", "image": "lab",
                                                       "ports": [{"containerPort": 8080}]}]}}


def connects(kube, src: str, dst: str) -> bool:
    from lab.ops import run_probe  # noqa: PLC0415
    return run_probe(kube, f"{NS}/{src}", f"{NS}/{dst}", 8080, "TCP", 1.0).connected


def vxlan_link(netns: str) -> str:
    out = subprocess.run(["ip", "-n", netns, "-j", "-d", "link", "show", "contiv-vx"], check=True,
                         capture_output=True, text=True).stdout
    info = json.loads(out)[0]["linkinfo"]["info_data"]
    return info.get("link", "")


def test_a_linux_node_keeps_its_pods_connected_through_a_steal_and_a_restore():
    with kube_lab([{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}},
                   pod("a", "node1"), pod("b", "node2")], "linux") as (lab, kube):
        st = lab.state()
        n1 = st.node("node1")
        stn_dir = str(lab.paths.stn_dir("node1"))

        def stn(*args: str) -> subprocess.CompletedProcess:
            r = subprocess.run(["ip", "netns", "exec", n1.netns, *CONTIVCTL, "stn", *args, "--dir", stn_dir],
                               capture_output=True, text=True, timeout=60,
                               env={**os.environ, "CONTIV_SOCKET": n1.socket})
            assert r.returncode == 0, r.stderr
            return r

        assert connects(kube, "a", "b") and vxlan_link(n1.netns) == "eth0"
        entry = json.loads(stn("steal", "eth0", "-o", "json").stdout)
        assert entry["state"]["phase"] == "confirmed" and entry["gateway"] == st.gateway
        assert vxlan_link(n1.netns) == "stnbr-eth0", "the agent moved VXLAN onto STN's bridge"
        assert wait_until(lambda: connects(kube, "a", "b") and connects(kube, "b", "a"),
                          "pods across nodes to connect with node1's NIC stolen")
        status = lab.client("node1").status()
        assert [(e.state.iface, e.state.phase) for e in status.stn.entries] == [("eth0", "confirmed")]
        assert status.stn.dir == stn_dir
        assert lab.client("node1").plan().operations == (), "the steal left the agent with drift"

        stn("restore", "eth0")
        assert wait_until(lambda: vxlan_link(n1.netns) == "eth0", "VXLAN back on the NIC")
        assert wait_until(lambda: connects(kube, "a", "b") and connects(kube, "b", "a"),
                          "pods across nodes to connect after the restore")
        assert lab.client("node1").status().stn.entries == ()
