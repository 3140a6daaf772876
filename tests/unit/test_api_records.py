"""The local API's records (agent/model/api.py): the JSON they produce is
the documented shape, nested records included, and it parses back."""
from __future__ import annotations

import json

import pytest

from agent.errors import InvalidInput
from agent.model import api as rec
from agent.model.diag import InterfaceCounters, SocketInfo
from agent.model.records import AgentStatus, Allocation, NodeInfo


def test_nested_records_shape_themselves():
    """A record inside another is converted by its own to_dict: a transaction
    in the history keeps "ok" and rounded durations; a value state inside the
    state list leaves out its empty fields (docs/api.yaml)."""
    op = rec.OpRecord("create", "k", "r", True, "", 1.234567)
    txn = rec.TxnRecord(7, "change", "d", 1.5, 2.0004, [op])
    h = rec.History((txn,)).to_dict()
    assert h == {"transactions": [txn.to_dict()]}
    assert h["transactions"][0]["ok"] is True and "error" not in h["transactions"][0]["operations"][0]
    assert h["transactions"][0]["operations"][0]["duration_ms"] == 1.235
    st = rec.StateList((rec.ValueState("k", "configured", "d", {"a": 1}),
                        rec.ValueState("j", "failed", "d", None, error="boom", attempts=2))).to_dict()
    assert st["values"][0] == {"key": "k", "state": "configured", "descriptor": "d", "value": {"a": 1}}
    assert st["values"][1]["error"] == "boom" and st["values"][1]["attempts"] == 2


SAMPLES = [
    rec.Health("n", False, 50, "starting", 3),
    rec.NodeStatus(AgentStatus("n", 3, True), NodeInfo("n", 1, "1.2.3.4", ("10.1.1.0/24",), ("10.1.1.1",)),
                   1450, "eth0", {"configured": 3}, {"seq": 1}, {"pod": 2}, {"node": "n"}),
    rec.IpamInfo("n", "10.1.0.0/16", "10.1.1.0/24", 253, 1, 252, ("10.1.1.1",),
                 (Allocation("n", "c", "eth0", ("10.1.1.2/32",)),)),
    rec.History((rec.TxnRecord(1, "resync", "r", 1.0, 0.5, [rec.OpRecord("delete", "k", "r", False, "e")]),)),
    rec.PolicyList((rec.PodPolicies("x/a", "10.1.1.2", "n",
                                    rec.Isolation(True, ("x/p",), (rec.RuleInfo("x/p ingress[0]", "all", ("TCP/80",)),), {}),
                                    rec.Isolation(False, (), (), {})),)),
    rec.Netstat("n", "vpp", 1.5, (InterfaceCounters("vxlan_tunnel0", "node", 1, 2, 3, 4, 5, 6, 7, 8),)),
    rec.PodSockets("x/a", "n", "/run/netns/a", (SocketInfo("udp", "UNCONN", "::", 53, "::", 0),)),
    rec.SessionList("n", "vpp", 1, None, (rec.NamedSession("udp", "10.1.1.2", 5353, "10.96.0.10", 53,
                                                           "10.1.1.3", 53, client="x/a"),),
                    (rec.ServiceSessions("kube-system/dns", 1, {"x/dns": 1}),)),
    rec.Explanation("x/a", "x/b", 80, "TCP", False, "denied: ...",
                    (rec.ExplainStep("ingress", False, "denied", "x/p"),)),
]


@pytest.mark.parametrize("r", SAMPLES, ids=lambda r: type(r).__name__)
def test_records_survive_a_json_round_trip(r):
    again = type(r).from_dict(json.loads(json.dumps(r.to_dict())))
    assert again.to_dict() == r.to_dict()


def test_a_body_that_is_not_an_object_is_invalid_input():
    with pytest.raises(InvalidInput, match="Health: stored value is not an object"):
        rec.Health.from_dict([1, 2])
