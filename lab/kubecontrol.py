"""The lab's Kubernetes control plane on the test API server (``lab up --kube-api``).

One process per lab (``python -m lab.kubecontrol --lab NAME``) serves the
Kubernetes API (:mod:`lab.kubeapi`, loopback) and plays what a cluster runs
around it, acting on what arrives through that API -- from ``lab apply`` or
any Kubernetes client:

* admission: a Service gets its cluster IP and node ports, a Namespace the
  ``kubernetes.io/metadata.name`` label (as the API server does);
* scheduler and kubelet: a pod without an address gets a node (its
  ``spec.nodeName``, or the least loaded), a network namespace wired by the
  real ``contiv-cni``, the lab's responder on its ports, then ``Running``
  with its ``podIP`` in its status; a deleted pod gets CNI DEL;
* endpoint controller: one EndpointSlice per Service and target-port mapping.

These are :class:`lab.kube.Kube`'s, with the objects kept in the API
server instead of etcd (:class:`ApiKube`). The reflector (``contivctl ksr
run``, another lab process) mirrors them into etcd for the agents: the whole
Kubernetes -> reflector -> etcd -> agent -> data plane path.
"""
from __future__ import annotations

import argparse
import concurrent.futures
import logging
import queue
import signal
import threading

from lab.kube import NETNS_ANNOTATION, Kube

log = logging.getLogger(__name__)

class ApiKube(Kube):
    """:class:`Kube` whose objects live in the API server's store."""

    def __init__(self, lab, store) -> None:
        super().__init__(lab)
        self.api = None  # this is the API's side: no HTTP round trip to itself
        self.kstore = store

    def get(self, kind: str, namespace: str, name: str) -> dict | None:
        from lab.kubeobj import KubeError  # noqa: PLC0415
        try:
            return self.kstore.get(kind, namespace or None, name)
        except KubeError:
            return None

    def list(self, kind: str, namespace: str | None = None) -> list[dict]:
        from lab.kubeobj import resource  # noqa: PLC0415
        r = resource(kind)
        return [{"apiVersion": r.api_version, "kind": r.kind, **o}  # list items carry neither, as in Kubernetes
                for o in self.kstore.list(kind, namespace).get("items", [])]

    def _put(self, obj: dict) -> None:
        from lab.kubeobj import KubeError  # noqa: PLC0415
        md = obj["metadata"]
        try:
            cur = self.kstore.get(obj["kind"], md.get("namespace"), md["name"])
        except KubeError:
            cur = None
        status = obj.get("status")
        body = {**obj, "metadata": {**md, "resourceVersion": ""}}
        got = self.kstore.update(body) if cur is not None else self.kstore.create(body)
        if status and got.get("status") != status:
            self.kstore.update_status({**got, "status": status})

    def _delete_key(self, key: str) -> None:
        from agent.model import keys  # noqa: PLC0415
        from lab.kubeobj import KubeError  # noqa: PLC0415
        ref = keys.parse_k8s_key(key)
        if ref is None:
            return
        try:
            self.kstore.delete(ref.kind, ref.namespace or None, ref.name)
        except KubeError:
            pass

    def wait_agents(self, timeout: float) -> None:
        """Nothing to wait for here: the reflector and the agents follow on
        their own (``lab apply`` waits for them)."""

    def admit(self, verb: str, obj: dict, old: dict | None) -> dict:
        """The API server's admission (see the module docstring)."""
        if obj.get("kind") in ("Service", "Pod"):
            # the API server's validation and defaults (type, protocols, target ports...):
            # the lab's own, as for `lab apply`
            from lab import objects  # noqa: PLC0415
            obj = {**obj, **objects.validate(obj, "admission")}
        if obj.get("kind") == "Service" and self is not None:
            return self._service_defaults(obj, old)
        return obj  # (the store itself labels a Namespace with its name, as the API server does)


class Controller:
    """Scheduler, kubelet and endpoint controller, fed by the store's events."""

    def __init__(self, kube: ApiKube) -> None:
        self.kube = kube
        self.events: queue.Queue = queue.Queue()
        self.starting: set[tuple[str, str]] = set()
        self.pool = concurrent.futures.ThreadPoolExecutor(8)
        self.subs = [kube.kstore.subscribe(lambda t, o, k=k: self.events.put((k, t, o)), k)
                     for k in ("pods", "services")]

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                kind, kind_ev, obj = self.events.get(timeout=0.5)
            except queue.Empty:
                continue
            try:
                if kind == "pods":
                    self._pod(kind_ev, obj)
                self._endpoints()
            except Exception:  # noqa: BLE001 -- one object's failure must not stop the control plane
                log.exception("lab control plane: %s %s", kind_ev, obj.get("metadata", {}).get("name"))

    def _pod(self, kind: str, pod: dict) -> None:
        md = pod["metadata"]
        ref = (md.get("namespace", ""), md["name"])
        if kind == "DELETED":
            if (pod.get("status") or {}).get("podIP") or (md.get("annotations") or {}).get(NETNS_ANNOTATION):
                self.pool.submit(self._guard, self.kube._stop_pod, pod)
            return
        if (pod.get("status") or {}).get("podIP") or ref in self.starting:
            return
        self.starting.add(ref)
        new = self.kube.schedule(pod)
        self.pool.submit(self._guard, self._start, new, ref)

    def _start(self, pod: dict, ref) -> None:
        try:
            self.kube._start_pod(pod)
        finally:
            self.starting.discard(ref)
        self.events.put(("pods", "STARTED", pod))  # the endpoints follow the new address

    def _guard(self, fn, *args) -> None:
        try:
            fn(*args)
        except Exception as e:  # noqa: BLE001
            log.error("lab control plane: %s", getattr(e, "message", e))

    def _endpoints(self) -> None:
        while not self.events.empty():  # a burst: compute once
            kind, kind_ev, obj = self.events.get_nowait()
            if kind == "pods":
                self._pod(kind_ev, obj)
        self.kube._sync_endpoints()

    def close(self) -> None:
        for s in self.subs:
            s.close()
        self.pool.shutdown(wait=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lab", required=True)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--kubeconfig", required=True,
                    help="where to write the API's kubeconfig: in the lab's directory, which names this "
                         "process as the lab's (lab down stops it)")
    a = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from lab.cluster import Lab  # noqa: PLC0415
    from lab.kubeapi import KubeAPIServer  # noqa: PLC0415
    holder: dict = {}
    # the built-in namespaces are created with the server, before the lab's Kube exists
    server = KubeAPIServer(port=a.port, bookmark_interval=10.0,
                           admit=lambda verb, obj, old: holder["kube"].admit(verb, obj, old) if holder
                           else ApiKube.admit(None, verb, obj, old))
    kube = holder["kube"] = ApiKube(Lab(a.lab), server.store)
    server.start()
    server.kubeconfig(a.kubeconfig)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    ctl = Controller(kube)
    log.info("lab %s: Kubernetes API on %s", a.lab, server.url)
    try:
        ctl.run(stop)
    finally:
        ctl.close()
        server.stop()


if __name__ == "__main__":
    main()


def _free_port() -> int:
    import socket  # noqa: PLC0415
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(lab, timeout: float = 30.0) -> dict:
    """Give a running lab a Kubernetes API (``lab up --kube-api``): start its
    control plane process and a reflector (``contivctl ksr run``), both
    logging into the lab's directory and naming it on their command lines
    (``lab down`` stops them as it stops every lab process); wait until the
    reflector is ready. Recorded in the lab's state (``extra.kube_api``)."""
    import subprocess  # noqa: PLC0415
    import sys  # noqa: PLC0415
    import time  # noqa: PLC0415
    import urllib.request  # noqa: PLC0415

    from agent.errors import TemporaryError  # noqa: PLC0415
    st = lab.state()
    if st.extra.get("kube_api"):
        return st.extra["kube_api"]
    root = lab.paths.root
    port, health = _free_port(), f"127.0.0.1:{_free_port()}"
    info = {"url": f"http://127.0.0.1:{port}", "kubeconfig": str(root / "kubeconfig"), "health": health}

    def spawn(argv: list[str], log_name: str) -> int:
        with open(root / log_name, "ab") as log_file:
            return subprocess.Popen(argv, stdout=log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    start_new_session=True).pid
    info["pid"] = spawn([sys.executable, "-m", "lab.kubecontrol", "--lab", lab.name, "--port", str(port),
                         "--kubeconfig", info["kubeconfig"]], "kubecontrol.log")

    def ready(url: str) -> bool:
        try:
            with urllib.request.urlopen(url, timeout=1) as r:
                return r.status == 200
        except OSError:
            return False
    deadline = time.monotonic() + timeout
    while not (ready(info["url"] + "/version") and (root / "kubeconfig").exists()):
        if time.monotonic() > deadline:
            raise TemporaryError(f"lab {lab.name}: the Kubernetes API did not start",
                                 hint=f"see {root / 'kubecontrol.log'}")
        time.sleep(0.05)
    info["ksr_pid"] = spawn([sys.executable, "-m", "contivctl.main", "ksr", "run", "--kubeconfig",
                             info["kubeconfig"], "--etcd", "unix://" + lab.paths.etcd_socket, "--health-address", health,
                             "--id", f"lab-{lab.name}", "--lease-ttl", "5"], "ksr.log")
    def leading() -> bool:  # a lone replica: ready once it leads and has listed every kind
        import json  # noqa: PLC0415
        try:
            with urllib.request.urlopen(f"http://{health}/status", timeout=1) as r:
                doc = json.loads(r.read())
        except (OSError, ValueError):
            return False
        return doc["leader"] and len(doc["kinds"]) == 6 and all(k["synced"] for k in doc["kinds"].values())
    while not leading():
        if time.monotonic() > deadline:
            raise TemporaryError(f"lab {lab.name}: the reflector did not get ready", hint=f"see {root / 'ksr.log'}")
        time.sleep(0.05)
    st = lab.state()
    st.extra["kube_api"] = info
    st.save(lab.paths)
    return info
