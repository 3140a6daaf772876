"""The node agent: register, watch, build, reconcile, serve.

Start-up (:meth:`Agent.start`), in order:

1. connect to etcd (or spawn a private one when none is configured);
2. register the node: claim its pod subnet (CAS), publish its NodeInfo;
3. list the cluster state at revision R and build every partition;
4. resync: retrieve the data plane, diff against desired, repair;
5. watch from R+1 (relist when R is compacted away);
6. serve the local API; report ``applied_revision`` and readiness in etcd.

Stopping leaves the data plane as it is: pods keep working while the agent
restarts, and the next start-up's resync repairs whatever changed meanwhile.

The daemon is data-plane neutral: it meets its data plane only through
:class:`agent.dataplane.Dataplane` (chosen by name from the configuration).
The local API is served through :class:`agent.facade.AgentFacade`, never by
reaching into this object.
"""
from __future__ import annotations

import functools
import gc
import logging
import os
import queue
import threading
import time

from agent import dataplane
from agent.builders.nodes import host_address, node_transport, vtep_mac, with_node_object
from agent.cluster import ClusterSnapshot
from agent.cnihandler import E_NOT_AVAILABLE, E_NOT_AVAILABLE_LIMITED, CNIHandler
from agent.config import AgentConfig
from agent.desired import DesiredState
from agent.errors import ContivError, FatalError, Unavailable
from agent.gcpause import gc_paused
from agent.ipam.pods import PodIPAM
from agent.ipam.subnets import SubnetAllocator
from agent.looprequest import LoopRequest
from agent.metrics import attach as attach_metrics
from agent.model import keys
from agent.model.records import AgentStatus, NodeInfo
from agent.podnet import PodNetwork
from agent.podopts import mirrored_pod
from agent.policies import PolicySync
from agent.reconciler import Scheduler
from agent.services import ServiceSync
from agent.store import Compacted, WatchBatch, merge_queued, open_store

log = logging.getLogger(__name__)

VERSION = "0.1.0"


NODE_PARTITION = "node"
HEARTBEAT = 10.0


class Agent:
    """The node agent. Every attribute exists from construction; what needs
    etcd and the node's subnet claim (``store``, ``node_info``, ``ipam``,
    ``podnet``, ``cni``) is None until :meth:`start` has made it."""

    def __init__(self, cfg: AgentConfig) -> None:
        self.cfg = cfg.validated()
        self.plane = dataplane.create(self.cfg.dataplane, self.cfg)  # unopened until start()
        self.snapshot = ClusterSnapshot()
        self.started = time.time()
        self.ready = False
        self.applied_revision = 0
        self.last_resync: dict = {}
        #: etcd at the last heartbeat (``contivctl status``): a quiet watch says nothing
        self.store_health: dict = {"reachable": True, "error": "", "checked": 0.0}
        self.facts: dataplane.NodeFacts | None = None
        self._node_cidr: str | None = None  # the reflected Node object's podCIDR
        self.node_info: NodeInfo | None = None
        self.store = None
        self.ipam: PodIPAM | None = None
        self.podnet: PodNetwork | None = None
        self.cni: CNIHandler | None = None
        self.scheduler = Scheduler(history_size=self.cfg.history_size)
        self.desired = DesiredState(self.scheduler)
        self.services = ServiceSync(self.snapshot, self.desired, self.cfg.node,
                                    self.plane.service_renderer())
        self.policies = PolicySync(self.snapshot, self.desired, self.cfg.node,
                                   self.plane.policy_renderer())
        self._q: queue.Queue = queue.Queue()
        self._stop = threading.Event()
        self._watch = None
        self._etcd = None
        self._api = None
        self.metrics = None  # agent.metrics.Metrics when metrics_address is set
        self._loop: threading.Thread | None = None
        self._relist_pending = False
        #: why the agent stopped by itself (a FatalError); None while it runs
        self.fatal: FatalError | None = None
        #: the data plane's connection the last resync saw (see Dataplane.generation)
        self._plane_generation = 0

    # ------------------------------------------------------------------ start-up
    def start(self) -> "Agent":
        # A long-lived daemon with a large heap: collect young objects less often.
        gc.set_threshold(20000, 20, 20)
        try:
            phases: list[tuple[str, float]] = []
            t = time.perf_counter()

            def phase(name: str) -> None:
                nonlocal t
                now = time.perf_counter()
                phases.append((name, now - t))
                t = now
            self._connect()
            phase("connect")
            self._open_dataplane()
            self._register()
            self.metrics = attach_metrics(self)  # counts from the start-up resync on
            phase("register")
            # What start-up builds lives as long as the agent: the collector is
            # paused while it is built and never walks it afterwards (frozen).
            with gc_paused(keep=True):
                revision = self._relist()
                phase("list")
                res = self._resync("start-up resync")
                phase("sync")
                self._start_watch(revision + 1)
                self._start_api()
                self.ready = True
                self._report()
                phase("serve")
            self._loop = threading.Thread(target=self._run, name="agent-loop", daemon=True)
            self._loop.start()
            log.info("agent %s ready: node IP %s, subnet %s, revision %d", self.cfg.node,
                     self.node_info.node_ip, self.node_info.pod_subnets[0], self.applied_revision)
            # where start-up time goes, for operators and benchmarks alike
            log.info("start-up: %s; %d objects, %d data-plane operations", ", ".join(
                f"{n} {s * 1000:.0f} ms" for n, s in phases), sum(self.snapshot.counts().values()),
                len(res.plan.operations))
            return self
        except BaseException:
            self.stop()
            raise

    def _connect(self) -> None:
        endpoint = self.cfg.etcd
        if not endpoint:
            from agent.store.embedded import EmbeddedEtcd  # noqa: PLC0415
            self._etcd = EmbeddedEtcd(self.cfg.etcd_data_dir, client_url="http://127.0.0.1:12379",
                                      peer_url="http://127.0.0.1:12380").start()
            endpoint = self._etcd.endpoint
            log.info("no etcd configured: started a private etcd at %s (data in %s)", endpoint,
                     self.cfg.etcd_data_dir)
        self.store = open_store(endpoint)
        deadline = time.monotonic() + 30
        while True:
            try:
                self.store.revision()
                return
            except Unavailable:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)

    def _open_dataplane(self) -> None:
        kv = self.store.get(keys.k8s_key("node", "", self.cfg.node))  # the reflected Node, if any
        self.cfg, self._node_cidr = with_node_object(self.cfg, kv.value if kv else None)
        self.facts = self.plane.open(self.cfg)
        for d in self.plane.descriptors():
            self.scheduler.register(d)
        # the start-up resync's retrieve reads the data plane; start that now
        self.plane.prefetch()

    def _register(self) -> None:
        subnet = SubnetAllocator(self.store, self.cfg.pod_cidr, self.cfg.node_prefix).claim(
            self.cfg.node, self._node_cidr)
        self.node_info = NodeInfo(
            name=self.cfg.node, index=subnet.index, node_ip=self.facts.node_ip,
            pod_subnets=(str(subnet.subnet),), gateways=(subnet.gateway,),
            vtep_mac=vtep_mac(subnet.index), dataplane=self.cfg.dataplane,
            node_ips=self.facts.node_ips)
        self.store.put(keys.node_key(self.cfg.node), self.node_info.to_json().encode())
        self.ipam = PodIPAM(self.store, self.cfg.node, subnet.subnet, reserved=[subnet.gateway])
        if self.plane.host_in_subnet:  # the node's own address in its pod subnet, kept from pods
            self.plane.host_address = self.ipam.set_aside(host_address(str(subnet.subnet)))
            if not self.plane.host_address:
                log.warning("a pod holds the node's own address in %s (an earlier version's): the "
                            "node reaches only its own pods until it is gone and the agent restarted",
                            subnet.subnet)
        self.podnet = PodNetwork(self.ipam, self.desired, lambda: self.node_info, mtu=self.facts.mtu,
                                 plane=self.plane,
                                 pod_object=functools.partial(mirrored_pod, self.snapshot, self.store))
        self.cni = CNIHandler(self.podnet, self.cni_status)

    def _relist(self) -> int:
        """Load the whole watched state; returns the revision of the listing.

        One range read of the common root: two reads (k8s, nodes) could miss
        a write that lands between them -- it would be in neither the listing
        nor the watch that resumes after the later one."""
        self.snapshot.reset()
        from agent.store.base import Event  # noqa: PLC0415
        kvs, revision = self.store.list(keys.ROOT)
        for kv in kvs:
            if kv.key.startswith(keys.WATCHED):
                self.snapshot.apply(Event(kv.key, kv.value, kv.mod_revision))
        self.applied_revision = revision
        return revision

    def _build_all(self) -> dict[str, dict]:
        parts = {NODE_PARTITION: self._node_values()}
        parts.update(self.podnet.restore_partitions())
        parts.update(self.services.partitions())
        parts.update(self.policies.partitions())
        return parts

    def _rebuild_after_relist(self) -> None:
        self.desired.set_partition(NODE_PARTITION, self._node_values(), description="relist")
        self.services.mark_all()
        self.services.flush()
        self.desired.set_partitions(self.policies.partitions(), description="relist: network policies")

    def _node_values(self) -> dict:
        with self.snapshot.lock:
            registry = list(self.snapshot.nodes.values())
        t = node_transport(self.node_info, registry, vni=self.cfg.vxlan_vni, port=self.cfg.vxlan_port,
                           mtu=self.facts.mtu, underlay_dev=self.facts.underlay)
        if self.services.r.nodes(t):
            self.services.mark_all()  # e.g. node ports of peers held here: the next flush
        return self.plane.render_node(t)

    def _resync(self, why: str, built: dict[str, dict] | None = None):
        """Rebuild every partition and resync the data plane against them.
        ``built``: the Services' and policies' partitions, made beforehand
        (see :meth:`_resync_live`); None builds everything here, the pods'
        partitions from their IPAM records in etcd (start-up)."""
        def build() -> dict[str, dict]:
            if built is None:
                return self._build_all()
            # The pods' partitions as CNI keeps them, not re-read from etcd:
            # nothing here may fail once Services and policies were rebuilt
            # (their group ids would no longer match the desired state).
            pods = {n: self.desired.partition(n) for n in self.desired.names("pod/")}
            return {NODE_PARTITION: self._node_values(), **pods, **built}
        # Under the desired-state lock: a CNI ADD/DEL cannot slip between
        # building the pod partitions (from IPAM) and the scheduler's resync.
        # A data plane that is not there (VPP not running yet) cannot be read:
        # the desired state is held for the resync its (re)connection brings.
        self._plane_generation = self.plane.generation()
        held = self.plane.ready()
        with gc_paused():
            res = self.desired.resync(build, description=why, held=held)
        if held:
            log.warning("%s: the data plane is not ready (%s); holding the desired state", why, held)
        self.last_resync = {"time": time.time(), "seq": res.record.seq,
                            "operations": len(res.plan.operations), "errors": len(res.errors)}
        if res.errors:
            log.warning("%s: %d operation(s) failed: %s", why, len(res.errors),
                        "; ".join(f"{k}: {e}" for k, e in sorted(res.errors.items())[:5]))
        return res

    def _resync_live(self, why: str):
        """A resync while the agent serves (periodic, or asked for through the
        API), on the agent loop only. CNI requests wait for the desired-state
        lock, so as little as possible happens under it: the Services and
        policies -- which only this thread changes -- are rebuilt before it is
        taken, and the table listing the retrieve needs runs on a thread
        meanwhile. At 10,000 Services that takes about 1.5 s out of the lock."""
        self.plane.prefetch()
        try:
            with gc_paused():
                built = {**self.services.partitions(), **self.policies.partitions()}
                self.plane.wait_prefetch()
                return self._resync(why, built=built)
        finally:
            self.plane.discard_prefetch()  # used, or not to be used later

    def request_resync(self, why: str, timeout: float = 300.0):
        """Run a resync on the agent loop and return its result (API threads)."""
        return self._on_loop(LoopRequest(why, lambda: self._resync_live(why)), timeout)

    def request_node_render(self, why: str, timeout: float = 60.0):
        """Render the node's values again on the agent loop -- STN's record
        changed: the data plane takes or lets go of a NIC -- and return the
        transaction (API threads). No read-back of the data plane: it costs
        what the node's values changed, not a resync."""
        return self._on_loop(LoopRequest(why, lambda: self.desired.set_partition(
            NODE_PARTITION, self._node_values(), description=why)), timeout)

    def _on_loop(self, req: LoopRequest, timeout: float):
        self._q.put(req)
        return req.wait(self._stop.is_set, timeout)

    # ------------------------------------------------------------------ watch
    def _start_watch(self, from_revision: int) -> None:
        # One watch on the common root: events of other prefixes (status, ipam)
        # are dropped in _on_batch. One stream keeps revisions totally ordered.
        self._watch = self.store.watch(keys.ROOT, from_revision, self._q.put)

    def _on_batch(self, batch: WatchBatch) -> None:
        with gc_paused():
            self._apply_batch(batch)

    def _apply_batch(self, batch: WatchBatch) -> None:
        dirty_nodes = False
        relevant = False
        for ev in batch.events:
            if not ev.key.startswith(keys.WATCHED):
                continue
            relevant = True
            ch = self.snapshot.apply(ev)
            if ch is None:
                continue
            if ch.kind == "registry":
                dirty_nodes = True
            self.services.on_change(ch)
            self.policies.on_change(ch)
        if dirty_nodes:
            self.desired.set_partition(NODE_PARTITION, self._node_values(),
                                       description="node registry changed")
        self.services.flush()
        self.policies.flush()
        if relevant:
            self.applied_revision = max(self.applied_revision,
                                        max(e.revision for e in batch.events))
            self._report()

    # ------------------------------------------------------------------ main loop
    def _run(self) -> None:
        next_resync = time.monotonic() + self.cfg.resync_interval if self.cfg.resync_interval else None
        next_gc = time.monotonic() + self.cfg.gc_interval if self.cfg.gc_interval else None
        next_beat = time.monotonic() + HEARTBEAT
        watch_backoff = 0.2
        while not self._stop.is_set():
            now = time.monotonic()
            deadlines = [d for d in (next_resync, next_gc, next_beat) if d]
            retry_in = self.scheduler.next_retry_in()
            timeout = min([d - now for d in deadlines] + ([retry_in] if retry_in is not None else []))
            try:
                item = self._q.get(timeout=max(0.0, min(timeout, 1.0)))
            except queue.Empty:
                item = None
            try:
                if isinstance(item, WatchBatch):
                    watch_backoff = 0.2
                    item, after = merge_queued(self._q, item)
                    self._on_batch(item)
                    if after is not None:
                        self._q.put(after)  # handled on the next turn (rare: a watch error)
                elif isinstance(item, LoopRequest):
                    item.execute()
                elif isinstance(item, Compacted):
                    log.warning("watch revision compacted; relisting")
                    self._rewatch(relist=True)
                elif isinstance(item, Exception):
                    log.warning("watch failed: %s; re-watching in %.1fs", item, watch_backoff)
                    self._stop.wait(watch_backoff)
                    watch_backoff = min(watch_backoff * 2, 10.0)
                    self._rewatch(relist=self._relist_pending)
                now = time.monotonic()
                if self.plane.generation() != self._plane_generation and not self.plane.ready():
                    # (re)connected -- a restarted VPP comes back empty: all again
                    self._resync_live("data plane (re)connected")
                    next_resync = now + self.cfg.resync_interval if self.cfg.resync_interval else None
                self.scheduler.retry_due()
                if next_resync and now >= next_resync:
                    self._resync_live("periodic resync")
                    next_resync = now + self.cfg.resync_interval
                if next_gc and now >= next_gc:
                    released = self.podnet.gc()
                    if released:
                        log.info("ipam gc released %d allocation(s) whose netns is gone", len(released))
                    next_gc = now + self.cfg.gc_interval
                if now >= next_beat:
                    self._report()
                    next_beat = now + HEARTBEAT
                if self.scheduler.fatal is not None:
                    raise self.scheduler.fatal
            except FatalError as e:
                # never retried: the agent stops rather than act on a broken view
                log.error("fatal: %s%s; the agent stops", e.message, f" ({e.hint})" if e.hint else "")
                self.fatal = e
                self._stop.set()
            except ContivError as e:
                log.warning("agent loop: %s", e.message)
            except Exception:  # noqa: BLE001 -- the loop must survive one bad event
                log.exception("agent loop")

    def _rewatch(self, *, relist: bool) -> None:
        if self._watch:
            self._watch.cancel()
            self._watch = None
        try:
            if relist:
                with gc_paused():
                    revision = self._relist()
                    self._rebuild_after_relist()
                self._report()
            else:
                revision = self.applied_revision
            self._start_watch(revision + 1)
        except ContivError as e:
            # etcd still away: try again through the loop, with its backoff
            self._relist_pending = relist
            self._q.put(e)

    # ------------------------------------------------------------------ status
    def cni_status(self) -> tuple[int, str]:
        if not self.ready:
            return E_NOT_AVAILABLE, f"agent on {self.cfg.node} is starting"
        why = self.plane.ready()
        if why:
            return E_NOT_AVAILABLE, f"data plane {self.plane.name}: {why}"
        # only the node's own values: asking for the state of every value (every
        # Service's map elements) made this O(cluster size) -- ~1 s at 10,000 Services
        states = self.scheduler.states_of(self.desired.partition(NODE_PARTITION))
        bad = [(k, st) for k, st in sorted(states.items()) if st != "configured"]
        if bad:
            return E_NOT_AVAILABLE_LIMITED, "node networking is not in place: " + ", ".join(
                f"{k} {st}" for k, st in bad[:3])
        if self.ipam.stats()["free"] <= 0:
            return E_NOT_AVAILABLE, f"no free pod address in {self.ipam.subnet}"
        return 0, ""

    def status(self) -> AgentStatus:
        return AgentStatus(node=self.cfg.node, applied_revision=self.applied_revision,
                           ready=self.ready, pid=os.getpid(), started=self.started,
                           heartbeat=time.time(), dataplane=self.cfg.dataplane,
                           failed_values=self.scheduler.failed_count(), version=VERSION)

    def _report(self) -> None:
        try:
            self.store.put(keys.status_key(self.cfg.node), self.status().to_json().encode())
            self.store_health = {"reachable": True, "error": "", "checked": time.time()}
        except Unavailable as e:
            self.store_health = {"reachable": False, "error": e.message, "checked": time.time()}
            log.warning("cannot report status: %s", e.message)

    # ------------------------------------------------------------------ API
    def _start_api(self) -> None:
        from agent.api.routes import build_router  # noqa: PLC0415
        from agent.api.server import APIServer  # noqa: PLC0415
        from agent.facade import AgentFacade  # noqa: PLC0415
        if self.metrics is not None:  # first: health says "starting" from the API's start on
            self.metrics.start(self.cfg.metrics_address)
        self._api = APIServer(self.cfg.socket, build_router(AgentFacade(self))).start()

    # ------------------------------------------------------------------ stop
    def request_stop(self) -> None:
        """Ask a running agent to stop (safe from a signal handler): :meth:`wait`
        returns, and the caller then calls :meth:`stop`."""
        self._stop.set()

    def stop(self) -> None:
        """Stop serving and watching; leave the data plane in place."""
        self._stop.set()
        was_ready, self.ready = self.ready, False
        if self._api:
            self._api.stop()
            self._api = None
        if self.metrics is not None:
            self.metrics.stop()
        if self._watch:
            self._watch.cancel()
            self._watch = None
        if self._loop and self._loop is not threading.current_thread():
            self._loop.join(timeout=5)
        if self.podnet is not None:
            self.podnet.close()  # after the API: no ADD can start a commit any more
        if self.store is not None and was_ready:
            self._report()
        if self.store is not None:
            self.store.close()
        self.plane.close()
        if self._etcd:
            self._etcd.stop()
            self._etcd = None

    def wait(self) -> None:
        while not self._stop.wait(3600):
            pass


def run(cfg: AgentConfig) -> None:
    """Run until SIGTERM/SIGINT (installed by the caller); raises the
    FatalError that stopped the agent by itself, if one did."""
    agent = Agent(cfg)
    agent.start()
    try:
        agent.wait()
    finally:
        agent.stop()
    if agent.fatal is not None:
        raise agent.fatal

