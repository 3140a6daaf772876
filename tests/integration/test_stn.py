"""STN on the Linux data plane, for real: ``contivctl stn`` run inside a node
namespace whose only NIC is a veth to a gateway that routes to a remote host
(tests/stnnet.py). Every case compares the node's whole configuration
(``ip -j addr / route show table all / rule / -d link / neigh nud
permanent``) before the steal and after the restore. Root only.
"""
from __future__ import annotations

import json
import os
import subprocess
import time

import pytest

from tests.helpers import eventually
from tests.stnnet import GW_IP, NODE_IP, REMOTE_IP, StnNet, ok

pytestmark = pytest.mark.root

STEAL_STEPS = ("snapshot", "holder", "attach", "addresses", "routes", "rules", "neighbours", "dataplane")
RESTORE_STEPS = ("release", "teardown", "link", "addresses", "routes", "rules", "neighbours")


@pytest.fixture
def net():
    n = StnNet()
    try:
        yield n
    finally:
        n.close()


def _status(net: StnNet) -> list[dict]:
    return json.loads(ok(net.stn("status", "-o", "json")).stdout)["entries"]


def test_steal_keeps_the_node_reachable_and_restore_is_identical(net):
    before = net.config()
    res = ok(net.stn("steal", "eth0", "-o", "json"))
    entry = json.loads(res.stdout)
    # the gateway answered through the bridge: confirmed by itself
    assert entry["state"]["phase"] == "confirmed" and entry["state"]["check"] == GW_IP
    assert entry["state"]["holder"] == "stnbr-eth0" and entry["gateway"] == GW_IP
    stolen = net.config()
    bridge = next(x for x in stolen["-d link"] if x["ifname"] == "stnbr-eth0")
    nic = next(x for x in stolen["-d link"] if x["ifname"] == "eth0")
    assert nic.get("master") == "stnbr-eth0"
    assert bridge["address"] == nic["address"] and bridge["mtu"] == 1400
    assert {a["local"] for x in stolen["addr"] if x["ifname"] == "stnbr-eth0" for a in x["addr_info"]} >= \
        {NODE_IP, "192.168.90.11", "2001:db8:90::10"}
    assert any(r.get("table") == "100" and r["dev"] == "stnbr-eth0" for r in stolen["route show table all"])
    assert any(r.get("oif") == "stnbr-eth0" for r in stolen["rule"])
    assert any(n["dev"] == "stnbr-eth0" and n["dst"] == "192.168.90.99" for n in stolen["neigh show nud permanent"])
    net.reachable()

    rows = _status(net)
    assert [(r["state"]["iface"], r["state"]["dataplane"], r["state"]["phase"]) for r in rows] == \
        [("eth0", "linux", "confirmed")]

    ok(net.stn("restore", "eth0"))
    assert not net.changed(before), net.changed(before)
    assert _status(net) == []
    net.reachable()
    # restoring twice: nothing on record, one line, nothing changed
    res = net.stn("restore", "eth0")
    assert res.returncode == 3 and "eth0 is not stolen" in res.stderr
    assert not net.changed(before), net.changed(before)


def test_an_unconfirmed_steal_rolls_back_by_itself(net):
    before = net.config()
    start = time.monotonic()
    res = ok(net.stn("steal", "eth0", "--check", "none", "--confirm-timeout", "2", "-o", "json"))
    assert json.loads(res.stdout)["state"]["phase"] == "pending"
    assert "confirm within 2 s" in res.stderr
    assert net.ping(net.node, REMOTE_IP)
    # the guard process, detached from the command, restores at the deadline
    assert eventually(lambda: not net.changed(before), timeout=10)
    assert time.monotonic() - start < 8
    assert _status(net) == []
    net.reachable()


def test_confirm_keeps_the_steal(net):
    ok(net.stn("steal", "eth0", "--check", "none", "--confirm-timeout", "2"))
    res = ok(net.stn("confirm", "-o", "json"))
    assert json.loads(res.stdout)["state"]["phase"] == "confirmed"
    ok(net.stn("confirm", "eth0"))  # idempotent
    time.sleep(3)  # past the deadline: the guard left it alone
    assert [r["state"]["phase"] for r in _status(net)] == ["confirmed"]
    assert net.ping(net.node, REMOTE_IP)


def test_a_check_that_never_answers_restores(net):
    before = net.config()
    res = net.stn("steal", "eth0", "--check", "192.168.90.250", "--confirm-timeout", "2")
    assert res.returncode == 1
    assert "192.168.90.250 did not answer within 2 s" in res.stderr and "restored" in res.stderr
    assert not net.changed(before) and _status(net) == []


def test_watchdog_restores_when_the_data_plane_dies(net):
    before = net.config()
    ok(net.stn("steal", "eth0"))
    watch = subprocess.Popen(["ip", "netns", "exec", net.node, *__import__("tests.stnnet").stnnet.CONTIVCTL,
                              "stn", "watch", "--interval", "0.2", "--dir", net.dir],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(0.5)
        assert net.ping(net.node, REMOTE_IP)
        # the data plane dies: the bridge that holds the NIC and the address
        subprocess.run(["ip", "-n", net.node, "link", "del", "stnbr-eth0"], check=True)
        start = time.monotonic()
        assert eventually(lambda: net.ping(net.node, REMOTE_IP, wait=0.5), timeout=10)
        assert time.monotonic() - start < 5
        assert eventually(lambda: not net.changed(before), timeout=5)
    finally:
        watch.terminate()
        _, err = watch.communicate(timeout=10)
    assert "linux data plane died, node configuration restored" in err
    net.reachable()


@pytest.mark.parametrize("step", STEAL_STEPS)
def test_a_fault_during_steal_leaves_the_node_as_it_was(net, step):
    before = net.config()
    res = net.stn("steal", "eth0", env={"CONTIV_STN_FAULT": f"steal:{step}"})
    assert res.returncode != 0
    errors = [ln for ln in res.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and "steal of eth0 failed at step" in errors[0] and "restored" in errors[0]
    assert not net.changed(before), net.changed(before)
    assert _status(net) == []
    assert net.ping(net.node, REMOTE_IP)


@pytest.mark.parametrize("step", STEAL_STEPS)
def test_a_steal_killed_midway_is_rolled_back_by_its_guard(net, step):
    before = net.config()
    res = net.stn("steal", "eth0", env={"CONTIV_STN_FAULT": f"steal:{step}:crash"})
    assert res.returncode == 70  # the process died between two steps; its guard lives on
    assert eventually(lambda: not net.changed(before) and _status(net) == [], timeout=10), \
        net.changed(before)
    assert net.ping(net.node, REMOTE_IP)


@pytest.mark.parametrize("step", RESTORE_STEPS)
def test_a_fault_during_restore_still_restores(net, step):
    before = net.config()
    ok(net.stn("steal", "eth0"))
    res = ok(net.stn("restore", "eth0", env={"CONTIV_STN_FAULT": f"restore:{step}"}))
    assert "failed at step" in res.stderr and "starting over" in res.stderr
    assert not net.changed(before) and _status(net) == []
    assert net.ping(net.node, REMOTE_IP)


@pytest.mark.parametrize("step", RESTORE_STEPS)
def test_a_restore_killed_midway_is_finished_by_the_next(net, step):
    before = net.config()
    ok(net.stn("steal", "eth0"))
    assert net.stn("restore", "eth0", env={"CONTIV_STN_FAULT": f"restore:{step}:crash"}).returncode == 70
    ok(net.stn("restore", "eth0"))
    assert not net.changed(before) and _status(net) == []
    assert net.ping(net.node, REMOTE_IP)


def _one_line_error(res, code: int, text: str) -> None:
    assert res.returncode == code, (res.returncode, res.stderr)
    errors = [ln for ln in res.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and text in errors[0], res.stderr
    assert "Traceback" not in res.stderr


def test_bad_requests_change_nothing(net):
    subprocess.run(["ip", "-n", net.node, "link", "add", "eth9", "type", "veth", "peer", "name", "eth9p"],
                   check=True)
    before = net.config()
    _one_line_error(net.stn("steal", "nosuch0"), 3, "interface nosuch0 does not exist")
    _one_line_error(net.stn("steal", "eth9"), 2, "eth9 has no IPv4 address")
    _one_line_error(net.stn("steal", "../etc"), 2, "is not an interface name")
    _one_line_error(net.stn("steal", "eth0", "--check", "gw.example"), 2, "is not an IPv4 address")
    _one_line_error(net.stn("steal", "eth0", "--dataplane", "ovs"), 2, "is not linux or vpp")
    _one_line_error(net.stn("steal", "eth0", "--confirm-timeout", "0"), 2, "out of range")
    _one_line_error(net.stn("confirm", "eth0"), 3, "eth0 is not stolen")
    os.chmod(net.dir, 0o777)  # a directory others could plant a snapshot in
    _one_line_error(net.stn("steal", "eth0"), 2, "must be owned by this user and writable by it alone")
    os.chmod(net.dir, 0o700)
    assert not net.changed(before), net.changed(before)
    ok(net.stn("steal", "eth0"))
    stolen = net.config()
    _one_line_error(net.stn("steal", "eth0"), 4, "eth0 is stolen already (confirmed on linux")
    assert not net.changed(stolen)


@pytest.mark.parametrize("content, text", [
    ("{not json", "is corrupt"),
    ('{"version": 99, "iface": "eth0", "taken_at": 0, "link": {"mac": "02:00:00:00:00:01"}}', "of version 99"),
    ('{"version": 1, "iface": "eth0"}', "is corrupt"),
    # parses, but could not be applied whole: refused before anything is touched
    ('{"version": 1, "iface": "eth0", "taken_at": 0, "link": {"mac": "02:00:00:00:00:01"}}',
     "the link's mac, mtu and up are missing"),
    ('{"version": 1, "iface": "../../etc", "taken_at": 0, "link": {"mac": "02:00:00:00:00:01", "mtu": 1400, '
     '"up": true, "sysctl": {"ipv4/rp_filter": "1"}}}', "it is of interface '../../etc', not 'eth0'"),
    ('{"version": 1, "iface": "eth0", "taken_at": 0, "link": {"mac": "02:00:00:00:00:01", "mtu": 1400, '
     '"up": true}, "routes": [{"family": 4, "dst": ""}]}', "an entry of routes lacks"),
])
def test_a_corrupt_or_unknown_snapshot_is_refused(net, content, text):
    ok(net.stn("steal", "eth0"))
    stolen = net.config()
    path = f"{net.dir}/eth0.snapshot.json"
    good = open(path).read()
    with open(path, "w") as f:
        f.write(content)
    _one_line_error(net.stn("restore", "eth0"), 2, text)
    assert not net.changed(stolen)  # nothing was touched
    res = net.stn("status")
    assert res.returncode == 1 and text in res.stderr
    with open(path, "w") as f:
        f.write(good)
    ok(net.stn("restore", "eth0"))
