"""PolicySync: a pod label change costs set elements, not policy re-renders."""
from __future__ import annotations

import copy

from agent.cluster import Change, ClusterSnapshot
from agent.desired import DesiredState
from agent.linux import polrender
from agent.policies import PolicySync
from agent.reconciler import Descriptor, Retrieved, Scheduler


class Recorder(Descriptor):
    """Accepts any value under its prefix and records what was done."""

    def __init__(self, prefix: str, log: list):
        self.key_prefix, self.name, self.log = prefix, "rec-" + prefix, log

    def create(self, key, value, ctx):
        self.log.append(("create", key))

    def update(self, key, old, new, metadata, ctx):
        self.log.append(("update", key))

    def delete(self, key, value, metadata, ctx):
        self.log.append(("delete", key))

    def retrieve(self, correlate, ctx):
        return [Retrieved(k, v) for k, v in correlate.items()]

    supports_update = True


def pod(name, ip, labels, node="node1", ns="x"):
    return {"metadata": {"namespace": ns, "name": name, "labels": labels},
            "spec": {"nodeName": node, "containers": [{"name": "c", "ports": [{"containerPort": 80}]}]},
            "status": {"podIP": ip}}


POLICY = {"metadata": {"namespace": "x", "name": "allow-b"},
          "spec": {"podSelector": {"matchLabels": {"app": "a"}},
                   "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "b"}}}]}]}}


def setup():
    log: list = []
    sched = Scheduler([Recorder(p, log) for p in ("nft/set/", "nft/chain/", "nft/element/")])
    snap = ClusterSnapshot()
    snap.objects["namespace"][("", "x")] = {"metadata": {"name": "x"}}
    snap.objects["pod"][("x", "a")] = pod("a", "10.1.1.2", {"app": "a"})
    snap.objects["pod"][("x", "b")] = pod("b", "10.1.1.3", {"app": "b"})
    snap.objects["pod"][("x", "c")] = pod("c", "10.1.2.2", {"app": "c"}, node="node2")
    snap.objects["networkpolicy"][("x", "allow-b")] = POLICY
    desired = DesiredState(sched)
    sync = PolicySync(snap, desired, "node1", render_policy=polrender.render_policy,
                      render_dispatch=polrender.render_dispatch, render_groups=polrender.render_groups,
                      peer_element=polrender.peer_element)
    desired.set_partitions(sync.partitions())
    log.clear()
    return snap, sync, log


def relabel(snap, sync, name, labels):
    obj = copy.deepcopy(snap.objects["pod"][("x", name)])
    obj["metadata"]["labels"] = labels
    snap.objects["pod"][("x", name)] = obj
    sync.on_change(Change("pod", "x", name, False))
    sync.flush()


def test_a_peer_joining_or_leaving_is_one_element_and_no_recompile():
    snap, sync, log = setup()
    compiled_before = sync.compiled["x/allow-b"]
    relabel(snap, sync, "c", {"app": "b"})  # c (remote) joins the peer set
    key, _ = polrender.peer_element("x/allow-b", "ingress", 0, 0, "10.1.2.2")
    assert log == [("create", key)]
    assert sync.compiled["x/allow-b"] is compiled_before  # patched in place, not recompiled
    assert "x/c" in sync.compiled["x/allow-b"].rules[0].peers[0].pods
    log.clear()
    relabel(snap, sync, "b", {"app": "z"})  # b leaves it
    key_b, _ = polrender.peer_element("x/allow-b", "ingress", 0, 0, "10.1.1.3")
    assert log == [("delete", key_b)]
    assert sync.model().explain("x/b", "x/a", 80)["allowed"] is False
    assert sync.model().explain("x/c", "x/a", 80)["allowed"] is True


def test_a_label_no_policy_uses_changes_nothing():
    snap, sync, log = setup()
    relabel(snap, sync, "b", {"app": "b", "tier": "web"})
    assert log == []


def test_a_selected_pod_leaving_the_selection_drops_its_dispatch():
    snap, sync, log = setup()
    relabel(snap, sync, "a", {"app": "x"})
    assert ("delete", "nft/element/ingress-pods/10.1.1.2") in log
    assert sync._policies_of("x/a", "Ingress") == ()
    # the policy selects no local pod any more: it is no longer rendered here
    assert not sync.desired.partition("pol/x/allow-b")


def test_the_label_index_narrows_candidates_to_selectors_that_can_change():
    snap, sync, log = setup()
    expr = {"metadata": {"namespace": "x", "name": "expr"},
            "spec": {"podSelector": {"matchExpressions": [
                {"key": "tier", "operator": "In", "values": ["web"]},
                {"key": "canary", "operator": "Exists"}]}, "policyTypes": ["Ingress"]}}
    snap.objects["networkpolicy"][("x", "expr")] = expr
    sync.on_change(Change("networkpolicy", "x", "expr", False))
    sync.flush()
    assert sync._candidates({"app": "y"}, {"app": "z"}) == set()  # no selector names y or z
    assert sync._candidates({"app": "b"}, {"app": "c"}) == {"x/allow-b"}  # leaves its peer
    assert sync._candidates({"app": "a"}, {"app": "c"}) == {"x/allow-b"}  # leaves its selection
    assert sync._candidates({"tier": "db"}, {"tier": "web"}) == {"x/expr"}
    assert sync._candidates({"tier": "db"}, {"tier": "api"}) == set()
    assert sync._candidates({}, {"canary": "1"}) == {"x/expr"}
    assert sync._candidates({"canary": "1"}, {"canary": "2"}) == set()


def test_ingress_named_ports_keep_the_element_fast_path():
    snap, sync, log = setup()
    pol = copy.deepcopy(POLICY)
    pol["spec"]["ingress"][0]["ports"] = [{"port": "http"}]
    snap.objects["networkpolicy"][("x", "allow-b")] = pol
    sync.on_change(Change("networkpolicy", "x", "allow-b", False))
    sync.flush()
    log.clear()
    compiled = sync.compiled["x/allow-b"]
    relabel(snap, sync, "c", {"app": "b"})
    key, _ = polrender.peer_element("x/allow-b", "ingress", 0, 0, "10.1.2.2")
    assert log == [("create", key)] and sync.compiled["x/allow-b"] is compiled
