"""Pod networking on this node: add, delete, check and garbage-collect pod
attachments. Independent of the CNI wire format (see :mod:`agent.cnihandler`)
and of the data plane (the renderer is injected).

ADD = allocate (etcd CAS) -> render (the data plane's
:meth:`~agent.dataplane.Dataplane.render_pod`) -> one scheduler transaction. If any of
the pod's values fails, the pod's partition is removed again and the address
released before the error goes up: a failed ADD leaks nothing (DESIGN.md
rule 11). Each ADD records a timing breakdown, queryable per pod.
"""
from __future__ import annotations

import collections
import logging
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable, Iterable

from agent import podopts
from agent.builders.pods import pod_attachment
from agent.dataplane import Dataplane, PodInterface
from agent.desired import DesiredState
from agent.errors import ContivError, DataplaneError, InvalidInput
from agent.ipam.pods import PodIPAM
from agent.model import names
from agent.model.api import PodStatus
from agent.model.records import Allocation, NodeInfo

log = logging.getLogger(__name__)


def partition_name(container_id: str, ifname: str) -> str:
    return f"pod/{container_id}/{ifname}"


def _settled(commit) -> bool:
    """Whether a reservation's transaction wrote it (False if it failed: an
    etcd that did not answer leaves the outcome open, and a retried ADD finds
    whatever it wrote)."""
    try:
        return commit.result()[0]
    except Exception:  # noqa: BLE001 -- the ADD's own error is the one to report
        return False


class _LostReservation(Exception):
    """A reserved address's transaction lost to another writer (not an error:
    the ADD goes the serial way)."""


@dataclass(slots=True)
class PodResult:
    """What ADD produced, in data-plane terms the CNI layer shapes into a result."""

    allocation: Allocation
    interfaces: tuple[PodInterface, ...]  # the pod's own last
    gateways: tuple[str, ...]
    mtu: int
    timings: dict[str, float] = field(default_factory=dict)


class PodNetwork:
    """See the module docstring. ``plane`` renders pods and names their
    interfaces (:class:`agent.dataplane.Dataplane`)."""

    def __init__(self, ipam: PodIPAM, desired: DesiredState, node: Callable[[], NodeInfo], *,
                 mtu: int, plane: Dataplane, timing_history: int = 512,
                 pod_object: Callable[[str, str], dict | None] | None = None) -> None:
        self.ipam = ipam
        #: the mirrored pod (namespace, name) -> its object or None: what it
        #: asks for by annotation (agent.podopts)
        self.pod_object = pod_object
        self.desired = desired
        self.node = node
        self.mtu = mtu
        self.plane = plane
        # runs the etcd transactions of reserved addresses while ADDs program
        # the data plane (a few: ADDs of different pods run concurrently)
        self._commits = ThreadPoolExecutor(max_workers=4, thread_name_prefix="ipam-commit")
        self.timings: collections.OrderedDict[str, dict] = collections.OrderedDict()
        #: called with (op, timings in ms) of each ADD and DEL (the agent's metrics)
        self.on_timing = None
        self._timing_history = timing_history
        # One lock per attachment: the runtime may retry an ADD while the first
        # is still running; the second must wait, then find the first's result.
        self._locks: dict[str, threading.Lock] = collections.defaultdict(threading.Lock)
        self._locks_guard = threading.Lock()

    def _lock(self, container_id: str, ifname: str) -> threading.Lock:
        with self._locks_guard:
            return self._locks[f"{container_id}/{ifname}"]

    # ------------------------------------------------------------------ ADD
    def add(self, container_id: str, ifname: str, netns: str, *, pod_namespace: str = "",
            pod_name: str = "", mtu: int = 0, pod_uid: str = "") -> PodResult:
        """``mtu``: the network configuration's, if it sets one (else the node's);
        ``pod_uid``: the runtime's K8S_POD_UID, if it gave one."""
        names.check_container_id(container_id)
        names.check_ifname(ifname)
        if not netns.startswith("/"):
            raise InvalidInput(f"netns {netns!r} must be an absolute path")
        if not os.path.exists(netns):
            raise InvalidInput(f"network namespace {netns} does not exist")
        memif = self._options(pod_namespace, pod_name, pod_uid).memif
        with self._lock(container_id, ifname):
            t0 = time.perf_counter()
            alloc = self.ipam.reserve(container_id, ifname, netns=netns, pod_namespace=pod_namespace,
                                      pod_name=pod_name, mtu=mtu, memif=memif)
            if alloc is not None:
                # The node owns its subnet: the address is chosen here and its
                # etcd transaction runs while the data plane is programmed;
                # the answer waits for both (nothing is lost if the agent dies
                # right after answering).
                try:
                    return self._program(alloc, True, t0, self._commits.submit(self._commit, alloc))
                except _LostReservation:
                    pass  # another writer had the address or this attachment: the serial path
            alloc, created = self.ipam.allocate(container_id, ifname, netns=netns,
                                                pod_namespace=pod_namespace, pod_name=pod_name,
                                                mtu=mtu, memif=memif)
            if not created and alloc.netns != netns:
                raise InvalidInput(f"container {container_id} interface {ifname} is already "
                                   f"attached in {alloc.netns}",
                                   hint="a container ID and interface name identify one attachment")
            return self._program(alloc, created, t0, None)

    def _options(self, namespace: str, name: str, uid: str) -> podopts.PodOptions:
        """What the pod asks for (nothing when the runtime did not name it);
        refused before anything is allocated when this data plane cannot.
        A pod not mirrored yet (or only an older pod of that name, by UID)
        asks for nothing -- said in the log, not silently."""
        if not (name and self.pod_object):
            return podopts.NONE
        obj = self.pod_object(namespace, name)
        if namespace and (obj is None or (uid and (obj.get("metadata") or {}).get("uid", uid) != uid)):
            log.warning("pod %s/%s is not in the cluster state this agent mirrors (yet): what it "
                        "asks by annotation (%s) is not read", namespace, name, podopts.MEMIF)
            return podopts.NONE
        opts = podopts.pod_options(obj)
        if opts.memif and not self.plane.supports_memif:
            raise podopts.PodOptionError(
                f"pod {namespace}/{name} asks for a memif ({podopts.MEMIF}), which this node's data "
                f"plane ({self.plane.name}) does not give: a memif needs VPP with its memif plugin",
                hint="schedule it on a VPP node, or remove the annotation")
        return opts

    def _commit(self, alloc: Allocation) -> tuple[bool, float]:
        t = time.perf_counter()
        return self.ipam.commit(alloc), (time.perf_counter() - t) * 1000

    def _program(self, alloc: Allocation, created: bool, t0: float, commit) -> PodResult:
        """Render and program an allocation's values; ``commit``: the future of
        its etcd transaction when that runs meanwhile (None: already written)."""
        t1 = time.perf_counter()
        part = partition_name(alloc.container_id, alloc.ifname)
        written = commit is None
        try:
            att = pod_attachment(alloc, self.node(), self.mtu)
            values = self.plane.render_pod(att)
            t2 = time.perf_counter()
            res = self.desired.set_partition(part, values, description=f"cni add {alloc.pod_ref}")
            t3 = time.perf_counter()
            ipam_ms = (t1 - t0) * 1000
            if commit is not None:
                written, ipam_ms = commit.result()
                if not written:
                    raise _LostReservation
            failed = res.failed(values)
            if failed:
                # Name the root cause: a value that really failed, not one
                # merely pending on it (those sort first by key, e.g.
                # linux/podroute/... before linux/veth/...).
                key, why = min(failed.items(), key=lambda kv: (kv[0] not in res.errors, kv[0]))
                raise DataplaneError(f"pod {alloc.pod_ref}: {key}: {why}")
            interfaces = self.plane.pod_interfaces(att, self.desired.scheduler.metadata)
        except BaseException as e:
            if commit is not None and not written and not isinstance(e, _LostReservation):
                written = _settled(commit)  # failed before its outcome was known: learn it
            if created:
                self._undo(alloc, release=written)
            raise
        t4 = time.perf_counter()
        timings = {"ipam_ms": ipam_ms, "render_ms": (t2 - t1) * 1000,
                   "dataplane_ms": (t3 - t2) * 1000, "total_ms": (t4 - t0) * 1000}
        if created:  # a repeated ADD is answered from the record; its timing is not news
            self._record_timing(alloc, "add", timings)
        return PodResult(alloc, interfaces, att.gateways, att.mtu, timings)

    def _undo(self, alloc: Allocation, *, release: bool) -> None:
        """Take a failed ADD back: its values, and its allocation if written."""
        try:
            self.desired.set_partition(partition_name(alloc.container_id, alloc.ifname), {},
                                       description=f"undo failed add {alloc.pod_ref}")
        finally:
            if release:
                self.ipam.release(alloc.container_id, alloc.ifname)

    # ------------------------------------------------------------------ DEL
    def delete(self, container_id: str, ifname: str) -> Allocation | None:
        """Remove the attachment; tolerant of anything already gone."""
        names.check_container_id(container_id)
        names.check_ifname(ifname)
        with self._lock(container_id, ifname):
            t0 = time.perf_counter()
            part = partition_name(container_id, ifname)
            res = self.desired.set_partition(part, {}, description=f"cni del {container_id}/{ifname}")
            if not res.ok:
                # The reconciler retries failed deletions; the address must not
                # be reused while the old interface may still hold it.
                raise DataplaneError(f"removing {container_id}/{ifname}: "
                                     + "; ".join(f"{k}: {e}" for k, e in sorted(res.errors.items())))
            alloc = self.ipam.release(container_id, ifname)
            with self._locks_guard:
                self._locks.pop(f"{container_id}/{ifname}", None)
            if alloc:
                self._record_timing(alloc, "del", {"total_ms": (time.perf_counter() - t0) * 1000})
            return alloc

    # ------------------------------------------------------------------ CHECK
    def check(self, container_id: str, ifname: str, netns: str,
              expect_ips: Iterable[str] = ()) -> list[str]:
        """Problems with the attachment (empty list: healthy). Reads the data plane."""
        alloc = self.ipam.get(container_id, ifname)
        if alloc is None:
            return [f"no address allocated for {container_id}/{ifname}"]
        problems = []
        if alloc.netns != netns:
            problems.append(f"attachment is recorded in {alloc.netns}, not {netns}")
        want = set(expect_ips)
        if want and want != set(alloc.addresses):
            problems.append(f"addresses {sorted(alloc.addresses)} differ from the previous result "
                            f"{sorted(want)}")
        part = self.desired.partition(partition_name(container_id, ifname))
        if not part:
            problems.append("the agent has no desired state for this attachment")
        plan = self.desired.scheduler.dry_run(resync=True, keys=part)
        for op in plan.operations:
            if op.key in part:
                problems.append(f"{op.key}: {op.reason}")
        return problems

    # ------------------------------------------------------------------ GC
    def gc(self, valid: Iterable[tuple[str, str]] | None = None) -> list[Allocation]:
        """Release attachments the runtime no longer knows (or whose netns is gone)."""
        released = []
        keep = None if valid is None else set(valid)
        for a in self.ipam.list():
            if keep is not None:
                gone = (a.container_id, a.ifname) not in keep
            else:
                gone = bool(a.netns) and not os.path.exists(a.netns)
            if not gone:
                continue
            try:
                if self.delete(a.container_id, a.ifname):
                    released.append(a)
            except ContivError as e:
                log.warning("gc of %s/%s failed: %s", a.container_id, a.ifname, e.message)
        return released

    # ------------------------------------------------------------------ restart
    def restore_partitions(self) -> dict[str, dict]:
        """Desired values of every pod this node has an allocation for
        (used at startup, before the first resync)."""
        node = self.node()
        out = {}
        for a in self.ipam.list():
            out[partition_name(a.container_id, a.ifname)] = self.plane.render_pod(
                pod_attachment(a, node, self.mtu))
        return out

    def host_ifs(self) -> dict[str, str]:
        """Host-side interface -> pod ref of each local attachment (for the
        counters: no data-plane state is looked up, unlike :meth:`pods`)."""
        return {self.plane.pod_host_if(a.container_id, a.ifname): a.pod_ref for a in self.ipam.list()}

    def pods(self) -> list[PodStatus]:
        """Local attachments with their data-plane state, for diagnostics."""
        out = []
        for a in self.ipam.list():
            keys = self.desired.partition(partition_name(a.container_id, a.ifname))
            states = self.desired.scheduler.states_of(keys)
            bad = sorted({states.get(k, "missing") for k in keys} - {"configured"})
            out.append(PodStatus(
                a.pod_ref, a.pod_namespace, a.pod_name, a.container_id, a.ifname, tuple(a.ips),
                a.netns, self.plane.pod_host_if(a.container_id, a.ifname), a.created,
                ",".join(bad) if bad else ("ok" if keys else "missing"),
                self.timings.get(f"{a.container_id}/{a.ifname}", {}),
                bool(a.netns) and not os.path.exists(a.netns), a.memif))
        return out

    def close(self) -> None:
        """Wait for IPAM commits still running (before the store closes) and
        stop their threads."""
        self._commits.shutdown(wait=True)

    def _record_timing(self, alloc: Allocation, op: str, timings: dict) -> None:
        key = f"{alloc.container_id}/{alloc.ifname}"
        entry = self.timings.setdefault(key, {"pod": alloc.pod_ref})
        entry[op] = {k: round(v, 3) for k, v in timings.items()}
        self.timings.move_to_end(key)
        while len(self.timings) > self._timing_history:
            self.timings.popitem(last=False)
        if self.on_timing is not None:
            self.on_timing(op, timings)

