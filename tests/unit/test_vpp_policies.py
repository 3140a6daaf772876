"""NetworkPolicies on VPP's ACL plugin, without a VPP (agent/vpp/policies.py).

PolicySync + AclPolicyRenderer + a Scheduler over the real ACL descriptors on
a Recorder: every message is checked against VPP 26.10's API definitions.
The Recorder is not a VPP; :class:`AclModel` adds only what VPP's ACL plugin
does with what it was sent -- the lists set on interfaces (dumped back) and
its refusal to delete an ACL still in a list -- and :func:`verdict` reads the
ACLs *as sent* the way the plugin matches them (first match across the list,
default deny, SCTP ports read as 0). The policy cases of
``policy_cases.yaml`` are then checked end to end: what the data plane would
decide must be what ``explain`` says. Whether VPP really behaves so is
tests/vpp/test_vpp_policies.py's job.
"""
from __future__ import annotations

import copy
import ipaddress
import random

import pytest

from agent.builders.policies import PodInfo, Port
from agent.cluster import Change, ClusterSnapshot
from agent.desired import DesiredState
from agent.policies import PolicySync
from agent.reconciler import Descriptor, Retrieved, Scheduler
from agent.vpp import policies as P
from agent.vpp.base import Interfaces
from agent.vpp.errors import VppApiError
from agent.vpp.poldesc import LIST_PREFIX, MAX_LIST, AclRule, acl_key, acllist_key
from agent.vpp.recorder import Call, Recorder
from agent.vpp.values import NONE, interface_key, pod_ifname, tag, untag
from tests.unit.test_policy_compiler import CASES, WORLDS, pod_object

NODE_IPS = {"node1": "192.168.56.11", "node2": "192.168.56.12"}


class AclModel(Recorder):
    """The Recorder plus the ACL lists of interfaces (see the module docstring)."""

    def __init__(self) -> None:
        super().__init__()
        self.lists: dict[int, tuple[int, list[int]]] = {}

    def restart(self) -> None:
        super().restart()
        self.lists = {}

    def _apply(self, name: str, kw: dict) -> dict:
        if name == "acl_del" and any(kw.get("acl_index") in a for _, a in self.lists.values()):
            raise VppApiError(name, kw, -142)  # ACL_IN_USE_INBOUND, as VPP answers
        values = super()._apply(name, kw)
        if name == "delete_loopback":
            self.lists.pop(kw["sw_if_index"], None)  # VPP drops a deleted interface's lists
        if name == "acl_interface_set_acl_list":
            self.lists[kw["sw_if_index"]] = (kw["n_input"], list(kw["acls"]))
        return values

    def dump(self, name: str, /, **kwargs):
        if name != "acl_interface_list_dump":
            return super().dump(name, **kwargs)
        self._check(name, kwargs)
        self.calls.append(Call(name, dict(kwargs)))
        svc = self.defs.service(name)
        return [self.defs.record(svc.details, {"sw_if_index": sw, "count": len(a),
                                               "n_input": n, "acls": a})
                for sw, (n, a) in sorted(self.lists.items())]


class PodInterfaces(Descriptor):
    """Stands in for the interface descriptor: a tagged loopback per pod
    interface (so that VPP -- the Recorder -- knows its index), kept in ``ifs``."""

    name, key_prefix = "test-interface", "vpp/interface/"

    def __init__(self, api, ifs: Interfaces) -> None:
        self.api, self.ifs = api, ifs

    def call(self, name, **kw):
        return self.api.call(name, **self.api.fill(name, **kw))

    def create(self, key, value, ctx):
        sw = self.call("create_loopback_instance").sw_if_index
        self.call("sw_interface_tag_add_del", is_add=True, sw_if_index=sw, tag=tag(value))
        self.ifs.set(value, sw)
        return {"sw_if_index": sw}

    def delete(self, key, value, metadata, ctx):
        self.call("delete_loopback", sw_if_index=self.ifs.index(value))
        self.ifs.drop(value)

    def retrieve(self, correlate, ctx):
        found = {untag(d.tag): d.sw_if_index for d in self.api.dump("sw_interface_dump", sw_if_index=0xFFFFFFFF)
                 if untag(d.tag or "")}
        self.ifs.replace(found)
        return [Retrieved(interface_key(n), n, {"sw_if_index": sw}) for n, sw in found.items()]


class Node:
    """One node's policy stack: snapshot -> PolicySync -> renderer -> scheduler -> AclModel."""

    def __init__(self, snap: ClusterSnapshot, node: str = "node1", api: AclModel | None = None):
        self.api = api or AclModel()
        self.ifs = Interfaces()
        self.descs = [PodInterfaces(self.api, self.ifs), *P.descriptors(self.api, self.ifs)]
        self.sched = Scheduler(self.descs)
        self.desired = DesiredState(self.sched)
        self.renderer = P.AclPolicyRenderer(lambda: [NODE_IPS[node]])
        self.sync = PolicySync(snap, self.desired, node, self.renderer)
        self.snap, self.node = snap, node

    def up(self) -> "Node":
        """Interfaces for the local pods, then every policy partition."""
        with self.snap.lock:
            ips = [o["status"]["podIP"] for o in self.snap.objects["pod"].values()
                   if o["spec"]["nodeName"] == self.node]
        assert self.sched.apply({interface_key(pod_ifname(ip)): pod_ifname(ip) for ip in ips}).ok
        res = self.desired.set_partitions(self.sync.partitions())
        assert res.ok and not res.plan.pending and not res.plan.invalid, (res.errors, res.plan.pending)
        return self

    def change(self, kind: str, ns: str, name: str, obj: dict | None) -> None:
        table = self.snap.objects[kind]
        if obj is None:
            table.pop((ns, name), None)
        else:
            table[(ns, name)] = obj
        self.sync.on_change(Change(kind, ns, name, obj is None))
        self.sync.flush()

    def acl(self, index: int) -> list[dict]:
        return self.api.acls[index]["r"]

    def lists_of(self, ip: str) -> tuple[list[int], list[int]] | None:
        """(input = the pod's egress, output = its ingress) ACL indexes, or None."""
        sw = self.ifs.index(pod_ifname(ip))
        n, acls = self.api.lists.get(sw, (0, []))
        return (acls[:n], acls[n:]) if acls else None


def snapshot(namespaces: dict, pods: list[dict], policies: list[dict]) -> ClusterSnapshot:
    snap = ClusterSnapshot()
    for n, labels in namespaces.items():
        snap.objects["namespace"][("", n)] = {"metadata": {"name": n, "labels": dict(labels or {})}}
    for p in pods:
        md = p["metadata"]
        snap.objects["pod"][(md["namespace"], md["name"])] = p
    for o in policies:
        md = o["metadata"]
        snap.objects["networkpolicy"][(md.get("namespace", "default"), md["name"])] = o
    return snap


# ------------------------------------------------------------ the ACL plugin's matching
def _matches(r: dict, src: str, dst: str, proto: int, port: int) -> bool:
    if ipaddress.ip_address(src) not in ipaddress.ip_network(r["src_prefix"]):
        return False
    if ipaddress.ip_address(dst) not in ipaddress.ip_network(r["dst_prefix"]):
        return False
    if not r["proto"]:
        return True
    seen = port if proto in (6, 17) else 0  # the plugin reads ports of TCP and UDP only
    sport = 40000 if proto in (6, 17) else 0
    return (r["proto"] == proto
            and r["dstport_or_icmpcode_first"] <= seen <= r["dstport_or_icmpcode_last"]
            and r["srcport_or_icmptype_first"] <= sport <= r["srcport_or_icmptype_last"])


def _check(node: Node, acls: list[int], src: str, dst: str, proto: int, port: int) -> bool:
    for a in acls:
        for r in node.acl(a):
            if _matches(r, src, dst, proto, port):
                return r["is_permit"] in (1, 2)
    return False  # a list, and nothing matched: VPP denies


def verdict(nodes: dict[str, Node], pods: dict[str, PodInfo], src: str, dst: str,
            port: int, protocol: str) -> bool:
    """Would a new connection pass both pods' interfaces (as the ACLs were sent)?"""
    proto = P.PROTO[protocol]
    sp = pods.get(src) or next((p for p in pods.values() if p.ip == src), None)
    dp = pods.get(dst) or next((p for p in pods.values() if p.ip == dst), None)
    if sp is not None and sp is dp:
        return True
    sip, dip = (sp.ip if sp else src), (dp.ip if dp else dst)
    if sp is not None:
        lists = nodes[sp.node].lists_of(sp.ip)
        if lists and not _check(nodes[sp.node], lists[0], sip, dip, proto, port):
            return False
    if dp is not None:
        lists = nodes[dp.node].lists_of(dp.ip)
        if lists and not _check(nodes[dp.node], lists[1], sip, dip, proto, port):
            return False
    return True


def case_nodes(name: str) -> tuple[dict[str, Node], dict[str, PodInfo]]:
    case = CASES[name]
    world = WORLDS[case["world"]]
    objs = [pod_object(p) for p in world["pods"] + case.get("pods", [])]
    namespaces = {**world["namespaces"], **case.get("namespaces", {})}
    nodes = {n: Node(snapshot(namespaces, copy.deepcopy(objs), case["policies"]), n).up()
             for n in ("node1", "node2")}
    return nodes, nodes["node1"].sync.model().pods


CONNECTIONS = [pytest.param(name, c, id=f"{name}:{c['src']}->{c['dst']}:{c['protocol']}/{c['port']}")
               for name, case in CASES.items() for c in case["connections"]]


@pytest.mark.parametrize("case_name,conn", CONNECTIONS)
def test_the_acls_sent_decide_what_explain_says(case_name, conn):
    nodes, pods = case_nodes(case_name)
    want = nodes["node1"].sync.model().explain(str(conn["src"]), str(conn["dst"]), conn["port"],
                                               conn["protocol"])["allowed"]
    assert want is conn["allowed"]
    got = verdict(nodes, pods, str(conn["src"]), str(conn["dst"]), conn["port"], conn["protocol"])
    assert got is want


# ------------------------------------------------------------ a small world of our own
def k8s_pod(name, ip, labels, node="node1", ns="x", ports=(("http", "TCP", 8080),)):
    return {"metadata": {"namespace": ns, "name": name, "labels": labels},
            "spec": {"nodeName": node, "containers": [{"name": "c", "ports": [
                {"name": n, "protocol": p, "containerPort": c} for n, p, c in ports]}]},
            "status": {"podIP": ip}}


def policy(name, spec, ns="x"):
    return {"metadata": {"namespace": ns, "name": name}, "spec": spec}


ALLOW_B = policy("allow-b", {"podSelector": {"matchLabels": {"app": "a"}},
                             "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "b"}}}],
                                          "ports": [{"port": "http"}]}]})


def small(*policies, extra=()) -> Node:
    pods = [k8s_pod("a", "10.1.1.2", {"app": "a"}), k8s_pod("b", "10.1.1.3", {"app": "b"}),
            k8s_pod("c", "10.1.2.2", {"app": "c"}, node="node2", ports=(("http", "TCP", 9090),)),
            *extra]
    return Node(snapshot({"x": {"ns": "x"}}, pods, list(policies) or [ALLOW_B])).up()


def relabel(n: Node, name: str, labels: dict) -> None:
    obj = copy.deepcopy(n.snap.objects["pod"][("x", name)])
    obj["metadata"]["labels"] = labels
    n.change("pod", "x", name, obj)


def peer_acl(n: Node, policy_ref="x/allow-b") -> str:
    """The shared ACL of a policy's first ingress rule's first peer."""
    cp = n.sync.compiled[policy_ref]
    r = cp.rules[0]
    pod = n.sync.pods["x/a"]
    return P.spec_name(("i", r.peers[0].ident, P.rule_ports(r.ports, pod)))


def test_messages_exist_in_vpp_26_10():
    Recorder().require(P.MESSAGES)
    assert [d.key_prefix for d in P.descriptors(Recorder(), Interfaces())] == ["vpp/acl/", LIST_PREFIX]


def test_an_isolated_pod_gets_node_anchor_and_peer_acls_and_any_the_other_way():
    n = small()
    lst = n.desired.partition("polpod/x/a")[acllist_key(pod_ifname("10.1.1.2"))]
    assert lst.ingress == (P.NODE, P.anchor_name("x/allow-b", "ingress"), peer_acl(n))
    assert lst.egress == (P.ANY,)  # sessions for its own connections: their replies pass
    assert n.desired.partition("pol/x/allow-b") == {
        acl_key(P.anchor_name("x/allow-b", "ingress")): P.Acl(P.anchor_name("x/allow-b", "ingress"))}
    peer = n.desired.partition(f"polacl/{peer_acl(n)}")[acl_key(peer_acl(n))]
    # b's address, the http port resolved against a (the destination): 8080
    assert peer.rules == (AclRule(src="10.1.1.3/32", proto=6, dports=(8080, 8080)),)
    node = n.desired.partition("polbase")[acl_key(P.NODE)]
    assert node.rules == (AclRule(src="192.168.56.11/32"),)
    assert not n.desired.partition("polpod/x/b"), "b is not isolated: no list, nothing checked"


def test_a_pod_entering_a_peer_is_one_acl_replaced_in_place():
    n = small()
    name = peer_acl(n)
    index = n.sched.metadata(acl_key(name))["acl_index"]
    compiled = n.sync.compiled["x/allow-b"]
    n.api.clear()
    relabel(n, "c", {"app": "b"})  # c (remote) joins the peer
    sent = [c for c in n.api.calls if not c.name.endswith("_dump")]
    assert [c.name for c in sent] == ["acl_add_replace"]
    assert sent[0].kwargs["acl_index"] == index  # replaced in place: no list is touched
    assert {r["src_prefix"] for r in sent[0].kwargs["r"]} == {"10.1.1.3/32", "10.1.2.2/32"}
    assert n.sync.compiled["x/allow-b"] is compiled  # not recompiled either
    n.api.clear()
    relabel(n, "b", {"app": "z"})  # b leaves
    (call,) = [c for c in n.api.calls if not c.name.endswith("_dump")]
    assert [r["src_prefix"] for r in call.kwargs["r"]] == ["10.1.2.2/32"]


def test_policies_with_the_same_peer_and_ports_share_one_acl():
    twin = policy("twin", {"podSelector": {"matchLabels": {"app": "a"}},
                           "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "b"}}}],
                                        "ports": [{"port": 8080}]}]})
    n = small(ALLOW_B, twin)
    lst = n.desired.partition("polpod/x/a")[acllist_key(pod_ifname("10.1.1.2"))]
    # http resolves to 8080 on a: both rules are (peer app=b, TCP/8080)
    assert lst.ingress.count(peer_acl(n)) == 1 and len(lst.ingress) == 4
    n.api.clear()
    relabel(n, "c", {"app": "b"})
    assert [c.name for c in n.api.calls if not c.name.endswith("_dump")] == ["acl_add_replace"]


def test_named_ports_ingress_per_destination_egress_per_peer_pod():
    out = policy("out", {"podSelector": {"matchLabels": {"app": "b"}}, "policyTypes": ["Egress"],
                         "egress": [{"to": [{"podSelector": {}}], "ports": [{"port": "http"}]}]})
    n = small(out)
    lst = n.desired.partition("polpod/x/b")[acllist_key(pod_ifname("10.1.1.3"))]
    assert lst.ingress == (P.ANY,)
    (shared,) = [x for x in lst.egress if x.startswith("pol-s")]
    rules = n.desired.partition(f"polacl/{shared}")[acl_key(shared)].rules
    assert rules == tuple(sorted([AclRule(dst="10.1.1.2/32", proto=6, dports=(8080, 8080)),
                                  AclRule(dst="10.1.1.3/32", proto=6, dports=(8080, 8080)),
                                  AclRule(dst="10.1.2.2/32", proto=6, dports=(9090, 9090))]))


def test_ipblock_except_sctp_ranges_and_ipv6():
    pol = policy("blk", {"podSelector": {"matchLabels": {"app": "a"}}, "ingress": [
        {"from": [{"ipBlock": {"cidr": "10.0.0.0/8", "except": ["10.1.0.0/16", "10.1.1.0/24"]}},
                  {"ipBlock": {"cidr": "2001:db8::/32"}}],
         "ports": [{"port": 1000, "endPort": 2000, "protocol": "UDP"}, {"port": 7, "protocol": "SCTP"}]},
        {"ports": [{"protocol": "SCTP"}]}]})
    n = small(pol)
    names = n.desired.partition("polpod/x/a")[acllist_key(pod_ifname("10.1.1.2"))].ingress
    rules = {r for x in names if x.startswith("pol-s")
             for r in n.desired.partition(f"polacl/{x}")[acl_key(x)].rules}
    srcs = {r.src for r in rules if r.proto == 17}
    assert "10.0.0.0/16" in srcs and "10.128.0.0/9" in srcs and not any(s.startswith("10.1.") for s in srcs)
    assert {r.dports for r in rules if r.proto == 17} == {(1000, 2000)}
    # SCTP/7 cannot be matched by the plugin: left out (denied); every SCTP port can
    assert {(r.src, r.dports) for r in rules if r.proto == 132} == {("0.0.0.0/0", (0, 65535))}
    assert not any(":" in r.src for r in rules)
    assert P.rule_ports((Port("SCTP", 7),), None) is None


def test_an_invalid_policy_isolates_and_opens_nothing():
    bad = policy("bad", {"podSelector": {"matchLabels": {"app": "a"}}, "policyTypes": ["Egress"],
                         "egress": [{"to": [{"ipBlock": {"cidr": "10.0.0.0/33"}}]}]})
    n = small(bad)
    lst = n.desired.partition("polpod/x/a")[acllist_key(pod_ifname("10.1.1.2"))]
    assert lst.egress == (P.anchor_name("x/bad", "egress"),)  # empty: VPP denies everything
    assert lst.ingress == (P.ANY,)


def test_rendering_is_deterministic_and_a_reset_rebuilds_the_same():
    n = small(ALLOW_B, policy("out", {"podSelector": {}, "policyTypes": ["Egress"],
                                      "egress": [{"to": [{"namespaceSelector": {}}]}]}))
    first = n.sync.partitions()
    assert n.sync.partitions() == first
    n.renderer.reset()
    assert Node(n.snap).sync.partitions() == first
    assert n.sched.dry_run(resync=True).operations == []


def test_too_many_acls_for_one_interface_become_one_union_per_direction():
    pols = [policy(f"p{i}", {"podSelector": {"matchLabels": {"app": "a"}},
                             "ingress": [{"ports": [{"port": 1000 + i}]}]}) for i in range(MAX_LIST)]
    n = small(ALLOW_B, *pols)
    lst = n.desired.partition("polpod/x/a")[acllist_key(pod_ifname("10.1.1.2"))]
    assert lst.ingress == (P.union_name("ingress", pod_ifname("10.1.1.2")),)
    union = n.desired.partition("polpod/x/a")[acl_key(lst.ingress[0])]
    assert union.rules[0] == AclRule(src="192.168.56.11/32")  # the node first, as in the list
    assert {r.dports for r in union.rules[1:]} == {(1000 + i, 1000 + i) for i in range(MAX_LIST)} | {
        (8080, 8080)}
    nodes = {"node1": n, "node2": Node(n.snap, "node2").up()}
    pods = n.sync.model().pods
    assert verdict(nodes, pods, "x/c", "x/a", 1007, "TCP")
    assert not verdict(nodes, pods, "x/c", "x/a", 8080, "TCP")
    # a member's content changes (c joins allow-b's peer): the union follows
    relabel(n, "c", {"app": "b"})
    union = n.desired.partition("polpod/x/a")[acl_key(lst.ingress[0])]
    assert AclRule(src="10.1.2.2/32", proto=6, dports=(8080, 8080)) in union.rules
    assert verdict(nodes, n.sync.model().pods, "x/c", "x/a", 8080, "TCP")
    assert n.sched.dry_run(resync=True).operations == []
    fresh = Node(n.snap)
    assert n.desired.merged() == {k: v for p in fresh.sync.partitions().values() for k, v in p.items()}


def test_the_contract_cluster_renders_its_policy_here():
    """What tests/dataplane_contract.py asks of every data plane's policy renderer."""
    from tests.dataplane_contract import CLUSTER, snapshot as contract_snapshot  # noqa: PLC0415
    n = Node(contract_snapshot(*CLUSTER))
    parts = n.sync.partitions()
    assert parts["pol/x/web-from-client"], "a policy selecting a local pod renders here"
    assert all(name.startswith("pol") for name in parts), sorted(parts)
    assert n.sync.partitions() == parts


def test_a_policy_going_never_leaves_a_pod_unfiltered_in_between():
    """The scheduler cascades the removal of an ACL to the lists using it
    (delete, then create again); the batch sets the new list instead, and
    deletes the ACL after."""
    other = policy("other", {"podSelector": {"matchLabels": {"app": "a"}},
                             "ingress": [{"ports": [{"port": 81}]}]})
    n = small(ALLOW_B, other)
    n.api.clear()
    n.change("networkpolicy", "x", "allow-b", None)
    sets = n.api.calls_to("acl_interface_set_acl_list")
    assert sets and all(s["acls"] for s in sets), "a list was cleared on the way"
    names = [c.name for c in n.api.calls if not c.name.endswith("_dump")]
    assert names.index("acl_del") > names.index("acl_interface_set_acl_list")
    assert n.sched.dry_run(resync=True).operations == []
    nodes = {"node1": n, "node2": Node(n.snap, "node2").up()}
    pods = n.sync.model().pods
    assert verdict(nodes, pods, "x/b", "x/a", 81, "TCP") and not verdict(nodes, pods, "x/b", "x/a", 8080, "TCP")


def test_a_pod_no_longer_isolated_gets_its_list_cleared():
    n = small()
    relabel(n, "a", {"app": "zzz"})
    sw = n.ifs.index(pod_ifname("10.1.1.2"))
    assert n.api.lists[sw] == (0, [])
    # every ACL went but the two fixed ones
    assert set(n.sched.actual("vpp/acl")) == {acl_key(P.NODE), acl_key(P.ANY)}
    assert n.sched.dry_run(resync=True).operations == []


def test_a_restarted_vpp_gets_everything_back_and_foreign_acls_stay():
    n = small()
    foreign = n.api.call("acl_add_replace", **n.api.fill(
        "acl_add_replace", acl_index=NONE, tag="someone-else", r=[])).acl_index
    assert n.sched.dry_run(resync=True).operations == []  # theirs is not ours: not even seen
    n.api.restart()
    res = n.sched.resync()
    assert res.ok, res.errors
    assert n.sched.dry_run(resync=True).operations == []
    assert n.api.lists and all(a for _, a in n.api.lists.values())
    foreign = n.api.call("acl_add_replace", **n.api.fill(
        "acl_add_replace", acl_index=NONE, tag="someone-else", r=[])).acl_index
    # a new agent process that wants nothing finds ours by their tags and
    # removes them in an order VPP accepts (lists before the ACLs they use)
    res = Node(n.snap, api=n.api).sched.resync({})
    assert res.ok, res.errors
    assert set(n.api.acls) == {foreign}
    assert not n.api.lists


def test_drift_is_found_and_repaired():
    n = small()
    sw = n.ifs.index(pod_ifname("10.1.1.2"))
    n.api.lists[sw] = (0, [])  # someone cleared a's list behind our back
    ops = n.sched.dry_run(resync=True).operations
    assert [(o.kind.value, o.key) for o in ops] == [("create", acllist_key(pod_ifname("10.1.1.2")))]
    assert n.sched.resync().ok and n.api.lists[sw][1]
    name = peer_acl(n)
    index = n.sched.metadata(acl_key(name))["acl_index"]
    n.api.acls[index]["r"] = []  # and emptied an ACL
    (op,) = n.sched.dry_run(resync=True).operations
    assert (op.kind.value, op.key) == ("update", acl_key(name))


@pytest.mark.parametrize("seed", [7, 11])
def test_incremental_updates_equal_a_rebuild_from_scratch(seed):
    """Random relabels, pod moves and policy edits: after every flush the
    incremental state is what a fresh start renders, VPP holds it (no drift,
    nothing pending) and the ACLs decide what explain says."""
    rng = random.Random(seed)
    apps = ["a", "b", "c", "d"]
    pods = [k8s_pod(f"p{i}", f"10.1.{i % 2 + 1}.{10 + i}", {"app": rng.choice(apps)},
                    node=f"node{i % 2 + 1}", ports=(("http", "TCP", 8000 + i % 3),)) for i in range(8)]
    pols = []
    for i in range(4):
        spec = {"podSelector": {"matchLabels": {"app": apps[i]}},
                "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": apps[(i + 1) % 4]}}},
                                      {"podSelector": {"matchExpressions": [
                                          {"key": "app", "operator": "In", "values": ["b", "c"]}]}}],
                             "ports": [{"port": "http"}, {"port": 9000 + i}]}]}
        if i % 2:
            spec["egress"] = [{"to": [{"podSelector": {"matchLabels": {"app": apps[i - 1]}}}],
                               "ports": [{"port": "http"}]}]
        pols.append(policy(f"pol{i}", spec))
    n = Node(snapshot({"x": {}}, pods, pols)).up()
    for step in range(40):
        name = f"p{rng.randrange(8)}"
        obj = copy.deepcopy(n.snap.objects["pod"][("x", name)])
        if rng.random() < 0.85:
            obj["metadata"]["labels"] = {"app": rng.choice(apps)}
            n.change("pod", "x", name, obj)
        else:
            i = rng.randrange(4)
            pol = copy.deepcopy(n.snap.objects["networkpolicy"][("x", f"pol{i}")])
            pol["spec"]["podSelector"] = {"matchLabels": {"app": rng.choice(apps)}}
            n.change("networkpolicy", "x", f"pol{i}", pol)
        fresh = Node(n.snap)
        assert n.desired.merged() == {k: v for p in fresh.sync.partitions().values()
                                      for k, v in p.items()}, f"step {step}"
        assert not n.sched.state() or all(s["state"] == "configured" for s in n.sched.state()
                                          if not s["key"].startswith("vpp/interface/")), step
        assert n.sched.dry_run(resync=True).operations == [], step
        if step % 8 == 7:
            nodes = {"node1": n, "node2": Node(n.snap, "node2").up()}
            model = n.sync.model()
            for src in ("x/p0", "x/p2", "x/p3"):
                for dst in ("x/p4", "x/p6", "x/p1"):
                    for port in (8000, 8001, 8002, 9001):
                        assert verdict(nodes, model.pods, src, dst, port, "TCP") is \
                            model.explain(src, dst, port)["allowed"], (step, src, dst, port)
