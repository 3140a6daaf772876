"""The NetworkPolicy compiler (``agent.builders.policies``), table-driven.

The cases live in ``policy_cases.yaml`` (its header explains the format):
a world of namespaces and pods, Kubernetes NetworkPolicy objects, and
connections with the verdict Kubernetes gives them. Every connection is one
test: the verdict must match, and ``explain`` must name what decided it --
the deciding step's policy (structured) and the text of the verdict.

Pods are written compactly and expanded into Pod objects, so that
``pod_info`` (what the agent runs on every Pod it watches) is exercised too.
"""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from agent.builders.policies import PolicyError, PolicyModel, pod_info

DATA = yaml.safe_load((Path(__file__).with_name("policy_cases.yaml")).read_text())
WORLDS = DATA["worlds"]
CASES = {c["name"]: c for c in DATA["cases"]}


def pod_object(p: dict) -> dict:
    """Compact pod -> a Pod as the reflector stores it (running, with an IP)."""
    ns, _, name = p["ref"].partition("/")
    ports = [{"name": n, "protocol": proto, "containerPort": port} for n, proto, port in p["ports"]]
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"namespace": ns, "name": name, "labels": dict(p["labels"])},
            "spec": {"nodeName": p["node"], "containers": [{"name": "main", "ports": ports}]},
            "status": {"phase": "Running", "podIP": p["ip"]}}


def model_for(case: dict) -> PolicyModel:
    world = WORLDS[case["world"]]
    namespaces = {**world["namespaces"], **case.get("namespaces", {})}
    pods = [pod_info(pod_object(p)) for p in world["pods"] + case.get("pods", [])]
    assert all(pods), "every pod of the table has an IP"
    return PolicyModel(pods, namespaces, case["policies"])


def _conn_id(case: str, c: dict) -> str:
    return f"{case}:{c['src']}->{c['dst']}:{c['protocol']}/{c['port']}"


CONNECTIONS = [pytest.param(name, c, id=_conn_id(name, c))
               for name, case in CASES.items() for c in case["connections"]]
EFFECTIVE = [pytest.param(name, ref, want, id=f"{name}:{ref}")
             for name, case in CASES.items() for ref, want in (case.get("effective") or {}).items()]


def deciding_step(result: dict) -> dict | None:
    """The step the verdict rests on: the first that denies; else the last
    decided by a policy (the destination's, when both ends are isolated)."""
    denied = [s for s in result["steps"] if not s["allowed"]]
    if denied:
        return denied[0]
    decided = [s for s in result["steps"] if s["policy"]]
    return decided[-1] if decided else None


@pytest.mark.parametrize("case_name,conn", CONNECTIONS)
def test_connection_verdict_and_explanation(case_name, conn):
    m = model_for(CASES[case_name])
    r = m.explain(str(conn["src"]), str(conn["dst"]), conn["port"], conn["protocol"])
    assert r["allowed"] is conn["allowed"], r["verdict"]
    step = deciding_step(r)
    if conn["decided_by"]:
        assert step is not None and step["policy"] == conn["decided_by"], r
        assert conn["decided_by"] in r["verdict"]
    else:
        # nothing decided: no step names a policy, and neither does the verdict
        assert step is None or not step["policy"], r
        assert not any(p.ref in r["verdict"] for p in m.policies), r["verdict"]
    wanted = conn["reason_contains"]
    for text in [wanted] if isinstance(wanted, str) else wanted:
        assert text in r["verdict"], r["verdict"]
    if "rule" in conn:
        assert step is not None and step["rule"] == conn["rule"], r
    # the verdict text agrees with the verdict
    assert r["verdict"].startswith("allowed") is conn["allowed"], r["verdict"]


@pytest.mark.parametrize("case_name,ref,want", EFFECTIVE)
def test_effective_isolation(case_name, ref, want):
    m = model_for(CASES[case_name])
    eff = m.effective(m.pods[ref])
    for direction in ("ingress", "egress"):
        assert eff[direction]["isolated"] is bool(want[direction]), eff
        assert eff[direction]["policies"] == want[direction], eff
    invalid = set()
    for direction in ("ingress", "egress"):
        invalid |= set(eff[direction]["invalid"])
    assert invalid == set(want.get("invalid", [])), eff
    for direction in ("ingress", "egress"):
        for ref_, err in eff[direction]["invalid"].items():
            assert err, f"{ref_}: an invalid policy carries its error"


def test_table_covers_both_verdicts_and_every_world():
    """A table whose expectations are all 'allowed' (or all 'denied') proves little."""
    verdicts = {c["allowed"] for case in CASES.values() for c in case["connections"]}
    assert verdicts == {True, False}
    assert {c["world"] for c in CASES.values()} == set(WORLDS)
    for name, case in CASES.items():
        if case["policies"]:
            assert any(not c["allowed"] for c in case["connections"]), f"{name}: nothing is denied"


# ------------------------------------------------------------------ pod_info
def test_pod_info_reads_ports_labels_and_node():
    p = pod_info({"metadata": {"namespace": "x", "name": "a", "labels": {"pod": "a", "n": 1}},
                  "spec": {"nodeName": "node2", "containers": [
                      {"name": "c1", "ports": [{"name": "http", "containerPort": 80},
                                               {"name": "dns", "containerPort": 53, "protocol": "UDP"}]},
                      {"name": "c2", "ports": [{"containerPort": 9000}]}]},
                  "status": {"podIP": "10.1.2.9"}})
    assert p.ref == "x/a" and p.ip == "10.1.2.9" and p.node == "node2"
    assert p.label_dict() == {"pod": "a", "n": "1"}
    assert p.named_port("http", "TCP") == 80
    assert p.named_port("dns", "UDP") == 53
    assert p.named_port("dns", "TCP") is None  # a name is matched with its protocol
    assert ("", "TCP", 9000) in p.ports


def test_pod_without_ip_is_not_a_policy_endpoint():
    assert pod_info({"metadata": {"namespace": "x", "name": "a"}, "spec": {},
                     "status": {"phase": "Pending"}}) is None


# ------------------------------------------------------------------ explain input
def test_explain_rejects_unknown_endpoints():
    m = model_for(CASES["no-policy-everything-open"])
    with pytest.raises(PolicyError, match="neither a known pod"):
        m.explain("x/nope", "x/a", 80)
    with pytest.raises(PolicyError, match="neither a known pod"):
        m.explain("x/a", "not-an-ip", 80)
