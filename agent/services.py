"""Keeps each Service's partition of the desired state current.

Watch events mark Services dirty (the Service itself, its EndpointSlices, or
a pod its slices point at); :meth:`ServiceSync.flush` rebuilds only those
through the pure builder -- which pods back which Service port -- and hands
the ports to the data plane's :class:`agent.dataplane.ServiceRenderer`, one
partition per Service plus the renderer's shared and per-local-pod
partitions, to the scheduler as ONE transaction. Problems with an object are
logged once per distinct problem. How the data plane holds a Service (nft
maps and group ids, VPP translations) is the renderer's business.
"""
from __future__ import annotations

import logging

from agent.builders.services import NODEPORT_RANGE, build_service
from agent.cluster import Change, ClusterSnapshot
from agent.dataplane import ServiceRenderer
from agent.desired import DesiredState
from agent.model import api as rec

log = logging.getLogger(__name__)


def partition(namespace: str, name: str) -> str:
    return f"svc/{namespace}/{name}"


class ServiceSync:
    def __init__(self, snapshot: ClusterSnapshot, desired: DesiredState, node: str,
                 renderer: ServiceRenderer, *, nodeport_range=NODEPORT_RANGE) -> None:
        self.snapshot = snapshot
        self.desired = desired
        self.node = node
        self.r = renderer
        self.nodeport_range = nodeport_range
        self._local: set[str] = set()  # local pods with an address (refs)
        self.dirty: set[tuple[str, str]] = set()
        self.problems: dict[tuple[str, str], set[str]] = {}
        self._pod_index: dict[tuple[str, str], set[tuple[str, str]]] = {}
        self._last: dict[tuple[str, str], list] = {}
        # EndpointSlices by Service, kept current from the watch: looking them
        # up by scanning every slice made each rebuild O(slices), a full sync
        # O(Services x slices) (minutes at 10,000 Services)
        self._slices: dict[tuple[str, str], set[str]] = {}  # (ns, service) -> slice names
        self._slice_owner: dict[tuple[str, str], str] = {}  # (ns, slice) -> service name
        self._dirty_pods: set[tuple[str, str]] = set()

    def on_change(self, ch: Change) -> None:
        if ch.kind == "service":
            self.dirty.add((ch.namespace, ch.name))
        elif ch.kind == "endpointslice":
            # the Service the slice belonged to and the one it belongs to now
            # (both, when its service-name label changed)
            for svc in self._index_slice(ch.namespace, ch.name):
                self.dirty.add((ch.namespace, svc))
        elif ch.kind == "pod":
            self.dirty |= self._pod_index.get((ch.namespace, ch.name), set())
            self._dirty_pods.add((ch.namespace, ch.name))

    @staticmethod
    def _owner(sl: dict | None) -> str | None:
        return (((sl or {}).get("metadata") or {}).get("labels") or {}).get("kubernetes.io/service-name")

    # The index is read and written under the snapshot's lock: a resync
    # requested through the API re-indexes from another thread.
    def _index_slice(self, namespace: str, name: str) -> set[str]:
        """Re-index one slice from the snapshot; returns its old and new Service."""
        with self.snapshot.lock:
            new = self._owner(self.snapshot.objects["endpointslice"].get((namespace, name)))
            old = self._slice_owner.pop((namespace, name), None)
            if old is not None:
                names = self._slices.get((namespace, old))
                if names is not None:
                    names.discard(name)
                    if not names:
                        del self._slices[(namespace, old)]
            if new:
                self._slice_owner[(namespace, name)] = new
                self._slices.setdefault((namespace, new), set()).add(name)
        return {x for x in (old, new) if x}

    def _reindex(self) -> None:
        """Rebuild the slice index from the whole snapshot (after a relist)."""
        with self.snapshot.lock:
            self._slices.clear()
            self._slice_owner.clear()
            for (ns, name), sl in self.snapshot.objects["endpointslice"].items():
                svc = self._owner(sl)
                if svc:
                    self._slice_owner[(ns, name)] = svc
                    self._slices.setdefault((ns, svc), set()).add(name)

    def mark_all(self) -> None:
        self._reindex()
        with self.snapshot.lock:
            self.dirty |= set(self.snapshot.objects["service"])
            self._dirty_pods |= set(self.snapshot.objects["pod"])
        self.dirty |= {k for k in self._last}
        self._dirty_pods |= {tuple(r.split("/", 1)) for r in self._local}

    def build(self, key: tuple[str, str]) -> dict:
        """Desired values of one Service (empty if it is gone or invalid)."""
        ns, name = key
        with self.snapshot.lock:
            svc = self.snapshot.objects["service"].get(key)
            if svc is None:
                self._last.pop(key, None)
                self.problems.pop(key, None)
                return self.r.service(key, ())
            bucket = self.snapshot.objects["endpointslice"]
            slices = [bucket[(ns, s)] for s in sorted(self._slices.get(key, ())) if (ns, s) in bucket]
            res = build_service(svc, slices, self.snapshot.objects["pod"], self.node,
                                nodeport_range=self.nodeport_range)
        # A new set each time, assigned once complete: API threads read it
        # (describe) while this, the agent loop, builds the next one.
        seen = self.problems.get(key, frozenset())
        problems = set(res.problems)
        for p in res.problems:
            if p not in seen:
                log.warning("%s (skipped)", p)
        for sl in slices:
            for ep in sl.get("endpoints") or []:
                t = ep.get("targetRef") or {}
                if t.get("kind") == "Pod":
                    self._pod_index.setdefault((t.get("namespace", ns), t.get("name", "")), set()).add(key)
        self._last[key] = res.ports
        limit = self.r.endpoint_limit
        for sp in res.ports:
            if limit and len(sp.endpoints) > limit:
                p = (f"service {ns}/{name}: port {sp.name or sp.protocol}: {len(sp.endpoints)} endpoints, "
                     f"only the first {limit} are used by this data plane")
                if p not in seen:
                    log.warning("%s", p)
                problems.add(p)
        self.problems[key] = problems
        return self.r.service(key, res.ports)

    def _local_pod_changes(self, pods) -> dict[str, str | None]:
        """ref -> IP of each given pod that is local with an address; None for
        one that was and is not any more (gone, moved, no address)."""
        out: dict[str, str | None] = {}
        with self.snapshot.lock:
            for ns, name in pods:
                obj = self.snapshot.objects["pod"].get((ns, name)) or {}
                ip = (obj.get("status") or {}).get("podIP")
                local = (obj.get("spec") or {}).get("nodeName") == self.node
                ref = f"{ns}/{name}"
                if ip and local:
                    self._local.add(ref)
                    out[ref] = ip
                elif ref in self._local:
                    self._local.discard(ref)
                    out[ref] = None
        return out

    def flush(self) -> int:
        """Rebuild every dirty Service (and what depends on them) in one transaction."""
        if not self.dirty and not self._dirty_pods:
            return 0
        dirty, self.dirty = self.dirty, set()
        pods, self._dirty_pods = self._dirty_pods, set()
        parts = {partition(*key): self.build(key) for key in sorted(dirty)}
        parts.update(self.r.local_pods(self._local_pod_changes(pods)))
        parts.update(self.r.shared())
        if not parts:  # e.g. a pod no Service uses, on another node: no transaction
            return len(dirty)
        what = ", ".join(f"{k[0]}/{k[1]}" for k in sorted(dirty)[:3]) + (" ..." if len(dirty) > 3 else "")
        res = self.desired.set_partitions(parts, description=f"services: {what}" if dirty
                                          else "services: local pods")
        if res.errors:
            log.warning("services: %d value(s) failed: %s", len(res.errors),
                        "; ".join(f"{k}: {e}" for k, e in sorted(res.errors.items())[:3]))
        return len(dirty)

    def partitions(self) -> dict[str, dict]:
        """Every partition, from scratch (start-up resync): group ids are
        assigned in name order, so a restarted agent finds the same ones."""
        self._reindex()
        self.r.reset()
        self._local.clear()
        with self.snapshot.lock:
            keys = sorted(self.snapshot.objects["service"])
            pods = list(self.snapshot.objects["pod"])
        self.dirty.clear()
        self._dirty_pods.clear()
        parts = {partition(*k): self.build(k) for k in keys}
        parts.update(self.r.local_pods(self._local_pod_changes(pods)))
        parts.update(self.r.shared(force=True))
        return parts

    def describe(self, namespace: str | None = None, name: str | None = None) -> list[rec.ServiceInfo]:
        """Services with their frontends, endpoints and data-plane state."""
        out = []
        with self.snapshot.lock:
            keys = sorted(self.snapshot.objects["service"])
        for key in keys:
            if (namespace and key[0] != namespace) or (name and key[1] != name):
                continue
            ports = self._last.get(key, [])
            values = self.desired.partition(partition(*key))
            states = self.desired.scheduler.states_of(values)
            bad = sorted({states.get(k, "missing") for k in values} - {"configured"})
            svc = self.snapshot.objects["service"].get(key) or {}
            spec = svc.get("spec") or {}
            out.append(rec.ServiceInfo(
                service=f"{key[0]}/{key[1]}", namespace=key[0], name=key[1],
                type=spec.get("type", "ClusterIP"), cluster_ip=spec.get("clusterIP"),
                external_ips=tuple(spec.get("externalIPs") or ()),
                session_affinity=spec.get("sessionAffinity", "None"),
                external_traffic_policy=spec.get("externalTrafficPolicy"),
                internal_traffic_policy=spec.get("internalTrafficPolicy", "Cluster"),
                ports=tuple(rec.ServicePortInfo(
                    p.name, p.protocol,
                    tuple(rec.FrontendInfo(f.kind, f.ip or "*node*", f.port) for f in p.frontends),
                    tuple(rec.EndpointInfo(e.ip, e.port, e.node, e.local, e.pod) for e in p.endpoints))
                    for p in ports),
                dataplane=rec.ServiceDataplane(len(values), ",".join(bad) if bad else "programmed",
                                               tuple(sorted(self.r.describe(values)))),
                problems=tuple(sorted(self.problems.get(key, ())))))
        return out
