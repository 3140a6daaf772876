"""Map errors to one line, a hint and an exit status (tracebacks only with --debug).

Exit statuses (documented in docs/cli.md):

====  ===========================================================
0     success
1     failure (a diagnostic found problems, a probe was blocked...)
2     usage error or invalid input
3     not found
4     temporarily unavailable (agent or etcd down); retrying may help
5     fatal error
6     a pool is exhausted
====  ===========================================================
"""
from __future__ import annotations

from contivctl import output


def report(e: BaseException, *, debug: bool = False) -> int:
    """Print ``e`` on stderr (``error: ...``, red on a terminal) and return
    the exit status its class stands for."""
    from agent.errors import ContivError  # noqa: PLC0415 -- tiny module, no heavy imports
    if debug:
        output.traceback(e)
    if isinstance(e, ContivError):
        output.error(e.message, e.hint)
        return e.exit_status
    if isinstance(e, KeyboardInterrupt):
        output.message("interrupted")
        return 130
    output.error(f"{type(e).__name__}: {e}", None if debug else "rerun with --debug for the traceback")
    return 1
