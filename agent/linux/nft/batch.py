"""The batch group shared by the nft descriptors (:class:`NftBatch`).

The scheduler hands a run of consecutive nft operations to one group call.
The group sends them to the kernel as few transactions as possible: the
longest runs the netlink writer (:mod:`agent.linux.nft.wire`) can encode go
as nf_tables batches -- in pieces on a worker thread when large
(:mod:`agent.linux.nft.pipeline`) -- and the rest as libnftables command text.
A run that fails is retried one operation at a time, to apply the good ones
and name the bad ones. The group also holds what the descriptors share: the
key layout of every set, and the table listing one resync reads once.
"""
from __future__ import annotations

import logging
import threading
import weakref
from typing import Callable

from agent.errors import DataplaneError
from agent.linux.nft import wire
from agent.linux.nft.lib import Nftables
from agent.linux.nft.pipeline import Inline, Pipeline
from agent.linux.nft.values import FAMILY, TABLE, NftSet

log = logging.getLogger(__name__)
T = f"{FAMILY} {TABLE}"


def _elem_text(e) -> str:
    """JSON element key/value -> our text form (``10.96.0.1 . tcp . 80``)."""
    if isinstance(e, dict):
        if "concat" in e:
            return " . ".join(_elem_text(x) for x in e["concat"])
        if "prefix" in e:
            return f"{e['prefix']['addr']}/{e['prefix']['len']}"
        if "range" in e:
            return f"{_elem_text(e['range'][0])}-{_elem_text(e['range'][1])}"
        for verdict in ("goto", "jump"):
            if verdict in e:
                return f"{verdict} {e[verdict]['target']}"
        for verdict in ("drop", "accept", "return", "continue"):
            if verdict in e:
                return verdict
    return str(e)


def kernel_elements(listing: list[dict]) -> dict[str, list[tuple[str, str, str]]]:
    """set name -> [(key text, value text, comment)] for every set and map of
    our table in a JSON listing of it."""
    out: dict[str, list[tuple[str, str, str]]] = {}
    for o in listing:
        for kw in ("set", "map"):
            s = o.get(kw)
            if not s or s.get("table") != TABLE:
                continue
            items = out.setdefault(s["name"], [])
            for e in s.get("elem", []):
                comment = ""
                if isinstance(e, dict) and "elem" in e:
                    comment = e["elem"].get("comment", "")
                    e = e["elem"]["val"]
                if kw == "map":
                    k, val = e
                    if isinstance(k, dict) and "elem" in k:
                        comment = k["elem"].get("comment", "")
                        k = k["elem"]["val"]
                    items.append((_elem_text(k), _elem_text(val), comment))
                else:
                    items.append((_elem_text(e), "", comment))
    return out


class _Prefetch:
    """``Nftables().list_json(what)`` on a thread of its own, with its own
    libnftables context (the agent's is not shared across threads)."""

    def __init__(self, what: str) -> None:
        self._what = what
        self._out: list | BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="nft-prefetch", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        nft = None
        try:
            nft = Nftables()
            listing = nft.list_json(self._what)
            # parsed here too: what a resync does with the listing under its lock
            self._out = (listing, kernel_elements(listing))
        except BaseException as e:  # noqa: BLE001 -- re-raised by result()
            self._out = e
        finally:
            if nft is not None:
                nft.close()

    def wait(self) -> None:
        self._thread.join()

    def result(self) -> tuple[list, dict]:
        """(listing, its elements by set)."""
        self._thread.join()
        if isinstance(self._out, BaseException):
            raise self._out
        return self._out


class NftBatch:
    """The batch group shared by the nft descriptors.

    Also the descriptors' shared knowledge: the key layout of every set (for
    encoding elements on the wire) and, during one resync, the table listing
    (read once for all four descriptors)."""

    def __init__(self, nft: Nftables) -> None:
        self.nft = nft
        self.wire = None
        self.layouts: dict[str, tuple[list[str], bool]] = {}
        #: sets whose elements are not single NftElement values (dynamic, or
        #: grouped): the element descriptor leaves them alone
        self.not_single: set[str] = set()
        # (ctx ref, listing, its elements by set or None until asked for)
        self._listing: tuple[Callable[[], object], list, dict | None] | None = None
        self._prefetch: _Prefetch | None = None

    def prefetch(self) -> None:
        """Start listing the table now, on another thread, for the next
        resync's retrieve. At start-up the listing (most of a second at 10,000
        Services, mostly inside libnftables with the GIL released) then
        overlaps the etcd listing and the build. Any transaction before that
        retrieve discards it: the listing must not predate a change of ours."""
        self._prefetch = _Prefetch(f"table {T}")

    def wait_prefetch(self) -> None:
        """Let a listing started by :meth:`prefetch` finish (before taking a
        lock that its consumer would otherwise hold while waiting)."""
        pre = self._prefetch
        if pre is not None:
            pre.wait()

    def listing(self, ctx) -> list[dict]:
        """The table listing for the retrieve pass ``ctx`` (read once, shared
        by the descriptors). It is dropped when ``ctx`` is: at 10,000
        Services it is a hundred megabytes of parsed JSON that nothing needs
        after the retrieve."""
        return self._pass(ctx)[1]

    def elements(self, ctx, sets: set[str]):
        """(set, key text, value text, comment) of every element of ``sets``
        in the listing of the retrieve pass ``ctx``."""
        by_set = self._by_set(ctx)
        return [(name, k, v, c) for name in sets for k, v, c in by_set.get(name, ())]

    def set_names(self, ctx):
        """The names of the sets and maps in the listing of the retrieve pass ``ctx``."""
        return self._by_set(ctx).keys()

    def _by_set(self, ctx) -> dict[str, list[tuple[str, str, str]]]:
        cur = self._pass(ctx)
        if cur[2] is None:
            self._listing = cur = (cur[0], cur[1], kernel_elements(cur[1]))
        return cur[2]

    def _pass(self, ctx) -> tuple:
        cur = self._listing
        if cur is None or cur[0]() is not ctx:
            pre, self._prefetch = self._prefetch, None
            listing, elements = pre.result() if pre else (self.nft.list_json(f"table {T}"), None)
            try:
                ref = weakref.ref(ctx, self._forget)
            except TypeError:  # a context that takes no weak reference: keep it
                ref = lambda ctx=ctx: ctx  # noqa: E731
            self._listing = cur = (ref, listing, elements)
        return cur

    def _forget(self, ref) -> None:
        if self._listing is not None and self._listing[0] is ref:
            self._listing = None

    def learn_set(self, v: NftSet) -> None:
        if not v.static or v.grouped:
            self.not_single.add(v.name)
        else:
            self.not_single.discard(v.name)
        try:
            self.layouts[v.name] = wire.set_key_layout(v.spec)
        except wire.Unsupported:
            self.layouts.pop(v.name, None)

    #: A run of netlink operations is committed in pieces of this many
    #: operations; when a transaction has more, each piece is sent on a worker
    #: thread while the next is encoded (see agent/linux/nft/pipeline.py).
    PIECE = 2000

    def discard_prefetch(self) -> None:
        self._prefetch = None

    def apply(self, ops, descs, ctx) -> list:
        self._prefetch = None  # a listing from before this change is stale
        results: list = [None] * len(ops)
        run = Pipeline() if len(ops) > self.PIECE else Inline()

        def commit(fn, what, i, j):
            """``what``: the encoded wire batch, or the command text (both made
            here, on the caller's thread: making them teaches ``layouts`` the
            sets' key types, which the encoding of later pieces reads)."""
            def go():
                results[i:j] = fn(what, ops[i:j], descs[i:j])
            run.submit(go)
        try:
            i = 0
            while i < len(ops):
                # the longest run of operations of one kind (wire or text), in order
                batch = wire.Batch(TABLE) if self._wire_ok() else None
                j = i
                while j < len(ops) and j - i < self.PIECE and batch is not None:
                    mark = batch.mark()
                    if not descs[j].wire_ops(ops[j], batch, self):
                        # it may have appended part of itself first: that part
                        # must not be sent with the run (it goes as text whole)
                        batch.rewind(mark)
                        break
                    j += 1
                if j > i:
                    commit(self._commit_wire, batch, i, j)
                    i = j
                    continue
                # a run for libnftables, its text made op by op: making a set's
                # text teaches its layout, so the set's elements after it can
                # end the run and go over netlink
                text: list[str] = []
                j = i
                while j < len(ops) and (j == i or not descs[j].wire_capable(ops[j], self)):
                    text += descs[j].commands(ops[j])
                    j += 1
                commit(self._commit_text, "\n".join(text) + "\n", i, j)
                i = j
        finally:
            try:
                run.finish()
            finally:
                # and one started while this ran may have seen half of it
                self._prefetch = None
        return results

    def _wire_ok(self) -> bool:
        if self.wire is None:
            try:
                self.wire = wire.Wire()
            except OSError as e:
                log.warning("nf_tables netlink unavailable (%s); using libnftables only", e)
                self.wire = False
        return bool(self.wire)

    def _commit_wire(self, batch, ops, descs) -> list:
        try:
            self.wire.commit(batch)
            return [None] * len(ops)
        except (DataplaneError, OSError):  # OSError: the socket itself (e.g. ENOBUFS)
            return [self._one(op, d) for op, d in zip(ops, descs)]

    def _commit_text(self, text, ops, descs) -> list:
        try:
            self.nft.run(text)
            return [None] * len(ops)
        except DataplaneError:
            if len(ops) == 1:
                return [self._one(ops[0], descs[0])]
        return [self._one(op, d) for op, d in zip(ops, descs)]

    def _one(self, op, d):
        try:
            self.nft.run("\n".join(d.commands(op)) + "\n")
            return None
        except DataplaneError as e:
            return e
