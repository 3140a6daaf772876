"""Netlink sockets for the node's namespace and for pod namespaces.

DESIGN.md rule 10: no agent thread ever stays in a foreign network namespace.
A netlink socket stays bound to the namespace it was created in, so one
dedicated worker thread enters a pod's namespace only long enough to create a
socket there, and returns at once. Sockets are cached per namespace file
(path + inode, so a recreated namespace is noticed) and closed when the pod
goes.

Why not ``IPRoute(netns=...)``: it forks a helper process per namespace
(~17 ms each on these machines) -- a tenth of the whole pod-start budget.
"""
from __future__ import annotations

import errno
import os
import queue
import threading
from collections import OrderedDict

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from agent.errors import DataplaneError, NotFound
from agent.nsenter import setns


class _NsOpener:
    """The one thread allowed to enter other namespaces, briefly."""

    def __init__(self) -> None:
        self._q: queue.Queue = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="netns-opener", daemon=True)
        self._home: int | None = None
        self._ready = threading.Event()
        self._thread.start()
        self._ready.wait()

    def _run(self) -> None:
        self._home = os.open(f"/proc/self/task/{threading.get_native_id()}/ns/net", os.O_RDONLY)
        self._ready.set()
        while True:
            item = self._q.get()
            if item is None:
                return
            path, box, done = item
            try:
                fd = os.open(path, os.O_RDONLY)
                try:
                    setns(fd, path)
                    try:
                        box.append(IPRoute())
                    finally:
                        # Back home before anything else can run on this thread.
                        setns(self._home, "the agent's own")
                finally:
                    os.close(fd)
            except BaseException as e:  # noqa: BLE001 -- handed to the caller
                box.append(e)
            done.set()

    def open(self, path: str) -> IPRoute:
        box: list = []
        done = threading.Event()
        self._q.put((path, box, done))
        done.wait()
        if isinstance(box[0], BaseException):
            raise box[0]
        return box[0]

    def close(self) -> None:
        self._q.put(None)


class Netlink:
    """Netlink access for the agent: ``node`` is its own namespace's socket,
    :meth:`pod` the (cached) socket of a pod namespace by file path."""

    def __init__(self, cache_size: int = 1024) -> None:
        self.node = IPRoute()
        self._opener = _NsOpener()
        self._cache: OrderedDict[str, tuple[tuple[int, int], IPRoute]] = OrderedDict()
        self._cache_size = cache_size
        self._lock = threading.Lock()

    def pod(self, netns: str) -> IPRoute:
        """The netlink socket of the namespace at ``netns`` (NotFound if it is gone)."""
        try:
            st = os.stat(netns)
        except FileNotFoundError:
            raise NotFound(f"network namespace {netns} does not exist") from None
        ident = (st.st_dev, st.st_ino)
        with self._lock:
            hit = self._cache.get(netns)
            if hit and hit[0] == ident:
                self._cache.move_to_end(netns)
                return hit[1]
            if hit:
                hit[1].close()
            try:
                ipr = self._opener.open(netns)
            except OSError as e:
                if e.errno in (errno.ENOENT, errno.EINVAL):
                    raise NotFound(f"network namespace {netns} is not usable: {e}") from None
                raise DataplaneError(f"cannot enter network namespace {netns}: {e}",
                                     op="setns", args={"netns": netns}) from None
            self._cache[netns] = (ident, ipr)
            while len(self._cache) > self._cache_size:
                _, (_, old) = self._cache.popitem(last=False)
                old.close()
            return ipr

    def forget(self, netns: str) -> None:
        """Close the cached socket of a namespace (its pod is gone)."""
        with self._lock:
            hit = self._cache.pop(netns, None)
        if hit:
            hit[1].close()

    def close(self) -> None:
        with self._lock:
            for _, ipr in self._cache.values():
                ipr.close()
            self._cache.clear()
        self.node.close()
        self._opener.close()


def nl_error(e: Exception, op: str, **args) -> DataplaneError:
    """A typed error naming the netlink operation and its arguments."""
    code = e.code if isinstance(e, NetlinkError) else getattr(e, "errno", 0)
    msg = os.strerror(code) if code else str(e)
    detail = ", ".join(f"{k}={v}" for k, v in args.items())
    return DataplaneError(f"{op}({detail}): {msg}", op=op, args=args)


def is_errno(e: Exception, *codes: int) -> bool:
    return isinstance(e, NetlinkError) and e.code in codes
