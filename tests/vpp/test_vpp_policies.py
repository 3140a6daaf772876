"""NetworkPolicies on a real VPP (agent/vpp/policies.py): real TCP and UDP
connections between pods, and from outside, checked against ``explain``.

One node: a network namespace running its own VPP, whose uplink ``vpp0`` is
a veth to an "outside" namespace holding the node's address 192.168.77.1
(what the plane's ``node_ips`` reports: kubelet's source) and an unrelated
host 192.168.77.5. Pods x/a, x/b and y/c on veth + af_packet, made by
``agent.vpp.render`` through a Scheduler over the data plane's descriptors;
each pod runs servers on TCP 80, 8080, 9000-9003 and UDP 53, 5353. The test
thread enters the node namespace for the module (the pods' veths are made
there) and goes back home at the end, even on failure.

Skipped, saying how to get one, without a VPP; needs root.
"""
from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from agent.builders.nodes import node_transport
from agent.builders.pods import PodAttachment
from agent.cluster import Change, ClusterSnapshot
from agent.desired import DesiredState
from agent.model.records import NodeInfo
from agent.nsenter import setns
from agent.policies import PolicySync
from agent.reconciler import Scheduler
from agent.vpp import policies as P
from agent.vpp.process import availability

HAVE_VPP, WHY = availability()
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
pytestmark = [pytest.mark.root, pytest.mark.vpp,
              pytest.mark.skipif(not HAVE_VPP, reason=f"needs a VPP: {WHY}")]

NODE_IP, OUTSIDER = "192.168.77.1", "192.168.77.5"
PODS = {"x/a": ("10.1.1.2", {"app": "web"}), "x/b": ("10.1.1.3", {"app": "client"}),
        "y/c": ("10.1.1.4", {"app": "other"})}
TCP_PORTS, UDP_PORTS = (80, 8080, 9000, 9001, 9002, 9003), (53, 5353)

SERVER = r"""
import socket, sys, threading
tcp, udp = [int(p) for p in sys.argv[1].split(",")], [int(p) for p in sys.argv[2].split(",")]
def t(port):
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", port)); s.listen(64)
    while True:
        c, _ = s.accept(); c.sendall(b"ok"); c.close()
def u(port):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("0.0.0.0", port))
    while True:
        d, a = s.recvfrom(100); s.sendto(b"ok", a)
for p in tcp: threading.Thread(target=t, args=(p,), daemon=True).start()
for p in udp: threading.Thread(target=u, args=(p,), daemon=True).start()
print("ready", flush=True); threading.Event().wait()
"""
PROBE = r"""
import json, socket, sys, threading
out = {}
def one(i, src, dst, port, proto):
    try:
        if proto == "TCP":
            s = socket.socket(); s.settimeout(1.2)
            if src: s.bind((src, 0))
            s.connect((dst, port)); ok = s.recv(2) == b"ok"
        else:
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(1.2)
            if src: s.bind((src, 0))
            s.sendto(b"hi", (dst, port)); ok = s.recvfrom(10)[0] == b"ok"
        s.close()
    except OSError:
        ok = False
    out[i] = ok
ts = [threading.Thread(target=one, args=(i, *p)) for i, p in enumerate(json.loads(sys.argv[1]))]
[t.start() for t in ts]; [t.join() for t in ts]
print(json.dumps([out[i] for i in range(len(ts))]))
"""


def sh(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(list(args), check=check, capture_output=True, text=True)


class World:
    """The node, its pods and their cluster state (see the module docstring)."""

    def __init__(self, tmp) -> None:
        from agent.vpp.process import VppProcess  # noqa: PLC0415
        tag = secrets.token_hex(3)
        self.node, self.out = f"pvn-{tag}", f"pvo-{tag}"
        self.netns = [self.node, self.out]
        self.procs: list[subprocess.Popen] = []
        self.api = self.netlink = None
        self._home = os.open("/proc/self/ns/net", os.O_RDONLY)
        self._entered = False
        self.vpp = VppProcess(tmp / "vpp", netns=self.node)
        try:
            self._up()
        except BaseException:
            self.close()  # nothing left behind, even half-built
            raise

    def _up(self) -> None:
        for ns in self.netns:
            sh("ip", "netns", "add", ns)
            sh("ip", "-n", ns, "link", "set", "lo", "up")
        sh("ip", "-n", self.node, "link", "add", "vpp0", "type", "veth", "peer", "name", "up0",
           "netns", self.out)
        sh("ip", "-n", self.node, "link", "set", "vpp0", "up")
        for a in (NODE_IP, OUTSIDER):
            sh("ip", "-n", self.out, "addr", "add", f"{a}/24", "dev", "up0")
        sh("ip", "-n", self.out, "link", "set", "up0", "up")
        sh("ip", "netns", "exec", self.out, "ethtool", "-K", "up0", "tx", "off")  # as the pods'
        sh("ip", "-n", self.out, "route", "add", "10.1.0.0/16", "via", "192.168.77.2")
        self.vpp.start(15)
        fd = os.open(f"/run/netns/{self.node}", os.O_RDONLY)
        try:
            setns(fd, self.node)
            self._entered = True
        finally:
            os.close(fd)
        self._build()

    def _build(self) -> None:
        from agent.linux.links import VethDescriptor  # noqa: PLC0415
        from agent.linux.netns import Netlink  # noqa: PLC0415
        from agent.linux.routes import PodRouteDescriptor  # noqa: PLC0415
        from agent.vpp import render  # noqa: PLC0415
        from agent.vpp.papi import VppApi  # noqa: PLC0415
        self.api = VppApi(str(self.vpp.api_socket), api_dir=self.vpp.install.api_dir).connect()
        self.netlink = Netlink()
        self.sched = Scheduler([VethDescriptor(self.netlink), PodRouteDescriptor(self.netlink),
                                *vpp_descriptors(self.api)])
        me = NodeInfo(name="node1", index=1, node_ip="192.168.77.2", pod_subnets=("10.1.1.0/24",),
                      gateways=("10.1.1.1",), vtep_mac="02:c0:00:00:00:01")
        t = node_transport(me, [me], vni=10, port=4789, mtu=1450, underlay_dev="vpp0")
        self.node_values = render.render_node(t, render.Uplink("vpp0", "192.168.77.2/24", NODE_IP))
        res = self.sched.apply(self.node_values)
        assert res.ok and not res.plan.pending, (res.errors, res.plan.pending)
        for ref, (ip, _) in PODS.items():
            path = f"/run/netns/{self.pod_ns(ref)}"
            sh("ip", "netns", "add", self.pod_ns(ref))
            self.netns.append(self.pod_ns(ref))
            sh("ip", "-n", self.pod_ns(ref), "link", "set", "lo", "up")
            att = PodAttachment(f"pv{ref.replace('/', '')}{secrets.token_hex(2)}", "eth0", path,
                                (f"{ip}/32",), ("10.1.1.1",), 1450, ref)
            res = self.sched.apply(render.render_pod(att))
            assert res.ok and not res.plan.pending, (res.errors, res.plan.pending)
            self.serve(self.pod_ns(ref))
        self.warm_up()
        self.snap = ClusterSnapshot()
        for ns, labels in (("x", {"team": "x"}), ("y", {"team": "y"})):
            self.snap.objects["namespace"][("", ns)] = {"metadata": {"name": ns, "labels": labels}}
        for ref, (ip, labels) in PODS.items():
            self.snap.objects["pod"][tuple(ref.split("/"))] = pod_object(ref, ip, labels)
        self.desired = DesiredState(self.sched)
        self.sync = PolicySync(self.snap, self.desired, "node1", P.AclPolicyRenderer(lambda: [NODE_IP]))
        res = self.desired.set_partitions(self.sync.partitions())
        assert res.ok, res.errors

    def warm_up(self) -> None:
        """Pods' TX checksum offload off (VPP's af_packet does not complete
        checksums; the Linux veth descriptor does not set it yet, and a resync
        that finds it on makes the veth again). And VPP learns the outside
        addresses by ARP, dropping the packet that asked: make it learn them
        now, not on a probe's first SYN-ACK."""
        for ref in PODS:
            sh("ip", "netns", "exec", self.pod_ns(ref), "ethtool", "-K", "eth0", "tx", "off")
        for src in (NODE_IP, OUTSIDER):
            sh("ip", "netns", "exec", self.out, "ping", "-c", "1", "-W", "2", "-I", src,
               PODS["x/a"][0], check=False)

    @staticmethod
    def pod_ns(ref: str) -> str:
        return "pvp-" + ref.replace("/", "-")

    def serve(self, ns: str) -> None:
        p = subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, "-c", SERVER,
                              ",".join(map(str, TCP_PORTS)), ",".join(map(str, UDP_PORTS))],
                             stdout=subprocess.PIPE, text=True)
        self.procs.append(p)
        assert p.stdout.readline().strip() == "ready"

    def close(self) -> None:
        try:
            for p in self.procs:
                p.kill()
                p.wait()
            if self.api is not None:
                self.api.close()
            if self.netlink is not None:
                self.netlink.close()
        finally:
            if self._entered:
                setns(self._home, "the test's own")
            os.close(self._home)
            self.vpp.close()
            for ns in self.netns:
                sh("ip", "netns", "del", ns, check=False)

    # ------------------------------------------------------------ cluster changes
    def policies(self, *objs: dict) -> None:
        """Make ``objs`` the cluster's NetworkPolicies (one flush)."""
        table = self.snap.objects["networkpolicy"]
        gone = set(table) - {(o["metadata"]["namespace"], o["metadata"]["name"]) for o in objs}
        for key in gone:
            del table[key]
            self.sync.on_change(Change("networkpolicy", *key, True))
        for o in objs:
            key = (o["metadata"]["namespace"], o["metadata"]["name"])
            table[key] = o
            self.sync.on_change(Change("networkpolicy", *key, False))
        self.flush()

    def relabel(self, ref: str, labels: dict) -> None:
        key = tuple(ref.split("/"))
        self.snap.objects["pod"][key] = pod_object(ref, PODS[ref][0], labels)
        self.sync.on_change(Change("pod", *key, False))
        self.flush()

    def flush(self) -> None:
        before = self.sched.failed_count()
        self.sync.flush()
        assert self.sched.failed_count() == before == 0, self.sched.state()

    # ------------------------------------------------------------ traffic
    def probe(self, conns: list[tuple[str, str, int, str]]) -> list[bool]:
        """(src pod ref or outside address, dst pod ref, port, protocol) -> connected?"""
        by_ns: dict[str, list[int]] = {}
        for i, (src, *_rest) in enumerate(conns):
            by_ns.setdefault(self.pod_ns(src) if src in PODS else self.out, []).append(i)

        def run(ns: str) -> list[bool]:
            args = [[None if conns[i][0] in PODS else conns[i][0], PODS[conns[i][1]][0],
                     conns[i][2], conns[i][3]] for i in by_ns[ns]]
            r = sh("ip", "netns", "exec", ns, sys.executable, "-c", PROBE, json.dumps(args))
            return json.loads(r.stdout)
        out: list = [None] * len(conns)
        with ThreadPoolExecutor(len(by_ns)) as ex:
            for ns, res in zip(by_ns, ex.map(run, by_ns)):
                for i, ok in zip(by_ns[ns], res):
                    out[i] = ok
        return out

    def check(self, expected: dict[tuple[str, str, int, str], bool], *, explain: bool = True) -> None:
        """Real connections give ``expected``; so does ``explain`` (except for
        the node's own address: node traffic is not a policy decision)."""
        conns = list(expected)
        got = dict(zip(conns, self.probe(conns)))
        assert got == expected, {c: g for c, g in got.items() if g != expected[c]}
        if not explain:
            return
        model = self.sync.model()
        for (src, dst, port, proto), want in expected.items():
            if src == NODE_IP:
                continue
            v = model.explain(src, dst, port, proto)
            assert v["allowed"] is want, (src, dst, port, proto, v["verdict"])


def vpp_descriptors(api) -> list:
    """The data plane's VPP descriptors, as the plane registers them."""
    from agent.vpp.descriptors import descriptors  # noqa: PLC0415
    return descriptors(api, ("10.1.0.0/16", "10.96.0.0/12"))


def policy_drift(world: World) -> list:
    """What a resync would do to the policies' values: their descriptors
    retrieve, compared with their desired values (a scoped dry run: the
    other descriptors' state is theirs to test)."""
    mine = ("vpp/acl/", "vpp/acllist/")
    ops = world.sched.dry_run(resync=True, keys=world.sched.desired("vpp/acl")).operations
    # (a scoped plan also lists what they depend on: not ours to judge)
    return [(o.kind.value, o.key, o.reason) for o in ops if o.key.startswith(mine)]


def pod_object(ref: str, ip: str, labels: dict) -> dict:
    ns, name = ref.split("/")
    ports = [{"name": "http", "protocol": "TCP", "containerPort": 8080},
             {"name": "dns", "protocol": "UDP", "containerPort": 5353}]
    return {"metadata": {"namespace": ns, "name": name, "labels": labels},
            "spec": {"nodeName": "node1", "containers": [{"name": "c", "ports": ports}]},
            "status": {"podIP": ip}}


def policy(ref: str, spec: dict) -> dict:
    ns, name = ref.split("/")
    return {"metadata": {"namespace": ns, "name": name}, "spec": spec}


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    w = World(tmp_path_factory.mktemp("vpp-policies"))
    try:
        yield w
    finally:
        w.close()


DENY_ALL_X = policy("x/deny-all", {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]})
# a: from app=client pods of any namespace on the port named http (8080),
# from namespace y on 9000-9002, UDP from anything in y on the port named dns (5353)
WEB = policy("x/web", {"podSelector": {"matchLabels": {"app": "web"}}, "ingress": [
    {"from": [{"namespaceSelector": {}, "podSelector": {"matchLabels": {"app": "client"}}}],
     "ports": [{"port": "http"}]},
    {"from": [{"namespaceSelector": {"matchLabels": {"team": "y"}}}],
     "ports": [{"port": 9000, "endPort": 9002}]},
    {"from": [{"namespaceSelector": {"matchLabels": {"team": "y"}}}],
     "ports": [{"port": "dns", "protocol": "UDP"}]}]})
# b may only reach pods named http, and DNS anywhere
CLIENT_OUT = policy("x/client-out", {"podSelector": {"matchLabels": {"app": "client"}},
                                     "policyTypes": ["Egress"], "egress": [
    {"to": [{"namespaceSelector": {}, "podSelector": {"matchLabels": {"app": "web"}}}],
     "ports": [{"port": "http"}]},
    {"ports": [{"port": 53, "protocol": "UDP"}]}]})


def test_no_policy_everything_connects(world):
    world.policies()
    world.check({("x/b", "x/a", 8080, "TCP"): True, ("y/c", "x/a", 80, "TCP"): True,
                 ("x/a", "y/c", 53, "UDP"): True, (OUTSIDER, "x/b", 80, "TCP"): True})


def test_default_deny_both_ways_but_the_node_reaches_its_pods(world):
    world.policies(DENY_ALL_X)
    world.check({("x/b", "x/a", 8080, "TCP"): False, ("y/c", "x/a", 8080, "TCP"): False,
                 ("x/a", "y/c", 80, "TCP"): False, ("x/a", "y/c", 53, "UDP"): False,
                 (OUTSIDER, "x/a", 80, "TCP"): False, ("y/c", "y/c", 80, "TCP"): True,
                 (NODE_IP, "x/a", 8080, "TCP"): True, (NODE_IP, "x/b", 53, "UDP"): True})


def test_allow_from_pod_and_namespace_named_ports_ranges_and_replies(world):
    world.policies(WEB, CLIENT_OUT)
    world.check({
        ("x/b", "x/a", 8080, "TCP"): True,     # pod peer, named port http
        ("x/b", "x/a", 80, "TCP"): False,
        ("y/c", "x/a", 8080, "TCP"): False,    # y/c is not app=client
        ("y/c", "x/a", 9000, "TCP"): True,     # namespace peer, range 9000-9002
        ("y/c", "x/a", 9002, "TCP"): True,
        ("y/c", "x/a", 9003, "TCP"): False,    # just past the range
        ("y/c", "x/a", 5353, "UDP"): True,     # UDP by name
        ("y/c", "x/a", 53, "UDP"): False,
        ("x/b", "x/a", 9001, "TCP"): False,    # a admits it, b's egress does not
        ("x/b", "y/c", 53, "UDP"): True,       # b's egress: DNS anywhere, c open
        ("x/b", "y/c", 8080, "TCP"): False,    # c is not web
        ("x/a", "y/c", 80, "TCP"): True,       # a isolated for ingress: its own connections' replies pass
        ("x/a", "x/b", 80, "TCP"): True,       # b isolated for egress: replies of what it accepts pass
        (OUTSIDER, "x/a", 8080, "TCP"): False,
    })


def test_ipblock_with_except(world):
    world.policies(policy("x/blocks", {"podSelector": {"matchLabels": {"app": "web"}}, "ingress": [
        {"from": [{"ipBlock": {"cidr": "192.168.77.0/24", "except": [f"{OUTSIDER}/32"]}},
                  {"ipBlock": {"cidr": "10.1.1.0/24", "except": ["10.1.1.3/32"]}}]}]}))
    world.check({("y/c", "x/a", 80, "TCP"): True, ("x/b", "x/a", 80, "TCP"): False,
                 (OUTSIDER, "x/a", 80, "TCP"): False, ("y/c", "x/a", 5353, "UDP"): True})


def test_a_label_change_takes_effect_as_one_acl_replaced_in_place(world):
    world.policies(WEB, CLIENT_OUT)
    world.check({("y/c", "x/a", 8080, "TCP"): False})
    seq = world.sched.history.list()[-1].seq
    world.relabel("y/c", {"app": "client"})  # c enters web's peer; no policy selects it
    ops = [o for r in world.sched.history.list(since=seq) for o in r.operations]
    assert ops and all(o.op == "update" and o.key.startswith("vpp/acl/pol-s") for o in ops), ops
    world.check({("y/c", "x/a", 8080, "TCP"): True, ("y/c", "x/a", 80, "TCP"): False})
    world.relabel("x/b", {"app": "other"})  # b leaves web's peer and client-out's selection
    world.check({("x/b", "x/a", 8080, "TCP"): False, ("x/b", "y/c", 8080, "TCP"): True})
    world.relabel("x/b", {"app": "client"})
    world.relabel("y/c", {"app": "other"})
    world.check({("x/b", "x/a", 8080, "TCP"): True, ("x/b", "y/c", 8080, "TCP"): False,
                 ("y/c", "x/a", 8080, "TCP"): False})


def test_an_admitted_connection_survives_a_change_of_the_pods_acl_list(world):
    """VPP drops an interface's sessions when its set of ACLs changes; the
    next packet of an admitted connection makes a new one (docs/vpp-policies.md)."""
    admit_y = policy("x/admit-y", {"podSelector": {"matchLabels": {"app": "web"}}, "ingress": [
        {"from": [{"namespaceSelector": {"matchLabels": {"team": "y"}}}]}]})
    no_egress = policy("x/no-egress", {"podSelector": {"matchLabels": {"app": "web"}},
                                       "policyTypes": ["Egress"]})
    world.policies(admit_y)
    traffic = [sys.executable, os.path.join(REPO, "bench", "traffic.py")]
    server = subprocess.Popen(["ip", "netns", "exec", world.pod_ns("x/a"), *traffic, "serve"],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout.readline().strip() == "ready"
        client = subprocess.Popen(["ip", "netns", "exec", world.pod_ns("y/c"), *traffic, "bulk",
                                   PODS["x/a"][0], "3"], stdout=subprocess.PIPE, text=True)
        time.sleep(1)
        world.policies(admit_y, no_egress)  # a's list changes on both sides, mid-stream
        out, _ = client.communicate(timeout=60)
        assert json.loads(out)["complete"], out
    finally:
        server.kill()
        server.wait()


def test_a_resync_finds_no_drift(world):
    world.policies(WEB, CLIENT_OUT, DENY_ALL_X)
    assert policy_drift(world) == []
    # another agent process, wanting nothing, finds all of ours by their tags
    # (with the interfaces: lists are found on them)
    from agent.vpp.base import Interfaces  # noqa: PLC0415
    from agent.vpp.ifdesc import InterfaceDescriptor  # noqa: PLC0415
    ifs = Interfaces()
    fresh = Scheduler([InterfaceDescriptor(world.api, ifs), *P.descriptors(world.api, ifs)])
    gone = {o.key for o in fresh.dry_run(resync=True).operations if o.kind.value == "delete"}
    ours = set(world.sched.actual("vpp/acl"))
    assert ours and ours <= gone, ours - gone


def test_a_vpp_restart_and_resync_restore_enforcement(world):
    world.policies(WEB, CLIENT_OUT)
    world.vpp.restart()
    world.api.reconnect(wait=10)
    res = world.sched.resync()
    assert res.ok, res.errors
    assert policy_drift(world) == []
    time.sleep(0.5)  # af_packet interfaces just came up again
    world.warm_up()
    world.check({("x/b", "x/a", 8080, "TCP"): True, ("y/c", "x/a", 8080, "TCP"): False,
                 ("y/c", "x/a", 9001, "TCP"): True, ("x/b", "y/c", 8080, "TCP"): False,
                 ("x/a", "y/c", 80, "TCP"): True})
