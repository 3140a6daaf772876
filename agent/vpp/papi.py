"""The one chokepoint between the agent and VPP's binary API (DESIGN rule 4).

:class:`VppApi` talks to one VPP over its API socket with ``vpp_papi``
(imported lazily, here and nowhere else). Every request is first validated
against the API definitions (:mod:`agent.vpp.apidefs`), so a wrong message
raises :class:`VppMessageInvalid` without reaching VPP. Every reply is checked:
vpp_papi does not raise on a failing reply, this class raises
:class:`VppApiError` with the message name, the arguments and the retval.

Connection life cycle: ``connect()`` probes the socket first (a socket that
is not VPP's gives one clear :class:`VppUnavailable` within ``timeout``,
never a hang), then registers. When VPP goes away (killed, restarted), the
call that notices raises :class:`VppUnavailable` and the object stays
disconnected: every later call raises the same until ``reconnect()``
succeeds. Each successful connection increments ``generation``; a VPP
restart loses all its state, so the agent resyncs when the generation it last
synced at differs. (Reconnecting transparently would let the reconciler act on
a VPP that forgot everything.)

:class:`VppChannel` is the interface that descriptors use; the recording fake
of the unit tier (:mod:`agent.vpp.recorder`) implements it too.
"""
from __future__ import annotations

import logging
import socket
import struct
import threading
import time
from pathlib import Path
from typing import Any, Iterable, Mapping, Protocol

from agent.vpp import apidefs
from agent.vpp.errors import (VppMessageInvalid, VppUnavailable, VppVersionMismatch,
                              check_reply, raise_batch_failures)
from agent.vpp.transport import _SOCKCLNT_CREATE, _SOCKCLNT_CREATE_REPLY, direct_transport

DEFAULT_SOCKET = "/run/vpp/api.sock"
#: Requests in flight at once in call_many (VPP answers them in order).
DEFAULT_WINDOW = 256
_ID_CONTEXT = struct.Struct(">HI")  # a reply's message id and context
_MAX_REPLY = 64 << 20   # a sane upper bound for the first reply (the message table)

log = logging.getLogger(__name__)


class VppChannel(Protocol):
    """What a descriptor needs from VPP: implemented by VppApi and the Recorder.

    ``call`` sends one request and returns its reply (``retval`` checked);
    ``dump`` returns the details of a dump (``dump_raw``: as VPP sent them,
    undecoded, for the few dumps of thousands of records whose caller
    decodes the fixed layout itself); ``call_many`` sends many requests
    of one kind and returns their replies in order; ``require`` checks that
    VPP has these messages with our CRCs; ``cli`` runs a debug CLI command;
    ``fill`` completes arguments (count fields, fixed arrays).
    ``generation`` changes when VPP restarts (state lost: resync).
    """

    generation: int

    def call(self, name: str, /, **kwargs: Any) -> Any: ...
    def dump(self, name: str, /, **kwargs: Any) -> list: ...
    def dump_raw(self, name: str, /, **kwargs: Any) -> list[bytes]: ...
    def call_many(self, name: str, requests: Iterable[Mapping[str, Any]], /) -> list: ...
    def require(self, messages: Iterable[str]) -> None: ...
    def cli(self, cmd: str) -> str: ...
    def fill(self, name: str, /, **kwargs: Any) -> dict: ...


def probe_socket(path: str, timeout: float, hello: bytes) -> None:
    """Check that ``path`` is a VPP API socket before vpp_papi touches it
    (vpp_papi would allocate whatever length a garbage header claims, or fail
    with a TypeError): send ``hello`` (a packed sockclnt_create), expect a
    sane sockclnt_create_reply. VppUnavailable says what was found instead.
    VPP frees the probe's registration when the socket closes."""
    def unavailable(what: str) -> VppUnavailable:
        return VppUnavailable(f"VPP API socket {path}: {what}", socket_path=path, hint=(
            "start VPP with 'socksvr { socket-name %s }', or point the agent at its "
            "API socket" % path))

    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        try:
            s.connect(path)
        except FileNotFoundError:
            raise unavailable("does not exist (is VPP running?)") from None
        except ConnectionRefusedError:
            raise unavailable("nobody listens (VPP down or restarting)") from None
        except OSError as e:
            raise unavailable(f"cannot connect: {e.strerror or e}") from None
        try:
            s.sendall(struct.pack(">QII", 0, len(hello), 0) + hello)
            head = _recv_exact(s, 16)
            if head is None:
                raise unavailable("closed the connection at once: not a VPP API socket")
            _, length, _ = struct.unpack(">QII", head)
            if not 2 <= length <= _MAX_REPLY:
                raise unavailable(f"answered with a {length}-byte frame: not a VPP API socket")
            body = _recv_exact(s, length)
            if body is None or struct.unpack(">H", body[:2])[0] != _SOCKCLNT_CREATE_REPLY:
                raise unavailable("answered something that is not a VPP API reply")
        except socket.timeout:
            raise unavailable(f"no answer within {timeout:g} s: not a VPP API socket, "
                              "or VPP is stuck") from None
        except (BrokenPipeError, ConnectionResetError):
            raise unavailable("closed the connection at once: not a VPP API socket") from None
        except OSError as e:
            raise unavailable(f"connection failed: {e.strerror or e}") from None
    finally:
        s.close()


def _recv_exact(s: socket.socket, n: int) -> bytes | None:
    buf = bytearray()
    while len(buf) < n:
        chunk = s.recv(min(n - len(buf), 1 << 20))
        if not chunk:
            return None
        buf += chunk
    return bytes(buf)


_OFFLINE: dict[str, dict] = {}


def encode(name: str, kwargs: Mapping[str, Any], api_dir: str | Path) -> bytes:
    """Pack a request exactly as vpp_papi would send it, without a VPP.

    The unit tier uses this to prove that what validation accepts, the real
    client library can encode. Raises VppMessageInvalid when it cannot."""
    key = str(api_dir)
    messages = _OFFLINE.get(key)
    if messages is None:
        from vpp_papi import VPPApiJSONFiles   # lazy, as everywhere in this module
        _, messages, _ = VPPApiJSONFiles.load_api(apidir=key)
        _OFFLINE[key] = messages
    msg = messages.get(name)
    if msg is None:
        raise VppMessageInvalid(name, None, "unknown message")
    header = {k: 0 for k in ("_vl_msg_id", "client_index", "context") if k in msg.field_by_name}
    try:
        return msg.pack({**kwargs, **header})
    except Exception as e:   # vpp_papi raises ValueError, TypeError, struct.error, OSError
        raise VppMessageInvalid(name, None, f"vpp_papi cannot encode it: {e}") from e


class VppApi:
    """A connection to one VPP over its API socket: the only vpp_papi user.

    ``socket_path``: VPP's ``socksvr`` socket. ``api_dir``: the definitions
    (``*.api.json``) of that VPP; default :func:`apidefs.find_api_dir`.
    ``timeout``: seconds to wait for any reply. Thread-safe: one request (or
    batch) at a time, because vpp_papi's client is not.
    """

    def __init__(self, socket_path: str = DEFAULT_SOCKET, *,
                 api_dir: str | Path | None = None, timeout: float = 5.0,
                 client_name: str = "contivctl") -> None:
        self.socket_path = str(socket_path)
        api_dir = api_dir if api_dir is not None else apidefs.find_api_dir()
        if api_dir is None:
            raise VppUnavailable("no VPP API definitions found", hint=(
                "install VPP or set VPP_PREFIX to where it is installed"))
        self.api_dir = Path(api_dir)
        self.defs = apidefs.load(self.api_dir)
        self.timeout = timeout
        self.client_name = client_name
        self.generation = 0
        self._client: Any = None
        self._connected = False
        self._lock = threading.RLock()

    @property
    def connected(self) -> bool:
        return self._connected

    def connect(self) -> "VppApi":
        """Connect (no-op when connected). Raises VppUnavailable."""
        with self._lock:
            if self._connected:
                return self
            client = self._vpp_client()
            hello = client.messages["sockclnt_create"].pack(
                {"_vl_msg_id": _SOCKCLNT_CREATE, "name": self.client_name + "-probe",
                 "context": 1})
            probe_socket(self.socket_path, self.timeout, hello)
            try:
                client.connect(self.client_name)
            except Exception as e:   # vpp_papi raises OSError, TypeError, its own errors
                self._teardown()
                raise VppUnavailable(f"cannot register with VPP at {self.socket_path}: {e!r}",
                                     socket_path=self.socket_path) from e
            self._connected = True
            self.generation += 1
            return self

    def reconnect(self, wait: float = 0.0) -> "VppApi":
        """Drop the connection and connect again, retrying for up to ``wait``
        seconds (a restarted VPP opens its socket ~0.5 s after it starts)."""
        deadline = time.monotonic() + wait
        with self._lock:
            self._teardown()
            while True:
                try:
                    return self.connect()
                except VppUnavailable:
                    if time.monotonic() >= deadline:
                        raise
                time.sleep(0.1)

    def close(self) -> None:
        """Disconnect politely (VPP frees our registration)."""
        with self._lock:
            if self._connected:
                self._connected = False
                try:
                    self._client.disconnect()
                except Exception:   # VPP already gone: nothing to free
                    self._teardown()

    def __enter__(self) -> "VppApi":
        return self.connect()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _vpp_client(self) -> Any:
        if self._client is None:
            from vpp_papi import VPPApiClient   # lazy: `import agent.vpp` stays cheap
            # async_thread=False: we never subscribe to events, so the
            # event-dispatch thread would only idle.
            self._client = VPPApiClient(apidir=str(self.api_dir), use_socket=True,
                                        server_address=self.socket_path,
                                        read_timeout=self.timeout, async_thread=False)
            direct_transport(self._client.transport)
        return self._client

    def _teardown(self) -> None:
        """Forget the connection locally, without talking to VPP."""
        self._connected = False
        c = self._client
        if c is None:
            return
        # With the transport marked down, disconnect() skips its goodbye to
        # VPP (which would wait for a reply that never comes) and just closes
        # the socket and stops the reader thread.
        c.transport.connected = False
        try:
            c.disconnect()
        except Exception as e:  # noqa: BLE001 -- the connection is gone either way
            log.debug("VPP API disconnect: %s", e)

    def _lost(self, name: str, err: BaseException) -> VppUnavailable:
        # logged here: the caller's error may go to a CNI runtime only, and the
        # liveness ping that notices next sees just "not connected"
        if "read failed" in str(err):  # vpp_papi's words for its read timeout
            err = OSError(f"no reply within {self.timeout:g} s")
        log.warning("lost the connection to VPP at %s during %s: %s", self.socket_path, name, err)
        self._teardown()
        return VppUnavailable(
            f"lost the connection to VPP at {self.socket_path} during {name}: {err}",
            socket_path=self.socket_path,
            hint="VPP may have restarted: reconnect() and resync")

    def _function(self, name: str) -> Any:
        if not self._connected:
            raise VppUnavailable(f"not connected to VPP at {self.socket_path}",
                                 socket_path=self.socket_path,
                                 hint="connect() or reconnect() first")
        fn = getattr(self._client.api, name, None)
        if fn is None:   # vpp_papi registers only messages whose name and CRC VPP has
            self.require([name])   # raises, naming what differs
        return fn

    def fill(self, name: str, /, **kwargs: Any) -> dict:
        """:meth:`ApiDefs.fill`: set count fields, pad fixed arrays."""
        return self.defs.fill(name, kwargs)

    def call(self, name: str, /, **kwargs: Any) -> Any:
        """Send one request, return its reply; VppApiError if retval != 0."""
        if self.defs.service(name).stream:
            raise VppMessageInvalid(name, None, "is a dump: use dump()")
        self.defs.validate(name, kwargs)
        with self._lock:
            reply = self._send(name, kwargs)
        return check_reply(name, kwargs, reply)

    def dump(self, name: str, /, **kwargs: Any) -> list:
        """Send a dump request, return the list of details messages."""
        svc = self.defs.service(name)
        if not svc.stream:
            raise VppMessageInvalid(name, None, "is not a dump: use call()")
        self.defs.validate(name, kwargs)
        out: list = []
        with self._lock:
            while True:
                result = self._send(name, kwargs)
                if not isinstance(result, tuple):   # classic dump: details only
                    return list(result)
                reply, details = result             # reply + stream of details
                out.extend(details)
                # -165 (EAGAIN): more to come; ask again from the cursor
                if getattr(reply, "retval", 0) == -165 and "cursor" in kwargs:
                    kwargs = {**kwargs, "cursor": reply.cursor}
                    continue
                check_reply(name, kwargs, reply)
                return out

    def _send(self, name: str, kwargs: Mapping[str, Any]) -> Any:
        fn = self._function(name)
        try:
            return fn(**kwargs, _timeout=self.timeout)   # read per call: timeout may change
        except OSError as e:        # transport: socket closed, EPIPE, read timeout
            raise self._lost(name, e) from e
        except (ValueError, TypeError, struct.error) as e:
            # vpp_papi could not pack what validation accepted: a validator gap
            raise VppMessageInvalid(name, None, f"vpp_papi cannot encode it: {e}") from e

    def dump_raw(self, name: str, /, **kwargs: Any) -> list[bytes]:
        """A classic dump's details messages as VPP sent them (header
        included): vpp_papi decodes each record field by field in Python,
        ~45 us for a cnat session -- 0.9 s of 20,000 -- where a caller that
        needs a few fields of a fixed layout unpacks them in one struct call."""
        svc = self.defs.service(name)
        if not svc.stream or svc.reply != svc.details:
            raise VppMessageInvalid(name, None, "dump_raw reads classic dumps (ended by a control ping)")
        self.defs.validate(name, kwargs)
        with self._lock:
            fn = self._function(name)
            c = self._client
            t = c.transport
            try:
                ctx = c.get_context()
                for n, kw in ((name, kwargs), ("control_ping", {})):
                    msg = c.messages[n]
                    t.write(msg.pack({**kw, "_vl_msg_id": t.get_msg_index(f"{n}_{msg.crc[2:]}"),
                                      "client_index": t.socket_index, "context": ctx}))
                details = t.get_msg_index(f"{svc.details}_{c.messages[svc.details].crc[2:]}")
                done = t.get_msg_index(f"control_ping_reply_{c.messages['control_ping_reply'].crc[2:]}")
                out: list[bytes] = []
                while True:
                    m = t.read(self.timeout)
                    if m is None:
                        raise OSError(f"no reply within {self.timeout:g} s ({len(out)} details read)")
                    kind, mctx = _ID_CONTEXT.unpack_from(m)
                    if mctx != ctx:
                        continue  # not ours (nothing else is in flight: the lock)
                    if kind == details:
                        out.append(m)
                    elif kind == done:
                        return out
            except OSError as e:
                raise self._lost(name, e) from e
        raise AssertionError(fn)  # unreachable: the loop returns or raises

    def call_many(self, name: str, requests: Iterable[Mapping[str, Any]], /, *,
                  window: int = DEFAULT_WINDOW) -> list:
        """Send many requests of one kind, return their replies in order.

        Pipelined, like vpp_papi's asynchronous mode: requests go out without
        waiting for replies, up to ``window`` in flight, replies are matched
        by context; 1,000 small requests take a third of the time of 1,000
        calls (it pays from 2 on). All are validated before the first is
        sent. If some fail, VppApiError names the first (``index``) and
        carries every reply (``replies``): the others did take effect.
        """
        if self.defs.service(name).stream:
            raise VppMessageInvalid(name, None, "is a dump: call_many sends requests")
        items = self.defs.validate_many(name, requests)
        if not items:
            return []
        with self._lock:
            fn = self._function(name)
            replies = self._pipeline(name, fn, items, max(1, window))
        return raise_batch_failures(name, items, replies)

    def _pipeline(self, name: str, fn: Any, items: list, window: int) -> list:
        # vpp_papi's async send (_call_vpp_async) packs a request with a fresh
        # context and writes it in two send() calls, each waking VPP. Here the
        # same packing (its message, context counter, header, socket) goes
        # out half a window at a time in one send: 1,000 small requests took
        # ~0.08 s, ~0.13 s with a send per request, ~0.25 s one by one.
        # vpp_papi's reader thread reads the replies; we match them by context.
        c, msg = self._client, fn._func.msg
        t = c.transport
        index = t.get_msg_index(f"{name}_{msg.crc[2:]}")
        replies: list = [None] * len(items)
        pending: dict[int, int] = {}   # context -> request index
        sent = done = 0
        try:
            while done < len(items):
                if sent < len(items) and sent - done <= window // 2:
                    buf = bytearray()
                    while sent < len(items) and sent - done < window:
                        ctx = c.get_context()
                        b = msg.pack({**items[sent], "_vl_msg_id": index,
                                      "client_index": t.socket_index, "context": ctx})
                        buf += t.header.pack(0, len(b), 0)
                        buf += b
                        pending[ctx] = sent
                        sent += 1
                    t.socket.sendall(buf)
                r = c.read_blocking(timeout=self.timeout)
                if r is None:
                    raise OSError(f"no reply within {self.timeout:g} s "
                                  f"({done} of {len(items)} answered)")
                i = pending.pop(getattr(r, "context", None), None)
                if i is not None:       # anything else is not ours: ignore it
                    replies[i] = r
                    done += 1
        except OSError as e:
            raise self._lost(name, e) from e
        except (ValueError, TypeError, struct.error) as e:
            raise VppMessageInvalid(name, None, f"vpp_papi cannot encode it: {e}") from e
        return replies

    def require(self, messages: Iterable[str]) -> None:
        """Check that VPP knows each message (and its reply and details) with
        the CRC of our definitions; VppVersionMismatch lists what differs."""
        names: list[str] = []
        for m in messages:
            self.defs.message(m)   # a typo is invalid input, not a mismatch
            names += self.defs.related(m) if m in self.defs.services else [m]
        with self._lock:
            if not self._connected:
                raise VppUnavailable(f"not connected to VPP at {self.socket_path}",
                                     socket_path=self.socket_path)
            table = self._client.transport.message_table
        vpp = {}
        for key in table:
            n, _, crc = key.rpartition("_")
            vpp[n] = "0x" + crc
        missing = [n for n in names if n not in vpp]
        different = {n: (self.defs.crc(n), vpp[n]) for n in names
                     if n in vpp and vpp[n] != self.defs.crc(n)}
        if missing or different:
            raise VppVersionMismatch(sorted(set(missing)), different)

    def cli(self, cmd: str) -> str:
        """Run a debug CLI command (``cli_inband``); return its output."""
        return self.call("cli_inband", cmd=cmd).reply

    def version(self) -> str:
        """VPP's version string (``show_version``)."""
        return self.call("show_version").version


def interface_counters(stats_socket: str, timeout: float = 5.0) -> dict[str, dict[str, int]]:
    """Per interface (VPP's name), packets/bytes/drops/errors in both
    directions from VPP's stats segment, summed over its threads (VPP's
    ``rx`` is what the interface received). VppUnavailable when the segment
    cannot be read."""
    from vpp_papi.vpp_stats import VPPStats   # lazy, as above
    try:
        stats = VPPStats(stats_socket, timeout=timeout)
        stats.connect()
    except Exception as e:   # vpp_papi raises OSError and its own errors
        raise VppUnavailable(f"cannot read VPP's stats segment at {stats_socket}: {e}",
                             socket_path=stats_socket) from e
    try:
        names = stats["/if/names"]
        got = {k: stats[k] for k in ("/if/rx", "/if/tx", "/if/drops", "/if/rx-error",
                                     "/if/tx-error", "/if/rx-miss")}
    finally:
        stats.disconnect()

    def total(counter, i, field=None):
        return sum((t[i][field] if field else t[i]) for t in counter if i < len(t))
    out = {}
    for i, name in enumerate(names):
        if not name:
            continue
        out[name] = {"rx_packets": total(got["/if/rx"], i, "packets"),
                     "rx_bytes": total(got["/if/rx"], i, "bytes"),
                     # VPP counts a dropped packet against the interface it came in
                     # on (any graph node's drop), plus what the rx queue missed
                     "rx_drops": total(got["/if/drops"], i) + total(got["/if/rx-miss"], i),
                     "rx_errors": total(got["/if/rx-error"], i),
                     "tx_packets": total(got["/if/tx"], i, "packets"),
                     "tx_bytes": total(got["/if/tx"], i, "bytes"),
                     "tx_drops": 0,  # not counted per interface by VPP
                     "tx_errors": total(got["/if/tx-error"], i)}
    return out
