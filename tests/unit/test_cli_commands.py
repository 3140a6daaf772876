"""The diagnostic commands, end to end without root: ``contivctl`` (in
process) -> AgentClient -> a real APIServer on a temporary unix socket -> the
real router -> a fake NodeAPI answering fixed records.

What is checked: ``-o json|yaml`` print exactly the record's JSON form (the
body the agent sends), tables have the documented columns, and exit statuses
follow docs/cli.md (1 for a finding, 2 bad input, 3 not found, 4 unreachable).
"""
from __future__ import annotations

import json

import pytest
import yaml

from agent import errors
from agent.model import api as rec
from agent.model.records import AgentStatus, Allocation, NodeInfo
from contivctl.main import main
from tests.helpers import AnsweringAPI, cli_runner, serve_api

NODE = NodeInfo("node1", 1, "192.168.56.11", ("10.1.1.0/24",), ("10.1.1.1",), "02:c0:00:00:00:01")
ALLOC = Allocation("node1", "3f9c2a7d1e5b", "eth0", ("10.1.1.2/32",), "/var/run/netns/p", "shop", "web-1",
                   1795808756.5)
OK_OP = rec.OpRecord("create", "linux/route/10.1.1.2/32", "drift: missing in data plane", True, "", 0.25)
BAD_OP = rec.OpRecord("delete", "linux/route/10.1.1.3/32", "found in data plane, not desired", False,
                      "EPERM", 0.125)
ISOLATED = rec.Isolation(True, ("shop/db-allow-web",),
                         (rec.RuleInfo("shop/db-allow-web ingress[0]", ["namespace shop pods {app=web}"],
                                       ("TCP/5432",)),), {"shop/bad": "unknown operator Equals"})
OPEN = rec.Isolation(False, (), (), {})

ANSWERS = {
    "status": rec.NodeStatus(AgentStatus("node1", 10, True, 8379, dataplane="linux"), NODE, 1450, "eth0",
                             {"configured": 6, "pending": 0, "failed": 1}, {}, {"pod": 2, "service": 0},
                             {"node": "node1"}),
    "ipam": rec.IpamInfo("node1", "10.1.0.0/16", "10.1.1.0/24", 253, 1, 252, ("10.1.1.1",), (ALLOC,)),
    "ipam_gc": rec.GcResult((ALLOC,)),
    "pods": rec.PodList("node1", (rec.PodStatus(
        "shop/web-1", "shop", "web-1", "3f9c2a7d1e5b", "eth0", ("10.1.1.2/32",), "/var/run/netns/p",
        "cv7a55dd20214", 1795808756.5, "ok", {"add": {"total_ms": 7.5, "ipam_ms": 1.25,
                                                      "dataplane_ms": 3.0}}),)),
    "nodes": rec.NodeList((NODE,)),
    "state": rec.StateList((rec.ValueState("linux/veth/cv7a55dd20214", "configured", "linux-veth", {}),
                            rec.ValueState("linux/podroute/cv7a55dd20214/0.0.0.0/0", "pending", "linux-podroute",
                                           {}, reason="waiting for linux/veth/x"))),
    "plan": rec.PlanRecord((rec.PlannedOp("create", "linux/route/10.1.1.2/32", "drift: missing in data plane"),),
                           {"linux/podroute/x": "waiting for linux/veth/x"}, {}),
    "resync": rec.TxnRecord(7, "resync", "resync requested", 1795808776.25, 1.5, [OK_OP, BAD_OP]),
    "history": rec.History((rec.TxnRecord(7, "resync", "resync requested", 1795808776.25, 1.5, [OK_OP, BAD_OP]),
                            rec.TxnRecord(8, "change", "cni add shop/web-1", 1795808777.5, 0.5, [OK_OP]))),
    "services": rec.ServiceList((rec.ServiceInfo(
        "shop/web", "shop", "web", "ClusterIP", "10.96.0.2", (), "None", None, "Cluster",
        (rec.ServicePortInfo("http", "TCP", (rec.FrontendInfo("cluster-ip", "10.96.0.2", 80),),
                             (rec.EndpointInfo("10.1.1.2", 8080, "node1", True, "shop/web-1"),)),),
        rec.ServiceDataplane(3, "programmed", ()), ()),)),
    "policies": rec.PolicyList((rec.PodPolicies("shop/db", "10.1.2.3", "node2", ISOLATED, OPEN),)),
    "explain": rec.Explanation("tools/client", "shop/db", 5432, "TCP", False, "shop/db is isolated",
                               (rec.ExplainStep("egress", True, "not isolated for egress"),
                                rec.ExplainStep("ingress", False, "no rule allows it"))),
}


@pytest.fixture(scope="module")
def served():
    fake = AnsweringAPI(ANSWERS)
    for path in serve_api(fake, "cli-"):
        yield path, fake


@pytest.fixture
def cli(served, capsys):
    """cli(*args) -> (status, stdout, stderr), against the fake agent."""
    return cli_runner(*served, capsys)


def body(name: str):
    """The JSON of ``name``'s record as docs/api.yaml documents it (what -o json
    must print). History: each transaction as TxnRecord.to_dict() gives it,
    with ``ok``."""
    r = ANSWERS[name]
    d = {"transactions": [t.to_dict() for t in r.transactions]} if name == "history" else r.to_dict()
    return json.loads(json.dumps(d))


# command line, the NodeAPI method it calls, its arguments, exit status
COMMANDS = [
    (["agent", "status"], "status", {}, 0),
    (["agent", "plan"], "plan", {}, 1),
    (["agent", "history", "--limit", "5"], "history", {"limit": 5, "since": 0}, 0),
    (["agent", "state", "--prefix", "linux/"], "state", {"prefix": "linux/"}, 0),
    (["agent", "resync"], "resync", {}, 1),
    (["pods"], "pods", {}, 0),
    (["nodes"], "nodes", {}, 0),
    (["ipam"], "ipam", {}, 0),
    (["ipam", "gc"], "ipam_gc", {"valid": None}, 0),
    (["services", "shop/web"], "services", {"namespace": "shop", "name": "web"}, 0),
    (["policies", "-n", "shop", "db"], "policies", {"namespace": "shop", "pod": "db"}, 0),
    (["policies", "explain", "tools/client", "shop/db", "--port", "5432", "--protocol", "tcp"], "explain",
     {"src": "tools/client", "dst": "shop/db", "port": 5432, "protocol": "TCP"}, 1),
]


@pytest.mark.parametrize("args,method,called,status", COMMANDS, ids=lambda v: " ".join(v) if isinstance(v, list) else None)
def test_json_is_the_agents_body_and_one_call_is_made(cli, args, method, called, status):
    rc, out, err = cli(*args, "-o", "json")
    assert rc == status, err
    assert json.loads(out) == body(method)
    assert out == json.dumps(body(method), indent=2) + "\n"
    assert cli.fake.calls == [(method, called)]


@pytest.mark.parametrize("args,method,called,status", COMMANDS, ids=lambda v: " ".join(v) if isinstance(v, list) else None)
def test_yaml_is_the_same_data(cli, args, method, called, status):
    rc, out, err = cli(*args, "-o", "YAML")
    assert rc == status, err
    assert yaml.safe_load(out) == body(method)


@pytest.mark.parametrize("args,method,called,status", COMMANDS, ids=lambda v: " ".join(v) if isinstance(v, list) else None)
def test_table_mode_has_the_same_exit_status_and_no_stderr(cli, args, method, called, status):
    rc, out, err = cli(*args)
    assert rc == status and err == ""
    assert out and not any(ln != ln.rstrip() for ln in out.splitlines())  # no trailing spaces


def test_pods_table_and_wide(cli):
    _, out, _ = cli("pods")
    assert out == ("POD         IP           HOST-IF        DATAPLANE\n"
                   "shop/web-1  10.1.1.2/32  cv7a55dd20214  ok\n")
    _, out, _ = cli("pods", "-o", "wide")
    assert out.splitlines()[0].split() == ["POD", "IP", "HOST-IF", "DATAPLANE", "CONTAINER", "IFNAME", "NETNS",
                                           "MEMIF", "ADD-MS", "IPAM-MS", "DP-MS"]
    assert out.splitlines()[1].split()[-3:] == ["7.5", "1.25", "3"]


def test_status_is_a_key_value_block(cli):
    _, out, _ = cli("agent", "status")
    assert out.splitlines() == [
        "node:             node1", "ready:            yes", "dataplane:        linux",
        "node IP:          192.168.56.11", "pod subnet:       10.1.1.0/24", "gateway:          10.1.1.1",
        "MTU:              1450", "underlay:         eth0", "applied revision: 10",
        "values:           configured 6, failed 1", "cluster:          pod 2"]


def test_plan_lists_operations_then_pending_and_exits_1(cli):
    rc, out, _ = cli("agent", "plan")
    assert rc == 1
    assert out.splitlines() == ["OP      KEY                      REASON",
                                "create  linux/route/10.1.1.2/32  drift: missing in data plane",
                                "pending  linux/podroute/x  waiting for linux/veth/x"]
    cli.fake.answers["plan"] = rec.PlanRecord((), {}, {})
    assert cli("agent", "plan") == (0, "OP  KEY  REASON\n", "")


def test_history_wide_adds_one_line_per_operation(cli):
    _, out, _ = cli("agent", "history", "-o", "wide")
    lines = out.splitlines()
    assert lines[0].split() == ["SEQ", "KIND", "OPS", "RESULT", "MS", "DESCRIPTION"]
    assert lines[1].split()[:4] == ["7", "resync", "2", "1"]  # "1 failed"
    assert lines[3:] == [
        "  #7 create linux/route/10.1.1.2/32  (drift: missing in data plane)",
        "  #7 delete linux/route/10.1.1.3/32  (found in data plane, not desired)  FAILED: EPERM",
        "  #8 create linux/route/10.1.1.2/32  (drift: missing in data plane)"]


def test_resync_prints_a_summary_and_each_operation(cli):
    rc, out, _ = cli("agent", "resync")
    assert rc == 1  # an operation failed
    assert out.splitlines() == [
        "resync #7: 2 operation(s) in 1.5 ms",
        "  create linux/route/10.1.1.2/32  (drift: missing in data plane)",
        "  delete linux/route/10.1.1.3/32  (found in data plane, not desired)  FAILED: EPERM"]


def test_state_wide_shows_why_a_value_is_pending(cli):
    _, out, _ = cli("agent", "state", "-o", "wide")
    assert out.splitlines()[2].split() == ["linux/podroute/cv7a55dd20214/0.0.0.0/0", "pending", "linux-podroute",
                                           "waiting", "for", "linux/veth/x"]


def test_ipam_summary_line_then_allocations(cli):
    _, out, _ = cli("ipam")
    assert out.splitlines() == ["node node1: subnet 10.1.1.0/24 (gateway 10.1.1.1), 1 used, 252 free",
                                "IP           POD         CONTAINER     IFNAME",
                                "10.1.1.2/32  shop/web-1  3f9c2a7d1e5b  eth0"]


def test_services_one_row_per_port(cli):
    _, out, _ = cli("services")
    assert out.splitlines() == [
        "SERVICE   TYPE       PORT      FRONTENDS     ENDPOINTS      DATAPLANE",
        "shop/web  ClusterIP  http/TCP  10.96.0.2:80  10.1.1.2:8080  programmed"]


def test_policies_are_an_indented_tree_off_a_terminal(cli):
    _, out, _ = cli("policies")
    assert out == ("shop/db (10.1.2.3 on node2)\n"
                   "  ingress: isolated by shop/db-allow-web\n"
                   "    allow TCP/5432 from namespace shop pods {app=web}   [shop/db-allow-web ingress[0]]\n"
                   "    ! shop/bad is invalid (unknown operator Equals): it only isolates\n"
                   "  egress: open (no policy selects it)\n")


def test_policies_of_an_unknown_pod_is_a_usage_error(cli):
    cli.fake.answers["policies"] = rec.PolicyList(())
    rc, out, err = cli("policies", "shop/nosuch")
    assert rc == 2 and out == "" and err == "error: no pod shop/nosuch with an address\n"


def test_explain_says_the_verdict_and_wide_the_steps(cli):
    rc, out, _ = cli("policies", "explain", "tools/client", "shop/db", "--port", "5432", "-o", "wide")
    assert rc == 1
    assert out.splitlines() == ["denied: shop/db is isolated", "  egress: not isolated for egress",
                                "  ingress: no rule allows it"]


def test_explain_needs_a_port(cli):
    rc, _, err = cli("policies", "explain", "a/b", "c/d")
    assert rc == 2 and "usage: contivctl policies explain" in err
    assert cli.fake.calls == []


@pytest.mark.parametrize("exc,status", [(errors.NotFound("no such thing"), 3),
                                        (errors.InvalidInput("bad prefix"), 2),
                                        (errors.Unavailable("etcd is down", hint="wait"), 4)])
def test_the_agents_error_is_one_line_and_its_exit_status(cli, exc, status):
    cli.fake.raise_ = exc
    rc, out, err = cli("pods", "-o", "json")
    assert rc == status and out == ""
    assert err.splitlines()[0] == f"error: {exc.message}"
    assert len(err.splitlines()) == (2 if exc.hint else 1)


def test_unreachable_agent_exits_4(tmp_path, capsys):
    assert main(["--socket", str(tmp_path / "none.sock"), "nodes"]) == 4
    err = capsys.readouterr().err
    assert err.startswith("error: the agent at ") and "\nhint: " in err


def test_unknown_output_format_exits_2(cli):
    rc, _, err = cli("pods", "-o", "xml")
    assert rc == 2 and err.startswith("error: unknown output format 'xml'")
    assert cli.fake.calls == []


def test_every_vpp_dump_has_its_table_columns():
    from agent.api.contract import DUMPS  # noqa: PLC0415
    from contivctl.commands.vpp import COLUMNS  # noqa: PLC0415
    assert set(COLUMNS) == set(DUMPS)
