"""Keeps each Service's partition of the desired state current.

Watch events mark Services dirty (the Service itself, its EndpointSlices, or
a pod its slices point at); :meth:`ServiceSync.flush` rebuilds only those,
through the pure builder and the data plane's renderer, one partition per
Service. Problems with an object are logged once per distinct problem.
"""
from __future__ import annotations

import logging
from typing import Callable

from agent.builders.services import NODEPORT_RANGE, build_service, service_slices
from agent.cluster import Change, ClusterSnapshot
from agent.desired import DesiredState

log = logging.getLogger(__name__)


def partition(namespace: str, name: str) -> str:
    return f"svc/{namespace}/{name}"


class ServiceSync:
    def __init__(self, snapshot: ClusterSnapshot, desired: DesiredState, node: str,
                 render: Callable[[list], dict], *, nodeport_range=NODEPORT_RANGE) -> None:
        self.snapshot = snapshot
        self.desired = desired
        self.node = node
        self.render = render
        self.nodeport_range = nodeport_range
        self.dirty: set[tuple[str, str]] = set()
        self.problems: dict[tuple[str, str], set[str]] = {}
        self._pod_index: dict[tuple[str, str], set[tuple[str, str]]] = {}
        self._last: dict[tuple[str, str], list] = {}

    def on_change(self, ch: Change) -> None:
        if ch.kind == "service":
            self.dirty.add((ch.namespace, ch.name))
        elif ch.kind == "endpointslice":
            svc = self._slice_service(ch)
            if svc:
                self.dirty.add((ch.namespace, svc))
        elif ch.kind == "pod":
            self.dirty |= self._pod_index.get((ch.namespace, ch.name), set())

    def _slice_service(self, ch: Change) -> str | None:
        sl = self.snapshot.objects["endpointslice"].get((ch.namespace, ch.name))
        if sl is None:  # deleted: find the Service by what we rendered from it
            return self._slice_owner.pop((ch.namespace, ch.name), None) \
                if hasattr(self, "_slice_owner") else None
        name = ((sl.get("metadata") or {}).get("labels") or {}).get("kubernetes.io/service-name")
        if name:
            self.__dict__.setdefault("_slice_owner", {})[(ch.namespace, ch.name)] = name
        return name

    def mark_all(self) -> None:
        with self.snapshot.lock:
            self.dirty |= set(self.snapshot.objects["service"])
        self.dirty |= {k for k in self._last}

    def build(self, key: tuple[str, str]) -> dict:
        """Desired values of one Service (empty if it is gone or invalid)."""
        ns, name = key
        with self.snapshot.lock:
            svc = self.snapshot.objects["service"].get(key)
            if svc is None:
                self._last.pop(key, None)
                self.problems.pop(key, None)
                return {}
            slices = service_slices(self.snapshot.objects["endpointslice"], ns, name)
            res = build_service(svc, slices, self.snapshot.objects["pod"], self.node,
                                nodeport_range=self.nodeport_range)
        for sl in slices:
            owner = (sl.get("metadata") or {}).get("name")
            if owner:
                self.__dict__.setdefault("_slice_owner", {})[(ns, owner)] = name
        seen = self.problems.setdefault(key, set())
        for p in res.problems:
            if p not in seen:
                log.warning("%s (skipped)", p)
        self.problems[key] = set(res.problems)
        for sl in slices:
            for ep in sl.get("endpoints") or []:
                t = ep.get("targetRef") or {}
                if t.get("kind") == "Pod":
                    self._pod_index.setdefault((t.get("namespace", ns), t.get("name", "")), set()).add(key)
        self._last[key] = res.ports
        return self.render(res.ports)

    def flush(self) -> int:
        """Rebuild every dirty Service; returns how many were rebuilt."""
        dirty, self.dirty = self.dirty, set()
        for key in sorted(dirty):
            values = self.build(key)
            res = self.desired.set_partition(partition(*key), values,
                                             description=f"service {key[0]}/{key[1]}")
            if res.errors:
                log.warning("service %s/%s: %d value(s) failed: %s", key[0], key[1], len(res.errors),
                            "; ".join(f"{k}: {e}" for k, e in sorted(res.errors.items())[:3]))
        return len(dirty)

    def partitions(self) -> dict[str, dict]:
        """Every Service's values (for the start-up resync)."""
        with self.snapshot.lock:
            keys = list(self.snapshot.objects["service"])
        self.dirty.clear()
        return {partition(*k): self.build(k) for k in keys}

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
                              "elements": sorted(k.split("/", 3)[3] + " -> " + v.value
                                                 for k, v in values.items()
                                                 if k.startswith("nft/element/"))},
                "problems": sorted(self.problems.get(key, ())),
            })
        return out
