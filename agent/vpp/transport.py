"""vpp_papi's socket transport, read on the caller's thread: the
chokepoint's (:mod:`agent.vpp.papi`) connection to VPP, without the reader
thread vpp_papi starts (see :func:`direct_transport` for why).

vpp_papi itself is imported by the chokepoint only; this module patches the
transport object the chokepoint hands it."""
from __future__ import annotations

import socket
import struct

# sockclnt_create / its reply: the fixed ids every VPP gives them (vpp_papi's
# transport relies on the same two numbers)
_SOCKCLNT_CREATE, _SOCKCLNT_CREATE_REPLY = 15, 16


def direct_transport(transport) -> None:
    """Make vpp_papi's socket transport read in the calling thread.

    vpp_papi starts a reader thread per connection that reads each message
    (two ``recv`` calls) and hands it to the caller through a queue -- a
    ``multiprocessing.Queue`` at that, pickled through a pipe, although both
    ends are threads of one process. For a dump every message crosses
    threads: 20,000 cnat session records took 3.3 s, of which the hand-over
    was 1.6 s and, with a thread queue instead, still 2.4 s of waiting on the
    GIL between the two threads (docs/performance.md, "Diagnostics at scale").
    The agent never subscribes to VPP's events, and every request holds
    :class:`VppApi`'s lock until its answer is in, so nobody needs a reader
    thread: here ``connect`` starts none, and ``read`` takes the next message
    from a buffer filled by large ``recv`` calls on the caller's thread.
    tests/unit/test_vpp_core.py pins the vpp_papi internals this relies on."""
    cls = type(transport)
    if not getattr(cls, "_contiv_direct", False):
        transport.__class__ = type(f"Direct{cls.__name__}", (cls,), {
            "_contiv_direct": True, "connect": _direct_connect, "read": _direct_read,
            "__doc__": "vpp_papi's socket transport, read on the caller's thread (no reader thread)."})
    transport._contiv_buf = bytearray()


def _direct_connect(self, name, pfx, msg_handler, rx_qlen, do_async=False):
    """vpp_papi's ``connect`` without the reader thread: the socket, then
    ``sockclnt_create`` and the message table from its reply."""
    if self.connected:
        raise OSError("the VPP API transport is connected already")
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(self.read_timeout)
    try:
        s.connect(self.server_address)
    except OSError:
        s.close()
        raise
    self.socket, self.connected, self._contiv_buf = s, True, bytearray()
    self.write(self.parent.messages["sockclnt_create"].pack(
        {"_vl_msg_id": _SOCKCLNT_CREATE, "name": name, "context": 124}))
    msg = _direct_read(self, self.read_timeout)
    if not msg or struct.unpack(">H", msg[:2])[0] != _SOCKCLNT_CREATE_REPLY:
        raise OSError("VPP did not answer sockclnt_create")
    r, _ = self.parent.messages["sockclnt_create_reply"].unpack(msg)
    self.socket_index = r.index
    self.message_table = {m.name: m.index for m in r.message_table}
    self.do_async = do_async
    return 0


_FRAME = struct.Struct(">QII")  # the socket transport's frame header: (0, length, 0)


def _direct_read(self, timeout=None):
    """The next message, or None on a timeout or a closed connection (vpp_papi
    then says "read failed", which the chokepoint turns into VppUnavailable)."""
    if not self.connected:
        return None
    buf = self._contiv_buf
    try:
        self.socket.settimeout(self.read_timeout if timeout is None else timeout)
        while True:
            if len(buf) >= 16:
                n = _FRAME.unpack_from(buf)[1]
                if len(buf) >= 16 + n:
                    msg = bytes(buf[16:16 + n])
                    del buf[:16 + n]
                    return msg
            chunk = self.socket.recv(1 << 18)
            if not chunk:
                return None
            buf += chunk
    except OSError:  # socket.timeout included
        return None
