"""Desired state, partitioned by source.

Builders recompute one partition at a time (one pod, the node transport, one
Service...); the diff against that partition's previous values goes to the
scheduler as one incremental transaction. A change to one Service therefore
costs what that Service renders to, not what the whole cluster renders to.
"""
from __future__ import annotations

import threading
from typing import Mapping

from agent.reconciler import Scheduler, TxnResult
from agent.reconciler.scheduler import DELETE


class DesiredState:
    def __init__(self, scheduler: Scheduler) -> None:
        self.scheduler = scheduler
        self._parts: dict[str, dict[str, object]] = {}
        self._owner: dict[str, str] = {}  # key -> partition, to catch collisions
        # reentrant: resync() holds it while its build callback reads names()
        self._lock = threading.RLock()

    def set_partition(self, name: str, values: Mapping[str, object], *,
                      description: str = "") -> TxnResult:
        """Make ``values`` the whole content of partition ``name`` (empty: remove it)."""
        return self.set_partitions({name: values}, description=description or name)

    def set_partitions(self, parts: Mapping[str, Mapping[str, object]], *,
                       patches: Mapping[str, tuple[Mapping[str, object], set]] | None = None,
                       description: str = "") -> TxnResult:
        """Several partitions in ONE scheduler transaction (one nft commit).

        ``parts`` replace whole partitions (diffed against what they held);
        ``patches`` change a partition in place -- (values to set, keys to
        remove) -- at a cost proportional to the change, not to the partition."""
        with self._lock:
            changes: dict[str, object] = {}
            for name, values in parts.items():
                old = self._parts.get(name, {})
                for k, v in values.items():
                    owner = self._owner.get(k)
                    if owner is not None and owner != name and owner not in parts:
                        raise ValueError(f"key {k} is rendered by both {owner} and {name}")
                    if old.get(k, DELETE) != v:
                        changes[k] = v
                for k in old:
                    if k not in values and k not in changes:
                        changes[k] = DELETE
            for name, (upserts, removals) in (patches or {}).items():
                if name in parts:
                    raise ValueError(f"partition {name} is both replaced and patched")
                cur = self._parts.get(name, {})
                for k in removals:
                    if k in cur and self._owner.get(k) == name:
                        changes[k] = DELETE
                for k, v in upserts.items():
                    owner = self._owner.get(k)
                    if owner is not None and owner != name:
                        raise ValueError(f"key {k} is rendered by both {owner} and {name}")
                    if cur.get(k, DELETE) != v:
                        changes[k] = v
            result = self.scheduler.apply(changes, description=description)
            for name, values in parts.items():
                for k in self._parts.get(name, {}):
                    if self._owner.get(k) == name:
                        self._owner.pop(k, None)
                for k in values:
                    self._owner[k] = name
                if values:
                    self._parts[name] = dict(values)
                else:
                    self._parts.pop(name, None)
            for name, (upserts, removals) in (patches or {}).items():
                cur = self._parts.setdefault(name, {})
                for k in removals:
                    if cur.pop(k, None) is not None:
                        self._owner.pop(k, None)
                for k, v in upserts.items():
                    cur[k] = v
                    self._owner[k] = name
                if not cur:
                    self._parts.pop(name, None)
            return result

    def partition(self, name: str) -> dict[str, object]:
        with self._lock:
            return dict(self._parts.get(name, {}))

    def names(self, prefix: str = "") -> list[str]:
        with self._lock:
            return sorted(n for n in self._parts if n.startswith(prefix))

    def merged(self) -> dict[str, object]:
        with self._lock:
            out: dict[str, object] = {}
            for part in self._parts.values():
                out.update(part)
            return out

    def resync(self, build, *, description: str = "resync", held: str = "") -> TxnResult:
        """Replace every partition with ``build()`` and resync the scheduler
        against the data plane, atomically with respect to set_partition.
        ``held``: the data plane cannot be read now (why): the desired state
        is installed and held for the next resync (Scheduler.hold)."""
        with self._lock:
            parts = build()
            self._parts = {n: dict(v) for n, v in parts.items() if v}
            self._owner = {k: n for n, v in self._parts.items() for k in v}
            merged: dict[str, object] = {}
            for part in self._parts.values():
                merged.update(part)
            if held:
                return self.scheduler.hold(merged, held, description=description)
            return self.scheduler.resync(merged, description=description)
