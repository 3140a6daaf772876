"""Prometheus metrics of a running agent, served on ``metrics_address``
(``HOST:PORT``; off by default, the lab turns it on) with ``prometheus_client``.

Two kinds, and why:

* what happens -- CNI requests (by command and result, with their latency),
  each CNI ADD's steps, reconciler transactions and operations -- is counted
  as it happens: the agent's parts call :meth:`Metrics.cni`,
  :meth:`Metrics.add_steps` and :meth:`Metrics.transaction` (hooks set by the
  daemon; nothing else imports this module);
* what is -- readiness, the applied etcd revision, values by state, and
  every node and pod interface's counters -- is read at scrape time by a
  collector (:class:`_Now`), so a scrape costs what ``contivctl netstat``
  costs and nothing runs between scrapes.

Every name starts with ``contiv_``; docs/cli.md ("Metrics") lists them.
"""
from __future__ import annotations

import json
import logging


log = logging.getLogger(__name__)

#: seconds; CNI ADDs run from ~10 ms (Linux) to ~100 ms (VPP), transactions from µs to seconds
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
#: the CNI ADD steps podnet times (their keys, in ms) -> the step label
ADD_STEPS = {"ipam_ms": "ipam", "render_ms": "render", "dataplane_ms": "dataplane", "total_ms": "total"}


class Metrics:
    """The agent's registry, its instruments and its HTTP endpoint."""

    def __init__(self, agent) -> None:
        from prometheus_client import CollectorRegistry, Counter, Histogram  # noqa: PLC0415
        self.registry = r = CollectorRegistry(auto_describe=True)
        self.cni_requests = Counter("contiv_cni_requests", "CNI requests served, by command and result "
                                    "(ok, or the CNI error code)", ["command", "result"], registry=r)
        self.cni_seconds = Histogram("contiv_cni_request_seconds", "Time to serve a CNI request in the agent",
                                     ["command"], buckets=BUCKETS, registry=r)
        self.add_step_seconds = Histogram("contiv_cni_add_step_seconds", "Time of each step of a CNI ADD "
                                          "(ipam, render, dataplane, total)", ["step"], buckets=BUCKETS,
                                          registry=r)
        self.transactions = Counter("contiv_reconciler_transactions", "Reconciler transactions by kind "
                                    "(change, resync, retry) and result (ok, failed)", ["kind", "result"],
                                    registry=r)
        self.transaction_seconds = Histogram("contiv_reconciler_transaction_seconds", "Duration of reconciler "
                                             "transactions", ["kind"], buckets=BUCKETS, registry=r)
        self.operations = Counter("contiv_reconciler_operations", "Data-plane operations by kind (create, "
                                  "update, delete) and result", ["operation", "result"], registry=r)
        r.register(_Now(agent))
        self._server = None

    # ------------------------------------------------------------ hooks
    def cni(self, command: str, exit_code: int, body: bytes, seconds: float) -> None:
        """One CNI request served (its exit status and stdout, as the plugin prints them)."""
        result = "ok"
        if exit_code:
            try:
                result = str(json.loads(body).get("code", "error"))
            except (ValueError, AttributeError):
                result = "error"
        command = command if command in ("ADD", "DEL", "CHECK", "GC", "STATUS", "VERSION") else "invalid"
        self.cni_requests.labels(command, result).inc()
        self.cni_seconds.labels(command).observe(seconds)

    def add_steps(self, op: str, timings: dict) -> None:
        """The step timings (ms) podnet recorded for one ADD or DEL."""
        if op != "add":
            return
        for key, step in ADD_STEPS.items():
            if key in timings:
                self.add_step_seconds.labels(step).observe(timings[key] / 1000.0)

    def transaction(self, rec) -> None:
        """One transaction the scheduler finished (a TxnRecord)."""
        self.transactions.labels(rec.kind, "ok" if rec.ok else "failed").inc()
        self.transaction_seconds.labels(rec.kind).observe(rec.duration_ms / 1000.0)
        for op in rec.operations:
            self.operations.labels(op.op, "ok" if op.ok else "failed").inc()

    # ------------------------------------------------------------ serving
    def start(self, address: str) -> None:
        """Serve ``/metrics`` on ``address`` from a thread of its own
        (:func:`agent.httpserve.serve`)."""
        from agent.httpserve import prometheus, serve  # noqa: PLC0415
        route = prometheus(self.registry)
        self._server = serve(address, {"/metrics": route, "/": route}, "metrics_address")
        log.info("metrics on http://%s/metrics", address)

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


class _Now:
    """What the agent holds at scrape time."""

    def __init__(self, agent) -> None:
        self._a = agent

    def describe(self):
        return []  # collected fresh at each scrape: nothing to check at registration

    def collect(self):
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily  # noqa: PLC0415
        a = self._a
        ready = GaugeMetricFamily("contiv_agent_ready", "1 when the agent serves CNI requests")
        ready.add_metric([], 1.0 if a.ready and a.cni_status()[0] == 0 else 0.0)
        yield ready
        rev = GaugeMetricFamily("contiv_applied_revision", "The etcd revision fully rendered into the data plane")
        rev.add_metric([], a.applied_revision)
        yield rev
        values = GaugeMetricFamily("contiv_values", "Data-plane values the reconciler manages, by state",
                                   labels=["state"])
        for state, n in sorted(a.scheduler.counts().items()):
            values.add_metric([state], n)
        yield values
        try:
            counters = a.plane.counters(a.podnet.host_ifs())
        except Exception as e:  # noqa: BLE001 -- the other metrics are still worth a scrape
            log.warning("metrics: interface counters: %s", getattr(e, "message", e))
            return
        fams = {k: CounterMetricFamily(f"contiv_interface_{k}", f"Interface {k} by direction (rx: received "
                                       "by the node, from a pod what it sent)",
                                       labels=["interface", "owner", "direction"])
                for k in ("packets", "bytes", "drops", "errors")}
        for c in counters:
            for k, fam in fams.items():
                fam.add_metric([c.name, c.owner, "rx"], getattr(c, f"rx_{k}"))
                fam.add_metric([c.name, c.owner, "tx"], getattr(c, f"tx_{k}"))
        yield from fams.values()


def attach(agent) -> Metrics | None:
    """The agent's metrics, hooked to its pod network and its scheduler's
    history; None when ``metrics_address`` is not set (prometheus_client is
    then never imported). Served by :meth:`Metrics.start`."""
    if not agent.cfg.metrics_address:
        return None
    m = Metrics(agent)
    agent.podnet.on_timing = m.add_steps
    agent.scheduler.history.listeners.append(m.transaction)
    return m
