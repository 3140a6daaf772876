"""Services on a real VPP (cnat): real TCP/UDP connections from pods and
from an external client, two VPP nodes joined by VXLAN (root; skipped with
how to get a VPP where there is none).

The topology, in network namespaces: an underlay bridge (192.168.77.1, which
is also the external client), two nodes each running its own VPP (uplink
192.168.77.10<k>, pods 10.1.<k>.2 and 10.1.<k>.3 on veth + af_packet), built
the way the agent builds it -- ``agent.vpp.render`` values, this module's
``node_values``/``pod_values``, Services through ``ServiceSync`` and
``CnatServiceRenderer``, all applied by a ``Scheduler`` over the VPP
descriptors. Each pod runs a tiny server that answers its own name and the
address it sees the client come from.
"""
from __future__ import annotations

import os
import secrets
import subprocess
import sys
import time

import pytest

from agent.vpp.process import availability

HAVE_VPP, WHY = availability()
pytestmark = [pytest.mark.root, pytest.mark.vpp,
              pytest.mark.skipif(not HAVE_VPP, reason=f"needs a VPP: {WHY}")]

SERVICE_CIDR, POD_CIDR = "10.96.0.0/12", "10.1.0.0/16"
CLIENT = "192.168.77.1"
SERVER = r'''
import socket, sys, threading
name = sys.argv[1]
def udp():
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.bind(("0.0.0.0", 8080))
    while True:
        d, a = u.recvfrom(2048); u.sendto(f"{name} {a[0]}".encode(), a)
threading.Thread(target=udp, daemon=True).start()
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", 8080)); s.listen(64)
while True:
    c, a = s.accept(); c.sendall(f"{name} {a[0]}".encode()); c.close()
'''
CLIENT_SCRIPT = r'''
import errno, socket, sys
host, port, n, proto = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
for _ in range(n):
    try:
        if proto == "tcp":
            s = socket.create_connection((host, port), timeout=1.5)
        else:
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(1.5)
            s.connect((host, port)); s.send(b"x")
        print(s.recv(200).decode().strip()); s.close()
    except socket.timeout:
        print("timeout")
    except OSError as e:
        print(errno.errorcode.get(e.errno, str(e.errno)))
'''


def sh(*argv: str, check: bool = True) -> str:
    return subprocess.run(argv, check=check, capture_output=True, text=True).stdout


def vpp_descriptors(api, owned):
    """The data plane's VPP descriptors, as the plane registers them."""
    from agent.vpp.descriptors import descriptors  # noqa: PLC0415
    return descriptors(api, owned)


def svc(name, spec, endpoints=(), status=None):
    """A Service and its EndpointSlice: ``endpoints`` are (pod, node, ip)."""
    service = {"metadata": {"name": name, "namespace": "default"}, "spec": spec,
               "status": status or {}}
    sl = {"metadata": {"name": name + "-1", "namespace": "default",
                       "labels": {"kubernetes.io/service-name": name}},
          "addressType": "IPv4",
          "ports": [{"name": p.get("name", ""), "port": 8080, "protocol": p.get("protocol", "TCP")}
                    for p in spec["ports"]],
          "endpoints": [{"addresses": [ip], "nodeName": node,
                         "targetRef": {"kind": "Pod", "namespace": "default", "name": pod}}
                        for pod, node, ip in endpoints]}
    return service, sl


P1A, P1B = ("p1a", "node1", "10.1.1.2"), ("p1b", "node1", "10.1.1.3")
P2A, P2B = ("p2a", "node2", "10.1.2.2"), ("p2b", "node2", "10.1.2.3")
TCP_UDP = [{"name": "t", "port": 80, "protocol": "TCP", "nodePort": 30080},
           {"name": "u", "port": 80, "protocol": "UDP", "nodePort": 30080}]
SERVICES = [
    svc("web", {"type": "NodePort", "clusterIP": "10.96.0.10", "ports": TCP_UDP}, (P1A, P2A)),
    svc("remote", {"type": "NodePort", "clusterIP": "10.96.0.11",
                   "ports": [{"port": 80, "nodePort": 30090}]}, (P2A,)),
    svc("etp-local", {"type": "NodePort", "clusterIP": "10.96.0.12", "externalTrafficPolicy": "Local",
                      "ports": [{"port": 80, "nodePort": 30091}]}, (P1A, P2A)),
    svc("etp-none", {"type": "NodePort", "clusterIP": "10.96.0.13", "externalTrafficPolicy": "Local",
                     "ports": [{"port": 80, "nodePort": 30092}]}, (P2A,)),
    svc("empty", {"type": "NodePort", "clusterIP": "10.96.0.14",
                  "ports": [{"port": 80, "nodePort": 30093}]}, ()),
    svc("sticky", {"clusterIP": "10.96.0.15", "sessionAffinity": "ClientIP",
                   "ports": [{"port": 80}]}, (P1A, P1B, P2A, P2B)),
    svc("itp-local", {"clusterIP": "10.96.0.16", "internalTrafficPolicy": "Local",
                      "ports": [{"port": 80}]}, (P1A, P2A)),
]


class Node:
    """One VPP node: its namespace, VPP, scheduler and Service sync."""

    def __init__(self, k: int, tag: str, tmp, peers) -> None:
        self.k, self.ns, self.ip = k, f"svc{tag}-n{k}", f"192.168.77.{100 + k}"
        self.vpp = self.api = self.nl = None
        self.pods: list[str] = []
        self.procs: list[subprocess.Popen] = []
        try:
            self._build(tag, tmp, peers)
        except BaseException:
            self.close()  # leak-proof: no VPP or namespace stays behind
            raise

    def _build(self, tag: str, tmp, peers) -> None:
        from agent.builders.nodes import NodeTransport, Peer, vtep_mac  # noqa: PLC0415
        from agent.cluster import ClusterSnapshot  # noqa: PLC0415
        from agent.desired import DesiredState  # noqa: PLC0415
        from agent.linux.links import VethDescriptor  # noqa: PLC0415
        from agent.linux.netns import Netlink  # noqa: PLC0415
        from agent.linux.routes import PodRouteDescriptor  # noqa: PLC0415
        from agent.model.records import NodeInfo  # noqa: PLC0415
        from agent.nsenter import setns  # noqa: PLC0415
        from agent.reconciler import Scheduler  # noqa: PLC0415
        from agent.services import ServiceSync  # noqa: PLC0415
        from agent.vpp import render, services  # noqa: PLC0415
        from agent.vpp.papi import VppApi  # noqa: PLC0415
        from agent.vpp.process import VppProcess  # noqa: PLC0415
        k = self.k
        sh("ip", "netns", "add", self.ns)
        sh("ip", "-n", self.ns, "link", "set", "lo", "up")
        sh("ip", "-n", f"svc{tag}-u", "link", "add", f"u{tag}{k}", "type", "veth", "peer", "name",
           "vpp0", "netns", self.ns)
        sh("ip", "-n", f"svc{tag}-u", "link", "set", f"u{tag}{k}", "master", "br0", "up")
        sh("ip", "netns", "exec", f"svc{tag}-u", "ethtool", "-K", f"u{tag}{k}", "tx", "off")
        sh("ip", "-n", self.ns, "link", "set", "vpp0", "up")
        self.vpp = VppProcess(tmp / f"vpp{k}", netns=self.ns).start(15)
        self.api = VppApi(str(self.vpp.api_socket), timeout=10).connect()
        home = os.open("/proc/self/ns/net", os.O_RDONLY)
        fd = os.open(f"/run/netns/{self.ns}", os.O_RDONLY)
        try:  # the node's netlink sockets are made in its namespace, then we go home
            setns(fd, self.ns)
            self.nl = Netlink()
        finally:
            setns(home, "home")
            os.close(fd)
            os.close(home)
        self.sched = Scheduler([VethDescriptor(self.nl), PodRouteDescriptor(self.nl),
                                *vpp_descriptors(self.api, (POD_CIDR, SERVICE_CIDR))])
        me = NodeInfo(f"node{k}", k, self.ip, (f"10.1.{k}.0/24",), (f"10.1.{k}.1",), vtep_mac(k), "vpp")
        transport = NodeTransport(me, tuple(Peer(f"node{o}", f"192.168.77.{100 + o}", vtep_mac(o),
                                                 (f"10.1.{o}.0/24",), (f"10.1.{o}.1",)) for o in peers),
                                  10, 4789, 1450, "vpp0")
        self.node_values = {**render.render_node(transport, render.Uplink("vpp0", f"{self.ip}/24")),
                            **services.node_values(render.BVI, SERVICE_CIDR)}
        self.values = dict(self.node_values)
        self.snapshot = ClusterSnapshot()
        self.desired = DesiredState(self.sched)
        self.sync = ServiceSync(self.snapshot, self.desired, f"node{k}",
                                services.CnatServiceRenderer(
                                    lambda: [self.ip], SERVICE_CIDR,
                                    [f"192.168.77.{100 + o}" for o in peers]))

    def add_pod(self, name: str, ip: str, script: str) -> None:
        from agent.builders.pods import PodAttachment  # noqa: PLC0415
        from agent.vpp import render, services  # noqa: PLC0415
        from agent.vpp.values import pod_ifname  # noqa: PLC0415
        ns = f"{self.ns}-{name}"
        sh("ip", "netns", "add", ns)
        sh("ip", "-n", ns, "link", "set", "lo", "up")
        self.pods.append(ns)
        att = PodAttachment("c" + name * 8, "eth0", f"/run/netns/{ns}", (f"{ip}/32",),
                            (f"10.1.{self.k}.1",), 1450, f"default/{name}")
        self.values.update(render.render_pod(att))
        self.values.update(services.pod_values(pod_ifname(ip)))
        self.snapshot.objects["pod"][("default", name)] = {
            "metadata": {"name": name, "namespace": "default"},
            "spec": {"nodeName": f"node{self.k}"}, "status": {"podIP": ip}}
        self.procs.append(subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, script, name],
                                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))

    def close(self) -> None:
        for p in self.procs:
            p.kill()
            p.wait()
        for obj in (self.api, self.nl, self.vpp):
            try:
                if obj is not None:
                    obj.close()
            except Exception:  # noqa: BLE001 -- tear down the rest regardless
                pass
        for ns in [*self.pods, self.ns]:
            sh("ip", "netns", "del", ns, check=False)


class Cluster:
    def __init__(self, tmp) -> None:
        self.tag = secrets.token_hex(2)
        self.under = f"svc{self.tag}-u"
        self.nodes: list[Node] = []
        try:
            self._build(tmp)
        except BaseException:
            self.close()  # leak-proof: what was made so far goes
            raise

    def _build(self, tmp) -> None:
        (tmp / "srv.py").write_text(SERVER)
        self.client = tmp / "cli.py"
        self.client.write_text(CLIENT_SCRIPT)
        sh("ip", "netns", "add", self.under)
        sh("ip", "-n", self.under, "link", "add", "br0", "type", "bridge")
        sh("ip", "-n", self.under, "addr", "add", f"{CLIENT}/24", "dev", "br0")
        sh("ip", "-n", self.under, "link", "set", "br0", "up")
        # the external client's packets carry full checksums, as from a real NIC
        sh("ip", "netns", "exec", self.under, "ethtool", "-K", "br0", "tx", "off")
        for k in (1, 2):
            self.nodes.append(Node(k, self.tag, tmp, [3 - k]))
        for n in self.nodes:
            for j, letter in ((2, "a"), (3, "b")):
                n.add_pod(f"p{n.k}{letter}", f"10.1.{n.k}.{j}", str(tmp / "srv.py"))
            res = n.sched.apply(n.values, description="node and pods")
            assert res.ok and not res.plan.pending, (res.errors, res.plan.pending)
            for ns in n.pods:  # until the veth descriptor does it (render asks for it)
                sh("ip", "netns", "exec", ns, "ethtool", "-K", "eth0", "tx", "off")
        for n in self.nodes:
            for service, sl in SERVICES:
                n.snapshot.objects["service"][("default", service["metadata"]["name"])] = service
                n.snapshot.objects["endpointslice"][("default", sl["metadata"]["name"])] = sl
            for o in self.nodes:  # every pod is known to every node
                n.snapshot.objects["pod"].update(o.snapshot.objects["pod"])
            res = n.desired.set_partitions(n.sync.partitions(), description="services")
            assert res.ok and not res.plan.pending, (res.errors, res.plan.pending)
        time.sleep(0.5)  # servers listening

    def run(self, where: str, host: str, port: int, n: int = 1, proto: str = "tcp") -> list[str]:
        ns = self.under if where == "ext" else f"svc{self.tag}-n{where[1]}-{where}"
        out = sh("ip", "netns", "exec", ns, sys.executable, str(self.client), host, str(port),
                 str(n), proto)
        return out.split("\n")[:-1]

    def close(self) -> None:
        for n in self.nodes:
            n.close()
        sh("ip", "netns", "del", self.under, check=False)


@pytest.fixture(scope="module")
def c(tmp_path_factory):
    cluster = Cluster(tmp_path_factory.mktemp("svc"))  # cleans up itself if it fails
    try:
        yield cluster
    finally:
        cluster.close()


def seen(lines: list[str]) -> set[str]:
    return set(lines)


# --------------------------------------------------------------------------- cluster IP
@pytest.mark.parametrize("proto", ["tcp", "udp"])
def test_cluster_ip_reaches_local_and_remote_endpoints_with_the_client_address(c, proto):
    assert seen(c.run("p1b", "10.96.0.10", 80, 16, proto)) == {"p1a 10.1.1.3", "p2a 10.1.1.3"}


def test_internal_traffic_policy_local_uses_this_nodes_endpoints(c):
    assert seen(c.run("p1b", "10.96.0.16", 80, 8)) == {"p1a 10.1.1.3"}
    assert seen(c.run("p2b", "10.96.0.16", 80, 8)) == {"p2a 10.1.2.3"}


def test_hairpin_is_snated_to_the_gateway_and_nothing_else_is(c):
    assert seen(c.run("p1a", "10.96.0.10", 80, 16)) == {"p1a 10.1.1.1", "p2a 10.1.1.2"}


def test_session_affinity_keeps_each_client_on_one_endpoint(c):
    for pod in ("p1b", "p2b", "p1a"):
        assert len(seen(c.run(pod, "10.96.0.15", 80, 8))) == 1, pod


# --------------------------------------------------------------------------- node ports
@pytest.mark.parametrize("proto", ["tcp", "udp"])
def test_node_port_snats_only_traffic_to_remote_endpoints(c, proto):
    assert seen(c.run("ext", "192.168.77.101", 30080, 16, proto)) == \
        {f"p1a {CLIENT}", "p2a 10.1.1.1"}
    if proto == "tcp":  # the Service "remote" has a TCP port only
        assert seen(c.run("ext", "192.168.77.101", 30090, 4, proto)) == {"p2a 10.1.1.1"}
    else:  # so UDP finds no translation: the node's own "port unreachable"
        assert c.run("ext", "192.168.77.101", 30090, 1, proto) == ["ECONNREFUSED"]


def test_node_port_from_a_pod_of_this_node(c):
    assert seen(c.run("p1b", "192.168.77.101", 30080, 16)) == {"p1a 10.1.1.3", "p2a 10.1.1.3"}


def test_external_traffic_policy_local_keeps_the_client_and_drops_without_local_endpoint(c):
    assert seen(c.run("ext", "192.168.77.101", 30091, 8)) == {f"p1a {CLIENT}"}
    assert seen(c.run("ext", "192.168.77.102", 30091, 8)) == {f"p2a {CLIENT}"}
    assert seen(c.run("ext", "192.168.77.102", 30092, 2)) == {f"p2a {CLIENT}"}
    assert c.run("ext", "192.168.77.101", 30092, 1) == ["timeout"]  # dropped, not rejected


def test_node_port_from_a_pod_of_another_node_is_balanced_at_the_pods_node(c):
    """Pods reach other nodes' node ports through a translation of their own
    node (as a cluster IP): all endpoints, the pod's address kept."""
    assert seen(c.run("p2b", "192.168.77.101", 30080, 16)) == {"p1a 10.1.2.3", "p2a 10.1.2.3"}
    assert seen(c.run("p2b", "192.168.77.101", 30090, 4)) == {"p2a 10.1.2.3"}


# --------------------------------------------------------------------------- rejection
def test_a_port_without_endpoints_is_rejected_at_once(c):
    t = time.monotonic()
    assert c.run("p1b", "10.96.0.14", 80) == ["EHOSTUNREACH"]  # ICMP host unreachable
    assert c.run("p1b", "10.96.0.99", 80) == ["EHOSTUNREACH"]  # no such Service either
    time.sleep(1.1)  # VPP rate-limits ICMP errors
    assert c.run("ext", "192.168.77.101", 30093) == ["EHOSTUNREACH"]
    assert time.monotonic() - t < 2.5


# --------------------------------------------------------------------------- state
def test_sessions_show_the_translations(c):
    from agent.vpp.services import sessions  # noqa: PLC0415
    c.run("p1b", "10.96.0.11", 80)
    got = sessions(c.nodes[0].api)
    mine = [s for s in got if s.src == "10.1.1.3" and s.dst == "10.96.0.11"]
    assert mine and all(s.dport == 80 and s.translated for s in mine), got
    assert {(s.reply_src, s.reply_sport) for s in mine} == {("10.1.2.2", 8080)}


def vpp_drift(n: Node) -> list[str]:
    """What VPP holds that differs from the node's desired VPP values, as the
    descriptors retrieve it. (The pods' Linux veths are left out: their TX
    checksum setting is not applied by the veth descriptor yet, so a resync
    reports them, whatever VPP holds.)"""
    out, desired = [], n.sched.desired()
    for d in n.sched.descriptors:
        if not d.key_prefix.startswith("vpp/"):
            continue
        want = {k: v for k, v in desired.items() if k.startswith(d.key_prefix)}
        have = {r.key: r.value for r in d.retrieve(want, None)}
        out += [f"missing {k}" for k in want if k not in have]
        out += [f"not desired {k}" for k in have if k not in want]
        out += [f"differs {k}: {have[k]}" for k in want if k in have and not d.equivalent(k, want[k], have[k])]
    return out


def test_resync_finds_no_drift(c):
    for n in c.nodes:
        assert vpp_drift(n) == []


def test_an_endpoint_change_is_one_message_per_frontend(c):
    n = c.nodes[0]
    from agent.cluster import Change  # noqa: PLC0415
    service, sl = svc("remote", SERVICES[1][0]["spec"], (P2B,))
    n.snapshot.objects["endpointslice"][("default", "remote-1")] = sl
    n.sync.on_change(Change("endpointslice", "default", "remote-1", False))
    n.sync.flush()
    txn = n.sched.history.list(1)[0]
    # the cluster IP, this node's node port, the peer's node port for pods here
    assert sorted(o.key for o in txn.operations) == ["vpp/cnat/tcp/10.96.0.11/80",
                                                     "vpp/cnat/tcp/192.168.77.101/30090",
                                                     "vpp/cnat/tcp/192.168.77.102/30090"]
    assert {o.op for o in txn.operations} == {"update"}
    assert seen(c.run("ext", "192.168.77.101", 30090, 4)) == {"p2b 10.1.1.1"}


def test_vpp_restart_and_resync_restore_services(c):
    n = c.nodes[0]
    n.vpp.restart(15)
    n.api.reconnect(wait=5)
    res = n.sched.resync()
    assert res.ok, res.errors
    for ns in n.pods:  # the af_packet interfaces are new; the veths were kept
        sh("ip", "netns", "exec", ns, "ethtool", "-K", "eth0", "tx", "off")
    time.sleep(0.5)
    assert seen(c.run("p1b", "10.96.0.10", 80, 16)) == {"p1a 10.1.1.3", "p2a 10.1.1.3"}
    assert seen(c.run("ext", "192.168.77.101", 30080, 16)) == {f"p1a {CLIENT}", "p2a 10.1.1.1"}
    assert vpp_drift(n) == []
