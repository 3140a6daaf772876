"""The reflector for real: the official ``kubernetes`` client against the
lab's Kubernetes API server (real HTTP list and watch JSON, lab/kubeapi.py)
and a real etcd -- initial sync, updates, deletes, a watch cut mid-stream, a
410 relist that prunes what was deleted meanwhile, two replicas with one
leader, RBAC refusing, bad objects, an API server that comes back."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from agent.model import keys
from ksr.kube import KubeClient
from ksr.reflector import Reflector
from lab.kubeapi import KubeAPIServer
from tests.helpers import eventually


def ns(name):
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": {"team": name}}}


def pod(name, node="node1", ip="10.1.1.2", namespace="shop"):
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": namespace, "labels": {"app": "web"},
                         "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}"}},
            "spec": {"nodeName": node, "containers": [{"name": "c", "image": "x",
                                                       "env": [{"name": "TOKEN", "value": "s3cret"}]}]},
            "status": {"phase": "Running", "podIP": ip}}


def service(name, namespace="shop"):
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": namespace},
            "spec": {"clusterIP": "10.96.0.10", "selector": {"app": "web"}, "ports": [{"port": 80}]}}


def netpol(name, namespace="shop"):
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"podSelector": {}, "policyTypes": ["Ingress"]}}


def slice_(name, namespace="shop"):
    return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": name, "namespace": namespace, "labels": {"kubernetes.io/service-name": "web"}},
            "addressType": "IPv4", "endpoints": [{"addresses": ["10.1.1.2"]}], "ports": [{"port": 80}]}


def node(name):
    return {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name},
            "spec": {"podCIDR": "10.1.7.0/24"},
            "status": {"addresses": [{"type": "InternalIP", "address": "192.168.56.7"}]}}


def wait(pred, timeout=10.0):
    return eventually(pred, timeout)


def value(store, key):
    kv = store.get(key)
    return json.loads(kv.value) if kv else None


@pytest.fixture
def api(tmp_path):
    server = KubeAPIServer(bookmark_interval=0.5, builtin_namespaces=False).start()
    server.kubeconfig(str(tmp_path / "kubeconfig"))
    try:
        yield server, str(tmp_path / "kubeconfig")
    finally:
        server.stop()


@pytest.fixture
def reflector(api, etcd_store):
    server, kubeconfig = api
    counts: list[tuple] = []
    r = Reflector(etcd_store, KubeClient(kubeconfig), "r1", lease_ttl=2, watch_timeout=2,
                  counter=lambda *a: counts.append(a))
    r.counts = counts
    yield r
    r.stop()


def create_pod(server, p):
    """A pod as the kubelet leaves it: created, then its status (create drops status, as the real API does)."""
    status = p.pop("status")
    got = server.create(p)
    got["status"] = status
    return server.update_status(got)


def start(r):
    r.start()
    assert wait(lambda: r.election.leading and r.ready())
    return r


def test_initial_sync_updates_and_deletes_reach_etcd_in_the_agents_layout(api, reflector, etcd_store):
    server, _ = api
    for o in (ns("shop"), service("web"), netpol("deny"), slice_("web-abc"), node("node1")):
        server.create(o)
    create_pod(server, pod("web-1"))
    start(reflector)
    got = value(etcd_store, "/contiv/k8s/pod/shop/web-1")
    assert got["kind"] == "Pod" and got["apiVersion"] == "v1" and got["status"]["podIP"] == "10.1.1.2"
    assert "annotations" not in got["metadata"] and "s3cret" not in json.dumps(got)  # stripped
    for key in ("/contiv/k8s/namespace/shop", "/contiv/k8s/service/shop/web", "/contiv/k8s/networkpolicy/shop/deny",
                "/contiv/k8s/endpointslice/shop/web-abc", "/contiv/k8s/node/node1"):
        assert value(etcd_store, key) is not None, key
    # an update and a delete, through the API as a controller makes them
    p = server.get("pods", "shop", "web-1")
    p["status"]["podIP"] = "10.1.1.9"
    server.update_status(p)
    server.delete("services", "shop", "web")
    create_pod(server, pod("web-2", ip="10.1.1.3"))
    assert wait(lambda: (value(etcd_store, "/contiv/k8s/pod/shop/web-1") or {}).get("status", {}).get("podIP")
                == "10.1.1.9")
    assert wait(lambda: etcd_store.get("/contiv/k8s/service/shop/web") is None)
    assert wait(lambda: etcd_store.get("/contiv/k8s/pod/shop/web-2") is not None)


def test_a_watch_cut_mid_stream_loses_nothing(api, reflector, etcd_store):
    server, _ = api
    server.create(ns("shop"))
    start(reflector)
    for i in range(5):
        assert server.cut_watches() >= 0
        server.create(pod(f"p{i}", ip=f"10.1.1.{10 + i}"))
    assert wait(lambda: len(etcd_store.list("/contiv/k8s/pod/")[0]) == 5)


def test_a_410_relist_prunes_what_was_deleted_meanwhile(api, reflector, etcd_store):
    server, _ = api
    server.create(ns("shop"))
    for i in range(3):
        server.create(pod(f"p{i}", ip=f"10.1.1.{10 + i}"))
    start(reflector)
    assert wait(lambda: len(etcd_store.list("/contiv/k8s/pod/")[0]) == 3)
    before = sum(1 for c in reflector.counts if c[:3] == ("relists", "pods", "gone"))
    # the watch drops, and before it is back the object goes and the history with it
    server.cut_watches()
    server.delete("pods", "shop", "p1")
    server.compact()
    assert wait(lambda: etcd_store.get("/contiv/k8s/pod/shop/p1") is None)
    assert sum(1 for c in reflector.counts if c[:3] == ("relists", "pods", "gone")) > before
    assert {kv.key for kv in etcd_store.list("/contiv/k8s/pod/")[0]} == {"/contiv/k8s/pod/shop/p0",
                                                                         "/contiv/k8s/pod/shop/p2"}


def test_two_reflectors_one_leader_and_the_standby_takes_over(api, etcd_store):
    server, kubeconfig = api
    server.create(ns("shop"))
    a = Reflector(etcd_store, KubeClient(kubeconfig), "a", lease_ttl=2, watch_timeout=2).start()
    b = Reflector(etcd_store, KubeClient(kubeconfig), "b", lease_ttl=2, watch_timeout=2).start()
    try:
        assert wait(lambda: a.election.leading or b.election.leading)
        time.sleep(1.0)
        assert a.election.leading != b.election.leading
        leader, standby = (a, b) if a.election.leading else (b, a)
        assert etcd_store.get(keys.KSR_LEADER).value.decode() == leader.identity
        leader.stop()
        server.create(pod("after"))
        assert wait(lambda: standby.election.leading, 10)
        assert wait(lambda: etcd_store.get("/contiv/k8s/pod/shop/after") is not None)
    finally:
        a.stop()
        b.stop()


def test_an_object_that_cannot_be_mirrored_is_skipped_and_the_rest_proceeds(api, reflector, etcd_store):
    server, _ = api
    server.create(ns("shop"))
    bad = pod("web-x")
    bad["metadata"]["name"] = "x" * 300  # longer than any etcd key segment agents accept
    try:
        server.create(bad)
    except Exception:  # noqa: BLE001 -- a server that refuses it: the case cannot be built here
        pytest.skip("the API server refused the object itself")
    server.create(pod("web-ok"))
    start(reflector)
    assert etcd_store.get("/contiv/k8s/pod/shop/web-ok") is not None
    assert any(c[:3] == ("errors", "pods", "bad-object") for c in reflector.counts)


def test_an_api_server_that_is_down_is_waited_for(api, etcd_store, tmp_path):
    server, kubeconfig = api
    server.create(ns("late"))
    port = server.port
    server.stop()
    r = Reflector(etcd_store, KubeClient(kubeconfig), "r1", lease_ttl=2, watch_timeout=2).start()
    try:
        time.sleep(1.5)
        assert etcd_store.get("/contiv/k8s/namespace/late") is None
        again = KubeAPIServer(port=port, builtin_namespaces=False).start()
        try:
            again.create(ns("late"))
            assert wait(lambda: etcd_store.get("/contiv/k8s/namespace/late") is not None, 40)
        finally:
            again.stop()
    finally:
        r.stop()


def test_rbac_forbidden_is_one_line_naming_verb_resource_and_group(api, etcd_endpoint):
    server, kubeconfig = api
    server.forbid("list", "networkpolicies")
    r = subprocess.run([sys.executable, "-m", "contivctl.main", "ksr", "run", "--kubeconfig", kubeconfig,
                        "--etcd", etcd_endpoint, "--health-address", "127.0.0.1:0"],
                       capture_output=True, text=True, timeout=60, env={**os.environ, "NO_COLOR": "1"})
    assert r.returncode == 5, r.stderr
    lines = r.stderr.strip().splitlines()
    assert lines[0].startswith("error: ") and len(lines) <= 2, r.stderr
    assert "list" in lines[0] and "networkpolicies" in lines[0] and "networking.k8s.io" in lines[0], lines[0]
