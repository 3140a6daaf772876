"""STN on a real VPP: the node's only NIC handed to VPP with the node's
address, and given back (root; skipped with how to get one where there is no
VPP).

The STN network of tests/stnnet.py, plus a VPP and a real agent (``contivctl
agent run --dataplane vpp`` with ``vpp_stn``, its own private etcd) inside
the node namespace. ``contivctl stn steal eth0 --dataplane vpp`` runs there
as an operator would: VPP takes ``eth0`` (af_packet, the NIC's MAC, the
node's address), the host keeps the address on ``stn-host`` and its traffic
goes through VPP, VPP's ``stn`` rule hands the host what VPP does not
consume itself.
"""
from __future__ import annotations

import json
import os
import subprocess
import time
from contextlib import contextmanager

import pytest

from agent.vpp.process import availability
from tests.helpers import eventually
from tests.stnnet import CONTIVCTL, NODE_IP, REMOTE_IP, StnNet, ok

HAVE_VPP, WHY = availability()
pytestmark = [pytest.mark.root, pytest.mark.vpp,
              pytest.mark.skipif(not HAVE_VPP, reason=f"needs a VPP: {WHY}")]


class VppNode:
    """VPP and the agent inside the STN network's node; everything stopped and
    removed by :meth:`close`, also when the test failed."""

    def __init__(self, net: StnNet, tmp) -> None:
        from agent.vpp.process import VppProcess  # noqa: PLC0415
        self.net, self.tmp = net, tmp
        self.vpp = VppProcess(tmp / "vpp", netns=net.node)
        self.agent = None
        self.sock = str(tmp / "agent.sock")
        self.vpp.start(15)
        cfg = tmp / "agent.yaml"
        cfg.write_text(json.dumps({
            "node": "stn1", "dataplane": "vpp", "socket": self.sock, "etcd_data_dir": str(tmp / "etcd"),
            "vpp_uplink": "eth0", "vpp_uplink_cidr": f"{NODE_IP}/24", "vpp_stn": True, "stn_dir": net.dir,
            "vpp_api_socket": str(self.vpp.api_socket), "vpp_stats_socket": str(self.vpp.config.stats_socket)}))
        self.log = open(tmp / "agent.log", "w")
        self.agent = subprocess.Popen(["ip", "netns", "exec", net.node, *CONTIVCTL, "agent", "run",
                                       "--config", str(cfg)], stdout=self.log, stderr=subprocess.STDOUT)
        assert eventually(self.ready, timeout=60)

    def ready(self) -> bool:
        from agent.api.client import AgentClient  # noqa: PLC0415
        try:
            return AgentClient(self.sock, timeout=2).health().ready
        except Exception:  # noqa: BLE001 -- still starting
            return False

    def stn(self, *args: str, env: dict | None = None):
        return self.net.stn(*args, "--vpp-api-socket", str(self.vpp.api_socket),
                            env={"CONTIV_SOCKET": self.sock, **(env or {})})

    def carries(self) -> bool:
        """VPP answers for the node's address (it has it on the NIC)."""
        from agent.api.client import AgentClient  # noqa: PLC0415
        from agent.errors import Unavailable  # noqa: PLC0415
        try:
            out = AgentClient(self.sock).dataplane_cli("show interface address").output
        except Unavailable:  # the agent between two VPPs
            return False
        return f"L3 {NODE_IP}/24" in out

    def close(self) -> None:
        if self.agent is not None:
            self.agent.terminate()
            try:
                self.agent.wait(20)
            except subprocess.TimeoutExpired:
                self.agent.kill()
            self.log.close()
        self.vpp.stop()
        self.vpp.close()


@contextmanager
def _vpp_node(tmp):
    net = StnNet()
    n = None
    try:
        n = VppNode(net, tmp)
        yield n
    finally:
        if n is not None:
            n.close()
        net.close()


@pytest.fixture
def node(tmp_path):
    with _vpp_node(tmp_path) as n:
        yield n


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    """One VPP node for the fault cases: each leaves it as it found it."""
    with _vpp_node(tmp_path_factory.mktemp("stn-faults")) as n:
        yield n


def test_vpp_holds_the_nic_the_node_stays_reachable_and_restore_is_identical(node):
    net = node.net
    before = net.config()
    assert not node.carries(), "VPP must leave the node's address to Linux until STN steals the NIC"
    entry = json.loads(ok(node.stn("steal", "eth0", "--dataplane", "vpp", "-o", "json")).stdout)
    assert entry["state"]["phase"] == "confirmed" and entry["state"]["holder"] == "stn-host"
    assert node.carries()
    stolen = net.config()
    assert any(a["local"] == NODE_IP for x in stolen["addr"] if x["ifname"] == "stn-host" for a in x["addr_info"])
    assert not any(a.get("family") == "inet" for x in stolen["addr"] if x["ifname"] == "eth0"
                   for a in x["addr_info"])
    net.reachable()
    # the agent reports it
    from agent.api.client import AgentClient  # noqa: PLC0415
    st = AgentClient(node.sock).status().stn
    assert [(e.state.iface, e.state.dataplane, e.state.phase) for e in st.entries] == [("eth0", "vpp", "confirmed")]

    ok(node.stn("restore", "eth0"))
    assert not net.changed(before), net.changed(before)
    assert eventually(lambda: not node.carries(), timeout=10)
    net.reachable()


def test_the_watchdog_gives_the_nic_back_when_vpp_dies_and_takes_it_again(node):
    net = node.net
    before = net.config()
    ok(node.stn("steal", "eth0", "--dataplane", "vpp"))
    watch = subprocess.Popen(["ip", "netns", "exec", net.node, *CONTIVCTL, "stn", "watch", "--interval", "0.2",
                              "--dir", net.dir, "--vpp-api-socket", str(node.vpp.api_socket)],
                             env={**os.environ, "CONTIV_SOCKET": node.sock},
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert net.ping(net.node, REMOTE_IP)
        node.vpp.kill()  # SIGKILL, as a crash
        start = time.monotonic()
        assert eventually(lambda: net.ping(net.node, REMOTE_IP, wait=0.5), timeout=15)
        assert time.monotonic() - start < 10
        assert not net.changed(before), net.changed(before)
        assert [e["state"]["phase"] for e in json.loads(ok(net.stn("status", "-o", "json")).stdout)["entries"]] \
            == ["suspended"]
        node.vpp.start(15)
        assert eventually(node.carries, timeout=30)
        assert eventually(lambda: net.ping(net.node, REMOTE_IP, wait=0.5), timeout=15)
        net.reachable()
        assert [e["state"]["phase"] for e in json.loads(ok(net.stn("status", "-o", "json")).stdout)["entries"]] \
            == ["confirmed"]
    finally:
        watch.terminate()
        _, err = watch.communicate(timeout=20)
    assert "vpp data plane died" in err and "NIC stolen again" in err, err
    ok(node.stn("restore", "eth0"))
    assert not net.changed(before), net.changed(before)


STEAL_STEPS = ("snapshot", "holder", "attach", "addresses", "routes", "rules", "neighbours", "dataplane")
RESTORE_STEPS = ("release", "teardown", "link", "addresses", "routes", "rules", "neighbours")


@pytest.mark.parametrize("step", STEAL_STEPS)
def test_a_fault_during_a_vpp_steal_leaves_the_node_as_it_was(shared, step):
    net = shared.net
    before = net.config()
    res = shared.stn("steal", "eth0", "--dataplane", "vpp", env={"CONTIV_STN_FAULT": f"steal:{step}"})
    assert res.returncode != 0 and "steal of eth0 failed at step" in res.stderr, res.stderr
    assert not net.changed(before), net.changed(before)
    assert eventually(lambda: not shared.carries(), timeout=10), "VPP kept the node's address"
    assert net.ping(net.node, REMOTE_IP)


@pytest.mark.parametrize("step", RESTORE_STEPS)
def test_a_fault_during_a_vpp_restore_still_restores(shared, step):
    net = shared.net
    before = net.config()
    ok(shared.stn("steal", "eth0", "--dataplane", "vpp"))
    res = ok(shared.stn("restore", "eth0", env={"CONTIV_STN_FAULT": f"restore:{step}"}))
    assert "starting over" in res.stderr
    assert not net.changed(before), net.changed(before)
    assert eventually(lambda: not shared.carries(), timeout=10), "VPP kept the node's address"
    assert net.ping(net.node, REMOTE_IP)


def test_a_host_interconnect_that_lost_the_nodes_address_is_given_back_then_stolen_again(shared):
    """What a reboot leaves: STN's record (on disk) says stolen, the links'
    configuration (in memory) is gone -- the agent makes ``stn-host`` again,
    without the node's address. The watchdog gives the node its
    configuration back, then -- VPP being up -- steals the NIC again from the
    snapshot."""
    net = shared.net
    before = net.config()
    ok(shared.stn("steal", "eth0", "--dataplane", "vpp"))
    subprocess.run(["ip", "-n", net.node, "addr", "flush", "dev", "stn-host", "scope", "global"], check=True)
    assert not net.ping(net.node, REMOTE_IP, wait=0.5)
    first = ok(shared.stn("watch", "--once"))
    assert "vpp data plane died, node configuration restored" in first.stderr
    assert not net.changed(before), net.changed(before)
    second = ok(shared.stn("watch", "--once"))
    assert "NIC stolen again (confirmed)" in second.stderr, second.stderr
    assert eventually(lambda: net.ping(net.node, REMOTE_IP, wait=0.5), timeout=10)
    net.reachable()
    ok(shared.stn("restore", "eth0"))
    assert not net.changed(before), net.changed(before)
