"""``contivctl ksr run``: a reflector replica with its health and metrics
endpoint, until SIGTERM/SIGINT.

Endpoint (``--health-address``, default 0.0.0.0:9403): ``/healthz`` 200
while the process runs its election; ``/readyz`` 200 for a standby, and for
the leader once every kind is listed (503 before); ``/status`` the
replica's state as JSON; ``/metrics`` Prometheus text (``ksr_*``).
"""
from __future__ import annotations

import json
import logging
import os
import signal
import socket
import threading

log = logging.getLogger(__name__)


class Metrics:
    """The replica's counters, and its gauges read at scrape time."""

    def __init__(self, reflector_ref) -> None:
        from prometheus_client import CollectorRegistry, Counter  # noqa: PLC0415
        self.registry = r = CollectorRegistry(auto_describe=True)
        self.counters = {
            "events": Counter("ksr_events", "Watch events, by resource and type", ["resource", "type"], registry=r),
            "relists": Counter("ksr_relists", "Lists of a resource, by why (list: a (re)start; gone: 410)",
                               ["resource", "reason"], registry=r),
            "errors": Counter("ksr_errors", "Errors, by resource and what failed (api-<status>, etcd, bad-object)",
                              ["resource", "reason"], registry=r),
            "etcd_writes": Counter("ksr_etcd_transactions", "Fenced etcd transactions written", registry=r),
        }
        self._ref = reflector_ref
        r.register(self)

    def count(self, what: str, resource: str, label: str) -> None:
        c = self.counters[what]
        if what == "etcd_writes":  # one counter without labels
            c.inc()
        else:
            c.labels(resource, label).inc()

    def describe(self):
        return []

    def collect(self):
        from prometheus_client.core import GaugeMetricFamily  # noqa: PLC0415
        st = self._ref().status()
        lead = GaugeMetricFamily("ksr_leader", "1 while this replica writes etcd")
        lead.add_metric([], 1.0 if st["leader"] else 0.0)
        yield lead
        objs = GaugeMetricFamily("ksr_objects", "Objects mirrored, by resource", labels=["resource"])
        synced = GaugeMetricFamily("ksr_synced", "1 once a resource has been listed", labels=["resource"])
        for name, k in st["kinds"].items():
            objs.add_metric([name], k["objects"])
            synced.add_metric([name], 1.0 if k["synced"] else 0.0)
        yield objs
        yield synced


def run(kubeconfig: str | None, etcd: str, health_address: str, identity: str = "", lease_ttl: int = 10) -> None:
    from agent.errors import FatalError  # noqa: PLC0415
    from agent.httpserve import prometheus, serve  # noqa: PLC0415
    from agent.store.etcd import EtcdStore  # noqa: PLC0415
    from ksr.kube import KubeClient  # noqa: PLC0415
    from ksr.reflector import Reflector  # noqa: PLC0415
    api = KubeClient(kubeconfig)
    forbidden = api.check()  # RBAC first: one clear error, not a log full of 403s
    if forbidden:
        raise FatalError(forbidden[0] + (f" (and {len(forbidden) - 1} more)" if len(forbidden) > 1 else ""))
    store = EtcdStore(etcd)
    identity = identity or f"{socket.gethostname()}-{os.getpid()}"
    holder: dict = {}
    metrics = Metrics(lambda: holder["r"])
    r = holder["r"] = Reflector(store, api, identity, lease_ttl=lease_ttl, counter=metrics.count)
    server = serve(health_address, {
        "/healthz": lambda: (200, "text/plain", b"ok\n"),
        "/readyz": lambda: (200, "text/plain", b"ready\n") if r.ready() else (503, "text/plain", b"syncing\n"),
        "/status": lambda: (200, "application/json", json.dumps(r.status()).encode()),
        "/metrics": prometheus(metrics.registry)}, "--health-address")
    done = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: done.set())
    log.info("reflector %s: API %s, etcd %s, health on %s", identity, api.host, etcd, health_address)
    r.start()
    try:
        done.wait()
    finally:
        r.stop()
        server.shutdown()
        server.server_close()
        store.close()
