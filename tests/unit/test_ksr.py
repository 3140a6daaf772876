"""The reflector's logic without an API server or etcd: what of an object is
mirrored, the election and its fence, list/watch/relist/prune against a
scripted API (the real client against a real HTTP API server and a real etcd:
tests/integration/test_ksr.py)."""
from __future__ import annotations

import json
import queue
import time

import pytest

from agent.model import keys
from agent.store.base import Put
from agent.store.memory import MemoryStore
from ksr.leader import Election
from ksr.objects import KINDS, BadObject, key_of, strip
from ksr.reflector import ApiError, Reflector, iter_lines
from tests.helpers import eventually

POD, NS = next(k for k in KINDS if k.kind == "Pod"), next(k for k in KINDS if k.kind == "Namespace")


def pod(name, rv="1", ns="default", **extra):
    return {"metadata": {"name": name, "namespace": ns, "resourceVersion": rv,
                         "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{...}",
                                         "lab.contiv.io/netns": "/run/netns/x"},
                         "managedFields": [{"manager": "kubectl"}]},
            "spec": {"nodeName": "node1", "volumes": [{"name": "secret"}],
                     "containers": [{"name": "c", "image": "i", "env": [{"name": "PASSWORD", "value": "x"}],
                                     "ports": [{"containerPort": 80}]}]},
            "status": {"podIP": "10.1.1.2"}, **extra}


def wait(pred, timeout=5.0):
    return eventually(pred, timeout)


# ---------------------------------------------------------------- objects
def test_strip_keeps_what_agents_read_and_drops_secrets_and_noise():
    o = strip(POD, pod("web"))
    assert (o["apiVersion"], o["kind"]) == ("v1", "Pod")
    assert o["metadata"]["annotations"] == {"lab.contiv.io/netns": "/run/netns/x"}
    assert "managedFields" not in o["metadata"] and "volumes" not in o["spec"]
    assert o["spec"]["containers"] == [{"name": "c", "image": "i", "ports": [{"containerPort": 80}]}]
    assert o["status"] == {"podIP": "10.1.1.2"} and o["spec"]["nodeName"] == "node1"
    assert "PASSWORD" not in json.dumps(o)


def test_keys_follow_the_layout_and_bad_objects_are_named():
    assert key_of(POD, strip(POD, pod("web", ns="shop"))) == "/contiv/k8s/pod/shop/web"
    assert key_of(NS, strip(NS, {"metadata": {"name": "shop"}})) == "/contiv/k8s/namespace/shop"
    with pytest.raises(BadObject, match="Pod shop/Bad_Name"):
        key_of(POD, strip(POD, pod("Bad_Name", ns="shop")))
    with pytest.raises(BadObject):
        strip(POD, {"spec": {}})


def test_watch_lines_are_reassembled_across_chunks():
    assert list(iter_lines([b'{"a":', b'1}\n{"b"', b":2}\n", b'{"c":3}'])) == [b'{"a":1}', b'{"b":2}', b'{"c":3}']


# ---------------------------------------------------------------- election
def test_one_leader_a_standby_takes_over_and_a_stale_leader_is_fenced():
    store = MemoryStore()
    seen: dict[str, list] = {"a": [], "b": []}
    a = Election(store, "a", seen["a"].append, ttl=2).start()
    assert wait(lambda: a.leading)
    b = Election(store, "b", seen["b"].append, ttl=2).start()
    time.sleep(1.0)
    assert not b.leading and store.get(keys.KSR_LEADER).value == b"a"
    stale = a.fence()
    a.stop()  # steps down: its lease is revoked, b takes over within a period
    assert wait(lambda: b.leading, 5)
    assert seen["a"] == [True, False] and seen["b"] == [True]
    ok, _ = store.txn((stale,), (Put("/contiv/k8s/namespace/x", b"{}"),))
    assert not ok  # the old leader's write is refused
    b.stop()


# ---------------------------------------------------------------- list / watch against a scripted API
class ScriptedAPI:
    """list_all answers ``lists`` (one per call, the last repeated); each
    watch plays the next script of events, then ends (or raises)."""

    def __init__(self, lists, watches):
        self.lists, self.watches = list(lists), queue.Queue()
        for w in watches:
            self.watches.put(w)
        self.calls: list[tuple] = []

    def list_all(self, k):
        self.calls.append(("list", k.resource))
        if k is not POD:
            return [], "1"
        items, rv = self.lists[0] if len(self.lists) == 1 else self.lists.pop(0)
        return [dict(i) for i in items], rv

    def watch(self, k, rv, timeout):
        self.calls.append(("watch", k.resource, rv))
        if k is not POD:
            time.sleep(0.05)
            return []
        try:
            return self.watches.get(timeout=0.2)
        except queue.Empty:
            return []

    def events(self, resp):
        for ev in resp:
            if isinstance(ev, Exception):
                raise ev
            yield ev

    def close(self, resp):
        pass


def reflect(store, api, **kw):
    r = Reflector(store, api, "r1", lease_ttl=2, watch_timeout=1, **kw).start()
    assert wait(lambda: r.ready() and r.election.leading)
    return r


def pods_in(store):
    return {kv.key.rsplit("/", 1)[1]: json.loads(kv.value) for kv in store.list(POD.prefix)[0]}


def test_a_list_then_events_are_mirrored_and_a_410_relist_prunes_what_was_missed():
    store = MemoryStore()
    store.put("/contiv/k8s/pod/default/ghost", b"{}")  # deleted while no reflector ran
    api = ScriptedAPI(
        lists=[([pod("a"), pod("b")], "10"), ([pod("a", rv="30")], "30")],
        watches=[[{"type": "ADDED", "object": pod("c", rv="11")},
                  {"type": "MODIFIED", "object": pod("a", rv="12", status={"podIP": "10.1.1.9"})},
                  {"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": "15"}}},
                  {"type": "DELETED", "object": pod("b", rv="16")}],
                 [{"type": "ERROR", "object": {"kind": "Status", "code": 410, "reason": "Expired"}}]])
    r = reflect(store, api)
    try:
        assert wait(lambda: set(pods_in(store)) == {"a"} and ("watch", "pods", "30") in api.calls)
        assert ("watch", "pods", "10") in api.calls and ("watch", "pods", "16") in api.calls  # resumed after the bookmark
        # c came and went with the relist: the relist pruned it, as it pruned ghost
        assert pods_in(store)["a"]["metadata"]["resourceVersion"] == "30"
    finally:
        r.stop()


def test_a_broken_stream_is_watched_again_from_the_last_version_and_bad_objects_skipped():
    store = MemoryStore()
    api = ScriptedAPI(lists=[([pod("a"), {"metadata": {"namespace": "default"}}], "10")],
                      watches=[[{"type": "ADDED", "object": pod("b", rv="11")}, ApiError("cut")],
                               [{"type": "ADDED", "object": pod("c", rv="12")}]])
    r = reflect(store, api)
    try:
        assert wait(lambda: set(pods_in(store)) == {"a", "b", "c"})
        assert ("watch", "pods", "11") in api.calls
    finally:
        r.stop()


class FlakyStore(MemoryStore):
    """etcd that is down for its first ``n`` transactions."""

    def __init__(self, n):
        super().__init__()
        self.down = n

    def txn(self, compare, success, failure=()):
        from agent.errors import Unavailable  # noqa: PLC0415
        if self.down > 0 and any(k.key.startswith(keys.K8S) for k in success if hasattr(k, "key")):
            self.down -= 1
            raise Unavailable("etcd is down")
        return super().txn(compare, success, failure)


def test_etcd_down_is_waited_for_and_the_reflector_resumes():
    store = FlakyStore(2)
    api = ScriptedAPI(lists=[([pod("a")], "10")], watches=[])
    r = Reflector(store, api, "r1", lease_ttl=2, watch_timeout=1).start()
    try:
        assert wait(lambda: set(pods_in(store)) == {"a"}, 10)
        assert store.down == 0
    finally:
        r.stop()


def test_only_the_leader_writes():
    store = MemoryStore()
    api = ScriptedAPI(lists=[([pod("a")], "10")], watches=[])
    leader = reflect(store, api)
    standby = Reflector(store, ScriptedAPI(lists=[([pod("zzz")], "10")], watches=[]), "r2", lease_ttl=2).start()
    try:
        time.sleep(0.5)
        assert standby.ready() and not standby.election.leading
        assert set(pods_in(store)) == {"a"}
        leader.stop()  # the standby takes over and makes etcd equal its API
        assert wait(lambda: set(pods_in(store)) == {"zzz"}, 5)
    finally:
        standby.stop()
