"""The trace's pure parts, without root: the nftables trace's rules, event
decoding and steps (on NFT_MSG_TRACE payloads captured from a real two-node
lab: tests/unit/data/nftrace-*.json), the Kubernetes labels
(agent/builders/trace.py) and the stitched path (contivctl/tracepath.py)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from agent.builders.trace import Cluster, label
from agent.linux import nftrace
from agent.model.api import ExplainStep, Explanation, EndpointInfo, FrontendInfo, ServiceInfo, \
    ServicePortInfo, ServiceDataplane
from agent.model.diag import TracedPacket, TraceFlow, TraceStep
from contivctl.tracepath import stitch

DATA = Path(__file__).parent / "data"
# the lab the captures come from: client, other, web-2 on node1; web-1 on node2;
# Service shop/web 10.96.0.2:80 -> 8080; shop/web-from-client admits app=client to web pods on 8080
PODS = {"10.1.2.3": "shop/client", "10.1.2.4": "shop/other", "10.1.2.2": "shop/web-2", "10.1.1.2": "shop/web-1"}
NODE_OF = {"shop/client": "node1", "shop/other": "node1", "shop/web-2": "node1", "shop/web-1": "node2"}
NODES = {"node1": ("192.168.56.10", "10.1.2.1"), "node2": ("192.168.56.11", "10.1.1.1")}
SERVICE = ServiceInfo("shop/web", "shop", "web", "ClusterIP", "10.96.0.2", (), "None", None, "Cluster", (
    ServicePortInfo("http", "TCP", (FrontendInfo("cluster-ip", "10.96.0.2", 80),), (
        EndpointInfo("10.1.1.2", 8080, "node2", False, "shop/web-1"),
        EndpointInfo("10.1.2.2", 8080, "node1", True, "shop/web-2"))),), ServiceDataplane(1, "programmed", ()), ())


def explain(src, dst, port, protocol):
    """The lab's one policy, as `policies explain` words it."""
    s, d = PODS.get(src, src), PODS.get(dst, dst)
    steps = [ExplainStep("egress", True, f"{s} is not isolated for egress")] if s in NODE_OF else []
    if d in ("shop/web-1", "shop/web-2"):
        if s == "shop/client" and protocol == "TCP" and port == 8080:
            steps.append(ExplainStep("ingress", True, "allowed by NetworkPolicy shop/web-from-client (ingress rule 0)",
                                     "shop/web-from-client", "shop/web-from-client ingress[0]"))
        else:
            steps.append(ExplainStep("ingress", False, f"denied: {d} is isolated for ingress by policy "
                                     f"shop/web-from-client; no rule admits {protocol}/{port} from {s}",
                                     "shop/web-from-client"))
    return Explanation(src, dst, port, protocol, all(x.allowed for x in steps), "", tuple(steps))


def capture(name: str) -> tuple[TraceFlow, list[dict]]:
    """The flow and each node's segment as its agent would answer (decoded,
    stepped and labelled), from a capture."""
    d = json.loads((DATA / f"nftrace-{name}.json").read_text())
    flow = TraceFlow(**d["flow"])
    segments = []
    for node, x in d["nodes"].items():
        names = x["ifnames"]
        events = [nftrace.decode(bytes.fromhex(e)) for e in x["events"]]
        host = nftrace.Node(lambda i, names=names: names.get(str(i), f"if{i}"), "contiv-vx",
                            lambda dst: f"{dst} via contiv-vx")
        packets = nftrace.packets(flow, events, "contiv-trace-1", host)
        host_ifs = {n: ref for n, ref in HOST_IFS.items() if NODE_OF[ref] == node}
        c = Cluster(node, (NODES[node][0],), PODS, NODE_OF, host_ifs, NODES, [SERVICE], explain)
        segments.append({"node": node, "dataplane": "linux", "flow": flow.to_dict(),
                         "packets": [p.to_dict() for p in label(packets, c)]})
    return flow, segments


HOST_IFS = {"cv570217ac835": "shop/client", "cva61e85a98ec": "shop/other", "cvd127d9100c8": "shop/web-2",
            "cv381a53a6d66": "shop/web-1"}


# ---------------------------------------------------------------- nftables trace
def test_the_trace_table_marks_only_the_flow_both_ways():
    text = nftrace.ruleset(TraceFlow("TCP", "10.1.2.3", 61234, "10.96.0.2", 80), "contiv-trace-7")
    assert "add table ip contiv-trace-7" in text
    assert "ip saddr 10.1.2.3 tcp sport 61234 meta nftrace set 1" in text
    assert "ip daddr 10.1.2.3 tcp dport 61234 meta nftrace set 1" in text
    assert "10.96.0.2" not in text  # a Service's address is translated: never matched on
    assert text.count("priority -300") == 4 and text.count("priority 300;") == 1
    icmp = nftrace.ruleset(TraceFlow("ICMP", "10.1.2.3", 7, "10.1.1.2"), "t")
    assert "icmp type echo-request icmp id 7" in icmp and "icmp type echo-reply icmp id 7" in icmp


@pytest.mark.parametrize("src", ["10.1.2.3; flush ruleset", "10.1.2.3\nadd table x", "::1"])
def test_the_trace_table_never_carries_text_of_a_request(src):
    with pytest.raises(ValueError):
        nftrace.ruleset(TraceFlow("TCP", src, 1, "10.1.1.2", 80), "t")


def test_real_events_decode_with_tables_chains_verdicts_and_headers():
    d = json.loads((DATA / "nftrace-allowed-cross-node.json").read_text())
    events = [nftrace.decode(bytes.fromhex(e)) for e in d["nodes"]["node2"]["events"]]
    assert {e.table for e in events} == {"contiv", "contiv-trace-1"}
    pin = [e for e in events if e.chain.startswith("pin-")]
    assert pin and pin[0].verdict == "accept" and pin[0].handle > 0
    jump = next(e for e in events if e.chain == "pol-ingress" and e.verdict == "goto")
    assert jump.target.startswith("grp-i-")
    first = nftrace.header(events[0].network, events[0].transport)
    assert first == nftrace.Header("TCP", "10.1.2.3", 61234, "10.1.1.2", 8080)


def test_only_the_first_packet_of_each_direction_is_kept():
    d = json.loads((DATA / "nftrace-allowed-cross-node.json").read_text())
    flow = TraceFlow(**d["flow"])
    events = [nftrace.decode(bytes.fromhex(e)) for e in d["nodes"]["node1"]["events"]]
    ids = {e.id for e in events}
    assert len(ids) > 2  # SYN, SYN-ACK, the handshake's ACK, the reset...
    packets = nftrace.group(flow, events)
    assert [p.direction for p in packets] == ["request", "reply"]


def test_rule_comments_lose_our_value_identity():
    assert nftrace._udata_comment(bytes([0, 46]) + b"shop/web-from-client ingress[0] #7b54331838ee\0") == \
        "shop/web-from-client ingress[0]"
    assert nftrace._udata_comment(bytes([0, 14]) + b"#b747ee02896d\0") == ""
    assert nftrace._udata_comment(bytes([1, 2]) + b"xx" + bytes([0, 4]) + b"abc\0") == "abc"  # after another TLV
    assert nftrace._udata_comment(b"") == ""


# ---------------------------------------------------------------- labels and path
def test_an_allowed_cross_node_probe_crosses_both_nodes_through_the_tunnel():
    _, segments = capture("allowed-cross-node")
    path = stitch(segments, "node1")
    assert path["verdict"] == "delivered" and path["nodes"] == ["node1", "node2"]
    req = [h for h in path["path"] if h["direction"] == "request"]
    assert [h["node"] for h in req] == sorted(h["node"] for h in req)  # node1's hops, then node2's
    kinds = [(h["node"], h["kind"]) for h in req]
    assert kinds.index(("node1", "tunnel")) < kinds.index(("node2", "in"))
    tunnel = next(h for h in req if h["kind"] == "tunnel")
    assert tunnel["label"] == "VXLAN tunnel to node node2 (192.168.56.11)"
    allow = [h for h in req if h["kind"] == "policy" and h["node"] == "node2"]
    assert [h["label"] for h in allow] == ["allowed by NetworkPolicy shop/web-from-client (ingress rule 0)"]
    assert req[0]["label"] == "from pod shop/client" and req[-1]["label"] == "delivered to pod shop/web-1"
    reply = [h for h in path["path"] if h["direction"] == "reply"]
    assert [h["node"] for h in reply][0] == "node2" and reply[-1]["label"] == "delivered to pod shop/client"


def test_a_blocked_probe_names_the_isolation_and_the_policy_set():
    _, segments = capture("denied-cross-node")
    path = stitch(segments, "node1")
    assert path["verdict"] == "dropped"
    assert "on node2" in path["reason"] and "shop/web-from-client" in path["reason"]
    drop = [h for h in path["path"] if h["kind"] == "policy" and h["verdict"] == "drop"]
    assert len(drop) == 1 and drop[0]["side"] == "ingress"
    assert drop[0]["label"].startswith("denied: shop/web-1 is isolated for ingress by policy shop/web-from-client")
    assert "grp-i-" in drop[0]["text"]  # the data plane's own words stay beside the label
    assert not [h for h in path["path"] if h["direction"] == "reply"]


def test_a_service_probe_shows_the_translation_and_the_backend_pod():
    _, segments = capture("service")
    path = stitch(segments, "node1")
    svc = [h for h in path["path"] if h["kind"] == "service"]
    assert svc[0]["direction"] == "request"
    assert svc[0]["label"].startswith("Service shop/web 10.96.0.2:80 (http) -> pod shop/web-2 (10.1.2.2) port 8080")
    back = [h for h in svc if h["direction"] == "reply"]
    assert back and "sent as from Service shop/web 10.96.0.2:80" in back[0]["label"]
    # the backend is on the client's node: no tunnel anywhere
    assert path["verdict"] == "delivered" and not [h for h in path["path"] if h["kind"] == "tunnel"]


def test_a_data_plane_verdict_that_explain_contradicts_is_flagged():
    step = TraceStep("ip contiv pol-ingress", "policy", "pol-ingress (chain policy)", "accept", side="ingress")
    p = TracedPacket("request", "TCP", "10.1.2.4", 61000, "10.1.1.2", 8080,
                     (TraceStep("prerouting", "in", interface="contiv-vx"), step))
    c = Cluster("node2", (), PODS, NODE_OF, {}, NODES, [], explain)
    got = label([p], c)[0].steps[1].label
    assert got.startswith("DISAGREES with `policies explain`") and "accepted" in got


def test_the_other_ends_open_check_is_left_to_its_own_node():
    step = TraceStep("ip contiv pol-ingress", "policy", "pol-ingress (chain policy)", "accept", side="ingress")
    p = TracedPacket("request", "TCP", "10.1.2.3", 61000, "10.1.1.2", 8080, (step,))
    c = Cluster("node1", (), PODS, NODE_OF, {}, NODES, [], explain)
    assert label([p], c)[0].steps == ()


def test_a_probe_no_node_saw_and_one_lost_on_the_way():
    assert stitch([{"node": "node1", "packets": []}], "node1")["verdict"] == "not seen"
    lost = stitch([{"node": "node1", "packets": [{"direction": "request", "steps": [
        {"name": "prerouting", "kind": "in", "label": "from pod shop/client"},
        {"name": "postrouting", "kind": "tunnel", "label": "VXLAN tunnel to node node2 (192.168.56.11)"}]}]}],
        "node1")
    assert lost["verdict"] == "lost" and "node1" in lost["reason"]
