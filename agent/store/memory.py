"""An in-memory store with etcd's semantics (revisions, CAS, watch, compaction).

For unit tests and ``--etcd memory://`` experiments. Watch callbacks run on a
thread per watch, as etcd3's do, so callers see the same concurrency.
"""
from __future__ import annotations

import bisect
import queue
import threading
import time
from typing import Callable, Iterable

from agent.store.base import (KV, Absent, Compacted, Delete, Event, ModRevisionIs, Put,
                              WatchBatch)


class _MemWatch:
    def __init__(self, store: "MemoryStore", prefix: str,
                 callback: Callable[[WatchBatch | Exception], None]) -> None:
        self.prefix = prefix
        self._store = store
        self._q: queue.Queue = queue.Queue()
        self._callback = callback
        self._thread = threading.Thread(target=self._run, name=f"memwatch:{prefix}", daemon=True)
        self._thread.start()

    def push(self, item) -> None:
        self._q.put(item)

    def _run(self) -> None:
        while True:
            item = self._q.get()
            if item is None:
                return
            self._callback(item)
            if isinstance(item, Exception):
                return

    def cancel(self) -> None:
        self._store._unwatch(self)
        self._q.put(None)


class MemoryStore:
    """Thread-safe; see :class:`agent.store.base.Store` for the contract."""

    def __init__(self) -> None:
        self._lock = threading.RLock()  # reentrant: delete() runs txn() under it
        self._data: dict[str, KV] = {}
        self._keys: list[str] = []  # sorted, for prefix listing
        self._rev = 1  # etcd starts at revision 1
        self._history: list[Event] = []
        self._compacted = 0
        self._watches: list[_MemWatch] = []
        self._leases: dict[int, tuple[float, int]] = {}  # id -> (expiry, ttl)
        self._lease_keys: dict[str, int] = {}  # key -> lease
        self._next_lease = 1
        self.clock = time.monotonic  # tests may turn it forward

    # --- reads ---
    def get(self, key: str) -> KV | None:
        with self._lock:
            self._expire()
            return self._data.get(key)

    def list(self, prefix: str) -> tuple[list[KV], int]:
        with self._lock:
            self._expire()
            i = bisect.bisect_left(self._keys, prefix)
            out = []
            while i < len(self._keys) and self._keys[i].startswith(prefix):
                out.append(self._data[self._keys[i]])
                i += 1
            return out, self._rev

    def revision(self) -> int:
        with self._lock:
            return self._rev

    # --- writes ---
    def put(self, key: str, value: bytes) -> int:
        return self.txn((), (Put(key, value),))[1]

    def delete(self, key: str) -> bool:
        # check and delete under one lock hold: of concurrent deleters, only
        # one may be told the key existed (etcd's deleted count)
        with self._lock:
            existed = key in self._data
            if existed:
                self.txn((), (Delete(key),))
            return existed

    def txn(self, compare: Iterable, success: Iterable, failure: Iterable = ()) -> tuple[bool, int]:
        with self._lock:
            self._expire()
            ok = all(self._holds(c) for c in compare)
            ops = list(success if ok else failure)
            events = []
            if any(isinstance(op, Put) or op.key in self._data for op in ops):
                self._rev += 1
                for op in ops:
                    ev = self._apply(op)
                    if ev:
                        events.append(ev)
            self._history.extend(events)
            if events:
                self._notify(events)
            return ok, self._rev

    def _holds(self, c) -> bool:
        cur = self._data.get(c.key)
        if isinstance(c, Absent):
            return cur is None
        if isinstance(c, ModRevisionIs):
            return (cur.mod_revision if cur else 0) == c.revision
        raise TypeError(f"unknown comparison {c!r}")

    def _apply(self, op) -> Event | None:
        if isinstance(op, Put):
            if op.lease and op.lease not in self._leases:
                raise ValueError(f"lease {op.lease} not found")
            if op.lease:
                self._lease_keys[op.key] = op.lease
            else:
                self._lease_keys.pop(op.key, None)
            old = self._data.get(op.key)
            if old is None:
                bisect.insort(self._keys, op.key)
            create = old.create_revision if old else self._rev
            self._data[op.key] = KV(op.key, bytes(op.value), self._rev, create)
            return Event(op.key, bytes(op.value), self._rev)
        if isinstance(op, Delete):
            self._lease_keys.pop(op.key, None)
            if op.key not in self._data:
                return None
            del self._data[op.key]
            self._keys.pop(bisect.bisect_left(self._keys, op.key))
            return Event(op.key, None, self._rev)
        raise TypeError(f"unknown operation {op!r}")

    def _notify(self, events: list[Event]) -> None:
        for w in self._watches:
            mine = tuple(e for e in events if e.key.startswith(w.prefix))
            if mine:
                w.push(WatchBatch(mine, self._rev))

    # --- watch ---
    def watch(self, prefix: str, start_revision: int,
              callback: Callable[[WatchBatch | Exception], None]) -> _MemWatch:
        with self._lock:
            w = _MemWatch(self, prefix, callback)
            if start_revision and start_revision <= self._compacted:
                w.push(Compacted(self._compacted + 1))
                return w
            if start_revision:
                backlog = tuple(e for e in self._history
                                if e.revision >= start_revision and e.key.startswith(prefix))
                if backlog:
                    w.push(WatchBatch(backlog, self._rev))
            self._watches.append(w)
            return w

    def _unwatch(self, w: _MemWatch) -> None:
        with self._lock:
            if w in self._watches:
                self._watches.remove(w)

    def compact(self, revision: int) -> None:
        with self._lock:
            self._compacted = max(self._compacted, revision - 1)
            self._history = [e for e in self._history if e.revision >= revision]

    # --- leases ---
    def grant_lease(self, ttl: int) -> int:
        with self._lock:
            lease, self._next_lease = self._next_lease, self._next_lease + 1
            self._leases[lease] = (self.clock() + ttl, ttl)
            return lease

    def refresh_lease(self, lease: int) -> int:
        with self._lock:
            self._expire()
            if lease not in self._leases:
                return 0
            ttl = self._leases[lease][1]
            self._leases[lease] = (self.clock() + ttl, ttl)
            return ttl

    def revoke_lease(self, lease: int) -> None:
        with self._lock:
            if self._leases.pop(lease, None) is not None:
                self._drop_keys_of({lease})

    def _expire(self) -> None:
        """Leases past their expiry end, with their keys (lazily: on the next write)."""
        now = self.clock()
        gone = {lease for lease, (until, _) in self._leases.items() if until <= now}
        for lease in gone:
            del self._leases[lease]
        if gone:
            self._drop_keys_of(gone)

    def _drop_keys_of(self, leases: set[int]) -> None:
        keys = [k for k, lease in self._lease_keys.items() if lease in leases]
        if keys:
            self.txn((), [Delete(k) for k in keys])

    def close(self) -> None:
        for w in list(self._watches):
            w.cancel()
