"""Leader election through an etcd lease: one reflector replica writes.

The key :data:`agent.model.keys.KSR_LEADER` holds the leader's identity,
put with a lease only if absent. The leader refreshes its lease every third
of the TTL; a replica that dies stops refreshing and its key expires, and a
standby takes over within a TTL. Every write of the leader is fenced: it
compares the leader key's revision (the one its election created), so a
leader that lost its lease without noticing (paused, partitioned) cannot
overwrite its successor's work -- its write fails and it steps down.
"""
from __future__ import annotations

import logging
import threading
from typing import Callable

from agent.errors import ContivError
from agent.model.keys import KSR_LEADER
from agent.store.base import Absent, ModRevisionIs, Put

log = logging.getLogger(__name__)


class Election:
    """Campaign on ``store`` as ``identity``; ``on_change(leading)`` is
    called when leadership is won or lost (from the election's thread)."""

    def __init__(self, store, identity: str, on_change: Callable[[bool], None], *, ttl: int = 10,
                 key: str = KSR_LEADER) -> None:
        self.store, self.identity, self.on_change, self.ttl, self.key = store, identity, on_change, ttl, key
        self.lease = 0
        self.revision = 0  # the leader key's revision while we lead: the fence of every write
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def leading(self) -> bool:
        return bool(self.revision)

    def fence(self) -> ModRevisionIs:
        """The comparison every write of the leader carries."""
        return ModRevisionIs(self.key, self.revision)

    def start(self) -> "Election":
        self._thread = threading.Thread(target=self._run, name="ksr-election", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Step down (the lease is revoked: a standby takes over at once)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self.lease:
            try:
                self.store.revoke_lease(self.lease)
            except ContivError:
                pass
        self._lost("stopping")

    def lost(self, why: str) -> None:
        """A fenced write failed: somebody else leads now."""
        self._lost(why)

    def _lost(self, why: str) -> None:
        if self.revision:
            self.revision = 0
            log.warning("reflector %s: not the leader any more (%s)", self.identity, why)
            self.on_change(False)

    def _run(self) -> None:
        period = max(1.0, self.ttl / 3)
        while not self._stop.is_set():
            try:
                if self.revision:
                    if self.store.refresh_lease(self.lease) <= 0:
                        self.lease = 0
                        self._lost("its lease expired")
                else:
                    self._campaign()
            except ContivError as e:
                log.warning("reflector %s: election: %s", self.identity, e.message)
                if self.revision:  # cannot refresh: assume the worst once the lease must have run out
                    self._lost(f"etcd unreachable ({e.message})")
                    self.lease = 0
            self._stop.wait(period)

    def _campaign(self) -> None:
        if not self.lease or self.store.refresh_lease(self.lease) <= 0:
            self.lease = self.store.grant_lease(self.ttl)
        ok, rev = self.store.txn((Absent(self.key),), (Put(self.key, self.identity.encode(), self.lease),))
        if ok:
            self.revision = rev
            log.info("reflector %s: leading (lease %x, revision %d)", self.identity, self.lease, rev)
            self.on_change(True)
