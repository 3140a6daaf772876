"""The lab's Kubernetes API server: watches, through the real ``kubernetes``
client -- order, resuming from a resourceVersion, bookmarks, 410 Gone, a cut
stream, timeouts (the rest: tests/unit/test_kubeapi.py)."""
from __future__ import annotations

import json
import queue
import threading
import time
import urllib.error
import urllib.request

import pytest
import urllib3

pytest.importorskip("kubernetes", reason="the kubernetes client is a test dependency: pip install -e '.[test]'")
from kubernetes import client, watch  # noqa: E402

from tests.kubeapi_helpers import pod  # noqa: E402


# -- watch ----------------------------------------------------------------------------

def collect(kube_client, n, **kw):
    """The first n events of a pod watch (then the watch is stopped)."""
    w, out = watch.Watch(), []
    for ev in w.stream(client.CoreV1Api(kube_client).list_namespaced_pod, "default", **kw):
        out.append((ev["type"], ev["raw_object"]["metadata"].get("name"),
                    int(ev["raw_object"]["metadata"]["resourceVersion"])))
        if len(out) == n:
            w.stop()
    return out


def test_watch_sees_changes_in_order(kube_client, server):
    start = server.list("pods", "default")["metadata"]["resourceVersion"]
    server.create(pod("a"))
    server.patch("pods", "default", "a", {"metadata": {"labels": {"x": "1"}}})
    server.delete("pods", "default", "a")
    events = collect(kube_client, 3, resource_version=start)
    assert [(t, n) for t, n, _ in events] == [("ADDED", "a"), ("MODIFIED", "a"), ("DELETED", "a")]
    versions = [v for _, _, v in events]
    assert versions == sorted(versions) and len(set(versions)) == 3 and versions[0] > int(start)


def test_watch_from_a_version_gets_exactly_the_later_events(kube_client, server):
    server.create(pod("a"))
    b = server.create(pod("b"))
    server.create(pod("c"))
    server.update_status({**server.get("pods", "default", "a"), "status": {"phase": "Running"}})
    assert [(t, n) for t, n, _ in collect(kube_client, 2, resource_version=b["metadata"]["resourceVersion"])] == \
        [("ADDED", "c"), ("MODIFIED", "a")]
    # without a version: the current state as ADDED events first
    assert [(t, n) for t, n, _ in collect(kube_client, 3)] == [("ADDED", "a"), ("ADDED", "b"), ("ADDED", "c")]


def test_watch_bookmarks(kube_client, server):
    start = server.create(pod("a"))["metadata"]["resourceVersion"]
    server.create({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1"}})  # another kind
    w = watch.Watch()
    seen = []
    for ev in w.stream(client.CoreV1Api(kube_client).list_namespaced_pod, "default", resource_version=start,
                       allow_watch_bookmarks=True, timeout_seconds=5):
        seen.append(ev)
        w.stop()
    assert [e["type"] for e in seen] == ["BOOKMARK"]
    assert seen[0]["raw_object"]["metadata"]["resourceVersion"] == str(server.store.resource_version)
    assert w.resource_version == str(server.store.resource_version)   # the client resumes from it


def test_watch_from_compacted_version_is_410(kube_client, server):
    old = server.create(pod("a"))["metadata"]["resourceVersion"]
    server.create(pod("b"))
    server.compact()
    v1 = client.CoreV1Api(kube_client)
    with pytest.raises(client.ApiException) as e:
        collect(kube_client, 1, resource_version=old, timeout_seconds=5)
    assert e.value.status == 410 and "Expired" in e.value.reason
    # on the wire: HTTP 200, one ERROR event carrying a 410 Status, then a clean end
    with urllib.request.urlopen(f"{server.url}/api/v1/namespaces/default/pods?watch=true"
                                f"&resourceVersion={old}", timeout=5) as r:
        lines = [json.loads(x) for x in r.read().splitlines()]
    assert [ev["type"] for ev in lines] == ["ERROR"]
    st = lines[0]["object"]
    assert (st["kind"], st["code"], st["reason"]) == ("Status", 410, "Expired")
    assert st["message"].startswith(f"too old resource version: {old} ")
    # the current version is fine
    now = v1.list_namespaced_pod("default").metadata.resource_version
    server.create(pod("c"))
    assert [n for _, n, _ in collect(kube_client, 1, resource_version=now)] == ["c"]


def test_cut_watches_breaks_the_stream_and_a_rewatch_loses_nothing(kube_client, server):
    start = server.list("pods")["metadata"]["resourceVersion"]
    events, ended = queue.Queue(), queue.Queue()

    def watcher():
        try:
            for ev in watch.Watch().stream(client.CoreV1Api(kube_client).list_namespaced_pod, "default",
                                           resource_version=start, _request_timeout=10):
                events.put(ev["raw_object"])
            ended.put(None)
        except Exception as e:      # urllib3's ProtocolError: the chunked stream broke
            ended.put(e)
    t = threading.Thread(target=watcher, daemon=True)
    t.start()
    server.create(pod("a"))
    last = events.get(timeout=5)["metadata"]["resourceVersion"]
    assert server.cut_watches() == 1
    outcome = ended.get(timeout=5)
    # not a clean end: the chunked stream stops without its terminating chunk
    assert isinstance(outcome, urllib3.exceptions.ProtocolError), outcome
    t.join(5)
    server.create(pod("b"))                   # while nobody watches
    assert [n for _, n, _ in collect(kube_client, 1, resource_version=last)] == ["b"]


def test_timeout_seconds_ends_a_watch_cleanly(kube_client, server):
    t0 = time.monotonic()
    out = collect(kube_client, 99, timeout_seconds=1)
    assert out == [] and 0.9 < time.monotonic() - t0 < 3
