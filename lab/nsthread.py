"""Run a function inside another network namespace, on a short-lived thread.

Sockets stay bound to the namespace they were created in, so lab tools (the
responder, probes) create their sockets this way and use them from any
thread. The thread enters the namespace, runs the function, and ends there:
it never runs anything else, and no other thread ever changes namespace.
"""
from __future__ import annotations

import ctypes
import os
import threading
from typing import Callable, TypeVar

CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)
T = TypeVar("T")


def setns(fd: int, what: str = "") -> None:
    """Move the calling thread into the network namespace open at ``fd``."""
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        e = ctypes.get_errno()
        raise OSError(e, f"cannot enter network namespace {what or fd}: {os.strerror(e)}")


def in_netns(netns: str, fn: Callable[[], T]) -> T:
    """``fn()`` run inside the network namespace at path ``netns``."""
    box: list = []

    def work() -> None:
        try:
            fd = os.open(netns, os.O_RDONLY)
            try:
                setns(fd, netns)
            finally:
                os.close(fd)
            box.append(fn())
        except BaseException as e:  # noqa: BLE001 -- handed back to the caller
            box.append(e)
    t = threading.Thread(target=work, name=f"netns:{os.path.basename(netns)}")
    t.start()
    t.join()
    if isinstance(box[0], BaseException):
        raise box[0]
    return box[0]
