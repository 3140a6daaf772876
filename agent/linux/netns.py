"""Netlink sockets for the node's namespace and for pod namespaces.

DESIGN.md rule 10: no agent thread ever stays in a foreign network namespace.
A netlink socket stays bound to the namespace it was created in, so one
dedicated worker thread enters a pod's namespace only long enough to create
sockets there, and returns at once. Sockets are cached per namespace file
(path + inode, so a recreated namespace is noticed) and closed when the pod
goes.

Two sockets per namespace, both made in that one visit (a socket() call
each: the thread spends microseconds inside): a raw one for
:class:`agent.linux.rtnl.Rtnl`, the pod-start path's hand-encoded messages
(pyroute2 spends ~0.25 ms of Python on each message); and a spare one that
pyroute2's ``IPRoute`` wraps (``fileno=``) when something needs it
(retrieve's lookups and dumps) -- so that needs no second visit.

The visit is started as soon as a veth's creation begins and runs while the
pair is created from the node's namespace (the kernel's part of an ADD); the
pod's sockets are waited for only afterwards, so the hop to the opener thread
(a wake-up and the GIL, ~0.2-0.6 ms in a busy agent) is mostly hidden.

Why not ``IPRoute(netns=...)``: it forks a helper process per namespace
(~17 ms each on these machines) -- a tenth of the whole pod-start budget.
"""
from __future__ import annotations

import errno
import os
import queue
import socket
import threading
from collections import OrderedDict

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from agent.errors import DataplaneError, NotFound
from agent.linux.rtnl import NETLINK_ROUTE, Rtnl, RtnlError
from agent.nsenter import setns


class PodSockets:
    """The sockets of one pod namespace: :meth:`rtnl` (the fast path) and
    :meth:`ipr` (pyroute2, made on first use). Created before they are open:
    the opener thread fills them in while the caller does other work (the veth
    pair's creation), and the methods wait for it."""

    __slots__ = ("netns", "ident", "_done", "_rtnl", "_spare", "_ipr", "_error", "_closed",
                 "_lock")

    def __init__(self, netns: str, ident: tuple[int, int]) -> None:
        self.netns = netns
        self.ident = ident
        self._done = threading.Lock()
        self._done.acquire()  # released by the opener thread
        self._rtnl: Rtnl | None = None
        self._spare: socket.socket | None = None
        self._ipr: IPRoute | None = None
        self._error: BaseException | None = None
        self._closed = False
        self._lock = threading.Lock()

    # -- filled in by the opener thread ----------------------------------------
    def _opened(self, socks: tuple[socket.socket, socket.socket] | None,
                error: BaseException | None) -> None:
        try:
            if socks is not None:
                self._spare = socks[1]
                self._rtnl = Rtnl(socks[0])
            self._error = error
        except BaseException as e:  # noqa: BLE001 -- the waiter gets it
            for s in socks or ():
                s.close()
            self._rtnl = self._spare = None
            self._error = e
        finally:
            self._done.release()

    def wait(self) -> None:
        """Wait for the opener; raise what opening met (NotFound: the
        namespace is gone or not a namespace)."""
        self._done.acquire()
        self._done.release()
        e = self._error
        if e is None:
            return
        if isinstance(e, OSError):
            if e.errno in (errno.ENOENT, errno.EINVAL):
                raise NotFound(f"network namespace {self.netns} is not usable: {e}") from None
            raise DataplaneError(f"cannot enter network namespace {self.netns}: {e}",
                                 op="setns", args={"netns": self.netns}) from None
        raise e

    def rtnl(self) -> Rtnl:
        self.wait()
        return self._rtnl

    def ipr(self) -> IPRoute:
        self.wait()
        with self._lock:
            if self._ipr is None:
                if self._closed:
                    raise DataplaneError(f"the sockets of {self.netns} are closed", op="netns",
                                         args={"netns": self.netns})
                spare, self._spare = self._spare, None
                self._ipr = IPRoute(fileno=spare.detach())
            return self._ipr

    def close(self) -> None:
        try:
            self.wait()
        except Exception:  # noqa: BLE001 -- nothing was opened
            return
        with self._lock:
            self._closed = True
            for s in (self._rtnl, self._spare, self._ipr):
                if s is not None:
                    s.close()
            self._spare = self._ipr = None


class _NsOpener:
    """The one thread allowed to enter other namespaces, briefly."""

    def __init__(self) -> None:
        self._q: queue.SimpleQueue = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="netns-opener", daemon=True)
        self._home: int | None = None
        self._broken: BaseException | None = None
        self._ready = threading.Event()
        self._thread.start()
        self._ready.wait()

    def _run(self) -> None:
        self._home = os.open(f"/proc/self/task/{threading.get_native_id()}/ns/net", os.O_RDONLY)
        self._ready.set()
        while True:
            item = self._q.get()
            if item is None:
                os.close(self._home)
                return
            path, box = item
            socks, error = None, None
            try:
                fd = os.open(path, os.O_RDONLY)
                try:
                    setns(fd, path)
                    try:
                        raw = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_ROUTE)
                        try:
                            socks = (raw, socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM,
                                                        NETLINK_ROUTE))
                        except BaseException:
                            raw.close()
                            raise
                    finally:
                        # Back home before anything else can run on this thread.
                        self._go_home()
                finally:
                    os.close(fd)
            except BaseException as e:  # noqa: BLE001 -- handed to the caller
                error = e
                if socks is not None:
                    for s in socks:
                        s.close()
                    socks = None
            box._opened(socks, error)
            if self._broken is not None:
                self._fail_queued()
                return  # stranded in a foreign namespace: this thread runs nothing more

    def _go_home(self) -> None:
        try:
            setns(self._home, "the agent's own")
        except BaseException as e:
            self._broken = e
            raise

    def _gone(self, box: PodSockets) -> None:
        box._opened(None, DataplaneError(
            f"the namespace opener thread is gone ({self._broken or 'stopped'})",
            op="setns", args={"netns": box.netns}))

    def _fail_queued(self) -> None:
        while True:
            try:
                item = self._q.get_nowait()
            except queue.Empty:
                return
            if item is not None:
                self._gone(item[1])

    def open(self, box: PodSockets) -> None:
        """Start opening ``box``'s sockets in its namespace (see :meth:`PodSockets.wait`)."""
        if self._broken is not None or not self._thread.is_alive():
            self._gone(box)
            return
        self._q.put((box.netns, box))
        if self._broken is not None:  # broke meanwhile: nobody would serve it
            self._fail_queued()

    def close(self) -> None:
        self._q.put(None)


class Netlink:
    """Netlink access for the agent: ``node`` (pyroute2) and ``fast``
    (:class:`Rtnl`) are its own namespace's sockets; :meth:`pod_sockets`,
    :meth:`pod_fast` and :meth:`pod` a pod namespace's, by file path (cached)."""

    def __init__(self, cache_size: int = 1024) -> None:
        self.node = IPRoute()
        self.fast = Rtnl()
        self._opener = _NsOpener()
        self._cache: OrderedDict[str, PodSockets] = OrderedDict()
        self._cache_size = cache_size
        self._lock = threading.Lock()

    def pod_sockets(self, netns: str) -> PodSockets:
        """The sockets of the namespace at ``netns``, cached or being opened
        now (NotFound if the path does not exist). Returns at once: use its
        methods, which wait for the opener, when the sockets are needed."""
        try:
            st = os.stat(netns)
        except FileNotFoundError:
            raise NotFound(f"network namespace {netns} does not exist") from None
        ident = (st.st_dev, st.st_ino)
        stale = []
        with self._lock:
            hit = self._cache.get(netns)
            if hit is not None and hit.ident == ident and hit._error is None:
                self._cache.move_to_end(netns)
                return hit
            if hit is not None:
                stale.append(hit)
            box = PodSockets(netns, ident)
            self._cache[netns] = box
            self._cache.move_to_end(netns)
            while len(self._cache) > self._cache_size:
                stale.append(self._cache.popitem(last=False)[1])
        self._opener.open(box)
        for old in stale:
            old.close()
        return box

    def pod_fast(self, netns: str) -> Rtnl:
        """The raw socket of the namespace at ``netns`` (NotFound if it is gone)."""
        return self._open(netns, PodSockets.rtnl)

    def pod(self, netns: str) -> IPRoute:
        """pyroute2's socket in the namespace at ``netns`` (NotFound if it is gone)."""
        return self._open(netns, PodSockets.ipr)

    def _open(self, netns: str, get):
        """``get(box)`` of the namespace's sockets; a box that fails is dropped
        from the cache (the next call opens the namespace anew)."""
        box = self.pod_sockets(netns)
        try:
            return get(box)
        except BaseException:
            self._drop(netns, box)
            raise

    def _drop(self, netns: str, box: PodSockets) -> None:
        with self._lock:
            if self._cache.get(netns) is box:
                del self._cache[netns]

    def forget(self, netns: str) -> None:
        """Close the cached sockets of a namespace (its pod is gone)."""
        with self._lock:
            hit = self._cache.pop(netns, None)
        if hit:
            hit.close()

    def close(self) -> None:
        with self._lock:
            boxes = list(self._cache.values())
            self._cache.clear()
        for box in boxes:
            box.close()
        self.node.close()
        self.fast.close()
        self._opener.close()


def nl_error(e: Exception, op: str, **args) -> DataplaneError:
    """A typed error naming the netlink operation and its arguments."""
    code = e.code if isinstance(e, NetlinkError) else getattr(e, "errno", 0)
    msg = os.strerror(code) if code else str(e)
    detail = ", ".join(f"{k}={v}" for k, v in args.items())
    return DataplaneError(f"{op}({detail}): {msg}", op=op, args=args)


def is_errno(e: Exception, *codes: int) -> bool:
    """Whether ``e`` is the kernel's refusal with one of ``codes`` (from
    pyroute2 or from :mod:`agent.linux.rtnl`)."""
    return isinstance(e, (NetlinkError, RtnlError)) and e.code in codes
