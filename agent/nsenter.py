"""Enter a network namespace: the project's one ``setns(2)`` wrapper.

DESIGN.md rule 10: no thread of the agent is ever left in a foreign network
namespace. So only threads that exist for it enter one -- the agent's netlink
socket opener (``agent.linux.netns``), the one-shot threads of
:func:`in_netns` (the lab's tools, the agent's :func:`socket_in` for sockets
in pods' namespaces), the CNI latency bench's spawning thread -- and each goes
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
from typing import Callable, TypeVar

T = TypeVar("T")

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



def in_netns(path: str, fn: Callable[[], T]) -> T:
    """``fn()`` run inside the network namespace at ``path``, on a thread
    that exists only for it and ends there (it runs nothing else); its
    result, or its exception, is handed back. Sockets ``fn`` makes stay bound
    to that namespace whichever thread uses them later."""
    box: list = []

    def work() -> None:
        try:
            fd = os.open(path, os.O_RDONLY)
            try:
                setns(fd, path)
            finally:
                os.close(fd)
            box.append(fn())
        except BaseException as e:  # noqa: BLE001 -- handed back to the caller
            box.append(e)
    t = threading.Thread(target=work, name=f"netns:{os.path.basename(path)}", daemon=True)
    t.start()
    t.join()
    if isinstance(box[0], BaseException):
        raise box[0]
    return box[0]


def socket_in(path: str, family: int, kind: int, proto: int = 0) -> socket.socket:
    """A socket created in the network namespace at ``path`` (see
    :func:`in_netns`). Raises the OSError of opening or entering the namespace
    (ENOENT: it is gone)."""
    return in_netns(path, lambda: socket.socket(family, kind, proto))
