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
