"""Bounded transaction history: what the scheduler did, when, why and how it went."""
from __future__ import annotations

import collections
import threading

from agent.model.api import OpRecord, TxnRecord

__all__ = ["History", "OpRecord", "TxnRecord"]


class History:
    """The last ``size`` transactions; thread-safe."""

    def __init__(self, size: int = 256) -> None:
        self._items: collections.deque[TxnRecord] = collections.deque(maxlen=size)
        self._lock = threading.Lock()
        #: called with each transaction added (the agent's metrics); outside the lock
        self.listeners: list = []

    def add(self, rec: TxnRecord) -> None:
        with self._lock:
            self._items.append(rec)
        for listen in self.listeners:
            listen(rec)

    def list(self, limit: int | None = None, *, since: int = 0,
             only_changes: bool = False) -> list[TxnRecord]:
        with self._lock:
            items = [r for r in self._items if r.seq > since
                     and (not only_changes or r.operations)]
        return items[-limit:] if limit else items

