"""The agent's side of the local API: :class:`~agent.api.contract.NodeAPI`
over a running :class:`agent.daemon.Agent`.

The router (:mod:`agent.api.routes`) calls only this; this is the one place
that knows which part of the agent answers what. Every method returns a
record of :mod:`agent.model.api`.
"""
from __future__ import annotations

import difflib
import ipaddress
import secrets
import threading
import time

from agent.errors import InvalidInput, NotFound
from agent.model import api as rec
from agent.reconciler.plan import plain
from agent.stndir import StnDir


class AgentFacade:
    """See the module docstring. The agent serves its API only once started,
    so every part of it exists here."""

    def __init__(self, agent) -> None:
        self._a = agent
        self._traces: dict[str, tuple] = {}  # id -> (data plane handle, flow, deadline)
        self._traces_lock = threading.Lock()

    # ------------------------------------------------------------ agent
    def health(self) -> rec.Health:
        a = self._a
        code, why = a.cni_status()
        return rec.Health(a.cfg.node, a.ready and code == 0, code, why, a.applied_revision)

    def status(self) -> rec.NodeStatus:
        a = self._a
        facts = a.facts
        return rec.NodeStatus(a.status(), a.node_info, facts.mtu if facts else 0,
                              facts.underlay if facts else "", a.scheduler.counts(),
                              dict(a.last_resync), a.snapshot.counts(), a.cfg.to_dict(),
                              dict(a.store_health), StnDir(a.cfg.stn_dir).status())

    def nodes(self) -> rec.NodeList:
        snap = self._a.snapshot
        with snap.lock:
            return rec.NodeList(tuple(sorted(snap.nodes.values(), key=lambda n: n.name)))

    # ------------------------------------------------------------ IPAM and pods
    def ipam(self) -> rec.IpamInfo:
        a = self._a
        st = a.ipam.stats()
        return rec.IpamInfo(a.cfg.node, a.cfg.pod_cidr, st["subnet"], st["total"], st["used"],
                            st["free"], tuple(a.node_info.gateways), tuple(a.ipam.list()))

    def ipam_gc(self, valid: list[dict] | None = None) -> rec.GcResult:
        a = self._a
        if valid is not None:
            from agent.ipam.pods import check_valid_attachments  # noqa: PLC0415
            valid = check_valid_attachments(valid)
        return rec.GcResult(tuple(a.podnet.gc(valid)))

    def pods(self) -> rec.PodList:
        a = self._a
        return rec.PodList(a.cfg.node, tuple(a.podnet.pods()))

    # ------------------------------------------------------------ reconciler
    def state(self, prefix: str = "") -> rec.StateList:
        return rec.StateList(tuple(rec.ValueState.from_dict(v)
                                   for v in self._a.scheduler.state(prefix)))

    def desired(self, prefix: str = "") -> rec.DesiredValues:
        return rec.DesiredValues({k: plain(v) for k, v in sorted(self._a.desired.merged().items())
                                  if k.startswith(prefix)})

    def plan(self) -> rec.PlanRecord:
        return rec.PlanRecord.from_dict(self._a.scheduler.dry_run(resync=True).to_dict())

    def resync(self) -> rec.TxnRecord:
        return self._a.request_resync("resync requested through the API").record

    def stn_sync(self) -> rec.StnSync:
        a = self._a
        a.request_node_render("STN's record changed (contivctl stn)")
        why_not = a.plane.ready()
        if why_not:
            return rec.StnSync("", False, why_not)
        keys = a.plane.stn_keys()
        states = a.scheduler.states_of(keys)
        waiting = [f"{k} is {states.get(k, 'missing')}" for k in keys if states.get(k) != "configured"]
        return rec.StnSync(a.cfg.vpp_uplink if keys else "", not waiting, "; ".join(waiting))

    def history(self, limit: int = 50, since: int = 0) -> rec.History:
        return rec.History(tuple(self._a.scheduler.history.list(limit, since=since)))

    # ------------------------------------------------------------ cluster
    def services(self, namespace: str | None = None, name: str | None = None) -> rec.ServiceList:
        return rec.ServiceList(tuple(self._a.services.describe(namespace, name)))

    def policies(self, namespace: str | None = None, pod: str | None = None) -> rec.PolicyList:
        return rec.PolicyList(tuple(self._a.policies.describe(namespace, pod)))

    def explain(self, src: str, dst: str, port: int, protocol: str = "TCP") -> rec.Explanation:
        return self._a.policies.explain(src, dst, port, protocol)

    # ------------------------------------------------------------ diagnostics
    def netstat(self, pod: str | None = None) -> rec.Netstat:
        a = self._a
        if pod:
            p = self._local_pod(pod)
            counters = [c for c in a.plane.counters({p.host_if: p.pod}) if c.owner == p.pod]
        else:
            counters = a.plane.counters(a.podnet.host_ifs())
        return rec.Netstat(a.cfg.node, a.plane.name, time.time(), tuple(counters))

    def sockets(self, pod: str) -> rec.PodSockets:
        a = self._a
        p = self._local_pod(pod)
        return rec.PodSockets(p.pod, a.cfg.node, p.netns, tuple(a.plane.sockets(p.netns)))

    def sessions(self, service: str | None = None, pod: str | None = None) -> rec.SessionList:
        from agent.builders.sessions import name_sessions, select, summary  # noqa: PLC0415
        a = self._a
        services = a.services.describe()
        cluster = a.policies.pod_infos()
        if service:
            _check_name("Service", service, [s.service for s in services])
        if pod:
            _check_name("pod", pod, cluster)
        raw = a.plane.sessions()
        named = select(name_sessions(raw, services, {p.ip: ref for ref, p in cluster.items()},
                                     a.facts.node_ips if a.facts else ()), service, pod)
        return rec.SessionList(a.cfg.node, a.plane.name, len(raw), a.plane.session_limit(),
                               tuple(named), tuple(summary(named)))

    # ------------------------------------------------------------ trace
    def trace_start(self, protocol: str, src: str, sport: int, dst: str, dport: int = 0) -> rec.TraceHandle:
        a = self._a
        flow = _flow(protocol, src, sport, dst, dport)
        self._expire_traces()
        handle = a.plane.trace_start(flow)
        tid = secrets.token_hex(6)
        with self._traces_lock:
            self._traces[tid] = (handle, flow, time.monotonic() + TRACE_TTL)
        return rec.TraceHandle(a.cfg.node, a.plane.name, tid)

    def trace_probe(self, pod: str, protocol: str, sport: int, dst: str, dport: int = 0,
                    timeout_ms: int = 1000) -> rec.ProbeRecord:
        from agent import traceprobe  # noqa: PLC0415
        p = self._local_pod(pod)
        if not p.ips:
            raise NotFound(f"pod {pod} has no address")
        flow = _flow(protocol, p.ips[0].split("/")[0], sport, dst, dport)
        out = traceprobe.send(p.netns, flow, timeout_ms / 1000)
        return rec.ProbeRecord(pod, self._a.cfg.node, flow, out.answered, out.error, out.ms)

    def trace_collect(self, id: str) -> rec.TraceSegment:  # noqa: A002 -- the API's name
        from agent.builders.trace import label  # noqa: PLC0415
        a = self._a
        with self._traces_lock:
            entry = self._traces.pop(id, None)
        if entry is None:
            raise NotFound(f"no trace {id} on node {a.cfg.node}",
                           hint=f"a trace not collected within {TRACE_TTL:.0f} s is removed")
        handle, flow, _ = entry
        packets = a.plane.trace_collect(handle)
        return rec.TraceSegment(a.cfg.node, a.plane.name, flow, tuple(label(packets, self._cluster())))

    def _expire_traces(self) -> None:
        """Remove traces nobody collected (a CLI that died between the calls)."""
        now = time.monotonic()
        with self._traces_lock:
            stale = [k for k, (_, _, deadline) in self._traces.items() if deadline < now]
            entries = [self._traces.pop(k) for k in stale]
        for handle, _, _ in entries:
            try:
                self._a.plane.trace_collect(handle)
            except Exception:  # noqa: BLE001 -- best effort: it is being thrown away
                pass

    def _cluster(self):
        """What a trace's labels are made of (:class:`agent.builders.trace.Cluster`)."""
        from agent.builders.trace import Cluster  # noqa: PLC0415
        a = self._a
        pods = a.policies.pod_infos()
        with a.snapshot.lock:
            nodes = {n.name: (n.node_ip, *n.gateways, *n.node_ips) for n in a.snapshot.nodes.values()}

        def explain(src: str, dst: str, port: int, protocol: str):
            try:
                return a.policies.explain(src, dst, port, protocol)
            except InvalidInput:
                return None
        return Cluster(a.cfg.node, a.facts.node_ips if a.facts else (), {p.ip: r for r, p in pods.items()},
                       {r: p.node for r, p in pods.items()}, a.podnet.host_ifs(), nodes,
                       a.services.describe(), explain)

    def _local_pod(self, ref: str) -> rec.PodStatus:
        """The attachment of pod ``ref`` on this node; NotFound naming the
        node it runs on, or the closest known name."""
        a = self._a
        local = {p.pod: p for p in a.podnet.pods()}
        cluster = a.policies.pod_infos()
        _check_name("pod", ref, [*local, *cluster])
        if ref in local:
            return local[ref]
        node = cluster[ref].node
        raise NotFound(f"pod {ref} runs on node {node or '(not scheduled)'}, not on {a.cfg.node}",
                       hint=f"ask that node's agent (--node {node})" if node else None)

    # ------------------------------------------------------------ the data plane's own view
    def dataplane_cli(self, command: str) -> rec.CliOutput:
        a = self._a
        return rec.CliOutput(a.cfg.node, a.plane.name, command, a.plane.cli(command))

    def dataplane_dump(self, what: str) -> rec.DumpResult:
        a = self._a
        return rec.DumpResult(a.cfg.node, a.plane.name, what, tuple(a.plane.dump(what)))

    # ------------------------------------------------------------ CNI
    def cni(self, env: dict[str, str], body: bytes) -> rec.CNIReply:
        t = time.perf_counter()
        res = self._a.cni.handle(env, body)
        if self._a.metrics is not None:
            self._a.metrics.cni(env.get("CNI_COMMAND", ""), res.exit_code, res.body, time.perf_counter() - t)
        return rec.CNIReply(res.exit_code, res.body)


#: seconds a trace may wait for its collection before the next one removes it
TRACE_TTL = 60.0


def _flow(protocol: str, src: str, sport: int, dst: str, dport: int):
    """A trace's flow with its addresses checked (IPv4: what pods have)."""
    from agent.model.diag import TraceFlow  # noqa: PLC0415
    for what, ip in (("src", src), ("dst", dst)):
        try:
            ipaddress.IPv4Address(ip)
        except ValueError:
            raise InvalidInput(f"{what} {ip!r} is not an IPv4 address") from None
    if protocol != "ICMP" and not dport:
        raise InvalidInput(f"a {protocol} probe needs a destination port (dport)")
    return TraceFlow(protocol, src, sport, dst, 0 if protocol == "ICMP" else dport)


def _check_name(kind: str, ref: str, known) -> None:
    """``ref`` must be ``NS/NAME`` and one of ``known``; else InvalidInput or
    NotFound with the closest name as the hint."""
    ns, _, name = ref.partition("/")
    if not ns or not name or "/" in name:
        raise InvalidInput(f"{kind} {ref!r}: give it as NAMESPACE/NAME")
    if ref in known:
        return
    close = difflib.get_close_matches(ref, list(known), n=1)
    raise NotFound(f"no {kind} {ref}", hint=f"did you mean {close[0]}?" if close else None)
