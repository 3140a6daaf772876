"""Fault injection for the tests: a failure between two steps of a steal or
a restore, where a real one (a netlink error, a killed process) could strike.

``CONTIV_STN_FAULT=steal:routes`` makes the step after ``routes`` of a steal
fail once in this process; ``restore:link`` likewise for a restore; a
``:crash`` suffix (``steal:routes:crash``) ends the process on the spot
instead, as a kill would. Unset (always, outside the tests) it costs one
dictionary lookup per step.
"""
from __future__ import annotations

import os

from agent.errors import ContivError

ENV = "CONTIV_STN_FAULT"
_fired: set[str] = set()


class InjectedFault(ContivError):
    """The failure a test asked for."""


def point(operation: str, step: str) -> None:
    """Raise :class:`InjectedFault` if the tests asked for a failure after
    ``step`` of ``operation`` and it has not struck yet in this process."""
    want = os.environ.get(ENV)
    if not want:
        return
    if want == f"{operation}:{step}:crash":
        os._exit(70)
    if want == f"{operation}:{step}" and want not in _fired:
        _fired.add(want)
        raise InjectedFault(f"injected fault after {operation} step {step!r} ({ENV})")
