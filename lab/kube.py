"""The lab's stand-in for Kubernetes: API server, scheduler, kubelet and
endpoint controller, writing into etcd exactly where the reflector would.

* API server: objects are validated (:mod:`lab.objects`), given a uid and a
  creation timestamp, Services a cluster IP and node ports, and stored as JSON
  under ``/contiv/k8s/<kind>/<namespace>/<name>``.
* Scheduler: ``spec.nodeName`` is honoured, otherwise the node with the
  fewest pods gets the pod.
* Kubelet: a pod gets its own network namespace and is wired by the real
  ``contiv-cni`` (ADD on create, DEL on delete, as a runtime calls it); the
  lab's responder then listens on every declared containerPort, after which
  the pod's status says Running/Ready with its IP.
* Endpoint controller: one EndpointSlice per Service and distinct target-port
  mapping, with ready/serving/terminating conditions.

``apply``/``delete`` return once every agent reports (``/contiv/status``) that
it has programmed the resulting etcd revision, or fail naming the laggards.
"""
from __future__ import annotations

import concurrent.futures
import fcntl
import ipaddress
import json
import time
import uuid
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import Callable, Iterable

from agent.errors import InvalidInput, NotFound, TemporaryError
from agent.model import keys
from agent.model.records import AgentStatus
from agent.store.base import Delete, ModRevisionIs
from lab import objects, sysnet
from lab.cluster import Lab, LabState, Step
from lab.cniexec import Runtime
from lab.responder import ResponderClient

SERVICE_CIDR = "10.96.0.0/16"
NETNS_ANNOTATION = "lab.contiv.io/netns"
MANAGED_BY = "lab.contiv.io"
WORKERS = 8


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _kind_seg(obj: dict) -> str:
    return keys.KIND_SEGMENT[obj["kind"]]


def same_slice(a: dict, b: dict) -> bool:
    """Two EndpointSlices say the same (what the server adds to metadata aside)."""
    return all(a.get(f) == b.get(f) for f in ("addressType", "endpoints", "ports")) \
        and a["metadata"].get("labels") == b["metadata"].get("labels")


def obj_key(obj: dict) -> str:
    md = obj["metadata"]
    return keys.k8s_key(obj["kind"], md.get("namespace", ""), md["name"])


class Kube:
    """See the module docstring. One instance per command; state lives in etcd."""

    def __init__(self, lab: Lab, progress: Callable[[str], None] | None = None,
                 step: Step | None = None) -> None:
        """``progress`` receives messages, ``step`` (what, done, total) counts
        what ``apply``/``delete`` have done (``objects applied``, ``objects
        deleted``, ``agents synced``); both optional, the lab prints nothing."""
        self.lab = lab
        self.state: LabState = lab.state()
        if not self.state.complete:
            raise InvalidInput(f"lab {lab.name} is not completely up",
                               hint=f"`contivctl lab down --name {lab.name}` and up again")
        self.store = lab.store()
        self.runtime = Runtime(lab.cni_path())
        self.responder = ResponderClient(lab.paths.responder_socket)
        self.say = progress or (lambda _m: None)
        self.step = step or (lambda _w, _d, _t: None)
        self._done = self._total = 0  # what apply/delete have done, for step
        self.revision = 0
        # a lab with a Kubernetes API (lab up --kube-api): objects go through it
        url = (self.state.extra.get("kube_api") or {}).get("url")
        if url:
            from lab.kubeclient import ApiObjects  # noqa: PLC0415
        self.api = ApiObjects(url) if url else None

    # ------------------------------------------------------------------ helpers
    @contextmanager
    def locked(self):
        """Lab commands that change objects run one at a time."""
        with open(self.lab.paths.lock, "a") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)

    def _put(self, obj: dict) -> None:
        self.revision = max(self.revision, self.store.put(obj_key(obj), json.dumps(obj).encode()))

    def _delete_key(self, key: str) -> None:
        # Wait for the revision of *this* delete, not the store's current one:
        # by now that may already be a write the agents do not watch (their own
        # status reports, IPAM records of a CNI DEL), which they never "apply".
        kv = self.store.get(key)
        if kv is None:
            return
        deleted, rev = self.store.txn((ModRevisionIs(key, kv.mod_revision),), (Delete(key),))
        if deleted:
            self.revision = max(self.revision, rev)

    def get(self, kind: str, namespace: str, name: str) -> dict | None:
        if self.api is not None:
            return self.api.get(kind, namespace, name)
        kv = self.store.get(keys.k8s_key(kind, namespace, name))
        return json.loads(kv.value) if kv else None

    def list(self, kind: str, namespace: str | None = None) -> list[dict]:
        if self.api is not None:
            return self.api.list(kind, namespace)
        prefix = keys.k8s_prefix(kind) + (f"{namespace}/" if namespace else "")
        kvs, _ = self.store.list(prefix)
        return [json.loads(kv.value) for kv in kvs]

    # ------------------------------------------------------------------ apply
    def apply(self, objs: Iterable[dict], *, timeout: float = 60.0) -> list[dict]:
        """Create or update ``objs`` (validated); returns one result per object."""
        if self.api is not None:  # a lab with a Kubernetes API: lab/kubeclient.py
            from lab.kubeclient import apply_via_api  # noqa: PLC0415
            return apply_via_api(self, objs, timeout)
        with self.locked():
            results = []
            objs = objects.order_for_apply(objs)
            self._done, self._total = 0, len(objs)
            self.step("objects applied", 0, self._total)
            namespaces = {o["metadata"]["name"] for o in objs if o["kind"] == "Namespace"} | \
                {o["metadata"]["name"] for o in self.list("namespace")} | {"default"}
            for o in objs:
                ns = o["metadata"].get("namespace")
                if ns and ns not in namespaces:
                    raise NotFound(f"{objects.ref(o)}: namespace {ns!r} not found",
                                   hint="add the Namespace to the file (it is applied first)")
            if not self.get("namespace", "", "default"):
                self._put(self._stamp({"apiVersion": "v1", "kind": "Namespace",
                                       "metadata": {"name": "default"}, "spec": {}}, None))
            pods = [o for o in objs if o["kind"] == "Pod"]
            for o in objs:
                if o["kind"] == "Pod":
                    continue
                old = self.get(o["kind"], o["metadata"].get("namespace", ""), o["metadata"]["name"])
                if o["kind"] == "Service":
                    o = self._service_defaults(o, old)
                new = self._stamp(o, old)
                if old is not None and self._same(old, new):
                    results.append({"object": objects.ref(o), "action": "unchanged"})
                    self._applied()
                    continue
                self._put(new)
                results.append({"object": objects.ref(o), "action": "configured" if old else "created"})
                self._applied()
            results += self._apply_pods(pods)
            self._sync_endpoints()
            self.wait_agents(timeout)
            return results

    def _applied(self, what: str = "objects applied") -> None:
        self._done += 1
        self.step(what, self._done, self._total)

    @staticmethod
    def _same(old: dict, new: dict) -> bool:
        strip = lambda o: {k: v for k, v in o.items() if k != "status"}  # noqa: E731
        return strip(old) == strip(new)

    def _stamp(self, obj: dict, old: dict | None) -> dict:
        obj = json.loads(json.dumps(obj))
        md = obj["metadata"]
        if old:
            md["uid"] = old["metadata"]["uid"]
            md["creationTimestamp"] = old["metadata"]["creationTimestamp"]
        else:
            md["uid"] = str(uuid.uuid4())
            md["creationTimestamp"] = _now()
        if obj.get("kind") == "Namespace":
            # the API server labels every namespace with its name (selectable by policies)
            md["labels"] = {**(md.get("labels") or {}), "kubernetes.io/metadata.name": md["name"]}
        return obj

    def _service_defaults(self, svc: dict, old: dict | None) -> dict:
        spec = svc["spec"]
        if old is not None:
            # clusterIP and type-related node ports are immutable once set
            old_ip = old["spec"].get("clusterIP")
            if spec.get("clusterIP") not in (None, "", old_ip):
                raise InvalidInput(f"{objects.ref(svc)}: spec.clusterIP is immutable ({old_ip})")
            spec["clusterIP"] = old_ip
        used_ips = {s["spec"].get("clusterIP") for s in self.list("service")}
        if not spec.get("clusterIP"):
            net = ipaddress.ip_network(SERVICE_CIDR)
            for ip in net.hosts():
                if str(ip) not in used_ips and ip != net.network_address + 1:
                    spec["clusterIP"] = str(ip)
                    break
        elif spec["clusterIP"] != "None" and old is None and spec["clusterIP"] in used_ips:
            raise InvalidInput(f"{objects.ref(svc)}: clusterIP {spec['clusterIP']} is already allocated")
        if spec["clusterIP"] != "None":
            spec["clusterIPs"] = [spec["clusterIP"]]
        if spec["type"] in ("NodePort", "LoadBalancer"):
            used = {p.get("nodePort") for s in self.list("service") if s["metadata"]["uid"] !=
                    (old or {}).get("metadata", {}).get("uid") for p in s["spec"].get("ports", [])}
            old_ports = {(p["port"], p["protocol"]): p.get("nodePort")
                         for p in (old or {}).get("spec", {}).get("ports", [])}
            nxt = objects.NODEPORT_RANGE[0]
            for p in spec["ports"]:
                if "nodePort" in p:
                    if p["nodePort"] in used:
                        raise InvalidInput(f"{objects.ref(svc)}: nodePort {p['nodePort']} is already allocated")
                    continue
                keep = old_ports.get((p["port"], p["protocol"]))
                if keep:
                    p["nodePort"] = keep
                    continue
                while nxt in used:
                    nxt += 1
                if nxt > objects.NODEPORT_RANGE[1]:
                    raise InvalidInput("no free node port left")
                p["nodePort"] = nxt
                used.add(nxt)
        return svc

    # ------------------------------------------------------------------ pods
    def _apply_pods(self, pods: list[dict]) -> list[dict]:
        if not pods:
            return []
        existing = {(p["metadata"]["namespace"], p["metadata"]["name"]): p for p in self.list("pod")}
        counts = {n.name: 0 for n in self.state.nodes}
        for p in existing.values():
            if p["spec"].get("nodeName") in counts:
                counts[p["spec"]["nodeName"]] += 1
        results, creates = [], []
        for pod in pods:
            md = pod["metadata"]
            old = existing.get((md["namespace"], md["name"]))
            node = pod["spec"].get("nodeName")
            if node is not None:
                self.state.node(node)  # NotFound names the lab's nodes
            if old is not None:
                if node not in (None, old["spec"]["nodeName"]) or \
                        objects.container_ports(pod) != objects.container_ports(old):
                    raise InvalidInput(f"{objects.ref(pod)}: pod updates may not change spec.nodeName "
                                       "or container ports", hint="delete the pod and apply it again")
                new = self._stamp(pod, old)
                new["spec"]["nodeName"] = old["spec"]["nodeName"]
                # The sandbox annotation is the lab's, not the manifest's: an
                # update must keep it (probe/exec find the pod's netns by it).
                netns = (old["metadata"].get("annotations") or {}).get(NETNS_ANNOTATION)
                if netns:
                    new["metadata"]["annotations"] = {**(new["metadata"].get("annotations") or {}),
                                                      NETNS_ANNOTATION: netns}
                new["status"] = old.get("status", {})
                if self._same(old, new):
                    results.append({"object": objects.ref(pod), "action": "unchanged"})
                else:
                    self._put(new)
                    results.append({"object": objects.ref(pod), "action": "configured"})
                self._applied()
                continue
            creates.append(self.schedule(pod, counts))
        with concurrent.futures.ThreadPoolExecutor(WORKERS) as ex:
            futs = {ex.submit(self._start_pod, p): p for p in creates}
            errors = []
            for f in concurrent.futures.as_completed(futs):
                p = futs[f]
                try:
                    f.result()
                    results.append({"object": objects.ref(p), "action": "created",
                                    "node": p["spec"]["nodeName"]})
                except Exception as e:  # noqa: BLE001 -- collected, reported together
                    errors.append(f"{objects.ref(p)}: {getattr(e, 'message', e)}")
                self._applied()
        if errors:
            raise TemporaryError("; ".join(sorted(errors)))
        return sorted(results, key=lambda r: r["object"])

    def schedule(self, pod: dict, counts: dict[str, int] | None = None) -> dict:
        """A new pod as the scheduler leaves it: on its ``spec.nodeName`` or
        the node with the fewest pods (``counts``: pods per node, kept up to
        date across a batch; else counted now), with the lab's sandbox
        annotation, Pending. A pod that has a uid (the API server gave it
        one) keeps it."""
        md = pod["metadata"]
        node = pod["spec"].get("nodeName")
        if counts is None:
            counts = {n.name: 0 for n in self.state.nodes}
            for p in self.list("pod"):
                if p["spec"].get("nodeName") in counts and (p.get("status") or {}).get("podIP"):
                    counts[p["spec"]["nodeName"]] += 1
        if node is None:
            node = min(counts, key=lambda n: (counts[n], n))
        else:
            self.state.node(node)  # NotFound names the lab's nodes
        counts[node] = counts.get(node, 0) + 1
        new = json.loads(json.dumps(pod)) if md.get("uid") else self._stamp(pod, None)
        new["spec"]["nodeName"] = node
        # ("annotations:" left empty in YAML is None, hence the "or {}")
        new["metadata"]["annotations"] = {
            **(new["metadata"].get("annotations") or {}),
            NETNS_ANNOTATION: sysnet.netns_path(self.lab.paths.pod_ns(md["namespace"], md["name"]))}
        new["status"] = {"phase": "Pending"}
        return new

    def _cni_args(self, pod: dict) -> str:
        md = pod["metadata"]
        return (f"IgnoreUnknown=1;K8S_POD_NAMESPACE={md['namespace']};K8S_POD_NAME={md['name']};"
                f"K8S_POD_INFRA_CONTAINER_ID={md['uid']};K8S_POD_UID={md['uid']}")

    def _start_pod(self, pod: dict) -> None:
        md = pod["metadata"]
        node = pod["spec"]["nodeName"]
        ns_name = self.lab.paths.pod_ns(md["namespace"], md["name"])
        self._put(pod)  # Pending, scheduled: what a watcher sees first
        sysnet.netns_add(ns_name)
        netns = sysnet.netns_path(ns_name)
        try:
            result = self.runtime.add(self.lab.conflist(node), md["uid"], netns,
                                      args=self._cni_args(pod))
            ports = [[p["containerPort"], p["protocol"]] for p in objects.container_ports(pod)]
            if ports:
                self.responder.call({"op": "add", "pod": f"{md['namespace']}/{md['name']}",
                                     "netns": netns, "ports": ports})
        except BaseException:
            sysnet.netns_del(ns_name)
            self._delete_key(obj_key(pod))
            raise
        ip = result["ips"][0]["address"].split("/")[0]
        pod["status"] = {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}],
                         "hostIP": self.state.node(node).ip, "startTime": _now(),
                         "conditions": [{"type": "Ready", "status": "True"}]}
        self._put(pod)

    def _stop_pod(self, pod: dict) -> None:
        md = pod["metadata"]
        ns_name = self.lab.paths.pod_ns(md["namespace"], md["name"])
        netns = sysnet.netns_path(ns_name)
        self.responder.call({"op": "remove", "pod": f"{md['namespace']}/{md['name']}"})
        self.runtime.delete(self.lab.conflist(pod["spec"]["nodeName"]), md["uid"],
                            netns if sysnet.netns_exists(ns_name) else "", args=self._cni_args(pod))
        sysnet.netns_del(ns_name)
        self._delete_key(obj_key(pod))

    # ------------------------------------------------------------------ delete
    def delete(self, objs: Iterable[dict], *, timeout: float = 60.0) -> list[dict]:
        if self.api is not None:
            from lab.kubeclient import delete_via_api  # noqa: PLC0415
            return delete_via_api(self, objs, timeout)
        with self.locked():
            results = []
            pods = []
            objs = list(objs)
            self._done, self._total = 0, len(objs)
            for o in objs:
                md = o["metadata"]
                cur = self.get(o["kind"], md.get("namespace", ""), md["name"])
                if cur is None:
                    results.append({"object": objects.ref(o), "action": "not found"})
                    self._applied("objects deleted")
                    continue
                if o["kind"] == "Pod":
                    pods.append(cur)
                elif o["kind"] == "Namespace":
                    for kind in ("networkpolicy", "service", "endpointslice"):
                        for x in self.list(kind, md["name"]):
                            self._delete_key(obj_key(x))
                    pods += self.list("pod", md["name"])
                    self._delete_key(obj_key(cur))
                else:
                    self._delete_key(obj_key(cur))
                results.append({"object": objects.ref(o), "action": "deleted"})
                self._applied("objects deleted")
            # A Namespace and its Pods named in the same file: stop each pod once
            # (not twice, concurrently, with two CNI DELs).
            pods = list({obj_key(p): p for p in pods}.values())
            self._done, self._total = 0, len(pods)
            with concurrent.futures.ThreadPoolExecutor(WORKERS) as ex:
                for _ in ex.map(self._stop_pod, pods):
                    self._applied("pods stopped")
            self._sync_endpoints()
            self.wait_agents(timeout)
            return results

    # ------------------------------------------------------------------ endpoints
    def desired_slices(self) -> dict[str, dict]:
        pods = [p for p in self.list("pod") if p.get("status", {}).get("podIP")]
        out = {}
        for svc in self.list("service"):
            md, spec = svc["metadata"], svc["spec"]
            sel = spec.get("selector")
            if not sel:
                continue  # selector-less Services keep hand-made slices
            groups: dict[tuple, list] = {}
            for p in pods:
                if p["metadata"]["namespace"] != md["namespace"]:
                    continue
                labels = p["metadata"].get("labels") or {}
                if any(labels.get(k) != v for k, v in sel.items()):
                    continue
                resolved = []
                for sp in spec.get("ports", []):
                    tp = sp["targetPort"]
                    if isinstance(tp, str):
                        match = [c for c in objects.container_ports(p)
                                 if c.get("name") == tp and c["protocol"] == sp["protocol"]]
                        if not match:
                            continue  # this pod does not serve that named port
                        tp = match[0]["containerPort"]
                    resolved.append((sp.get("name", ""), tp, sp["protocol"]))
                ready = p["status"].get("phase") == "Running"
                groups.setdefault(tuple(resolved), []).append({
                    "addresses": [p["status"]["podIP"]],
                    "conditions": {"ready": ready, "serving": ready, "terminating": False},
                    "nodeName": p["spec"]["nodeName"],
                    "targetRef": {"kind": "Pod", "namespace": p["metadata"]["namespace"],
                                  "name": p["metadata"]["name"], "uid": p["metadata"]["uid"]}})
            for i, (ports, eps) in enumerate(sorted(groups.items())):
                name = f"{md['name']}-{i}"
                out[keys.k8s_key("endpointslice", md["namespace"], name)] = {
                    "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                    "metadata": {"name": name, "namespace": md["namespace"],
                                 "labels": {"kubernetes.io/service-name": md["name"],
                                            "endpointslice.kubernetes.io/managed-by": MANAGED_BY}},
                    "addressType": "IPv4",
                    "endpoints": sorted(eps, key=lambda e: e["addresses"][0]),
                    "ports": [{"name": n, "port": pt, "protocol": pr} for n, pt, pr in ports]}
        return out

    def _sync_endpoints(self) -> None:
        want = self.desired_slices()
        have = {obj_key(o): o for o in self.list("endpointslice")}
        for k, v in want.items():
            old = have.get(k)
            if old is not None and same_slice(old, v):
                continue
            self._put(self._stamp(v, old))
        for k, v in have.items():
            if k not in want and v["metadata"].get("labels", {}).get(
                    "endpointslice.kubernetes.io/managed-by") == MANAGED_BY:
                self._delete_key(k)

    # ------------------------------------------------------------------ agents
    def agent_revisions(self) -> dict[str, int]:
        out = {}
        for n in self.state.nodes:
            kv = self.store.get(keys.status_key(n.name))
            out[n.name] = AgentStatus.from_json(kv.value).applied_revision if kv else 0
        return out

    def wait_agents(self, timeout: float) -> None:
        """Block until every agent has applied ``self.revision``."""
        if not self.revision:
            return
        deadline = time.monotonic() + timeout
        while True:
            revs = self.agent_revisions()
            lag = sorted(n for n, r in revs.items() if r < self.revision)
            self.step("agents synced", len(revs) - len(lag), len(revs))
            if not lag:
                return
            if time.monotonic() > deadline:
                raise TemporaryError(
                    f"timed out after {timeout:.0f}s waiting for agents to apply revision "
                    f"{self.revision}: " + ", ".join(f"{n} is at {revs[n]}" for n in lag),
                    hint=f"see `contivctl lab logs {lag[0]}`")
            time.sleep(0.02)

    # ------------------------------------------------------------------ queries
    def pod(self, ref: str) -> dict:
        ns, _, name = ref.rpartition("/")
        ns = ns or "default"
        p = self.get("pod", ns, name)
        if p is None:
            raise NotFound(f"pod {ns}/{name} not found in lab {self.lab.name}",
                           hint="`contivctl lab status` lists the pods")
        return p

    def service(self, ref: str) -> dict:
        ns, _, name = ref.rpartition("/")
        ns = ns or "default"
        s = self.get("service", ns, name)
        if s is None:
            raise NotFound(f"service {ns}/{name} not found in lab {self.lab.name}")
        return s

    def close(self) -> None:
        self.store.close()
