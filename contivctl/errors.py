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

import sys
import traceback

from contivctl.output import color_enabled


def report(e: BaseException, *, debug: bool = False) -> int:
    from agent.errors import ContivError  # noqa: PLC0415 -- tiny module, no heavy imports
    if debug:
        traceback.print_exception(e, file=sys.stderr)
    red = "\033[31m" if color_enabled() else ""
    reset = "\033[0m" if red else ""
    if isinstance(e, ContivError):
        sys.stderr.write(f"{red}error:{reset} {e.message}\n")
        if e.hint:
            sys.stderr.write(f"hint: {e.hint}\n")
        return e.exit_status
    if isinstance(e, KeyboardInterrupt):
        sys.stderr.write("interrupted\n")
        return 130
    sys.stderr.write(f"{red}error:{reset} {type(e).__name__}: {e}\n")
    if not debug:
        sys.stderr.write("hint: rerun with --debug for the traceback\n")
    return 1
