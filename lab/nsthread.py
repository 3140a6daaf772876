"""Run a function inside another network namespace, on a short-lived thread.

Sockets stay bound to the namespace they were created in, so lab tools (the
responder, probes) create their sockets this way and use them from any
thread. The thread enters the namespace, runs the function, and ends there:
it never runs anything else, and no other thread ever changes namespace.
"""
from __future__ import annotations

import os
import threading
from typing import Callable, TypeVar

from agent.nsenter import setns

T = TypeVar("T")


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
