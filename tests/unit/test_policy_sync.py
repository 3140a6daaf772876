"""PolicySync: a pod label change costs set elements, not policy re-renders."""
from __future__ import annotations

import copy

from agent.cluster import Change, ClusterSnapshot
from agent.desired import DesiredState
from agent.linux import polrender
from agent.linux.polstate import NftPolicyRenderer
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
    sync = PolicySync(snap, desired, "node1", NftPolicyRenderer())
    desired.set_partitions(sync.partitions())
    log.clear()
    return snap, sync, log


def peer_key(sync, ip, policy="x/allow-b", rule=0, peer=0):
    """The key of ``ip``'s element in the shared set of a policy's peer."""
    pe = sync.compiled[policy].rules[rule].peers[peer]
    return polrender.peer_element(polrender.peer_set_name(pe), ip)[0]


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
    key = peer_key(sync, "10.1.2.2")
    assert log == [("create", key)]
    assert sync.compiled["x/allow-b"] is compiled_before  # not recompiled
    log.clear()
    relabel(snap, sync, "b", {"app": "z"})  # b leaves it
    key_b = peer_key(sync, "10.1.1.3")
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
    key = peer_key(sync, "10.1.2.2")
    assert log == [("create", key)] and sync.compiled["x/allow-b"] is compiled


def add_policy(snap, sync, name, spec):
    snap.objects["networkpolicy"][("x", name)] = {"metadata": {"namespace": "x", "name": name}, "spec": spec}
    sync.on_change(Change("networkpolicy", "x", name, False))
    sync.flush()


def test_policies_with_the_same_peer_share_one_set_and_one_element_per_move():
    snap, sync, log = setup()
    twin = copy.deepcopy(POLICY["spec"])
    twin["ingress"][0]["ports"] = [{"port": 80}]  # another rule, the same peer
    add_policy(snap, sync, "twin", twin)
    name = polrender.peer_set_name(sync.compiled["x/allow-b"].rules[0].peers[0])
    assert name == polrender.peer_set_name(sync.compiled["x/twin"].rules[0].peers[0])
    assert not any(k.startswith(f"nft/set/{name}") for _, k in log)  # already there: shared
    log.clear()
    twin_compiled = sync.compiled["x/twin"]
    relabel(snap, sync, "c", {"app": "b"})
    assert log == [("create", peer_key(sync, "10.1.2.2"))]  # once, for both policies
    assert sync.compiled["x/twin"] is twin_compiled
    # one user gone: the set stays; both gone: it goes
    del snap.objects["networkpolicy"][("x", "allow-b")]
    sync.on_change(Change("networkpolicy", "x", "allow-b", True))
    sync.flush()
    assert sync.desired.partition(f"polset/{name}")
    del snap.objects["networkpolicy"][("x", "twin")]
    sync.on_change(Change("networkpolicy", "x", "twin", True))
    sync.flush()
    assert not sync.desired.partition(f"polset/{name}")
    assert ("delete", f"nft/set/{name}") in log


def test_a_peer_in_another_namespace_scope_is_another_set():
    snap, sync, log = setup()
    snap.objects["namespace"][("", "y")] = {"metadata": {"name": "y"}}
    snap.objects["pod"][("y", "a")] = pod("a", "10.1.1.9", {"app": "a"}, ns="y")
    snap.objects["networkpolicy"][("y", "allow-b")] = {**POLICY, "metadata": {"namespace": "y", "name": "allow-b"}}
    sync.on_change(Change("pod", "y", "a", False))
    sync.on_change(Change("networkpolicy", "y", "allow-b", False))
    sync.flush()
    x_set = polrender.peer_set_name(sync.compiled["x/allow-b"].rules[0].peers[0])
    y_set = polrender.peer_set_name(sync.compiled["y/allow-b"].rules[0].peers[0])
    assert x_set != y_set  # app=b in x is not app=b in y
    assert sync.desired.partition(f"polset/{x_set}") and sync.desired.partition(f"polset/{y_set}")


def test_incremental_updates_equal_a_rebuild_from_scratch():
    """Random relabels, pod moves and policy edits: after every flush the
    incremental state is exactly what a fresh start would render."""
    import random
    rng = random.Random(7)
    snap, sync, log = setup()
    apps = ["a", "b", "c", "d"]
    for n in range(6):
        snap.objects["pod"][("x", f"p{n}")] = pod(f"p{n}", f"10.1.{n % 2 + 1}.{10 + n}", {"app": rng.choice(apps)},
                                                  node=f"node{n % 2 + 1}")
        sync.on_change(Change("pod", "x", f"p{n}", False))
    for n in range(4):  # several policies, overlapping peers
        add_policy(snap, sync, f"pol{n}", {
            "podSelector": {"matchLabels": {"app": apps[n]}},
            "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": apps[(n + 1) % 4]}}},
                                  {"podSelector": {"matchExpressions": [
                                      {"key": "app", "operator": "In", "values": ["b", "c"]}]}}]}]})
    names = [f"p{n}" for n in range(6)] + ["a", "b", "c"]
    for step in range(60):
        name = rng.choice(names)
        obj = copy.deepcopy(snap.objects["pod"][("x", name)])
        if rng.random() < 0.8:
            obj["metadata"]["labels"] = {"app": rng.choice(apps)}
        else:
            obj["spec"]["nodeName"] = rng.choice(["node1", "node2"])
        snap.objects["pod"][("x", name)] = obj
        sync.on_change(Change("pod", "x", name, False))
        sync.flush()
        fresh_desired = DesiredState(Scheduler([Recorder(p, []) for p in ("nft/set/", "nft/chain/", "nft/element/")]))
        fresh = PolicySync(snap, fresh_desired, "node1", NftPolicyRenderer())
        fresh_desired.set_partitions(fresh.partitions())
        assert sync.desired.merged() == fresh_desired.merged(), f"step {step}: {name}"


def test_a_rebuild_removes_what_was_deleted_while_the_watch_was_down():
    snap, sync, log = setup()
    name = polrender.peer_set_name(sync.compiled["x/allow-b"].rules[0].peers[0])
    assert sync.desired.partition("pol/x/allow-b") and sync.desired.partition(f"polset/{name}")
    del snap.objects["networkpolicy"][("x", "allow-b")]  # no event: the relist finds it gone
    sync.desired.set_partitions(sync.partitions())
    assert not sync.desired.partition("pol/x/allow-b")
    assert not sync.desired.partition(f"polset/{name}")
    assert ("delete", f"nft/set/{name}") in log
