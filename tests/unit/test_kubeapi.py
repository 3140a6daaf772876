"""The lab's Kubernetes API server (lab/kubeapi.py), driven by the real
``kubernetes`` client (and kubectl where installed) over HTTP, plus its
in-process API."""
from __future__ import annotations

import os
import shutil
import subprocess
import threading
import time
import urllib.error
import urllib.request

import pytest

kubernetes = pytest.importorskip("kubernetes")
from kubernetes import client, config  # noqa: E402

from agent.errors import InvalidInput  # noqa: E402
from lab.kubeapi import KubeAPIServer  # noqa: E402
from lab.kubeobj import Expired, NotFoundError, WatchCut  # noqa: E402
from tests.kubeapi_helpers import api_error, own, pod, rv  # noqa: E402


# -- CRUD of every kind ---------------------------------------------------------------

# (API class, method suffix, namespaced, a body, a spec change checked by replace)
KINDS = [
    (client.CoreV1Api, "namespace", False,
     {"metadata": {"name": "team"}}, None),
    (client.CoreV1Api, "pod", True,
     {"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "a"}]}},
     ("spec", {"containers": [{"name": "c", "image": "b"}]})),
    (client.CoreV1Api, "service", True,
     {"metadata": {"name": "s"}, "spec": {"ports": [{"port": 80}]}},
     ("spec", {"ports": [{"port": 81}]})),
    (client.CoreV1Api, "node", False,
     {"metadata": {"name": "n1"}, "spec": {"podCIDR": "10.1.1.0/24"}},
     ("spec", {"podCIDR": "10.1.2.0/24"})),
    (client.DiscoveryV1Api, "endpoint_slice", True,
     {"metadata": {"name": "s-1"}, "addressType": "IPv4", "endpoints": []},
     ("endpoints", [{"addresses": ["10.1.1.5"]}])),
    (client.NetworkingV1Api, "network_policy", True,
     {"metadata": {"name": "deny"}, "spec": {"podSelector": {}}},
     ("spec", {"podSelector": {"matchLabels": {"a": "b"}}})),
]


@pytest.mark.parametrize("cls,suffix,namespaced,body,change", KINDS, ids=[k[1] for k in KINDS])
def test_crud_every_kind(kube_client, cls, suffix, namespaced, body, change):
    typed = cls(kube_client)
    m = (lambda verb: getattr(typed, f"{verb}_namespaced_{suffix}")) if namespaced else \
        (lambda verb: getattr(typed, f"{verb}_{suffix}"))
    ns = ("default",) if namespaced else ()
    name = body["metadata"]["name"]
    created = m("create")(*ns, body)
    assert created.metadata.name == name and created.metadata.uid and created.metadata.creation_timestamp
    got = m("read")(name, *ns)
    assert got.metadata.uid == created.metadata.uid and rv(got) == rv(created)
    listed = m("list")(*ns)
    assert name in [o.metadata.name for o in listed.items]
    assert int(listed.metadata.resource_version) >= rv(created)

    raw = kube_client.sanitize_for_serialization(got)
    if change:
        raw[change[0]] = change[1]
    raw["metadata"]["labels"] = {"v": "2"}
    replaced = m("replace")(name, *ns, raw)
    assert rv(replaced) > rv(got) and own(replaced.metadata.labels) == {"v": "2"}
    if change:
        assert kube_client.sanitize_for_serialization(replaced)[change[0]] == change[1]
    patched = m("patch")(name, *ns, {"metadata": {"labels": {"p": "1"}}})
    assert own(patched.metadata.labels) == {"v": "2", "p": "1"} and rv(patched) > rv(replaced)

    m("delete")(name, *ns)
    status, st = api_error(m("read"), name, *ns)
    assert status == 404 and st["reason"] == "NotFound" and st["kind"] == "Status"


def test_errors_are_status_objects(kube_client):
    v1 = client.CoreV1Api(kube_client)
    v1.create_namespaced_pod("default", pod("a"))
    status, st = api_error(v1.create_namespaced_pod, "default", pod("a"))
    assert (status, st["reason"], st["message"]) == (409, "AlreadyExists", 'pods "a" already exists')
    stale = v1.read_namespaced_pod("a", "default")
    v1.patch_namespaced_pod("a", "default", {"metadata": {"labels": {"x": "1"}}})
    status, st = api_error(v1.replace_namespaced_pod, "a", "default", stale)
    assert (status, st["reason"]) == (409, "Conflict") and "has been modified" in st["message"]
    # a resourceVersion in a patch is a precondition too
    status, _ = api_error(v1.patch_namespaced_pod, "a", "default",
                          {"metadata": {"resourceVersion": stale.metadata.resource_version}})
    assert status == 409
    status, st = api_error(v1.create_namespaced_pod, "nowhere", pod("b", ns="nowhere"))
    assert (status, st["message"]) == (404, 'namespaces "nowhere" not found')
    status, st = api_error(v1.create_namespaced_pod, "default",
                           {"metadata": {}, "spec": {"containers": []}})
    assert (status, st["reason"]) == (422, "Invalid")
    status, _ = api_error(v1.create_namespaced_pod, "default", pod("c", ns="kube-system"))
    assert status == 400


def test_generate_name_and_unconditional_update(kube_client):
    v1 = client.CoreV1Api(kube_client)
    p = v1.create_namespaced_pod("default", {"metadata": {"generateName": "web-"},
                                             "spec": {"containers": []}})
    assert p.metadata.name.startswith("web-") and len(p.metadata.name) == 9
    body = kube_client.sanitize_for_serialization(p)
    body["metadata"].pop("resourceVersion")         # no version: last writer wins
    body["metadata"]["labels"] = {"k": "v"}
    assert v1.replace_namespaced_pod(p.metadata.name, "default", body).metadata.labels == {"k": "v"}


def test_patch_types_and_delete_collection(kube_client, server):
    v1 = client.CoreV1Api(kube_client)
    server.create(pod("a", labels={"app": "web", "tier": "front"}))
    # a list body is a JSON patch (RFC 6902)
    p = v1.patch_namespaced_pod("a", "default", [{"op": "replace", "path": "/metadata/labels/app", "value": "db"},
                                                 {"op": "remove", "path": "/metadata/labels/tier"}])
    assert p.metadata.labels == {"app": "db"}
    status, st = api_error(v1.patch_namespaced_pod, "a", "default",
                           [{"op": "test", "path": "/metadata/labels/app", "value": "web"}])
    assert (status, st["reason"]) == (422, "Invalid")
    # a dict body is a strategic merge patch, applied as a merge patch: null removes
    # a key, $-directives are dropped, lists are replaced
    p = v1.patch_namespaced_pod("a", "default", {"metadata": {"labels": {"app": None, "x": "1"}},
                                                 "$setElementOrder/containers": [{"name": "c"}]})
    assert p.metadata.labels == {"x": "1"} and "$setElementOrder/containers" not in server.get("pod", "default", "a")
    req = urllib.request.Request(f"{server.url}/api/v1/namespaces/default/pods/a", method="PATCH", data=b"{}",
                                 headers={"Content-Type": "application/apply-patch+yaml"})
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(req, timeout=5)
    assert e.value.code == 415
    server.create(pod("b", labels={"x": "1"}))
    server.create(pod("c"))
    v1.delete_collection_namespaced_pod("default", label_selector="x=1")
    assert [o["metadata"]["name"] for o in server.list("pods", "default")["items"]] == ["c"]


# -- list: paging and selectors -------------------------------------------------------

def test_list_paging_is_a_consistent_snapshot(kube_client, server):
    v1 = client.CoreV1Api(kube_client)
    for i in range(7):
        server.create(pod(f"p{i}"))
    first = v1.list_namespaced_pod("default", limit=3)
    assert [p.metadata.name for p in first.items] == ["p0", "p1", "p2"]
    assert first.metadata.remaining_item_count == 4 and first.metadata._continue
    server.create(pod("p3a"))                           # after the first page: not in this list
    server.delete("pods", "default", "p5")
    names, token = [p.metadata.name for p in first.items], first.metadata._continue
    while token:
        page = v1.list_namespaced_pod("default", limit=3, _continue=token)
        assert page.metadata.resource_version == first.metadata.resource_version
        names += [p.metadata.name for p in page.items]
        token = page.metadata._continue
    assert names == [f"p{i}" for i in range(7)]
    # the snapshot's version leaves the history: the token is expired
    server.compact()
    status, st = api_error(v1.list_namespaced_pod, "default", limit=3, _continue=first.metadata._continue)
    assert (status, st["reason"]) == (410, "Expired")


def test_list_at_exact_resource_version(kube_client, server):
    v1 = client.CoreV1Api(kube_client)
    a = server.create(pod("a"))
    server.create(pod("b"))
    server.delete("pods", "default", "a")
    at = v1.list_namespaced_pod("default", resource_version=a["metadata"]["resourceVersion"],
                                resource_version_match="Exact")
    assert [p.metadata.name for p in at.items] == ["a"]
    server.compact()
    status, st = api_error(v1.list_namespaced_pod, "default", resource_version=a["metadata"]["resourceVersion"],
                           resource_version_match="Exact")
    assert (status, st["reason"]) == (410, "Expired")
    status, st = api_error(v1.list_namespaced_pod, "default", resource_version="999999")
    assert (status, st["reason"]) == (504, "Timeout")


@pytest.mark.parametrize("selector,expected", [
    ("app=web", ["a", "b"]),
    ("app==web,tier=front", ["a"]),
    ("app!=web", ["c", "d"]),
    ("app in (web, db)", ["a", "b", "c"]),
    ("app notin (web)", ["c", "d"]),
    ("tier", ["a"]),
    ("!app", ["d"]),
])
def test_label_selectors(kube_client, server, selector, expected):
    server.create(pod("a", labels={"app": "web", "tier": "front"}))
    server.create(pod("b", labels={"app": "web"}))
    server.create(pod("c", labels={"app": "db"}))
    server.create(pod("d"))
    got = client.CoreV1Api(kube_client).list_namespaced_pod("default", label_selector=selector)
    assert [p.metadata.name for p in got.items] == expected


def test_field_selectors(kube_client, server):
    v1 = client.CoreV1Api(kube_client)
    server.create(pod("a", node="n1"))
    server.create(pod("b", node="n2"))
    server.create(pod("a", ns="kube-system", node="n1"))
    names = lambda lst: [(p.metadata.namespace, p.metadata.name) for p in lst.items]  # noqa: E731
    assert names(v1.list_pod_for_all_namespaces(field_selector="spec.nodeName=n1")) == \
        [("default", "a"), ("kube-system", "a")]
    assert names(v1.list_pod_for_all_namespaces(field_selector="metadata.name=a,metadata.namespace!=default")) \
        == [("kube-system", "a")]
    assert names(v1.list_namespaced_pod("default", field_selector="spec.nodeName!=n1")) == [("default", "b")]
    status, st = api_error(v1.list_pod_for_all_namespaces, field_selector="spec.bogus=1")
    assert status == 400 and "field label not supported" in st["message"]


# -- authorization, status subresource, namespaces ------------------------------------

def test_forbid_answers_403_with_the_real_message(kube_client, server):
    v1 = client.CoreV1Api(kube_client)
    server.create(pod("a", ns="kube-system"))
    server.forbid("list", "pods")
    status, st = api_error(v1.list_pod_for_all_namespaces)
    assert (status, st["reason"]) == (403, "Forbidden")
    assert st["message"] == ('pods is forbidden: User "system:serviceaccount:kube-system:contiv-ksr" '
                             'cannot list resource "pods" in API group "" at the cluster scope')
    server.forbid("get", "pods", "kube-system")
    status, st = api_error(v1.read_namespaced_pod, "a", "kube-system")
    assert status == 403 and st["message"].startswith('pods "a" is forbidden') and \
        st["message"].endswith('cannot get resource "pods" in API group "" in the namespace "kube-system"')
    server.forbid("watch", "endpointslices")
    status, st = api_error(client.DiscoveryV1Api(kube_client).list_endpoint_slice_for_all_namespaces, watch=True)
    assert status == 403 and 'API group "discovery.k8s.io"' in st["message"]
    assert v1.list_namespaced_service("default").items == []     # other resources unaffected
    server.clear_forbidden()
    assert len(v1.list_pod_for_all_namespaces().items) == 1


def test_status_subresource_changes_only_status(kube_client, server):
    v1 = client.CoreV1Api(kube_client)
    created = v1.create_namespaced_pod("default", {**pod("a"), "status": {"phase": "Running"}})
    assert created.status.phase == "Pending"        # status is the server's to set on create
    body = kube_client.sanitize_for_serialization(created)
    body["status"] = {"phase": "Running", "podIP": "10.1.1.2"}
    body["metadata"]["labels"] = {"ignored": "yes"}
    s = v1.replace_namespaced_pod_status("a", "default", body)
    assert (s.status.phase, s.status.pod_ip, s.metadata.labels) == ("Running", "10.1.1.2", {})
    body = kube_client.sanitize_for_serialization(s)
    body["status"]["phase"] = "Failed"               # through the main resource: status ignored
    body["metadata"]["labels"] = {"kept": "yes"}
    m = v1.replace_namespaced_pod("a", "default", body)
    assert (m.status.phase, m.metadata.labels) == ("Running", {"kept": "yes"})
    p = v1.patch_namespaced_pod_status("a", "default", {"status": {"phase": "Succeeded"},
                                                         "spec": {"nodeName": "x"}})
    assert (p.status.phase, p.spec.node_name) == ("Succeeded", None)
    # an update that changes nothing is no change: same version, no event
    assert rv(v1.replace_namespaced_pod("a", "default", kube_client.sanitize_for_serialization(p))) == rv(p)


def test_deleting_a_namespace_deletes_its_objects(server):
    server.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "t"}})
    server.create(pod("a", ns="t"))
    server.create({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                   "metadata": {"name": "p", "namespace": "t"}, "spec": {}})
    w = server.watch("pods", resource_version=str(server.store.resource_version))
    server.delete("namespaces", None, "t")
    ev = w.next_event(wait=1)
    assert (ev["type"], ev["object"]["metadata"]["name"]) == ("DELETED", "a")
    assert server.list("networkpolicies")["items"] == []
    with pytest.raises(NotFoundError):
        server.get("namespaces", None, "t")
    # as the real server does, a Namespace is labelled with its name, whatever an update says
    ns = server.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "u"}})
    assert ns["metadata"]["labels"] == {"kubernetes.io/metadata.name": "u"}
    ns["metadata"]["labels"] = {"team": "x"}
    assert server.update(ns)["metadata"]["labels"] == {"team": "x", "kubernetes.io/metadata.name": "u"}


# -- in-process API --------------------------------------------------------------------

def test_in_process_watch_selection_and_cut(server):
    w = server.watch("pods", "default", label_selector="app=web",
                     resource_version=str(server.store.resource_version), timeout=5)
    server.create(pod("a", labels={"app": "web"}))
    server.create(pod("b"))                                            # never selected
    server.patch("pods", "default", "a", {"metadata": {"labels": {"app": "db"}}})
    server.patch("pods", "default", "b", {"metadata": {"labels": {"app": "web"}}})
    got = [(e["type"], e["object"]["metadata"]["name"]) for e in (w.next_event(wait=1) for _ in range(3))]
    # leaving the selection is a DELETED, entering it an ADDED, for this watcher
    assert got == [("ADDED", "a"), ("DELETED", "a"), ("ADDED", "b")]
    server.cut_watches()
    with pytest.raises(WatchCut):
        w.next_event(wait=1)
    quick = server.watch("pods", timeout=0.2)
    assert [e["object"]["metadata"]["name"] for e in quick] == ["a", "b"]   # initial state; then ends


def test_subscribe_delivers_in_order_and_survives_a_cut(kube_client, server):
    server.create(pod("a"))
    got, seen = [], threading.Event()

    def cb(type_, obj):
        got.append((type_, obj["metadata"]["name"]))
        if obj["metadata"]["name"] == "c":
            seen.set()
    sub = server.subscribe(cb, "pods", "default")
    try:
        deadline = time.monotonic() + 5
        while not got and time.monotonic() < deadline:
            time.sleep(0.01)
        client.CoreV1Api(kube_client).create_namespaced_pod("default", pod("b"))
        time.sleep(0.05)
        server.cut_watches()                      # the subscription re-watches from its last version
        server.create(pod("c"))
        assert seen.wait(5)
    finally:
        sub.close()
    assert got == [("ADDED", "a"), ("ADDED", "b"), ("ADDED", "c")]


def test_in_process_errors_are_typed(server):
    with pytest.raises(NotFoundError):
        server.get("pod", "default", "nope")
    server.create(pod("a"))
    server.compact()
    w = server.watch("pods", resource_version="1")
    assert [e["type"] for e in w] == ["ERROR"]
    with pytest.raises(Expired):
        server.list("pods", resource_version="1", resource_version_match="Exact")


def test_load_yaml(server, tmp_path):
    text = """
apiVersion: v1
kind: Pod
metadata: {name: web, namespace: team}
spec: {containers: [{name: c, image: nginx}]}
---
apiVersion: v1
kind: Namespace
metadata: {name: team}
---
apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: Service
  metadata: {name: web}
  spec: {ports: [{port: 80}]}
"""
    made = server.load_yaml(text)
    assert [(o["kind"], o["metadata"].get("namespace")) for o in made] == \
        [("Namespace", None), ("Pod", "team"), ("Service", "default")]
    assert server.get("services", "default", "web")["metadata"]["uid"]
    f = tmp_path / "np.yaml"
    f.write_text("apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\n"
                 "metadata: {name: deny, namespace: team}\nspec: {podSelector: {}}\n")
    assert server.load_file(str(f))[0]["metadata"]["name"] == "deny"
    with pytest.raises(InvalidInput):
        server.load_yaml("apiVersion: v1\nkind: Pod\nmetadata: {}\n")
    with pytest.raises(InvalidInput):
        server.load_yaml("kind: [unclosed\n")


# -- discovery, kubeconfig, kubectl ---------------------------------------------------

def test_discovery(kube_client, server):
    core = client.CoreV1Api(kube_client).get_api_resources()
    names = {r.name: r for r in core.resources}
    assert {"pods", "pods/status", "services", "nodes", "namespaces"} <= set(names)
    assert names["pods"].namespaced and not names["nodes"].namespaced and "watch" in names["pods"].verbs
    groups = {g.name: g.preferred_version.group_version for g in client.ApisApi(kube_client).get_api_versions().groups}
    assert groups == {"discovery.k8s.io": "discovery.k8s.io/v1", "networking.k8s.io": "networking.k8s.io/v1"}
    net = client.NetworkingV1Api(kube_client).get_api_resources()
    assert [r.kind for r in net.resources] == ["NetworkPolicy"]
    assert client.VersionApi(kube_client).get_code().major == "1"
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(f"{server.url}/apis/apps/v1/deployments", timeout=5)
    assert e.value.code == 404


def test_kubeconfig_with_token(tmp_path):
    with KubeAPIServer(token="s3cret") as srv:
        path = tmp_path / "kc"
        srv.kubeconfig(str(path), namespace="kube-system")
        assert os.stat(path).st_mode & 0o777 == 0o600
        config.load_kube_config(config_file=str(path))      # the module-level loader accepts it
        c = config.new_client_from_config(config_file=str(path))
        try:
            assert "default" in [n.metadata.name for n in client.CoreV1Api(c).list_namespace().items]
        finally:
            c.close()
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(f"{srv.url}/api/v1/namespaces", timeout=5)
        assert e.value.code == 401


def test_loopback_only():
    with pytest.raises(InvalidInput):
        KubeAPIServer(host="0.0.0.0")


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed")
def test_kubectl(server, tmp_path):
    server.create(pod("web", labels={"app": "web"}))
    server.kubeconfig(str(tmp_path / "kc"))
    env = dict(os.environ, KUBECONFIG=str(tmp_path / "kc"), HOME=str(tmp_path))
    out = subprocess.run(["kubectl", "get", "pods", "-l", "app=web", "-o", "name"], env=env,
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["pod/web"]
