"""Enter a network namespace: the project's one ``setns(2)`` wrapper.

DESIGN.md rule 10: no thread of the agent is ever left in a foreign network
namespace. So only threads that exist for it enter one -- the agent's netlink
socket opener (``agent.linux.netns``), the lab's short-lived workers
(``lab.nsthread``), the CNI latency bench's spawning thread -- and each goes
back home, or ends, before it runs anything else. Keeping the call in one
place keeps it, and its error, the same for all of them; a failure names the
namespace, so it can be told which one was missing.

Standard library only: the lab and the benches import it without the agent's
dependencies.
"""
from __future__ import annotations

import ctypes
import os
import socket
import threading

CLONE_NEWNET = 0x40000000
# the interpreter's own symbols include libc's: no library search at import
_libc = ctypes.CDLL(None, use_errno=True)


def setns(fd: int, what: str = "") -> None:
    """Move the calling thread into the network namespace open at ``fd``.

    ``what`` names the namespace in the OSError raised on failure (its path,
    or its name); the fd is named when it is not given."""
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        e = ctypes.get_errno()
        raise OSError(e, f"cannot enter network namespace {what or f'at fd {fd}'}: {os.strerror(e)}")


def socket_in(path: str, family: int, kind: int, proto: int = 0) -> socket.socket:
    """A socket created in the network namespace at ``path`` (a socket stays
    bound to the namespace it was made in, whichever thread uses it later).

    Made by a thread that exists only for it and ends in that namespace: no
    thread that runs anything else ever enters it. Raises the OSError of
    opening or entering the namespace (ENOENT: it is gone)."""
    out: list = []

    def make() -> None:
        try:
            fd = os.open(path, os.O_RDONLY)
            try:
                setns(fd, path)
            finally:
                os.close(fd)
            out.append(socket.socket(family, kind, proto))
        except BaseException as e:  # noqa: BLE001 -- handed to the caller
            out.append(e)

    t = threading.Thread(target=make, name="netns-socket", daemon=True)
    t.start()
    t.join()
    if isinstance(out[0], BaseException):
        raise out[0]
    return out[0]
