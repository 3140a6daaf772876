"""The plan: typed data, one operation per step, each with its reason.

``contivctl agent plan`` (``--dry-run``) prints exactly the list the agent
would execute; the history records the same operations with their outcome.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any


class OpKind(str, enum.Enum):
    CREATE = "create"
    UPDATE = "update"
    DELETE = "delete"


@dataclass(frozen=True, slots=True)
class Operation:
    """One step: ``kind`` applied to ``key``.

    ``value`` is the value to create/update to, or the value being deleted;
    ``old`` the previous value for updates; ``reason`` says why in words an
    operator understands ("dependency linux/link/veth/cv1a2b removed").
    ``still_desired`` (deletions): the key stays desired -- it goes because a
    dependency goes, or its value is invalid or cannot be updated in place --
    so a descriptor that can swap a value atomically may keep the old one
    until the new one comes, rather than leave a gap.
    """

    kind: OpKind
    key: str
    value: Any
    reason: str
    old: Any = None
    still_desired: bool = False

    def to_dict(self) -> dict:
        return {"op": self.kind.value, "key": self.key, "reason": self.reason,
                "value": _plain(self.value)}


@dataclass(slots=True)
class Plan:
    """Ordered operations plus the values left out and why.

    A plan is always true, even with nothing to do: whether there is anything
    to do is ``operations``' business, and a plan with pending or invalid
    values but no operation is still a real answer, not an absent one."""

    operations: list[Operation] = field(default_factory=list)
    #: key -> reason the desired value cannot be applied now (missing dependency).
    pending: dict[str, str] = field(default_factory=dict)
    #: key -> validation error; never attempted.
    invalid: dict[str, str] = field(default_factory=dict)
    #: keys found in place and equivalent to their desired value (no operation);
    #: not part of the record, the scheduler's bookkeeping only.
    unchanged: set[str] = field(default_factory=set, repr=False, compare=False)

    def to_dict(self) -> dict:
        return {"operations": [op.to_dict() for op in self.operations],
                "pending": dict(self.pending), "invalid": dict(self.invalid)}


def _plain(value: Any) -> Any:
    """A JSON-friendly view of a value (dataclasses become dicts)."""
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    if hasattr(value, "__dataclass_fields__"):
        return {k: _plain(getattr(value, k)) for k in value.__dataclass_fields__}
    if isinstance(value, (list, tuple, frozenset, set)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return str(value)


plain = _plain
