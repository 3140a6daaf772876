"""The descriptor protocol: how the scheduler talks to one data-plane object type.

A descriptor owns every key under its ``key_prefix`` (``"<plane>/<type>/"``,
e.g. ``"linux/route/"``). Values are frozen dataclasses; equality is value
equality unless :meth:`Descriptor.equivalent` says otherwise.

Contract, method by method:

``validate(key, value)``
    Raise :class:`agent.errors.InvalidInput` if the value can never be
    applied. Invalid values are never attempted nor retried.
``dependencies(key, value)``
    The keys this value needs to exist first, each with a label saying why
    ("interface-exists"). Data, never call order: the scheduler derives the
    order, and deletes dependents before the value they depend on.
``create(key, value, ctx) -> metadata``
    Make the object exist. Returns metadata the scheduler keeps for the key
    (an ifindex, a handle) and hands back to ``update``/``delete``; other
    descriptors can read it with ``ctx.metadata(key)``.
``update(key, old, new, metadata, ctx) -> metadata``
    Optional (``supports_update``); change in place. Without it, or when
    ``needs_recreate`` says so, a change is a delete followed by a create.
``delete(key, value, metadata, ctx)``
    Make it not exist. Must tolerate the object already being gone.
``retrieve(correlate, ctx) -> [Retrieved]``
    Mandatory: read what really exists in the data plane, **only objects this
    project owns** (by tag, alias, comment or protocol number). ``correlate``
    is the desired values of this descriptor, so that retrieve knows where to
    look (which pod namespaces). It is what makes resync and drift detection
    possible.

Errors: :class:`agent.errors.InvalidInput` (never retried),
:class:`agent.errors.TemporaryError` (retried with backoff), anything else is
treated as temporary too but logged with its traceback.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Protocol


@dataclass(frozen=True, slots=True)
class Dependency:
    """``key`` must be configured before the dependent value; ``label`` says why."""

    label: str
    key: str


@dataclass(frozen=True, slots=True)
class Retrieved:
    """One object found in the data plane."""

    key: str
    value: Any
    metadata: Any = None


class Context(Protocol):
    """What a descriptor may ask of the scheduler while it runs."""

    def metadata(self, key: str) -> Any:
        """Metadata of a configured value (None if unknown)."""


class Descriptor:
    """Base class with the protocol's defaults; subclasses override what they need.

    ``batch_group`` -- optional. Descriptors sharing a batch group (an object
    with ``apply(ops, descriptors, ctx) -> [metadata | Exception]``) get every
    run of consecutive operations on any of them in one call: nftables uses it
    to make one kernel transaction of thousands of chains and elements. Such
    descriptors need no ``create``/``update``/``delete``: the scheduler never
    calls them one by one.
    """

    name: str = ""
    key_prefix: str = ""
    supports_update: bool = False
    batch_group: object | None = None

    def validate(self, key: str, value: Any) -> None:
        return None

    def dependencies(self, key: str, value: Any) -> Iterable[Dependency]:
        return ()

    def create(self, key: str, value: Any, ctx: Context) -> Any:
        raise NotImplementedError

    def update(self, key: str, old: Any, new: Any, metadata: Any, ctx: Context) -> Any:
        raise NotImplementedError

    def delete(self, key: str, value: Any, metadata: Any, ctx: Context) -> None:
        raise NotImplementedError

    def retrieve(self, correlate: dict[str, Any], ctx: Context) -> list[Retrieved]:
        raise NotImplementedError

    def needs_recreate(self, key: str, old: Any, new: Any) -> bool:
        return not self.supports_update

    def equivalent(self, key: str, desired: Any, actual: Any) -> bool:
        return desired == actual
