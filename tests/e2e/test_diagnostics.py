"""End to end: ``netstat``, ``nat sessions`` and ``status`` on a two-node lab,
through the CLI as a user runs them, with real packets; on each data plane.

One lab per data plane: ``server`` (node2) serves TCP 8080 behind the
Service ``web``; ``client`` sits on node1. Tests run in file order; the last
one stops and restarts node2's agent.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from dataclasses import dataclass

import pytest

from lab.ops import pod_netns, run_probe
from tests.conftest import IS_ROOT
from tests.e2e.labtools import CLI, REPO, assert_one_line_error, cli, kube_lab
from tests.helpers import dataplanes

pytestmark = [pytest.mark.root, pytest.mark.e2e]

NS = "diag"
PORT = 8080
WAIT = 60.0  # liveness bound for agents to apply, not a performance claim
PINGS = 20


def pod(name: str, node: str, labels: dict, ports=()) -> dict:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": NS, "labels": labels},
            "spec": {"nodeName": node, "containers": [{"name": "main", "image": "lab", "ports": list(ports)}]}}


MANIFEST = [
    {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}},
    pod("server", "node2", {"app": "web"}, [{"name": "http", "containerPort": PORT}]),
    pod("client", "node1", {"app": "client"}),
    {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": NS},
     "spec": {"selector": {"app": "web"}, "ports": [{"name": "http", "port": 80, "targetPort": "http"}]}},
]


@dataclass
class Env:
    lab: object
    kube: object
    dataplane: str

    def netns(self, pod: str) -> str:
        return pod_netns(self.kube, f"{NS}/{pod}")[1]

    def ip(self, pod: str) -> str:
        return self.kube.pod(f"{NS}/{pod}")["status"]["podIP"]

    def cli(self, *args: str) -> subprocess.CompletedProcess:
        return cli(*args, "--lab", self.lab.name)

    def json(self, *args: str) -> dict:
        r = self.cli(*args, "-o", "json")
        assert r.returncode == 0, r.stderr
        return json.loads(r.stdout)


@pytest.fixture(scope="module", params=dataplanes())
def env(request):
    if not IS_ROOT:
        pytest.skip("needs root: creates network namespaces and links")
    with kube_lab(MANIFEST, request.param, timeout=WAIT) as (lab, kube):
        yield Env(lab, kube, request.param)


def ping(env: Env, src: str, dst_ip: str, count: int, interval: str = "0.01") -> subprocess.Popen:
    # `ip netns exec` takes a name: the pod's namespace file is under /var/run/netns
    return subprocess.Popen(["ip", "netns", "exec", os.path.basename(env.netns(src)), "ping", "-q", "-c", str(count),
                             "-i", interval, "-W", "1", dst_ip], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def counter(data: dict, owner: str, key: str) -> int:
    (c,) = [c for n in data["nodes"] for c in n["interfaces"] if c["owner"] == owner]
    return c[key]


# --------------------------------------------------------------------------- netstat
def test_netstat_counters_grow_by_the_packets_a_pod_sends(env):
    before = env.json("netstat", f"{NS}/client")
    assert before["nodes"][0]["node"] == "node1"  # asked of the node the pod runs on
    p = ping(env, "client", env.ip("server"), PINGS)
    out, err = p.communicate(timeout=60)
    assert p.returncode == 0, (out, err)
    after = env.json("netstat", f"{NS}/client")
    # what the pod sent, the node received (rx): at least the echo requests
    grew = counter(after, f"{NS}/client", "rx_packets") - counter(before, f"{NS}/client", "rx_packets")
    assert grew >= PINGS, (before, after)
    sent = counter(after, f"{NS}/client", "tx_packets") - counter(before, f"{NS}/client", "tx_packets")
    assert sent >= PINGS  # the replies, towards the pod


def test_netstat_of_every_node_has_the_nodes_own_interfaces_and_the_pods(env):
    data = env.json("netstat")
    assert [n["node"] for n in data["nodes"]] == ["node1", "node2"]
    for n in data["nodes"]:
        assert n["dataplane"] == env.dataplane
        assert any(c["owner"] == "node" for c in n["interfaces"]), n
    owners = {c["owner"] for n in data["nodes"] for c in n["interfaces"]}
    assert {f"{NS}/client", f"{NS}/server"} <= owners
    table = env.cli("netstat")
    assert table.returncode == 0 and table.stdout.splitlines()[0].split()[:3] == ["NODE", "INTERFACE", "OWNER"]


def test_netstat_watch_prints_rates_and_ctrl_c_exits_0(env):
    p = ping(env, "client", env.ip("server"), 200, "0.02")  # ~4 s of traffic
    w = subprocess.Popen(CLI + ["netstat", "--lab", env.lab.name, "--node", "node1", "--watch", "0.5"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO,
                         env={**os.environ, "NO_COLOR": "1"})
    try:
        time.sleep(3)
        w.send_signal(signal.SIGINT)
        out, err = w.communicate(timeout=30)
    finally:
        p.kill()
        p.wait()
    assert w.returncode == 0, err
    frames = [f for f in out.split("\n\n") if f.strip()]
    assert len(frames) >= 2, out
    header = frames[-1].splitlines()[1].split()
    assert "RX-PKT/S" in header and "TX-BIT/S" in header
    rows = [ln.split() for ln in frames[-1].splitlines()[2:]]
    (client,) = [r for r in rows if r[2] == f"{NS}/client"]
    assert float(client[header.index("RX-PKT/S")]) > 0, frames[-1]


def test_netstat_sockets_shows_the_pods_listener(env):
    data = env.json("netstat", "-s", "server", "-n", NS)
    assert data["pod"] == f"{NS}/server"
    assert any(s["protocol"] == "tcp" and s["state"] == "LISTEN" and s["lport"] == PORT
               for s in data["sockets"]), data
    table = env.cli("netstat", "-s", f"{NS}/server")
    assert any(ln.split()[:2] == ["tcp", "LISTEN"] and ln.split()[4].endswith(f":{PORT}")
               for ln in table.stdout.splitlines()), table.stdout


# --------------------------------------------------------------------------- nat sessions
def test_nat_sessions_of_a_service_name_the_client_and_the_backend(env):
    r = run_probe(env.kube, f"{NS}/client", f"svc:{NS}/web", None, "TCP", 2.0)
    assert r.connected, r
    data = env.json("nat", "sessions", "--service", f"{NS}/web")
    found = [s for n in data["nodes"] for s in n["sessions"]
             if s["client"] == f"{NS}/client" and s["backend"] == f"{NS}/server"]
    assert found, data
    assert all(s["service"] == f"{NS}/web" and s["service_port"] == "http" for s in found)
    summary = env.json("nat", "sessions", "--summary", "--service", f"{NS}/web")
    per = [s for n in summary["nodes"] for s in n["summary"] if s["service"] == f"{NS}/web"]
    assert per and per[0]["backends"].get(f"{NS}/server", 0) >= 1, summary
    table = env.cli("nat", "sessions", "--summary")
    assert table.returncode == 0
    assert any(ln.startswith("node1: session table ") for ln in table.stdout.splitlines()), table.stdout


# --------------------------------------------------------------------------- metrics
def test_metrics_are_served_and_parse(env):
    """Scraped as Prometheus would, from the lab's underlay: node1 served the
    client's CNI ADD, holds configured values and counts the client's interface."""
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    from lab import sysnet
    from lab.cluster import METRICS_PORT
    from lab.nsthread import in_netns
    ip = env.lab.state().node("node1").ip
    body = in_netns(sysnet.netns_path(env.lab.paths.underlay_ns), lambda: urllib.request.urlopen(
        f"http://{ip}:{METRICS_PORT}/metrics", timeout=10).read().decode())
    s = {(x.name, tuple(sorted(x.labels.items()))): x.value
         for fam in text_string_to_metric_families(body) for x in fam.samples}
    assert s[("contiv_cni_requests_total", (("command", "ADD"), ("result", "ok")))] >= 1
    assert s[("contiv_cni_add_step_seconds_count", (("step", "dataplane"),))] >= 1
    assert s[("contiv_values", (("state", "configured"),))] > 0
    assert s[("contiv_agent_ready", ())] == 1
    assert any(k[0] == "contiv_reconciler_transactions_total" and v >= 1 for k, v in s.items())
    rx = [v for (n, labels), v in s.items() if n == "contiv_interface_packets_total"
          and dict(labels).get("owner") == f"{NS}/client" and dict(labels)["direction"] == "rx"]
    assert rx and rx[0] >= PINGS  # the pings of the first test


# --------------------------------------------------------------------------- bad input
def test_unknown_names_get_one_line_errors_with_the_closest_match(env):
    assert_one_line_error(env.cli("netstat", f"{NS}/clinet"), 3, f"no pod {NS}/clinet", f"{NS}/client")
    assert_one_line_error(env.cli("netstat", f"{NS}/server", "--node", "node1"), 3, "runs on node node2",
                          "--node node2")
    assert_one_line_error(env.cli("nat", "sessions", "--service", f"{NS}/wbe"), 3, f"{NS}/web")
    assert_one_line_error(env.cli("netstat", "-s"), 2, "give the POD")
    assert_one_line_error(env.cli("netstat", "a/b/c"), 2, "NAMESPACE/NAME")
    assert_one_line_error(cli("status", "--lab", "nosuchlb"), 3, "no lab named")


# --------------------------------------------------------------------------- status (last: stops an agent)
def test_status_is_healthy_then_names_a_stopped_agent(env):
    ok = env.cli("status")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert ok.stdout.splitlines()[-1] == "ok: 2 nodes healthy"
    data = env.json("status")
    assert data["healthy"] is True and [n["agent"] for n in data["nodes"]] == ["ready", "ready"]
    env.lab.stop_agent("node2")
    try:
        bad = env.cli("status")
        assert bad.returncode == 1, bad.stdout + bad.stderr
        assert any(ln.startswith("node2") and "unreachable" in ln for ln in bad.stdout.splitlines())
        (problem,) = [ln for ln in bad.stdout.splitlines() if "node2: agent not answering" in ln]
        assert "node1" not in problem
        report_with_a_stopped_agent(env)
    finally:
        env.lab.start_agent("node2")
        env.lab.wait_ready("node2", WAIT)
    assert env.cli("status").returncode == 0


def report_with_a_stopped_agent(env: Env) -> None:
    """``report`` while node2's agent is stopped: the bundle is written, its
    index lists node2's API parts as failed with the reason, and everything
    else -- node1's parts, node2's kernel view and log -- is in it."""
    import tarfile
    import tempfile
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "bundle.tar.gz")
        r = env.cli("report", "-o", path)
        assert r.returncode == 1, r.stdout + r.stderr  # parts failed, the bundle is still there
        assert r.stdout.startswith(f"wrote {path}: ")
        with tarfile.open(path) as tar:
            names = {m.name.split("/", 1)[1] for m in tar.getmembers()}
            index = json.load(tar.extractfile("bundle/index.json"))
            status1 = json.load(tar.extractfile("bundle/node1/status.json"))
    failed = {p["part"]: p["error"] for p in index["parts"] if not p["ok"]}
    assert "node2/status.json" in failed and "not running" in failed["node2/status.json"], failed
    assert not [p for p in failed if p.startswith("node1/")], failed
    assert {"node1/status.json", "node1/pods.json", "node1/nft-ruleset.txt" if env.dataplane == "linux"
            else "node1/vpp/show-interface.txt", "node2/ip-route.txt", "node2/agent.log",
            "versions.json", "lab/status.json"} <= names
    assert status1["agent"]["node"] == "node1"
    assert "node2/status.json" in r.stderr  # each missing part said on stderr
