"""What the VPP descriptors share: the channel to VPP and the map of our
interfaces (name <-> sw_if_index).

Every VPP object is reached through one :class:`agent.vpp.papi.VppChannel`
(the real chokepoint, or the unit tier's recorder). Interfaces are the one
thing other objects refer to: :class:`Interfaces` is kept current by the
interface and tunnel descriptors (create, delete, and their retrieve, which
runs first in a resync) so that the others can name an interface by the
agent's name and find ours in a dump.
"""
from __future__ import annotations

import threading
from typing import Any

from agent.errors import TemporaryError
from agent.vpp.errors import VppApiError, VppMessageInvalid
from agent.reconciler import Descriptor
from agent.vpp.values import NONE, if_key_of


class IndexMap:
    """Names of our VPP objects <-> their VPP indexes (thread-safe: the
    scheduler's thread writes, the API's readers read)."""

    def __init__(self) -> None:
        self._by_name: dict[str, int] = {}
        self._lock = threading.Lock()

    def set(self, name: str, index: int) -> None:
        with self._lock:
            self._by_name[name] = index

    def drop(self, name: str) -> None:
        with self._lock:
            self._by_name.pop(name, None)

    def replace(self, found: dict[str, int], keep: set[str] = frozenset()) -> None:
        """After a retrieve: ``found`` is all there is of what it retrieved;
        the entries named in ``keep`` (another kind's) stay."""
        with self._lock:
            self._by_name = {n: i for n, i in self._by_name.items() if n in keep}
            self._by_name.update(found)

    def names(self) -> dict[str, int]:
        with self._lock:
            return dict(self._by_name)

    def index(self, name: str) -> int | None:
        with self._lock:
            return self._by_name.get(name)

    def by_index(self) -> dict[int, str]:
        with self._lock:
            return {i: n for n, i in self._by_name.items()}


class Interfaces(IndexMap):
    """Our interfaces: name <-> sw_if_index."""


class VppDescriptor(Descriptor):
    """Base of the VPP descriptors: ``api`` and ``ifs`` shared by all."""

    def __init__(self, api, ifs: Interfaces) -> None:
        self.api = api
        self.ifs = ifs

    def call(self, name: str, **kwargs: Any) -> Any:
        """One request; fields left out are VPP's defaults (see ApiDefs.fill)."""
        return self.api.call(name, **self.api.fill(name, **kwargs))

    def sw(self, ifname: str, ctx) -> int:
        """The sw_if_index of our interface ``ifname`` (its metadata, else the map)."""
        meta = ctx.metadata(if_key_of(ifname)) if ctx is not None else None
        index = (meta or {}).get("sw_if_index") if isinstance(meta, dict) else None
        if index is None:
            index = self.ifs.index(ifname)
        if index is None or index == NONE:
            raise TemporaryError(f"VPP interface {ifname} is not there (yet)")
        return index


def call_each(api, name: str, reqs: list[dict]) -> list:
    """``reqs`` of one message pipelined (``call_many``), one result each, in
    order: the reply, or the error of that one request (the others took
    effect); when the batch fails as a whole (VPP gone), every place holds
    that error. A batch refused by validation is split so that the good
    requests are not failed for good with the bad one."""
    if not reqs:
        return []
    try:
        return list(api.call_many(name, reqs))
    except VppApiError as e:
        if e.replies is None:
            return [e] * len(reqs)
        return [VppApiError(name, reqs[i], r.retval) if getattr(r, "retval", 0) else r
                for i, r in enumerate(e.replies)]
    except VppMessageInvalid as e:
        if len(reqs) == 1:
            return [e]
        return [x for r in reqs for x in call_each(api, name, [r])]
    except Exception as e:  # noqa: BLE001 -- VPP gone: every one of them
        return [e] * len(reqs)
