"""``lab apply`` / ``lab delete`` on a lab with a Kubernetes API (``lab up
--kube-api``): the objects go to the API server over HTTP, as any client's
would; the lab's control plane (:mod:`lab.kubecontrol`) wires pods and
writes EndpointSlices, the reflector mirrors everything into etcd, the
agents program it. Done once etcd holds exactly what the API holds (every
object at its resourceVersion, nothing else) and every agent has applied
that revision.

Standard library HTTP (urllib): the official client's import alone would
cost more than a lab apply's requests.
"""
from __future__ import annotations

import json
import time
import urllib.error
import urllib.request

from agent.errors import InvalidInput, NotFound, TemporaryError
from agent.model import keys

from lab.kubeobj import RESOURCES, resource


def scoped(kind: str, namespace: str | None) -> str | None:
    """``namespace`` for a namespaced kind, None for a cluster-scoped one."""
    return namespace if resource(kind).namespaced else None


class ApiObjects:
    """The objects of the API server at ``url`` (JSON over HTTP)."""

    def __init__(self, url: str, timeout: float = 30.0) -> None:
        self.url, self.timeout = url.rstrip("/"), timeout

    def _path(self, kind: str, namespace: str | None, name: str | None = None, sub: str = "") -> str:
        r = resource(kind)
        prefix = f"/apis/{r.group}/{r.version}" if r.group else f"/api/{r.version}"
        p = prefix + (f"/namespaces/{namespace}" if r.namespaced and namespace else "") + f"/{r.plural}"
        return p + (f"/{name}" if name else "") + (f"/{sub}" if sub else "")

    def _call(self, method: str, path: str, body: dict | None = None) -> dict:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.url + path, data=data, method=method,
                                     headers={"Content-Type": "application/json", "Accept": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as r:
                return json.loads(r.read() or b"{}")
        except urllib.error.HTTPError as e:
            try:
                status = json.loads(e.read())
            except ValueError:
                status = {}
            msg = status.get("message") or f"{method} {path}: {e.code}"
            if e.code == 404:
                raise NotFound(msg) from None
            if e.code in (400, 409, 422):
                raise InvalidInput(msg) from None
            raise TemporaryError(f"the lab's Kubernetes API: {msg}") from None
        except OSError as e:
            raise TemporaryError(f"the lab's Kubernetes API at {self.url} does not answer ({e})",
                                 hint="`contivctl lab status` -- is the lab's control plane running?") from None

    def get(self, kind: str, namespace: str | None, name: str) -> dict | None:
        try:
            return self._call("GET", self._path(kind, namespace, name))
        except NotFound:
            return None

    def list(self, kind: str, namespace: str | None = None) -> list[dict]:
        r = resource(kind)
        items = self._call("GET", self._path(kind, namespace)).get("items", [])
        return [{"apiVersion": r.api_version, "kind": r.kind, **o} for o in items]  # items carry neither

    def put(self, obj: dict) -> str:
        """Create or replace ``obj``; "created", "configured" or "unchanged"."""
        md = obj["metadata"]
        ns = scoped(obj["kind"], md.get("namespace"))
        cur = self.get(obj["kind"], ns, md["name"])
        if cur is None:
            self._call("POST", self._path(obj["kind"], ns), obj)
            return "created"
        if _within({k: v for k, v in obj.items() if k not in ("status", "metadata")}, cur) \
                and _meta(md, "labels") == _meta(cur["metadata"], "labels") \
                and _meta(md, "annotations") == _meta(cur["metadata"], "annotations"):
            return "unchanged"  # what the API added to the spec (defaults, a cluster IP) is not a change
        if obj["kind"] == "Pod":  # what the scheduler and kubelet added stays (as for a real kubectl apply)
            obj = {**obj, "spec": {"nodeName": cur["spec"].get("nodeName"), **obj["spec"]}}
            md = {**md, "annotations": {**(cur["metadata"].get("annotations") or {}), **(md.get("annotations") or {})}}
        body = {**cur, **obj, "metadata": {**cur["metadata"], **md,
                                           "resourceVersion": cur["metadata"]["resourceVersion"]}}
        self._call("PUT", self._path(obj["kind"], ns, md["name"]), body)
        return "configured"

    def delete(self, kind: str, namespace: str | None, name: str) -> bool:
        try:
            self._call("DELETE", self._path(kind, scoped(kind, namespace), name))
            return True
        except NotFound:
            return False


class Changes:
    """The revision of the last change under /contiv/k8s/ since it was made
    (an etcd watch): what the agents must have applied -- not the store's
    revision, which also counts writes they do not watch (their own status
    reports, IPAM records)."""

    def __init__(self, store) -> None:
        from agent.store.base import WatchBatch  # noqa: PLC0415
        self.rev, self.at = 0, time.monotonic()

        def seen(batch) -> None:
            if isinstance(batch, WatchBatch) and batch.events:
                self.rev, self.at = max(self.rev, max(e.revision for e in batch.events)), time.monotonic()
        self.start = store.revision()
        self._h = store.watch(keys.K8S, self.start + 1, seen)

    def settled(self, at_least: int, deadline: float) -> int:
        """The last change's revision once it is at least ``at_least`` (a
        write seen in etcd since the watch began) and nothing came for 50 ms."""
        want = at_least if at_least > self.start else 0
        while self.rev < want or (self.rev and time.monotonic() - self.at < 0.05):
            if time.monotonic() > deadline:
                break
            time.sleep(0.01)
        self._h.cancel()
        return max(self.rev, at_least)


#: what the API server and the lab add to metadata themselves
SERVER_SET = ("kubernetes.io/metadata.name", "lab.contiv.io/netns")


def _meta(md: dict, field: str) -> dict:
    """Labels or annotations as the manifest states them (the server's own left out)."""
    return {k: v for k, v in (md.get(field) or {}).items() if k not in SERVER_SET}


def _within(a, b) -> bool:
    """Everything ``a`` states, ``b`` states the same (``b`` may say more)."""
    if isinstance(a, dict):
        return isinstance(b, dict) and all(k in b and _within(v, b[k]) for k, v in a.items())
    if isinstance(a, list):
        return isinstance(b, list) and len(a) == len(b) and all(_within(x, y) for x, y in zip(a, b))
    return a == b


def wait_mirrored(api: ApiObjects, store, timeout: float) -> int:
    """Wait until etcd holds every object of the API at its resourceVersion
    and nothing else; the highest revision among those keys."""
    deadline = time.monotonic() + timeout
    while True:
        want = {}
        for r in RESOURCES:
            for o in api.list(r.kind):
                md = o["metadata"]
                key = keys.k8s_key(r.kind, scoped(r.kind, md.get("namespace", "")) or "", md["name"])
                want[key] = md.get("resourceVersion")
        kvs, _ = store.list(keys.K8S)
        have = {kv.key: json.loads(kv.value)["metadata"].get("resourceVersion") for kv in kvs}
        if have == want:
            return max((kv.mod_revision for kv in kvs), default=0)
        if time.monotonic() > deadline:
            late = sorted(set(want.items()) ^ set(have.items()))[:3]
            raise TemporaryError(f"the reflector has not mirrored the API into etcd within {timeout:g} s "
                                 f"(e.g. {late})", hint="see the lab's ksr.log")
        time.sleep(0.05)


def wait_pods_running(api: ApiObjects, refs: list[tuple[str, str]], timeout: float) -> None:
    """Wait until every pod of ``refs`` has its address (the control plane wired it)."""
    deadline = time.monotonic() + timeout
    pending = list(refs)
    while pending:
        pending = [r for r in pending if not ((api.get("Pod", r[0], r[1]) or {}).get("status") or {}).get("podIP")]
        if not pending:
            return
        if time.monotonic() > deadline:
            raise TemporaryError(f"pods not running within {timeout:g} s: "
                                 + ", ".join(f"{ns}/{n}" for ns, n in pending[:5]),
                                 hint="see the lab's kubecontrol.log")
        time.sleep(0.05)


def apply_via_api(kube, objs, timeout: float) -> list[dict]:
    """:meth:`lab.kube.Kube.apply` on a lab with a Kubernetes API (see the module docstring)."""
    from lab import objects  # noqa: PLC0415
    with kube.locked():
        objs = objects.order_for_apply(objs)
        kube._done, kube._total = 0, len(objs)
        results, changes = [], Changes(kube.store)
        for o in objs:
            results.append({"object": objects.ref(o), "action": kube.api.put(o)})
            kube._applied()
        deadline = time.monotonic() + timeout
        pods = [(o["metadata"]["namespace"], o["metadata"]["name"]) for o in objs if o["kind"] == "Pod"]
        wait_pods_running(kube.api, pods, timeout)
        _wait_endpoints(kube, deadline)
        last = wait_mirrored(kube.api, kube.store, max(1.0, deadline - time.monotonic()))
        kube.revision = changes.settled(last, deadline)
        kube.wait_agents(max(1.0, deadline - time.monotonic()))
        return results


def delete_via_api(kube, objs, timeout: float) -> list[dict]:
    """:meth:`lab.kube.Kube.delete` on a lab with a Kubernetes API: pods go
    when the control plane has run their CNI DEL (their namespaces gone)."""
    from lab import objects, sysnet  # noqa: PLC0415
    with kube.locked():
        deadline = time.monotonic() + timeout
        results, gone, changes = [], [], Changes(kube.store)
        for o in objs:
            md = o["metadata"]
            ns = scoped(o["kind"], md.get("namespace"))
            if o["kind"] == "Pod":
                gone.append(kube.lab.paths.pod_ns(md["namespace"], md["name"]))
            elif o["kind"] == "Namespace":
                gone += [kube.lab.paths.pod_ns(md["name"], p["metadata"]["name"]) for p in kube.list("pod", md["name"])]
                for kind in ("Pod", "Service", "EndpointSlice", "NetworkPolicy"):  # the namespace's objects
                    for x in kube.list(kind, md["name"]):
                        kube.api.delete(kind, md["name"], x["metadata"]["name"])
            found = kube.api.delete(o["kind"], ns, md["name"])
            results.append({"object": objects.ref(o), "action": "deleted" if found else "not found"})
        while any(sysnet.netns_exists(n) for n in gone):
            if time.monotonic() > deadline:
                raise TemporaryError(f"pods not stopped within {timeout:g} s", hint="see the lab's kubecontrol.log")
            time.sleep(0.05)
        _wait_endpoints(kube, deadline)
        last = wait_mirrored(kube.api, kube.store, max(1.0, deadline - time.monotonic()))
        kube.revision = changes.settled(last, deadline)
        kube.wait_agents(max(1.0, deadline - time.monotonic()))
        return results


def _wait_endpoints(kube, deadline: float) -> None:
    """Until the control plane's EndpointSlices are what the pods and Services call for."""
    from lab.kube import obj_key, same_slice  # noqa: PLC0415
    while True:
        want = kube.desired_slices()
        have = {obj_key(o): o for o in kube.list("endpointslice")}
        if all(k in have and same_slice(have[k], v) for k, v in want.items()):
            return
        if time.monotonic() > deadline:
            raise TemporaryError("the lab's endpoint controller has not caught up", hint="see kubecontrol.log")
        time.sleep(0.05)
