"""Packet traces through VPP's graph (agent/vpp/trace.py), without a VPP.

The parser reads trace text captured from a real VPP 26.10 on this project's
two-node topology (``data/vpptrace-samples.json``: per scenario and node the
``trace_v2_dump`` texts and what :meth:`Names.read` found there, written by
start/probe/collect runs of tests/vpp/test_vpp_trace.py's topology). Arming
and releasing go through the recording fake (agent/vpp/recorder.py), which
checks every message against the VPP 26.10 API definitions.
"""
from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from agent.errors import Conflict, InvalidInput, NotFound
from agent.model.diag import STEP_KINDS, TraceFlow
from agent.vpp import apidefs, trace as T
from agent.vpp.errors import VppApiError
from agent.vpp.messages import required
from agent.vpp.recorder import Recorder, default_api_dir

pytestmark = pytest.mark.skipif(not default_api_dir().is_dir(),
                                reason="no VPP API definitions (../shared/vpp-api) next to the repository")

SAMPLES = json.loads((Path(__file__).parent / "data" / "vpptrace-samples.json").read_text())["scenarios"]
P1B, P2A, P2B = "cv5259fb8897f", "cv16b30d19240", "cv88c9e6be1f5"  # the pods' veths in the capture


def names(raw: dict) -> T.Names:
    """A Names from its JSON form (keys back to numbers, lists to tuples)."""
    num = lambda d, f=lambda v: v: {int(k): f(v) for k, v in d.items()}  # noqa: E731
    return T.Names(num(raw["sw"]), num(raw["ours"]), num(raw["hw"]), num(raw["tunnels"], tuple),
                   num(raw["acls"]), num(raw["lists"], lambda v: tuple(tuple(x) for x in v)))


def sample(scenario: str, node: str, flow: TraceFlow | None = None):
    s = SAMPLES[scenario]
    n = s["nodes"][node]
    return T.packets(flow or TraceFlow(**s["flow"]), n["texts"], names(n["names"]))


def path(p) -> list[tuple[str, str]]:
    return [(s.name, s.kind) for s in p.steps]


def of(p, kind: str) -> list:
    return [s for s in p.steps if s.kind == kind]


# --------------------------------------------------------------------------- the parser
def test_a_cross_node_request_on_the_sending_node_is_every_graph_node_up_to_the_tunnel():
    first = sample("cross_node_tcp", "node1")[0]
    assert (first.direction, first.protocol, first.src, first.sport, first.dst, first.dport) == \
        ("request", "TCP", "10.1.1.3", 43001, "10.1.2.2", 8080)
    assert path(first) == [
        ("af-packet-input", "in"), ("ethernet-input", "step"), ("ip4-input", "step"),
        ("cnat-input-ip4", "step"), ("ip4-lookup", "route"), ("ip4-rewrite", "route"),
        ("loop0-output", "step"), ("l2-input", "step"), ("l2-fwd", "step"), ("l2-output", "step"),
        ("vxlan4-encap", "tunnel"), ("ip4-rewrite", "route"), ("host-vpp0-output", "step"),
        ("host-vpp0-tx", "step")]
    s = first.steps
    assert (s[0].interface, s[0].text) == (P1B, "host-" + P1B)
    assert (s[4].interface, s[4].text) == ("loop0", "via 10.1.2.1")  # the lookup's choice
    assert s[10].text == "VXLAN to 192.168.77.102, vx-node2, vni 10"
    assert s[10].interface == "vxlan_tunnel2"
    assert (s[11].interface, s[13].interface) == ("vpp0", "vpp0")  # af_packet: the Linux name
    assert all(x.kind in STEP_KINDS and not x.label for x in s)


def test_a_packet_arriving_over_vxlan_is_read_by_its_inner_header_and_delivered():
    pkts = sample("cross_node_tcp", "node2")
    req = next(p for p in pkts if p.direction == "request")
    assert (req.src, req.sport, req.dst, req.dport) == ("10.1.1.3", 43001, "10.1.2.2", 8080)
    ins = of(req, "in")
    assert [(s.name, s.interface) for s in ins] == [("af-packet-input", "vpp0"),
                                                    ("vxlan4-input", "vxlan_tunnel1")]
    assert ins[1].text == "VXLAN from 192.168.77.101, vx-node1, vni 10"
    assert (req.steps[-1].name, req.steps[-1].kind, req.steps[-1].interface) == \
        (f"host-{P2A}-tx", "deliver", P2A)
    assert of(req, "route")[-1].interface == P2A
    rep = next(p for p in pkts if p.direction == "reply")
    assert (rep.src, rep.sport, rep.dst, rep.dport) == ("10.1.2.2", 8080, "10.1.1.3", 43001)
    assert rep.steps[0].interface == P2A and of(rep, "tunnel")[0].text.startswith("VXLAN to 192.168.77.101")


def test_vxlan_packets_of_other_flows_are_not_the_traces():
    """The filter admits VXLAN by inner header offsets; the parser checks the
    inner 5-tuple itself: another port, another pod or another protocol is not it."""
    f = TraceFlow(**SAMPLES["cross_node_tcp"]["flow"])
    for other in (TraceFlow("TCP", f.src, f.sport + 1, f.dst, f.dport),
                  TraceFlow("TCP", "10.1.1.2", f.sport, f.dst, f.dport),
                  TraceFlow("UDP", f.src, f.sport, f.dst, f.dport)):
        assert sample("cross_node_tcp", "node2", other) == []
    mixed = [t for s in ("cross_node_tcp", "service_tcp", "policy_accept") for t in
             SAMPLES[s]["nodes"]["node2"]["texts"]]
    got = T.packets(f, mixed, names(SAMPLES["cross_node_tcp"]["nodes"]["node2"]["names"]))
    assert len(got) == len(SAMPLES["cross_node_tcp"]["nodes"]["node2"]["texts"])
    assert {(p.src, p.sport) for p in got if p.direction == "request"} == {(f.src, f.sport)}


def test_packets_come_in_the_order_vpp_saw_them():
    n = SAMPLES["cross_node_tcp"]["nodes"]["node1"]
    f = TraceFlow(**SAMPLES["cross_node_tcp"]["flow"])
    want = T.packets(f, n["texts"], names(n["names"]))
    shuffled = list(n["texts"])
    random.Random(7).shuffle(shuffled)
    assert T.packets(f, shuffled, names(n["names"])) == want
    assert [p.direction for p in want] == ["request", "reply", "request", "reply"]  # SYN, SYN-ACK...


def test_a_service_translation_is_a_step_with_the_backend_both_ways():
    pkts = sample("service_tcp", "node1")
    req = next(p for p in pkts if p.direction == "request")
    assert (req.dst, req.dport) == ("10.96.0.11", 80)  # as it arrived: the virtual IP
    svc = of(req, "service")
    assert [(s.name, s.text) for s in svc] == [("cnat-input-ip4", "10.96.0.11:80 -> 10.1.2.2:8080")]
    assert path(req).index(("cnat-input-ip4", "service")) < path(req).index(("vxlan4-encap", "tunnel"))
    rep = next(p for p in pkts if p.direction == "reply")
    assert [(s.name, s.text) for s in of(rep, "service")] == \
        [("cnat-output-ip4", "source 10.1.2.2:8080 -> 10.96.0.11:80")]
    # untranslated traffic passes cnat as a plain step (it showed the same header)
    assert of(sample("cross_node_tcp", "node1")[0], "service") == []
    assert all(of(p, "service") == [] for p in sample("icmp", "node1")), "cnat shows an echo id twice"


def test_a_denied_packet_stops_at_the_policy_with_the_policy_named():
    pkts = sample("policy_drop", "node2")
    assert pkts and all(p.direction == "request" for p in pkts)
    for p in pkts:
        tail = path(p)[-4:]
        assert tail == [("ip4-rewrite", "route"), ("acl-plugin-out-ip4-fa", "policy"),
                        ("error-drop", "drop"), ("drop", "step")]
        pol, drop = p.steps[-3], p.steps[-2]
        assert (pol.verdict, pol.interface) == ("drop", P2B)
        assert (pol.side, pol.text) == ("ingress", "no rule matched, denied by default (isolated by default/deny-b)")
        assert drop.text == "acl-plugin-out-ip4-fa: ACL deny packets"
        assert len(of(p, "drop")) == 1


def test_an_admitted_packet_names_the_acl_and_its_reply_the_session():
    pkts = sample("policy_accept", "node2")
    req = next(p for p in pkts if p.direction == "request")
    (pol,) = of(req, "policy")
    assert (pol.name, pol.verdict, pol.interface) == ("acl-plugin-in-ip4-fa", "accept", P2B)
    assert (pol.side, pol.text) == ("egress", "acl 0 rule 0 (pol-any)")
    rep = next(p for p in pkts if p.direction == "reply")
    (pol,) = of(rep, "policy")
    assert (pol.verdict, pol.side, pol.text) == ("accept", "ingress", "session of an admitted connection")
    assert rep.steps[-1].kind == "deliver" and rep.steps[-1].interface == P2B


def test_icmp_echo_request_and_reply_by_their_id():
    n1 = sample("icmp", "node1")
    assert [(p.direction, p.src, p.sport, p.dst, p.dport) for p in n1] == [
        ("request", "10.1.1.3", 4242, "10.1.2.2", 0), ("reply", "10.1.2.2", 0, "10.1.1.3", 4242)]
    assert of(n1[0], "tunnel") and n1[1].steps[-1].kind == "deliver"


def test_a_same_node_packet_has_no_tunnel():
    pkts = sample("same_node_udp", "node1")
    assert [p.direction for p in pkts] == ["request", "reply"]
    for p in pkts:
        assert not of(p, "tunnel") and p.steps[-1].kind == "deliver"
    assert pkts[0].steps[-1].interface != pkts[1].steps[-1].interface
    assert SAMPLES["same_node_udp"]["nodes"]["node2"]["texts"] == []


def test_text_without_the_flow_or_any_header_gives_nothing():
    f = TraceFlow("TCP", "10.1.1.3", 43001, "10.1.2.2", 8080)
    assert T.packets(f, ["", "\n00:00:01:000001: af-packet-input\n  garbage"], T.Names()) == []


# --------------------------------------------------------------------------- the filter
def test_the_bpf_filter_matches_both_directions_plain_and_inside_vxlan():
    assert T.bpf_filter(TraceFlow("TCP", "10.1.1.3", 43001, "10.96.0.11", 80)) == (
        "(tcp and src host 10.1.1.3 and src port 43001) or (tcp and dst host 10.1.1.3 and dst port 43001)"
        " or ((udp dst port 4789) and udp[39] = 6 and ((udp[42:4] = 0x0a010103 and udp[50:2] = 43001)"
        " or (udp[46:4] = 0x0a010103 and udp[52:2] = 43001)))")
    assert T.bpf_filter(TraceFlow("ICMP", "10.1.1.3", 7, "10.1.2.2"), (4789, 8472)) == (
        "(icmp and host 10.1.1.3 and icmp[4:2] = 7) or ((udp dst port 4789 or udp dst port 8472)"
        " and udp[39] = 1 and (udp[42:4] = 0x0a010103 or udp[46:4] = 0x0a010103) and udp[54:2] = 7)")


@pytest.mark.parametrize("flow", [
    TraceFlow("TCP", "10.1.1.3 or 1=1", 1, "10.1.2.2", 80),
    TraceFlow("TCP", "fd00::1", 1, "10.1.2.2", 80),
    TraceFlow("SCTP", "10.1.1.3", 1, "10.1.2.2", 80),
    TraceFlow("UDP", "10.1.1.3", 0, "10.1.2.2", 80),
    TraceFlow("UDP", "10.1.1.3", 70000, "10.1.2.2", 80)])
def test_only_parsed_values_reach_the_filter(flow):
    rec = fake()
    with pytest.raises(InvalidInput, match="cannot trace"):
        T.start(rec, flow)
    assert "bpf_trace_filter_set" not in rec.names()


# --------------------------------------------------------------------------- arming and releasing
def fake(selected: str = T.DEFAULT_FUNCTION, scenario: str = "cross_node_tcp", node: str = "node1") -> Recorder:
    """The recording fake answering like the captured VPP: its filter
    functions, tunnel, interfaces and the captured packets."""
    rec = Recorder(check_refs=False)
    rec.seed("trace_filter_function_dump", *({"name": n, "selected": n == selected}
                                            for n in dict.fromkeys((T.BPF, T.DEFAULT_FUNCTION, selected))))
    raw = SAMPLES[scenario]["nodes"][node]
    nm = names(raw["names"])
    rec.seed("vxlan_tunnel_v2_dump", *({"sw_if_index": sw, "dst_address": ip, "dst_port": port}
                                       for sw, (ip, port) in nm.tunnels.items()))
    rec.seed("sw_interface_dump", *({"sw_if_index": sw, "interface_name": n,
                                     "tag": "contiv:" + nm.ours[sw] if nm.ours.get(sw) else ""}
                                    for sw, n in nm.sw.items()))
    rec.seed_cli("show hardware-interfaces brief", "              Name                Idx   Link  Hardware\n"
                 + "".join(f"{n:<34}{i:>2}     up   {n}\n  Link speed: unknown\n" for i, n in nm.hw.items()))
    rec.seed("trace_v2_dump", *({"trace_data": t} for t in raw["texts"]))
    return rec


def released(rec: Recorder, restore: str = T.DEFAULT_FUNCTION) -> bool:
    """The last trace messages undo the trace: capture stopped, program gone,
    filter function restored, the cache freed."""
    tail = [(c.name, c.kwargs) for c in rec.calls if c.name.startswith(("trace_", "bpf_"))][-4:]
    return tail == [("trace_clear_capture", {}), ("bpf_trace_filter_set", {"is_add": False, "filter": ""}),
                    ("trace_set_filter_function", {"filter_function_name": restore}),
                    ("trace_clear_cache", {})]


FLOW = TraceFlow(**SAMPLES["cross_node_tcp"]["flow"])


def test_start_and_collect_send_valid_messages_and_give_the_packets():
    rec = fake()
    rec.fail("get_node_index", -63, times=3, when=lambda kw: kw["node_name"] != "af-packet-input")
    h = T.start(rec, FLOW)
    assert [c["node_name"] for c in rec.calls_to("get_node_index")] == list(T.INPUT_NODES)
    (cap,) = rec.calls_to("trace_capture_packets")  # on the one input node this VPP has
    assert (cap["use_filter"], cap["max_packets"]) == (True, T.MAX_PACKETS)
    assert rec.calls_to("bpf_trace_filter_set") == [{"is_add": True, "filter": T.bpf_filter(FLOW)}]
    assert rec.calls_to("trace_set_filter_function") == [{"filter_function_name": T.BPF}]
    got = T.collect(rec, h)
    assert got == sample("cross_node_tcp", "node1")
    assert released(rec)
    assert set(rec.names()) <= set(T.MESSAGES) <= set(required())


def test_every_message_is_in_vpp_26_10_with_the_crc_we_rely_on():
    Recorder().require(T.MESSAGES)  # each exists in the definitions, with its replies
    defs = apidefs.load(default_api_dir())
    pinned = {"bpf_trace_filter_set": "0x3171346e", "trace_set_filter_function": "0x616abb92",
              "trace_filter_function_dump": "0x51077d14", "trace_capture_packets": "0x9e791a9b",
              "trace_clear_capture": "0x51077d14", "trace_v2_dump": "0x83f88d8e",
              "trace_v2_details": "0x91f87d52", "trace_clear_cache": "0x51077d14",
              "get_node_index": "0xf1984c64", "get_node_index_reply": "0xa8600b89"}
    assert {n: defs.crc(n) for n in pinned} == pinned


def test_a_second_trace_on_the_same_vpp_is_a_conflict_until_the_first_is_collected():
    rec = fake()
    h = T.start(rec, FLOW)
    with pytest.raises(Conflict, match="running on this VPP") as e:
        T.start(rec, TraceFlow("UDP", "10.1.1.2", 5000, "10.1.2.2", 53))
    assert e.value.hint
    other = fake()  # another VPP: its own filter
    T.collect(other, T.start(other, FLOW))
    T.collect(rec, h)
    T.collect(rec, T.start(rec, FLOW))  # free again
    with pytest.raises(NotFound):
        T.collect(rec, h)


def test_a_trace_left_armed_is_cleared_by_the_next_start_after_a_while():
    rec = fake()
    old = T.start(rec, FLOW, now=lambda: 100.0)
    with pytest.raises(Conflict):
        T.start(rec, FLOW, now=lambda: 100.0 + T.STALE - 1)
    rec.clear()
    new = T.start(rec, FLOW, now=lambda: 100.0 + T.STALE + 1)
    names_ = rec.names()
    assert names_[1:5] == ["trace_clear_capture", "bpf_trace_filter_set", "trace_set_filter_function",
                           "trace_clear_cache"], "the stale one is released first"
    assert names_[5:7] == ["trace_filter_function_dump", "trace_clear_capture"]
    with pytest.raises(NotFound, match="not running any more"):
        T.collect(rec, old)
    T.collect(rec, new)
    assert released(rec)


def test_a_filter_armed_by_somebody_else_is_respected_then_taken_over():
    rec = fake(selected=T.BPF)  # e.g. an agent that died mid-trace
    with pytest.raises(Conflict, match="somebody else"):
        T.start(rec, FLOW, now=lambda: 10.0)
    assert "bpf_trace_filter_set" not in rec.names()
    h = T.start(rec, FLOW, now=lambda: 10.0 + T.STALE)
    T.collect(rec, h)
    assert released(rec, restore=T.DEFAULT_FUNCTION), "its filter function is not restored"


def test_everything_is_released_when_the_dump_fails():
    rec = fake(selected="some_other_function")
    h = T.start(rec, FLOW)
    rec.fail("trace_v2_dump", -1)
    with pytest.raises(VppApiError):
        T.collect(rec, h)
    assert released(rec, restore="some_other_function")
    T.collect(rec, T.start(rec, FLOW))  # not wedged


def test_everything_is_released_when_reading_the_names_fails():
    rec = fake()
    h = T.start(rec, FLOW)
    rec.fail("sw_interface_dump", -1)
    with pytest.raises(VppApiError):
        T.collect(rec, h)
    assert released(rec)


def test_a_failing_release_step_does_not_stop_the_others():
    rec = fake()
    h = T.start(rec, FLOW)
    rec.fail("bpf_trace_filter_set", -1, when=lambda kw: not kw["is_add"])
    with pytest.raises(VppApiError):
        T.collect(rec, h)
    assert released(rec)
    T.collect(rec, T.start(rec, FLOW))


def test_a_failure_while_arming_releases_and_frees_the_vpp():
    rec = fake()
    rec.fail("trace_capture_packets", -63)
    with pytest.raises(VppApiError):
        T.start(rec, FLOW)
    assert released(rec)
    T.collect(rec, T.start(rec, FLOW))


def test_nothing_captured_reads_nothing_more():
    rec = fake(scenario="same_node_udp", node="node2")  # that node saw none of it
    h = T.start(rec, FLOW)
    rec.clear()
    assert T.collect(rec, h) == []
    assert [c.name for c in rec.calls if c.name.endswith("_dump")] == ["trace_v2_dump"]
