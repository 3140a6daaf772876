"""Packet traces through a real VPP's graph (agent/vpp/trace.py): real probes
between pods of two VPP nodes joined by VXLAN, one Service, one
NetworkPolicy (root; skipped with how to get a VPP where there is none).

The topology is tests/vpp/test_vpp_services.py's (its ``Cluster``: two nodes
each running its own VPP, pods 10.1.<k>.2/.3 on veth + af_packet serving TCP
and UDP 8080, the Services of that module), under namespace names of this
module's own (``svctr<hex>...``: that module's tags are hex only). Node 2
also gets the policy ``default/deny-b``: pod p2b (10.1.2.3) admits nothing.

Each trace is armed on both nodes, a probe with a fixed source port is sent
from a pod's namespace, and the trace is collected -- collected even when
the probe or an assertion fails, so that no VPP keeps a filter behind.
"""
from __future__ import annotations

import secrets
import subprocess
import sys
import time

import pytest

from agent.errors import Conflict
from agent.model.diag import TraceFlow
from agent.vpp import trace as T
from agent.vpp.process import availability
from agent.vpp.values import NONE, pod_ifname

HAVE_VPP, WHY = availability()
pytestmark = [pytest.mark.root, pytest.mark.vpp,
              pytest.mark.skipif(not HAVE_VPP, reason=f"needs a VPP: {WHY}")]

PROBE = r"""
import socket, struct, sys
proto, dst, dport, sport = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
try:
    if proto == "ICMP":  # an echo with the id chosen (a raw socket: we are root)
        body = struct.pack("!HH", sport, 1) + b"contiv-trace"
        def csum(b):
            s = sum(struct.unpack("!%dH" % (len(b) // 2), b)); s = (s >> 16) + (s & 0xffff)
            return ~(s + (s >> 16)) & 0xffff
        s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP); s.settimeout(1.5)
        s.sendto(struct.pack("!BBH", 8, 0, csum(b"\x08\x00\x00\x00" + body)) + body, (dst, 0))
        while True:
            d = s.recv(200)
            if d[20] == 0 and struct.unpack("!H", d[24:26])[0] == sport:
                print("pong"); break
    elif proto == "TCP":
        s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("0.0.0.0", sport)); s.settimeout(1.5); s.connect((dst, dport))
        print(s.recv(100).decode()); s.close()
    else:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("0.0.0.0", sport))
        s.settimeout(1.5); s.sendto(b"x", (dst, dport)); print(s.recv(100).decode())
except OSError as e:
    print("failed", e)
"""
DENY_B = {"metadata": {"namespace": "default", "name": "deny-b"},
          "spec": {"podSelector": {"matchLabels": {"app": "locked"}}, "policyTypes": ["Ingress"]}}
_ports = iter(range(42000 + secrets.randbelow(1000) * 10, 65000))


def cluster_class():
    from tests.vpp import test_vpp_services as S  # noqa: PLC0415 -- its topology, reused as is

    class TraceCluster(S.Cluster):
        """The Services' cluster under this module's namespace names, with a policy."""

        def __init__(self, tmp) -> None:
            self.tag = "tr" + secrets.token_hex(2)
            self.under = f"svc{self.tag}-u"
            self.nodes = []
            try:
                self._build(tmp)
                self._policy()
            except BaseException:
                self.close()
                raise

        def _policy(self) -> None:
            from agent.policies import PolicySync  # noqa: PLC0415
            from agent.vpp.policies import AclPolicyRenderer  # noqa: PLC0415
            n = self.nodes[1]
            pod = n.snapshot.objects["pod"][("default", "p2b")]
            pod["metadata"]["labels"] = {"app": "locked"}
            n.snapshot.objects["networkpolicy"][("default", "deny-b")] = DENY_B
            sync = PolicySync(n.snapshot, n.desired, "node2", AclPolicyRenderer(lambda: [n.ip]))
            res = n.desired.set_partitions(sync.partitions(), description="policies")
            assert res.ok and not res.plan.pending, (res.errors, res.plan.pending)

    return TraceCluster


@pytest.fixture(scope="module")
def c(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("trace")
    (tmp / "probe.py").write_text(PROBE)
    cluster = cluster_class()(tmp)  # cleans up itself if it fails
    cluster.probe_script = tmp / "probe.py"
    try:
        yield cluster
    finally:
        cluster.close()


def veth(node, ip: str) -> str:
    """The Linux interface a pod's af_packet interface reads (VPP: host-<veth>)."""
    for d in node.api.dump("sw_interface_dump", sw_if_index=NONE):
        if d.tag == "contiv:" + pod_ifname(ip):
            return d.interface_name[len("host-"):]
    raise AssertionError(f"no VPP interface for pod {ip}")


def traced(c, src_pod: str, flow: TraceFlow, nodes=(0, 1), probe: TraceFlow | None = None):
    """Arm ``nodes`` for ``flow``, send ``probe`` (default: the flow) from
    ``src_pod`` (p1a...), collect: (the probe's answer, packets per node,
    seconds from the first start to the last collect)."""
    p = probe or flow
    t0 = time.monotonic()
    handles, out = [], ""
    try:
        for k in nodes:
            handles.append((k, T.start(c.nodes[k].api, flow)))
        ns = f"svc{c.tag}-n{src_pod[1]}-{src_pod}"
        out = subprocess.run(["ip", "netns", "exec", ns, sys.executable, str(c.probe_script),
                              p.protocol, p.dst, str(p.dport), str(p.sport)],
                             capture_output=True, text=True, timeout=10).stdout.strip()
    finally:
        got = [T.collect(c.nodes[k].api, h) for k, h in handles]
    return out, got, time.monotonic() - t0


def kinds(p) -> list[str]:
    return [s.kind for s in p.steps]


def flow(proto: str, src: str, dst: str, dport: int = 8080) -> TraceFlow:
    return TraceFlow(proto, src, next(_ports), dst, 0 if proto == "ICMP" else dport)


def no_filter_left(node) -> None:
    assert "not set" in node.api.cli("show bpf trace filter")
    assert [d.name for d in node.api.dump("trace_filter_function_dump") if d.selected] == \
        [T.DEFAULT_FUNCTION]


# --------------------------------------------------------------------------- across nodes
@pytest.mark.parametrize("proto", ["TCP", "UDP", "ICMP"])
def test_cross_node_probe_is_tunnelled_on_node1_and_delivered_on_node2(c, proto):
    f = flow(proto, "10.1.1.3", "10.1.2.2")
    out, (n1, n2), took = traced(c, "p1b", f)
    assert out in ("p2a 10.1.1.3", "pong"), out
    src_if, dst_if = veth(c.nodes[0], "10.1.1.3"), veth(c.nodes[1], "10.1.2.2")
    req1 = next(p for p in n1 if p.direction == "request")
    assert (req1.src, req1.sport, req1.dst, req1.dport) == (f.src, f.sport, f.dst, f.dport)
    assert req1.steps[0].kind == "in" and req1.steps[0].interface == src_if
    assert "route" in kinds(req1) and "deliver" not in kinds(req1)
    tunnel = next(s for s in req1.steps if s.kind == "tunnel")
    assert s_index(req1, "route") < s_index(req1, "tunnel")
    assert "192.168.77.102" in tunnel.text and tunnel.name == "vxlan4-encap"
    req2 = next(p for p in n2 if p.direction == "request")
    assert (req2.src, req2.dst) == (f.src, f.dst), "node 2 reports the inner header"
    ins = [s for s in req2.steps if s.kind == "in"]
    assert [s.name for s in ins] == ["af-packet-input", "vxlan4-input"] and ins[0].interface == "vpp0"
    assert "192.168.77.101" in ins[1].text
    assert req2.steps[-1].kind == "deliver" and req2.steps[-1].interface == dst_if
    # the answers come back: on node 2 from the pod, on node 1 out of the tunnel to the client
    assert any(p.direction == "reply" and p.steps[0].interface == dst_if for p in n2)
    rep1 = next(p for p in n1 if p.direction == "reply")
    assert (rep1.src, rep1.dst, rep1.dport) == (f.dst, f.src, f.sport)
    assert rep1.steps[-1].kind == "deliver" and rep1.steps[-1].interface == src_if
    assert took < 3.0, f"start + probe + collect on two nodes took {took:.2f} s"
    for n in c.nodes:
        no_filter_left(n)


def s_index(p, kind: str) -> int:
    return kinds(p).index(kind)


def test_same_node_probe_has_no_tunnel(c):
    f = flow("TCP", "10.1.1.3", "10.1.1.2")
    out, (n1, n2), _ = traced(c, "p1b", f)
    assert out == "p1a 10.1.1.3", out
    assert n2 == [], "nothing of it reached node 2"
    assert {p.direction for p in n1} == {"request", "reply"}
    for p in n1:
        assert "tunnel" not in kinds(p), p
        assert p.steps[-1].kind == "deliver"
    req = next(p for p in n1 if p.direction == "request")
    assert req.steps[0].interface == veth(c.nodes[0], "10.1.1.3")
    assert req.steps[-1].interface == veth(c.nodes[0], "10.1.1.2")


# --------------------------------------------------------------------------- Service
def test_service_probe_shows_the_translation_to_the_backend(c):
    f = flow("TCP", "10.1.1.3", "10.96.0.11", 80)  # "remote": p2a on node 2 only
    out, (n1, n2), _ = traced(c, "p1b", f)
    assert out == "p2a 10.1.1.3", out
    req = next(p for p in n1 if p.direction == "request")
    assert (req.dst, req.dport) == ("10.96.0.11", 80)
    svc = next(s for s in req.steps if s.kind == "service")
    assert svc.text == "10.96.0.11:80 -> 10.1.2.2:8080", svc
    assert s_index(req, "service") < s_index(req, "tunnel")
    # translated before it left: node 2 sees the backend's address, and the reply
    # is recognised by its destination side, untranslated on the way back
    assert any(p.direction == "request" and p.dst == "10.1.2.2" for p in n2)
    rep = next(p for p in n1 if p.direction == "reply")
    back = next(s for s in rep.steps if s.kind == "service")
    assert back.text == "source 10.1.2.2:8080 -> 10.96.0.11:80", back


# --------------------------------------------------------------------------- NetworkPolicy
def test_a_denied_probe_stops_at_the_policy(c):
    f = flow("TCP", "10.1.1.2", "10.1.2.3")
    out, (n1, n2), _ = traced(c, "p1a", f)
    assert out.startswith("failed"), out
    assert n2 and all(p.direction == "request" for p in n2), "no reply: nothing got through"
    for p in n2:
        pol = next(s for s in p.steps if s.kind == "policy")
        assert pol.verdict == "drop" and pol.interface == veth(c.nodes[1], "10.1.2.3")
        assert "default/deny-b" in pol.text and pol.name == "acl-plugin-out-ip4-fa", pol
        after = p.steps[s_index(p, "policy") + 1:]
        assert after and after[0].kind == "drop" and "ACL deny" in after[0].text, after
        assert not {"deliver", "route", "tunnel"} & {s.kind for s in after}
    assert all("tunnel" in kinds(p) for p in n1 if p.direction == "request")


def test_an_admitted_connection_passes_the_acls_and_its_replies_the_session(c):
    """p2b is isolated for ingress only: its egress list is ``pol-any``
    (permit+reflect), and the replies pass its ingress by the session."""
    f = flow("TCP", "10.1.2.3", "10.1.1.2")
    out, (_, n2), _ = traced(c, "p2b", f)
    assert out == "p1a 10.1.2.3", out
    b_if = veth(c.nodes[1], "10.1.2.3")
    req = next(p for p in n2 if p.direction == "request")
    pol = next(s for s in req.steps if s.kind == "policy")
    assert (pol.name, pol.verdict, pol.interface) == ("acl-plugin-in-ip4-fa", "accept", b_if)
    assert pol.side == "egress" and pol.text.startswith("acl ") and "(pol-any)" in pol.text, pol
    assert "tunnel" in kinds(req)
    rep = next(p for p in n2 if p.direction == "reply")
    pol = next(s for s in rep.steps if s.kind == "policy")
    assert (pol.name, pol.verdict) == ("acl-plugin-out-ip4-fa", "accept")
    assert "session" in pol.text, pol
    assert rep.steps[-1].kind == "deliver" and rep.steps[-1].interface == b_if


# --------------------------------------------------------------------------- the filter
def test_no_matching_traffic_gives_nothing_and_leaves_no_filter(c):
    for n in c.nodes:
        assert T.collect(n.api, T.start(n.api, flow("UDP", "10.1.1.9", "10.1.2.9"))) == []
    # a probe of another flow while armed (same ports, another pod) is not the trace's
    sent = flow("TCP", "10.1.1.2", "10.1.2.2")
    armed = TraceFlow("TCP", "10.1.1.3", sent.sport, sent.dst, sent.dport)
    out, got, _ = traced(c, "p1a", armed, probe=sent)
    assert out == "p2a 10.1.1.2", out
    assert got == [[], []]
    for n in c.nodes:
        no_filter_left(n)


def test_one_trace_at_a_time_per_vpp(c):
    api = c.nodes[0].api
    h = T.start(api, flow("TCP", "10.1.1.3", "10.1.2.2"))
    try:
        with pytest.raises(Conflict, match="running on this VPP"):
            T.start(api, flow("TCP", "10.1.1.2", "10.1.2.2"))
        other = T.start(c.nodes[1].api, flow("TCP", "10.1.1.2", "10.1.2.2"))  # another VPP: fine
        T.collect(c.nodes[1].api, other)
    finally:
        T.collect(api, h)
    no_filter_left(c.nodes[0])
