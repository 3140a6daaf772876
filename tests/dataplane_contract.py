"""The data-plane contract (agent/dataplane.py), run against every data plane.

Not collected by itself: each data plane's test module subclasses
:class:`DataplaneContract` and provides a ``h`` fixture -- a harness with:

* ``plane`` -- the data plane, opened (``plane.open(cfg)`` done);
* ``node`` -- this node's :class:`NodeInfo` (subnet 10.1.1.0/24, gateway .1);
* ``new_netns(name)`` -- a fresh pod network namespace (path), removed after;
* ``foreign()`` -- make an object of the data plane's kind that this project
  did not create; returns a function telling whether it still exists;
* ``sabotage(key, value)`` -- remove what the value ``key`` made, behind the
  agent's back (drift).

A new data plane is done when it passes these cases.
"""
from __future__ import annotations

import json
import re

from agent.builders.nodes import node_transport
from agent.builders.pods import PodAttachment
from agent.cluster import ClusterSnapshot
from agent.dataplane import NodeFacts, PodInterface
from agent.desired import DesiredState
from agent.errors import NotSupported
from agent.model import keys
from agent.model.diag import InterfaceCounters, Session, SocketInfo
from agent.model.records import NodeInfo
from agent.policies import PolicySync
from agent.reconciler import Scheduler
from agent.services import ServiceSync
from agent.store.base import Event

NODE = NodeInfo(name="node1", index=1, node_ip="", pod_subnets=("10.1.1.0/24",),
                gateways=("10.1.1.1",), vtep_mac="02:c0:00:00:00:01")
PEER = NodeInfo(name="node2", index=2, node_ip="192.0.2.2", pod_subnets=("10.1.2.0/24",),
                gateways=("10.1.2.1",), vtep_mac="02:c0:00:00:00:02")
MAC = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")


def transport(h, peers=(PEER,)):
    me = NodeInfo(**{**NODE.to_dict(), "node_ip": h.facts.node_ip, "node_ips": h.facts.node_ips})
    return node_transport(me, [me, *peers], vni=10, port=4789, mtu=h.facts.mtu,
                          underlay_dev=h.facts.underlay)


def pod(h, name="a", ip="10.1.1.2"):
    netns = h.new_netns(name)
    return PodAttachment(f"cid{name}", "eth0", netns, (f"{ip}/32",), NODE.gateways, h.facts.mtu,
                         f"x/{name}")


def snapshot(*objs) -> ClusterSnapshot:
    snap = ClusterSnapshot()
    for rev, (kind, obj) in enumerate(objs, 1):
        md = obj["metadata"]
        snap.apply(Event(keys.k8s_key(kind, md.get("namespace", ""), md["name"]),
                         json.dumps(obj).encode(), rev))
    return snap


def k8s_pod(name, ip, labels, node="node1"):
    return ("pod", {"metadata": {"namespace": "x", "name": name, "labels": labels},
                    "spec": {"nodeName": node, "containers": [{"name": "c", "ports": [
                        {"name": "http", "containerPort": 8080}]}]},
                    "status": {"podIP": ip}})


CLUSTER = (
    ("namespace", {"metadata": {"name": "x", "labels": {"team": "x"}}}),
    k8s_pod("a", "10.1.1.2", {"app": "web"}),
    k8s_pod("b", "10.1.2.2", {"app": "client"}, node="node2"),
    ("service", {"metadata": {"namespace": "x", "name": "web"},
                 "spec": {"type": "NodePort", "clusterIP": "10.96.0.10",
                          "ports": [{"name": "http", "port": 80, "targetPort": 8080,
                                     "protocol": "TCP", "nodePort": 30080}]}}),
    ("endpointslice", {"metadata": {"namespace": "x", "name": "web-1",
                                    "labels": {"kubernetes.io/service-name": "web"}},
                       "addressType": "IPv4",
                       "endpoints": [{"addresses": ["10.1.1.2"], "nodeName": "node1",
                                      "targetRef": {"kind": "Pod", "namespace": "x", "name": "a"}}],
                       "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}]}),
    ("service", {"metadata": {"namespace": "x", "name": "empty"},
                 "spec": {"clusterIP": "10.96.0.11", "ports": [{"port": 81, "protocol": "UDP"}]}}),
    ("networkpolicy", {"metadata": {"namespace": "x", "name": "web-from-client"},
                       "spec": {"podSelector": {"matchLabels": {"app": "web"}},
                                "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "client"}}}],
                                             "ports": [{"port": "http"}]},
                                            {"from": [{"ipBlock": {"cidr": "10.0.0.0/8",
                                                                   "except": ["10.2.0.0/16"]}}]}],
                                "egress": [{"to": [{"namespaceSelector": {}}],
                                            "ports": [{"port": 53, "protocol": "UDP"},
                                                      {"port": 1000, "endPort": 2000}]}]}}),
)


class DataplaneContract:
    """The cases every data plane passes (see the module docstring)."""

    # ------------------------------------------------------------ opening
    def test_open_reports_the_node(self, h):
        f = h.facts
        assert isinstance(f, NodeFacts)
        assert f.underlay and f.node_ip in f.node_ips
        assert 576 <= f.mtu <= 9000
        assert h.plane.ready() == ""

    def test_descriptors_own_distinct_well_formed_prefixes(self, h):
        prefixes = [d.key_prefix for d in h.plane.descriptors()]
        assert prefixes and len(set(prefixes)) == len(prefixes)
        assert all(re.fullmatch(r"[a-z0-9-]+/[a-z0-9-]+/", p) for p in prefixes), prefixes
        names = [d.name for d in h.plane.descriptors()]
        assert len(set(names)) == len(names)

    # ------------------------------------------------------------ node
    def test_node_values_apply_and_a_resync_finds_them_in_place(self, h):
        s = Scheduler(h.plane.descriptors())
        values = h.plane.render_node(transport(h))
        assert values == h.plane.render_node(transport(h)), "rendering must be pure"
        res = s.apply(values, description="node")
        assert res.ok, res.errors
        assert s.dry_run(resync=True).operations == []

    def test_a_peer_leaving_removes_what_it_needed(self, h):
        s = Scheduler(h.plane.descriptors())
        with_peer = h.plane.render_node(transport(h))
        alone = h.plane.render_node(transport(h, peers=()))
        assert set(alone) < set(with_peer), "a peer adds values of its own"
        assert s.apply(with_peer).ok
        res = s.replace(alone)
        assert res.ok, res.errors
        assert s.dry_run(resync=True).operations == []

    # ------------------------------------------------------------ pods
    def test_a_pod_gets_interfaces_for_its_cni_result(self, h):
        s = Scheduler(h.plane.descriptors())
        assert s.apply(h.plane.render_node(transport(h))).ok
        p = pod(h)
        values = h.plane.render_pod(p)
        assert values == h.plane.render_pod(p), "rendering must be pure"
        res = s.apply(values, description="pod")
        assert res.ok, res.errors
        ifs = h.plane.pod_interfaces(p, s.metadata)
        assert ifs and all(isinstance(i, PodInterface) for i in ifs)
        assert ifs[-1].name == "eth0" and ifs[-1].sandbox == p.netns, "the pod's own interface is last"
        for i in ifs:
            assert 0 < len(i.name.encode()) <= 15 and MAC.match(i.mac), i
        host_if = h.plane.pod_host_if(p.container_id, p.ifname)
        assert host_if == h.plane.pod_host_if(p.container_id, p.ifname) and len(host_if) <= 15
        assert s.dry_run(resync=True).operations == []

    def test_a_removed_pod_leaves_nothing_behind(self, h):
        s = Scheduler(h.plane.descriptors())
        assert s.apply(h.plane.render_node(transport(h))).ok
        values = h.plane.render_pod(pod(h))
        assert s.apply(values).ok
        res = s.apply({k: None for k in values})
        assert res.ok, res.errors
        plan = s.dry_run(resync=True)
        assert plan.operations == [], "retrieve still finds parts of the removed pod"
        assert not set(values) & set(s.actual())

    def test_drift_is_found_and_repaired(self, h):
        s = Scheduler(h.plane.descriptors())
        assert s.apply(h.plane.render_node(transport(h))).ok
        values = h.plane.render_pod(pod(h))
        assert s.apply(values).ok
        key = sorted(values)[0]
        h.sabotage(key, values[key])
        plan = s.dry_run(resync=True)
        assert any(o.key == key and "drift" in o.reason for o in plan.operations), plan.to_dict()
        res = s.resync()
        assert res.ok, res.errors
        assert s.dry_run(resync=True).operations == []

    def test_a_pod_check_reads_only_that_pod(self, h):
        s = Scheduler(h.plane.descriptors())
        assert s.apply(h.plane.render_node(transport(h))).ok
        a, b = h.plane.render_pod(pod(h, "a", "10.1.1.2")), h.plane.render_pod(pod(h, "b", "10.1.1.3"))
        assert s.apply({**a, **b}).ok
        key = sorted(b)[0]
        h.sabotage(key, b[key])
        assert s.dry_run(resync=True, keys=a).operations == []
        assert [o.key for o in s.dry_run(resync=True, keys=b).operations if o.key == key] == [key]

    def test_what_is_not_ours_is_never_deleted(self, h):
        exists = h.foreign()
        s = Scheduler(h.plane.descriptors())
        node = h.plane.render_node(transport(h))
        assert s.apply({**node, **h.plane.render_pod(pod(h))}).ok
        res = s.resync(node)  # the pod is no longer desired: ours goes, theirs stays
        assert res.ok, res.errors
        assert exists(), "a resync deleted an object this project did not create"
        assert s.dry_run(resync=True).operations == []

    def test_a_restarted_agent_removes_what_another_process_made(self, h):
        """What an earlier agent process made and nobody wants any more (a
        policy, a Service deleted while the agent was down) is found by
        retrieve alone -- without the values that made it -- and removed in
        an order the data plane accepts."""
        _, desired, _, svc, pol = self._cluster(h)
        node = h.plane.render_node(transport(h))
        assert desired.set_partitions({**svc.partitions(), **pol.partitions()}).ok
        exists = h.foreign()
        fresh = Scheduler(h.plane.descriptors())  # a new process: knows nothing
        res = fresh.resync(node)
        assert res.ok, res.errors
        assert fresh.dry_run(resync=True).operations == []
        res = Scheduler(h.plane.descriptors()).resync({})  # and then everything of ours
        assert res.ok, res.errors
        assert Scheduler(h.plane.descriptors()).dry_run(resync=True).operations == []
        assert exists()

    # ------------------------------------------------------------ Services and policies
    def _cluster(self, h):
        """The cluster of CLUSTER on node1, with pod x/a attached (a Service's
        local endpoint is a pod of this node: a data plane may wait for it)."""
        s = Scheduler(h.plane.descriptors())
        desired = DesiredState(s)
        snap = snapshot(*CLUSTER)
        svc = ServiceSync(snap, desired, "node1", h.plane.service_renderer())
        pol = PolicySync(snap, desired, "node1", h.plane.policy_renderer())
        node = h.plane.render_node(transport(h))
        assert desired.set_partitions({"node": node, "pod/a": h.plane.render_pod(pod(h))}).ok
        return s, desired, snap, svc, pol

    def test_services_and_policies_render_apply_and_stay_in_place(self, h):
        s, desired, _, svc, pol = self._cluster(h)
        svc_parts, pol_parts = svc.partitions(), pol.partitions()
        assert svc_parts["svc/x/web"] and svc_parts["svc/x/empty"], \
            "a Service with endpoints and one without both render to something"
        assert all(n.startswith("svc") for n in svc_parts), sorted(svc_parts)
        assert all(n.startswith("pol") for n in pol_parts), sorted(pol_parts)
        assert pol_parts["pol/x/web-from-client"], "a policy selecting a local pod renders here"
        res = desired.set_partitions({**svc_parts, **pol_parts})
        assert res.ok, res.errors
        assert s.dry_run(resync=True).operations == []
        info = {i.service: i for i in svc.describe()}
        assert info["x/web"].dataplane.state == "programmed" and info["x/web"].dataplane.elements

    def test_a_full_rebuild_renders_the_same(self, h):
        _, _, _, svc, pol = self._cluster(h)
        assert svc.partitions() == svc.partitions()
        assert pol.partitions() == pol.partitions()

    def test_an_endpoint_change_is_applied_incrementally(self, h):
        s, desired, snap, svc, _ = self._cluster(h)
        assert desired.set_partitions(svc.partitions()).ok
        before = desired.partition("svc/x/web")
        sl = json.loads(json.dumps(snap.objects["endpointslice"][("x", "web-1")]))
        sl["endpoints"].append({"addresses": ["10.1.2.2"], "nodeName": "node2",
                                "targetRef": {"kind": "Pod", "namespace": "x", "name": "b"}})
        from agent.cluster import Change  # noqa: PLC0415
        snap.objects["endpointslice"][("x", "web-1")] = sl
        svc.on_change(Change("endpointslice", "x", "web-1", False))
        svc.flush()
        assert desired.partition("svc/x/web") != before
        assert s.dry_run(resync=True).operations == []
        (port,) = {i.service: i for i in svc.describe()}["x/web"].ports
        assert {e.ip for e in port.endpoints} == {"10.1.1.2", "10.1.2.2"}

    # ------------------------------------------------------------ diagnostics
    def test_counters_cover_the_node_and_its_pods(self, h):
        s = Scheduler(h.plane.descriptors())
        assert s.apply(h.plane.render_node(transport(h))).ok
        p = pod(h)
        assert s.apply(h.plane.render_pod(p)).ok
        host_if = h.plane.pod_host_if(p.container_id, p.ifname)
        counters = h.plane.counters({host_if: p.pod_ref})
        assert all(isinstance(c, InterfaceCounters) for c in counters)
        assert {c.owner for c in counters if c.name == host_if} == {p.pod_ref}
        assert any(c.owner == "node" for c in counters)

    def test_sessions_are_records(self, h):
        assert all(isinstance(x, Session) for x in h.plane.sessions())
        limit = h.plane.session_limit()
        assert limit is None or (isinstance(limit, int) and limit > 0)

    def test_sockets_of_a_pod_are_read_in_its_namespace_or_it_says_why_not(self, h):
        import socket  # noqa: PLC0415

        from agent.nsenter import socket_in  # noqa: PLC0415
        p = pod(h)
        try:
            before = h.plane.sockets(p.netns)
        except NotSupported as e:
            assert e.message, "NotSupported must say why"
            return
        assert before == []  # a fresh namespace: nothing listens
        with socket_in(p.netns, socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("0.0.0.0", 0))
            s.listen()
            port = s.getsockname()[1]
            got = h.plane.sockets(p.netns)
        assert [(x.protocol, x.state, x.lport) for x in got] == [("tcp", "LISTEN", port)]
        assert all(isinstance(x, SocketInfo) for x in got)

    def test_a_trace_follows_one_probe_between_two_pods_or_says_why_not(self, h):
        from agent import traceprobe  # noqa: PLC0415
        from agent.model.diag import TracedPacket, TraceFlow  # noqa: PLC0415
        s = Scheduler(h.plane.descriptors())
        a, b = pod(h, "a", "10.1.1.2"), pod(h, "b", "10.1.1.3")
        assert s.apply({**h.plane.render_node(transport(h)), **h.plane.render_pod(a),
                        **h.plane.render_pod(b)}).ok
        flow = TraceFlow("ICMP", "10.1.1.2", 61111, "10.1.1.3")
        try:
            handle = h.plane.trace_start(flow)
        except NotSupported as e:
            assert e.message, "NotSupported must say why"
            return
        try:
            out = traceprobe.send(a.netns, flow, 2.0)
        finally:
            packets = h.plane.trace_collect(handle)
        assert out.answered, out.error
        assert all(isinstance(p, TracedPacket) for p in packets)
        by = {p.direction: p for p in packets}
        assert set(by) == {"request", "reply"}, packets
        req = by["request"]
        assert (req.src, req.sport, req.dst) == ("10.1.1.2", 61111, "10.1.1.3")
        host_a, host_b = (h.plane.pod_host_if(p.container_id, p.ifname) for p in (a, b))
        ins = [st.interface for st in req.steps if st.kind == "in"]
        outs = [st.interface for st in req.steps if st.kind == "deliver"]
        assert ins[:1] == [host_a] and outs[-1:] == [host_b], req.steps
        assert not any(st.kind == "tunnel" for st in req.steps), "same node: no tunnel"
        # everything was released: the next trace starts and sees nothing of the old one
        again = h.plane.trace_start(flow)
        assert h.plane.trace_collect(again) == []

