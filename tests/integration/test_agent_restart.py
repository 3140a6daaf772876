"""Agent restarts: the data plane stays while the agent is down, start-up
resync finds nothing to change, drift is repaired, and allocations of pods
that vanished meanwhile are collected."""
from __future__ import annotations

import os
import signal
import subprocess
import time

import pytest

from lab import sysnet
from lab.cluster import _pid_alive
from lab.cniexec import Runtime

pytestmark = pytest.mark.root


def _ping(lab, src_pod: str, ip: str) -> bool:
    return subprocess.run(["ip", "netns", "exec", lab.paths.pod_ns("r", src_pod), "ping", "-c1", "-W2", ip],
                          capture_output=True).returncode == 0


def _restart_agent(lab, node: str) -> None:
    st = lab.state()
    n = st.node(node)
    os.kill(n.pid, signal.SIGTERM)
    deadline = time.monotonic() + 10
    while _pid_alive(n.pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _pid_alive(n.pid), "agent did not stop on SIGTERM"


def _start_agent(lab, node: str) -> None:
    st = lab.state()
    n = st.node(node)
    n.pid = lab._start_agent(st, n)
    st.save(lab.paths)
    lab._wait_agents(st, 30, lambda _m: None)


@pytest.fixture(scope="module")
def pods(lab2):
    rt = Runtime(lab2.cni_path())
    made = {}
    try:
        for name, node in (("a", "node1"), ("b", "node1"), ("c", "node2")):
            ns = lab2.paths.pod_ns("r", name)
            sysnet.netns_add(ns)
            res = rt.add(lab2.conflist(node), f"restart-{name}", sysnet.netns_path(ns),
                         args=f"K8S_POD_NAMESPACE=r;K8S_POD_NAME={name}")
            made[name] = (node, res["ips"][0]["address"].split("/")[0])
        yield made
    finally:
        for name, (node, _) in made.items():
            ns = lab2.paths.pod_ns("r", name)
            try:
                rt.delete(lab2.conflist(node), f"restart-{name}", sysnet.netns_path(ns))
            finally:
                sysnet.netns_del(ns)


def test_pods_keep_working_while_the_agent_is_down_and_restart_changes_nothing(lab2, pods):
    assert _ping(lab2, "a", pods["c"][1]) and _ping(lab2, "a", pods["b"][1])
    _restart_agent(lab2, "node1")
    try:
        # the data plane is left in place: same-node and cross-node traffic flows
        assert _ping(lab2, "a", pods["b"][1])
        assert _ping(lab2, "a", pods["c"][1])
        assert _ping(lab2, "c", pods["a"][1])
    finally:
        _start_agent(lab2, "node1")
    hist = lab2.client("node1").history(limit=50).transactions
    startup = [t for t in hist if t.kind == "resync"]
    assert startup, hist
    assert startup[0].operations == [], "start-up resync changed things: " + str(startup[0].operations)
    assert lab2.client("node1").plan().operations == ()
    assert _ping(lab2, "a", pods["c"][1])


def test_drift_is_reported_by_plan_and_repaired_by_resync(lab2, pods):
    c = lab2.client("node1")
    node_ns = lab2.paths.node_ns("node1")
    ip = pods["a"][1]
    subprocess.run(["ip", "-n", node_ns, "route", "del", f"{ip}/32"], check=True)
    assert not _ping(lab2, "c", ip)
    plan = c.plan().operations
    assert [(o.op, o.key, o.reason) for o in plan] == \
        [("create", f"linux/route/{ip}/32", "drift: missing in data plane")]
    rec = c.resync()
    assert rec.ok and [o.key for o in rec.operations] == [f"linux/route/{ip}/32"]
    assert _ping(lab2, "c", ip)
    assert c.plan().operations == ()


def test_pods_added_while_resyncs_run_survive_them(lab2, pods):
    """Resyncs asked for through the API run on the agent loop while CNI ADDs
    are served on API threads: every request succeeds, and a resync never
    removes a pod that was added while it ran (the pods' partitions are read
    under the lock the ADDs take)."""
    from concurrent.futures import ThreadPoolExecutor
    rt = Runtime(lab2.cni_path())
    names = [f"during{i}" for i in range(4)]
    for n in names:
        sysnet.netns_add(lab2.paths.pod_ns("r", n))
    try:
        with ThreadPoolExecutor(6) as ex:
            resyncs = [ex.submit(lab2.client("node1").resync) for _ in range(2)]
            adds = {n: ex.submit(rt.add, lab2.conflist("node1"), f"restart-{n}",
                                 sysnet.netns_path(lab2.paths.pod_ns("r", n))) for n in names}
            recs = [f.result() for f in resyncs]
            ips = {n: f.result()["ips"][0]["address"].split("/")[0] for n, f in adds.items()}
        assert all(r.ok and r.description == "resync requested through the API" for r in recs), recs
        assert lab2.client("node1").plan().operations == ()
        for n, ip in ips.items():
            assert _ping(lab2, "c", ip), f"pod {n} ({ip}) lost"
    finally:
        for n in names:
            try:
                rt.delete(lab2.conflist("node1"), f"restart-{n}", sysnet.netns_path(lab2.paths.pod_ns("r", n)))
            finally:
                sysnet.netns_del(lab2.paths.pod_ns("r", n))


def test_foreign_routes_and_links_survive_resync(lab2, pods):
    node_ns = lab2.paths.node_ns("node1")
    subprocess.run(["ip", "-n", node_ns, "route", "add", "203.0.113.0/24", "dev", "eth0"], check=True)
    subprocess.run(["ip", "-n", node_ns, "link", "add", "foreign0", "type", "bridge"], check=True)
    try:
        lab2.client("node1").resync()
        routes = subprocess.run(["ip", "-n", node_ns, "route"], capture_output=True, text=True).stdout
        links = subprocess.run(["ip", "-n", node_ns, "-br", "link"], capture_output=True, text=True).stdout
        assert "203.0.113.0/24" in routes and "foreign0" in links
    finally:
        subprocess.run(["ip", "-n", node_ns, "route", "del", "203.0.113.0/24"])
        subprocess.run(["ip", "-n", node_ns, "link", "del", "foreign0"])


def test_allocation_of_a_pod_gone_while_the_agent_was_down_is_collected(lab2):
    rt = Runtime(lab2.cni_path())
    ns = lab2.paths.pod_ns("r", "ghost")
    sysnet.netns_add(ns)
    try:
        res = rt.add(lab2.conflist("node2"), "restart-ghost", sysnet.netns_path(ns))
    except BaseException:
        sysnet.netns_del(ns)
        raise
    ip = res["ips"][0]["address"]
    _restart_agent(lab2, "node2")
    sysnet.netns_del(ns)  # the runtime lost the pod without calling DEL
    _start_agent(lab2, "node2")
    c = lab2.client("node2")
    assert any(ip in a.ips for a in c.ipam().allocations)
    released = c.ipam_gc().released
    assert [a.container_id for a in released] == ["restart-ghost"]
    assert not any(ip in a.ips for a in c.ipam().allocations)
    links = subprocess.run(["ip", "-n", lab2.paths.node_ns("node2"), "-br", "link"],
                           capture_output=True, text=True).stdout
    from agent.linux.values import host_ifname
    assert host_ifname("restart-ghost", "eth0") not in links
