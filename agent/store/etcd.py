"""The etcd store, through the ``etcd3`` API (package ``cslab-etcd3``).

Endpoints: ``http://host:port`` or ``unix:///path/to/socket`` (etcd's
``unix://`` listener; the lab uses it so that tools in any network namespace
reach the lab's etcd through the filesystem).
"""
from __future__ import annotations

import threading
from typing import Callable, Iterable
from urllib.parse import urlsplit

import etcd3
import grpc
from etcd3 import events as etcd_events
from etcd3 import exceptions as etcd_exc
from etcd3.etcdrpc import rpc_pb2

from agent.errors import InvalidInput, Unavailable
from agent.store.base import (KV, Absent, Compacted, Delete, Event, ModRevisionIs, Put,
                              WatchBatch)


def _split_endpoint(endpoint: str) -> tuple[str, str]:
    """Return (host, port) as etcd3's Endpoint wants them: it joins them with ':'."""
    if endpoint.startswith("unix://"):
        path = endpoint[len("unix://"):]
        if not path.startswith("/"):
            raise InvalidInput(f"etcd endpoint {endpoint!r}: unix socket path must be absolute")
        host, sep, port = path.rpartition(":")
        # etcd names its unix listener "<host>:<port>"; a plain path works too
        # because gRPC only needs the joined string back.
        return (f"unix://{host}", port) if sep else (f"unix://{path}", "")
    u = urlsplit(endpoint if "://" in endpoint else f"http://{endpoint}")
    if u.scheme not in ("http", "") or not u.hostname:
        raise InvalidInput(f"etcd endpoint {endpoint!r}: expected http://HOST:PORT or unix:///PATH",
                           hint="TLS endpoints are not supported yet")
    try:
        port = u.port  # urllib raises ValueError for a non-numeric or out-of-range port
    except ValueError as e:
        raise InvalidInput(f"etcd endpoint {endpoint!r}: bad port ({e})") from None
    return u.hostname, str(port or 2379)


def _unavailable(endpoint: str, e: Exception) -> Unavailable:
    return Unavailable(f"etcd at {endpoint} is unreachable ({type(e).__name__}: {e})",
                       hint="check --etcd, or that the etcd process is running")


class _Watch:
    def __init__(self, client, watch_id) -> None:
        self._client = client
        self._id = watch_id

    def cancel(self) -> None:
        if self._id is not None:
            try:
                self._client.cancel_watch(self._id)
            except Exception:  # noqa: BLE001 -- cancel on a dead channel is a no-op
                return
            finally:
                self._id = None


#: gRPC refuses replies over 4 MiB by default; one listing of the cluster state
#: (the agent's relist: 10,000 Services with their slices are ~14 MB) is bigger.
_CHANNEL_OPTIONS = [("grpc.max_receive_message_length", -1)]


class EtcdStore:
    """See :class:`agent.store.base.Store`."""

    def __init__(self, endpoint: str, *, timeout: float = 5.0) -> None:
        self.endpoint = endpoint
        host, port = _split_endpoint(endpoint)
        # time_retry: etcd3 refuses to reuse an endpoint for time_retry seconds
        # after one failure (default 300 s!); an agent must reconnect at once
        # when its etcd comes back.
        ep = etcd3.Endpoint(host, port, secure=False, time_retry=0.2, opts=_CHANNEL_OPTIONS)
        if not port:
            ep.netloc = host  # plain unix path without ":port"
            ep.channel = grpc.insecure_channel(host, options=_CHANNEL_OPTIONS)
        self._client = etcd3.MultiEndpointEtcd3Client(endpoints=[ep], timeout=timeout)
        self._lock = threading.Lock()

    # --- helpers ---
    def _call(self, fn, *args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except (etcd_exc.ConnectionFailedError, etcd_exc.ConnectionTimeoutError,
                etcd_exc.NoServerAvailableError, ValueError, grpc.RpcError) as e:
            raise _unavailable(self.endpoint, e) from None

    # --- reads ---
    def get(self, key: str) -> KV | None:
        resp = self._call(self._client.get_response, key)
        if not resp.kvs:
            return None
        kv = resp.kvs[0]
        return KV(kv.key.decode(), kv.value, kv.mod_revision, kv.create_revision)

    def list(self, prefix: str) -> tuple[list[KV], int]:
        resp = self._call(self._client.get_prefix_response, prefix, sort_order="ascend")
        return ([KV(kv.key.decode(), kv.value, kv.mod_revision, kv.create_revision)
                 for kv in resp.kvs], resp.header.revision)

    def revision(self) -> int:
        return self._call(self._client.get_response, "\0").header.revision

    # --- writes ---
    def put(self, key: str, value: bytes) -> int:
        return self.txn((), (Put(key, value),))[1]

    def delete(self, key: str) -> bool:
        resp = self._call(self._client.delete, key, return_response=True)
        return resp.deleted > 0

    def txn(self, compare: Iterable, success: Iterable, failure: Iterable = ()) -> tuple[bool, int]:
        t = self._client.transactions
        cmps = []
        for c in compare:
            if isinstance(c, Absent):
                cmps.append(t.version(c.key) == 0)
            elif isinstance(c, ModRevisionIs):
                cmps.append(t.mod(c.key) == c.revision)
            else:
                raise TypeError(f"unknown comparison {c!r}")
        req = rpc_pb2.TxnRequest(
            compare=[c.build_message() for c in cmps],
            success=self._client._ops_to_requests([self._op(o) for o in success]),
            failure=self._client._ops_to_requests([self._op(o) for o in failure]))
        # Called through the stub (not client.transaction) because we need the
        # response header's revision, which etcd3's wrapper drops.
        resp = self._call(lambda: self._client.kvstub.Txn(req, self._client.timeout))
        return resp.succeeded, resp.header.revision

    def _op(self, op):
        t = self._client.transactions
        if isinstance(op, Put):
            return t.put(op.key, op.value, lease=op.lease or None)
        if isinstance(op, Delete):
            return t.delete(op.key)
        raise TypeError(f"unknown operation {op!r}")

    # --- watch ---
    def watch(self, prefix: str, start_revision: int,
              callback: Callable[[WatchBatch | Exception], None]) -> _Watch:
        def on_response(resp) -> None:
            if isinstance(resp, etcd_exc.RevisionCompactedError):
                callback(Compacted(resp.compacted_revision))
                return
            if isinstance(resp, Exception) or resp is None:
                callback(_unavailable(self.endpoint, resp or ConnectionError("watch ended")))
                return
            evs = []
            for e in resp.events:
                if isinstance(e, etcd_events.DeleteEvent):
                    evs.append(Event(e.key.decode(), None, e.mod_revision))
                else:
                    evs.append(Event(e.key.decode(), e.value, e.mod_revision))
            callback(WatchBatch(tuple(evs), resp.header.revision))

        kwargs = {"progress_notify": True}
        if start_revision:
            kwargs["start_revision"] = start_revision
        try:
            wid = self._client.add_watch_prefix_callback(prefix, on_response, **kwargs)
        except etcd_exc.RevisionCompactedError as e:
            raise Compacted(e.compacted_revision) from None
        except (etcd_exc.Etcd3Exception, grpc.RpcError, ValueError) as e:
            raise _unavailable(self.endpoint, e) from None
        return _Watch(self._client, wid)

    def compact(self, revision: int) -> None:
        self._call(self._client.compact, revision, physical=True)

    # --- leases ---
    def grant_lease(self, ttl: int) -> int:
        return self._call(self._client.lease, ttl).id

    def refresh_lease(self, lease: int) -> int:
        replies = self._call(lambda: list(self._client.refresh_lease(lease)))
        return max(0, max((r.TTL for r in replies), default=0))  # etcd: TTL <= 0 for an expired lease

    def revoke_lease(self, lease: int) -> None:
        try:
            self._client.revoke_lease(lease)
        except grpc.RpcError as e:
            if e.code() == grpc.StatusCode.NOT_FOUND:  # expired or revoked already
                return
            raise _unavailable(self.endpoint, e) from None
        except (etcd_exc.ConnectionFailedError, etcd_exc.ConnectionTimeoutError,
                etcd_exc.NoServerAvailableError) as e:
            raise _unavailable(self.endpoint, e) from None

    def status(self) -> dict:
        s = self._call(self._client.status)
        return {"version": s.version, "db_size": s.db_size, "raft_index": s.raft_index}

    def close(self) -> None:
        try:
            self._client.close()
        except Exception:  # noqa: BLE001 -- closing a broken channel must not mask the cause
            return
