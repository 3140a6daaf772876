"""Bounded transaction history: what the scheduler did, when, why and how it went."""
from __future__ import annotations

import collections
import threading
from dataclasses import dataclass, field
from typing import Any


@dataclass(slots=True)
class OpRecord:
    op: str
    key: str
    reason: str
    ok: bool
    error: str = ""
    duration_ms: float = 0.0

    def to_dict(self) -> dict:
        d = {"op": self.op, "key": self.key, "reason": self.reason, "ok": self.ok,
             "duration_ms": round(self.duration_ms, 3)}
        if self.error:
            d["error"] = self.error
        return d


@dataclass(slots=True)
class TxnRecord:
    """One transaction: ``kind`` is ``change``, ``resync`` or ``retry``."""

    seq: int
    kind: str
    description: str
    started: float  # wall clock, seconds since the epoch
    duration_ms: float = 0.0
    operations: list[OpRecord] = field(default_factory=list)
    pending: dict[str, str] = field(default_factory=dict)
    invalid: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return all(o.ok for o in self.operations)

    def to_dict(self) -> dict[str, Any]:
        return {"seq": self.seq, "kind": self.kind, "description": self.description,
                "started": self.started, "duration_ms": round(self.duration_ms, 3),
                "ok": self.ok, "operations": [o.to_dict() for o in self.operations],
                "pending": dict(self.pending), "invalid": dict(self.invalid)}


class History:
    """The last ``size`` transactions; thread-safe."""

    def __init__(self, size: int = 256) -> None:
        self._items: collections.deque[TxnRecord] = collections.deque(maxlen=size)
        self._lock = threading.Lock()

    def add(self, rec: TxnRecord) -> None:
        with self._lock:
            self._items.append(rec)

    def list(self, limit: int | None = None, *, since: int = 0,
             only_changes: bool = False) -> list[TxnRecord]:
        with self._lock:
            items = [r for r in self._items if r.seq > since
                     and (not only_changes or r.operations)]
        return items[-limit:] if limit else items

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)
