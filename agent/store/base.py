"""The store protocol: a revisioned key-value store with transactions and watches.

It is the subset of etcd v3 the project needs, spelled so that an in-memory
implementation can honour exactly the same contract:

* every write bumps one global ``revision``; ``KV.mod_revision`` is the
  revision of the key's last write;
* :meth:`Store.txn` evaluates all comparisons atomically and applies either
  the success or the failure operations (compare-and-swap);
* :meth:`Store.watch` delivers, in revision order, every change under a prefix
  after ``start_revision - 1``; when that revision has been compacted away the
  watch raises :class:`Compacted` and the caller must relist (level-triggered,
  DESIGN.md rule 9).
"""
from __future__ import annotations

import queue
from dataclasses import dataclass
from typing import Callable, Iterable, Protocol

from agent.errors import TemporaryError


class Compacted(TemporaryError):
    """The requested watch revision is older than the store's compaction point."""

    def __init__(self, compact_revision: int) -> None:
        super().__init__(f"revision compacted (oldest available: {compact_revision})",
                         hint="relist and resume watching from the listed revision")
        self.compact_revision = compact_revision


@dataclass(frozen=True, slots=True)
class KV:
    key: str
    value: bytes
    mod_revision: int
    create_revision: int = 0


@dataclass(frozen=True, slots=True)
class Event:
    """One change: ``value`` is None for deletions."""

    key: str
    value: bytes | None
    revision: int

    @property
    def deleted(self) -> bool:
        return self.value is None


@dataclass(frozen=True, slots=True)
class WatchBatch:
    """Events of one or more revisions, and the store revision they bring us to.

    ``revision`` may be greater than every event's revision (progress
    notifications): it means "nothing else under the prefix changed up to here".
    """

    events: tuple[Event, ...]
    revision: int


def merge_queued(q: "queue.Queue", first: WatchBatch, limit: int = 20000) -> tuple[WatchBatch, object]:
    """``first`` merged with every watch batch already queued behind it in ``q``
    (up to ``limit`` events), and the first non-batch item met (or None). A
    burst of writes -- a manifest of a thousand objects -- becomes one rebuild
    and one data-plane transaction instead of a thousand."""
    events = list(first.events)
    revision = first.revision
    while len(events) < limit:
        try:
            nxt = q.get_nowait()
        except queue.Empty:
            break
        if not isinstance(nxt, WatchBatch):
            return WatchBatch(tuple(events), revision), nxt
        events += nxt.events
        revision = max(revision, nxt.revision)
    return WatchBatch(tuple(events), revision), None


# --- transaction language ---------------------------------------------------

@dataclass(frozen=True, slots=True)
class Absent:
    """Compare: the key does not exist."""

    key: str


@dataclass(frozen=True, slots=True)
class ModRevisionIs:
    """Compare: the key's last write was at ``revision`` (0: the key does not exist)."""

    key: str
    revision: int


@dataclass(frozen=True, slots=True)
class Put:
    """Write ``key``; with ``lease`` (an id from ``grant_lease``) the key
    goes away when the lease expires or is revoked."""

    key: str
    value: bytes
    lease: int = 0


@dataclass(frozen=True, slots=True)
class Delete:
    key: str


Compare = Absent | ModRevisionIs
Op = Put | Delete


class WatchHandle(Protocol):
    def cancel(self) -> None: ...


class Store(Protocol):
    """What the agent, IPAM, the reflector and the lab need from etcd."""

    def get(self, key: str) -> KV | None:
        """The key's current value, or None."""

    def list(self, prefix: str) -> tuple[list[KV], int]:
        """Every key under ``prefix`` (sorted) and the store revision of that snapshot."""

    def put(self, key: str, value: bytes) -> int:
        """Write unconditionally; returns the new store revision."""

    def delete(self, key: str) -> bool:
        """Delete; True if the key existed."""

    def txn(self, compare: Iterable[Compare], success: Iterable[Op],
            failure: Iterable[Op] = ()) -> tuple[bool, int]:
        """Atomic compare-and-swap; returns (succeeded, store revision after)."""

    def revision(self) -> int:
        """The store's current revision."""

    def watch(self, prefix: str, start_revision: int,
              callback: Callable[[WatchBatch | Exception], None]) -> WatchHandle:
        """Call ``callback`` with every batch of changes under ``prefix`` from
        ``start_revision`` on, or with an exception (:class:`Compacted`, or a
        connection error) after which the watch is dead and must be re-created."""

    def compact(self, revision: int) -> None:
        """Drop history before ``revision`` (tests use it to force relists)."""

    def grant_lease(self, ttl: int) -> int:
        """A new lease of ``ttl`` seconds; its id (keys put with it die with it)."""

    def refresh_lease(self, lease: int) -> int:
        """Keep ``lease`` alive: its TTL again; 0 when it has expired (its
        keys are gone: whoever held it must start over)."""

    def revoke_lease(self, lease: int) -> None:
        """End ``lease`` now, deleting its keys (an unknown lease: nothing)."""

    def close(self) -> None: ...
