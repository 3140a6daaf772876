"""Keeps each Service's partition of the desired state current.

Watch events mark Services dirty (the Service itself, its EndpointSlices, or
a pod its slices point at); :meth:`ServiceSync.flush` rebuilds only those,
through the pure builder and the data plane's renderer, one partition per
Service, and hands every changed partition to the scheduler as ONE
transaction. Problems with an object are logged once per distinct problem.

Besides the per-Service partitions it keeps ``svc-lb`` (what depends on the
set of group sizes and affinity timeouts in use, counted incrementally) and
one ``svc-hairpin/<pod>`` per local pod, and it allocates the endpoint-group
ids the renderer marks packets with (stable for a Service while it exists;
derived from its name, so a restarted agent finds the same ones).
"""
from __future__ import annotations

import hashlib
import logging
from collections import Counter
from types import ModuleType

from agent.builders.services import NODEPORT_RANGE, build_service
from agent.cluster import Change, ClusterSnapshot
from agent.desired import DesiredState

log = logging.getLogger(__name__)


def partition(namespace: str, name: str) -> str:
    return f"svc/{namespace}/{name}"


LB = "svc-lb"


def _count(total: Counter, part: Counter, sign: int) -> None:
    """``total += part`` (sign 1) or ``total -= part`` (sign -1), dropping
    counts that reach zero -- what Counter's operators do, without building a
    new Counter each time (this runs once per Service in a full sync)."""
    for k, v in part.items():
        n = total.get(k, 0) + sign * v
        if n > 0:
            total[k] = n
        else:
            total.pop(k, None)


class ServiceSync:
    def __init__(self, snapshot: ClusterSnapshot, desired: DesiredState, node: str,
                 renderer: ModuleType, *, nodeport_range=NODEPORT_RANGE) -> None:
        self.snapshot = snapshot
        self.desired = desired
        self.node = node
        self.r = renderer
        self.nodeport_range = nodeport_range
        self._gids: dict[tuple, int] = {}
        self._gid_owner: dict[int, tuple] = {}
        # the group idents of each Service: freeing them must not scan every
        # Service's (that made a full sync O(Services^2): ~20 s at 10,000)
        self._gids_of: dict[tuple[str, str], set[tuple]] = {}
        self._sizes: Counter = Counter()
        self._timeouts: Counter = Counter()
        self._lb_in: dict[tuple[str, str], tuple[Counter, Counter]] = {}
        self._lb_last: tuple = ()
        self._hairpin: dict[str, str] = {}  # local pod ref -> IP
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
        self._dirty_pods |= {tuple(r.split("/", 1)) for r in self._hairpin}

    def build(self, key: tuple[str, str]) -> dict:
        """Desired values of one Service (empty if it is gone or invalid)."""
        ns, name = key
        with self.snapshot.lock:
            svc = self.snapshot.objects["service"].get(key)
            if svc is None:
                self._last.pop(key, None)
                self.problems.pop(key, None)
                self._set_lb_inputs(key, Counter(), Counter())
                self._free_gids(key)
                return {}
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
        limit = getattr(self.r, "MAX_ENDPOINTS", None)
        for sp in res.ports:
            if limit and len(sp.endpoints) > limit:
                p = (f"service {ns}/{name}: port {sp.name or sp.protocol}: {len(sp.endpoints)} endpoints, "
                     f"only the first {limit} are used by this data plane")
                if p not in seen:
                    log.warning("%s", p)
                problems.add(p)
        self.problems[key] = problems
        values: dict = {}
        sizes, timeouts = Counter(), Counter()
        wanted = set()
        for sp in res.ports:
            groups = self.r.groups_needed(sp)
            gids = {g: self._gid(key, sp.id, g) for g in groups}
            wanted |= {(key, sp.id, g) for g in groups}
            values.update(self.r.render_service_port(sp, gids, groups))
            s_in, t_in = self.r.lb_inputs(sp, groups)
            sizes.update(s_in)
            timeouts.update(t_in)
        self._free_gids(key, keep=wanted)
        self._set_lb_inputs(key, sizes, timeouts)
        return values

    # ------------------------------------------------------------ group ids
    def _gid(self, key: tuple[str, str], port_id: str, group: str) -> int:
        ident = (key, port_id, group)
        gid = self._gids.get(ident)
        if gid is None:
            h = int(hashlib.sha1(f"{port_id}/{group}".encode()).hexdigest()[:8], 16)
            gid = h % self.r.MAX_GID + 1
            while gid in self._gid_owner:  # linear probing; ids are never 0
                gid = gid % self.r.MAX_GID + 1
            self._gids[ident] = gid
            self._gid_owner[gid] = ident
            self._gids_of.setdefault(key, set()).add(ident)
        return gid

    def _free_gids(self, key: tuple[str, str], keep: set = frozenset()) -> None:
        mine = self._gids_of.get(key)
        if not mine:
            return
        for ident in [i for i in mine if i not in keep]:
            self._gid_owner.pop(self._gids.pop(ident), None)
            mine.discard(ident)
        if not mine:
            del self._gids_of[key]

    # ------------------------------------------------------------ shared chains
    def _set_lb_inputs(self, key, sizes: Counter, timeouts: Counter) -> None:
        old = self._lb_in.pop(key, None)
        if old:
            _count(self._sizes, old[0], -1)
            _count(self._timeouts, old[1], -1)
        if sizes or timeouts:
            self._lb_in[key] = (sizes, timeouts)
            _count(self._sizes, sizes, 1)
            _count(self._timeouts, timeouts, 1)

    def _lb_values(self) -> dict:
        return self.r.render_lb(set(self._sizes), set(self._timeouts))

    def _hairpin_parts(self, pods) -> dict[str, dict]:
        """``svc-hairpin/<ns>/<pod>`` partitions for the given pods (empty when
        the pod is gone, not on this node, or has no address yet)."""
        out = {}
        with self.snapshot.lock:
            for ns, name in pods:
                obj = self.snapshot.objects["pod"].get((ns, name)) or {}
                ip = (obj.get("status") or {}).get("podIP")
                local = (obj.get("spec") or {}).get("nodeName") == self.node
                ref = f"{ns}/{name}"
                if ip and local:
                    self._hairpin[ref] = ip
                    out[f"svc-hairpin/{ref}"] = self.r.render_hairpin(ip)
                elif self._hairpin.pop(ref, None) is not None:
                    out[f"svc-hairpin/{ref}"] = {}
        return out

    def flush(self) -> int:
        """Rebuild every dirty Service (and what depends on them) in one transaction."""
        if not self.dirty and not self._dirty_pods:
            return 0
        dirty, self.dirty = self.dirty, set()
        pods, self._dirty_pods = self._dirty_pods, set()
        parts = {partition(*key): self.build(key) for key in sorted(dirty)}
        parts.update(self._hairpin_parts(pods))
        lb_key = (tuple(sorted(self._sizes)), tuple(sorted(self._timeouts)))
        if lb_key != self._lb_last:
            parts[LB] = self._lb_values()
            self._lb_last = lb_key
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
        self._gids.clear()
        self._gid_owner.clear()
        self._gids_of.clear()
        self._lb_in.clear()
        self._sizes.clear()
        self._timeouts.clear()
        self._hairpin.clear()
        with self.snapshot.lock:
            keys = sorted(self.snapshot.objects["service"])
            pods = list(self.snapshot.objects["pod"])
        self.dirty.clear()
        self._dirty_pods.clear()
        parts = {partition(*k): self.build(k) for k in keys}
        parts.update(self._hairpin_parts(pods))
        parts[LB] = self._lb_values()
        self._lb_last = (tuple(sorted(self._sizes)), tuple(sorted(self._timeouts)))
        return parts

    def describe(self, namespace: str | None = None, name: str | None = None) -> list[dict]:
        """Services with their frontends, endpoints and data-plane state."""
        states = {s["key"]: s for s in self.desired.scheduler.state("nft/")}
        out = []
        with self.snapshot.lock:
            keys = sorted(self.snapshot.objects["service"])
        for key in keys:
            if (namespace and key[0] != namespace) or (name and key[1] != name):
                continue
            ports = self._last.get(key, [])
            values = self.desired.partition(partition(*key))
            bad = sorted({states.get(k, {}).get("state", "missing") for k in values} - {"configured"})
            svc = self.snapshot.objects["service"].get(key) or {}
            spec = svc.get("spec") or {}
            out.append({
                "service": f"{key[0]}/{key[1]}", "namespace": key[0], "name": key[1],
                "type": spec.get("type", "ClusterIP"), "cluster_ip": spec.get("clusterIP"),
                "external_ips": list(spec.get("externalIPs") or []),
                "session_affinity": spec.get("sessionAffinity", "None"),
                "external_traffic_policy": spec.get("externalTrafficPolicy"),
                "internal_traffic_policy": spec.get("internalTrafficPolicy", "Cluster"),
                "ports": [{"name": p.name, "protocol": p.protocol,
                           "frontends": [{"kind": f.kind, "address": f.ip or "*node*", "port": f.port}
                                         for f in p.frontends],
                           "endpoints": [{"ip": e.ip, "port": e.port, "node": e.node, "local": e.local,
                                          "pod": e.pod, "ready": True} for e in p.endpoints]}
                          for p in ports],
                "dataplane": {"values": len(values), "state": ",".join(bad) if bad else "programmed",
                              "elements": sorted(_elements(values))},
                "problems": sorted(self.problems.get(key, ())),
            })
        return out


def _elements(values: dict) -> list[str]:
    """``key -> value`` of every element a Service's values hold (single or grouped)."""
    out = []
    for v in values.values():
        items = getattr(v, "items", None)
        if isinstance(items, tuple):
            out += [f"{k} -> {val}" if val else k for k, val, _ in items]
        elif hasattr(v, "key") and hasattr(v, "set"):
            out.append(f"{v.key} -> {v.value}" if v.value else v.key)
    return out
