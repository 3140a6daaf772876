"""What the scheduler (:mod:`agent.reconciler.scheduler`) keeps per key and
returns per transaction: the value states it reports, the actual entries and
failures it tracks, and :class:`TxnResult`."""
from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Iterable

from agent.reconciler.descriptor import Dependency
from agent.reconciler.history import TxnRecord
from agent.reconciler.plan import OpKind, Plan


class ValueState(str, Enum):
    """A desired or present value's state, as the API reports it."""

    CONFIGURED = "configured"   # desired and present
    PENDING = "pending"         # desired, waiting for a dependency
    FAILED = "failed"           # last operation failed; a retry is scheduled
    INVALID = "invalid"         # rejected by validate(); never attempted
    OBSOLETE = "obsolete"       # present, no longer desired, deletion failed


@dataclass(slots=True)
class Actual:
    """What is believed configured for one key: the value, its descriptor's
    metadata, and the dependencies it was created under."""

    value: Any
    metadata: Any
    deps: tuple[Dependency, ...]


@dataclass(slots=True)
class Failure:
    """The last failed operation on one key, and when it is tried again."""

    op: OpKind
    error: str
    temporary: bool
    attempts: int
    next_retry: float


@dataclass(slots=True)
class TxnResult:
    """What one transaction did. ``errors`` maps key -> error message."""

    record: TxnRecord
    plan: Plan
    errors: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.errors

    def failed(self, keys: Iterable[str]) -> dict[str, str]:
        """Errors (or pending/invalid reasons) for ``keys`` -- the caller's values."""
        out = {}
        for k in keys:
            if k in self.errors:
                out[k] = self.errors[k]
            elif k in self.plan.invalid:
                out[k] = "invalid: " + self.plan.invalid[k]
            elif k in self.plan.pending:
                out[k] = "pending: " + self.plan.pending[k]
        return out


class RetrieveCtx:
    """The descriptors' Context during a retrieve: the metadata of what the
    descriptors retrieved before (in retrieve order)."""

    def __init__(self, retrieved: dict[str, Actual]) -> None:
        self._r = retrieved

    def metadata(self, key: str) -> Any:
        a = self._r.get(key)
        return a.metadata if a else None
