"""``netstat``, ``nat sessions`` and ``status`` (contivctl/commands/observe.py)
against a fake agent behind the real API server: the calls made, the table
and JSON shapes docs/cli.md documents, exit statuses; and the pieces
(rates, optional option values, pod names) on their own."""
from __future__ import annotations

import dataclasses
import json

import pytest

from agent.errors import InvalidInput
from agent.model import api as rec
from agent.model.diag import InterfaceCounters, SocketInfo
from agent.model.records import AgentStatus, Allocation, NodeInfo
from contivctl.commands.observe import _ep, _rates
from contivctl.context import pod_ref
from contivctl.main import main, optional_values
from tests.helpers import AnsweringAPI, cli_runner, serve_api

NODE = NodeInfo("node1", 1, "192.168.56.11", ("10.1.1.0/24",), ("10.1.1.1",), "02:c0:00:00:00:01")
POD = rec.PodStatus("shop/web-1", "shop", "web-1", "c1", "eth0", ("10.1.1.2/32",), "/run/netns/p",
                    "cv7a55dd20214", 1.0, "ok")
TO_WEB = rec.NamedSession("tcp", "10.1.1.3", 40000, "10.96.0.2", 80, "10.1.1.2", 8080, "ESTABLISHED", 100,
                          client="tools/client", service="shop/web", service_port="http", backend="shop/web-1")
ETCD = rec.NamedSession("tcp", "192.168.56.11", 50000, "192.168.56.1", 2379, "192.168.56.1", 2379, "ESTABLISHED")

ANSWERS = {
    "netstat": rec.Netstat("node1", "linux", 100.0, (
        InterfaceCounters("eth0", "node", 5, 500, 0, 0, 6, 600, 0, 0),
        InterfaceCounters("cv7a55dd20214", "shop/web-1", 10, 1000, 1, 0, 12, 1200, 0, 2))),
    "sockets": rec.PodSockets("shop/web-1", "node1", "/run/netns/p", (
        SocketInfo("tcp", "LISTEN", "0.0.0.0", 8080, "0.0.0.0", 0, 0, 128),
        SocketInfo("tcp", "ESTAB", "fd00::2", 8080, "fd00::3", 41000, 0, 0))),
    "sessions": rec.SessionList("node1", "linux", 2, 262144, (TO_WEB, ETCD),
                                (rec.ServiceSessions("shop/web", 1, {"shop/web-1": 1}),)),
    "health": rec.Health("node1", True, 0, "", 12),
    "status": rec.NodeStatus(AgentStatus("node1", 12, True, dataplane="linux", version="0.1.0"), NODE, 1450,
                             "eth0", {"configured": 6}, {}, {"pod": 1, "service": 1}, {},
                             {"reachable": True, "error": "", "checked": 1.0}),
    "pods": rec.PodList("node1", (POD,)),
    "ipam": rec.IpamInfo("node1", "10.1.0.0/16", "10.1.1.0/24", 253, 1, 252, ("10.1.1.1",),
                         (Allocation("node1", "c1", "eth0", ("10.1.1.2/32",)),)),
    "state": rec.StateList((rec.ValueState("linux/route/10.1.1.9/32", "failed", "linux-route", {}, error="EPERM"),)),
}


@pytest.fixture(scope="module")
def served():
    fake = AnsweringAPI(ANSWERS)
    for path in serve_api(fake, "obs-"):
        yield path, fake


@pytest.fixture
def cli(served, capsys, monkeypatch):
    monkeypatch.delenv("CONTIVCTL_LAB", raising=False)
    return cli_runner(*served, capsys)


# --------------------------------------------------------------------------- netstat
def test_netstat_json_wraps_each_agents_record_in_nodes(cli):
    rc, out, _ = cli("netstat", "-o", "json")
    assert rc == 0
    assert json.loads(out) == {"nodes": [json.loads(json.dumps(ANSWERS["netstat"].to_dict()))]}
    assert cli.fake.calls == [("netstat", {"pod": None})]


def test_netstat_table_one_row_per_interface(cli):
    rc, out, _ = cli("netstat", "-o", "wide")
    lines = out.splitlines()
    assert lines[0].split() == ["NODE", "INTERFACE", "OWNER", "RX-PKTS", "RX-BYTES", "RX-DROP", "TX-PKTS",
                                "TX-BYTES", "TX-DROP", "RX-ERR", "TX-ERR"]
    assert lines[2].split() == ["node1", "cv7a55dd20214", "shop/web-1", "10", "1000", "1", "12", "1200",
                                "0", "0", "2"]


def test_netstat_of_a_pod_asks_for_it_by_ns_name(cli):
    assert cli("netstat", "web-1", "-n", "shop")[0] == 0
    assert cli.fake.calls == [("netstat", {"pod": "shop/web-1"})]


def test_netstat_sockets_prints_endpoints_as_ss_does(cli):
    rc, out, _ = cli("netstat", "-s", "shop/web-1")
    assert rc == 0 and cli.fake.calls == [("sockets", {"pod": "shop/web-1"})]
    rows = [ln.split() for ln in out.splitlines()]
    assert rows[0] == ["PROTO", "STATE", "RECV-Q", "SEND-Q", "LOCAL", "PEER"]
    assert rows[1] == ["tcp", "LISTEN", "0", "128", "0.0.0.0:8080", "*:*"]
    assert rows[2] == ["tcp", "ESTAB", "0", "0", "[fd00::2]:8080", "[fd00::3]:41000"]


def test_netstat_sockets_needs_a_pod(cli):
    rc, _, err = cli("netstat", "-s")
    assert rc == 2 and "give the POD" in err and cli.fake.calls == []


@pytest.mark.parametrize("pod,ns,want", [("web-1", "shop", "shop/web-1"), ("shop/web-1", None, "shop/web-1"),
                                         ("web-1", None, "default/web-1"), (None, None, None)])
def test_pod_ref(pod, ns, want):
    assert pod_ref(pod, ns) == want


@pytest.mark.parametrize("pod,ns", [("a/b/c", None), ("/b", None), ("a/", None), ("a/b", "c"), (None, "shop")])
def test_pod_ref_refuses(pod, ns):
    with pytest.raises(InvalidInput):
        pod_ref(pod, ns)


def test_rates_are_differences_over_the_agents_clock():
    def sample(t, rx, drops):
        return {"nodes": [{"node": "n", "time": t, "interfaces": [
            {"name": "e", "rx_packets": rx, "rx_bytes": rx * 100, "tx_packets": 0, "tx_bytes": 0,
             "rx_drops": drops, "tx_drops": 0}]}]}
    assert _rates({}, sample(1.0, 10, 0)) == {}
    r = _rates(sample(1.0, 10, 0), sample(3.0, 30, 4))[("n", "e")]
    assert r == {"rx_pps": 10.0, "tx_pps": 0.0, "rx_bps": 8000.0, "tx_bps": 0.0, "drops_ps": 2.0}
    # a counter that went back (an interface re-created) is no negative rate
    assert _rates(sample(1.0, 30, 0), sample(2.0, 10, 0))[("n", "e")]["rx_pps"] == 0
    # the same time twice (no new sample) gives no rate
    assert _rates(sample(1.0, 10, 0), sample(1.0, 30, 0)) == {}


@pytest.mark.parametrize("argv,want", [
    (["netstat", "--watch"], ["netstat", "--watch", "2"]),
    (["netstat", "-w", "shop/web-1"], ["netstat", "-w", "2", "shop/web-1"]),
    (["netstat", "--watch", "0.5"], ["netstat", "--watch", "0.5"]),
    (["vpp", "cli", "show", "-w"], ["vpp", "cli", "show", "-w"]),  # other commands: untouched
])
def test_watch_takes_an_optional_value(argv, want):
    assert optional_values(argv) == want


def test_endpoints():
    assert _ep("10.1.1.2", 80) == "10.1.1.2:80"
    assert _ep("::", 0, "*") == "*:*"
    assert _ep("10.1.1.2", 0, "*") == "10.1.1.2:*"


# --------------------------------------------------------------------------- nat sessions
def test_nat_sessions_show_pods_and_services_and_hide_the_nodes_own(cli):
    rc, out, _ = cli("nat", "sessions")
    rows = [ln.split() for ln in out.splitlines()]
    assert rows == [["NODE", "PROTO", "CLIENT", "SERVICE", "BACKEND", "STATE"],
                    ["node1", "tcp", "tools/client", "shop/web", "(http)", "shop/web-1", "10.1.1.2:8080",
                     "ESTABLISHED"]]
    rc, out, _ = cli("nat", "sessions", "--all", "--service", "shop/web", "--pod", "tools/client")
    assert len(out.splitlines()) == 3
    assert cli.fake.calls[-1] == ("sessions", {"service": "shop/web", "pod": "tools/client"})


def test_nat_sessions_json_keeps_the_shape(cli):
    rc, out, _ = cli("nat", "sessions", "-o", "json", "--all")
    assert json.loads(out)["nodes"][0] == json.loads(json.dumps(ANSWERS["sessions"].to_dict()))


def test_nat_sessions_summary_says_the_table_use(cli):
    rc, out, _ = cli("nat", "sessions", "--summary")
    lines = out.splitlines()
    assert lines[1].split() == ["node1", "shop/web", "1", "shop/web-1=1"]
    assert lines[-1] == "node1: session table 2 of 262144 (0.00 %)"
    cli.fake.answers["sessions"] = rec.SessionList("node1", "vpp", 2, None, (), ())
    assert cli("nat", "sessions", "--summary")[1].splitlines()[-1] == \
        "node1: session table 2 (the vpp data plane reports no fixed limit)"


# --------------------------------------------------------------------------- status
def test_status_healthy_exits_0(cli):
    rc, out, _ = cli("status")
    assert rc == 0, out
    lines = out.splitlines()
    assert lines[0].split() == ["NODE", "AGENT", "DATAPLANE", "ETCD", "REVISION", "PODS", "FAILED", "IPAM"]
    assert lines[1].split() == ["node1", "ready", "linux", "ok", "12", "1/1", "ok", "0", "1/253"]
    assert lines[-1] == "ok: 1 node healthy"


def test_status_names_each_problem_in_one_line_and_exits_1(cli):
    a = cli.fake.answers
    a["health"] = rec.Health("node1", False, 50, "data plane vpp: VPP is not running", 12)
    a["status"] = rec.NodeStatus(AgentStatus("node1", 12, True), NODE, 1450, "eth0", {"failed": 1}, {}, {}, {},
                                 {"reachable": False, "error": "etcd at x is unreachable", "checked": 1.0})
    a["pods"] = rec.PodList("node1", (dataclasses.replace(POD, dataplane="failed", netns_gone=True),))
    rc, out, _ = cli("status", "-o", "json")
    data = json.loads(out)
    assert rc == 1 and data["healthy"] is False
    assert data["problems"] == [
        "node1: not ready (CNI STATUS 50): data plane vpp: VPP is not running",
        "node1: etcd unreachable: etcd at x is unreachable",
        "node1: 1 value FAILED in the data plane (linux/route/10.1.1.9/32): see `contivctl agent state`",
        "node1: pod shop/web-1: data plane failed",
        "node1: 1 address leaked (network namespace gone: shop/web-1): `contivctl ipam gc` releases them"]


def test_status_shows_what_stn_holds_and_the_steals_that_need_an_operator(cli):
    from agent.model.stn import StnEntry, StnState, StnStatus
    entries = (StnEntry(StnState("eth0", "vpp", "confirmed", 1.0, "stn-host"), ("192.0.2.10/24",), "192.0.2.1", "s"),
               StnEntry(StnState("eth1", "linux", "pending", 1.0, "stnbr-eth1", 9.0), (), "", "s"),
               StnEntry(StnState("eth2", "vpp", "suspended", 1.0, "stn-host", error="vpp data plane died"),
                        (), "", "s"))
    a = cli.fake.answers
    a["status"] = dataclasses.replace(a["status"], stn=StnStatus("/var/lib/contiv/stn", entries,
                                                                 ("STN snapshot /x is corrupt: y",)))
    rc, out, _ = cli("status", "-o", "json")
    data = json.loads(out)
    assert rc == 1
    assert data["nodes"][0]["stn"] == "eth0 confirmed (vpp), eth1 pending (linux), eth2 suspended (vpp)"
    assert data["problems"] == [
        "node1: STN: eth1 stolen, not confirmed: it is restored unless `contivctl stn confirm eth1` comes first",
        "node1: STN: eth2 given back to the node (vpp data plane died); stolen again when the data plane is "
        "back (`contivctl stn watch`)",
        "node1: STN: STN snapshot /x is corrupt: y"]
    a["status"] = dataclasses.replace(a["status"], stn=StnStatus("/var/lib/contiv/stn", entries[:1]))
    rc, out, _ = cli("status", "-o", "wide")
    assert rc == 0 and out.splitlines()[0].split()[-1] == "STN" and "eth0 confirmed (vpp)" in out


def test_status_of_an_agent_that_does_not_answer(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("CONTIVCTL_LAB", raising=False)
    rc = main(["--socket", str(tmp_path / "none.sock"), "status"])
    out = capsys.readouterr().out
    assert rc == 1
    assert out.splitlines()[1].split()[:2] == ["local", "unreachable"]
    assert out.splitlines()[-1].split(" ", 1)[1].startswith("local: agent not answering: ")
