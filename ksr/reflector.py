"""List, watch, mirror: one loop per kind, run while this replica leads.

Per kind (level-triggered, as Kubernetes' informers):

1. **list** every object (paged), strip it (:func:`ksr.objects.strip`), and
   make etcd equal that list: put what differs, delete the keys of objects
   that no longer exist -- whatever was missed before (a dead watch, a
   reflector that was down, another leader) converges here;
2. **watch** from the list's resourceVersion with bookmarks; each event is
   one etcd write (skipped when the stored object is already that); a
   stream that ends or breaks is watched again from the last
   resourceVersion seen; **410 Gone** (the history is compacted past it)
   goes back to 1.

Errors back off exponentially (0.5 s to 30 s, with jitter): an API server
or etcd that is down is waited for, and agents keep what etcd holds
meanwhile. An object that cannot be mirrored is logged by name and skipped.
Every etcd write is fenced by the leader key (:meth:`ksr.leader.Election.fence`):
a replica that lost the lead stops at its next write.
"""
from __future__ import annotations

import logging
import random
import threading
from typing import Callable, Iterator

import orjson

from agent.errors import ContivError
from agent.store.base import Delete, Put
from ksr.objects import KINDS, BadObject, Kind, key_of, strip

log = logging.getLogger(__name__)

BATCH = 100  # operations per etcd transaction (etcd allows 128 by default)
PAGE = 500  # objects per list page


class Gone(Exception):
    """410: the resourceVersion is older than the API server's history."""


class ApiError(Exception):
    """The API server refused or failed (``status``: HTTP status, 0 when unreachable)."""

    def __init__(self, message: str, status: int = 0) -> None:
        super().__init__(message)
        self.status = status


class LostLead(Exception):
    """A fenced write failed: another replica leads."""


def forbidden_message(k: Kind, verb: str, detail: str) -> str:
    """What RBAC must grant, in one line (what the API said, as detail)."""
    return (f"the API server forbids {verb} on {k.resource} (API group \"{k.group}\") in all namespaces: "
            f"grant get, list and watch on it (`contivctl install manifests` has the ClusterRole) -- {detail}")


class KindLoop:
    """The list/watch loop of one kind (see the module docstring)."""

    def __init__(self, r: "Reflector", k: Kind) -> None:
        self.r, self.k = r, k
        self.cache: dict[str, bytes] = {}  # key -> what etcd holds, as written by us
        self.synced = False
        self.objects = 0
        self._stop = threading.Event()
        self._resp = None
        self._thread = threading.Thread(target=self._run, name=f"ksr-{k.segment}", daemon=True)

    def start(self) -> "KindLoop":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        resp = self._resp
        if resp is not None:  # unblock a watch read
            try:
                resp.close()
            except Exception:  # noqa: BLE001 -- it is being abandoned
                pass
        self._thread.join(timeout=5)

    def _run(self) -> None:
        delay = 0.0
        while not self._stop.is_set():
            try:
                rv = self.relist()
                delay = 0.0
                while not self._stop.is_set():
                    rv = self.watch(rv)
            except Gone:
                self.r.count("relists", self.k, "gone")
                log.info("ksr %s: resourceVersion too old (410): relisting", self.k.resource)
                continue
            except LostLead as e:
                self.r.election.lost(str(e))
                return
            except (ApiError, ContivError) as e:
                if self._stop.is_set():  # stopping closed the stream under us
                    return
                why = e.message if isinstance(e, ContivError) else str(e)
                self.r.count("errors", self.k, "etcd" if isinstance(e, ContivError) else f"api-{e.status}")
                delay = min(30.0, max(0.5, delay * 2))
                log.warning("ksr %s: %s (retrying in %.1f s)", self.k.resource, why, delay)
                self._stop.wait(delay * random.uniform(0.8, 1.2))

    # ------------------------------------------------------------ list
    def relist(self) -> str:
        items, rv = self.r.api.list_all(self.k)
        want: dict[str, bytes] = {}
        for obj in items:
            got = self._encode(obj)
            if got:
                want[got[0]] = got[1]
        current, _ = self.r.store.list(self.k.prefix)
        have = {kv.key: kv.value for kv in current}
        ops = [Put(k, v) for k, v in want.items() if have.get(k) != v]
        ops += [Delete(k) for k in have if k not in want]
        self.r.write(ops)
        self.cache, self.objects, self.synced = want, len(want), True
        self.r.count("relists", self.k, "list")
        log.info("ksr %s: %d objects at resourceVersion %s (%d writes)", self.k.resource, len(want), rv, len(ops))
        return rv

    def _encode(self, obj: dict) -> tuple[str, bytes] | None:
        try:
            o = strip(self.k, obj)
            return key_of(self.k, o), orjson.dumps(o, option=orjson.OPT_SORT_KEYS)
        except BadObject as e:
            self.r.count("errors", self.k, "bad-object")
            log.warning("ksr: skipped %s", e)
            return None

    # ------------------------------------------------------------ watch
    def watch(self, rv: str) -> str:
        """Mirror events from ``rv`` until the stream ends; the last
        resourceVersion seen."""
        resp = self._resp = self.r.api.watch(self.k, rv, self.r.watch_timeout)
        try:
            for ev in self.r.api.events(resp):
                obj = ev.get("object") or {}
                kind = ev.get("type")
                if kind == "ERROR":
                    if obj.get("code") == 410:
                        raise Gone()
                    raise ApiError(f"watch error: {obj.get('message', obj)}", int(obj.get("code") or 0))
                rv = (obj.get("metadata") or {}).get("resourceVersion") or rv
                self.r.count("events", self.k, str(kind))
                if kind in ("ADDED", "MODIFIED"):
                    got = self._encode(obj)
                    if got and self.cache.get(got[0]) != got[1]:
                        self.r.write([Put(*got)])
                        self.cache[got[0]] = got[1]
                elif kind == "DELETED":
                    got = self._encode(obj)
                    if got and self.cache.pop(got[0], None) is not None:
                        self.r.write([Delete(got[0])])
                self.objects = len(self.cache)
        except ApiError as e:
            if e.status == 0 and not self._stop.is_set():  # the stream broke: watch again from rv
                log.info("ksr %s: watch stream broke (%s): watching again from %s", self.k.resource, e, rv)
                self._stop.wait(0.2)
                return rv
            raise
        finally:
            self._resp = None
            self.r.api.close(resp)
        return rv


class Reflector:
    """The reflector of one replica: an election, and while it leads, one
    :class:`KindLoop` per kind. ``api``: a :class:`ksr.kube.KubeClient`;
    ``store``: etcd (:class:`agent.store.base.Store`)."""

    def __init__(self, store, api, identity: str, *, kinds=KINDS, lease_ttl: int = 10,
                 watch_timeout: int = 300, counter: Callable[[str, str, str], None] | None = None) -> None:
        from ksr.leader import Election  # noqa: PLC0415
        self.store, self.api, self.identity = store, api, identity
        self.kinds, self.watch_timeout = kinds, watch_timeout
        self.election = Election(store, identity, self._leading, ttl=lease_ttl)
        self.loops: dict[str, KindLoop] = {}
        self._lock = threading.Lock()
        self._count = counter or (lambda what, kind, label: None)
        self.writes = 0

    def start(self) -> "Reflector":
        self.election.start()
        return self

    def stop(self) -> None:
        self.election.stop()
        self._leading(False)

    def count(self, what: str, k: Kind, label: str) -> None:
        self._count(what, k.resource, label)

    def _leading(self, leading: bool) -> None:
        with self._lock:
            for loop in self.loops.values():
                loop._stop.set()
            old, self.loops = self.loops, {}
        for loop in old.values():
            if loop._thread is not threading.current_thread():
                loop.stop()
        if leading:
            with self._lock:
                self.loops = {k.resource: KindLoop(self, k).start() for k in self.kinds}

    def write(self, ops: list) -> None:
        """``ops`` in fenced transactions of :data:`BATCH`; LostLead when the
        fence fails."""
        for i in range(0, len(ops), BATCH):
            ok, _ = self.store.txn((self.election.fence(),), ops[i:i + BATCH])
            if not ok:
                raise LostLead("a write found another replica's leader key")
            self.writes += len(ops[i:i + BATCH])
            self._count("etcd_writes", "", "txn")

    def status(self) -> dict:
        """For the health endpoint and the logs."""
        loops = dict(self.loops)
        return {"identity": self.identity, "leader": self.election.leading,
                "kinds": {n: {"synced": loop.synced, "objects": loop.objects} for n, loop in loops.items()},
                "writes": self.writes}

    def ready(self) -> bool:
        """A standby is ready; a leader once every kind has been listed."""
        st = self.status()
        return not st["leader"] or (len(st["kinds"]) == len(self.kinds)
                                    and all(k["synced"] for k in st["kinds"].values()))


def iter_lines(chunks: Iterator[bytes]) -> Iterator[bytes]:
    """Whole lines of a chunked stream (a watch event per line)."""
    buf = b""
    for chunk in chunks:
        buf += chunk
        while True:
            i = buf.find(b"\n")
            if i < 0:
                break
            line, buf = buf[:i], buf[i + 1:]
            if line.strip():
                yield line
    if buf.strip():
        yield buf
