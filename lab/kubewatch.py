"""Watches of the lab's Kubernetes API store (:mod:`lab.kubestore`): a
queue per watch once started (a later compaction does not break it),
bookmarks, cuts (:class:`lab.kubeobj.WatchCut`, as a dropped connection),
and subscriptions that call back on a thread of their own."""
from __future__ import annotations

import copy
import logging
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Iterator

from lab.kubeobj import (Resource, WatchCut, resource)

if TYPE_CHECKING:
    from lab.kubestore import KubeStore

log = logging.getLogger(__name__)


# -- watches --------------------------------------------------------------------

@dataclass(frozen=True)
class _Event:
    rv: int
    type: str                # ADDED | MODIFIED | DELETED
    obj: dict
    prev: dict | None        # the state before (MODIFIED, DELETED): lets lists go back in time


class Watch:
    """An open watch: iterate for ``{"type": ..., "object": ...}`` events.

    Iteration ends when the timeout passes or the watch is closed; it raises
    :class:`WatchCut` after :meth:`KubeStore.cut_watches`. A watch from an
    expired resourceVersion yields one ERROR event (a 410 Status) and ends.
    """

    def __init__(self, store: "KubeStore", res: Resource, match: Callable[[dict], bool],
                 deadline: float | None, bookmarks: bool):
        self.store, self.resource, self._match = store, res, match
        self._deadline, self._bookmarks = deadline, bookmarks
        self._next_bookmark = time.monotonic() + store.bookmark_interval
        self._queue: deque = deque()   # events ready to deliver (already filtered)
        self._state = "open"           # open | closed | cut

    def _offer(self, ev: _Event) -> None:
        # a MODIFIED event moving an object into or out of the selection is
        # an ADDED or DELETED for this watcher, as the real API reports it
        new, old = self._match(ev.obj), ev.prev is not None and self._match(ev.prev)
        kind = ev.type
        if ev.type == "MODIFIED":
            kind = "MODIFIED" if new and old else "ADDED" if new else "DELETED" if old else None
        elif ev.type == "DELETED":
            kind = "DELETED" if old else None
        elif not new:
            kind = None
        if kind:
            self._queue.append({"type": kind, "object": ev.obj})

    def _bookmark(self, rv: int, annotations: dict | None = None) -> dict:
        md = {"resourceVersion": str(rv)}
        if annotations:
            md["annotations"] = annotations
        return {"type": "BOOKMARK", "object": {"kind": self.resource.kind,
                                               "apiVersion": self.resource.api_version,
                                               "metadata": md}}

    def next_event(self, wait: float | None = None) -> dict | None:
        """The next event; ``None`` if ``wait`` seconds passed without one.
        Raises StopIteration at the end and :class:`WatchCut` when cut."""
        store = self.store
        limit = None if wait is None else time.monotonic() + wait
        with store._cond:
            while True:
                if self._state == "cut":    # abrupt: what was queued is lost, as in a dropped stream
                    raise WatchCut("the watch stream was cut")
                if self._queue:
                    return copy.deepcopy(self._queue.popleft())
                now = time.monotonic()
                if self._state == "closed" or (self._deadline is not None and now >= self._deadline):
                    self._close_locked()
                    raise StopIteration
                if self._bookmarks and now >= self._next_bookmark:
                    # the queue is empty under the store lock: this watcher has
                    # seen every event up to the current resourceVersion
                    self._next_bookmark = now + store.bookmark_interval
                    return self._bookmark(store._rv)
                times = [t for t in (limit, self._deadline,
                                     self._next_bookmark if self._bookmarks else None) if t is not None]
                if limit is not None and now >= limit:
                    return None
                store._cond.wait(max(0.0, min(times) - now) if times else None)

    def __iter__(self) -> Iterator[dict]:
        while True:
            try:
                ev = self.next_event()
            except StopIteration:
                return
            if ev is not None:
                yield ev

    def close(self) -> None:
        """End the watch cleanly (iteration stops after the queued events)."""
        with self.store._cond:
            if self._state == "open":
                self._state = "closed"
            self.store._cond.notify_all()

    def _close_locked(self) -> None:
        if self._state == "open":
            self._state = "closed"
        self.store._watches.discard(self)


class Subscription:
    """A thread calling ``callback(type, object)`` for every event of a watch,
    in order, re-watching from the last resourceVersion when the watch is cut
    (as an informer does). An ERROR event is passed on and ends it."""

    def __init__(self, store: "KubeStore", callback: Callable[[str, dict], None], kw: dict):
        self._store, self._callback, self._kw = store, callback, kw
        self._watch: Watch | None = None
        self._closed = False
        self._lock = threading.Lock()      # close() vs a re-watch starting
        self._thread = threading.Thread(target=self._run, name="kube-subscription", daemon=True)
        self._thread.start()

    def _deliver(self, type_: str, obj: dict) -> None:
        try:
            self._callback(type_, obj)
        except Exception:  # a subscriber's bug must not end the stream
            log.exception("kube subscription callback failed")

    def _run(self) -> None:
        kw = self._kw
        if kw.get("resource_version") in (None, ""):
            # list, then watch from the list's version (as an informer does):
            # a re-watch after a cut then resumes from a version that is
            # exact, which the per-object versions of initial events are not
            lst = self._store.list(kw["kind"], kw.get("namespace"), label_selector=kw.get("label_selector"),
                                   field_selector=kw.get("field_selector"))
            res = resource(kw["kind"])
            for item in lst["items"]:
                self._deliver("ADDED", {"apiVersion": res.api_version, "kind": res.kind, **item})
            kw["resource_version"] = lst["metadata"]["resourceVersion"]
        while not self._closed:
            try:
                with self._lock:
                    if self._closed:
                        return
                    self._watch = self._store.watch(**kw)
                for ev in self._watch:
                    obj = ev["object"]
                    if ev["type"] != "ERROR":
                        kw["resource_version"] = obj["metadata"]["resourceVersion"]
                    if ev["type"] != "BOOKMARK":
                        self._deliver(ev["type"], obj)
                    if ev["type"] == "ERROR":
                        return
                return
            except WatchCut:
                continue

    def close(self) -> None:
        """Stop delivering; joins the thread unless called from a callback."""
        with self._lock:
            self._closed = True
            if self._watch:
                self._watch.close()
        if threading.current_thread() is not self._thread:
            self._thread.join(5)
